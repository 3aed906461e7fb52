"""Streaming conversion from the device's format (e.g. 48 kHz stereo, 44.1 kHz) to 16 kHz mono S16_LE.

A windowed-sinc resampler evaluated at exact rational positions (integer arithmetic, so no drift),
keeping its input history across calls: chunk boundaries leave no trace in the output.  After N input
frames in total, exactly ``ceil(N * rate_out / rate_in)`` output samples have been produced, however
the input was chunked.  The filter is causal: the output lags by ``half_width`` input samples.
"""

from __future__ import annotations

import math

import numpy as np


class Converter:
    def __init__(self, rate_in: int, channels_in: int, rate_out: int = 16000, *, zeros: int = 8) -> None:
        if rate_in <= 0 or rate_out <= 0:
            raise ValueError(f"sample rates must be positive (got {rate_in} -> {rate_out})")
        if channels_in < 1:
            raise ValueError(f"channels must be at least 1 (got {channels_in})")
        g = math.gcd(rate_in, rate_out)
        self.rate_in, self.rate_out, self.channels = rate_in, rate_out, channels_in
        self._up, self._down = rate_out // g, rate_in // g  # output k sits at input k * down / up
        self.passthrough = rate_in == rate_out
        fc = 0.5 * min(1.0, rate_out / rate_in) * 0.9  # cutoff, cycles per input sample
        self._fc = fc
        self.half_width = 0 if self.passthrough else int(math.ceil(zeros / (2 * fc)))
        self._taps = 2 * self.half_width + 1
        self._hist = np.zeros(self._taps, dtype=np.float64)  # input samples [n_in - taps, n_in)
        self.n_in = 0
        self.n_out = 0
        self._rem = b""  # a partial input frame (bytes) carried to the next call
        self._j = np.arange(self._taps, dtype=np.int64)
        # one filter per output phase (k * down mod up), computed once when there are few phases
        self._table = self._filters(np.arange(self._up) / self._up) if not self.passthrough and self._up <= 2048 \
            else None

    def _filters(self, frac: np.ndarray) -> np.ndarray:
        # taps: input n = i0 - j, j = 0..taps-1; distance from the (delayed) centre:
        d = frac[:, None] + self._j[None, :] - self.half_width
        w = 0.5 + 0.5 * np.cos(np.pi * np.clip(d / (self.half_width + 1), -1, 1))  # Hann window
        h = np.sinc(2 * self._fc * d) * w
        return h / h.sum(axis=1, keepdims=True)  # unit DC gain at every phase

    def reset(self) -> None:
        self._hist[:] = 0
        self.n_in = self.n_out = 0
        self._rem = b""

    def _mono(self, pcm: bytes) -> np.ndarray:
        frame = 2 * self.channels
        data = self._rem + pcm
        usable = len(data) - len(data) % frame
        self._rem = data[usable:]
        x = np.frombuffer(data[:usable], dtype="<i2")
        if self.channels == 1:
            return x.astype(np.float64)
        return x.reshape(-1, self.channels).astype(np.float64).mean(axis=1)

    def process(self, pcm: bytes) -> bytes:
        """Convert a chunk of device audio (S16_LE interleaved); returns 16 kHz mono S16_LE bytes."""
        if self.passthrough and self.channels == 1:
            data = self._rem + pcm
            usable = len(data) - len(data) % 2
            self._rem = data[usable:]
            self.n_in += usable // 2
            self.n_out += usable // 2
            return data[:usable]
        x = self._mono(pcm)
        if self.passthrough:
            self.n_in += len(x)
            self.n_out += len(x)
            return _to_s16(x)
        buf = np.concatenate([self._hist, x])  # buf[i] is input sample (n_in - taps + i)
        base = self.n_in - self._taps
        n_total = self.n_in + len(x)
        k_end = -(-n_total * self._up // self._down)  # ceil(n_total * up / down)
        ks = np.arange(self.n_out, k_end, dtype=np.int64)
        if len(ks):
            num = ks * self._down
            i0 = num // self._up  # newest input sample used by output k
            phase = num % self._up
            h = self._table[phase] if self._table is not None else self._filters(phase / self._up)
            idx = (i0 - base)[:, None] - self._j[None, :]
            y = np.einsum("ij,ij->i", buf[idx], h)
            out = _to_s16(y)
        else:
            out = b""
        self._hist = buf[-self._taps:].copy()
        self.n_in = n_total
        self.n_out = int(k_end)
        return out


def _to_s16(y: np.ndarray) -> bytes:
    return np.clip(np.rint(y), -32768, 32767).astype("<i2").tobytes()
