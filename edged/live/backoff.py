"""Capped exponential backoff with full jitter, reset after a stable connection.

``delay = uniform(0, min(maximum, initial * 2**attempt))``; ``connected()`` marks the start of a
connection, and ``disconnected()`` resets the attempt counter when it lasted ``stable_after_s``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class Backoff:
    def __init__(self, initial_s: float, maximum_s: float, stable_after_s: float,
                 rand: Callable[[], float] = random.random) -> None:
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self.stable_after_s = stable_after_s
        self.attempt = 0
        self._rand = rand
        self._since: float | None = None

    def cap(self) -> float:
        return min(self.maximum_s, self.initial_s * (2 ** min(self.attempt, 60)))

    def next_delay(self) -> float:
        delay = self._rand() * self.cap()
        self.attempt += 1
        return delay

    def connected(self) -> None:
        self._since = time.monotonic()

    def disconnected(self) -> None:
        if self._since is not None and time.monotonic() - self._since >= self.stable_after_s:
            self.attempt = 0
        self._since = None

    def reset(self) -> None:
        self.attempt = 0
