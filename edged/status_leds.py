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

A tool call running while idle or speaking (a NON_BLOCKING call the model made in the middle of
its reply, or one still running after it) is shown over the state's pattern: the RGB LED alternates
amber with the state's colour (0.15 s each), a plain or PWM LED blinks long-on short-off (0.3 s on,
0.1 s off), which none of the states uses.  The overlay stays at least ``TOOL_MIN_S`` so that a
call that ends in a millisecond (a GPIO switch) is still seen; then the state's pattern comes back.
While thinking the state's own pattern already says "working", so no overlay is shown.
"""

from __future__ import annotations

import logging
import threading
import time
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
TOOL_RGB = (1.0, 0.55, 0.0)  # amber
TOOL_RGB_STEP = 0.15  # s of amber, then s of the state's colour
TOOL_MONO = (0.3, 0.1)  # on, off (s): long on, short off
TOOL_MIN_S = 0.6  # the overlay shows at least this long
TOOL_STATES = (State.IDLE, State.SPEAKING)  # the states a running call is shown over


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
        self._tools = False  # a tool call runs (as last shown)
        self.overlay = False  # the tool-call overlay is on the LED now

    @property
    def current(self) -> State | None:
        return self._current

    def show(self, state: State, tools: bool = False) -> None:
        """Show ``state``; ``tools``: a tool call is running (an overlay while idle or speaking)."""
        want = tools and state in TOOL_STATES
        if self.device is None:
            self._current, self._tools, self.overlay = state, want, want
            return
        with self._lock:
            same = state == self._current
            self._current, self._tools = state, want
            if same and self.overlay:
                return  # the overlay thread goes on; it restores the state's pattern once the call is over
            self._stop_thread()
            self.overlay = False
            try:
                if want:
                    self._start_overlay(state)
                elif self.kind == "rgb":
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

    def _start_overlay(self, state: State) -> None:
        self.overlay = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._overlay_loop, args=(state,), name="status-led-tool", daemon=True)
        self._thread.start()

    def _overlay_loop(self, state: State) -> None:
        """The tool-call overlay, until no call runs and TOOL_MIN_S has passed; then the state's pattern."""
        dev, stop = self.device, self._stop
        until = time.monotonic() + TOOL_MIN_S
        base = _RGB[state][1]
        i = 0
        while True:
            try:
                while not stop.is_set() and (self._tools or time.monotonic() < until):
                    lit = i % 2 == 0
                    if self.kind == "rgb":
                        dev.value = TOOL_RGB if lit else base
                        t = TOOL_RGB_STEP
                    else:
                        dev.on() if lit else dev.off()
                        t = TOOL_MONO[i % 2]
                    i += 1
                    if stop.wait(t):
                        return
            except Exception as exc:
                log.debug("status LED: %s", exc)
                self.overlay = False
                return
            # show() may hold the lock while it stops this thread: never block on it
            while not self._lock.acquire(timeout=0.05):
                if stop.is_set():
                    return
            try:
                if stop.is_set():
                    return
                if self._tools:  # another call began meanwhile: go on
                    continue
                self.overlay = False
                self._thread = None
                self._show_rgb(state) if self.kind == "rgb" else self._show_mono(state)
                return
            except Exception as exc:
                log.debug("status LED: %s", exc)
                self.overlay = False
                return
            finally:
                self._lock.release()

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
            if self._thread is not threading.current_thread():
                self._thread.join(timeout=2)
            self._thread = None
        self.overlay = False
        self._stop.clear()
