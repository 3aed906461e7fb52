"""Smart Turn v3.2 (pipecat-ai, BSD-2): is the turn complete?  Asked off the audio thread.

The model reads the last 8 s of the turn as Whisper-style log-mel features (``melspec``) and gives
the probability that the speaker has finished.  ``TurnWorker`` runs it in its own thread behind a
bounded queue of one request: a newer request replaces one not yet started, and ``submit``/``poll``
never wait, so the thread that feeds audio is never held up by inference.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import ModelError
from . import melspec
from . import models as M

log = logging.getLogger(__name__)


class TurnModel(Protocol):
    def predict(self, audio: np.ndarray) -> float: ...


class SmartTurnModel:
    """smart-turn-v3.2-cpu.onnx in onnxruntime; ``predict`` takes float audio at 16 kHz.

    ``threads`` is onnxruntime's intra-op thread count (Pipecat's ``cpu_count``, default 1).  Extra
    threads do not spin between runs: on a busy core a spinning thread only slows the others down
    (measured in bench/bench_endpoint.py's inference figures).
    """

    def __init__(self, path: str | os.PathLike[str], threads: int = 1) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: missing; {M.FIX_HINT}")
        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.enable_cpu_mem_arena = False  # one fixed-size input: the arena only holds memory
        try:
            self._sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"{path}: cannot load: {exc}; {M.FIX_HINT}") from None
        self._input = self._sess.get_inputs()[0].name

    def predict(self, audio: np.ndarray) -> float:
        feats = melspec.log_mel(audio)[None]
        out = self._sess.run(None, {self._input: feats})[0]
        return float(np.asarray(out).ravel()[0])  # the model ends in a sigmoid


@dataclass(frozen=True, slots=True)
class Verdict:
    key: int  # the caller's tag for what was asked (here: the sample at the end of the last speech)
    probability: float
    ms: float  # wall time of the inference (features + model)
    cpu_ms: float  # the worker thread's CPU time for it


class TurnWorker:
    """One daemon thread running ``model.predict``; at most one request waiting, the newest."""

    def __init__(self, model: TurnModel, history: int = 200) -> None:
        self.model = model
        self._q: queue.Queue[tuple[int, np.ndarray] | None] = queue.Queue(maxsize=1)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._result: Verdict | None = None
        self._busy = 0  # requests queued or running
        self.timings: deque[Verdict] = deque(maxlen=history)
        self.errors = 0
        self.replaced = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="smart-turn", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        t, self._thread = self._thread, None
        if t is None:
            return
        self._drop_waiting()
        try:
            self._q.put(None, timeout=timeout)
        except queue.Full:
            pass
        t.join(timeout)

    def _drop_waiting(self) -> None:
        try:
            self._q.get_nowait()
        except queue.Empty:
            return
        with self._lock:
            self._busy -= 1
            self.replaced += 1

    def submit(self, key: int, audio: np.ndarray) -> None:
        """Ask about ``audio`` (float32, owned by the worker from now on).  Never blocks."""
        self.start()
        self._drop_waiting()
        with self._lock:
            self._busy += 1
        try:
            self._q.put_nowait((key, audio))
        except queue.Full:  # only this thread submits, so the slot just emptied is still free
            with self._lock:
                self._busy -= 1

    def poll(self) -> Verdict | None:
        """The newest verdict (it stays until ``clear``)."""
        with self._lock:
            return self._result

    def clear(self) -> None:
        self._drop_waiting()
        with self._lock:
            self._result = None

    def busy(self) -> bool:
        with self._lock:
            return self._busy > 0

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is queued or running (for harnesses that emulate real time)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
            return True

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            key, audio = item
            w0, c0 = time.perf_counter(), time.thread_time()
            try:
                p = float(self.model.predict(audio))
                v = Verdict(key, p, (time.perf_counter() - w0) * 1000, (time.thread_time() - c0) * 1000)
            except Exception:
                self.errors += 1
                log.exception("smart-turn inference failed")
                v = None
            with self._idle:
                if v is not None:
                    self._result = v
                    self.timings.append(v)
                self._busy -= 1
                self._idle.notify_all()
