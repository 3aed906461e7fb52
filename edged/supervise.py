"""Long-lived tasks, watched: one that dies is named, reported, and restarted with backoff.

The composition root starts every task that should run as long as its group (the Live supervisor,
the conversation's sender, the watchdog, a group's own task) through :meth:`Supervisor.watch` with
a *factory*, a callable returning a fresh coroutine (a coroutine cannot be awaited twice)::

    sup = Supervisor(problem=ports.problem, publish=ports.publish)
    w = sup.watch("live", live.run, "the Live supervisor")   # -> Watched; w.task is its runner
    w.retire()                  # it is being stopped: its return from now on is no crash
    await w.stop(deadline)      # cancel the runner and wait (bounded); its problem is cleared
    sup.failing() -> str | None # for the watchdog: a watched task that is dead or crash-looping
    sup.status() -> {name: {...}}
    await cancel_and_wait(task, timeout) -> bool  # any task: cancelled, and waited for, bounded

A crash is an exception escaping the coroutine (anything but a cancel), or the coroutine returning
while nobody retired it (it must run until stopped):

- it is logged with its traceback; the problem ``task:NAME`` (critical: the resting state is ERROR,
  and status, the ``problems`` and the service manager's STATUS line name it) says
  "WHAT crashed: Type: message (in function, file:line)";
- an event ``{"event": "task", "name", "state": "crashed", "error", "crashes", "restart_in_s"}``;
- it is started again after a delay from :class:`edged.live.backoff.Backoff` with half jitter
  (between half the cap and the cap: a crash loop is always slowed, and each wait is at least as
  long as the one before until the cap);
- a run that lasts ``stable_s`` clears the problem (event ``state: "recovered"``) and resets the
  backoff;
- ``crash_loop`` crashes in a row without a stable run: the task is crash-looping, and
  :meth:`failing` names it (the watchdog stops pinging: systemd restarts the service).

A runner that ended although nobody stopped it (a bug in this module) is dead: :meth:`failing`
names it too.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from .health import CRITICAL_PREFIX
from .live.backoff import Backoff
from .ports import Deadline, Publish, ReportProblem

log = logging.getLogger(__name__)

Factory = Callable[[], Coroutine[Any, Any, Any]]
PROBLEM_PREFIX = CRITICAL_PREFIX  # "task:": a crashed task is a critical problem
_PACKAGE = Path(__file__).resolve().parent


def half_jitter() -> float:
    """A factor in [0.5, 1): the delay is at least half the backoff's cap."""
    return 0.5 + random.random() / 2


def where(exc: BaseException) -> str:
    """"function, file:line" of the innermost frame of the traceback inside edged (the code that
    called into a library that raised), else the innermost frame; this module's own is skipped."""
    here = Path(__file__).resolve()
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() != here]
    if not frames:
        return ""
    ours = [f for f in frames if Path(f.filename).resolve().is_relative_to(_PACKAGE)]
    f = (ours or frames)[-1]
    path = Path(f.filename).resolve()
    shown = path.relative_to(_PACKAGE.parent) if path.is_relative_to(_PACKAGE.parent) else path.name
    return f"{f.name}, {shown}:{f.lineno}"


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    at = where(exc)
    return f"{text} (in {at})" if at else text


class Watched:
    """One watched task: its runner, and what happened to it."""

    def __init__(self, name: str, what: str, factory: Factory) -> None:
        self.name = name
        self.what = what or name
        self.factory = factory
        self.state = "starting"  # running, restarting, finished (retired, returned), stopped
        self.crashes = 0
        self.restarts = 0
        self.streak = 0  # crashes in a row without a stable run
        self.last_error = ""
        self.last_crash_mono: float | None = None
        self.restart_at: float | None = None
        self.retired = False
        self.reported = False  # its problem is set
        self.task: asyncio.Task[None] | None = None

    @property
    def part(self) -> str:
        return PROBLEM_PREFIX + self.name

    def retire(self) -> None:
        """It is being stopped: returning from now on is the normal end, not a crash."""
        self.retired = True

    async def stop(self, deadline: Deadline) -> None:
        self.retire()
        task = self.task
        if task is None or task.done():
            return
        if not await cancel_and_wait(task, deadline.left()):
            log.warning("task %s did not end by the deadline", self.name)

    def status(self) -> dict[str, Any]:
        left = None if self.restart_at is None else round(max(0.0, self.restart_at - time.monotonic()), 2)
        return {"state": self.state, "crashes": self.crashes, "restarts": self.restarts, "streak": self.streak,
                "last_error": self.last_error or None, "restart_in_s": left}


class Supervisor:
    def __init__(self, problem: ReportProblem, publish: Publish, *, initial_s: float = 0.5, max_s: float = 30.0,
                 stable_s: float = 10.0, crash_loop: int = 5, rand: Callable[[], float] = half_jitter) -> None:
        if crash_loop < 1:
            raise ValueError(f"crash_loop must be at least 1, not {crash_loop}")
        self._problem = problem
        self._publish = publish
        self.initial_s, self.max_s, self.stable_s, self.crash_loop = initial_s, max_s, stable_s, crash_loop
        self._rand = rand
        self._watched: dict[str, Watched] = {}

    def watch(self, name: str, factory: Factory, what: str = "") -> Watched:
        old = self._watched.get(name)
        if old is not None and old.task is not None and not old.task.done():
            raise RuntimeError(f"task {name} is already watched")
        w = Watched(name, what, factory)
        self._watched[name] = w
        w.task = asyncio.get_running_loop().create_task(self._run(w), name=f"edged-{name}")
        return w

    def get(self, name: str) -> Watched | None:
        return self._watched.get(name)

    async def stop_all(self, deadline: Deadline) -> None:
        for w in list(self._watched.values()):
            await w.stop(deadline)

    def status(self) -> dict[str, dict[str, Any]]:
        return {name: w.status() for name, w in sorted(self._watched.items())}

    def failing(self) -> str | None:
        """Why the loop's own tasks are not healthy (a dead runner, a crash loop), or None."""
        for w in self._watched.values():
            if w.task is not None and w.task.done() and w.state not in ("finished", "stopped"):
                return f"{w.what} is dead (its runner ended: {w.state})"
            if w.streak >= self.crash_loop:
                return f"{w.what} is crash-looping ({w.streak} crashes in a row; last: {w.last_error})"
        return None

    # ---- the runner ---------------------------------------------------------------------------
    async def _run(self, w: Watched) -> None:
        backoff = Backoff(self.initial_s, self.max_s, self.stable_s, rand=self._rand)
        loop = asyncio.get_running_loop()
        try:
            while True:
                w.state, w.restart_at = "running", None
                backoff.connected()
                timer = loop.call_later(self.stable_s, self._stable, w)
                try:
                    await w.factory()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    why = describe(exc)
                    log.error("%s crashed: %s", w.what, why, exc_info=exc)
                else:
                    if w.retired or _cancelling():
                        w.state = "finished"
                        return
                    why = "it returned, but it must run until the daemon stops"
                    log.error("%s ended on its own: %s", w.what, why)
                finally:
                    timer.cancel()
                backoff.disconnected()  # a stable run resets the attempts
                delay = backoff.next_delay()
                self._crashed(w, why, delay)
                await asyncio.sleep(delay)
                w.restarts += 1
                log.info("restarting %s (restart %d)", w.what, w.restarts)
        except asyncio.CancelledError:
            w.state = "stopped"
            raise
        finally:
            w.restart_at = None  # an exception here (a bug) leaves the state as it was: failing() says dead
            if w.reported:  # what it reported was about this run: a new one reports its own
                w.reported = False
                self._problem(w.part, None)

    def _crashed(self, w: Watched, why: str, delay: float) -> None:
        w.crashes += 1
        w.streak += 1
        w.last_error = why
        w.last_crash_mono = time.monotonic()
        w.state, w.restart_at = "restarting", time.monotonic() + delay
        w.reported = True
        self._problem(w.part, f"{w.what} crashed: {why}")
        self._publish({"event": "task", "name": w.name, "state": "crashed", "error": why, "crashes": w.crashes,
                       "streak": w.streak, "restart_in_s": round(delay, 3)})

    def _stable(self, w: Watched) -> None:
        w.streak = 0
        if w.reported:
            w.reported = False
            log.info("%s has run %.0f s since its restart: recovered", w.what, self.stable_s)
            self._problem(w.part, None)
            self._publish({"event": "task", "name": w.name, "state": "recovered", "restarts": w.restarts})


RECANCEL_S = 0.05  # how often a task that is still running after a cancel is cancelled again


async def cancel_and_wait(task: asyncio.Future[Any], timeout: float) -> bool:
    """Cancel ``task`` and wait for it to end, for at most ``timeout`` seconds; returns whether it ended.

    Unlike ``asyncio.wait_for(task, t)``, this never waits past ``timeout``: on a timeout, 3.11's
    ``wait_for`` cancels the task and then waits for it without a bound.  And a cancellation can be
    lost: 3.11's ``wait_for`` returns the inner result, swallowing the cancel, when both arrive in
    the same loop iteration (CPython gh-86296, fixed by the 3.12 rewrite).  aiomqtt waits for every
    publish with ``wait_for``, so an MQTT writer cancelled while its PUBACK arrives runs on, and a
    TaskGroup around it waits forever (seen in CI: the bridge's stop hung).  So the task gets half
    the time to clean up after the first cancel (a graceful close), and is then cancelled again
    every ``RECANCEL_S`` until it ends or the time is up."""
    start = time.monotonic()
    deadline = start + max(0.0, timeout)
    grace_until = start + max(0.0, timeout) / 2
    task.cancel()
    while not task.done():
        now = time.monotonic()
        if now >= deadline:
            break
        if now >= grace_until:
            task.cancel()
            step = min(deadline - now, RECANCEL_S)
        else:
            step = grace_until - now
        await asyncio.wait([task], timeout=step)
    return task.done()


def _cancelling() -> bool:
    task = asyncio.current_task()
    return bool(task is not None and task.cancelling())
