"""StatusLights: every state's pattern on mock pins, for LED, PWM LED and RGB LED; transitions."""

from __future__ import annotations

import time

import pytest
from gpiozero import LED, PWMLED, RGBLED

from edged.state import State
from edged.status_leds import TOOL_MIN_S, StatusLights

from .conftest import wait_for


def changes(pin, n: int) -> bool:
    return wait_for(lambda: len(pin.states) >= n)


def is_blinking(dev) -> bool:
    t = getattr(dev, "_blink_thread", None)
    return t is not None and t.is_alive()


@pytest.fixture
def led(factory):
    d = LED(20, pin_factory=factory)
    yield d
    d.close()


def test_plain_led_patterns(led, factory):
    pin = factory.pin(20)
    s = StatusLights(led)
    s.show(State.LISTENING)
    assert pin.state == 1 and s.current == State.LISTENING and not is_blinking(led)
    s.show(State.IDLE)
    assert pin.state == 0
    for state in (State.THINKING, State.SPEAKING, State.MUTED):
        pin.clear_states()
        s.show(state)
        assert is_blinking(led)
        assert changes(pin, 3)  # it toggles by itself
    s.show(State.ERROR)
    assert not is_blinking(led)  # gpiozero's blink stopped, our double blink runs
    pin.clear_states()
    assert changes(pin, 5)  # on, off, on, (long) off ...
    s.show(State.IDLE)  # an error is never sticky
    assert pin.state == 0
    n = len(pin.states)
    s.show(State.IDLE)
    assert len(pin.states) == n and s.current == State.IDLE  # showing it again changes nothing
    s.close()


def test_error_double_blink_timing_shape(led, factory):
    """ERROR: flash 0.15 s, dark 0.15 s, flash 0.15 s, dark 1 s, and again."""
    pin = factory.pin(20)
    s = StatusLights(led)
    s.show(State.ERROR)
    pin.clear_states()
    assert changes(pin, 10)  # the marker, a partial period, then two whole cycles
    s.show(State.STOPPING)
    assert pin.state == 0
    # each entry is the new level and how long the level before it lasted (gpiozero's MockPin)
    steps = pin.states[2:10]
    levels = [bool(st.state) for st in steps]
    assert all(a != b for a, b in zip(levels, levels[1:], strict=False)), levels  # on, off, on, off ...
    lit = [st.timestamp for st in steps if not st.state]  # going dark: a flash ended
    dark = [st.timestamp for st in steps if st.state]  # lighting up: a dark pause ended
    assert len(lit) == len(dark) == 4
    # waits never end early; a busy machine may stretch them a little, never to the long pause
    assert all(0.14 <= t < 0.6 for t in lit), lit
    shape = ["long" if t >= 0.99 else "short" if 0.14 <= t < 0.6 else f"odd {t:.3f}" for t in dark]
    assert shape in (["short", "long"] * 2, ["long", "short"] * 2), dark  # two flashes per long pause


def test_pwm_led_levels_and_breathing(factory):
    d = PWMLED(21, pin_factory=factory)
    s = StatusLights(d)
    assert s.kind == "pwm"
    s.show(State.IDLE)
    assert factory.pin(21).state == pytest.approx(0.05)
    s.show(State.LISTENING)
    assert factory.pin(21).state == 1
    s.show(State.THINKING)
    assert is_blinking(d)
    assert wait_for(lambda: 0 < factory.pin(21).state < 1)  # intermediate levels: breathing
    s.show(State.ERROR)
    factory.pin(21).clear_states()
    assert changes(factory.pin(21), 4)
    s.show(State.LISTENING)
    assert factory.pin(21).state == 1 and not is_blinking(d)
    d.close()


RGB_EXPECTED = {
    State.IDLE: (0, 0, 0.08), State.LISTENING: (0, 1, 1), State.SPEAKING: (0, 1, 0), State.MUTED: (1, 0, 0),
    State.STOPPING: (0, 0, 0),
}


def test_rgb_led_colours(factory):
    d = RGBLED(5, 6, 13, pin_factory=factory)
    s = StatusLights(d)
    assert s.kind == "rgb"
    for state, colour in RGB_EXPECTED.items():
        s.show(state)
        assert [factory.pin(p).state for p in (5, 6, 13)] == pytest.approx(list(colour)), state
        assert not is_blinking(d)
    s.show(State.THINKING)  # purple breathing: red at half of blue, green dark
    assert is_blinking(d)
    assert wait_for(lambda: 0 < factory.pin(13).state < 1)
    assert factory.pin(6).state == 0
    s.show(State.ERROR)  # red blink
    factory.pin(5).clear_states()
    assert changes(factory.pin(5), 3)
    assert factory.pin(6).state == 0 and factory.pin(13).state == 0
    s.show(State.LISTENING)  # back to a steady colour after the error
    assert [factory.pin(p).state for p in (5, 6, 13)] == pytest.approx([0, 1, 1]) and not is_blinking(d)
    d.close()


def test_no_device_is_a_no_op():
    s = StatusLights(None)
    s.show(State.ERROR)
    assert s.current == State.ERROR and s.kind == "none"
    s.close()


def test_closed_device_does_not_raise(led):
    s = StatusLights(led)
    led.close()
    s.show(State.LISTENING)
    assert s.current == State.LISTENING and s.error and "Closed" in s.error


# ---- a tool call running while idle or speaking: an overlay over the state's pattern --------------------
AMBER = [1.0, 0.55, 0.0]
GREEN = [0.0, 1.0, 0.0]


def rgb_of(factory) -> list[float]:
    return [round(factory.pin(p).state, 2) for p in (5, 6, 13)]


def test_rgb_tool_overlay_during_speaking_and_back(factory):
    d = RGBLED(5, 6, 13, pin_factory=factory)
    s = StatusLights(d)
    s.show(State.SPEAKING)
    assert rgb_of(factory) == GREEN
    s.show(State.SPEAKING, tools=True)
    assert s.overlay and s.current == State.SPEAKING
    assert wait_for(lambda: rgb_of(factory) == AMBER)  # amber ...
    assert wait_for(lambda: rgb_of(factory) == GREEN)  # ... alternating with the state's green
    assert wait_for(lambda: rgb_of(factory) == AMBER)
    s.show(State.SPEAKING, tools=False)  # the call is over: the overlay ends by itself
    assert wait_for(lambda: not s.overlay)
    assert rgb_of(factory) == GREEN and not is_blinking(d)
    factory.pin(5).clear_states()
    assert not wait_for(lambda: len(factory.pin(5).states) > 1, timeout=0.5)  # steady green from now on
    s.close()
    d.close()


def test_a_call_shorter_than_the_minimum_is_still_shown(factory):
    d = RGBLED(5, 6, 13, pin_factory=factory)
    s = StatusLights(d)
    s.show(State.IDLE)
    for p in (5, 6, 13):
        factory.pin(p).clear_states()
    t0 = time.monotonic()
    s.show(State.IDLE, tools=True)
    s.show(State.IDLE, tools=False)  # a GPIO switch: over in a millisecond
    assert s.overlay
    assert wait_for(lambda: not s.overlay)
    assert time.monotonic() - t0 >= TOOL_MIN_S  # it stayed the minimum (waits never end early)
    red = [st.state for st in factory.pin(5).states]
    assert red.count(1.0) >= 2  # amber was on the LED (red at full), more than once
    assert rgb_of(factory) == [0.0, 0.0, 0.08]
    d.close()


def test_a_state_change_ends_the_overlay_at_once_and_thinking_has_none(factory):
    d = RGBLED(5, 6, 13, pin_factory=factory)
    s = StatusLights(d)
    s.show(State.SPEAKING, tools=True)
    assert wait_for(lambda: rgb_of(factory) == AMBER)
    s.show(State.LISTENING, tools=True)  # a barge-in: the state wins, no overlay while listening
    assert not s.overlay and rgb_of(factory) == [0.0, 1.0, 1.0]
    s.show(State.THINKING, tools=True)  # thinking's breathing already says "working"
    assert not s.overlay and is_blinking(d)
    s.close()
    d.close()


def test_plain_led_tool_overlay_is_long_on_short_off(led, factory):
    pin = factory.pin(20)
    s = StatusLights(led)
    s.show(State.SPEAKING)
    s.show(State.SPEAKING, tools=True)
    pin.clear_states()
    assert changes(pin, 6)
    s.show(State.SPEAKING, tools=False)
    steps = pin.states[1:6]
    on = [st.timestamp for st in steps if not st.state]  # going dark: an "on" ended
    off = [st.timestamp for st in steps if st.state]
    assert on and off and all(t >= 0.29 for t in on) and all(0.09 <= t < 0.29 for t in off), (on, off)
    assert wait_for(lambda: not s.overlay)
    assert wait_for(lambda: is_blinking(led))  # speaking's own fast blink is back (its thread starts after the overlay ends)
    s.close()


def test_no_device_records_the_overlay():
    s = StatusLights(None)
    s.show(State.SPEAKING, tools=True)
    assert s.overlay and s.current == State.SPEAKING
    s.show(State.IDLE)
    assert not s.overlay
