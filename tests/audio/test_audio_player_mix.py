"""The player's cues, volume and adaptive jitter buffer, on an ALSA file device (bit-level checks)."""

from __future__ import annotations

import threading
import time
import wave

import numpy as np

from edged import config
from edged.audio.cues import CueBank, CueMixer
from edged.audio.gain import SoftGain, apply_gain, gain
from edged.audio.jitter import LATE_HOLD_MS, JitterBuffer
from edged.audio.playback import Player

RATE = 24000
PERIOD = 480  # 20 ms at 24 kHz


def _signal(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.integers(-12000, 12000, n)).astype("<i2")


def _wav(path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2")


def _wait(pred, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def _bank(**cues) -> CueBank:
    bank = CueBank(config.parse({"cues": cues}, "test.toml").cues, rate=RATE)
    bank.load()
    return bank


def _player(**kw) -> tuple[Player, threading.Event]:
    drained = threading.Event()
    pl = Player("spk", on_drained=drained.set, **kw)
    pl.start()
    return pl, drained


# -- cues -------------------------------------------------------------------------------------------
def test_a_cue_plays_with_no_reply_and_a_cue_switched_off_does_not(tmp_path, alsa):
    alsa(playbacks={"spk": tmp_path / "out.wav"})
    bank = _bank(offline={"enabled": False})
    pl, _ = _player(cues=bank, duck=0.3)
    try:
        assert pl.play_cue("offline") is False  # off in [cues]: nothing
        assert pl.play_cue("wake") is True
        _wait(lambda: pl.stats()["cue_writes"], what="the cue's first write")
        _wait(lambda: not pl.cue_active, what="the cue's end")
        st = pl.stats()
        assert st["cues"] == {"wake": 1} and st["cue_writes"][0][0] == "wake" and not st["playing"]
    finally:
        pl.stop()
    out = _wav(tmp_path / "out.wav")
    cue = bank.get("wake")
    assert np.array_equal(out[: len(cue)], cue)  # the cue as it is: mixed into silence, gain 1
    assert not out[len(cue):].any() and len(out) - len(cue) <= 2 * PERIOD  # padding, the duck ramping back


def test_a_cue_is_mixed_into_the_reply_ducking_it_period_by_period(tmp_path, alsa):
    alsa(playbacks={"spk": tmp_path / "out.wav"})
    bank = _bank()
    pl, drained = _player(cues=bank, duck=0.3, jitter_ms=0)
    reply = _signal(RATE * 2)
    try:
        pl.write(reply.tobytes())
        _wait(lambda: pl.frames_written >= RATE // 4, what="a quarter second of the reply")
        assert pl.play_cue("listen_end")
        pl.end_of_reply()
        assert drained.wait(30)
    finally:
        pl.stop()
    out = _wav(tmp_path / "out.wav")
    assert len(out) == len(reply)
    k = int(np.nonzero(out != reply)[0][0]) // PERIOD  # the period the cue started in
    assert k >= (RATE // 4) // PERIOD and np.array_equal(out[: k * PERIOD], reply[: k * PERIOD])
    # the same mix computed here, period by period from that one: every sample equal
    mixer = CueMixer(0.3, ramp=RATE // 100)
    mixer.play(bank.get("listen_end"))
    expected = np.concatenate([np.frombuffer(mixer.mix(reply[i:i + PERIOD].tobytes()), "<i2")
                               for i in range(k * PERIOD, len(reply), PERIOD)])
    assert np.array_equal(out[k * PERIOD:], expected)
    cue_len = len(bank.get("listen_end"))
    ducked = out[k * PERIOD + 300: k * PERIOD + cue_len - 300].astype(float) - \
        bank.get("listen_end")[300: cue_len - 300]
    assert np.allclose(ducked, reply[k * PERIOD + 300: k * PERIOD + cue_len - 300] * 0.3, atol=0.51)
    assert np.array_equal(out[(k * PERIOD + cue_len) // PERIOD * PERIOD + 2 * PERIOD:],
                          reply[(k * PERIOD + cue_len) // PERIOD * PERIOD + 2 * PERIOD:])  # back up after


def test_a_looped_cue_sounds_until_stopped(tmp_path, alsa):
    alsa(playbacks={"spk": tmp_path / "out.wav"})
    bank = _bank()
    pl, _ = _player(cues=bank)
    ring = bank.get("ring")
    try:
        pl.play_cue("ring", loop=True)
        _wait(lambda: pl.frames_written >= 2 * len(ring) + PERIOD, what="two rounds of the ring")
        assert pl.cue_active and pl.stats()["cue"] == "ring"
        pl.stop_cue()
        _wait(lambda: not pl.cue_active, what="the ring stopped")
    finally:
        pl.stop()
    out = _wav(tmp_path / "out.wav")
    assert np.array_equal(out[: 2 * len(ring)], np.tile(ring, 2))


# -- volume -----------------------------------------------------------------------------------------
def test_the_volume_scales_every_sample_and_a_change_while_idle_applies_from_the_first(tmp_path, alsa):
    alsa(playbacks={"spk": tmp_path / "out.wav"})
    soft = SoftGain(gain(50), ramp=RATE // 100)
    pl, drained = _player(gain=soft, jitter_ms=0)
    a, b = _signal(RATE // 2, 1), _signal(RATE // 2, 2)
    try:
        pl.write(a.tobytes())
        pl.end_of_reply()
        assert drained.wait(30)
        drained.clear()
        _wait(lambda: time.monotonic() > pl._t_play, what="the device played it out")
        soft.set(gain(80))  # between replies: no ramp needed, nothing sounds
        pl.write(b.tobytes())
        pl.end_of_reply()
        assert drained.wait(30)
    finally:
        pl.stop()
    out = _wav(tmp_path / "out.wav")
    assert np.array_equal(out[: len(a)], apply_gain(a, 0.125))  # level 50: (50/100)**3
    assert np.array_equal(out[len(a): len(a) + len(b)], apply_gain(b, 0.8 ** 3))


# -- the jitter buffer --------------------------------------------------------------------------------
def _looked_after(pl: Player, t: float) -> None:
    """Wait until the writer has gone round its loop twice after time t (it beats on every wake-up)."""
    _wait(lambda: pl.alive() > t, what="the writer woke")
    t2 = pl.alive()
    _wait(lambda: pl.alive() > t2, what="the writer looked again")


def test_fast_arrival_starts_on_the_first_chunk_late_arrival_holds(tmp_path, alsa):
    alsa(playbacks={"spk": tmp_path / "out.wav"})
    pl, drained = _player(jitter_ms=120)
    chunk = RATE * 40 // 1000  # 40 ms, as the Live API sends
    try:
        # 1: nothing known yet (Google sends faster than real time): the first chunk starts playback
        pl.write(_signal(chunk).tobytes())
        _wait(lambda: pl.first_writes, what="the first write")
        pl.write(_signal(RATE).tobytes())  # the rest at once: faster than real time
        pl.end_of_reply()
        assert drained.wait(30)
        drained.clear()
        assert pl.stats()["jitter"]["hold_ms"] == 0 and pl.stats()["underruns"] == 0
        # 2: a reply that arrives at real time (40 ms every 40 ms): the next one is held
        t0 = time.monotonic()
        for i in range(15):
            while time.monotonic() < t0 + i * 0.04:
                time.sleep(0.001)
            pl.write(_signal(chunk, i).tobytes())
        pl.end_of_reply()
        assert drained.wait(30)
        drained.clear()
        st = pl.stats()["jitter"]
        assert st["last_arrival_rate"] < 1.1 and st["hold_ms"] >= LATE_HOLD_MS
        # 3: the first chunk alone does not start it now; enough for the hold does
        written = pl.frames_written
        t = time.monotonic()
        pl.write(_signal(chunk, 99).tobytes())
        _looked_after(pl, t)
        assert pl.frames_written == written and len(pl.first_writes) == 2
        pl.write(_signal(chunk, 98).tobytes())
        _wait(lambda: len(pl.first_writes) == 3, what="playback of reply 3")
        pl.end_of_reply()
        assert drained.wait(30)
    finally:
        pl.stop()


def test_bursts_faster_than_real_time_play_without_an_underrun(tmp_path, alsa):
    """Google-like: 1 s bursts, 3x real time on average: start on the first chunk, never run dry."""
    alsa(playbacks={"spk": tmp_path / "out.wav"})
    pl, drained = _player(jitter_ms=120)
    reply = _signal(RATE * 3)
    chunk = RATE * 40 // 1000
    try:
        t0 = time.monotonic()
        for burst in range(3):
            while time.monotonic() < t0 + burst / 3:
                time.sleep(0.001)
            for i in range(burst * RATE, (burst + 1) * RATE, chunk):
                pl.write(reply[i:i + chunk].tobytes())
        pl.end_of_reply()
        assert drained.wait(30)
        st = pl.stats()
        assert st["underruns"] == 0 and st["jitter"]["hold_ms"] == 0 and st["jitter"]["last_arrival_rate"] > 1.5
    finally:
        pl.stop()
    assert np.array_equal(_wav(tmp_path / "out.wav")[: len(reply)], reply)


def test_jitter_buffer_rules():
    j = JitterBuffer(120)
    assert j.ready(0.02, 0.02, False)  # no history: start on the first period
    j.underrun()
    j.underrun()
    assert j.hold_ms == 80 and not j.ready(0.06, 0.02, False) and j.ready(0.06, 0.02, True)
    for _ in range(5):
        j.underrun()
    assert j.hold_ms == 120  # capped at audio.jitter_ms
    # a reply arriving 5x faster than real time, without underrun: the hold halves each time
    for expect in (60, 30, 0):
        j.begin(0.0)
        for i in range(25):
            j.arrived(0.04, i * 0.008)
        assert j.end() > 4.5 and j.hold_ms == expect
    # at real time: hold at least LATE_HOLD_MS
    j.begin(0.0)
    for i in range(25):
        j.arrived(0.04, i * 0.04)
    assert abs(j.end() - 1.0) < 1e-9 and j.hold_ms == LATE_HOLD_MS
    j.begin(0.0)
    j.arrived(0.04, 0.0)
    assert j.end() is None and j.hold_ms == LATE_HOLD_MS  # one chunk says nothing about the rate
