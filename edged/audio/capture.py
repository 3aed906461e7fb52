"""ALSA capture thread: device audio -> 16 kHz mono 80 ms frames -> FrameRing.

The thread (an :class:`edged.audio.device.DeviceThread`) supervises its PCM: a device that is missing
or fails is reopened with capped exponential backoff, and every state change is reported through
``on_status(state, error)`` (called from the capture thread): "running", "failed", "muted", "stopped".
Muted, the PCM is closed and nothing is read; a read that was in flight when the mute came is thrown away.
"""

from __future__ import annotations

import logging
import threading
import time

from .convert import Converter
from .device import DeviceThread, StatusCallback, close_pcm, open_pcm
from .frames import FRAME_BYTES, RATE, AudioFrame, FrameRing

log = logging.getLogger(__name__)

__all__ = ["Capture", "StatusCallback"]


class Capture(DeviceThread):
    kind = "capture"

    def __init__(self, device: str, *, device_rate: int = RATE, device_channels: int = 1, period_ms: int = 80,
                 ring: FrameRing, on_status: StatusCallback | None = None, backoff_initial_s: float = 0.2,
                 backoff_max_s: float = 10.0) -> None:
        if period_ms <= 0 or device_rate * period_ms // 1000 < 1:
            raise ValueError(f"capture period_ms={period_ms} is too short")
        super().__init__(f"capture:{device}", device, on_status=on_status, backoff_initial_s=backoff_initial_s,
                         backoff_max_s=backoff_max_s)
        self.device_rate, self.device_channels, self.period_ms = device_rate, device_channels, period_ms
        self.period_frames = device_rate * period_ms // 1000
        self.ring = ring
        self._muted = False
        self._closed = threading.Event()
        self._closed.set()
        self._seq = 0
        self._frames = 0
        self._opens = 0
        self._failures = 0
        self._overruns = 0
        self._discarded = 0

    # -- control (any thread) ---------------------------------------------------------------------
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

    def stats(self) -> dict:
        return {"device": self.device, "state": self.state, "error": self.error, "muted": self._muted,
                "frames": self._frames, "drops": self.ring.drops, "opens": self._opens,
                "failures": self._failures, "overruns": self._overruns, "discarded_reads": self._discarded,
                "heartbeat_age_s": round(time.monotonic() - self._beat, 3)}

    # -- the thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        pcm = None
        read_yet = False
        conv = Converter(self.device_rate, self.device_channels, RATE)
        acc = bytearray()
        try:
            while not self.stopping:
                self.beat()
                if self._muted:
                    if pcm is not None:
                        pcm = close_pcm(pcm)
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
                        self._failed(f"cannot open capture device {self.device!r}: {exc}")
                        continue
                    self._opens += 1
                    self._closed.clear()
                    conv.reset()
                    acc.clear()
                    read_yet = False  # "running" once a read works: one that opens but cannot be read
                    # stays "failed" through its retries instead of flapping running/failed each time
                try:
                    n, data = pcm.read()
                except Exception as exc:
                    self._failures += 1
                    pcm = close_pcm(pcm)
                    self._closed.set()
                    self._failed(f"capture device {self.device!r}: {exc}")
                    continue
                if not read_yet:
                    read_yet = True
                    self._opened()
                if self._muted or self.stopping:
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
                close_pcm(pcm)
            self._closed.set()
            self._status("stopped")
