"""edged.supervise: a long-lived task that dies is reported by name and cause, restarted with a
backoff that never shrinks during a crash loop, cleared after a stable run; the watchdog's view."""

from __future__ import annotations

import asyncio
import time

import pytest

from edged.health import Problems
from edged.ports import Deadline
from edged.supervise import Supervisor, describe
from tests.waiting import until


class Rec:
    def __init__(self) -> None:
        self.events: list[dict] = []
        self.problems = Problems(self.publish, lambda: None)

    def publish(self, ev: dict) -> None:
        ev.setdefault("mono", time.monotonic())
        self.events.append(ev)

    def crashes(self) -> list[dict]:
        return [e for e in self.events if e.get("event") == "task" and e["state"] == "crashed"]


def sup(rec: Rec, **kw) -> Supervisor:
    args = {"initial_s": 0.1, "max_s": 1.0, "stable_s": 0.5, "crash_loop": 3, **kw}
    return Supervisor(rec.problems.report, rec.publish, **args)


async def test_a_crash_is_named_restarted_with_growing_backoff_and_cleared_after_a_stable_run():
    rec = Rec()
    s = sup(rec)
    runs: list[float] = []

    async def flaky() -> None:
        runs.append(time.monotonic())
        if len(runs) <= 4:
            raise FileNotFoundError(2, "No such file or directory")
        await asyncio.Event().wait()  # then runs until stopped

    w = s.watch("live", flaky, "the Live supervisor")
    await until(lambda: len(runs) == 5 and w.state == "running")
    crashes = rec.crashes()
    assert [c["crashes"] for c in crashes] == [1, 2, 3, 4]
    assert crashes[0]["error"].startswith("FileNotFoundError: [Errno 2] No such file or directory (in flaky, ")
    # half jitter: each wait is between half the cap and the cap, the cap doubling up to max_s
    delays = [c["restart_in_s"] for c in crashes]
    caps = [0.1, 0.2, 0.4, 0.8]
    assert all(cap / 2 <= d <= cap for d, cap in zip(delays, caps, strict=True)), delays
    assert delays == sorted(delays)
    gaps = [b - a for a, b in zip(runs, runs[1:], strict=False)]
    assert all(g >= d - 0.01 for g, d in zip(gaps, delays, strict=True)), (gaps, delays)
    assert w.restarts == 4 and w.streak == 4
    # the cause is a critical problem while it lasts, and the watchdog is told it crash-loops
    assert rec.problems.critical() == ["task:live"]
    assert rec.problems.items["task:live"].startswith("the Live supervisor crashed: FileNotFoundError")
    assert s.failing() is not None and "crash-looping (4 crashes in a row" in s.failing()
    # it now runs: after stable_s the problem clears and the loop is forgiven
    await until(lambda: "task:live" not in rec.problems.items, timeout=3)
    assert s.failing() is None and w.streak == 0
    assert rec.events[-1] == {"event": "task", "name": "live", "state": "recovered", "restarts": 4,
                              "mono": rec.events[-1]["mono"]}
    assert s.status()["live"]["state"] == "running"
    await w.stop(Deadline(2))
    assert w.state == "stopped" and w.task.done()


async def test_returning_on_its_own_is_a_crash_but_not_once_retired():
    rec = Rec()
    s = sup(rec, stable_s=5.0)
    calls = 0

    async def returns() -> None:
        nonlocal calls
        calls += 1

    w = s.watch("sender", returns, "the conversation's sender")
    await until(lambda: calls >= 2)
    assert rec.crashes()[0]["error"] == "it returned, but it must run until the daemon stops"
    assert rec.problems.items["task:sender"].startswith("the conversation's sender crashed: it returned")
    await w.stop(Deadline(2))
    assert "task:sender" not in rec.problems.items, "stopping clears what its runs reported"

    ended = asyncio.Event()

    async def until_told() -> None:
        await ended.wait()

    before = len(rec.crashes())
    w2 = s.watch("live", until_told)
    await asyncio.sleep(0)
    w2.retire()
    ended.set()
    await asyncio.wait_for(w2.task, 2)
    assert w2.state == "finished" and len(rec.crashes()) == before and s.failing() is None


async def test_a_dead_runner_fails_the_watchdog_check():
    rec = Rec()

    def broken_publish(ev: dict) -> None:  # a bug on the crash path: the runner itself dies
        if ev.get("state") == "crashed":
            raise RuntimeError("publish is broken")

    s = Supervisor(rec.problems.report, broken_publish, initial_s=0.1, max_s=1.0, stable_s=5.0, crash_loop=3)

    async def once() -> None:
        raise OSError("boom")

    w = s.watch("watchdog", once, "the watchdog")
    with pytest.raises(RuntimeError, match="publish is broken"):
        await asyncio.wait_for(w.task, 2)
    assert s.failing() == "the watchdog is dead (its runner ended: restarting)"


async def test_watching_the_same_name_twice_is_refused():
    s = sup(Rec())

    async def forever() -> None:
        await asyncio.Event().wait()

    w = s.watch("live", forever)
    with pytest.raises(RuntimeError, match="already watched"):
        s.watch("live", forever)
    await w.stop(Deadline(2))
    w2 = s.watch("live", forever)  # once stopped, a reload may watch a new one
    await w2.stop(Deadline(2))


def test_describe_points_at_the_code_that_raised():
    def inner():
        raise ValueError("bad handle")

    try:
        inner()
    except ValueError as exc:
        text = describe(exc)
    assert text.startswith("ValueError: bad handle (in inner, ")
    assert text.endswith(f":{inner.__code__.co_firstlineno + 1})")


# ---- cancel_and_wait: bounded, and deaf to a lost cancel --------------------------------------------

async def test_cancel_and_wait_ends_a_task_that_lost_its_first_cancel() -> None:
    """3.11's wait_for can swallow a cancel (gh-86296): the task runs on with cancelling() set.
    cancel_and_wait cancels it again and it ends, well within the time."""
    from edged.supervise import cancel_and_wait

    swallowed = asyncio.Event()

    async def deaf_once() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()  # as wait_for does when the inner result arrives with the cancel
        await asyncio.Event().wait()  # runs on, waiting for something that never comes

    t = asyncio.create_task(deaf_once())
    await asyncio.sleep(0)
    t0 = time.monotonic()
    assert await cancel_and_wait(t, 2.0)
    assert swallowed.is_set() and t.cancelled()
    assert time.monotonic() - t0 < 1.9  # ended by the second cancel (after the grace), not the deadline


async def test_cancel_and_wait_never_waits_past_its_timeout() -> None:
    from edged.supervise import cancel_and_wait

    deaf = True

    async def immortal() -> None:
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if not deaf:
                    raise

    t = asyncio.create_task(immortal())
    await asyncio.sleep(0)
    t0 = time.monotonic()
    assert not await cancel_and_wait(t, 0.3)
    took = time.monotonic() - t0
    assert 0.25 <= took < 1.0, took
    deaf = False  # let the loop's teardown end it
    t.cancel()
    await asyncio.wait([t], timeout=2)
    assert t.cancelled()


async def test_cancel_and_wait_leaves_a_graceful_cleanup_alone() -> None:
    """A task that cleans up after its cancel (closing a connection) is not cancelled again while it
    does so within half the time."""
    from edged.supervise import cancel_and_wait

    cleaned = asyncio.Event()

    async def polite() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.2)  # a graceful close
            cleaned.set()

    t = asyncio.create_task(polite())
    await asyncio.sleep(0)
    assert await cancel_and_wait(t, 2.0)
    assert cleaned.is_set()
