"""Gain on int16 audio: the perceptual level curve, saturating multiplication, a streaming gain.

The curve: loudness is heard roughly logarithmically, so a level 0-100 maps to a gain by a cube,
``gain = (level / 100) ** 3``: 100 is full scale (0 dB), 79 about -6 dB, 50 about -18 dB, 22 about
-40 dB, 10 -60 dB, 0 silence.  Used for ``audio.volume`` and ``cues.volume``.
"""

from __future__ import annotations

import math
import threading

import numpy as np


def gain(level: float) -> float:
    """The perceptual curve: level 0-100 -> linear gain 0-1 (``(level / 100) ** 3``)."""
    if not math.isfinite(level):
        raise ValueError(f"level must be a number (got {level!r})")
    x = min(100.0, max(0.0, float(level))) / 100.0
    return x * x * x


def apply_gain(samples: np.ndarray, g: float | np.ndarray) -> np.ndarray:
    """int16 samples times a gain (a scalar, or one gain per sample), rounded and saturated to int16."""
    return np.clip(np.rint(samples.astype(np.float64) * g), -32768, 32767).astype(np.int16)


class SoftGain:
    """Streaming software gain for S16_LE audio.  A change of gain ramps linearly over ``ramp``
    frames (no click); between changes every sample is ``rint(sample * gain)``, saturated."""

    def __init__(self, g: float = 1.0, *, channels: int = 1, ramp: int = 240) -> None:
        self.channels = channels
        self.ramp = max(0, ramp)
        self._current = float(g)
        self._target = float(g)
        self._step = 0.0  # per frame, fixed when the gain is set
        self._lock = threading.Lock()

    @property
    def gain(self) -> float:
        return self._target

    def set(self, g: float) -> None:
        with self._lock:
            self._target = float(g)
            self._step = abs(self._target - self._current) / self.ramp if self.ramp else 0.0
            if self.ramp == 0:
                self._current = self._target

    def settle(self) -> None:
        """Take the target gain at once, without a ramp (call when nothing is sounding)."""
        with self._lock:
            self._current = self._target

    def apply(self, pcm: bytes) -> bytes:
        """Scale a chunk of whole frames (``len(pcm)`` a multiple of ``2 * channels``)."""
        if len(pcm) % (2 * self.channels):
            raise ValueError("pcm must hold whole frames")
        with self._lock:
            cur, target, step = self._current, self._target, self._step
        x = np.frombuffer(pcm, dtype="<i2").reshape(-1, self.channels)
        n = len(x)
        if cur == target or n == 0:
            if target == 1.0:
                return pcm
            return apply_gain(x, target).astype("<i2").tobytes()
        k = np.arange(1, n + 1, dtype=np.float64)
        g = np.minimum(cur + step * k, target) if target > cur else np.maximum(cur - step * k, target)
        with self._lock:
            if self._target == target:  # not changed again meanwhile
                self._current = float(g[-1])
        return apply_gain(x, g[:, None]).astype("<i2").tobytes()
