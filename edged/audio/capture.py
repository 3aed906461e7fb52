"""ALSA capture thread: device audio -> 16 kHz mono 80 ms frames -> FrameRing.

The thread supervises its PCM: a device that is missing or fails is reopened with capped exponential
backoff, and every state change is reported through ``on_status(state, error)`` (called from the
capture thread): "running", "failed", "muted", "stopped".  Muted, the PCM is closed and nothing is
read; a read that was in flight when the mute came is thrown away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .convert import Converter
from .frames import FRAME_BYTES, RATE, AudioFrame, FrameRing

log = logging.getLogger(__name__)

StatusCallback = Callable[[str, str | None], None]


def open_pcm(kind: str, device: str, rate: int, channels: int, period_frames: int, periods: int = 4):
    """Open an ALSA PCM (S16_LE) with pyalsaaudio; raises alsaaudio.ALSAAudioError."""
    import alsaaudio

    return alsaaudio.PCM(alsaaudio.PCM_CAPTURE if kind == "capture" else alsaaudio.PCM_PLAYBACK,
                         alsaaudio.PCM_NORMAL, rate=rate, channels=channels,
                         format=alsaaudio.PCM_FORMAT_S16_LE, periodsize=period_frames, periods=periods,
                         device=device)


class Capture:
    def __init__(self, device: str, *, device_rate: int = RATE, device_channels: int = 1, period_ms: int = 80,
                 ring: FrameRing, on_status: StatusCallback | None = None, backoff_initial_s: float = 0.2,
                 backoff_max_s: float = 10.0) -> None:
        if period_ms <= 0 or device_rate * period_ms // 1000 < 1:
            raise ValueError(f"capture period_ms={period_ms} is too short")
        self.device = device
        self.device_rate, self.device_channels, self.period_ms = device_rate, device_channels, period_ms
        self.period_frames = device_rate * period_ms // 1000
        self.ring = ring
        self._on_status = on_status
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, max(backoff_initial_s, backoff_max_s)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # interrupts backoff / mute waits
        self._muted = False
        self._closed = threading.Event()
        self._closed.set()
        self.state = "stopped"
        self.error: str | None = None
        self._beat = time.monotonic()
        self._seq = 0
        self._frames = 0
        self._opens = 0
        self._failures = 0
        self._overruns = 0
        self._discarded = 0

    # -- control (any thread) ---------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._beat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"capture:{self.device}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        t, self._thread = self._thread, None
        if t is not None:
            t.join(timeout)
            if t.is_alive():
                log.warning("capture thread for %s did not stop within %.1f s (blocked in ALSA open?)",
                            self.device, timeout)

    def set_muted(self, muted: bool) -> None:
        """Muted: the PCM is closed by the thread right after the read in flight, whose data is dropped."""
        self._muted = bool(muted)
        self._wake.set()

    @property
    def muted(self) -> bool:
        return self._muted

    def wait_closed(self, timeout: float) -> bool:
        """True once the PCM is closed (after a mute or stop)."""
        return self._closed.wait(timeout)

    def alive(self) -> float:
        """Monotonic time of the capture loop's last iteration (for the watchdog)."""
        return self._beat

    def stats(self) -> dict:
        return {"device": self.device, "state": self.state, "error": self.error, "muted": self._muted,
                "frames": self._frames, "drops": self.ring.drops, "opens": self._opens,
                "failures": self._failures, "overruns": self._overruns, "discarded_reads": self._discarded,
                "heartbeat_age_s": round(time.monotonic() - self._beat, 3)}

    # -- the thread -------------------------------------------------------------------------------
    def _status(self, state: str, error: str | None = None) -> None:
        if state == self.state and error == self.error:
            return
        self.state, self.error = state, error
        if state == "failed":
            log.warning("capture %s failed: %s", self.device, error)
        else:
            log.info("capture %s: %s", self.device, state)
        if self._on_status is not None:
            try:
                self._on_status(state, error)
            except Exception:
                log.exception("capture on_status callback failed")

    def _run(self) -> None:
        pcm = None
        conv = Converter(self.device_rate, self.device_channels, RATE)
        acc = bytearray()
        backoff = self.backoff_initial_s
        try:
            while not self._stop.is_set():
                self._beat = time.monotonic()
                if self._muted:
                    if pcm is not None:
                        pcm = _close(pcm)
                        acc.clear()
                        conv.reset()
                    self._closed.set()
                    self._status("muted")
                    self._wake.wait(0.5)
                    self._wake.clear()
                    continue
                if pcm is None:
                    try:
                        pcm = open_pcm("capture", self.device, self.device_rate, self.device_channels,
                                       self.period_frames)
                    except Exception as exc:
                        self._failures += 1
                        self._closed.set()
                        self._status("failed", f"cannot open capture device {self.device!r}: {exc}")
                        self._wake.wait(backoff)
                        self._wake.clear()
                        backoff = min(backoff * 2, self.backoff_max_s)
                        continue
                    self._opens += 1
                    self._closed.clear()
                    conv.reset()
                    acc.clear()
                    backoff = self.backoff_initial_s
                    self._status("running")
                try:
                    n, data = pcm.read()
                except Exception as exc:
                    self._failures += 1
                    pcm = _close(pcm)
                    self._closed.set()
                    self._status("failed", f"capture device {self.device!r}: {exc}")
                    self._wake.wait(backoff)
                    self._wake.clear()
                    backoff = min(backoff * 2, self.backoff_max_s)
                    continue
                if self._muted or self._stop.is_set():
                    self._discarded += 1
                    continue
                if n < 0:  # -EPIPE: overrun; ALSA recovers on the next read
                    self._overruns += 1
                    log.debug("capture %s overrun (%s)", self.device, n)
                    continue
                if not data:
                    continue
                acc += conv.process(data)
                while len(acc) >= FRAME_BYTES:
                    pcm_out = bytes(acc[:FRAME_BYTES])
                    del acc[:FRAME_BYTES]
                    self.ring.put(AudioFrame(pcm_out, RATE, time.monotonic(), self._seq))
                    self._seq += 1
                    self._frames += 1
        finally:
            if pcm is not None:
                _close(pcm)
            self._closed.set()
            self._status("stopped")


def _close(pcm) -> None:
    try:
        pcm.close()
    except Exception as exc:
        log.debug("closing PCM: %s", exc)
    return None
