"""Whisper-style log-mel features in numpy: the input of the Smart Turn v3 model.

The model takes ``input_features`` of shape (1, 80, 800): 8 s of 16 kHz audio, the last 8 s of the
turn, zero-padded on the left when shorter, normalised to zero mean and unit variance (over the whole
padded 8 s), then a 400-point STFT (periodic Hann window, hop 160, centred with reflection padding),
power spectrum, 80 Slaney-normalised mel filters on the Slaney mel scale from 0 Hz to 8 kHz,
log10 with a floor of 1e-10, the last frame dropped, clamped to 8 decades below the maximum and
mapped by (x + 4) / 4.  That is what Whisper's feature extractor computes with ``chunk_length=8``;
tests/audio/test_audio_melspec.py checks this module against ``transformers``' implementation.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import as_strided

RATE = 16000
SECONDS = 8
SAMPLES = RATE * SECONDS  # 128000
N_FFT = 400
HOP = 160
N_MELS = 80
FRAMES = SAMPLES // HOP  # 800


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear (3 per 200 Hz) below 1 kHz, logarithmic above it."""
    f = np.asarray(f, dtype=np.float64)
    step = np.log(6.4) / 27.0
    return np.where(f < 1000.0, f * 3.0 / 200.0, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / step)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    step = np.log(6.4) / 27.0
    return np.where(m < 15.0, m * 200.0 / 3.0, 1000.0 * np.exp((m - 15.0) * step))


@functools.cache
def mel_filters(n_mels: int = N_MELS, n_fft: int = N_FFT, rate: int = RATE) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, each scaled to unit area (Slaney norm)."""
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(rate / 2), n_mels + 2))
    bins = np.linspace(0.0, rate / 2, n_fft // 2 + 1)
    out = np.zeros((n_mels, bins.size))
    for i in range(n_mels):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        out[i] = np.interp(bins, [lo, mid, hi], [0.0, 1.0, 0.0], left=0.0, right=0.0) * (2.0 / (hi - lo))
    return out.astype(np.float32)


@functools.cache
def _window(n: int = N_FFT) -> np.ndarray:
    k = np.arange(n)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * k / n)).astype(np.float32)  # periodic Hann


def fit(audio: np.ndarray) -> np.ndarray:
    """The last ``SECONDS`` of ``audio`` (float), zero-padded at the start to exactly ``SAMPLES``."""
    x = np.asarray(audio, dtype=np.float32).ravel()
    if x.size >= SAMPLES:
        return x[x.size - SAMPLES:]
    return np.concatenate([np.zeros(SAMPLES - x.size, dtype=np.float32), x])


def log_mel(audio: np.ndarray) -> np.ndarray:
    """(80, 800) float32 features of the last 8 s of ``audio`` (float in [-1, 1] at 16 kHz)."""
    x = fit(audio)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    half = N_FFT // 2
    padded = np.concatenate([x[half:0:-1], x, x[-2:-half - 2:-1]])  # reflect, without the edge sample
    n = 1 + (padded.size - N_FFT) // HOP
    frames = as_strided(padded, shape=(n, N_FFT), strides=(HOP * padded.strides[0], padded.strides[0]),
                        writeable=False)
    spec = np.fft.rfft(frames * _window(), axis=1)
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
    mel = mel_filters() @ power[:-1].T  # (80, 800): the last frame is not used
    logs = np.log10(np.maximum(mel, 1e-10))
    logs = np.maximum(logs, logs.max() - 8.0)
    return ((logs + 4.0) / 4.0).astype(np.float32)
