"""Announcements (Home Assistant's "announce" entity): said through the conversation's ``say`` path,
at a moment the conversation can take them.

The conversation's rules for a text turn (edged.transitions): ``say`` is refused while muted
(``refuse_muted``) and while a spoken turn is open (``refuse_turn_open``); while the speaker thinks
it is sent at once and while it speaks it cuts the reply off (``interrupt_with_text``).  That is
right for ``edgectl say`` (someone at the machine asks now); an announcement comes from elsewhere
and must not cut into a conversation in the room.  So an announcement:

- is said at once when the speaker is at rest (idle, or error: a non-critical part's problem does
  not stop it speaking; the Live session itself buffers or drops the text while it is offline);
- waits while a turn is open, the model thinks or the speaker speaks (or the daemon is starting),
  and is said as soon as the speaker is at rest again, oldest first, one per rest;
- is refused while the microphone is muted (muted is "do not disturb": the conversation plays no
  reply while muted), and a waiting one is dropped when the speaker is muted;
- waits at most ``max_wait_s`` (then it is dropped: an old announcement is wrong news), and at most
  ``max_pending`` wait (a further one is refused).

Every outcome is logged and published as an ``announce`` event (``said``, ``waiting``, ``dropped``
with the reason); a refusal raises :class:`~edged.errors.EdgedError` to the caller (the MQTT bridge
logs it and counts it as refused).  The text is never logged (it may be private).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import EdgedError
from .ports import Publish

log = logging.getLogger(__name__)

AT_REST = ("idle", "error")
WAIT_IN = ("starting", "listening", "thinking", "speaking")


@dataclass
class _Pending:
    text: str
    since: float


class Announcer:
    def __init__(self, *, state: Callable[[], str], say: Callable[[str], None], publish: Publish,
                 subscribe: Callable[[], Any], unsubscribe: Callable[[Any], None],
                 max_pending: int = 4, max_wait_s: float = 60.0) -> None:
        self._state = state
        self._say = say
        self._publish = publish
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self.max_pending = max_pending
        self.max_wait_s = max_wait_s
        self._pending: deque[_Pending] = deque()
        self.stats = {"said": 0, "waited": 0, "refused": 0, "dropped": 0}

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, text: str) -> None:
        """Say ``text`` now, or keep it for the next rest.  Raises EdgedError when it is refused."""
        state = self._state()
        if state == "muted":
            self._refuse("the microphone is muted: announcements are not played while muted")
        if state not in AT_REST and state not in WAIT_IN:
            self._refuse(f"not now ({state})")
        if state in AT_REST and not self._pending:
            self._deliver(text, waited=0.0)
            return
        if len(self._pending) >= self.max_pending:
            self._refuse(f"{self.max_pending} announcements are waiting already")
        self._pending.append(_Pending(text, time.monotonic()))
        self.stats["waited"] += 1
        log.info("announcement waits until the speaker is at rest (%s)", state)
        self._publish({"event": "announce", "result": "waiting", "state": state, "pending": len(self._pending)})
        if state in AT_REST:  # older ones waited for this rest too: the oldest goes first
            self.check()

    def _refuse(self, why: str) -> None:
        self.stats["refused"] += 1
        log.warning("announcement refused: %s", why)
        self._publish({"event": "announce", "result": "refused", "reason": why})
        raise EdgedError(f"announcement refused: {why}")

    def _deliver(self, text: str, waited: float) -> None:
        self._say(text)  # the conversation's say path: a text turn
        self.stats["said"] += 1
        log.info("announcement said%s", f" after {waited:.1f} s" if waited else "")
        self._publish({"event": "announce", "result": "said", "waited_s": round(waited, 2)})

    def _drop(self, p: _Pending, why: str) -> None:
        self.stats["dropped"] += 1
        log.warning("announcement dropped: %s", why)
        self._publish({"event": "announce", "result": "dropped", "reason": why})

    def check(self) -> None:
        """Deliver or drop what waits, given the conversation's state now."""
        now = time.monotonic()
        while self._pending and now - self._pending[0].since > self.max_wait_s:
            self._drop(self._pending.popleft(), f"the speaker was busy for more than {self.max_wait_s:g} s")
        if not self._pending:
            return
        state = self._state()
        if state == "muted" or state not in AT_REST + WAIT_IN:
            while self._pending:
                self._drop(self._pending.popleft(), f"the speaker is {state}")
        elif state in AT_REST:
            p = self._pending.popleft()
            try:
                self._deliver(p.text, now - p.since)
            except EdgedError as exc:  # the state moved on between the event and now: wait again
                self._pending.appendleft(p)
                log.info("announcement waits again: %s", exc)

    async def run(self) -> None:
        """Follow the conversation's state changes (the daemon's events) until cancelled."""
        sub = self._subscribe()
        try:
            while True:
                timeout = None
                if self._pending:
                    timeout = max(0.05, self._pending[0].since + self.max_wait_s - time.monotonic() + 0.01)
                ev = None
                with contextlib.suppress(TimeoutError):
                    ev = await asyncio.wait_for(sub.get(), timeout)
                    if ev is None:
                        return
                if ev is None or ev.get("event") in ("state", "mute", "dropped"):
                    self.check()
        finally:
            self._unsubscribe(sub)
