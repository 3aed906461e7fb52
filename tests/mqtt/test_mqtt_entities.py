"""Entity mapping without a broker: light commands -> GpioBank values, and the announcement text."""

from __future__ import annotations

import json
from typing import Any

import pytest

from edged.config import GpioDevice
from edged.errors import ToolError
from edged.mqtt.entities import BadPayload, Context, LightEntity
from edged.mqtt.port import ANNOUNCE_MAX_CHARS, announce_prompt, clean_announcement
from tests.waiting import until

from .conftest import HA, Broker, Rig, mqtt_cfg

CTX = Context(device_id="x", base="edged/x")


class Port:
    def __init__(self, value: Any) -> None:
        self.value = value

    def gpio_states(self) -> dict[str, dict[str, Any]]:
        return {"l": {"value": self.value, "ok": True}}


def light(kind: str) -> LightEntity:
    pins = {"pins": [5, 6, 13]} if kind == "rgb_led" else {"pin": 17}
    return LightEntity(CTX, GpioDevice(name="l", kind=kind, **pins))


def test_dimmable_on_restores_the_last_level() -> None:
    e = light("pwm_led")
    assert e.target({"state": "ON", "brightness": 128}, Port(0.0)) == round(128 / 255, 4)
    e.render(0.3)  # the device was seen at 30 %
    e.render(0.0)
    assert e.target({"state": "ON"}, Port(0.0)) == 0.3
    assert e.target({"state": "OFF"}, Port(0.3)) == 0.0
    assert json.loads(e.render(0.5)) == {"state": "ON", "color_mode": "brightness", "brightness": 128}


def test_rgb_brightness_keeps_the_colour_and_colour_keeps_the_brightness() -> None:
    e = light("rgb_led")
    assert e.target({"state": "ON", "brightness": 51}, Port([1.0, 0.5, 0.0])) == (0.2, 0.1, 0.0)
    assert e.target({"state": "ON", "color": {"r": 0, "g": 0, "b": 255}}, Port([0.4, 0.4, 0.0])) == (0.0, 0.0, 0.4)
    assert e.target({"state": "ON"}, Port([0.0, 0.0, 0.0])) == (1.0, 1.0, 1.0)
    assert e.target({"state": "OFF"}, Port([1.0, 1.0, 1.0])) == (0.0, 0.0, 0.0)
    assert json.loads(e.render([0.5, 0.0, 0.25])) == {"state": "ON", "color_mode": "rgb", "brightness": 128,
                                                      "color": {"r": 255, "g": 0, "b": 128}}


@pytest.mark.parametrize("cmd", [{}, {"state": 1}, {"state": "ON", "brightness": -1},
                                 {"state": "ON", "brightness": True}, {"state": "ON", "color": [1, 2, 3]},
                                 {"state": "ON", "color": {"r": 300, "g": 0, "b": 0}}])
def test_bad_light_commands(cmd: dict) -> None:
    with pytest.raises(BadPayload):
        light("rgb_led").target(cmd, Port([0.0, 0.0, 0.0]))


def test_announcement_text_is_cleaned_and_bounded() -> None:
    assert clean_announcement("  Dinner\n is\x00 ready ") == "Dinner is ready"
    with pytest.raises(ToolError):
        clean_announcement(" \n\t ")
    with pytest.raises(ToolError):
        clean_announcement("a" * (ANNOUNCE_MAX_CHARS + 1))
    assert announce_prompt("Hello").endswith("\n\nHello")


async def test_volume_through_the_port(broker: Broker, ha: HA) -> None:
    r = Rig(mqtt_cfg(broker, "t_volume"), devices=[], volume=True)
    await r.start()
    try:
        await ha.sub("edged/t_volume/speaker/volume")
        assert await ha.wait("edged/t_volume/speaker/volume") == b"50"
        await ha.pub("edged/t_volume/speaker/volume/set", "40")
        await ha.wait("edged/t_volume/speaker/volume", lambda p: p == b"40")
        assert r.calls["volume"] == [0.4]
        n = ha.count("edged/t_volume/speaker/volume")
        await ha.pub("edged/t_volume/speaker/volume/set", "140")
        assert await ha.wait("edged/t_volume/speaker/volume", after=n) == b"40"
        await until(lambda: r.bridge.stats["refused"] == 1, what="the refusal")
        assert r.calls["volume"] == [0.4]
    finally:
        await r.stop()
