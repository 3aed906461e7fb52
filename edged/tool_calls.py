"""The model's function calls while they run: one task each, its events, its response to the session.

The conversation decides when calls start (the transition table's ``run_tools`` and
``run_tools_aside``) and what their running means for the state; :class:`ToolCalls` runs them:
``tool_call`` and ``tool_result`` events (``state``: what the speaker was doing meanwhile), the
response sent to the Live session, and what runs now (``running()``: status ``tools_running``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.genai import types

    from .ports import ConversationParts, Publish
    from .state import State

log = logging.getLogger("edged.conversation")  # the name its lines had before the split (the journal's LOGGER field)


class ToolCalls:
    def __init__(self, publish: Publish, parts: Callable[[], ConversationParts], state: Callable[[], State],
                 on_change: Callable[[], None]) -> None:
        self._publish = publish
        self._parts = parts  # read at each use: a reload replaces the tools and the session
        self._state = state
        self._on_change = on_change  # a call started or ended (the LED overlay, the status line)
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._names: dict[str, tuple[str, float]] = {}  # running call key -> (name, monotonic start)

    def running(self) -> list[dict[str, Any]]:
        """The calls running now (any state; during speech they run beside the reply)."""
        now = time.monotonic()
        return [{"id": None if k.startswith("anon-") else k, "name": name, "for_s": round(now - t0, 1)}
                for k, (name, t0) in self._names.items()]

    def count(self) -> int:
        return len(self._names)

    def start(self, calls: list[types.FunctionCall]) -> None:
        loop = asyncio.get_running_loop()
        for fc in calls:
            key = fc.id or f"anon-{time.monotonic_ns()}"
            task = loop.create_task(self._run(fc), name=f"tool-{fc.name}")
            self.tasks[key] = task
            self._names[key] = (fc.name or "?", time.monotonic())
            task.add_done_callback(lambda _t, k=key: self._done(k))
        self._on_change()

    def cancel(self, ids: list[str]) -> None:
        """The model called these off (toolCallCancellation)."""
        self._parts().tools.cancel(ids)
        self._publish({"event": "tool_cancel", "ids": list(ids)})

    def _done(self, key: str) -> None:
        self.tasks.pop(key, None)
        if self._names.pop(key, None) is not None:
            self._on_change()

    async def _run(self, fc: types.FunctionCall) -> None:
        # "state": what the speaker is doing while the call runs (speaking: it runs beside the reply)
        self._publish({"event": "tool_call", "name": fc.name, "args": dict(fc.args or {}), "id": fc.id,
                       "state": self._state().value})
        response = await self._parts().tools.call(fc)
        if response is None:  # cancelled: no response is sent
            self._publish({"event": "tool_result", "name": fc.name, "id": fc.id, "ok": False,
                           "cancelled": True, "state": self._state().value})
            return
        result = response.response or {}
        self._publish({"event": "tool_result", "name": fc.name, "id": fc.id, "ok": "error" not in result,
                       "response": result, "state": self._state().value})
        try:
            await self._parts().live.send_tool_responses([response])
        except Exception as exc:
            log.warning("sending the response to %s failed: %s", fc.name, exc)
