"""The Ringer with the real Timers part: the bell from the first ring to the end of the last, the
events, what the model is told, and the household functions reached through the ToolRegistry.

The player and the Live session are recording fakes here (the real ones ring in tests/e2e)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from google.genai import types

from edged.config import TimersConfig
from edged.ports import Ports
from edged.ringing import Ringer, context_text
from edged.timers import Timers
from edged.tools.household import HouseholdTools
from edged.tools.registry import ToolRegistry

from .test_timers import FakeClock, utc


class Bell:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail = False

    def play_cue(self, name: str, *, loop: bool = False) -> None:
        if self.fail:
            raise RuntimeError("device gone")
        self.calls.append(("play", (name, loop)))

    def stop_cue(self) -> None:
        self.calls.append(("stop", None))


class Live:
    def __init__(self) -> None:
        self.told: list[str] = []
        self.fail = False

    async def send_context(self, text: str) -> None:
        if self.fail:
            raise ConnectionError("closed")
        self.told.append(text)


@dataclass
class Parts:
    player: Any = field(default_factory=Bell)
    live: Live = field(default_factory=Live)


class Setup:
    def __init__(self, tmp_path, **cfg) -> None:
        self.events: list[dict] = []
        self.tasks: list[asyncio.Task] = []

        def spawn(coro, name):
            task = asyncio.get_running_loop().create_task(coro, name=name)
            self.tasks.append(task)
            return task

        ports = Ports(publish=self.events.append, problem=lambda p, m: None, post=lambda fn, *a: fn(*a), spawn=spawn)
        self.parts = Parts()
        self.ringer = Ringer(ports)
        self.ringer.attach(self.parts)
        self.clock = FakeClock(utc(2026, 11, 20, 12))
        self.timers = Timers(TimersConfig(**cfg), tmp_path, clock=self.clock, on_ring=self.ringer.ring,
                             on_ring_end=self.ringer.ended)
        self.timers.load()

    def step(self, s: float) -> None:
        self.clock.advance(s)
        self.timers.check()

    def timer_events(self) -> list[tuple[str, str, str | None]]:
        return [(e["what"], e["id"], e.get("reason")) for e in self.events if e["event"] == "timer"]

    async def settled(self) -> None:
        await asyncio.gather(*self.tasks)


async def test_the_bell_rings_from_the_first_ring_to_the_end_of_the_last(tmp_path):
    s = Setup(tmp_path, ring_max_s=60)
    s.timers.set_timer(5, "pasta")
    s.timers.set_timer(8, "tea")
    s.step(5)
    assert s.parts.player.calls == [("play", ("ring", True))] and s.ringer.active
    s.step(3)  # a second one rings: the bell is already on
    assert s.parts.player.calls == [("play", ("ring", True))]
    assert [it["id"] for it in s.ringer.ringing()] == ["timer-1", "timer-2"]
    s.timers.cancel("pasta")  # one ends: the other still rings
    assert s.parts.player.calls == [("play", ("ring", True))]
    s.timers.stop_ringing()
    assert s.parts.player.calls == [("play", ("ring", True)), ("stop", None)] and not s.ringer.active
    assert s.timer_events() == [("ringing", "timer-1", None), ("ringing", "timer-2", None),
                                ("ended", "timer-1", "cancelled"), ("ended", "timer-2", "stopped")]
    ringing = [e for e in s.events if e.get("what") == "ringing"][0]
    assert ringing["kind"] == "timer" and ringing["label"] == "pasta" and ringing["duration"] == "5 seconds"
    await s.settled()


async def test_ring_max_s_ends_the_ringing_and_the_bell(tmp_path):
    s = Setup(tmp_path, ring_max_s=30)
    s.timers.set_timer(10, "eggs")
    s.step(10)
    s.step(29.5)
    assert s.ringer.active and s.parts.player.calls == [("play", ("ring", True))]
    s.step(0.5)
    assert not s.ringer.active and s.parts.player.calls[-1] == ("stop", None)
    assert s.timer_events()[-1] == ("ended", "timer-1", "timeout")
    assert s.timers.list() == []
    await s.settled()


async def test_the_model_is_told_what_rang_as_context(tmp_path):
    s = Setup(tmp_path)
    s.timers.set_timer(90, "pasta")
    s.step(90)
    await s.settled()
    assert s.parts.live.told == [context_text(s.timers.ringing[0])]
    text = s.parts.live.told[0]
    assert '1 minute 30 seconds timer "pasta"' in text and "timer-1" in text and "ringing now" in text
    alarm = context_text({"id": "alarm-2", "kind": "alarm", "label": "", "time": "2026-11-21T07:30:00"})
    assert alarm.startswith("[The alarm set for 2026-11-21 07:30:00 (alarm-2) is ringing")


async def test_offline_the_bell_rings_and_a_failed_context_is_only_logged(tmp_path):
    s = Setup(tmp_path)
    s.parts.live.fail = True  # the session cannot send (it drops contexts while disconnected)
    s.timers.set_timer(2)
    s.step(2)
    await s.settled()  # the failure did not escape the task
    assert s.parts.player.calls == [("play", ("ring", True))] and s.ringer.status()["told"] == 1


async def test_a_new_player_rings_on_and_a_failing_one_is_retried_by_the_next(tmp_path):
    s = Setup(tmp_path)
    s.timers.set_timer(1)
    s.step(1)
    s.parts.player = Bell()  # a reload of [audio] replaced the player
    s.ringer.player_started()
    assert s.parts.player.calls == [("play", ("ring", True))]
    broken = Bell()
    broken.fail = True
    s.parts.player = broken
    s.ringer.player_started()
    assert not s.ringer.status()["bell"]
    s.parts.player = Bell()
    s.ringer.player_started()
    assert s.ringer.status()["bell"] and s.parts.player.calls == [("play", ("ring", True))]
    await s.settled()


async def test_a_player_without_cues_still_rings_in_status_and_events(tmp_path, caplog):
    s = Setup(tmp_path)
    s.parts.player = object()
    s.timers.set_timer(1)
    s.step(1)
    assert s.ringer.active and s.timer_events() == [("ringing", "timer-1", None)]
    assert "plays no cues" in caplog.text and not s.ringer.status()["bell"]
    await s.settled()


async def test_the_registry_declares_and_routes_the_household_functions(tmp_path):
    timers = Timers(TimersConfig(), tmp_path)
    await timers.start()
    try:
        household = HouseholdTools(timers, None)

        async def no_video(jpeg: bytes) -> None:
            raise AssertionError("no video here")

        reg = ToolRegistry(None, None, no_video, household=household)
        names = [d.name for d in reg.declarations()]
        assert names == ["set_timer", "set_alarm", "list_timers", "cancel_timer"]
        t0 = time.monotonic()
        r = await reg.call(types.FunctionCall(id="c1", name="set_timer", args={"duration": "10m", "label": "pasta"}))
        assert r.id == "c1" and r.response["timer"]["id"] == "timer-1" and time.monotonic() - t0 < 1
        assert r.scheduling == types.FunctionResponseScheduling.WHEN_IDLE
        r = await reg.call(types.FunctionCall(id="c2", name="list_timers", args={}))
        assert [t["label"] for t in r.response["timers"]] == ["pasta"]
        assert r.scheduling == types.FunctionResponseScheduling.INTERRUPT
        r = await reg.call(types.FunctionCall(id="c3", name="cancel_timer", args={"id": "nope"}))
        assert "no timer or alarm 'nope'" in r.response["error"] and "timer-1 (pasta)" in r.response["error"]
        r = await reg.call(types.FunctionCall(id="c4", name="set_timer", args={"duration": "soon"}))
        assert "duration must be like" in r.response["error"]
        r = await reg.call(types.FunctionCall(id="c5", name="set_volume", args={"level": 3}))
        assert "unknown function 'set_volume'" in r.response["error"]  # no volume given: not declared
        assert (tmp_path / "timers.json").exists()
    finally:
        await timers.stop()
