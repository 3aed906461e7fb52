"""The daemon's side of :class:`~edged.mqtt.port.SpeakerPort`: a SpeakerAdapter over the
composition root's pieces, for :func:`edged.parts.build_mqtt`.

- state, mute and listen: the conversation (``request_turn("mqtt")`` as the talk button does; the
  conversation refuses it while muted or starting);
- announce: the :class:`~edged.announce.Announcer`, which says it through the conversation's
  ``say`` path when the speaker is at rest (see edged/announce.py for the rules);
- problems: the problem registry; events: the daemon's EventHub;
- GPIO: the current bank (a reload replaces it), set through ``GpioBank.set`` with its value checks
  and ``min_interval_s``, as the model and edgectl do, and without the devices the daemon drives
  itself (status and camera LEDs);
- camera snapshots only while ``mqtt.camera`` is on (read at each press: a reload may turn it off);
- volume and timers through the current parts when the daemon has them (``parts.volume``: an
  edged.audio.volume.Volume, level 0-100; ``parts.timers``: an edged.timers.Timers); without them
  the volume entity shows no value and refuses, the timers sensor shows 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import DeviceError, ToolError
from .port import SpeakerAdapter

if TYPE_CHECKING:
    from ..announce import Announcer
    from ..conversation import Conversation
    from ..health import Problems
    from ..service.control import EventHub


def speaker_port(*, conv: Conversation, problems: Problems, events: EventHub, announcer: Announcer,
                 current: Callable[[], Any]) -> SpeakerAdapter:
    """``current()`` returns the root's container of the current parts (or None before the start)."""

    def part(name: str) -> Any:
        return getattr(current(), name, None)

    def get_volume() -> float | None:
        vol = part("volume")
        return None if vol is None else int(vol.level) / 100

    def set_volume(level: float) -> None:
        vol = part("volume")
        if vol is None:
            raise ToolError("this speaker has no volume control")
        vol.set(round(level * 100), by="mqtt")  # checks the value (0-100) and publishes the change

    def timers() -> list[dict[str, Any]]:
        tm = part("timers")
        if tm is None:
            return []
        out = []
        for item in tm.list():
            name = item.get("label") or item.get("kind") or item.get("id") or "timer"
            out.append({**item, "name": str(name), "remaining_s": item.get("remaining_s")})
        return out

    async def snapshot() -> bytes:
        if not conv.cfg.mqtt.camera:
            raise DeviceError("camera images are not offered over MQTT (mqtt.camera = false)")
        camera = part("camera")
        if camera is None:
            raise DeviceError("no camera: camera.backend is 'none'")
        jpeg: bytes = await camera.snapshot()
        return jpeg

    return SpeakerAdapter(
        gpio=lambda: part("gpio"), events=events,
        state=lambda: conv.state.value, is_muted=lambda: conv.muted, set_muted=conv.set_muted,
        start_turn=conv.request_turn, say=announcer.submit,
        live_state=lambda: conv.live_state, problems=lambda: dict(problems.items), timers=timers,
        get_volume=get_volume, set_volume=set_volume, snapshot=snapshot)
