import threading
import time
import wave

import numpy as np

from edged.audio.playback import Player


def _ramp(n):
    return (np.arange(n) % 3000 - 1500).astype("<i2").tobytes()


def _wav(path):
    with wave.open(str(path)) as w:
        return w.getframerate(), w.getnchannels(), w.readframes(w.getnframes())


def _wait(pred, timeout=30):
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.01)
    return pred()


def test_reply_is_written_bit_exact_then_drained(tmp_path, alsa):
    alsa(playbacks={"spk": tmp_path / "out.wav"})
    drained = threading.Event()
    pl = Player("spk", jitter_ms=100, on_drained=drained.set)
    pl.start()
    reply = _ramp(24000 // 2)  # 0.5 s
    try:
        for i in range(0, len(reply), 960):  # 20 ms pieces, as the model streams them
            pl.write(reply[i:i + 960])
        assert pl.playing
        pl.end_of_reply()
        assert drained.wait(30)
        assert not pl.playing and pl.stats()["underruns"] == 0
    finally:
        pl.stop()
    rate, ch, data = _wav(tmp_path / "out.wav")
    assert (rate, ch) == (24000, 1) and data == reply


def test_flush_stops_within_one_period(tmp_path, alsa):
    alsa(playbacks={"spk": tmp_path / "out.wav"})
    drained = threading.Event()
    pl = Player("spk", jitter_ms=0, period_ms=20, on_drained=drained.set)
    pl.start()
    try:
        pl.write(_ramp(24000 * 10))  # 10 s queued
        assert _wait(lambda: pl.frames_written >= 24000 * 0.2)
        before = pl.frames_written
        dropped = pl.flush()
        time.sleep(0.5)
        after = pl.frames_written
        assert dropped > 24000 * 2 * 8  # most of it never played
        assert after - before <= pl.period_frames  # at most the one period in flight
        assert not pl.playing and not drained.is_set()  # a flushed reply does not "drain"
        pl.write(_ramp(2400))  # the next reply plays normally
        pl.end_of_reply()
        assert drained.wait(30)
    finally:
        pl.stop()
    _, _, data = _wav(tmp_path / "out.wav")
    assert data.endswith(_ramp(2400))


def test_underrun_counted_when_reply_stalls(tmp_path, alsa):
    alsa(playbacks={"spk": tmp_path / "out.wav"})
    drained = threading.Event()
    pl = Player("spk", jitter_ms=40, on_drained=drained.set)
    pl.start()
    try:
        pl.write(_ramp(2400))  # 100 ms, then the network stalls
        assert _wait(lambda: pl.stats()["underruns"] == 1)
        pl.write(_ramp(2400))
        pl.end_of_reply()
        assert drained.wait(30)
        assert pl.stats()["underruns"] == 1
    finally:
        pl.stop()
    _, _, data = _wav(tmp_path / "out.wav")
    assert data == _ramp(2400) * 2  # no silence inserted: the writer waited


def test_48k_stereo_device_and_recovery_from_missing_device(tmp_path, alsa):
    alsa(playbacks={"other": tmp_path / "x.wav"})  # "spk48" does not exist yet
    status, drained = [], threading.Event()
    pl = Player("spk48", rate=48000, channels=2, jitter_ms=0, on_drained=drained.set,
                on_status=lambda s, e: status.append((s, e)), backoff_initial_s=0.05, backoff_max_s=0.2)
    pl.start()
    try:
        assert _wait(lambda: pl.stats()["failures"] >= 2)
        assert status[0][0] == "failed" and "spk48" in status[0][1]
        alsa(playbacks={"spk48": tmp_path / "out48.wav"})
        assert _wait(lambda: pl.stats()["state"] == "running")
        t = np.arange(24000) / 24000
        pl.write((8000 * np.sin(2 * np.pi * 1000 * t)).round().astype("<i2").tobytes())
        pl.end_of_reply()
        assert drained.wait(30)
    finally:
        pl.stop()
    rate, ch, data = _wav(tmp_path / "out48.wav")
    assert (rate, ch) == (48000, 2)
    y = np.frombuffer(data, "<i2").reshape(-1, 2)
    assert np.array_equal(y[:, 0], y[:, 1]) and abs(len(y) - 48000) <= 960
    seg = y[2000:2000 + 48000 // 2, 0].astype(float)
    assert abs(np.argmax(np.abs(np.fft.rfft(seg))) * 48000 / len(seg) - 1000) < 3


class _CardPCM:
    """A PCM on a card that can be unplugged: a disconnecting sound card cannot exist here (no card)."""

    def __init__(self, card: dict) -> None:
        self.card, self.closed = card, False

    def state(self) -> int:
        import alsaaudio

        return alsaaudio.PCM_STATE_DISCONNECTED if self.card["gone"] else alsaaudio.PCM_STATE_PREPARED

    def write(self, data: bytes) -> int:
        return len(data) // 2

    def drop(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_an_idle_writer_closes_a_disconnected_device_and_reopens_it(monkeypatch):
    from edged.audio import playback

    card = {"gone": False}
    opened: list[_CardPCM] = []

    def open_pcm(kind, device, rate, channels, period_frames):
        if card["gone"]:
            raise OSError("No such device")
        opened.append(_CardPCM(card))
        return opened[-1]

    monkeypatch.setattr(playback, "open_pcm", open_pcm)
    status = []
    pl = Player("hw:CARD=Gone", jitter_ms=0, on_status=lambda s, e: status.append((s, e)),
                backoff_initial_s=0.05, backoff_max_s=0.2)
    pl.start()
    try:
        assert _wait(lambda: pl.stats()["state"] == "running")
        card["gone"] = True  # unplugged while nothing plays: no write will fail to tell
        assert _wait(lambda: opened[0].closed, 10)
        assert ("failed", "playback device 'hw:CARD=Gone' disconnected") in status
        card["gone"] = False
        assert _wait(lambda: len(opened) == 2 and pl.stats()["state"] == "running", 10)
        assert not opened[1].closed
    finally:
        pl.stop()


def test_a_device_that_opens_but_cannot_be_written_waits_out_the_backoff(monkeypatch):
    """A playback device whose open works and whose writes fail at once was reopened at once, in a
    hot loop: with a looping ring cue about 31 thousand open/fail cycles and 62 thousand log lines a
    second.  Now a device that has not written since it was opened waits out the backoff."""
    from edged import config
    from edged.audio import playback
    from edged.audio.cues import CueBank

    opened = []

    class _Broken:
        def write(self, data: bytes) -> int:
            raise OSError("Input/output error")

        def state(self) -> int:
            import alsaaudio

            return alsaaudio.PCM_STATE_PREPARED

        def drop(self) -> None:
            pass

        def close(self) -> None:
            pass

    def open_pcm(kind, device, rate, channels, period_frames):
        opened.append(time.monotonic())
        return _Broken()

    monkeypatch.setattr(playback, "open_pcm", open_pcm)
    cues = CueBank(config.parse({"cues": {}}, "test.toml").cues, rate=24000)
    cues.load()
    pl = Player("hw:CARD=Broken", jitter_ms=0, cues=cues, backoff_initial_s=0.05, backoff_max_s=0.2)
    pl.start()
    try:
        assert pl.play_cue("ring", loop=True)
        assert _wait(lambda: pl.stats()["failures"] >= 3, 10)
        time.sleep(1.0)  # a second of the fault: how many reopens it makes is the measure
        assert len(opened) <= 20, len(opened)
    finally:
        pl.stop()
