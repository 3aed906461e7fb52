"""Saying a repeated failure once, not on every retry.

A speaker whose network, broker or service is gone for a week retries every few seconds the whole
time.  Logging each try would put tens of thousands of identical lines a day into the journal (on a
Pi, an SD card that wears), and push out the lines that say what happened before.  So a retry loop
asks ``Repeats.seen(key)`` before it logs:

- a key not seen since the last ``clear()`` (a new failure, or a new reason) is said at once;
- the same key again is held back, and said again at most every ``remind_s`` (10 minutes), with how
  many times it came in between, so the journal still shows that the failure goes on;
- ``clear()`` when the thing works again: the next failure is said at once.

Counters and status are not affected: only the log lines are.  Standard library only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

REMIND_S = 600.0
MAX_KEYS = 32  # a retry loop has a few reasons at a time; a key that changes every try is not kept


class Repeats:
    def __init__(self, remind_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.remind_s = REMIND_S if remind_s is None else remind_s
        self._clock = clock
        self._said: dict[str, tuple[float, int]] = {}  # key -> (when last said, held back since)

    def seen(self, key: str) -> tuple[bool, int]:
        """(say it now, how many times it came unsaid since it was last said)."""
        now = self._clock()
        last = self._said.get(key)
        if last is not None and now - last[0] < self.remind_s:
            self._said[key] = (last[0], last[1] + 1)
            return False, 0
        if last is None and len(self._said) >= MAX_KEYS:
            self._said.pop(next(iter(self._said)))  # the oldest key
        self._said[key] = (now, 0)
        return True, last[1] if last is not None else 0

    @staticmethod
    def more(held: int) -> str:
        """The suffix for a line said again: how many like it were held back since the last one."""
        return f" ({held} more like it since the last line)" if held else ""

    def clear(self) -> None:
        """It works again: the next failure, whatever it is, is said at once."""
        self._said.clear()
