"""The narrow interfaces between the daemon's parts and its composition root (:mod:`edged.app`).

A part never sees the daemon.  It is given, at construction, only what it needs from this module:

- :class:`Ports`: ``publish(event)`` (an event for edgectl/MQTT followers), ``problem(part, message)``
  (record or, with None, clear what is wrong with a part), ``post(fn, *args)`` (run ``fn`` on the event
  loop, from any thread) and ``spawn(coro, name)`` (a task that lives until it ends or the daemon
  stops).  ``publish``, ``problem`` and ``spawn`` are called on the loop; a thread uses ``post``.
- the protocols the conversation drives its collaborators through (:class:`PlayerPort`,
  :class:`EarPort`, :class:`MicPort`, :class:`LivePort`, :class:`ToolsPort`, :class:`TimersPort`), gathered in
  :class:`ConversationParts` (the root's container of the current parts satisfies it).
- :class:`Deadline`: one monotonic deadline shared by every step of a shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from google.genai import types

log = logging.getLogger(__name__)

Event = dict[str, Any]


class Publish(Protocol):
    def __call__(self, event: Event) -> None: ...


class ReportProblem(Protocol):
    def __call__(self, part: str, message: str | None) -> None: ...


class Post(Protocol):
    def __call__(self, fn: Callable[..., object], *args: object) -> None: ...


class Spawn(Protocol):
    def __call__(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...


DeviceStatus = Callable[[str, str | None], None]


@dataclass(frozen=True)
class Ports:
    publish: Publish
    problem: ReportProblem
    post: Post
    spawn: Spawn

    def device_status(self, part: str) -> DeviceStatus:
        """An ``on_status(state, error)`` for a device thread: on the loop, a "failed" state becomes
        the part's problem (cleared when it runs again) and every state is published."""

        def on_loop(state: str, error: str | None) -> None:
            if state == "failed":
                self.problem(part, error or "failed")
            elif state in ("running", "open", "muted"):
                self.problem(part, None)
            self.publish({"event": "device", "part": part, "state": state, **({"error": error} if error else {})})

        def on_status(state: str, error: str | None) -> None:
            self.post(on_loop, state, error)

        return on_status


class LoopPost:
    """``post`` for one event loop: ``call_soon_threadsafe``, dropped (not raised) once the loop closed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __call__(self, fn: Callable[..., object], *args: object) -> None:
        if self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closing during shutdown
            self._loop.call_soon_threadsafe(fn, *args)


class Tasks:
    """``spawn``: tasks kept referenced until they end; ``cancel_all`` ends the rest at shutdown.

    A task that ends with an exception is given to ``on_error(name, exc)`` (never silent).  These
    are one-shot tasks; one that must run as long as its group is watched and restarted by
    :class:`edged.supervise.Supervisor` instead."""

    def __init__(self, on_error: Callable[[str, BaseException], None] | None = None) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_error = on_error

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            if self._on_error is None:
                log.error("task %s failed: %s: %s", task.get_name(), type(exc).__name__, exc, exc_info=exc)
            else:
                self._on_error(task.get_name(), exc)

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel_all(self, deadline: Deadline) -> None:
        await cancel_tasks(list(self._tasks), deadline)


async def cancel_tasks(tasks: list[asyncio.Task[Any]], deadline: Deadline) -> None:
    """Cancel the tasks and wait for them until the deadline (a task that ignores it is left)."""
    for t in tasks:
        t.cancel()
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=deadline.left())
        for t in pending:
            log.warning("task %s did not end by the shutdown deadline", t.get_name())


class Deadline:
    """A point on the monotonic clock; ``left()`` is never negative."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def left(self, cap: float | None = None) -> float:
        left = max(0.0, self.at - time.monotonic())
        return left if cap is None else min(cap, left)

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self.at


# ---- what the conversation drives ---------------------------------------------------------------
class PlayerPort(Protocol):
    def write(self, pcm: bytes) -> None: ...
    def end_of_reply(self) -> None: ...
    def flush(self) -> int: ...
    def play_cue(self, name: str, *, loop: bool = False) -> bool: ...
    def stop_cue(self) -> None: ...


class EarPort(Protocol):
    def trigger(self, source: str = "button") -> None: ...
    def cancel_turn(self) -> None: ...
    def set_wake_enabled(self, enabled: bool) -> None: ...


class MicPort(Protocol):
    def set_muted(self, muted: bool) -> None: ...


class LivePort(Protocol):
    async def activity_start(self) -> None: ...
    async def send_audio(self, pcm16k: bytes) -> None: ...
    async def activity_end(self) -> None: ...
    async def send_text(self, text: str) -> None: ...
    async def send_tool_responses(self, responses: list[types.FunctionResponse]) -> None: ...
    def status(self) -> dict[str, Any]: ...
    def retry_now(self) -> bool: ...


class ToolsPort(Protocol):
    async def call(self, fc: types.FunctionCall) -> types.FunctionResponse | None: ...
    def cancel(self, ids: list[str]) -> None: ...


class TimersPort(Protocol):
    @property
    def ringing(self) -> list[dict[str, Any]]: ...
    def stop_ringing(self) -> list[dict[str, Any]]: ...


class ConversationParts(Protocol):
    """The current parts (a reload replaces some: read them at each use, never keep one)."""

    @property
    def player(self) -> PlayerPort: ...
    @property
    def ear(self) -> EarPort: ...
    @property
    def capture(self) -> MicPort: ...
    @property
    def live(self) -> LivePort: ...
    @property
    def tools(self) -> ToolsPort: ...
    @property
    def timers(self) -> TimersPort | None: ...
