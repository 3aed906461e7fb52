"""Notifier against a real datagram socket bound in another process."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from edged.service.notify import Notifier
from tests.service.notify_receiver import NotifyReceiver
from tests.waiting import until


@pytest.fixture(params=["systemd", "socket"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def rx(tmp_path, monkeypatch):
    with NotifyReceiver(tmp_path / "notify.sock") as receiver:
        monkeypatch.setenv("NOTIFY_SOCKET", receiver.address)
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        yield receiver


def test_lifecycle_messages(rx, backend):
    n = Notifier(backend=backend)
    assert n.enabled
    assert n.ready("idle, listening for hey_jarvis")
    m = rx.wait_for("READY")
    assert m.fields == {"READY": "1", "STATUS": "idle, listening for hey_jarvis"}
    n.status("line one\nline two")
    assert rx.wait_for("STATUS", after=1).fields == {"STATUS": "line one line two"}

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    m = rx.wait_for("RELOADING", after=2)
    assert m.fields["RELOADING"] == "1"
    assert before <= int(m.fields["MONOTONIC_USEC"]) <= after
    n.ready()
    assert rx.wait_for("READY", after=3).fields == {"READY": "1"}
    n.stopping("bye")
    assert rx.wait_for("STOPPING", after=4).fields == {"STOPPING": "1", "STATUS": "bye"}
    assert [next(iter(m.fields)) for m in rx.messages()] == ["READY", "STATUS", "RELOADING", "READY", "STOPPING"]
    assert n.sent == 5 and n.failed == 0
    # the path taken is the one asked for: systemd-python's sd_notify, or the built-in writer
    assert (n._sd_notify is not None) == (backend == "systemd")


def test_abstract_socket(monkeypatch):
    name = f"@edged-test-notify-{os.getpid()}-{time.monotonic_ns()}"
    with NotifyReceiver(name) as rx:
        monkeypatch.setenv("NOTIFY_SOCKET", name)
        for backend in ("socket", "systemd"):
            assert Notifier(backend=backend).status(backend)
        assert [m.fields["STATUS"] for m in (rx.wait_for("STATUS"), rx.wait_for("STATUS", after=1))] == \
            ["socket", "systemd"]


def test_without_notify_socket_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    assert n.ready() is False and n.status("x") is False
    assert n.sent == 0


def test_socket_missing_does_not_raise(tmp_path):
    n = Notifier(backend="socket", env={"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert n.ready() is False
    assert n.failed == 1


def test_watchdog_interval():
    pid = str(os.getpid())
    assert Notifier(env={"WATCHDOG_USEC": "30000000"}).watchdog_interval() == 15.0
    assert Notifier(env={"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": pid}).watchdog_interval() == 15.0
    assert Notifier(env={"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_interval() is None
    assert Notifier(env={}).watchdog_interval() is None
    assert Notifier(env={"WATCHDOG_USEC": "soon"}).watchdog_interval() is None
    assert Notifier(env={"WATCHDOG_USEC": "0"}).watchdog_interval() is None


async def test_run_watchdog_without_watchdog_returns(monkeypatch):
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    await asyncio.wait_for(Notifier().run_watchdog([]), 5)


def pings_after(rx, t: float, n: int = 1, timeout: float = 20.0) -> list:
    """Wait for n WATCHDOG pings received after wall time t (the receiver's kernel timestamps)."""
    return rx.wait_until(lambda ms: (p := [m for m in ms if "WATCHDOG" in m and m.t > t])[n - 1:] and p,
                         timeout)


async def test_watchdog_pings_and_stops_when_loop_blocked_or_check_fails(rx, backend, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # interval 0.2 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    n = Notifier(backend=backend)
    assert n.watchdog_interval() == pytest.approx(0.2)
    healthy = True
    checked: list[float] = []  # wall time of each check the watchdog makes

    def capture_heartbeat_fresh() -> bool:
        checked.append(time.time())
        return healthy

    task = asyncio.create_task(n.run_watchdog([capture_heartbeat_fresh]))
    try:
        # 1. it pings, never faster than the interval
        pings = await asyncio.to_thread(pings_after, rx, 0.0, 6)
        assert all(m.fields == {"WATCHDOG": "1"} for m in pings)
        gaps = [b.t - a.t for a, b in zip(pings, pings[1:], strict=False)]
        assert min(gaps) >= 0.19, gaps

        # 2. the loop is blocked (deliberately, 1.5 s): not one ping while it is, pings after
        b0 = time.time()
        time.sleep(1.5)  # noqa: ASYNC251 - the stimulus: the event loop is stuck
        b1 = time.time()
        await asyncio.to_thread(pings_after, rx, b1)
        assert [m for m in rx.messages("WATCHDOG") if b0 + 0.05 < m.t < b1] == []

        # 3. a failing check: five checks in a row fail and no ping goes out; pings resume after
        healthy = False
        await until(lambda: n.watchdog_failing == "capture_heartbeat_fresh", what="watchdog sees the failure", timeout=20)
        f0 = time.time()
        first = len(checked)
        await until(lambda: len(checked) >= first + 5, what="five more checks", timeout=20)
        f1 = checked[first + 4]
        assert [m for m in rx.messages("WATCHDOG") if f0 < m.t <= f1] == []
        healthy = True
        await asyncio.to_thread(pings_after, rx, f1)
        assert n.watchdog_failing is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_watchdog_check_that_raises_counts_as_failed(rx, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    n = Notifier(backend="socket")
    raised: list[float] = []

    def broken() -> bool:
        raised.append(time.monotonic())
        raise RuntimeError("boom")

    task = asyncio.create_task(n.run_watchdog([broken]))
    try:
        await until(lambda: len(raised) >= 4 or task.done(), what="four checks", timeout=20)
        assert not task.done(), "a raising check must not end the watchdog"
        assert n.watchdog_failing == "broken"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert rx.messages("WATCHDOG") == []
