"""The Live connection as the daemon reports it: its state line, its problem, its ``connection`` event.

The conversation feeds :class:`LiveState` every state the session reports
(``LiveHandler.on_connection``).  It owns what a state means outside the state machine:

- ``text``: the state with its detail (status ``live.state``, the status line, Home Assistant);
- ``problem``: a state in ``reach.DOWN`` is the critical problem ``live`` (its detail names what to
  fix); ``connected`` or ``resumed`` clears it;
- the journal line (with ``LIVE_STATE``, ``SESSION_ID``, ``CLOSE_CODE``) and the ``connection`` event;
- ``reach``: whether a wake reaches the assistant now (:class:`edged.live.reach.Reach`).

What a lost connection does to a waiting turn is the conversation's (the ``unreachable`` event).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .live.reach import CONNECTED, DOWN, Reach
from .repeats import Repeats

if TYPE_CHECKING:
    from .ports import Ports

log = logging.getLogger("edged.conversation")  # the name its line had before the split (the journal's LOGGER field)


class LiveState:
    """``stable_after_s``: how long a connection must have lasted to count as working (``live.stable_after_s``,
    the session's backoff uses the same): a connection that keeps dropping sooner is part of the same
    trouble, and its state lines are said once, then as reminders (``edged.repeats``)."""

    def __init__(self, ports: Ports, stable_after_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ports = ports
        self.text = "not started"
        self.reach = Reach()  # connected / reconnecting / offline, from the session's connection states
        self.problem: str | None = None  # what the Live connection's problem is, for the conversation's `why`
        self.stable_after_s = stable_after_s
        self.clock = clock
        self._repeats = Repeats(clock=lambda: self.clock())
        self._up_since: float | None = None  # when the current connection was made

    def update(self, state: str, detail: str, session: dict[str, Any] | None) -> bool:
        """A state from the session (``session``: its status, when attached).  True when the service
        is down for us (a turn waiting for it is given up)."""
        self.text = state if not detail else f"{state} ({detail})"
        fields: dict[str, Any] = {"LIVE_STATE": state}
        if session is not None:
            if session.get("session_id"):
                fields["SESSION_ID"] = session["session_id"]
            if session.get("last_close_code") is not None:
                fields["CLOSE_CODE"] = session["last_close_code"]
        if state in CONNECTED:
            self._up_since = self.clock()
            say, held = self._repeats.seen(state)  # the detail (the session id) is new every time
        else:  # a retry loop's states (connecting, offline, ...) once per reason, not every try
            if self._up_since is not None and self.clock() - self._up_since >= self.stable_after_s:
                self._repeats.clear()  # it worked for a while: what happens now is news
            self._up_since = None
            say, held = self._repeats.seen(f"{state}\0{detail}")
        log.log(logging.INFO if say else logging.DEBUG, "live %s %s%s", state, detail, Repeats.more(held),
                extra={"fields": fields})
        self.reach.update(state, detail)
        down = state in DOWN
        if down:  # offline, auth_failed, model_unavailable, setup_refused, no_key, no_ca
            # model_unavailable / setup_refused / no_key: the detail names what to fix (LiveSession)
            self.problem = f"{state}: {detail}" if detail else state
            self._ports.problem("live", self.problem)
        elif state in CONNECTED:
            self.problem = None
            self._ports.problem("live", None)
        self._ports.publish({"event": "connection", "state": state, "detail": detail, **self.reach.status()})
        return down
