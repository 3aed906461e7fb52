"""What the conversation sends to the Live session, in order: a turn's start, its audio, its end, a text.

One task (the conversation's sender, watched by the root's supervisor) sends it all, so start, audio
and end keep their order.  The queue is bounded in audio: past ``max_audio`` frames waiting, the
oldest audio of the turn is dropped (never a start or end marker) and ``on_drop()`` counts it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ports import LivePort

log = logging.getLogger("edged.conversation")  # the name its lines had before the split (the journal's LOGGER field)


class Outbox:
    def __init__(self, max_audio: int, on_drop: Callable[[], None]) -> None:
        self._q: deque[tuple[str, Any]] = deque()
        self._audio = 0  # audio frames waiting
        self._max = max_audio
        self._on_drop = on_drop
        self._ready = asyncio.Event()

    def put(self, kind: str, payload: Any) -> None:
        """``kind``: "start" (payload: the source), "audio" (pcm16k), "end" (the reason) or "text"."""
        if kind == "audio":
            if self._audio >= self._max:
                # drop the oldest audio still waiting (never a start/end marker)
                for i, (k, _) in enumerate(self._q):
                    if k == "audio":
                        del self._q[i]
                        self._audio -= 1
                        self._on_drop()
                        break
            self._audio += 1
        self._q.append((kind, payload))
        self._ready.set()

    async def run(self, live: Callable[[], LivePort]) -> None:
        """Send for ever; ``live()`` is read for each item: a reload replaces the session."""
        while True:
            await self._ready.wait()
            while self._q:
                kind, payload = self._q.popleft()
                session = live()
                try:
                    if kind == "audio":
                        self._audio -= 1
                        await session.send_audio(payload)
                    elif kind == "start":
                        await session.activity_start()
                    elif kind == "end":
                        await session.activity_end()
                    elif kind == "text":
                        await session.send_text(payload)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the session buffers/replays; never kill the sender
                    log.warning("sending %s to the Live session failed: %s", kind, exc)
            self._ready.clear()
