"""GPIO devices from the config, built on gpiozero.

``GpioBank`` builds one gpiozero device per configured entry in ``start()`` and
touches no other pin.  A device that cannot be built (pin busy, driver error) is
marked failed, reported in ``states()`` and rebuilt in the background with
exponential backoff while the other devices keep working; only a pin factory
that cannot be loaded at all makes ``start()`` raise :class:`DeviceError`.

Devices are keyed by their id (``GpioDevice.id``, derived from the friendly name: "kitchen light"
is ``kitchen_light``); ``set``/``state``/``device`` also accept the friendly name.

Input changes call ``on_input(device_id, value)`` from gpiozero's threads (or, with
the mock factory, synchronously from whoever drives the pin): keep it cheap and
marshal to the event loop with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from ..config import INPUT_KINDS, OUTPUT_KINDS, GpioConfig, GpioDevice, device_id
from ..errors import DeviceError, ToolError
from ..repeats import Repeats

log = logging.getLogger(__name__)

OnInput = Callable[[str, bool | float], None]

_FACTORIES = {
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
    "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory"),
    "native": ("gpiozero.pins.native", "NativeFactory"),
}


def make_factory(name: str) -> Any:
    """The gpiozero pin factory for a config name ("" = gpiozero's default)."""
    try:
        if name == "mock":
            from gpiozero.pins.mock import MockFactory, MockPWMPin

            return MockFactory(pin_class=MockPWMPin)
        if name == "":
            from gpiozero import Device

            return Device.pin_factory or Device._default_pin_factory()
        if name not in _FACTORIES:
            raise DeviceError(
                f"gpio.pin_factory: unknown pin factory {name!r} "
                f"(use one of: mock, {', '.join(_FACTORIES)}, or empty for the default)")
        mod, cls = _FACTORIES[name]
        return getattr(importlib.import_module(mod), cls)()
    except DeviceError:
        raise
    except Exception as exc:
        raise DeviceError(f"gpio: cannot load pin factory {name or 'default'!r}: {exc}") from exc


def _pins_text(d: GpioDevice) -> str:
    return f"pins {', '.join(map(str, d.pins or []))}" if d.kind == "rgb_led" else f"pin {d.pin}"


class _Slot:
    """One configured device and its gpiozero object (None while failed)."""

    def __init__(self, cfg: GpioDevice) -> None:
        self.cfg = cfg
        self.dev: Any = None
        self.error: str | None = None
        self.last_set = -math.inf
        self.retry_at = 0.0
        self.retry_delay = 0.0
        self.said = Repeats()  # its failure: logged once per reason, then a reminder, not every retry


class GpioBank:
    def __init__(self, cfg: GpioConfig, on_input: OnInput | None = None, *, factory: Any = None,
                 retry_initial_s: float = 0.5, retry_max_s: float = 30.0) -> None:
        self.cfg = cfg
        self.on_input = on_input
        self.factory: Any = factory  # exposed so tests reach mock pins: bank.factory.pin(17)
        self._own_factory = factory is None
        self._retry_initial = retry_initial_s
        self._retry_max = retry_max_s
        self._slots: dict[str, _Slot] = {d.id: _Slot(d) for d in cfg.devices}
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._retry_thread: threading.Thread | None = None
        self._running = False

    # lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        if self.factory is None:
            self.factory = make_factory(self.cfg.pin_factory)
        with self._lock:
            self._running = True
            for slot in self._slots.values():
                self._build(slot)
        failed = [n for n, s in self._slots.items() if s.dev is None]
        if failed:
            self._ensure_retry_thread()
        log.info("gpio: %d devices ready, %d failed", len(self._slots) - len(failed), len(failed))

    def stop(self) -> None:
        with self._lock:
            self._running = False
            self._wake.notify_all()
        if self._retry_thread is not None:
            self._retry_thread.join(timeout=5)
            self._retry_thread = None
        with self._lock:
            for slot in self._slots.values():
                if slot.dev is None:
                    continue
                try:
                    if slot.cfg.kind in OUTPUT_KINDS:
                        self._write(slot, self._safe_value(slot.cfg))
                except Exception as exc:
                    log.warning("gpio: %s: cannot return to its safe value: %s", slot.cfg.name, exc)
                self._close(slot)
        if self._own_factory and self.factory is not None and self.cfg.pin_factory != "mock":
            try:
                self.factory.close()
            except Exception as exc:
                log.warning("gpio: closing the pin factory: %s", exc)
            self.factory = None

    # queries -------------------------------------------------------------------
    @property
    def devices(self) -> dict[str, GpioDevice]:
        """The configured devices by id (config objects)."""
        return {n: s.cfg for n, s in self._slots.items()}

    def resolve(self, name: str) -> str:
        """The id of a device given by id or friendly name; ToolError when there is none."""
        return self._slot(name).cfg.id

    def device(self, name: str) -> Any:
        """The live gpiozero object (for the status / camera LED), or None while failed."""
        return self._slot(name).dev

    def states(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {n: self._state(s) for n, s in self._slots.items()}

    def state(self, name: str) -> dict[str, Any]:
        with self._lock:
            return self._state(self._slot(name))

    # control -------------------------------------------------------------------
    def set(self, name: str, value: Any, *, rate_limit: bool = True) -> dict[str, Any]:
        """Set an output: bool / "on" / "off" / "toggle"; pwm_led a level 0..1; rgb_led (r, g, b).

        Returns the device's new state.  Raises ToolError for a bad name or value
        or a rate-limited set, DeviceError when the device has failed.
        """
        slot = self._slot(name)
        d = slot.cfg
        if d.kind not in OUTPUT_KINDS:
            raise ToolError(f"{name} is a {d.kind} (an input): it cannot be set")
        with self._lock:
            if slot.dev is None:
                raise DeviceError(f"{name} ({_pins_text(d)}) is not working: {slot.error}")
            target = self._target(slot, value)
            now = time.monotonic()
            if rate_limit and d.min_interval_s and now - slot.last_set < d.min_interval_s:
                ago = now - slot.last_set
                raise ToolError(f"{name} was changed {ago:.1f} s ago; it may change at most once every "
                                f"{d.min_interval_s:g} s, try again in {d.min_interval_s - ago:.1f} s")
            try:
                self._write(slot, target)
            except Exception as exc:
                self._fail(slot, f"setting it failed: {exc}")
                raise DeviceError(f"{name} ({_pins_text(d)}): setting it failed: {exc}") from exc
            if rate_limit:
                slot.last_set = now
            return self._state(slot)

    # internals -----------------------------------------------------------------
    def _slot(self, name: str) -> _Slot:
        slot = self._slots.get(name) if isinstance(name, str) else None
        if slot is None and isinstance(name, str):
            slot = self._slots.get(device_id(name))
        if slot is None:
            raise ToolError(f"no device named {name!r} (devices: {', '.join(self._slots) or 'none'})")
        return slot

    @staticmethod
    def _safe_value(d: GpioDevice) -> Any:
        iv = d.initial_value
        if d.kind == "rgb_led":
            v = float(iv)
            return (v, v, v)
        if d.kind == "pwm_led":
            return float(iv)
        return bool(iv)

    def _target(self, slot: _Slot, value: Any) -> Any:
        d, dev = slot.cfg, slot.dev
        if isinstance(value, str):
            word = value.lower()
            if word == "toggle":
                word = "off" if _is_on(dev.value) else "on"
            if word not in ("on", "off"):
                raise ToolError(f"{d.id}: state must be on, off or toggle (got {value!r})")
            value = word == "on"
        if d.kind == "rgb_led":
            if isinstance(value, bool):
                return (1.0, 1.0, 1.0) if value else (0.0, 0.0, 0.0)
            if not (isinstance(value, tuple | list) and len(value) == 3):
                raise ToolError(f"{d.id}: an rgb_led takes on/off or (red, green, blue) levels 0..1")
            return tuple(_level(d.id, v) for v in value)
        if d.kind == "pwm_led":
            return float(value) if isinstance(value, bool) else _level(d.id, value)
        if not isinstance(value, bool):
            raise ToolError(f"{d.id}: a {d.kind} is on or off (got {value!r})")
        return value

    @staticmethod
    def _write(slot: _Slot, value: Any) -> None:
        dev = slot.dev
        if slot.cfg.kind in ("pwm_led", "rgb_led"):
            dev.value = value
        elif value:
            dev.on()
        else:
            dev.off()

    def _state(self, slot: _Slot) -> dict[str, Any]:
        d = slot.cfg
        value: Any = None
        if slot.dev is not None:
            try:
                raw = slot.dev.value
                if d.kind == "rgb_led":
                    value = [round(float(c), 4) for c in raw]
                elif d.kind == "pwm_led":
                    value = round(float(raw), 4)
                else:
                    value = bool(raw)
            except Exception as exc:  # a closed or broken device
                value = None
                log.debug("gpio: reading %s failed: %s", d.name, exc)
        return {"name": d.name, "kind": d.kind, "value": value, "room": d.room, "description": d.description,
                "ok": slot.dev is not None, "error": slot.error}

    def _build(self, slot: _Slot) -> bool:
        import gpiozero

        d, f = slot.cfg, self.factory
        try:
            if d.kind == "led":
                dev = gpiozero.LED(d.pin, active_high=d.active_high, initial_value=bool(d.initial_value),
                                   pin_factory=f)
            elif d.kind == "pwm_led":
                dev = gpiozero.PWMLED(d.pin, active_high=d.active_high, initial_value=float(d.initial_value),
                                      pin_factory=f)
            elif d.kind == "rgb_led":
                r, g, b = d.pins or []
                dev = gpiozero.RGBLED(r, g, b, active_high=d.active_high,
                                      initial_value=self._safe_value(d), pin_factory=f)
            elif d.kind == "relay":
                dev = gpiozero.OutputDevice(d.pin, active_high=d.active_high,
                                            initial_value=bool(d.initial_value), pin_factory=f)
            elif d.kind == "buzzer":
                dev = gpiozero.Buzzer(d.pin, active_high=d.active_high, initial_value=bool(d.initial_value),
                                      pin_factory=f)
            elif d.kind == "button":
                dev = gpiozero.Button(d.pin, pull_up=d.pull_up, bounce_time=d.bounce_time_s, pin_factory=f)
                dev.when_pressed = self._callback(d.id, True)
                dev.when_released = self._callback(d.id, False)
            elif d.kind == "motion_sensor":
                # a PIR drives its output itself: no pull, active_high says which level is motion
                dev = gpiozero.MotionSensor(d.pin, pull_up=None, active_state=d.active_high, pin_factory=f)
                dev.when_motion = self._callback(d.id, True)
                dev.when_no_motion = self._callback(d.id, False)
            else:  # digital_input
                dev = gpiozero.DigitalInputDevice(d.pin, pull_up=d.pull_up, bounce_time=d.bounce_time_s,
                                                  pin_factory=f)
                dev.when_activated = self._callback(d.id, True)
                dev.when_deactivated = self._callback(d.id, False)
        except Exception as exc:
            self._fail(slot, f"cannot open {_pins_text(d)}: {type(exc).__name__}: {exc}")
            return False
        slot.dev, slot.error, slot.retry_delay = dev, None, 0.0
        return True

    def _callback(self, name: str, value: bool) -> Callable[[], None]:
        def fire() -> None:
            cb = self.on_input
            if cb is None:
                return
            try:
                cb(name, value)
            except Exception:
                log.exception("gpio: on_input(%s) failed", name)

        return fire

    def _close(self, slot: _Slot) -> None:
        dev, slot.dev = slot.dev, None
        if dev is not None:
            try:
                dev.close()
            except Exception as exc:
                log.warning("gpio: closing %s: %s", slot.cfg.name, exc)

    def _fail(self, slot: _Slot, error: str) -> None:
        """Mark failed (lock held or at start) and schedule a rebuild with backoff."""
        say, held = slot.said.seen(error)
        if say:
            log.error("gpio: %s (%s): %s; retrying in the background%s", slot.cfg.name, _pins_text(slot.cfg), error,
                      Repeats.more(held))
        self._close(slot)
        slot.error = error
        slot.retry_delay = min(self._retry_max, max(self._retry_initial, slot.retry_delay * 2))
        slot.retry_at = time.monotonic() + slot.retry_delay
        if self._retry_thread is not None:
            self._wake.notify_all()
        elif self._running:
            self._ensure_retry_thread()

    def _ensure_retry_thread(self) -> None:
        with self._lock:
            if self._retry_thread is None and self._running:
                self._retry_thread = threading.Thread(target=self._retry_loop, name="gpio-retry", daemon=True)
                self._retry_thread.start()

    def _retry_loop(self) -> None:
        with self._lock:
            while self._running:
                failed = [s for s in self._slots.values() if s.dev is None]
                if not failed:
                    self._wake.wait(timeout=60)
                    continue
                now = time.monotonic()
                due = [s for s in failed if s.retry_at <= now]
                for slot in due:
                    if self._build(slot):
                        log.info("gpio: %s is working again", slot.cfg.name)
                        slot.said.clear()
                if not due:
                    self._wake.wait(timeout=max(0.01, min(s.retry_at for s in failed) - now))


def _is_on(value: Any) -> bool:
    if isinstance(value, tuple | list):
        return any(float(v) > 0 for v in value)
    return bool(value)


def _level(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not 0 <= v <= 1:
        raise ToolError(f"{name}: a level must be a number from 0 to 1 (got {v!r})")
    return float(v)


__all__ = ["INPUT_KINDS", "OUTPUT_KINDS", "GpioBank", "make_factory"]
