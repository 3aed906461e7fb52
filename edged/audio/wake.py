"""Wake-word detection: openWakeWord's models, run by one of two engines behind one interface.

``engine="lean"`` (the default) runs the models with onnxruntime and numpy (:mod:`.oww_lean`), without
importing the ``openwakeword`` package and the scipy/scikit-learn/requests/tqdm it pulls in.
``engine="openwakeword"`` uses the package itself (the reference, and a fallback).

Debounce: ``trigger_frames`` consecutive frames over ``threshold``.  Refractory: after a detection the
detector stays quiet for ``refractory_s`` of audio time (frame timestamps), so one utterance fires once.

Quiet skip (``quiet_margin_db`` > 0): while the room holds only its steady noise, the models are not run.
:class:`QuietGate` keeps the frames it skips (up to ``BACKLOG_S``) and, when a sound rises above the
noise floor, the engine is given them first, so it scores the loud frame from the state it would have
had if it had never stopped: every frame the models score gets the score it would have had.  The models
see at most 2.2 s of audio (a score reads 16 embeddings, each of 76 mel rows), less than the backlog.
"""

from __future__ import annotations

import logging
import os
from collections import deque
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


SUB_S = 0.02  # the gate's energy sub-frames
FLOOR_S = 5.0  # the noise floor: the quietest sub-frame over this much audio
HANGOVER_S = 2.0  # the models run on this long after the last loud frame (a score peaks after the word)
BACKLOG_S = 3.0  # skipped audio kept for the engine (it reads at most 2.2 s back)
# x[n] - 0.97 x[n-1] before the levels: without it the 20 ms levels of pink noise swing over 13 dB and the
# models never rest in it; with it, 2.6 dB (white noise: 3.1, a 50 Hz hum with harmonics: 0)
PRE_EMPHASIS = 0.97


class QuietGate:
    """Is this frame worth the wake-word models?  Yes while any 20 ms of it, or of the last
    ``HANGOVER_S``, is ``margin_db`` above the noise floor (the quietest 20 ms of the last ``FLOOR_S``,
    levels taken after pre-emphasis), and until the floor is known.  Frames it says no to are kept
    (``BACKLOG_S``) for ``take_backlog``."""

    def __init__(self, margin_db: float, rate: int = 16000) -> None:
        self.margin_db = margin_db
        self.sub = max(1, int(rate * SUB_S))
        self._energies: deque[float] = deque(maxlen=round(FLOOR_S / SUB_S))
        self._open_until = float("-inf")
        self._backlog: deque[np.ndarray] = deque()
        self._backlog_samples = 0
        self._last = 0.0  # the sample before this frame (pre-emphasis)
        self.rate = rate
        self.skipped = 0  # frames the models did not score
        self.dropped = 0  # skipped frames older than the backlog (the engine never needs them)

    def reset(self) -> None:
        self._energies.clear()
        self._last = 0.0
        self._open_until = float("-inf")
        self._backlog.clear()
        self._backlog_samples = 0

    def admit(self, pcm: np.ndarray, t: float) -> bool:
        """True: run the models on this frame (after ``take_backlog``).  False: it is kept, skipped."""
        x = pcm.astype(np.float64)
        x[1:] -= PRE_EMPHASIS * pcm[:-1]  # flattens room noise's low-frequency swell (pink noise, rumble)
        if len(pcm):
            x[0] -= PRE_EMPHASIS * self._last
            self._last = float(pcm[-1])
        n = len(x) // self.sub * self.sub
        subs = x[:n].reshape(-1, self.sub) if n else x[None]
        levels = 10.0 * np.log10(np.maximum(np.mean(np.square(subs), axis=1), 1e-10) / (32768.0 * 32768.0))
        known = len(self._energies) == self._energies.maxlen
        loud = not known or float(levels.max()) >= min(self._energies) + self.margin_db
        self._energies.extend(float(v) for v in levels)
        if loud:
            self._open_until = t + HANGOVER_S
        if t <= self._open_until:
            return True
        self.skipped += 1
        self._backlog.append(pcm)
        self._backlog_samples += len(pcm)
        while self._backlog_samples - len(self._backlog[0]) >= BACKLOG_S * self.rate:
            self._backlog_samples -= len(self._backlog.popleft())
            self.dropped += 1
        return False

    def take_backlog(self) -> list[np.ndarray]:
        """The skipped frames still kept, oldest first."""
        frames = list(self._backlog)
        self._backlog.clear()
        self._backlog_samples = 0
        return frames


class WakeDetector:
    def __init__(self, models: list[str], models_dir: str | os.PathLike[str], threshold: float = 0.5,
                 trigger_frames: int = 1, refractory_s: float = 2.0, engine: str = "lean",
                 session_settings: Any = None, quiet_margin_db: float = 0.0) -> None:
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
        self.gate = QuietGate(quiet_margin_db) if quiet_margin_db > 0 else None
        self.detections = 0
        self.last: Detection | None = None
        self.last_scores: dict[str, float] = {}  # of the last frame the models scored
        self.frames = 0  # frames the models scored

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
        log.info("wake models loaded: %s (engine %s, threshold %.2f, trigger_frames %d, %s)", ", ".join(self.names),
                 self.engine, self.threshold, self.trigger_frames,
                 f"quiet skip under {self.gate.margin_db:g} dB over the floor" if self.gate else "no quiet skip")

    def reset(self) -> None:
        """Forget the audio history and the debounce state (not the refractory period)."""
        if self._engine is not None:
            self._engine.reset()
        if self.gate is not None:
            self.gate.reset()
        self._run = dict.fromkeys(self._run, 0)

    def scores(self, frame: AudioFrame) -> dict[str, float]:
        """Raw scores for one frame (no debounce, no quiet skip)."""
        if self._engine is None:
            self.load()
        return self._engine.predict(np.frombuffer(frame.pcm, dtype="<i2"))

    def _catch_up(self) -> None:
        """Give the engine the frames the gate skipped (their scores are not used: those frames held only
        the room's steady noise).  After the last ``BACKLOG_S`` of audio the engine is where it would be if
        it had run all along, whatever it held before: a score reads at most 2.2 s back."""
        assert self.gate is not None and self._engine is not None
        for pcm in self.gate.take_backlog():
            self._engine.predict(pcm)

    def process(self, frame: AudioFrame) -> Detection | None:
        if self._engine is None:
            self.load()
        pcm = np.frombuffer(frame.pcm, dtype="<i2")
        if self.gate is not None:
            if not self.gate.admit(pcm, frame.t):
                self._run = dict.fromkeys(self._run, 0)
                return None
            self._catch_up()
        scores = self.last_scores = self._engine.predict(pcm)
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
                "quiet_skipped": self.gate.skipped if self.gate is not None else 0,
                "last_model": last.model if last else None, "last_score": round(last.score, 3) if last else None}


def from_config(cfg: Any) -> WakeDetector:
    """The detector the config asks for (``[wake]`` and the models directory); not loaded yet."""
    w = cfg.wake
    return WakeDetector(list(w.models), cfg.models_dir, threshold=w.threshold, trigger_frames=w.trigger_frames,
                        refractory_s=w.refractory_s, engine=w.engine, quiet_margin_db=w.quiet_margin_db)
