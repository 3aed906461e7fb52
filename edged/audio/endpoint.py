"""End of a spoken turn over 16 kHz frames: noise-robust VAD, then silence or Smart Turn.

Speech onsets and offsets come from ``vad.SpeechTracker`` (webrtcvad or silero, an energy gate over
a tracked noise floor, hysteresis over a window).  Then, by ``detector``:

* ``"silence"``: the turn ends after ``silence_ms`` of silence following speech;
* ``"smart_turn"``: the turn ends after ``smart_silence_ms`` of silence if the Smart Turn model says
  the turn is complete, otherwise at ``silence_ms``, the cap.  The model is asked once per silence,
  as Pipecat asks it once when its VAD reports the end of speech: if the speaker goes on, the next
  silence is asked about.  ``smart_reask_ms`` > 0 asks again every that many ms as a silence grows;
  the bench shows that costs cut-offs (the model leans to "complete" the longer the silence), so it
  is off by default.  The model runs in a worker thread (``smart_turn.TurnWorker``): ``process``
  only hands it the audio and reads an answer that has arrived; the request goes out one frame
  before ``smart_silence_ms`` so the answer is there when that much silence has passed.  If the
  model cannot be loaded, the endpointer falls back to ``"silence"`` and says why in ``problem``.

A turn also ends with "max_length" at ``max_utterance_s`` of turn audio, or "no_speech" if no speech
started within ``no_speech_timeout_s``.  Time is counted in audio (samples), not wall clock, so a
backlog does not distort it.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import models as M
from .frames import RATE, AudioFrame
from .vad import SpeechTracker, make_vad

log = logging.getLogger(__name__)

EndReason = Literal["silence", "max_length", "no_speech"]
DETECTORS = ("silence", "smart_turn")
MODEL_SECONDS = 8  # Smart Turn reads the last 8 s
PRE_SPEECH_S = 0.5  # audio kept before the first onset for the model


class Endpointer:
    def __init__(self, kind: str = "webrtc", silence_ms: int = 700, max_utterance_s: float = 15.0,
                 no_speech_timeout_s: float = 5.0, *, aggressiveness: int = 2,
                 models_dir: str | os.PathLike[str] | None = None, detector: str = "silence",
                 smart_silence_ms: int = 200, smart_threshold: float = 0.5, smart_reask_ms: int = 0,
                 smart_threads: int = 1, smart_model: Any = None, tracker: dict[str, Any] | None = None) -> None:
        if kind not in ("webrtc", "silero"):
            raise ValueError(f"turn.vad: {kind!r} is not a VAD (use 'webrtc' or 'silero')")
        if kind == "silero" and models_dir is None:
            raise ValueError("the silero VAD needs models_dir")
        if detector not in DETECTORS:
            raise ValueError(f"turn.detector: {detector!r} is not a detector (use 'smart_turn' or 'silence')")
        self.kind = kind
        self.silence_ms, self.max_utterance_s, self.no_speech_timeout_s = silence_ms, max_utterance_s, no_speech_timeout_s
        self.detector = self.configured_detector = detector
        self.smart_silence_ms, self.smart_threshold, self.smart_reask_ms = smart_silence_ms, smart_threshold, smart_reask_ms
        self.smart_threads = smart_threads
        self._aggr, self._models_dir = aggressiveness, models_dir
        self._smart_model = smart_model  # a TurnModel to use instead of the ONNX file (tests)
        self._tracker_opts = tracker or {}
        self.tracker: SpeechTracker | None = None
        self.worker = None
        self.problem: str | None = None  # why smart_turn fell back to silence, if it did
        self.last_end: dict[str, Any] = {}
        self._audio: list[np.ndarray] = []
        self.reset()

    @classmethod
    def from_config(cls, turn: Any, models_dir: str | os.PathLike[str]) -> Endpointer:
        """From the ``[turn]`` config section; call ``load()`` after, then read ``problem``."""
        return cls(turn.vad, silence_ms=turn.silence_ms, max_utterance_s=turn.max_utterance_s,
                   no_speech_timeout_s=turn.no_speech_timeout_s, aggressiveness=turn.vad_aggressiveness,
                   models_dir=models_dir, detector=turn.detector, smart_silence_ms=turn.smart_silence_ms,
                   smart_threshold=turn.smart_threshold, smart_reask_ms=turn.smart_reask_ms,
                   smart_threads=turn.smart_threads)

    # -- set-up -------------------------------------------------------------------------------------
    def load(self) -> None:
        """Load the VAD (raises ModelError for a missing silero model) and the Smart Turn model
        (a missing or broken one falls back to silence mode, reported in ``problem``)."""
        if self.tracker is None:
            vad = make_vad(self.kind, aggressiveness=self._aggr, models_dir=self._models_dir)
            self.tracker = SpeechTracker(vad, **self._tracker_opts)
            self.reset()
        if self.configured_detector == "smart_turn" and self.worker is None and self.problem is None:
            from .smart_turn import SmartTurnModel, TurnWorker

            try:
                model = self._smart_model
                if model is None:
                    if self._models_dir is None:
                        raise ValueError("the smart_turn detector needs models_dir")
                    model = SmartTurnModel(Path(self._models_dir) / M.SMART_TURN, threads=self.smart_threads)
                self.worker = TurnWorker(model)
                self.worker.start()
                self.detector = "smart_turn"
            except Exception as exc:
                self.problem = f"smart_turn: {exc}; ending turns after turn.silence_ms of silence instead"
                self.detector = "silence"
                log.warning("%s", self.problem)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def reset(self) -> None:
        if self.tracker is not None:
            self.tracker.reset()
        if self.worker is not None:
            self.worker.clear()
        self.samples = 0
        self._audio = []
        self._audio_samples = 0
        self._asked_key: int | None = None
        self._next_ask_ms = 0.0

    def ignore_speech_ms(self, ms: float) -> None:
        """Do not count speech in the next ``ms`` of audio as the start of speech (a wake word's tail)."""
        if self.tracker is None:
            self.load()
        self.tracker.ignore_samples = round(ms * RATE / 1000)

    @property
    def speech_started(self) -> bool:
        return self.tracker is not None and self.tracker.onsets > 0

    # -- per frame ----------------------------------------------------------------------------------
    def process(self, frame: AudioFrame) -> EndReason | None:
        if self.tracker is None:
            self.load()
        tr = self.tracker
        tr.feed(frame.pcm)
        self.samples += frame.samples
        if self.detector == "smart_turn":
            self._keep(frame.pcm)
        elapsed = self.samples / RATE
        if self.speech_started:
            silence = 1000 * tr.silence_samples / RATE
            quiet = not tr.speaking and not tr.pending
            if quiet and silence >= self.silence_ms:
                self.last_end = {"detector": "silence", "silence_ms": round(silence)}
                return "silence"
            if self.detector == "smart_turn" and tr.silence_samples > 0:
                if self._smart(silence, 1000 * frame.samples / RATE, quiet):
                    return "silence"
        if elapsed >= self.max_utterance_s:
            return "max_length"
        if not self.speech_started and elapsed >= self.no_speech_timeout_s:
            return "no_speech"
        return None

    def _smart(self, silence: float, frame_ms: float, quiet: bool) -> bool:
        key = self.tracker.last_speech
        if key != self._asked_key:  # a new silence: the answers so far were about other audio
            self._asked_key = key
            self._next_ask_ms = self.smart_silence_ms
        v = self.worker.poll()
        if (quiet and v is not None and v.key == key and v.probability >= self.smart_threshold
                and silence >= self.smart_silence_ms):
            self.last_end = {"detector": "smart_turn", "silence_ms": round(silence),
                             "probability": round(v.probability, 3), "inference_ms": round(v.ms, 1)}
            return True
        if silence + frame_ms >= self._next_ask_ms and not self.worker.busy():
            self.worker.submit(key, self._model_audio())
            self._next_ask_ms = (max(self._next_ask_ms, silence + frame_ms) + self.smart_reask_ms
                                 if self.smart_reask_ms > 0 else math.inf)
        return False

    def _keep(self, pcm: bytes) -> None:
        """Keep the turn's audio from shortly before the first onset, the last 8 s at most."""
        x = np.frombuffer(pcm, dtype="<i2")
        self._audio.append(x)
        self._audio_samples += x.size
        onset = self.tracker.first_onset
        keep_from = self.samples - MODEL_SECONDS * RATE
        if onset is not None:
            keep_from = max(keep_from, onset - int(PRE_SPEECH_S * RATE))
        else:
            keep_from = max(keep_from, self.samples - int((PRE_SPEECH_S + 0.5) * RATE))
        while self._audio and self.samples - self._audio_samples + self._audio[0].size <= keep_from:
            self._audio_samples -= self._audio.pop(0).size

    def _model_audio(self) -> np.ndarray:
        x = np.concatenate(self._audio) if self._audio else np.zeros(0, dtype=np.int16)
        start = self.samples - self._audio_samples
        onset = self.tracker.first_onset
        if onset is not None:
            x = x[max(0, onset - int(PRE_SPEECH_S * RATE) - start):]
        return x[-MODEL_SECONDS * RATE:].astype(np.float32) / 32768.0

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"vad": self.kind, "detector": self.detector, "problem": self.problem}
        if self.tracker is not None:
            out["noise_floor_dbfs"] = round(self.tracker.noise_floor_db, 1)
        if self.worker is not None and self.worker.timings:
            ms = sorted(v.ms for v in self.worker.timings)
            out["inference_ms_p50"] = round(ms[len(ms) // 2], 1)
        return out
