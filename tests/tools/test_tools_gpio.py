"""GpioBank against gpiozero's MockFactory: pin states, inversion, safe values, inputs, limits, failures."""

from __future__ import annotations

import logging
import sys
import threading

import pytest
from gpiozero import LED
from gpiozero.pins.mock import MockFactory

from edged.config import GpioConfig, GpioDevice
from edged.errors import DeviceError, ToolError
from edged.tools.gpio import GpioBank

from .conftest import CONFIGURED_PINS, gpio_config, wait_for


@pytest.fixture
def bank(factory):
    events: list[tuple[str, object]] = []
    b = GpioBank(gpio_config(), lambda n, v: events.append((n, v)), factory=factory, retry_initial_s=0.05)
    b.events = events  # type: ignore[attr-defined]
    b.start()
    yield b
    b.stop()


def test_initial_values_and_active_low(bank, factory):
    assert factory.pin(17).state == 0  # led off
    assert factory.pin(18).state == pytest.approx(0.25)  # pwm initial_value
    assert [factory.pin(p).state for p in (5, 6, 13)] == [0, 0, 0]
    assert factory.pin(22).state == 1  # relay active_low: off is a high pin
    st = bank.states()
    assert st["heater"]["value"] is False and st["desk_lamp"]["value"] == pytest.approx(0.25)
    assert st["kitchen_light"] == {"name": "kitchen_light", "kind": "led", "value": False, "room": "kitchen",
                                   "description": "ceiling light", "ok": True, "error": None}


def test_set_drives_pins(bank, factory):
    assert bank.set("kitchen_light", True)["value"] is True
    assert factory.pin(17).state == 1
    bank.set("kitchen_light", "toggle")
    assert factory.pin(17).state == 0
    factory.pin(17).assert_states([False, True, False])
    bank.set("heater", "on")
    assert factory.pin(22).state == 0  # active low: on pulls the pin low
    bank.set("heater", False)
    assert factory.pin(22).state == 1
    bank.set("desk_lamp", 0.6)
    assert factory.pin(18).state == pytest.approx(0.6)
    bank.set("mood", (1.0, 0.0, 0.5))
    assert [factory.pin(p).state for p in (5, 6, 13)] == pytest.approx([1.0, 0.0, 0.5])
    bank.set("beeper", True)
    assert factory.pin(23).state == 1


def test_bad_values_are_clear_errors(bank):
    with pytest.raises(ToolError, match="no device named 'nope'"):
        bank.set("nope", True)
    with pytest.raises(ToolError, match="doorbell is a button"):
        bank.set("doorbell", True)
    with pytest.raises(ToolError, match="desk_lamp: a level must be a number from 0 to 1"):
        bank.set("desk_lamp", 1.5)
    with pytest.raises(ToolError, match="desk_lamp"):
        bank.set("desk_lamp", float("nan"))
    with pytest.raises(ToolError, match="kitchen_light: state must be on, off or toggle"):
        bank.set("kitchen_light", "blue")
    with pytest.raises(ToolError, match="mood"):
        bank.set("mood", (1, 2))


def test_only_configured_pins_are_touched(bank, factory):
    bank.set("kitchen_light", True)
    bank.states()
    assert {info.name for info in factory.pins} == CONFIGURED_PINS


def test_stop_returns_outputs_to_safe_values(factory):
    bank = GpioBank(gpio_config(), None, factory=factory)
    bank.start()
    bank.set("kitchen_light", True)
    bank.set("heater", True)
    bank.set("desk_lamp", 1.0)
    bank.set("mood", (0.2, 0.3, 0.4))
    bank.set("beeper", True)
    bank.stop()
    # each pin's history: start, set, back to its safe value by stop() (then released by close())
    factory.pin(17).assert_states([0, 1, 0])
    factory.pin(22).assert_states([0, 1, 0, 1, 0])  # active low: off is high; stop() drove it high again
    factory.pin(18).assert_states([0, 0.25, 1.0, 0.25])  # back to its initial_value 0.25
    factory.pin(5).assert_states([0, 0.2, 0])
    factory.pin(23).assert_states([0, 1, 0])
    assert len(factory.pin(22).states) == 5 and len(factory.pin(18).states) >= 4
    assert all(factory.pin(p).function == "input" for p in (17, 18, 22, 23))  # closed
    assert bank.states()["kitchen_light"]["ok"] is False


def test_button_fires_on_input(bank, factory):
    factory.pin(24).drive_low()  # pull-up button: pressed pulls low
    factory.pin(24).drive_high()
    assert bank.events == [("doorbell", True), ("doorbell", False)]
    assert bank.states()["doorbell"]["value"] is False


def test_motion_sensor_fires_on_input(bank, factory):
    # its sampling thread takes the first sample (the initial state, no event) after ~0.1 s
    assert bank.device("hall_motion").wait_for_no_motion(timeout=10)
    factory.pin(25).drive_high()
    assert wait_for(lambda: ("hall_motion", True) in bank.events)
    factory.pin(25).drive_low()
    assert wait_for(lambda: ("hall_motion", False) in bank.events)


def test_on_input_exception_does_not_break_the_bank(factory):
    def boom(name, value):
        raise RuntimeError("handler bug")

    bank = GpioBank(gpio_config(), boom, factory=factory)
    bank.start()
    try:
        factory.pin(24).drive_low()
        assert bank.states()["doorbell"]["value"] is True
    finally:
        bank.stop()


def test_rate_limit_refuses_fast_sets(factory):
    cfg = GpioConfig(devices=[GpioDevice(name="fan", kind="relay", pin=4, min_interval_s=30)])
    bank = GpioBank(cfg, None, factory=factory)
    bank.start()
    try:
        bank.set("fan", True)
        with pytest.raises(ToolError, match=r"fan was changed .* at most once every 30 s"):
            bank.set("fan", False)
        assert factory.pin(4).state == 1  # unchanged
        bank.set("fan", False, rate_limit=False)  # the daemon's own restores are not limited
        assert factory.pin(4).state == 0
    finally:
        bank.stop()


def test_busy_pin_is_reported_and_retried(factory):
    blocker = LED(17, pin_factory=factory)
    bank = GpioBank(gpio_config(), None, factory=factory, retry_initial_s=0.05, retry_max_s=0.2)
    bank.start()
    try:
        st = bank.states()["kitchen_light"]
        assert st["ok"] is False and "pin 17" in st["error"] and "in use" in st["error"]
        with pytest.raises(DeviceError, match=r"kitchen_light \(pin 17\) is not working"):
            bank.set("kitchen_light", True)
        bank.set("heater", True)  # the rest keeps working
        assert factory.pin(22).state == 0
        blocker.close()
        assert wait_for(lambda: bank.states()["kitchen_light"]["ok"])
        bank.set("kitchen_light", True)
        assert factory.pin(17).state == 1
    finally:
        bank.stop()


def test_a_pin_that_stays_busy_is_one_error_line_not_one_per_retry(factory, caplog):
    """A pin held by an overlay or another process for good: 2,880 error lines a day per device at the
    30 s retry cap before; now one, a reminder every 10 minutes, and news again after a recovery."""
    caplog.set_level(logging.INFO, logger="edged.tools.gpio")

    def errors() -> int:
        return sum(1 for r in caplog.records if r.levelno >= logging.ERROR and "kitchen_light" in r.getMessage())

    blocker = LED(17, pin_factory=factory)
    bank = GpioBank(gpio_config(), None, factory=factory, retry_initial_s=0.01, retry_max_s=0.02)
    builds: list[str] = []
    build = bank._build

    def counted(slot):
        builds.append(slot.cfg.name)
        return build(slot)

    bank._build = counted
    bank.start()
    try:
        assert wait_for(lambda: builds.count("kitchen_light") >= 20)  # 20 tries on the busy pin
        assert not bank.states()["kitchen_light"]["ok"] and errors() == 1
        blocker.close()
        assert wait_for(lambda: bank.states()["kitchen_light"]["ok"])
        bank.device("kitchen_light").close()  # breaks again: news
        with pytest.raises(DeviceError):
            bank.set("kitchen_light", True)
        assert errors() == 2
    finally:
        bank.stop()


def test_runtime_failure_marks_failed_and_recovers(factory):
    bank = GpioBank(gpio_config(), None, factory=factory, retry_initial_s=0.05, retry_max_s=0.2)
    bank.start()
    try:
        bank.device("beeper").close()  # the device breaks under us
        with pytest.raises(DeviceError, match=r"beeper \(pin 23\): setting it failed"):
            bank.set("beeper", True)
        assert wait_for(lambda: bank.states()["beeper"]["ok"])
        assert bank.set("beeper", True)["value"] is True
    finally:
        bank.stop()


def test_unknown_factory_is_a_device_error():
    bank = GpioBank(GpioConfig(pin_factory="warp"), None)
    with pytest.raises(DeviceError, match="unknown pin factory 'warp'"):
        bank.start()


def test_mock_factory_from_config():
    bank = GpioBank(gpio_config(pin_factory="mock"), None)
    bank.start()
    try:
        assert isinstance(bank.factory, MockFactory)
        bank.set("desk_lamp", 0.5)  # PWM works: the factory uses MockPWMPin
        assert bank.factory.pin(18).state == pytest.approx(0.5)
    finally:
        bank.stop()
        MockFactory.reset(bank.factory) if bank.factory else None


def test_sets_from_many_threads(bank, factory):
    """Toggles from four threads at once: each is a read-then-write, so a lost toggle (two threads
    reading the same level) would leave the light in the wrong state and the pin's history short."""
    errors: list[BaseException] = []
    per_thread, threads_n = 51, 4
    start = threading.Barrier(threads_n)

    def worker() -> None:
        try:
            start.wait(10)
            for _ in range(per_thread):
                bank.set("kitchen_light", "toggle")
                bank.states()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    factory.pin(17).clear_states()
    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    toggles = per_thread * threads_n  # 204: an even number, so the light ends where it began
    history = [bool(st.state) for st in factory.pin(17).states]
    assert len(history) == toggles + 1, "every toggle changed the pin exactly once"
    assert history == [i % 2 == 1 for i in range(toggles + 1)]
    assert factory.pin(17).state == 0 and bank.states()["kitchen_light"]["value"] is False


def test_friendly_names_are_keyed_by_id(factory):
    events: list[tuple[str, object]] = []
    cfg = GpioConfig(devices=[GpioDevice(name="Kitchen Light", kind="led", pin=17, room="kitchen"),
                              GpioDevice(name="front door bell", kind="button", pin=24)])
    b = GpioBank(cfg, lambda n, v: events.append((n, v)), factory=factory)
    b.start()
    try:
        assert list(b.devices) == ["kitchen_light", "front_door_bell"]
        assert list(b.states()) == ["kitchen_light", "front_door_bell"]
        assert b.states()["kitchen_light"]["name"] == "Kitchen Light"
        # set by id, or by the friendly name as a person would type it
        b.set("kitchen_light", True)
        assert factory.pin(17).state == 1
        b.set("kitchen light", False)
        assert factory.pin(17).state == 0
        assert b.resolve("Kitchen Light") == "kitchen_light"
        with pytest.raises(ToolError, match="no device named 'bedroom light' .devices: kitchen_light, front_door_bell"):
            b.set("bedroom light", True)
        # inputs report the id
        factory.pin(24).drive_low()
        assert wait_for(lambda: events == [("front_door_bell", True)])
    finally:
        b.stop()
