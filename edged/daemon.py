"""``edged run``: one :class:`edged.app.App` (the composition root), run until SIGTERM.

SIGTERM and SIGINT stop it (every part, under one deadline); SIGHUP reloads the config file.
The :class:`Daemon` also offers read-only views of the state and the parts, for the in-process
tests and for tools that embed the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING, Any

from . import config
from .app import App
from .errors import ConfigError, EdgedError
from .secrets import Secret, harden_process, load_api_key

if TYPE_CHECKING:
    from .audio.capture import Capture
    from .audio.ear import Ear
    from .audio.playback import Player
    from .conversation import Conversation
    from .service.control import EventHub
    from .state import State
    from .tools.gpio import GpioBank

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, cfg: config.Config, api_key: Secret | None) -> None:
        self.app = App(cfg, api_key)
        self._stop = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig, handler in ((signal.SIGTERM, self.request_stop), (signal.SIGINT, self.request_stop),
                             (signal.SIGHUP, self.request_reload)):
            loop.add_signal_handler(sig, handler)
        try:
            await self.start()
            await self._stop.wait()
        finally:
            await self.stop()
        return 0

    def request_stop(self) -> None:
        log.info("stop requested")
        self._stop.set()

    def request_reload(self) -> None:
        async def reload() -> None:
            with contextlib.suppress(ConfigError):  # logged and kept in last_error by reload()
                await self.app.reload()

        self.app.tasks.spawn(reload(), "edged-reload")

    async def start(self) -> None:
        await self.app.start()

    async def stop(self) -> None:
        await self.app.stop()

    async def reload(self, new: config.Config | None = None) -> None:
        await self.app.reload(new)

    # ---- read-only views (tests, embedding tools) -------------------------------------------------
    @property
    def cfg(self) -> config.Config:
        return self.app.cfg

    @property
    def state(self) -> State:
        return self.app.conv.state

    @property
    def state_why(self) -> str:
        return self.app.conv.why

    @property
    def conv(self) -> Conversation:
        return self.app.conv

    @property
    def muted(self) -> bool:
        return self.app.conv.muted

    @property
    def problems(self) -> dict[str, str]:
        return self.app.problems.items

    @property
    def events(self) -> EventHub:
        return self.app.events

    @property
    def capture(self) -> Capture:
        return self.app.running_parts().capture

    @property
    def player(self) -> Player:
        return self.app.running_parts().player

    @property
    def ear(self) -> Ear:
        return self.app.running_parts().ear

    @property
    def gpio(self) -> GpioBank | None:
        return self.app.running_parts().gpio

    def status(self) -> dict[str, Any]:
        return self.app.status()

    def set_muted(self, on: bool) -> None:
        self.app.conv.set_muted(on)


def main(args: Any) -> int:
    """``edged run``."""
    from .service import logs

    hardened = harden_process()  # first: no core file, no ptrace or /proc/PID/{mem,environ} by others
    cfg = config.load(args.config)
    level = args.log_level or cfg.log.level
    logs.setup(level)
    if not hardened:
        log.warning("the process could not be made non-dumpable (see above)")
    from .audio import alsalog

    alsalog.install()  # libasound's own error lines go to our logger (debug), before any PCM is opened
    api_key = load_api_key(cfg.live.api_key_file, cfg.path, forget=True)  # the key variables leave the environment
    if api_key is None and not cfg.live.base_url:
        log.error("no API key: set GEMINI_API_KEY, live.api_key_file, or the gemini-api-key credential")
    daemon = Daemon(cfg, api_key)
    try:
        return asyncio.run(daemon.run())
    except EdgedError as exc:
        log.error("%s", exc)
        return exc.exit_code
