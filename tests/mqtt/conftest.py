"""A real mosquitto per test module, a Home Assistant stand-in (aiomqtt; both from edged/dev/mosquitto.py),
and the bridge over a real SpeakerAdapter on a real GpioBank with gpiozero's MockFactory."""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from typing import Any

os.environ.setdefault("GPIOZERO_MOCK_REVISION", "d04170")  # a Pi 5, before gpiozero reads it

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edged.config import GpioConfig, GpioDevice, MqttConfig
from edged.dev import mosquitto
from edged.dev.mosquitto import Broker as _Broker
from edged.dev.mosquitto import HomeAssistant as HA
from edged.dev.mosquitto import free_port, port_open  # noqa: F401 - the tests import them from here
from edged.mqtt import MqttBridge, SpeakerAdapter
from edged.service.control import EventHub
from edged.tools.gpio import GpioBank

DEVICES = [
    dict(name="kitchen_light", kind="led", pin=17, description="Kitchen light"),
    dict(name="desk_lamp", kind="pwm_led", pin=18),
    dict(name="mood", kind="rgb_led", pins=[5, 6, 13]),
    dict(name="heater", kind="relay", pin=22, min_interval_s=30.0),
    dict(name="beeper", kind="buzzer", pin=23),
    dict(name="doorbell", kind="button", pin=24),
    dict(name="hall_motion", kind="motion_sensor", pin=25),
    dict(name="back_door", kind="digital_input", pin=26),
    dict(name="status", kind="led", pin=27),  # gpio.status_led: the daemon's, not Home Assistant's
]


class Broker(_Broker):
    """The harness's mosquitto (edged/dev/mosquitto.py); a test fails, not errors, without it."""

    def start(self) -> None:
        if mosquitto.find() is None:
            pytest.fail("mosquitto is not installed (scripts/test installs it; or: apt-get install mosquitto)")
        super().start()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("mosquitto"))
    b.start()
    yield b
    b.stop()


class Rig:
    """The bridge over a real SpeakerAdapter: GpioBank on MockFactory, a real EventHub, and the
    daemon's actions as small recording functions."""

    def __init__(self, cfg: MqttConfig, devices: list[dict] | None = None, *, volume: bool = False,
                 camera: bool = False) -> None:
        self.hub = EventHub()
        self.factory = MockFactory(pin_class=MockPWMPin)
        self.gpio_cfg = GpioConfig(devices=[GpioDevice(**d) for d in (DEVICES if devices is None else devices)],
                                   status_led="status" if devices is None else "")
        self.bank = GpioBank(self.gpio_cfg, self._on_input, factory=self.factory)
        self.state = "idle"
        self.muted = False
        self.calls: dict[str, list[Any]] = defaultdict(list)
        self.problems: dict[str, str] = {}
        self.live = "connected"
        self.level: float | None = 0.5 if volume else None
        self.timers: list[dict[str, Any]] = []
        self.loop: asyncio.AbstractEventLoop | None = None

        async def snap() -> bytes:
            self.calls["snapshot"].append(True)
            return b"\xff\xd8fake-jpeg\xff\xd9"

        self.port = SpeakerAdapter(
            gpio=self.bank, events=self.hub, state=lambda: self.state, is_muted=lambda: self.muted,
            set_muted=self._set_muted, start_turn=lambda src: self.calls["turn"].append(src),
            say=lambda text: self.calls["say"].append(text), live_state=lambda: self.live,
            problems=lambda: self.problems, timers=lambda: self.timers,
            get_volume=(lambda: self.level) if volume else None,
            set_volume=self._set_volume if volume else None, snapshot=snap if camera else None)
        self.bridge = MqttBridge(cfg, self.port, rediscover_delay_s=(0.05, 0.2))

    def _on_input(self, name: str, value: Any) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.hub.publish, {"event": "gpio", "name": name, "value": value})

    def _set_muted(self, on: bool) -> None:
        self.calls["mute"].append(on)
        self.muted = on
        self.hub.publish({"event": "mute", "muted": on})

    def _set_volume(self, level: float) -> None:
        self.calls["volume"].append(level)
        self.level = level
        self.hub.publish({"event": "volume", "level": level})

    def pin(self, n: int) -> Any:
        return self.factory.pin(n)

    async def start(self) -> Rig:
        self.loop = asyncio.get_running_loop()
        self.bank.start()
        await self.bridge.start()
        return self

    async def stop(self) -> None:
        await self.bridge.stop()
        self.bank.stop()
        self.factory.reset()


def mqtt_cfg(broker: Broker, device_id: str, **kw: Any) -> MqttConfig:
    return MqttConfig(enabled=True, host="127.0.0.1", port=broker.port, device_id=device_id,
                      device_name="Test speaker", backoff_initial_s=0.05, backoff_max_s=0.5, **kw)


@pytest.fixture
async def ha(broker: Broker) -> AsyncIterator[HA]:
    async with HA(broker.port) as client:
        yield client
