"""openWakeWord's models run directly with onnxruntime and numpy (no ``openwakeword`` import).

The ``openwakeword`` package pulls in scipy, scikit-learn, requests and tqdm (about 137 MB of resident
memory) although its streaming path needs only onnxruntime and numpy.  This module runs the same three
ONNX models (melspectrogram -> speech embedding -> wake model) with openWakeWord 0.6.0's streaming
framing, so the scores are the package's (the tests compare them with the package as the oracle):

- audio is consumed in whole 80 ms chunks (1280 samples); a partial chunk waits for the rest;
- each step computes the mel spectrogram of the new samples plus the 480 samples (3 hops of 160)
  before them, scaled ``x / 10 + 2``, appended to a buffer of at most 970 rows (seeded with 76 rows of 1);
- every 80 ms chunk adds one embedding of the last 76 mel rows (8 rows further back per extra chunk);
  the embedding buffer keeps 120 rows and starts with the embeddings of 4 s of noise;
- a wake model sees the last ``n`` embeddings (its input width, 16 for the pretrained ones); several
  chunks in one call give the maximum over their windows; fewer than 1280 new samples repeat the
  last score; the first 5 calls after a reset score 0.

Unlike the package, the start-up noise is a fixed sequence (a seeded generator), not numpy's global
random state, so scores are reproducible.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SR = 16000
CHUNK = 1280  # samples per 80 ms step
HOP = 160  # mel frame hop
CONTEXT = 3 * HOP  # samples before a chunk fed to the mel model with it
MEL_BINS = 32
MEL_WINDOW = 76  # mel rows per embedding
MEL_STEP = 8  # mel rows per 80 ms
MEL_MAX = 10 * 97  # mel rows kept (about 10 s)
EMB_DIM = 96
EMB_MAX = 120  # embeddings kept (about 10 s)
RAW_MAX = 10 * SR  # the package's raw sample buffer
WARMUP_CALLS = 5  # calls scored 0 after a reset (the package's prediction-buffer rule)
NOISE_SAMPLES = 4 * SR
NOISE_SEED = 0x0EDD


@dataclass(frozen=True)
class SessionSettings:
    """onnxruntime session options.  The defaults are chosen by bench/bench_ort.py (fresh process per option,
    RSS and CPU per 80 ms frame; figures in the README):

    - one intra-op and one inter-op thread, sequential: onnxruntime's default thread pool (one thread per
      core) costs about 4x the CPU per frame for these small models and saves no memory;
    - memory patterns off: about 1 MB less resident, no CPU cost;
    - the CPU memory arena ON: turning it off costs 1-4 MB more resident here (freed per-run buffers
      fragment the C heap), so it stays on;
    - graph optimisation "all": "basic" or "disable" save about 2 MB but cost about 7 % more CPU per frame.
    """

    cpu_mem_arena: bool = True
    mem_pattern: bool = False
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    sequential: bool = True
    graph_optimization: str = "all"  # disable | basic | extended | all

    def options(self) -> Any:
        import onnxruntime as ort

        levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        so = ort.SessionOptions()
        so.enable_cpu_mem_arena = self.cpu_mem_arena
        so.enable_mem_pattern = self.mem_pattern
        so.intra_op_num_threads = self.intra_op_threads
        so.inter_op_num_threads = self.inter_op_threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL if self.sequential else ort.ExecutionMode.ORT_PARALLEL
        so.graph_optimization_level = levels[self.graph_optimization]
        so.log_severity_level = 3  # errors only: no warnings about unused initializers on stderr
        return so


# What openWakeWord itself sets (threads only; everything else onnxruntime's defaults).
PACKAGE_SETTINGS = SessionSettings(cpu_mem_arena=True, mem_pattern=True, sequential=True, graph_optimization="all")


def start_noise(seed: int = NOISE_SEED) -> np.ndarray:
    """4 s of uniform noise in [-1000, 1000) as int16: the audio the embedding buffer starts from.

    The samples are SplitMix64's output function over a counter, in plain uint64 arithmetic (which
    wraps): ``numpy.random`` would cost the idle daemon about 6 MB of resident memory (its compiled
    generators and the modules they pull in) for this one call at start-up."""
    x = np.arange(NOISE_SAMPLES, dtype=np.uint64) + np.uint64(seed)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return ((x % np.uint64(2000)).astype(np.int64) - 1000).astype(np.int16)


class _Session:
    def __init__(self, path: str | os.PathLike[str], settings: SessionSettings) -> None:
        import onnxruntime as ort

        self.path = str(path)
        self.sess = ort.InferenceSession(self.path, sess_options=settings.options(),
                                         providers=["CPUExecutionProvider"])
        self.input = self.sess.get_inputs()[0]
        self.output = self.sess.get_outputs()[0]

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.sess.run([self.output.name], {self.input.name: x})[0]


class _WakeModel:
    def __init__(self, name: str, path: str | os.PathLike[str], settings: SessionSettings) -> None:
        self.name = name
        self.s = _Session(path, settings)
        shape_in, shape_out = self.s.input.shape, self.s.output.shape
        if len(shape_in) != 3 or not isinstance(shape_in[1], int) or shape_in[2] != EMB_DIM:
            raise ValueError(f"{path}: input shape {shape_in} is not [1, frames, {EMB_DIM}] (not an openWakeWord model)")
        if len(shape_out) != 2 or shape_out[1] != 1:
            raise ValueError(f"{path}: output shape {shape_out}: only single-score wake models are supported")
        self.frames = shape_in[1]
        self.last = 0.0

    def score(self, features: np.ndarray) -> float:
        return float(self.s.run(features)[0][0])


class LeanWakeModel:
    """Streaming wake-word scores for 16 kHz int16 audio, openWakeWord 0.6.0's framing.

    ``models`` maps a label to a wake model ``.onnx``; ``predict`` returns ``{label: score}``.
    """

    def __init__(self, models: dict[str, str | os.PathLike[str]], melspec_path: str | os.PathLike[str],
                 embedding_path: str | os.PathLike[str], settings: SessionSettings | None = None,
                 noise: np.ndarray | None = None) -> None:
        if not models:
            raise ValueError("LeanWakeModel needs at least one wake model")
        self.settings = settings or SessionSettings()
        self._mel = _Session(melspec_path, self.settings)
        self._emb = _Session(embedding_path, self.settings)
        self.models = [_WakeModel(label, path, self.settings) for label, path in models.items()]
        self._start_features = self.embed_clip(start_noise() if noise is None else noise)
        self.reset()

    # ---- features ----------------------------------------------------------------------------------
    def melspectrogram(self, x: np.ndarray) -> np.ndarray:
        """Mel rows (frames x 32) of int16 audio, scaled like the package (x / 10 + 2)."""
        out = self._mel.run(x.astype(np.float32)[None, :])
        return np.squeeze(out) / 10 + 2

    def embed_clip(self, x: np.ndarray) -> np.ndarray:
        """Embeddings of a whole clip, one per 8 mel rows: the package's ``_get_embeddings``, computed with the
        streaming path's tensor shapes (mel over 1280 + 480 samples, one embedding window per run).

        The package runs the mel model over the whole clip and the embedding model over all windows at once;
        for the 4 s of start-up noise that leaves 25-55 MB more resident (onnxruntime's buffers for the big
        batch stay mapped).  Chunked mel rows differ from whole-clip ones by float rounding (about 2e-6).
        """
        spec = np.vstack([self.melspectrogram(x[max(0, i - CONTEXT):i + CHUNK]) for i in range(0, len(x), CHUNK)])
        starts = [i for i in range(0, spec.shape[0], MEL_STEP) if i + MEL_WINDOW <= spec.shape[0]]
        return np.vstack([self._emb.run(spec[i:i + MEL_WINDOW][None, :, :, None]).reshape(1, EMB_DIM)
                          for i in starts])

    def reset(self, start_features: np.ndarray | None = None) -> None:
        """Forget the audio; the embedding buffer restarts from the start noise (or ``start_features``)."""
        self._raw = np.zeros(0, dtype=np.int16)  # the newest samples (at most RAW_MAX)
        self._pending = np.zeros(0, dtype=np.int16)  # samples past the last whole chunk
        self._accumulated = 0
        self._mels = np.ones((MEL_WINDOW, MEL_BINS), dtype=np.float32)
        base = self._start_features if start_features is None else start_features
        self._features = np.array(base, dtype=np.float32, copy=True)
        self._calls = 0
        for m in self.models:
            m.last = 0.0

    @property
    def features(self) -> np.ndarray:
        return self._features

    def _stream(self, x: np.ndarray) -> int:
        """Buffer ``x``; compute features for every whole chunk.  Returns the samples processed (the package's
        ``_streaming_features`` return value)."""
        if self._pending.shape[0]:
            x = np.concatenate((self._pending, x))
            self._pending = np.zeros(0, dtype=np.int16)
        if self._accumulated + x.shape[0] >= CHUNK:
            rem = (self._accumulated + x.shape[0]) % CHUNK
            if rem:
                self._pending = x[-rem:].copy()
                x = x[:-rem]
        self._raw = np.concatenate((self._raw, x))[-RAW_MAX:]
        self._accumulated += x.shape[0]
        processed = 0
        if self._accumulated >= CHUNK and self._accumulated % CHUNK == 0:
            n = self._accumulated
            mels = np.vstack((self._mels, self.melspectrogram(self._raw[-n - CONTEXT:])))
            self._mels = mels[-MEL_MAX:]
            new = []
            for i in range(n // CHUNK - 1, -1, -1):
                end = -MEL_STEP * i if i else len(self._mels)
                window = self._mels[-MEL_WINDOW + end:end]
                if window.shape[0] == MEL_WINDOW:
                    new.append(self._emb.run(window[None, :, :, None]).reshape(1, EMB_DIM))
            if new:
                self._features = np.vstack((self._features, *new))
            processed, self._accumulated = n, 0
        if self._features.shape[0] > EMB_MAX:
            self._features = self._features[-EMB_MAX:]
        keep = max(CONTEXT + self._accumulated, 0)
        self._raw = self._raw[-keep:] if keep else self._raw[:0]
        return processed or self._accumulated

    def predict(self, x: np.ndarray) -> dict[str, float]:
        """Scores for the audio ``x`` (int16, 16 kHz, any length; 1280 samples is one step)."""
        if x.dtype != np.int16:
            raise ValueError(f"audio must be int16 PCM, not {x.dtype}")
        n = self._stream(x)
        out: dict[str, float] = {}
        for m in self.models:
            if n > CHUNK:
                k = n // CHUNK
                out[m.name] = max(m.score(self._window(m.frames, k - 1 - j)) for j in range(k))
            elif n == CHUNK:
                out[m.name] = m.score(self._features[-m.frames:][None])
            else:
                out[m.name] = m.last
        self._calls += 1
        if self._calls < WARMUP_CALLS + 1:
            out = dict.fromkeys(out, 0.0)
        for m in self.models:
            m.last = out[m.name]
        return out

    def _window(self, frames: int, back: int) -> np.ndarray:
        end = len(self._features) - back
        return self._features[end - frames:end][None]


def model_names(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """openWakeWord's label for a model file: its name without the extension."""
    return [Path(p).stem for p in paths]
