"""End of a spoken turn: VAD (webrtcvad, or silero in onnxruntime) over 16 kHz frames.

A turn ends with "silence" after ``silence_ms`` of non-speech that follows speech, "max_length" at
``max_utterance_s`` of turn audio, or "no_speech" if no speech started within ``no_speech_timeout_s``.
Time is counted in audio (samples), not wall clock, so a backlog does not distort it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import ModelError
from . import models as M
from .frames import RATE, AudioFrame

log = logging.getLogger(__name__)

EndReason = Literal["silence", "max_length", "no_speech"]


class _WebrtcVad:
    def __init__(self, aggressiveness: int, sub_ms: int = 30) -> None:
        import webrtcvad

        if sub_ms not in (10, 20, 30):
            raise ValueError(f"webrtcvad sub-frames are 10, 20 or 30 ms (got {sub_ms})")
        self._vad = webrtcvad.Vad(aggressiveness)
        self._n = 2 * RATE * sub_ms // 1000
        self._rest = b""

    def reset(self) -> None:
        self._rest = b""

    def speech(self, pcm: bytes) -> list[bool]:
        data = self._rest + pcm
        out = [self._vad.is_speech(data[i:i + self._n], RATE) for i in range(0, len(data) - self._n + 1, self._n)]
        self._rest = data[len(out) * self._n:]
        return out


class _SileroVad:
    """silero_vad.onnx from the models dir: 512-sample chunks (32 ms), state (2, 1, 128)."""

    CHUNK = 512

    def __init__(self, models_dir: str | os.PathLike[str], threshold: float = 0.5) -> None:
        import onnxruntime as ort

        path = Path(models_dir) / M.SILERO
        problems = [] if path.is_file() else [f"{path}: missing"]
        if problems:
            raise ModelError(f"{problems[0]}; {M.FIX_HINT}")
        opts = ort.SessionOptions()
        opts.inter_op_num_threads = opts.intra_op_num_threads = 1
        try:
            self._sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"{path}: cannot load: {exc}; {M.FIX_HINT}") from None
        self._inputs = {i.name for i in self._sess.get_inputs()}
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self._rest = np.zeros(0, dtype=np.float32)
        self._h = np.zeros((2, 1, 64), dtype=np.float32)
        self._c = np.zeros((2, 1, 64), dtype=np.float32)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)

    def speech(self, pcm: bytes) -> list[bool]:
        x = np.concatenate([self._rest, np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0])
        out = []
        n = len(x) // self.CHUNK * self.CHUNK
        for i in range(0, n, self.CHUNK):
            feed = {"input": x[None, i:i + self.CHUNK], "sr": np.array(RATE, dtype=np.int64)}
            if "state" in self._inputs:
                feed["state"] = self._state
                prob, self._state = self._sess.run(None, feed)[:2]
            else:
                feed["h"], feed["c"] = self._h, self._c
                prob, self._h, self._c = self._sess.run(None, feed)[:3]
            out.append(float(np.asarray(prob).ravel()[0]) >= self.threshold)
        self._rest = x[n:]
        return out


class Endpointer:
    def __init__(self, kind: str = "webrtc", silence_ms: int = 700, max_utterance_s: float = 15.0,
                 no_speech_timeout_s: float = 5.0, *, aggressiveness: int = 2,
                 models_dir: str | os.PathLike[str] | None = None, speech_ms: int = 90) -> None:
        if kind not in ("webrtc", "silero"):
            raise ValueError(f"turn.vad: {kind!r} is not a VAD (use 'webrtc' or 'silero')")
        if kind == "silero" and models_dir is None:
            raise ValueError("the silero VAD needs models_dir")
        self.kind = kind
        self.silence_ms, self.max_utterance_s, self.no_speech_timeout_s = silence_ms, max_utterance_s, no_speech_timeout_s
        self.speech_ms = speech_ms  # this much speech (in a row) counts as "speech started"
        self._aggr, self._models_dir = aggressiveness, models_dir
        self._vad = None
        self.reset()

    def load(self) -> None:
        if self._vad is None:
            self._vad = _WebrtcVad(self._aggr) if self.kind == "webrtc" else _SileroVad(self._models_dir)

    def reset(self) -> None:
        if self._vad is not None:
            self._vad.reset()
        self.samples = 0
        self.speech_started = False
        self._run_speech_ms = 0.0
        self._silence_ms = 0.0
        self._ignore_ms = 0.0

    def ignore_speech_ms(self, ms: float) -> None:
        """Do not count speech in the next ``ms`` of audio as the start of speech (a wake word's tail)."""
        self._ignore_ms = ms

    def process(self, frame: AudioFrame) -> EndReason | None:
        if self._vad is None:
            self.load()
        flags = self._vad.speech(frame.pcm)
        sub_ms = frame.duration * 1000 / len(flags) if flags else 0.0
        self.samples += frame.samples
        for s in flags:
            if self._ignore_ms > 0:
                self._ignore_ms -= sub_ms
                continue
            if s:
                self._run_speech_ms += sub_ms
                self._silence_ms = 0.0
                if self._run_speech_ms >= self.speech_ms:
                    self.speech_started = True
            else:
                self._run_speech_ms = 0.0
                self._silence_ms += sub_ms
        elapsed = self.samples / RATE
        if self.speech_started and self._silence_ms >= self.silence_ms:
            return "silence"
        if elapsed >= self.max_utterance_s:
            return "max_length"
        if not self.speech_started and elapsed >= self.no_speech_timeout_s:
            return "no_speech"
        return None
