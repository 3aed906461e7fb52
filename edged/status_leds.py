"""The daemon's state on a status LED (plain LED, PWM LED or RGB LED).

Patterns run in gpiozero's background blink/pulse threads (or a small thread of
our own for the double blink), so ``show()`` returns at once.  Every ``show()``
stops whatever the previous state started before applying the new one, so the
LED always follows the last state shown.  With no device every call is a no-op.

| state     | LED                | PWM LED              | RGB LED                   |
|-----------|--------------------|----------------------|---------------------------|
| starting  | slow blink         | breathing            | amber breathing           |
| idle      | off                | dim (5 %)            | dim blue                  |
| listening | on                 | full                 | cyan                      |
| thinking  | blink 2 Hz         | breathing (fast)     | purple breathing          |
| speaking  | fast blink         | fast blink           | green                     |
| muted     | short flash / 2 s  | short flash / 2 s    | red                       |
| error     | double blink       | double blink         | red blink                 |
| stopping  | off                | off                  | off                       |
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .state import State

log = logging.getLogger(__name__)

_RGB: dict[State, tuple[str, tuple[float, float, float], float]] = {
    # state: (mode, colour, period/2 in s)
    State.STARTING: ("pulse", (1.0, 0.5, 0.0), 1.0),
    State.IDLE: ("solid", (0.0, 0.0, 0.08), 0),
    State.LISTENING: ("solid", (0.0, 1.0, 1.0), 0),
    State.THINKING: ("pulse", (0.5, 0.0, 1.0), 0.6),
    State.SPEAKING: ("solid", (0.0, 1.0, 0.0), 0),
    State.MUTED: ("solid", (1.0, 0.0, 0.0), 0),
    State.ERROR: ("blink", (1.0, 0.0, 0.0), 0.25),
    State.STOPPING: ("solid", (0.0, 0.0, 0.0), 0),
}
DOUBLE_BLINK = (0.15, 0.15, 0.15, 1.0)  # on, off, on, off (s)


def _kind(device: Any) -> str:
    try:
        from gpiozero import PWMLED, RGBLED

        if isinstance(device, RGBLED):
            return "rgb"
        if isinstance(device, PWMLED):
            return "pwm"
    except ImportError:  # pragma: no cover - gpiozero is a dependency
        pass
    return "led"


class StatusLights:
    def __init__(self, device: Any) -> None:
        self.device = device
        self.kind = _kind(device) if device is not None else "none"
        self._current: State | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    @property
    def current(self) -> State | None:
        return self._current

    def show(self, state: State) -> None:
        if self.device is None:
            self._current = state
            return
        with self._lock:
            self._current = state
            self._stop_thread()
            try:
                if self.kind == "rgb":
                    self._show_rgb(state)
                else:
                    self._show_mono(state)
                self.error = None
            except Exception as exc:  # a closed or failed LED never stops the daemon
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("status LED: cannot show %s: %s", state, self.error)

    def close(self) -> None:
        """Stop the pattern and switch off (the GPIO bank closes the device itself)."""
        with self._lock:
            self._stop_thread()
            if self.device is not None:
                try:
                    self.device.off()
                except Exception as exc:
                    log.debug("status LED: off: %s", exc)

    # patterns ------------------------------------------------------------------
    def _show_mono(self, state: State) -> None:
        dev, pwm = self.device, self.kind == "pwm"
        if state in (State.IDLE, State.STOPPING):
            if pwm and state == State.IDLE:
                dev.value = 0.05
            else:
                dev.off()
        elif state == State.LISTENING:
            dev.on()
        elif state == State.STARTING:
            dev.pulse(1.0, 1.0) if pwm else dev.blink(0.5, 0.5)
        elif state == State.THINKING:
            dev.pulse(0.4, 0.4) if pwm else dev.blink(0.25, 0.25)
        elif state == State.SPEAKING:
            dev.blink(0.08, 0.08)
        elif state == State.MUTED:
            dev.blink(0.1, 1.9)
        else:  # ERROR: a repeating double blink
            dev.off()
            self._stop.clear()
            self._thread = threading.Thread(target=self._double_blink, name="status-led", daemon=True)
            self._thread.start()

    def _show_rgb(self, state: State) -> None:
        mode, colour, t = _RGB[state]
        dev = self.device
        if mode == "solid":
            dev.value = colour
        elif mode == "pulse":
            dev.pulse(fade_in_time=t, fade_out_time=t, on_color=colour, off_color=(0.0, 0.0, 0.0))
        else:
            dev.blink(on_time=t, off_time=t, on_color=colour, off_color=(0.0, 0.0, 0.0))

    def _double_blink(self) -> None:
        dev = self.device
        while not self._stop.is_set():
            for i, t in enumerate(DOUBLE_BLINK):
                try:
                    dev.on() if i % 2 == 0 else dev.off()
                except Exception as exc:
                    log.debug("status LED: %s", exc)
                    return
                if self._stop.wait(t):
                    return

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=2)
            self._thread = None
        self._stop.clear()
