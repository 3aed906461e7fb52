"""The steps of a stop bounded by one deadline: the closers of the root's groups run them.

:class:`Bounded` holds the deadline of the stop under way (the shutdown's ``SHUTDOWN_S`` or a
reload's) and runs each step for at most what is left of it: a part's async ``stop()``
(``part``), the joins of threads in parallel (``join``), a watched task (``watched``).  A step that
overruns is logged and left behind; the next one still gets its share.  ``quietly`` runs a
synchronous release whose failure must not stop the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .ports import Deadline
from .supervise import cancel_and_wait

if TYPE_CHECKING:
    from .audio.device import Worker
    from .supervise import Watched

log = logging.getLogger("edged.app")  # the name its lines had before the split (the journal's LOGGER field)


class Bounded:
    def __init__(self) -> None:
        self.deadline = Deadline(0.0)  # the current stop's (shutdown or reload): set before each group closes

    async def part(self, what: str, stop: Callable[[], Awaitable[object]], cap: float | None = None) -> None:
        """Run a part's ``stop()`` for at most its share of the deadline.  Not ``wait_for``: on a timeout,
        3.11's waits for the cancelled stop without a bound (see supervise.cancel_and_wait)."""
        task = asyncio.ensure_future(stop())
        await asyncio.wait([task], timeout=self.deadline.left(cap))
        if not task.done():
            log.warning("stopping %s: not done by the deadline", what)
            await cancel_and_wait(task, min(0.2, self.deadline.left()))
        elif not task.cancelled() and task.exception() is not None:
            log.warning("stopping %s: %s", what, task.exception())

    async def join(self, *workers: Worker) -> None:
        """Join threads in parallel until the deadline (their stop events are set already)."""
        for w in workers:
            w.request_stop()
        left = self.deadline.left()
        await asyncio.gather(*(asyncio.to_thread(w.join, left) for w in workers))

    async def watched(self, watched: Watched) -> None:
        await watched.stop(self.deadline)


def quietly(what: str, fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception as exc:
        log.warning("%s: %s", what, exc)
