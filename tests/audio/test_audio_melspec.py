"""The numpy log-mel features against transformers' WhisperFeatureExtractor (a dev-only dependency),
configured as Smart Turn v3 uses it: 8 s, max_length padding, zero-mean unit-variance normalisation."""

import numpy as np
import pytest
from transformers import WhisperFeatureExtractor

from edged.audio import melspec

TOL = 1e-4


@pytest.fixture(scope="module")
def reference():
    fe = WhisperFeatureExtractor(chunk_length=8)

    def run(x: np.ndarray) -> np.ndarray:
        out = fe(melspec.fit(x), sampling_rate=16000, padding="max_length", max_length=melspec.SAMPLES,
                 truncation=True, do_normalize=True, return_tensors="np")
        return out.input_features[0]

    return run


def _signals(clips):
    rng = np.random.default_rng(7)
    t = np.arange(3 * 16000) / 16000
    speech = np.frombuffer(clips["cmd_light"], "<i2").astype(np.float32) / 32768
    return {
        "speech, 1.4 s (left-padded)": speech,
        "speech in white noise, 10 s (last 8 s kept)": np.concatenate([speech] * 7)[:160000]
        + rng.normal(0, 0.003, 160000).astype(np.float32),
        "gated tone, 3 s": (0.3 * np.sin(2 * np.pi * 440 * t) * (t % 0.5 < 0.25)).astype(np.float32),
        "white noise, exactly 8 s": rng.normal(0, 0.1, 128000).astype(np.float32),
        "quiet chirp": (1e-3 * np.sin(2 * np.pi * (100 + 1000 * t) * t)).astype(np.float32),
    }


def test_log_mel_matches_whisper_feature_extractor(reference, clips):
    for name, x in _signals(clips).items():
        mine, ref = melspec.log_mel(x), reference(x)
        assert mine.shape == ref.shape == (80, 800), name
        assert mine.dtype == np.float32
        err = float(np.abs(mine - ref).max())
        assert err < TOL, f"{name}: max abs difference {err}"


def test_features_are_sensitive_to_the_audio(reference):
    """The comparison would catch a swapped padding side or a missing normalisation."""
    x = np.random.default_rng(1).normal(0, 0.1, 32000).astype(np.float32)
    right_padded = np.concatenate([x, np.zeros(128000 - x.size, np.float32)])
    assert np.abs(melspec.log_mel(right_padded) - reference(x)).max() > 0.1
    assert np.abs(melspec.log_mel(x * 0.5) - melspec.log_mel(x)).max() < TOL  # normalised: scale-free


def test_fit_keeps_the_last_8_s_and_pads_at_the_start():
    x = np.arange(130000, dtype=np.float32)
    assert melspec.fit(x)[0] == 2000 and melspec.fit(x)[-1] == 129999
    y = melspec.fit(np.ones(1000, np.float32))
    assert y.size == 128000 and not y[:127000].any() and y[127000:].all()


def test_mel_scale_round_trip_and_filters():
    f = np.array([0.0, 200.0, 999.0, 1000.0, 4000.0, 8000.0])
    assert np.allclose(melspec.mel_to_hz(melspec.hz_to_mel(f)), f)
    fb = melspec.mel_filters()
    assert fb.shape == (80, 201) and (fb >= 0).all() and (fb.max(axis=1) > 0).all()
