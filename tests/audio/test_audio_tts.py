"""The test-speech renderer (edged.dev.tts): espeak-ng voices and festival voices, cached, with clear
errors for a voice that is not there."""

import numpy as np
import pytest

from edged.dev import tts
from edged.errors import EdgedError


def _pcm(path):
    return np.frombuffer(path.read_bytes(), dtype="<i2")


@pytest.mark.parametrize("voice", ["en-us", "festival:cmu_us_slt_arctic_hts"])
def test_renders_speech_at_16_khz_and_caches_it(voice, tmp_path):
    raw = tts.render("turn on the kitchen light", voice=voice, speed=160, cache_dir=tmp_path)
    x = _pcm(raw)
    assert 0.8 * 16000 < x.size < 4 * 16000  # about 1-2 s of speech at 16 kHz
    assert np.abs(x.astype(np.int32)).max() > 3000  # audible, not silence
    assert raw.with_suffix(".wav").read_bytes()[:4] == b"RIFF"
    stamp = raw.stat().st_mtime_ns
    assert tts.render("turn on the kitchen light", voice=voice, speed=160, cache_dir=tmp_path) == raw
    assert raw.stat().st_mtime_ns == stamp  # the second call is a lookup


@pytest.mark.parametrize("voice", ["en-us", "festival:cmu_us_slt_arctic_hts"])
def test_a_render_is_the_same_every_time_and_its_raw_is_its_wav(voice, tmp_path):
    # test speech and the bench's corpus must not change from one fresh cache to the next (sox dithers
    # at random unless told not to)
    import wave

    a = tts.render("set a timer for ten minutes", voice=voice, cache_dir=tmp_path / "a")
    b = tts.render("set a timer for ten minutes", voice=voice, cache_dir=tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    with wave.open(str(a.with_suffix(".wav"))) as w:
        assert w.readframes(w.getnframes()) == a.read_bytes()


def test_festival_and_espeak_voices_differ(tmp_path):
    a = _pcm(tts.render("set a timer", voice="en-us", speed=160, cache_dir=tmp_path))
    b = _pcm(tts.render("set a timer", voice="festival:cmu_us_slt_arctic_hts", speed=160, cache_dir=tmp_path))
    assert a.size != b.size or not np.array_equal(a, b)


@pytest.mark.parametrize("voice,why", [
    ("festival:cmu_us_nobody_hts", "festival voice cmu_us_nobody_hts"),
    ("festival:(system \"id\")", "not a festival voice name"),
])
def test_a_missing_or_strange_festival_voice_is_a_clear_error(voice, why, tmp_path):
    with pytest.raises(EdgedError, match=why.replace("(", r"\(")):
        tts.render("hello", voice=voice, cache_dir=tmp_path)
    assert not list(tmp_path.rglob("*.raw"))  # nothing half-made left in the cache


@pytest.mark.parametrize("voice,tool,package", [
    ("en-us", "espeak-ng", "apt-get install espeak-ng"),
    ("festival:cmu_us_slt_arctic_hts", "text2wave", "apt-get install festival festvox-us-slt-hts"),
])
def test_a_missing_renderer_names_its_debian_package(voice, tool, package, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no tool can be found
    with pytest.raises(EdgedError, match=f"{tool}: not installed \\({package}\\)"):
        tts.render("hello", voice=voice, cache_dir=tmp_path)
