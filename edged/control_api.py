"""The daemon's side of the control protocol (docs/CONTROL.md): one method per command.

Requests are ``{"cmd": NAME, ...}``; the server answers ``{"ok": true, "result": ...}`` with
what a method returns, or ``{"ok": false, "error": MESSAGE, "kind": ...}`` from what it
raises (CommandError, ConfigError, LookupError); the server turns anything else into a
"failed" answer and logs it, so no command can take the daemon down.
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING, Any, Protocol

from . import config
from .errors import ConfigError, EdgedError, ToolError
from .service.control import CommandError

if TYPE_CHECKING:
    from .state import State
    from .timers import Timers
    from .tools.camera import Camera
    from .tools.gpio import GpioBank

log = logging.getLogger(__name__)


CONFIG_SET_RETIRED = ("config.set is not done by the daemon (it never writes its configuration): "
                      "`edgectl config set KEY VALUE` writes the file as you, then asks the daemon to reload")
VALIDATE_OWN_FILE_ONLY = ("config.validate over the socket checks only the daemon's own file: "
                          "`edgectl config validate FILE` checks another one with your own permissions")


class ControlPort(Protocol):
    """What the commands may reach: the composition root gives a facade with exactly this."""

    @property
    def cfg(self) -> config.Config: ...
    @property
    def state(self) -> State: ...
    @property
    def muted(self) -> bool: ...
    @property
    def gpio(self) -> GpioBank | None: ...
    @property
    def camera(self) -> Camera | None: ...
    @property
    def timers(self) -> Timers | None: ...
    def status(self) -> dict[str, Any]: ...
    async def reload(self, new: config.Config | None = None) -> None: ...
    def publish(self, event: dict[str, Any]) -> None: ...
    def request_turn(self, source: str) -> None: ...
    def say(self, text: str) -> None: ...
    def set_muted(self, on: bool) -> None: ...
    def reset_session(self) -> None: ...
    def set_volume(self, value: Any) -> dict[str, Any]: ...
    def volume_status(self) -> dict[str, Any]: ...


class ControlApi:
    def __init__(self, port: ControlPort) -> None:
        self._port = port

    async def handle(self, req: dict[str, Any]) -> Any:
        """The ControlServer's handler: returns the result, raises CommandError / ConfigError."""
        cmd = req.get("cmd")
        method = getattr(self, "cmd_" + str(cmd).replace(".", "_").replace("-", "_"), None)
        if method is None:
            raise CommandError(f"unknown command {cmd!r}", "usage")
        try:
            return await method(req)
        except ToolError as exc:  # a bad device name or value
            raise CommandError(str(exc), "usage") from None
        except (ConfigError, CommandError, LookupError):
            raise
        except EdgedError as exc:
            raise CommandError(str(exc), "failed") from None

    @staticmethod
    def _arg(req: dict[str, Any], name: str, kind: type | tuple[type, ...] = str) -> Any:
        if name not in req:
            raise CommandError(f"missing argument {name!r}", "usage")
        value = req[name]
        if not isinstance(value, kind):
            raise CommandError(f"argument {name!r} has the wrong type", "usage")
        return value

    # ---- commands -----------------------------------------------------------------------------
    async def cmd_status(self, req: dict[str, Any]) -> Any:
        return self._port.status()

    async def cmd_config_show(self, req: dict[str, Any]) -> Any:
        return {"path": self._port.cfg.path, "config": self._port.cfg.model_dump(), "toml": self._port.cfg.to_toml()}

    async def cmd_config_get(self, req: dict[str, Any]) -> Any:
        key = self._arg(req, "key")
        return {"key": key, "value": config.get_key(self._port.cfg, key)}

    async def cmd_config_set(self, req: dict[str, Any]) -> Any:
        # Retired: the daemon does not write its own configuration (it cannot: /etc/edged is root's
        # and the unit has no write access to /etc).  edgectl writes the file in the caller's name.
        raise CommandError(CONFIG_SET_RETIRED, "usage")

    async def cmd_config_validate(self, req: dict[str, Any]) -> Any:
        if req.get("path") not in (None, ""):  # the server refuses it first; never read a caller's file
            raise CommandError(VALIDATE_OWN_FILE_ONLY, "usage")
        cfg = config.load(self._port.cfg.path)
        return {"path": cfg.path, "valid": True}

    async def cmd_reload(self, req: dict[str, Any]) -> Any:
        await self._port.reload()
        return {"path": self._port.cfg.path, "state": self._port.state.value}

    async def cmd_gpio_list(self, req: dict[str, Any]) -> Any:
        return self._port.gpio.states() if self._port.gpio else {}

    async def cmd_gpio_set(self, req: dict[str, Any]) -> Any:
        name = self._arg(req, "name")
        value = self._arg(req, "value", (str, int, float, bool))
        if self._port.gpio is None:
            raise KeyError("no GPIO devices are configured")
        if name not in self._port.gpio.devices:
            raise KeyError(f"no GPIO device named {name!r} (gpio list shows them)")
        if isinstance(value, str):
            value = config.coerce_value(value)
        result = self._port.gpio.set(name, value)
        self._port.publish({"event": "gpio", "name": name, "value": result.get("value"), "by": "edgectl"})
        return result

    async def cmd_wake(self, req: dict[str, Any]) -> Any:
        self._port.request_turn("edgectl")
        return {"state": self._port.state.value}

    async def cmd_say(self, req: dict[str, Any]) -> Any:
        text = self._arg(req, "text").strip()
        if not text:
            raise CommandError("say needs some text", "usage")
        self._port.say(text)
        return {"state": self._port.state.value}

    async def cmd_snapshot(self, req: dict[str, Any]) -> Any:
        if self._port.camera is None:
            raise EdgedError("no camera: camera.backend is 'none'")
        jpeg = await self._port.camera.snapshot()
        return {"jpeg_b64": base64.b64encode(jpeg).decode("ascii"), "bytes": len(jpeg)}

    async def cmd_session_reset(self, req: dict[str, Any]) -> Any:
        self._port.reset_session()
        return {"reset": True}

    async def cmd_mute(self, req: dict[str, Any]) -> Any:
        on = req.get("on")
        if on is not None and not isinstance(on, bool):
            raise CommandError("mute takes on: true, false or null (toggle)", "usage")
        self._port.set_muted((not self._port.muted) if on is None else on)
        return {"muted": self._port.muted}

    # ---- timers and alarms (edged/timers.py; the ringing ends are reported by the Timers part) ------
    def _timers(self) -> Timers:
        if self._port.timers is None:
            raise EdgedError("timers are not running")
        return self._port.timers

    async def cmd_timers_list(self, req: dict[str, Any]) -> Any:
        t = self._timers()
        return {"timers": t.list(), "ringing": t.ringing}

    async def cmd_timers_cancel(self, req: dict[str, Any]) -> Any:
        ref = self._arg(req, "id").strip()
        if not ref:
            raise CommandError("timers cancel needs the id (or the label) of a timer or alarm", "usage")
        try:
            return {"cancelled": self._timers().cancel(ref)}
        except ToolError as exc:  # none has that id or label: the message lists those that exist
            raise LookupError(str(exc)) from None

    async def cmd_timers_stop(self, req: dict[str, Any]) -> Any:
        """Silence what rings now (the timers that rang are done; alarms too)."""
        return {"stopped": self._timers().stop_ringing()}

    async def cmd_volume(self, req: dict[str, Any]) -> Any:
        """``{"level": 0..100}``, ``{"step": "up" | "down"}``, or neither to ask; answers the volume's
        status (``level``, ``backend``, ``mixer``...)."""
        level, step = req.get("level"), req.get("step")
        if level is not None and step is not None:
            raise CommandError("volume takes level or step, not both", "usage")
        if step is not None:
            if step not in ("up", "down"):
                raise CommandError(f"step must be up or down (got {step!r})", "usage")
            return self._port.set_volume(step)
        if level is not None:
            if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 100:
                raise CommandError(f"level must be a whole number from 0 to 100 (got {level!r})", "usage")
            return self._port.set_volume(level)
        return self._port.volume_status()
