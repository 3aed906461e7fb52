"""One connection to the Live API (:class:`Link`) and :func:`send`, a send on it that ends it when it fails.

The session's supervisor makes a link per connection and waits for it to end; its receiver and its
sender use it.  Whoever sees it fail first sets ``error`` and ``why`` and then ``ended``; the
supervisor reads them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from google.genai import errors as genai_errors
from websockets.exceptions import ConnectionClosed

from .wire import describe

log = logging.getLogger("edged.live.session")  # the name the session's messages have always had


class Link:
    """One connection: the SDK session and why it ended."""

    def __init__(self, session: Any, resumed: bool) -> None:
        self.session = session
        self.resumed = resumed
        self.ended = asyncio.Event()
        self.error: BaseException | None = None
        self.why = ""
        self.messages = 0
        self.goaway_deadline: float | None = None
        self.goaway_timer: asyncio.TimerHandle | None = None
        self.reply_audio = False  # reply audio arrived for the open turn
        self.gen_audio = 0  # reply audio bytes in the current generation
        self.gen_calls = 0
        self.gen_interrupted = False

    def new_generation(self) -> None:
        self.reply_audio = False
        self.gen_audio = 0
        self.gen_calls = 0
        self.gen_interrupted = False


async def send(link: Link, coro: Any) -> bool:
    """Await one of the SDK session's sends; a failure ends the link (the supervisor reconnects)."""
    try:
        await coro
        return True
    except (ConnectionClosed, genai_errors.APIError, OSError) as exc:
        code, reason = describe(exc)
        log.info("send failed (%s %s): reconnecting", code, reason)
        if not link.ended.is_set():
            link.error = link.error or exc
            link.why = link.why or f"send failed: {reason}"
            link.ended.set()
        return False
