"""Wake-word detection: openWakeWord's models, run by one of two engines behind one interface.

``engine="lean"`` (the default) runs the models with onnxruntime and numpy (:mod:`.oww_lean`), without
importing the ``openwakeword`` package and the scipy/scikit-learn/requests/tqdm it pulls in.
``engine="openwakeword"`` uses the package itself (the reference, and a fallback).

Debounce: ``trigger_frames`` consecutive frames over ``threshold``.  Refractory: after a detection the
detector stays quiet for ``refractory_s`` of audio time (frame timestamps), so one utterance fires once.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import ModelError
from . import models as M
from .frames import AudioFrame

log = logging.getLogger(__name__)

ENGINES = ("lean", "openwakeword")


@dataclass(frozen=True, slots=True)
class Detection:
    model: str
    score: float
    t: float  # monotonic end time of the detecting frame
    seq: int  # seq of the detecting frame


class _Engine(Protocol):
    def reset(self) -> None: ...
    def predict(self, pcm: np.ndarray) -> dict[str, float]: ...  # our model names -> score


class _Lean:
    def __init__(self, names: list[str], paths: list[Path], models_dir: Path, settings: Any = None) -> None:
        from .oww_lean import LeanWakeModel

        self.model = LeanWakeModel(dict(zip(names, paths, strict=True)), models_dir / M.MELSPEC,
                                   models_dir / M.EMBEDDING, settings=settings)

    def reset(self) -> None:
        self.model.reset()

    def predict(self, pcm: np.ndarray) -> dict[str, float]:
        return self.model.predict(pcm)


class _Package:
    """The ``openwakeword`` package (imported only when this engine is chosen)."""

    def __init__(self, names: list[str], paths: list[Path], models_dir: Path) -> None:
        from openwakeword.model import Model

        self.model = Model(wakeword_models=[str(p) for p in paths], inference_framework="onnx",
                           melspec_model_path=str(models_dir / M.MELSPEC),
                           embedding_model_path=str(models_dir / M.EMBEDDING))
        self.labels = dict(zip(self.model.models.keys(), names, strict=False))  # package key -> our name

    def reset(self) -> None:
        self.model.reset()

    def predict(self, pcm: np.ndarray) -> dict[str, float]:
        return {self.labels.get(k, k): float(v) for k, v in self.model.predict(pcm).items()}


class WakeDetector:
    def __init__(self, models: list[str], models_dir: str | os.PathLike[str], threshold: float = 0.5,
                 trigger_frames: int = 1, refractory_s: float = 2.0, engine: str = "lean",
                 session_settings: Any = None) -> None:
        if not models:
            raise ValueError("WakeDetector needs at least one wake model")
        if not 0 < threshold < 1:
            raise ValueError(f"wake threshold must be between 0 and 1 (got {threshold})")
        if engine not in ENGINES:
            raise ValueError(f"wake engine must be one of {', '.join(ENGINES)} (got {engine!r})")
        self.names = list(dict.fromkeys(models))  # one entry per model, in order
        self.models_dir = Path(models_dir)
        self.engine = engine
        self.session_settings = session_settings  # lean engine: oww_lean.SessionSettings, None = its defaults
        self.threshold, self.trigger_frames, self.refractory_s = threshold, max(1, trigger_frames), refractory_s
        self._engine: _Engine | None = None
        self._run: dict[str, int] = {}
        self._quiet_until = float("-inf")
        self.detections = 0
        self.last: Detection | None = None
        self.frames = 0

    def load(self) -> None:
        """Load the models (I/O; called by the Ear's start(), or explicitly).  Raises ModelError."""
        if self._engine is not None:
            return
        problems = M.check(self.models_dir, self.names)
        if problems:
            raise ModelError("; ".join(problems) + f"; {M.FIX_HINT}")
        paths = [M.resolve(n, self.models_dir) for n in self.names]
        try:
            if self.engine == "lean":
                self._engine = _Lean(self.names, paths, self.models_dir, self.session_settings)
            else:
                self._engine = _Package(self.names, paths, self.models_dir)
        except ImportError as exc:
            raise ModelError(f"wake engine {self.engine!r} is not installed ({exc}); set wake.engine = \"lean\" "
                             "or install openwakeword") from None
        except Exception as exc:  # onnxruntime refuses a broken custom file
            raise ModelError(f"cannot load wake models {[str(p) for p in paths]}: {exc}; {M.FIX_HINT}") from None
        self._run = dict.fromkeys(self.names, 0)
        log.info("wake models loaded: %s (engine %s, threshold %.2f, trigger_frames %d)", ", ".join(self.names),
                 self.engine, self.threshold, self.trigger_frames)

    def reset(self) -> None:
        """Forget the audio history and the debounce state (not the refractory period)."""
        if self._engine is not None:
            self._engine.reset()
        self._run = dict.fromkeys(self._run, 0)

    def scores(self, frame: AudioFrame) -> dict[str, float]:
        """Raw scores for one frame (no debounce)."""
        if self._engine is None:
            self.load()
        return self._engine.predict(np.frombuffer(frame.pcm, dtype="<i2"))

    def process(self, frame: AudioFrame) -> Detection | None:
        scores = self.scores(frame)
        self.frames += 1
        best: Detection | None = None
        for name, score in scores.items():
            self._run[name] = self._run.get(name, 0) + 1 if score >= self.threshold else 0
            if self._run[name] >= self.trigger_frames and (best is None or score > best.score):
                best = Detection(name, score, frame.t, frame.seq)
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
        return {"models": self.names, "engine": self.engine, "detections": self.detections, "frames": self.frames,
                "last_model": last.model if last else None, "last_score": round(last.score, 3) if last else None}


def from_config(cfg: Any) -> WakeDetector:
    """The detector the config asks for (``[wake]`` and the models directory); not loaded yet."""
    w = cfg.wake
    return WakeDetector(list(w.models), cfg.models_dir, threshold=w.threshold, trigger_frames=w.trigger_frames,
                        refractory_s=w.refractory_s, engine=w.engine)
