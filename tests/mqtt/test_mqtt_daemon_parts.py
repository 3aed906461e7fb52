"""Home Assistant and the real daemon's Volume, Timers and Problems: ``edged run`` (the Live
emulator, ALSA file devices, gpiozero's mock pins) with [mqtt] on, a real mosquitto, and an aiomqtt
client playing Home Assistant.  One daemon serves the module; the tests run in file order (the
emulator's scripted turns follow it).

The daemon's bridge re-reads every state only every 30 s (its resync); each check here waits at most
15 s, so what it sees comes from the daemon's events: one ``volume`` event whoever changed the
level, a ``timers`` event when one is set or removed, ``error`` / ``recovered`` for a problem."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from edged.audio.volume import FILE_NAME as VOLUME_FILE
from edged.dev.rig import Rig
from edged.sim.scenario import Scenario

from .conftest import HA, Broker
from .daemon_rig import BASE, eventually, home_assistant, running, until

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]

VOLUME = f"{BASE}/speaker/volume"
TIMERS = f"{BASE}/speaker/timers"
PROBLEM = f"{BASE}/speaker/problem"
WAIT_S = 15.0  # well under the bridge's 30 s resync


def _scenario() -> Scenario:
    return Scenario([
        # the model's set_volume answered without audio (then: no_answer), as 3.8 may
        [{"tool_call": {"name": "set_volume", "args": {"level": 70}, "then": [{"no_answer": True}]}}],
        [{"tool_call": {"name": "set_timer", "args": {"duration": "10m", "label": "pasta"}}},
         {"say": "Pasta timer set."}],
    ])


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig(broker: Broker, models_dir, tmp_path_factory) -> AsyncIterator[Rig]:
    async with running(tmp_path_factory.mktemp("mqtt-parts"), models_dir, broker, _scenario(),
                       audio={"reopen_backoff_max_s": 0.5}) as r:
        yield r


@pytest_asyncio.fixture(loop_scope="module")
async def hass(broker: Broker) -> AsyncIterator[HA]:
    async with home_assistant(broker, f"{BASE}/#") as client:
        yield client


class Events:
    """The daemon's events (``edgectl events``) from subscription on."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def of(self, name: str, **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.seen if e.get("event") == name and all(e.get(k) == v for k, v in match.items())]


@pytest_asyncio.fixture(loop_scope="module")
async def events(rig: Rig) -> AsyncIterator[Events]:
    ev = Events()

    async def follow() -> None:
        with contextlib.suppress(Exception):  # the stream ends when the daemon restarts
            async for e in rig.events():
                ev.seen.append(e)

    task = asyncio.create_task(follow())
    yield ev
    task.cancel()


async def test_the_volume_has_one_owner_whoever_sets_it(rig: Rig, hass: HA, events: Events) -> None:
    await hass.wait(VOLUME, lambda p: p == b"100")  # the rig's audio.volume
    # 1. Home Assistant's volume number: the daemon's level, kept in the state dir
    n = hass.count(VOLUME)
    await hass.pub(f"{VOLUME}/set", "30")
    st = await eventually(rig, lambda st: st["volume"]["level"] == 30, "the level from Home Assistant", WAIT_S)
    assert st["volume"]["backend"] == "software" and st["audio"]["playback"]["gain"] == pytest.approx(0.3 ** 3)
    await hass.wait(VOLUME, lambda p: p == b"30", after=n, timeout=WAIT_S)
    assert json.loads((rig.state_dir / VOLUME_FILE).read_text())["level"] == 30
    # 2. edgectl volume: Home Assistant follows
    n = hass.count(VOLUME)
    answer = await rig.request("volume", level=55)
    assert answer["ok"] and answer["result"]["level"] == 55
    await hass.wait(VOLUME, lambda p: p == b"55", after=n, timeout=WAIT_S)
    # 3. the model's set_volume: Home Assistant follows
    n = hass.count(VOLUME)
    assert (await rig.request("say", text="a bit louder please"))["ok"]
    await hass.wait(VOLUME, lambda p: p == b"70", after=n, timeout=WAIT_S)
    assert rig.emu.connections[-1].tool_responses[-1]["response"] == {"volume": 70, "was": 55}
    # one event per change, from the one path, saying who asked
    await until(lambda: len(events.of("volume")) >= 3, "three volume events", WAIT_S)
    assert [(e["level"], e["was"], e["by"]) for e in events.of("volume")] == \
        [(30, 100, "mqtt"), (55, 30, "edgectl"), (70, 55, "model")]
    await rig.wait_state("idle", timeout=30)
    # kept across a restart, and Home Assistant is told the kept level again
    n = hass.count(VOLUME)
    await rig.restart()
    assert (await rig.status())["volume"]["level"] == 70
    await hass.wait(VOLUME, lambda p: p == b"70", after=n, timeout=WAIT_S)
    await eventually(rig, lambda st: st["mqtt"]["connected"] and st["live"]["connected"], "connected again", 30)


async def test_the_timers_sensor_follows_a_timer_set_by_the_model_and_cancelled_by_edgectl(
        rig: Rig, hass: HA, events: Events) -> None:
    await hass.wait(TIMERS, lambda p: p == b"0")
    n = hass.count(TIMERS)
    assert (await rig.request("say", text="set a pasta timer for ten minutes"))["ok"]
    await hass.wait(TIMERS, lambda p: p == b"1", after=n, timeout=WAIT_S)
    attrs = json.loads(await hass.wait(f"{TIMERS}/attributes", lambda p: b"pasta" in p, timeout=WAIT_S))
    (pasta,) = attrs["timers"]
    assert pasta["name"] == "pasta" and pasta["id"] == "timer-1" and 0 < pasta["remaining_s"] <= 600
    await rig.wait_state("idle", timeout=30)
    # edgectl timers cancel: no tool call, no state change; the Timers part's own event tells the bridge
    n = hass.count(TIMERS)
    answer = await rig.request("timers.cancel", id="pasta")
    assert answer["ok"] and [t["id"] for t in answer["result"]["cancelled"]] == ["timer-1"]
    await hass.wait(TIMERS, lambda p: p == b"0", after=n, timeout=WAIT_S)
    assert [e["count"] for e in events.of("timers")] == [1, 0]


async def test_the_problem_sensor_follows_a_problem_appearing_and_clearing(rig: Rig, hass: HA,
                                                                           events: Events) -> None:
    await hass.wait(PROBLEM, lambda p: p == b"OFF")
    # the microphone unplugged while muted (the capture closed), then unmuted: it cannot be opened
    assert (await rig.request("mute", on=True))["ok"]
    await eventually(rig, lambda st: st["audio"]["capture"]["state"] == "muted", "the capture closed")
    rig.set_mic_present(False)
    n = hass.count(PROBLEM)
    assert (await rig.request("mute", on=False))["ok"]
    await hass.wait(PROBLEM, lambda p: p == b"ON", after=n, timeout=WAIT_S)
    await hass.wait(f"{PROBLEM}/attributes", lambda p: "capture" in json.loads(p)["problems"], timeout=WAIT_S)
    # plugged back: the capture's retry opens it, the problem clears, Home Assistant is told at once
    n, na = hass.count(PROBLEM), hass.count(f"{PROBLEM}/attributes")
    rig.set_mic_present(True)
    await hass.wait(PROBLEM, lambda p: p == b"OFF", after=n, timeout=WAIT_S)
    await hass.wait(f"{PROBLEM}/attributes", lambda p: json.loads(p) == {"problems": {}}, after=na, timeout=WAIT_S)
    await until(lambda: events.of("recovered", part="capture"), "the recovered event", WAIT_S)
    assert events.of("error") and events.of("error")[-1]["message"].startswith("capture: ")
    st = await rig.wait_state("idle", timeout=30)
    assert st["problems"] == {}
