"""The daemon's SpeakerPort (edged/mqtt/wiring.py) over the real parts it reads: the Conversation
(its own parts are the recording fakes of tests/test_state_machine.py), the problem registry, the
EventHub, the Announcer, a real Volume (software gain) and Timers, the synthetic camera, and a
GpioBank on gpiozero's MockFactory; the parts' container is replaced the way a reload does."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("GPIOZERO_MOCK_REVISION", "d04170")

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edged import config
from edged.announce import Announcer
from edged.conversation import Conversation
from edged.errors import DeviceError, EdgedError, ToolError
from edged.health import Problems
from edged.mqtt.port import SpeakerPort
from edged.mqtt.wiring import speaker_port
from edged.parts import build_volume
from edged.ports import Ports
from edged.service.control import EventHub
from edged.timers import Timers
from edged.tools.camera import Camera
from edged.tools.gpio import GpioBank

from ..test_state_machine import FakeEar, FakeLive, FakeMic, FakePlayer, FakeTools, Rec


@dataclass
class Container:
    player: Any
    ear: Any
    capture: Any
    live: Any
    tools: Any
    gpio: Any = None
    camera: Any = None
    volume: Any = None
    timers: Any = None


def _cfg(tmp: Path, **mqtt: Any) -> config.Config:
    return config.parse({"state": {"dir": str(tmp)}, "mqtt": mqtt,
                         "gpio": {"pin_factory": "mock", "status_led": "status", "devices": [
                             {"name": "lamp", "kind": "led", "pin": 17},
                             {"name": "fan", "kind": "relay", "pin": 27, "min_interval_s": 30.0},
                             {"name": "status", "kind": "led", "pin": 22}]},
                         "camera": {"backend": "synthetic"}}, "test.toml")


class World:
    def __init__(self, tmp: Path, **mqtt: Any) -> None:
        self.cfg = _cfg(tmp, **mqtt)
        self.hub = EventHub()
        self.events = self.hub.subscribe()
        self.ports = ports = Ports(publish=self.hub.publish, problem=lambda p, m: self.problems.report(p, m),
                      post=lambda fn, *a: fn(*a), spawn=lambda coro, name: asyncio.get_running_loop().create_task(coro))
        self.problems = Problems(self.hub.publish, lambda: None)
        self.conv = Conversation(self.cfg, ports)
        rec = Rec()
        self.parts = Container(FakePlayer(rec), FakeEar(rec), FakeMic(rec), FakeLive(rec), FakeTools(rec))
        self.rec = rec
        self.conv.attach(self.parts)
        self.announcer = Announcer(state=lambda: self.conv.state.value, say=self.conv.say, publish=self.hub.publish,
                                   subscribe=self.hub.subscribe, unsubscribe=self.hub.unsubscribe)
        self.current: Container | None = self.parts
        self.port = speaker_port(conv=self.conv, problems=self.problems, events=self.hub, announcer=self.announcer,
                                 current=lambda: self.current)

    async def next_event(self, name: str) -> dict:
        while (ev := await asyncio.wait_for(self.events.get(), 2.0))["event"] != name:
            pass
        return ev


@pytest.fixture
async def world(tmp_path: Path):
    w = World(tmp_path)
    w.conv.start()
    w.conv.ready()
    yield w
    w.conv.stop_now()
    await w.conv.stop()


async def test_it_is_a_speaker_port_of_the_conversation(world: World) -> None:
    port = world.port
    assert isinstance(port, SpeakerPort)
    assert port.speaker_state() == "idle" and not port.muted()
    await port.set_muted(True)
    assert port.muted() and port.speaker_state() == "muted" and ("capture", "set_muted", True) in world.rec.calls
    with pytest.raises(EdgedError, match="muted"):
        await port.listen()  # refused like the talk button's request
    await port.set_muted(False)
    await port.listen()
    assert ("ear", "trigger", "mqtt") in world.rec.calls
    world.problems.report("camera", "no sensor")
    assert port.problems() == {"camera": "no sensor"}
    world.conv.on_connection("connected")
    assert port.live_state() == "connected"


async def test_announce_goes_to_the_model_through_the_announcer(world: World) -> None:
    await world.port.announce("  the post\nhas arrived ")
    await asyncio.sleep(0)
    texts = [arg for part, call, arg in world.rec.calls if call == "send_text"]
    assert len(texts) == 1 and texts[0].endswith("the post has arrived") and "exactly as written" in texts[0]
    assert world.announcer.stats["said"] == 1
    with pytest.raises(ToolError):
        await world.port.announce(" \t ")


async def test_without_volume_and_timers_parts(world: World) -> None:
    assert world.port.volume() is None and world.port.timers() == []
    with pytest.raises(ToolError, match="no volume control"):
        await world.port.set_volume(0.5)


async def test_volume_and_timers_plug_in_from_the_parts(world: World, tmp_path: Path) -> None:
    vol = build_volume(world.cfg, world.ports)  # the daemon's: its changes are published
    vol.start()
    timers = Timers(world.cfg.timers, tmp_path)
    world.parts.volume, world.parts.timers = vol, timers
    await world.port.set_volume(0.3)
    assert vol.level == 30 and world.port.volume() == 0.3
    ev = await world.next_event("volume")  # the bridge (and edgectl events) follow the change
    assert (ev["level"], ev["was"], ev["by"]) == (30, world.cfg.audio.volume, "mqtt")
    with pytest.raises(ToolError):
        await world.port.set_volume(1.5)  # Volume's own check
    timers.set_timer(300, "pasta")
    (t,) = world.port.timers()
    assert t["name"] == "pasta" and 290 < t["remaining_s"] <= 300
    vol.stop()


async def test_gpio_is_the_current_bank_without_the_daemons_own_leds(world: World) -> None:
    factory = MockFactory(pin_class=MockPWMPin)
    bank = GpioBank(world.cfg.gpio, lambda n, v: None, factory=factory)
    bank.start()
    try:
        assert world.port.gpio_devices() == {}  # no bank yet
        world.parts.gpio = bank
        assert set(world.port.gpio_devices()) == {"lamp", "fan"}
        await world.port.set_gpio("lamp", True)
        assert factory.pin(17).state == 1
        with pytest.raises(ToolError, match="no device named 'status'"):
            await world.port.set_gpio("status", True)
        await world.port.set_gpio("fan", True)
        with pytest.raises(ToolError, match="30"):
            await world.port.set_gpio("fan", False)  # min_interval_s, as for the model and edgectl
        # a reload replaces the container's bank: the port follows
        world.current = Container(*(getattr(world.parts, f) for f in ("player", "ear", "capture", "live", "tools")))
        assert world.port.gpio_devices() == {}
    finally:
        bank.stop()
        factory.reset()


async def test_snapshots_only_with_mqtt_camera(tmp_path: Path) -> None:
    for allowed in (False, True):
        w = World(tmp_path, camera=allowed)
        cam = Camera(w.cfg.camera, led=None)
        cam.start()
        w.parts.camera = cam
        try:
            if allowed:
                jpeg = await w.port.snapshot()
                assert jpeg[:2] == b"\xff\xd8"
            else:
                with pytest.raises(DeviceError, match="mqtt.camera"):
                    await w.port.snapshot()
        finally:
            cam.stop()
