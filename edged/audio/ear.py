"""The Ear thread: frames from the ring -> wake word -> turn audio -> end of turn.

On a wake detection the Ear opens the turn itself, in its own thread, so not one frame is lost
between the detection and the turn: ``on_turn_audio`` gets the pre-roll (``preroll_ms`` of audio up
to the end of the detecting frame) and then every following frame, in order, until
``on_turn_end(reason)``.  After ``on_turn_end`` no more turn audio comes until the next turn.

Callbacks run on the Ear thread; the composition root posts them onto the loop (``Ports.post``) to
the conversation, which owns the truth about the turn: it may refuse a turn the Ear opened, and
tells the Ear to call one off (``cancel_turn``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..repeats import Repeats
from .device import Worker
from .endpoint import Endpointer
from .frames import RATE, AudioFrame, FrameRing
from .wake import Detection, WakeDetector

log = logging.getLogger(__name__)
GAP_LINE_S = 60.0  # lost frames: at most one log line a minute after the first


def _nop(*_a: object) -> None:
    return None


@dataclass
class EarCallbacks:
    on_wake: Callable[[Detection], None] = _nop  # every detection (also during a turn / playback)
    on_turn_start: Callable[[str], None] = _nop  # source: "wake" or what trigger() was given
    on_turn_audio: Callable[[bytes], None] = _nop  # 16 kHz mono S16_LE, contiguous
    on_turn_end: Callable[[str], None] = _nop  # "silence" | "max_length" | "no_speech" | "cancelled"
    on_drops: Callable[[int], None] = _nop  # frames lost (seq gap) while a turn was open


class Ear(Worker):
    def __init__(self, ring: FrameRing, wake: WakeDetector | None, endpointer: Endpointer, preroll_ms: int = 400,
                 callbacks: EarCallbacks | None = None, *, wake_tail_ms: int = 0) -> None:
        super().__init__("ear")
        self.ring, self.wake, self.endpointer = ring, wake, endpointer
        self.preroll_ms = preroll_ms
        self.cb = callbacks or EarCallbacks()
        self.wake_tail_ms = wake_tail_ms
        self._preroll_bytes = 2 * RATE * preroll_ms // 1000
        self._history: deque[AudioFrame] = deque()
        self._lock = threading.Lock()
        self._pending_trigger: str | None = None
        self._pending_cancel = False
        self._wake_enabled = True
        self._wake_dirty = False
        # the Ear's own mechanism: is it streaming a turn's audio now.  Whether a turn is open is the
        # conversation's truth: it is told of every open and close, and can call the turn off.
        self.in_turn = False
        self.turn_source: str | None = None
        self._last_seq: int | None = None
        self.frames = 0
        self.turns = 0
        self.gaps = 0
        # lost frames: a line at the first loss, then at most one a minute with the total (an Ear
        # slower than real time on a busy Pi loses a frame every few frames, for as long as it lasts)
        self._gap_lines = Repeats(remind_s=GAP_LINE_S)
        self._gaps_unsaid = 0
        self.turn_drops = 0  # frames lost inside turns
        self.errors = 0

    # -- control (any thread) ---------------------------------------------------------------------
    def start(self) -> None:
        """Load the models (raises ModelError) and start the thread."""
        if self._thread is not None:
            return
        if self.wake is not None:
            self.wake.load()
        self.endpointer.load()
        super().start()

    def trigger(self, source: str = "button") -> None:
        """Open a turn from the next frame (no pre-roll).  Ignored if a turn is open then."""
        with self._lock:
            self._pending_trigger = source

    def cancel_turn(self) -> None:
        """Close the open turn at the next frame; ``on_turn_end("cancelled")`` marks the end."""
        with self._lock:
            self._pending_cancel = True
            self._pending_trigger = None

    def set_wake_enabled(self, enabled: bool) -> None:
        with self._lock:
            if enabled and not self._wake_enabled:
                self._wake_dirty = True  # its audio history is stale
            self._wake_enabled = bool(enabled)

    def stats(self) -> dict:
        w = self.wake.stats() if self.wake is not None else {}
        return {"in_turn": self.in_turn, "turn_source": self.turn_source, "frames": self.frames,
                "turns": self.turns, "detections": w.get("detections", 0), "last_model": w.get("last_model"),
                "wake_frames_scored": w.get("frames", 0), "wake_quiet_skipped": w.get("quiet_skipped", 0),
                "last_score": w.get("last_score"), "wake_enabled": self._wake_enabled,
                "ring_drops": self.ring.drops, "seq_gaps": self.gaps, "turn_drops": self.turn_drops,
                "errors": self.errors, "heartbeat_age_s": round(time.monotonic() - self._beat, 3)}

    # -- the thread -------------------------------------------------------------------------------
    def _call(self, fn: Callable, *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            self.errors += 1
            log.exception("ear callback %s failed", getattr(fn, "__name__", fn))

    def _run(self) -> None:
        try:
            while not self.stopping:
                self.beat()
                frame = self.ring.get(0.2)
                if frame is None:
                    continue
                try:
                    self._frame(frame)
                except Exception:
                    self.errors += 1
                    log.exception("ear: frame %d failed", frame.seq)
        finally:
            self.endpointer.close()  # its Smart Turn worker thread, if it has one

    def _open(self, source: str, preroll: bytes) -> None:
        self.in_turn = True
        self.turn_source = source
        self.turns += 1
        self.endpointer.reset()
        if source == "wake" and self.wake_tail_ms:
            self.endpointer.ignore_speech_ms(self.wake_tail_ms)
        log.info("turn opened (%s, pre-roll %d ms)", source, len(preroll) * 1000 // (2 * RATE))
        self._call(self.cb.on_turn_start, source)
        if preroll:
            self._call(self.cb.on_turn_audio, preroll)

    def _close(self, reason: str) -> None:
        self.in_turn = False
        log.info("turn ended: %s", reason)
        self._call(self.cb.on_turn_end, reason)

    def _preroll(self) -> bytes:
        out: list[bytes] = []
        n = 0
        expect = None
        for f in reversed(self._history):  # newest first: stop at a gap, never splice across one
            if expect is not None and f.seq != expect:
                break
            out.append(f.pcm)
            n += len(f.pcm)
            expect = f.seq - 1
            if n >= self._preroll_bytes:
                break
        data = b"".join(reversed(out))
        return data[len(data) - min(len(data), self._preroll_bytes):]

    def _frame(self, frame: AudioFrame) -> None:
        self.frames += 1
        gap = 0 if self._last_seq is None or frame.seq <= self._last_seq else frame.seq - self._last_seq - 1
        self._last_seq = frame.seq
        if gap:
            self.gaps += gap
            self._gaps_unsaid += gap
            say, held = self._gap_lines.seen("gap")
            if say:
                log.warning("ear: %d frame(s) lost before frame %d%s%s", self._gaps_unsaid, frame.seq,
                            " during a turn" if self.in_turn else "",
                            f" (in {held + 1} gaps since the last line; {self.gaps} in all)" if held else "")
                self._gaps_unsaid = 0
            if self.in_turn:
                self.turn_drops += gap
                self._call(self.cb.on_drops, gap)
        self._history.append(frame)
        while len(self._history) > 1 and sum(len(f.pcm) for f in self._history) - len(self._history[0].pcm) \
                >= self._preroll_bytes:
            self._history.popleft()

        with self._lock:
            cancel, self._pending_cancel = self._pending_cancel, False
            trigger = self._pending_trigger if not self.in_turn or cancel else None
            if trigger is not None:
                self._pending_trigger = None
            wake_on, dirty, self._wake_dirty = self._wake_enabled, self._wake_dirty, False
        if cancel and self.in_turn:
            self._close("cancelled")

        det = None
        if self.wake is not None and wake_on:
            if dirty:
                self.wake.reset()
            det = self.wake.process(frame)

        if self.in_turn:
            self._call(self.cb.on_turn_audio, frame.pcm)
            if det is not None:
                self._call(self.cb.on_wake, det)  # barge-in / repeated wake: the daemon decides
            reason = self.endpointer.process(frame)
            if reason is not None:
                self._close(reason)
        elif det is not None:
            self._call(self.cb.on_wake, det)
            self._open("wake", self._preroll())
        elif trigger is not None:
            self._open(trigger, b"")
            self._call(self.cb.on_turn_audio, frame.pcm)
            reason = self.endpointer.process(frame)
            if reason is not None:
                self._close(reason)
