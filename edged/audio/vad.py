"""Voice activity over 16 kHz audio, made robust to room noise.

Two frame classifiers give a speech probability per sub-frame: webrtcvad (30 ms, 0 or 1) and silero
(512 samples = 32 ms, in onnxruntime).  ``SpeechTracker`` turns those into speech onsets and offsets:

* an energy gate relative to a tracked noise floor: a sub-frame only counts as speech when it is
  ``gate_db`` louder than the floor, the minimum sub-frame energy over the last ``floor_window_ms``
  of the turn (not carried over from the last turn: the room may have changed since); so noise the
  classifier takes for speech now and then cannot keep a turn open;
* hysteresis over a window of sub-frames: speech starts when at least ``on_ratio`` of the window is
  speech and stops when at most ``off_ratio`` is, so a single sub-frame flips nothing.

Once speech has stopped, the silence is counted from the last speech sub-frame; stray speech
sub-frames after that do not restart the count unless they make a new onset, but while any are in
the window (``pending``) the turn is not ended, since they may be the start of the next word.
"""

from __future__ import annotations

import math
import os
from collections import deque
from pathlib import Path

import numpy as np

from ..errors import ModelError
from . import models as M
from .frames import RATE

ENERGY_FLOOR_DB = -100.0  # the energy of digital silence, in dBFS


class WebrtcVad:
    def __init__(self, aggressiveness: int = 2, sub_ms: int = 30) -> None:
        import webrtcvad

        if sub_ms not in (10, 20, 30):
            raise ValueError(f"webrtcvad sub-frames are 10, 20 or 30 ms (got {sub_ms})")
        self._vad = webrtcvad.Vad(aggressiveness)
        self.sub_samples = RATE * sub_ms // 1000
        self.threshold = 0.5

    def reset(self) -> None:
        return None

    def prob(self, sub: np.ndarray) -> float:
        return 1.0 if self._vad.is_speech(sub.tobytes(), RATE) else 0.0


class SileroVad:
    """silero_vad.onnx from the models dir: 512-sample chunks (32 ms), state (2, 1, 128)."""

    def __init__(self, models_dir: str | os.PathLike[str], threshold: float = 0.5) -> None:
        import onnxruntime as ort

        path = Path(models_dir) / M.SILERO
        if not path.is_file():
            raise ModelError(f"{path}: missing; {M.FIX_HINT}")
        opts = ort.SessionOptions()
        opts.inter_op_num_threads = opts.intra_op_num_threads = 1
        try:
            self._sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"{path}: cannot load: {exc}; {M.FIX_HINT}") from None
        self._inputs = {i.name for i in self._sess.get_inputs()}
        self.sub_samples = 512
        self.threshold = threshold
        self._sr = np.array(RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((2, 1, 64), dtype=np.float32)
        self._c = np.zeros((2, 1, 64), dtype=np.float32)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)

    def prob(self, sub: np.ndarray) -> float:
        feed = {"input": (sub.astype(np.float32) / 32768.0)[None], "sr": self._sr}
        if "state" in self._inputs:
            feed["state"] = self._state
            p, self._state = self._sess.run(None, feed)[:2]
        else:
            feed["h"], feed["c"] = self._h, self._c
            p, self._h, self._c = self._sess.run(None, feed)[:3]
        return float(np.asarray(p).ravel()[0])


def make_vad(kind: str, *, aggressiveness: int = 2, models_dir: str | os.PathLike[str] | None = None):
    if kind == "webrtc":
        return WebrtcVad(aggressiveness)
    if kind == "silero":
        if models_dir is None:
            raise ValueError("the silero VAD needs models_dir")
        return SileroVad(models_dir)
    raise ValueError(f"turn.vad: {kind!r} is not a VAD (use 'webrtc' or 'silero')")


def energy_db(sub: np.ndarray) -> float:
    """RMS level of int16 samples in dBFS (digital silence: ENERGY_FLOOR_DB)."""
    ms = float(np.mean(np.square(sub, dtype=np.float64))) / (32768.0 * 32768.0)
    return max(ENERGY_FLOOR_DB, 10.0 * math.log10(ms)) if ms > 0 else ENERGY_FLOOR_DB


class SpeechTracker:
    """Sub-frame speech decisions -> onsets, offsets and the silence since speech (all in samples).

    Feed int16 audio with ``feed``; read ``speaking``, ``onsets``, ``last_speech`` (the sample count at
    the end of the last speech sub-frame, None before any) and ``silence_samples``.
    """

    def __init__(self, vad, *, window_ms: int = 240, on_ratio: float = 0.5, off_ratio: float = 0.25,
                 gate_db: float = 8.0, floor_window_ms: int = 3000, floor_max_db: float = -30.0) -> None:
        self.vad = vad
        self.sub = vad.sub_samples
        sub_ms = 1000 * self.sub / RATE
        self.window = max(2, round(window_ms / sub_ms))
        self.on_count = max(1, math.ceil(on_ratio * self.window))
        self.off_count = max(0, math.floor(off_ratio * self.window))
        self.gate_db = gate_db
        self.floor_max_db = floor_max_db
        self._energies: deque[float] = deque(maxlen=max(1, round(floor_window_ms / sub_ms)))
        self._rest = np.zeros(0, dtype=np.int16)
        self.reset()

    def reset(self) -> None:
        """A new turn: everything starts afresh."""
        self.vad.reset()
        self._energies.clear()
        self._rest = np.zeros(0, dtype=np.int16)
        self._flags: deque[bool] = deque(maxlen=self.window)
        self.samples = 0  # fed into sub-frames (the remainder waits for the next feed)
        self.speaking = False
        self.onsets = 0
        self.first_onset: int | None = None  # sample at the start of the first onset's window
        self.last_speech: int | None = None
        self.ignore_samples = 0

    @property
    def noise_floor_db(self) -> float:
        return min(min(self._energies, default=self.floor_max_db), self.floor_max_db)

    @property
    def pending(self) -> bool:
        """Quiet, but speech sub-frames in the window might yet make an onset: do not end now."""
        return not self.speaking and any(self._flags)

    @property
    def silence_samples(self) -> int:
        if self.last_speech is None:
            return 0
        return self.samples - self.last_speech

    def feed(self, pcm: bytes) -> None:
        x = np.frombuffer(pcm, dtype="<i2")
        if self._rest.size:
            x = np.concatenate([self._rest, x])
        n = x.size // self.sub * self.sub
        for i in range(0, n, self.sub):
            self._step(x[i:i + self.sub])
        self._rest = x[n:].copy()

    def _step(self, sub: np.ndarray) -> None:
        e = energy_db(sub)
        gate = self.noise_floor_db + self.gate_db
        self._energies.append(e)
        p = self.vad.prob(sub)
        self.samples += sub.size
        if self.ignore_samples > 0:
            self.ignore_samples -= sub.size
            flag = False
        else:
            flag = p >= self.vad.threshold and e >= gate
        self._flags.append(flag)
        count = sum(self._flags)
        if not self.speaking:
            if count >= self.on_count:
                self.speaking = True
                self.onsets += 1
                self.last_speech = self.samples
                if self.first_onset is None:
                    self.first_onset = max(0, self.samples - len(self._flags) * self.sub)
        else:
            if flag:
                self.last_speech = self.samples
            if count <= self.off_count:
                self.speaking = False
