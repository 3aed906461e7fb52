"""A long-lived task of the daemon that dies is named, restarted with backoff, stops the watchdog's
pings while it crash-loops, and recovers once its cause is gone.

In the test's own process (the sender made to crash), and in the real ``edged run`` whose Live task
crashes at each start (a fault put in by tests/faults/sitecustomize.py while a flag file exists),
repaired by removing the fault and a ``reload`` that rebuilds the Live part."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import tomli_w

from edged import app as app_module
from edged.conversation import Conversation
from edged.dev.rig import Rig
from edged.state import State
from tests.service.notify_receiver import NotifyReceiver
from tests.waiting import status_until

from .test_e2e_inproc import speaker

FAULTS = Path(__file__).resolve().parents[1] / "faults"


def _why(st: dict) -> str:
    return f"{st['state']} ({st['why']}), {st['problems']}"


def pings(rx: NotifyReceiver) -> int:
    return len(rx.messages("WATCHDOG"))


async def no_pings_for(rx: NotifyReceiver, seconds: float, interval: float) -> bool:
    """True when no WATCHDOG=1 arrived during ``seconds`` (several ping intervals)."""
    assert seconds >= 3 * interval
    n = pings(rx)
    await asyncio.sleep(seconds)  # an absence is measured over a span: nothing to wait for
    return pings(rx) == n


async def test_a_crashing_sender_is_shown_restarted_with_backoff_and_recovers(tmp_path, models_dir, monkeypatch):
    monkeypatch.setattr(app_module, "RESTART_INITIAL_S", 0.2)
    monkeypatch.setattr(app_module, "RESTART_MAX_S", 1.6)
    monkeypatch.setattr(app_module, "TASK_STABLE_S", 1.5)
    monkeypatch.setattr(app_module, "CRASH_LOOP", 3)
    broken = {"on": True}
    real = Conversation._send_loop

    async def send_loop(self):
        if broken["on"]:
            raise RuntimeError("injected: the sender hit a bug")
        await real(self)

    monkeypatch.setattr(Conversation, "_send_loop", send_loop)
    rx = NotifyReceiver(tmp_path / "notify.sock")
    rx.start()
    monkeypatch.setenv("NOTIFY_SOCKET", rx.address)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a ping every 0.2 s while healthy
    try:
        async with speaker(tmp_path, models_dir, monkeypatch) as sp:
            d = sp.d
            sub = d.events.subscribe()
            await sp.wait(lambda: d.state == State.ERROR, timeout=10, what="the error state")
            assert d.state_why == "error (task:sender)"
            cause = d.problems["task:sender"]
            assert cause.startswith("the conversation's sender crashed: RuntimeError: injected: the sender hit a bug "
                                    "(in send_loop, tests/e2e/test_e2e_supervise.py:")
            assert any(cause in m.fields.get("STATUS", "") for m in rx.messages("STATUS")), \
                "the service manager's status line names the cause"
            # restarted again and again, each wait at least as long as the one before
            crashes: list[dict] = []
            async with asyncio.timeout(20):
                while len(crashes) < 4:
                    ev = await sub.get()
                    if ev and ev.get("event") == "task" and ev["name"] == "sender" and ev["state"] == "crashed":
                        crashes.append(ev)
            delays = [c["restart_in_s"] for c in crashes]
            for c in crashes:  # half jitter: between half the cap and the cap; the cap doubles from 0.2 s to 1.6 s
                cap = min(1.6, 0.2 * 2 ** (c["streak"] - 1))
                assert cap / 2 - 1e-3 <= c["restart_in_s"] <= cap + 1e-3, crashes
            assert delays[-1] >= 0.8, delays
            gaps = [b["mono"] - a["mono"] for a, b in zip(crashes, crashes[1:], strict=False)]
            assert all(g >= dly - 0.02 for g, dly in zip(gaps, delays, strict=False)), (gaps, delays)
            st = d.status()["tasks"]["sender"]
            assert st["restarts"] >= 3 and st["crashes"] == st["restarts"] + (st["state"] == "restarting")
            # crash-looping: the watchdog stops pinging (systemd would restart the service)
            await sp.wait(lambda: d.app.notifier.watchdog_failing == "loop_tasks_alive", timeout=5,
                          what="the watchdog sees the crash loop")
            assert await no_pings_for(rx, 1.0, 0.2)
            # the cause goes away: the next restart runs, and after a stable run all is well again
            broken["on"] = False
            await sp.wait(lambda: "task:sender" not in d.problems, timeout=10, what="recovered")
            await sp.wait(lambda: d.state == State.IDLE, timeout=5, what="idle")
            n = pings(rx)
            await asyncio.to_thread(rx.wait_until, lambda msgs: len([m for m in msgs if "WATCHDOG" in m]) > n + 2, 5)
            # and the restarted sender carries a turn to the model
            d.conv.request_turn("edgectl")
            await sp.emu.wait_frames("activity_start", timeout=10)
    finally:
        rx.stop()


async def test_real_daemon_whose_live_task_crashes_shows_it_backs_off_and_recovers_on_reload(
        tmp_path, models_dir):
    rx = NotifyReceiver(tmp_path / "notify.sock")
    rx.start()
    fault = tmp_path / "live-fault"
    fault.touch()
    pythonpath = os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")]))
    rig = Rig(tmp_path / "rig", models_dir, speed=0,
              env={"NOTIFY_SOCKET": rx.address, "WATCHDOG_USEC": "1000000", "PYTHONPATH": pythonpath,
                   "EDGED_TEST_LIVE_FAULT": str(fault)})
    try:
        await rig.start()
        st = await rig.wait_state("error", timeout=20)
        cause = st["problems"]["task:live"]
        assert cause.startswith("the Live supervisor crashed: RuntimeError: injected: the Live client cannot be "
                                "built (in _make_client, edged/live/supervisor.py:"), cause  # the deepest of edged's own frames
        assert st["why"] == "error (task:live)" and st["live"]["connected"] is False
        # restarts over time: counted in status, spaced by a growing backoff (0.5 s doubling)
        t0, r0 = time.monotonic(), st["tasks"]["live"]["restarts"]
        seen: list[tuple[float, int, float]] = []  # (mono, crashes, restart_in_s) of each crash
        async with await rig.client.subscribe() as events:
            async with asyncio.timeout(30):
                async for ev in events:
                    if ev.get("event") == "task" and ev["name"] == "live" and ev["state"] == "crashed":
                        seen.append((ev["mono"], ev["crashes"], ev["restart_in_s"]))
                        if len(seen) == 3:
                            break
        elapsed = time.monotonic() - t0
        restarts = (await rig.status())["tasks"]["live"]["restarts"] - r0
        assert 2 <= restarts <= 2 + elapsed / 0.25, "restarts are paced by the backoff, not a busy loop"
        for _, n, delay in seen:  # half jitter: between half the cap and the cap, the cap doubling from 0.5 s
            cap = min(30.0, 0.5 * 2 ** (n - 1))
            assert cap / 2 - 1e-3 <= delay <= cap + 1e-3, (n, delay)
        assert all(b[0] - a[0] >= a[2] - 0.02 for a, b in zip(seen, seen[1:], strict=False)), seen
        # the service manager's status line names the cause
        await asyncio.to_thread(rx.wait_until, lambda msgs: any(
            "task:live: the Live supervisor crashed" in m.fields.get("STATUS", "") for m in msgs), 10)
        # crash-looping (5 in a row): no more watchdog pings
        await status_until(rig, lambda s: s["tasks"]["live"]["streak"] >= 5, "5 crashes in a row", 40, detail=_why)
        assert await no_pings_for(rx, 2.0, 0.5)
        # the cause goes, root changes a [live] key and reloads: the Live part is rebuilt, connects,
        # the error is gone
        assert rig.emu is not None
        fault.unlink()
        cfg = rig.config_dict()
        cfg["live"]["backoff_max_s"] = 5.0
        rig.config_path.write_text(tomli_w.dumps(cfg))
        answer = await rig.request("reload")
        assert answer["ok"], answer
        st = await rig.wait_state("idle", timeout=20)
        await rig.emu.wait_connections(1, timeout=15)
        st = await status_until(rig, lambda s: s["live"]["connected"], "connected", 15, detail=_why)
        assert "task:live" not in st["problems"] and st["tasks"]["live"]["state"] == "running"
        assert st["tasks"]["live"]["crashes"] == 0, "a new Live part, a new record"
        # every long-lived task of the daemon is watched
        assert {name for name, t in st["tasks"].items() if t["state"] == "running"} >= {
            "live", "sender", "timers", "watchdog"}, st["tasks"]
        n = pings(rx)
        await asyncio.to_thread(rx.wait_until, lambda msgs: len([m for m in msgs if "WATCHDOG" in m]) > n, 5)
    finally:
        await rig.close()
        rx.stop()
