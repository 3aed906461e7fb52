import numpy as np
import pytest

from edged.audio.convert import Converter
from edged.audio.frames import AudioFrame, FrameRing


def _tone(rate, channels, hz=440.0, seconds=2.0, amp=8000):
    t = np.arange(int(rate * seconds)) / rate
    x = amp * np.sin(2 * np.pi * hz * t)
    return np.repeat(x[:, None], channels, axis=1).round().astype("<i2").tobytes()


def _peak_hz(y, rate=16000):
    seg = y[2000:2000 + rate]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    return np.argmax(spec) * rate / len(seg)


@pytest.mark.parametrize(("rate", "channels", "hz"), [(48000, 2, 440.0), (44100, 1, 1000.0), (44100, 2, 3000.0),
                                                       (22050, 1, 440.0), (16000, 2, 700.0)])
def test_tone_frequency_length_and_chunk_invariance(rate, channels, hz):
    src = _tone(rate, channels, hz)
    one_shot = Converter(rate, channels).process(src)
    conv = Converter(rate, channels)
    rng = np.random.default_rng(7)
    out, i = bytearray(), 0
    while i < len(src):  # odd chunk sizes, even splitting a sample or a stereo frame
        n = int(rng.integers(1, 9000))
        out += conv.process(src[i:i + n])
        i += n
    n_in = len(src) // (2 * channels)
    assert len(out) // 2 == -(-n_in * 16000 // rate)  # exact: ceil(N * 16000 / rate)
    assert bytes(out) == one_shot  # chunk edges leave no trace (no clicks at frame boundaries)
    y = np.frombuffer(bytes(out), "<i2").astype(float)
    assert abs(_peak_hz(y) - hz) <= 1.0
    steady = y[200:-200]
    assert 7800 <= np.abs(steady).max() <= 8100  # passband gain ~1
    # smooth: the sample-to-sample step never exceeds a pure tone's slope (plus rounding)
    assert np.abs(np.diff(steady)).max() <= 2 * np.pi * hz / 16000 * 8000 * 1.02 + 2


def test_alias_suppressed_when_downsampling():
    y = np.frombuffer(Converter(48000, 1).process(_tone(48000, 1, hz=12000.0)), "<i2").astype(float)
    assert np.abs(y[200:-200]).max() < 8000 * 0.01  # above the 8 kHz Nyquist of 16 kHz: filtered out


def test_stereo_downmix_averages_channels():
    left = np.full(4800, 1000, "<i2")
    right = np.full(4800, -3000, "<i2")
    inter = np.stack([left, right], axis=1).reshape(-1).tobytes()
    y = np.frombuffer(Converter(48000, 2).process(inter), "<i2")
    assert np.all(y[100:] == -1000)


def test_passthrough_is_bit_exact():
    src = bytes(range(256)) * 10
    assert Converter(16000, 1).process(src) == src


def test_frame_ring_drops_oldest_and_counts():
    ring = FrameRing(3)
    for i in range(5):
        ring.put(AudioFrame(b"\0\0", 16000, float(i), i))
    assert ring.drops == 2
    assert [ring.get(0).seq for _ in range(3)] == [2, 3, 4]
    assert ring.get(0.01) is None
    with pytest.raises(ValueError, match="capacity"):
        FrameRing(0)
