"""The MQTT bridge's one door into the daemon: :class:`SpeakerPort`, and an adapter that builds it.

The bridge (edged.mqtt.bridge) knows nothing of the daemon's parts: it reads the speaker's state,
sets outputs and opens turns only through this narrow interface, and follows changes through the
daemon's event stream (edged.service.control.EventHub).  Reads are cheap, run on the event loop and
never raise; actions raise :class:`~edged.errors.ToolError` for a refused or malformed request
(bad value, rate limit, not allowed) and :class:`~edged.errors.EdgedError` subclasses for a failure.

:class:`SpeakerAdapter` is the real implementation over a :class:`~edged.tools.gpio.GpioBank` and
an EventHub plus the daemon's own actions passed as callables: the composition root builds one, the
tests build one over gpiozero's MockFactory.  GPIO sets go through ``GpioBank.set`` with its
rate limit (``min_interval_s``), exactly as the model's ``set_device`` and ``edgectl gpio set`` do,
and the devices the daemon drives itself (``gpio.status_led``, ``gpio.camera_led``) are withheld,
as the model's tool registry withholds them.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from ..config import GpioDevice
from ..errors import DeviceError, ToolError

log = logging.getLogger(__name__)

ANNOUNCE_MAX_CHARS = 500


@runtime_checkable
class EventSubscription(Protocol):
    """One subscriber's bounded queue of daemon events (edged.service.control.Subscription)."""

    async def get(self) -> dict[str, Any] | None:
        """The next event dict (``{"event": NAME, ...}``), or None once closed."""
        ...


@runtime_checkable
class SpeakerPort(Protocol):
    # ---- reads: on the loop, cheap, never raise --------------------------------------------
    def speaker_state(self) -> str:
        """The daemon's state: idle, listening, thinking, speaking, muted, error (or starting, stopping)."""
        ...

    def muted(self) -> bool: ...

    def volume(self) -> float | None:
        """Playback volume 0..1, or None when there is no volume control."""
        ...

    def live_state(self) -> str:
        """The Live connection in words: connected, resumed, reconnecting, offline, auth_failed, ..."""
        ...

    def problems(self) -> dict[str, str]:
        """What is wrong, by part (empty when all is well)."""
        ...

    def timers(self) -> list[dict[str, Any]]:
        """Running timers, each at least {"name": str, "remaining_s": float}."""
        ...

    def gpio_devices(self) -> dict[str, GpioDevice]:
        """The GPIO devices Home Assistant may see and drive (the allow-list), by name."""
        ...

    def gpio_states(self) -> dict[str, dict[str, Any]]:
        """GpioBank.states() for those devices: {"value": ..., "ok": bool, "error": str|None, ...}."""
        ...

    # ---- actions ------------------------------------------------------------------------------
    async def set_gpio(self, name: str, value: Any) -> dict[str, Any]:
        """Set an output (bool; pwm_led level 0..1; rgb_led (r, g, b)); returns its new state."""
        ...

    async def set_muted(self, on: bool) -> None: ...

    async def listen(self) -> None:
        """Open a turn as the wake word would."""
        ...

    async def announce(self, text: str) -> None:
        """Have the speaker say ``text`` as given."""
        ...

    async def set_volume(self, level: float) -> None:
        """Set the playback volume 0..1 (ToolError when there is no volume control)."""
        ...

    async def snapshot(self) -> bytes:
        """A JPEG from the camera (DeviceError when there is none)."""
        ...

    # ---- events -------------------------------------------------------------------------------
    def subscribe(self) -> EventSubscription: ...

    def unsubscribe(self, sub: EventSubscription) -> None: ...


def announce_prompt(text: str) -> str:
    """The text turn that asks the model to say an announcement as given, and nothing else."""
    return ("Announce the following to the people in the room. Say it exactly as written, word for word, "
            f"without adding or answering anything:\n\n{text}")


def clean_announcement(raw: str) -> str:
    """Announcement text from outside: printable, trimmed, bounded.  ToolError if nothing is left."""
    text = "".join(ch if ch.isprintable() else " " for ch in raw).strip()
    text = " ".join(text.split())
    if not text:
        raise ToolError("an announcement needs some text")
    if len(text) > ANNOUNCE_MAX_CHARS:
        raise ToolError(f"an announcement is at most {ANNOUNCE_MAX_CHARS} characters (got {len(text)})")
    return text


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class SpeakerAdapter:
    """A SpeakerPort over a GpioBank, an EventHub and the daemon's actions.

    ``gpio`` is the GpioBank, None (no devices), or a function returning the current one (for a
    daemon whose reload replaces the bank).  ``events`` is anything with ``subscribe()`` /
    ``unsubscribe(sub)`` / ``publish(event)`` (the daemon's EventHub).  Optional parts that the
    daemon lacks (volume, camera, timers) refuse with a clear error.
    """

    def __init__(self, *, gpio: Any, events: Any,
                 state: Callable[[], str],
                 is_muted: Callable[[], bool],
                 set_muted: Callable[[bool], Any],
                 start_turn: Callable[[str], Any],
                 say: Callable[[str], Any],
                 live_state: Callable[[], str] = lambda: "unknown",
                 problems: Callable[[], dict[str, str]] = dict,
                 timers: Callable[[], list[dict[str, Any]]] = list,
                 get_volume: Callable[[], float | None] | None = None,
                 set_volume: Callable[[float], Any] | None = None,
                 snapshot: Callable[[], Awaitable[bytes]] | None = None) -> None:
        self._gpio = gpio
        self._events = events
        self._state = state
        self._is_muted = is_muted
        self._set_muted = set_muted
        self._start_turn = start_turn
        self._say = say
        self._live_state = live_state
        self._problems = problems
        self._timers = timers
        self._get_volume = get_volume
        self._put_volume = set_volume
        self._snapshot = snapshot

    # ---- reads ---------------------------------------------------------------------------------
    def speaker_state(self) -> str:
        return str(self._state())

    def muted(self) -> bool:
        return bool(self._is_muted())

    def volume(self) -> float | None:
        return None if self._get_volume is None else self._get_volume()

    def live_state(self) -> str:
        return str(self._live_state())

    def problems(self) -> dict[str, str]:
        return dict(self._problems())

    def timers(self) -> list[dict[str, Any]]:
        return list(self._timers())

    def _bank(self) -> Any:
        g = self._gpio
        return g() if callable(g) else g

    def _reserved(self) -> set[str]:
        cfg = getattr(self._bank(), "cfg", None)
        return {getattr(cfg, "status_led", ""), getattr(cfg, "camera_led", "")} - {""}

    def gpio_devices(self) -> dict[str, GpioDevice]:
        bank = self._bank()
        if bank is None:
            return {}
        reserved = self._reserved()
        return {n: d for n, d in bank.devices.items() if n not in reserved}

    def gpio_states(self) -> dict[str, dict[str, Any]]:
        bank = self._bank()
        if bank is None:
            return {}
        allowed = self.gpio_devices()
        return {n: s for n, s in bank.states().items() if n in allowed}

    # ---- actions -------------------------------------------------------------------------------
    async def set_gpio(self, name: str, value: Any) -> dict[str, Any]:
        allowed = self.gpio_devices()
        if name not in allowed:
            raise ToolError(f"no device named {name!r} may be set from Home Assistant "
                            f"(devices: {', '.join(allowed) or 'none'})")
        # GpioBank.set applies the device's value checks and its min_interval_s rate limit
        result = await asyncio.to_thread(self._bank().set, name, value)
        self._events.publish({"event": "gpio", "name": name, "value": result.get("value"), "by": "mqtt"})
        return result

    async def set_muted(self, on: bool) -> None:
        await _maybe_await(self._set_muted(bool(on)))

    async def listen(self) -> None:
        await _maybe_await(self._start_turn("mqtt"))

    async def announce(self, text: str) -> None:
        await _maybe_await(self._say(announce_prompt(clean_announcement(text))))

    async def set_volume(self, level: float) -> None:
        if self._put_volume is None:
            raise ToolError("this speaker has no volume control")
        await _maybe_await(self._put_volume(level))

    async def snapshot(self) -> bytes:
        if self._snapshot is None:
            raise DeviceError("no camera: camera.backend is 'none'")
        return await self._snapshot()

    # ---- events --------------------------------------------------------------------------------
    def subscribe(self) -> EventSubscription:
        return self._events.subscribe()

    def unsubscribe(self, sub: EventSubscription) -> None:
        self._events.unsubscribe(sub)
