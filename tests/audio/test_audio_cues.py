"""Sound cues: the built-in sounds, custom WAVs (conversion, errors), and mixing with ducking."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from edged import config
from edged.audio import cues
from edged.audio.cues import CueBank, CueFileError, CueMixer, load_wav
from edged.errors import ConfigError


def _wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def _s16(a) -> bytes:
    return np.asarray(a, dtype="<i2").tobytes()


def _arr(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<i2")


# -- built-in sounds ---------------------------------------------------------------------------------
def test_builtin_cues_are_short_distinct_and_click_free():
    seen = set()
    for name in config.CUE_NAMES:
        x = cues.builtin(name)
        assert x.dtype == np.int16
        assert 0.1 <= len(x) / cues.RATE <= 1.5, name
        assert np.max(np.abs(x)) == round(cues.PEAK)  # peaks at -6 dBFS
        assert abs(int(x[0])) < 200 and abs(int(x[-1])) < 200  # fades in and out: no click
        seen.add(x.tobytes())
    assert len(seen) == len(config.CUE_NAMES)
    # wake rises, listen_end falls: the same notes in the other order
    wake, end = cues.builtin("wake"), cues.builtin("listen_end")
    assert len(wake) == len(end)


def test_bank_applies_volume_and_switches_off():
    cfg = config.CuesConfig(volume=50, mute_on=config.CueConfig(enabled=False))
    bank = CueBank(cfg)
    bank.load()
    assert bank.get("mute_on") is None
    expected = np.clip(np.rint(cues.builtin("wake").astype(np.float64) * 0.125), -32768, 32767).astype(np.int16)
    assert np.array_equal(bank.get("wake"), expected)  # 50 -> (0.5)**3
    with pytest.raises(KeyError):
        bank.get("doorbell")


# -- custom WAVs -------------------------------------------------------------------------------------
def test_custom_wav_at_24k_mono_is_taken_as_it_is(tmp_path):
    x = (np.arange(2400) % 200 - 100).astype("<i2") * 50
    assert np.array_equal(load_wav(_wav(tmp_path / "a.wav", x, 24000)), x)


def test_custom_wav_stereo_8bit_and_24bit_converted(tmp_path):
    left = np.full(1000, 1000, dtype="<i2")
    right = np.full(1000, 3000, dtype="<i2")
    st = np.stack([left, right], axis=1).reshape(-1)
    assert np.array_equal(load_wav(_wav(tmp_path / "s.wav", st, 24000, channels=2)), np.full(1000, 2000))
    u8 = np.full(500, 128 + 64, dtype=np.uint8)  # +64 of 128 -> half scale
    assert np.array_equal(load_wav(_wav(tmp_path / "u8.wav", u8, 24000, width=1)), np.full(500, 16384))
    v = np.full(300, -4096 * 256, dtype="<i4")  # 24-bit little endian, three bytes each
    raw24 = np.frombuffer(v.tobytes(), dtype=np.uint8).reshape(-1, 4)[:, :3].copy()
    assert np.array_equal(load_wav(_wav(tmp_path / "s24.wav", raw24, 24000, width=3)), np.full(300, -4096))


def test_custom_wav_other_rate_is_resampled(tmp_path):
    rate = 48000
    t = np.arange(rate // 2) / rate  # 0.5 s of 440 Hz
    x = np.rint(np.sin(2 * np.pi * 440 * t) * 10000).astype("<i2")
    y = load_wav(_wav(tmp_path / "48k.wav", x, rate))
    assert len(y) == 12000  # ceil(24000 / 48000 * 24000)
    ref = np.sin(2 * np.pi * 440 * np.arange(12000) / 24000) * 10000
    mid = slice(200, 11800)  # away from the edges, the converter's output is the same tone, aligned
    assert np.max(np.abs(y[mid] - ref[mid])) < 150
    x44 = np.rint(np.sin(2 * np.pi * 440 * np.arange(44100) / 44100) * 10000).astype("<i2")
    assert len(load_wav(_wav(tmp_path / "44k.wav", x44, 44100))) == 24000


@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b"ID3\x03 this is an mp3"), "not a PCM WAV file"),
    (lambda p: p.write_bytes(b""), "not a PCM WAV file"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: _wav(p, np.zeros(0, dtype="<i2"), 24000), "holds no audio"),
    (lambda p: _wav(p, np.zeros(31 * 8000, dtype="<i2"), 8000), "31.0 s long"),
    (lambda p: _wav(p, np.zeros(10, dtype="<i2"), 4000), "sample rate 4000 Hz"),
])
def test_bad_wav_is_a_clear_error(tmp_path, make, reason):
    p = tmp_path / "cue.wav"
    make(p)
    with pytest.raises(CueFileError) as info:
        load_wav(p)
    assert str(info.value).startswith(f"{p}: ") and reason in str(info.value)


def test_unreadable_wav(tmp_path):
    p = tmp_path / "loop.wav"
    p.symlink_to(p)  # open() fails with ELOOP: an OSError that is not "no such file"
    with pytest.raises(CueFileError, match=rf"^{p}: cannot read: Too many levels of symbolic links$"):
        load_wav(p)


def test_bad_cue_file_in_config_names_file_and_key(tmp_path):
    good = _wav(tmp_path / "ring.wav", np.zeros(2400, dtype="<i2"), 16000)
    bad = tmp_path / "wake.mp3"
    bad.write_bytes(b"ID3 not a wav")
    path = tmp_path / "edged.toml"
    path.write_text(f'[cues.ring]\nfile = "{good}"\n[cues.wake]\nfile = "{bad}"\n[cues.offline]\nfile = "{tmp_path}/gone.wav"\n')
    with pytest.raises(ConfigError) as info:
        config.load(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}: cues.wake.file: {bad}: not a PCM WAV file")
    assert lines[1] == f"{path}: cues.offline.file: {tmp_path}/gone.wav: no such file"
    # for a file meant for another machine the paths are not looked at
    assert config.load(path, check_files=False).cues.wake.file == str(bad)


def test_bank_uses_the_custom_file_and_falls_back_when_it_breaks(tmp_path, caplog):
    x = np.full(1200, 8000, dtype="<i2")
    p = _wav(tmp_path / "w.wav", x, 24000)
    cfg = config.CuesConfig(volume=100, wake=config.CueConfig(file=str(p)))
    bank = CueBank(cfg)
    bank.load()
    assert np.array_equal(bank.get("wake"), x)
    p.write_bytes(b"broken since the config was loaded")
    bank.load()
    assert np.array_equal(bank.get("wake"), cues.builtin("wake"))
    assert "not a PCM WAV" in bank.problems["wake"]
    assert any("cues.wake.file" in r.getMessage() for r in caplog.records)


# -- mixing ------------------------------------------------------------------------------------------
def test_mix_without_a_cue_is_the_input_unchanged():
    m = CueMixer(0.3, ramp=0)
    pcm = _s16([1, -2, 32767, -32768])
    assert m.mix(pcm) == pcm and not m.active


def test_mix_adds_the_cue_and_ducks_the_reply_exactly():
    m = CueMixer(0.5, ramp=0)
    reply = np.array([1000, -1000, 301, 3, 2000, 2000], dtype="<i2")
    m.play(np.array([10, 20, 30], dtype=np.int16))
    out = _arr(m.mix(reply.tobytes()))
    # while the cue sounds: reply * 0.5 + cue, rounded half to even (150.5 + 30 -> 180); then the reply alone
    assert out.tolist() == [510, -480, 180, 3, 2000, 2000]
    assert not m.active  # the cue is over and the gain back at 1


def test_ducking_ramps_down_and_up():
    m = CueMixer(0.2, ramp=4)  # the gain moves by (1 - 0.2) / 4 = 0.2 per frame
    m.play(np.zeros(6, dtype=np.int16))
    out = _arr(m.mix(np.full(12, 1000, dtype="<i2").tobytes()))
    assert out.tolist() == [800, 600, 400, 200, 200, 200, 400, 600, 800, 1000, 1000, 1000]


def test_saturation_instead_of_wrap_around():
    m = CueMixer(1.0, ramp=0)
    m.play(np.array([20000, -20000, 32767], dtype=np.int16))
    out = _arr(m.mix(_s16([20000, -20000, -32768])))
    assert out.tolist() == [32767, -32768, -1]


def test_streaming_in_any_chunks_equals_one_go():
    rng = np.random.default_rng(7)
    reply = rng.integers(-30000, 30000, 5000).astype("<i2")
    cue = rng.integers(-20000, 20000, 1700).astype(np.int16)
    whole = CueMixer(0.3, ramp=240)
    whole.play(cue)
    expected = whole.mix(reply.tobytes())
    chunked = CueMixer(0.3, ramp=240)
    chunked.play(cue)
    out, i = b"", 0
    for size in [1, 7, 480, 239, 1000, 3, 3270]:
        out += chunked.mix(reply[i: i + size].tobytes())
        i += size
    assert i == len(reply) and out == expected


def test_looped_cue_sounds_until_stopped_and_stereo_gets_it_on_both_channels():
    m = CueMixer(0.0, channels=2, ramp=0)
    m.play(np.array([1, 2], dtype=np.int16), loop=True)
    out = _arr(m.mix(np.full(10, 500, dtype="<i2").tobytes())).reshape(-1, 2)
    assert out.tolist() == [[1, 1], [2, 2], [1, 1], [2, 2], [1, 1]]  # reply ducked to 0
    m.stop()
    assert _arr(m.mix(np.full(4, 500, dtype="<i2").tobytes())).tolist() == [500, 500, 500, 500]


def test_a_new_cue_replaces_the_one_sounding():
    m = CueMixer(1.0, ramp=0)
    m.play(np.array([100, 100, 100, 100], dtype=np.int16))
    assert _arr(m.mix(_s16([0, 0]))).tolist() == [100, 100]
    m.play(np.array([7], dtype=np.int16))
    assert _arr(m.mix(_s16([0, 0, 0]))).tolist() == [7, 0, 0]
    assert m.played == 2


def test_bad_input_to_the_mixer():
    m = CueMixer(0.5)
    with pytest.raises(ValueError, match="whole frames"):
        m.mix(b"\x00")
    with pytest.raises(ValueError, match="int16"):
        m.play(np.zeros(4, dtype=np.float32))
    with pytest.raises(ValueError, match="duck"):
        CueMixer(1.5)
