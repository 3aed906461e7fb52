"""ALSA playback of the model's replies: a writer thread, a jitter buffer, flush for barge-in.

``write(pcm)`` queues source audio (``source_rate``, default 24 kHz mono S16_LE) without blocking;
the queue is bounded (``max_queue_s``) and drops the oldest audio, counted.  Playback of a reply
starts once ``jitter_ms`` is queued or ``end_of_reply()`` was called.  When the queue runs dry
mid-reply, an underrun is counted and the writer waits (no silence is inserted).  ``flush()`` empties
the queue at once: the writer finishes at most the one period in flight, then drops the device buffer.

The writer paces itself to real time (it stays at most ``lead_periods`` ahead of the clock), so it
behaves the same on a sound card (whose writes block) and on an ALSA file PCM (whose writes do not).
Callbacks run on the writer thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from .capture import StatusCallback, _close, open_pcm
from .convert import Converter

log = logging.getLogger(__name__)

IDLE_CHECK_S = 1.0  # while idle, check this often that the device is still there


def _gone(pcm) -> bool:
    """True when the PCM's card went away (unplugged, its driver unbound).  An idle writer must then
    close it: the kernel cannot release the card while it is open, and it comes back only on a reopen."""
    try:
        import alsaaudio

        st = pcm.state()
    except AttributeError:
        return False
    except Exception:
        return True
    return st < 0 or st == alsaaudio.PCM_STATE_DISCONNECTED


class Player:
    def __init__(self, device: str, *, rate: int = 24000, channels: int = 1, jitter_ms: int = 120,
                 on_status: StatusCallback | None = None, on_drained: Callable[[], None] | None = None,
                 source_rate: int = 24000, period_ms: int = 20, max_queue_s: float = 120.0,
                 lead_periods: int = 2, backoff_initial_s: float = 0.2, backoff_max_s: float = 10.0) -> None:
        self.device, self.rate, self.channels = device, rate, channels
        self.source_rate, self.period_ms, self.jitter_ms = source_rate, period_ms, jitter_ms
        self.period_frames = max(1, rate * period_ms // 1000)
        self._frame_bytes = 2 * channels
        self._period_bytes = self.period_frames * self._frame_bytes
        self._jitter_bytes = rate * jitter_ms // 1000 * self._frame_bytes
        self._max_bytes = int(rate * max_queue_s) * self._frame_bytes
        self._lead = lead_periods * period_ms / 1000
        self._on_status, self._on_drained = on_status, on_drained
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, max(backoff_initial_s, backoff_max_s)
        self._conv = Converter(source_rate, 1, rate) if source_rate != rate else None
        self._cond = threading.Condition()
        self._q = bytearray()
        self._active = False  # a reply is queued or playing
        self._started = False  # past the jitter buffer
        self._ended = False  # end_of_reply() was called
        self._flush_gen = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._beat = time.monotonic()
        self.state = "stopped"
        self.error: str | None = None
        self.frames_written = 0
        self.underruns = 0
        self.overflow_bytes = 0
        self.flushes = 0
        self.replies = 0
        self.failures = 0
        self._in_underrun = False
        # for benchmarks: (reply number, time.monotonic() of its first ALSA write), the last few
        self._first_pending = False
        self.first_writes: deque[tuple[int, float]] = deque(maxlen=8)

    # -- control (any thread; never blocks) -------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"player:{self.device}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        t, self._thread = self._thread, None
        if t is not None:
            t.join(timeout)

    def write(self, pcm: bytes) -> None:
        """Queue reply audio (source format).  Never blocks; beyond ``max_queue_s`` the oldest is dropped."""
        if not pcm:
            return
        with self._cond:
            data = self._device_format(pcm)
            if not self._active or self._ended:
                if self._ended:  # audio after end_of_reply: a new reply
                    self._started = False
                self._active, self._ended = True, False
                self.replies += 1
                self._first_pending = True
            self._q += data
            excess = len(self._q) - self._max_bytes
            if excess > 0:
                excess += (-excess) % self._frame_bytes
                del self._q[:excess]
                self.overflow_bytes += excess
            self._cond.notify_all()

    def end_of_reply(self) -> None:
        """Play out what is queued, then call ``on_drained()`` (at once if nothing is queued)."""
        with self._cond:
            if not self._active:
                self._active = True  # an empty reply still gets its on_drained
            self._ended = True
            self._cond.notify_all()

    def flush(self) -> int:
        """Drop everything queued now; returns the bytes dropped.  No on_drained for a flushed reply."""
        with self._cond:
            n = len(self._q)
            self._q.clear()
            self._active = self._started = self._ended = False
            self._flush_gen += 1
            self.flushes += 1
            if self._conv is not None:
                self._conv.reset()
            self._cond.notify_all()
        log.debug("playback flushed (%d bytes dropped)", n)
        return n

    @property
    def playing(self) -> bool:
        return self._active

    def alive(self) -> float:
        return self._beat

    def stats(self) -> dict:
        with self._cond:
            queued = len(self._q)
        return {"device": self.device, "state": self.state, "error": self.error, "playing": self._active,
                "queued_ms": queued * 1000 // (self._frame_bytes * self.rate), "frames_written": self.frames_written,
                "underruns": self.underruns, "overflow_ms": self.overflow_bytes * 1000 // (self._frame_bytes * self.rate),
                "flushes": self.flushes, "replies": self.replies, "failures": self.failures,
                "first_writes": [list(x) for x in list(self.first_writes)]}  # list(): one C call, atomic

    # -- internals --------------------------------------------------------------------------------
    def _device_format(self, pcm: bytes) -> bytes:
        data = self._conv.process(pcm) if self._conv is not None else pcm[: len(pcm) - len(pcm) % 2]
        if self.channels > 1:
            data = np.repeat(np.frombuffer(data, dtype="<i2"), self.channels).tobytes()
        return data

    def _status(self, state: str, error: str | None = None) -> None:
        if state == self.state and error == self.error:
            return
        self.state, self.error = state, error
        (log.warning if state == "failed" else log.info)("playback %s: %s%s", self.device, state,
                                                         f" ({error})" if error else "")
        if self._on_status is not None:
            try:
                self._on_status(state, error)
            except Exception:
                log.exception("playback on_status callback failed")

    def _next(self) -> tuple[bytes | None, bool, int]:
        """Wait for work.  Returns (chunk to write, reply drained, flush generation); also
        (None, False, gen) every ``IDLE_CHECK_S`` while idle, for the device check."""
        idle_since = time.monotonic()
        with self._cond:
            while not self._stop.is_set():
                gen = self._flush_gen
                if self._active and not self._started and (len(self._q) >= self._jitter_bytes or self._ended):
                    self._started = True
                if self._started and self._q:
                    if len(self._q) >= self._period_bytes or self._ended:
                        chunk = bytes(self._q[: self._period_bytes])
                        del self._q[: self._period_bytes]
                        return chunk + bytes(self._period_bytes - len(chunk)), False, gen
                if self._active and self._ended and not self._q:
                    self._active = self._started = self._ended = False
                    return None, True, gen
                if self._started and not self._ended and len(self._q) < self._period_bytes:
                    if not self._in_underrun:
                        self.underruns += 1
                        self._in_underrun = True
                        log.debug("playback underrun")
                if not self._active and time.monotonic() - idle_since >= IDLE_CHECK_S:
                    return None, False, gen
                self._cond.wait(0.1)
                self._beat = time.monotonic()
            return None, False, self._flush_gen

    def _run(self) -> None:
        pcm = None
        backoff = self.backoff_initial_s
        t_play = time.monotonic()  # when the audio written so far will have been played
        gen_seen = self._flush_gen
        try:
            while not self._stop.is_set():
                self._beat = time.monotonic()
                if pcm is None:
                    try:
                        pcm = open_pcm("playback", self.device, self.rate, self.channels, self.period_frames)
                    except Exception as exc:
                        self.failures += 1
                        self._status("failed", f"cannot open playback device {self.device!r}: {exc}")
                        self._stop.wait(backoff)
                        backoff = min(backoff * 2, self.backoff_max_s)
                        continue
                    backoff = self.backoff_initial_s
                    self._status("running")
                chunk, drained, gen = self._next()
                if gen != gen_seen:  # flushed since the last write: drop what the device still holds
                    gen_seen = gen
                    t_play = time.monotonic()
                    try:
                        pcm.drop()
                    except Exception as exc:
                        log.debug("playback drop: %s", exc)
                    if chunk is None and not drained:
                        continue
                if drained:
                    self._call_drained()
                    continue
                if chunk is None:
                    if pcm is not None and _gone(pcm):
                        self.failures += 1
                        pcm = _close(pcm)
                        self._status("failed", f"playback device {self.device!r} disconnected")
                    continue
                self._in_underrun = False
                ahead = t_play - time.monotonic()
                if ahead > self._lead:
                    with self._cond:  # pace to real time; a flush interrupts the wait
                        self._cond.wait_for(lambda g=gen: self._flush_gen != g or self._stop.is_set(), ahead - self._lead)
                        if self._flush_gen != gen:
                            continue  # the chunk belongs to a flushed reply
                try:
                    pcm.write(chunk)
                except Exception as exc:
                    self.failures += 1
                    pcm = _close(pcm)
                    self._status("failed", f"playback device {self.device!r}: {exc}")
                    continue
                if self._first_pending:
                    self._first_pending = False
                    self.first_writes.append((self.replies, time.monotonic()))
                self.frames_written += len(chunk) // self._frame_bytes
                t_play = max(t_play, time.monotonic()) + self.period_ms / 1000
        finally:
            if pcm is not None:
                _close(pcm)
            self._status("stopped")

    def _call_drained(self) -> None:
        log.debug("playback drained")
        if self._on_drained is not None:
            try:
                self._on_drained()
            except Exception:
                log.exception("playback on_drained callback failed")
