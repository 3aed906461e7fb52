"""Wake-word detection with openWakeWord (onnx backend, models from the models directory).

Debounce: ``trigger_frames`` consecutive frames over ``threshold``.  Refractory: after a detection the
detector stays quiet for ``refractory_s`` of audio time (frame timestamps), so one utterance fires once.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError
from . import models as M
from .frames import AudioFrame

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Detection:
    model: str
    score: float
    t: float  # monotonic end time of the detecting frame
    seq: int  # seq of the detecting frame


class WakeDetector:
    def __init__(self, models: list[str], models_dir: str | os.PathLike[str], threshold: float = 0.5,
                 trigger_frames: int = 1, refractory_s: float = 2.0) -> None:
        if not models:
            raise ValueError("WakeDetector needs at least one wake model")
        if not 0 < threshold < 1:
            raise ValueError(f"wake threshold must be between 0 and 1 (got {threshold})")
        self.names = list(models)
        self.models_dir = Path(models_dir)
        self.threshold, self.trigger_frames, self.refractory_s = threshold, max(1, trigger_frames), refractory_s
        self._model = None
        self._labels: dict[str, str] = {}  # openWakeWord's key -> our name
        self._run: dict[str, int] = {}
        self._quiet_until = float("-inf")
        self.detections = 0
        self.last: Detection | None = None
        self.frames = 0

    def load(self) -> None:
        """Load the models (I/O; called by the Ear's start(), or explicitly).  Raises ModelError."""
        if self._model is not None:
            return
        problems = M.check(self.models_dir, self.names)
        if problems:
            raise ModelError("; ".join(problems) + f"; {M.FIX_HINT}")
        from openwakeword.model import Model

        paths = [str(M.resolve(n, self.models_dir)) for n in self.names]
        try:
            self._model = Model(wakeword_models=paths, inference_framework="onnx",
                                melspec_model_path=str(self.models_dir / M.MELSPEC),
                                embedding_model_path=str(self.models_dir / M.EMBEDDING))
        except Exception as exc:  # onnxruntime refuses a broken custom file
            raise ModelError(f"cannot load wake models {paths}: {exc}; {M.FIX_HINT}") from None
        keys = list(self._model.models.keys())
        self._labels = {k: n for k, n in zip(keys, self.names, strict=False)}
        self._run = dict.fromkeys(keys, 0)
        log.info("wake models loaded: %s (threshold %.2f, trigger_frames %d)", ", ".join(self.names),
                 self.threshold, self.trigger_frames)

    def reset(self) -> None:
        """Forget the audio history and the debounce state (not the refractory period)."""
        if self._model is not None:
            self._model.reset()
        self._run = dict.fromkeys(self._run, 0)

    def scores(self, frame: AudioFrame) -> dict[str, float]:
        """Raw scores for one frame (no debounce)."""
        if self._model is None:
            self.load()
        pred = self._model.predict(np.frombuffer(frame.pcm, dtype="<i2"))
        return {self._labels.get(k, k): float(v) for k, v in pred.items()}

    def process(self, frame: AudioFrame) -> Detection | None:
        if self._model is None:
            self.load()
        self.frames += 1
        pred = self._model.predict(np.frombuffer(frame.pcm, dtype="<i2"))
        best: Detection | None = None
        for key, score in pred.items():
            score = float(score)
            self._run[key] = self._run.get(key, 0) + 1 if score >= self.threshold else 0
            if self._run[key] >= self.trigger_frames and (best is None or score > best.score):
                best = Detection(self._labels.get(key, key), score, frame.t, frame.seq)
        if best is None:
            return None
        if frame.t < self._quiet_until:
            log.debug("wake %s score %.3f ignored (refractory)", best.model, best.score)
            return None
        self._quiet_until = frame.t + self.refractory_s
        self._run = dict.fromkeys(self._run, 0)
        self.detections += 1
        self.last = best
        log.info("wake word %s detected, score %.3f (frame %d)", best.model, best.score, best.seq)
        return best

    def stats(self) -> dict:
        last = self.last
        return {"models": self.names, "detections": self.detections, "frames": self.frames,
                "last_model": last.model if last else None, "last_score": round(last.score, 3) if last else None}
