"""Waiting in the tests: poll a condition until it holds, with a deadline.

One helper for the suite, so that every wait returns as soon as its condition holds and fails the
same way, naming the condition and the time allowed.  It is a poll with a deadline, not a sleep
standing in for a wait.  Deadlines are generous: the machine is shared.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def until(pred: Callable[[], Any], what: str = "the condition", timeout: float = 10.0, *,
                every: float = 0.01, detail: Callable[[], Any] | None = None) -> Any:
    """pred()'s first truthy value, checked every ``every`` seconds; when pred returns an awaitable
    (an async predicate), its result is the value.  At the deadline: AssertionError naming ``what``
    and ``timeout``, followed by detail() when given (what the test wants to see on a failure)."""
    if not isinstance(what, str):  # the old copies disagreed on the order of what and timeout
        raise TypeError(f"until(pred, what, timeout): what must be a str, not {what!r}")
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f": {detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{extra}")
        await asyncio.sleep(every)


async def status_until(rig: Any, pred: Callable[[dict], Any], what: str, timeout: float = 30.0, *,
                       detail: Callable[[dict], Any] | None = None) -> dict:
    """The daemon's status (``await rig.status()``, as edgectl status) once pred(status) holds,
    asked every 0.05 s (each is a request on the control socket); fails as until() does, with
    detail(the last status) when given."""
    last: dict = {}

    async def check() -> dict | None:
        nonlocal last
        last = await rig.status()
        return last if pred(last) else None

    return await until(check, what, timeout, every=0.05,
                       detail=None if detail is None else lambda: detail(last))
