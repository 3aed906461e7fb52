"""The shared base of the daemon's threads: start, stop, heartbeat, and reopen with backoff.

:class:`Worker` is a thread with a stop event and a heartbeat: ``start()``, ``request_stop()``
(sets the stop event and returns at once), ``join(timeout)``, ``stop(timeout)`` (both), and
``alive()`` (the monotonic time of the loop's last beat, for the watchdog).  Shutdown sets the stop
events of every thread first and joins them afterwards, so the threads stop in parallel.

:class:`DeviceThread` adds what a thread that owns a device needs: its state, reported through
``on_status(state, error)`` (called from the thread; "running", "failed", "muted", "stopped"), and
a capped exponential backoff (:class:`edged.live.backoff.Backoff`) between reopens of a device that
is missing or fails.  Capture and playback are both DeviceThreads.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from ..live.backoff import Backoff

log = logging.getLogger(__name__)

StatusCallback = Callable[[str, str | None], None]

# a device that ran this long before failing starts its backoff from the beginning again
STABLE_AFTER_S = 5.0


def _equal_jitter() -> float:
    """Backoff's random factor in [0.5, 1): jitter, but never a retry at once (no busy loop)."""
    return 0.5 + random.random() / 2


class Worker:
    """A daemon thread running ``_run()`` until ``request_stop()``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._beat = time.monotonic()

    # -- control (any thread) ---------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._beat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to end; returns at once.  ``join()`` waits for it."""
        self._stop.set()
        self._interrupt()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the thread to end; True if it has (or never ran)."""
        t = self._thread
        if t is None:
            return True
        t.join(max(0.0, timeout))
        if t.is_alive():
            log.warning("thread %s did not stop within %.1f s (blocked in a device call?); left behind",
                        self.name, timeout)
            return False
        self._thread = None
        return True

    def stop(self, timeout: float = 5.0) -> bool:
        self.request_stop()
        return self.join(timeout)

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def alive(self) -> float:
        """Monotonic time of the thread loop's last iteration (for the watchdog)."""
        return self._beat

    # -- for subclasses ---------------------------------------------------------------------------
    def _interrupt(self) -> None:
        """Wake the thread from whatever it waits on (a subclass's condition); the stop event is set."""

    def beat(self) -> None:
        self._beat = time.monotonic()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class DeviceThread(Worker):
    """A Worker that owns a device: status reports and reopen with backoff."""

    kind = "device"

    def __init__(self, name: str, device: str, *, on_status: StatusCallback | None,
                 backoff_initial_s: float, backoff_max_s: float) -> None:
        super().__init__(name)
        self.device = device
        self._on_status = on_status
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, max(backoff_initial_s, backoff_max_s)
        self._backoff = Backoff(self.backoff_initial_s, self.backoff_max_s, STABLE_AFTER_S, rand=_equal_jitter)
        self._wake = threading.Event()  # interrupts backoff waits (stop, mute)
        self.state = "stopped"
        self.error: str | None = None

    def _interrupt(self) -> None:
        self._wake.set()

    def _status(self, state: str, error: str | None = None) -> None:
        if state == self.state and error == self.error:
            return
        self.state, self.error = state, error
        if state == "failed":
            log.warning("%s %s failed: %s", self.kind, self.device, error)
        else:
            log.info("%s %s: %s", self.kind, self.device, state)
        if self._on_status is not None:
            try:
                self._on_status(state, error)
            except Exception:
                log.exception("%s on_status callback failed", self.kind)

    def _opened(self) -> None:
        """The device is open: a failure after a stable run starts the backoff afresh."""
        self._backoff.connected()
        self._status("running")

    def _failed(self, error: str) -> None:
        """The device could not be opened or failed: report it, then wait before the next try
        (the stop event or ``_wake`` cut the wait short)."""
        self._backoff.disconnected()
        self._status("failed", error)
        self._wake.wait(self._backoff.next_delay())
        self._wake.clear()


def open_pcm(kind: str, device: str, rate: int, channels: int, period_frames: int, periods: int = 4):
    """Open an ALSA PCM (S16_LE) with pyalsaaudio; raises alsaaudio.ALSAAudioError."""
    import alsaaudio

    return alsaaudio.PCM(alsaaudio.PCM_CAPTURE if kind == "capture" else alsaaudio.PCM_PLAYBACK,
                         alsaaudio.PCM_NORMAL, rate=rate, channels=channels,
                         format=alsaaudio.PCM_FORMAT_S16_LE, periodsize=period_frames, periods=periods,
                         device=device)


def close_pcm(pcm) -> None:
    """Close a PCM, logging (not raising) a failure; returns None for ``pcm = close_pcm(pcm)``."""
    try:
        pcm.close()
    except Exception as exc:
        log.debug("closing PCM: %s", exc)
    return None
