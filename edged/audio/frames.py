"""The one frame type on the audio path, and the bounded ring between the capture and Ear threads."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

RATE = 16000
FRAME_SAMPLES = 1280  # 80 ms at 16 kHz: openWakeWord's step
FRAME_BYTES = 2 * FRAME_SAMPLES


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """S16_LE mono audio.  ``t``: monotonic time at the end of the frame; ``seq``: frame counter from
    capture start (a gap means frames were dropped)."""

    pcm: bytes
    rate: int
    t: float
    seq: int

    @property
    def samples(self) -> int:
        return len(self.pcm) // 2

    @property
    def duration(self) -> float:
        return self.samples / self.rate


class FrameRing:
    """Thread-safe bounded ring: ``put`` drops the oldest frame when full and counts it in ``drops``."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"FrameRing capacity must be at least 1 (got {capacity})")
        self.capacity = capacity
        self._q: deque[AudioFrame] = deque()
        self._cond = threading.Condition()
        self.drops = 0
        self.puts = 0

    def put(self, frame: AudioFrame) -> None:
        with self._cond:
            if len(self._q) >= self.capacity:
                self._q.popleft()
                self.drops += 1
            self._q.append(frame)
            self.puts += 1
            self._cond.notify()

    def get(self, timeout: float | None = None) -> AudioFrame | None:
        """The oldest frame, waiting up to ``timeout`` seconds (None = forever); None on timeout."""
        with self._cond:
            if not self._q and not self._cond.wait_for(lambda: bool(self._q), timeout):
                return None
            return self._q.popleft()

    def clear(self) -> int:
        with self._cond:
            n = len(self._q)
            self._q.clear()
            return n

    def __len__(self) -> int:
        with self._cond:
            return len(self._q)
