"""What is wrong with which part: the one registry behind ``Ports.problem``.

A part reports ``problem(part, message)`` when it fails and ``problem(part, None)`` when it works
again.  Each change is logged, a new problem is published as an ``error`` event and a cleared one as
a ``recovered`` event (``{"event": "recovered", "part", "was"}``: followers such as the MQTT bridge's
problem sensor catch up at once), and ``on_change`` is called (the root tells the conversation whether a critical part is affected, which makes the
resting state ERROR, and refreshes the service manager's status line).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .ports import Publish

log = logging.getLogger(__name__)

# Problems that leave the speaker unable to do its job: the resting state is ERROR while one lasts.
CRITICAL = ("capture", "wake", "live")
# A long-lived task that crashed (edged.supervise reports it as "task:NAME"): critical too.
CRITICAL_PREFIX = "task:"


class Problems:
    def __init__(self, publish: Publish, on_change: Callable[[], None]) -> None:
        self._publish = publish
        self._on_change = on_change
        self.items: dict[str, str] = {}
        self.last_error: str | None = None

    def report(self, part: str, message: str | None) -> None:
        if message is None:
            was = self.items.pop(part, None)
            if was is not None:
                log.info("%s recovered", part)
                self._publish({"event": "recovered", "part": part, "was": was})
                self._on_change()
            return
        if self.items.get(part) != message:
            self.items[part] = message
            self.last_error = f"{part}: {message}"
            log.error("%s: %s", part, message)
            self._publish({"event": "error", "message": self.last_error})
            self._on_change()

    def note_error(self, text: str) -> None:
        """An error that is not a part's state (a refused reload): shown as ``last_error``."""
        self.last_error = text

    def critical(self) -> list[str]:
        """The critical parts that have a problem now, sorted."""
        return sorted(p for p in self.items if p in CRITICAL or p.startswith(CRITICAL_PREFIX))

    def summary(self) -> str:
        return "; ".join(f"{k}: {v}" for k, v in sorted(self.items.items()))
