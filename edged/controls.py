"""The facade edgectl's commands get (:class:`edged.control_api.ControlPort`) over the composition root.

:class:`Controls` reads the root's current config, conversation and parts at each call (a reload
replaces them) and forwards the commands: nothing more.  The root (:class:`edged.app.App`) is seen
through :class:`Root`, so this module does not import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .config import Config
    from .conversation import Conversation
    from .parts import Parts
    from .state import State
    from .timers import Timers
    from .tools.camera import Camera
    from .tools.gpio import GpioBank


class Root(Protocol):
    """What the facade needs of the composition root."""

    cfg: Config
    conv: Conversation
    parts: Parts | None

    def running_parts(self) -> Parts: ...

    def status(self) -> dict[str, Any]: ...

    async def reload(self, new: Config | None = None) -> None: ...

    def publish(self, event: dict[str, Any]) -> None: ...


class Controls:
    def __init__(self, app: Root) -> None:
        self._app = app

    @property
    def cfg(self) -> Config:
        return self._app.cfg

    @property
    def state(self) -> State:
        return self._app.conv.state

    @property
    def muted(self) -> bool:
        return self._app.conv.muted

    @property
    def gpio(self) -> GpioBank | None:
        return self._app.parts.gpio if self._app.parts else None

    @property
    def camera(self) -> Camera | None:
        return self._app.parts.camera if self._app.parts else None

    @property
    def timers(self) -> Timers | None:
        return self._app.parts.timers if self._app.parts else None

    def status(self) -> dict[str, Any]:
        return self._app.status()

    async def reload(self, new: Config | None = None) -> None:
        await self._app.reload(new)

    def publish(self, event: dict[str, Any]) -> None:
        self._app.publish(event)

    def request_turn(self, source: str) -> None:
        self._app.conv.request_turn(source)

    def say(self, text: str) -> None:
        self._app.conv.say(text)

    def set_muted(self, on: bool) -> None:
        self._app.conv.set_muted(on)

    def reset_session(self) -> None:
        self._app.running_parts().live.reset_handle()

    def set_volume(self, value: Any) -> dict[str, Any]:
        """``edgectl volume N|up|down``: ToolError for a bad value.  Volume.set publishes the change
        (the one path of edgectl, the model's set_volume and Home Assistant)."""
        volume = self._app.running_parts().volume
        volume.set(value, by="edgectl")
        return volume.status()

    def volume_status(self) -> dict[str, Any]:
        return self._app.running_parts().volume.status()
