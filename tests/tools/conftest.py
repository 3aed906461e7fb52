"""Fixtures for the tools tests: gpiozero's own MockFactory (PWM-capable pins) and a device config."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

os.environ.setdefault("GPIOZERO_MOCK_REVISION", "d04170")  # a Pi 5, before gpiozero reads it

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edged.config import GpioConfig, GpioDevice

DEVICES = [
    dict(name="kitchen_light", kind="led", pin=17, room="kitchen", description="ceiling light"),
    dict(name="desk_lamp", kind="pwm_led", pin=18, room="study", initial_value=0.25),
    dict(name="mood", kind="rgb_led", pins=[5, 6, 13], room="living room", description="mood light"),
    dict(name="heater", kind="relay", pin=22, active_high=False, room="bathroom"),
    dict(name="beeper", kind="buzzer", pin=23),
    dict(name="doorbell", kind="button", pin=24, room="hall"),
    dict(name="hall_motion", kind="motion_sensor", pin=25, room="hall"),
]
CONFIGURED_PINS = {"GPIO17", "GPIO18", "GPIO5", "GPIO6", "GPIO13", "GPIO22", "GPIO23", "GPIO24", "GPIO25"}


def gpio_config(extra: list[dict] | None = None, **kw) -> GpioConfig:
    return GpioConfig(devices=[GpioDevice(**d) for d in DEVICES + (extra or [])], **kw)


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.reset()


def wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll until pred() is true (generous timeout for a busy machine)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()
