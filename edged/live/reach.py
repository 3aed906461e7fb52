"""Can the assistant be reached?  The rule that decides what a wake does while not connected.

The Live session reports its connection states (``LiveHandler.on_connection``); :class:`Reach` keeps
the last one and when the session was last connected, and answers ``verdict()``:

- ``connected``: a connection is open (``connected``, ``resumed``).
- ``reconnecting``: no connection right now, but one is expected shortly: a GoAway or a drop was
  just followed by a reconnect (``disconnected``, ``connecting``), or the daemon is starting, and the
  session has been without a connection for less than ``grace_s``.  A turn opened now is kept by the
  session and sent (replayed) on the new connection, as after any reconnect.
- ``offline``: the service cannot be reached or refused us: ``offline`` (the network is down, the
  address refused: the session's connect failed with an OS error), ``auth_failed``,
  ``model_unavailable``, ``setup_refused``, ``no_key``, ``no_ca`` (``live.ca_file`` unusable), or no connection for ``grace_s`` or more (a
  reconnect that keeps failing).  Once one of these came, the verdict stays ``offline`` through the
  session's retries (``connecting``) until a connection is open again.  A wake then plays the
  "offline" cue and opens no turn.

``grace_s`` (``RECONNECT_GRACE_S``) is the time a person will wait after the wake word before an
answer seems lost; the session's own reconnect (backoff from ``live.backoff_initial_s``) lands well
within it when the service is there.
"""

from __future__ import annotations

import time
from collections.abc import Callable

RECONNECT_GRACE_S = 10.0

CONNECTED = ("connected", "resumed")
# states that say the service is not there for us: a wake is answered with the "offline" cue
DOWN = ("offline", "auth_failed", "model_unavailable", "setup_refused", "no_key", "no_ca")
# refusals the session retries only every live.auth_retry_s; retry_now() may shorten that wait
REFUSED = ("auth_failed", "model_unavailable", "setup_refused")


class Reach:
    def __init__(self, grace_s: float = RECONNECT_GRACE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace_s = grace_s
        self._clock = clock
        self.state = "not started"
        self.detail = ""
        self.down_since: float | None = clock()  # None while connected
        self._down: str | None = None  # why, once a DOWN state came since the last connection

    def update(self, state: str, detail: str = "") -> None:
        """A connection state from the session."""
        self.state, self.detail = state, detail or ""
        if state in CONNECTED:
            self.down_since = self._down = None
            return
        if self.down_since is None:
            self.down_since = self._clock()
        if state in DOWN:
            self._down = f"{state}: {detail}" if detail else state

    def verdict(self) -> tuple[str, str]:
        """("connected" | "reconnecting" | "offline", why)."""
        if self.state in CONNECTED:
            return "connected", ""
        if self._down is not None:  # a retry ("connecting") after it is no reconnect in progress
            return "offline", self._down
        why = f"{self.state}: {self.detail}" if self.detail else self.state
        down = self._clock() - (self.down_since if self.down_since is not None else self._clock())
        if down >= self.grace_s:
            return "offline", f"no connection for {down:.0f} s (last: {why})"
        return "reconnecting", why

    @property
    def offline(self) -> bool:
        return self.verdict()[0] == "offline"

    @property
    def refused(self) -> bool:
        return self._down is not None and self._down.split(":", 1)[0] in REFUSED

    def status(self) -> dict[str, str]:
        verdict, why = self.verdict()
        return {"reach": verdict, **({"reach_why": why} if why else {})}
