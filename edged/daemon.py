"""The daemon: owns the parts, starts and stops them in order, and keeps the truth about state.

``edged run`` builds one :class:`Daemon` and runs it until SIGTERM.  The turn logic lives
in :mod:`edged.conversation`; the control commands in :mod:`edged.control_api`; the
construction of each hardware part in :mod:`edged.parts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from . import __version__, config
from .conversation import Conversation
from .errors import ConfigError, EdgedError
from .secrets import Secret, load_api_key
from .state import State

log = logging.getLogger(__name__)

# Problems that leave the speaker unable to do its job: shown as the error state when idle.
_CRITICAL = ("capture", "wake", "live")
# A thread whose heartbeat is older than this is hung: the watchdog pings stop.
_STALL_S = 10.0


class Daemon:
    def __init__(self, cfg: config.Config, api_key: Secret | None) -> None:
        self.cfg = cfg
        self.api_key = api_key
        self.started_at = time.monotonic()
        self.state = State.STARTING
        self.state_why = "starting"
        self.state_since = time.monotonic()
        self.problems: dict[str, str] = {}
        self.last_error: str | None = None
        self.muted = False
        self.live_state = "not started"
        self.wake_stats: dict[str, Any] = {"detections": 0, "last_model": None, "last_score": None}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        # parts (built in start(); see edged/parts.py)
        self.gpio: Any = None
        self.lights: Any = None
        self.camera: Any = None
        self.tools: Any = None
        self.player: Any = None
        self.capture: Any = None
        self.ear: Any = None
        self.live: Any = None
        self.control: Any = None
        self.events: Any = None
        self.notifier: Any = None
        self.conv: Conversation | None = None

    # ---- lifecycle -----------------------------------------------------------------------------
    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        for sig, handler in ((signal.SIGTERM, self.request_stop), (signal.SIGINT, self.request_stop),
                             (signal.SIGHUP, self.request_reload)):
            self._loop.add_signal_handler(sig, handler)
        try:
            await self.start()
            await self._stop.wait()
        finally:
            await self.stop()
        return 0

    def request_stop(self) -> None:
        log.info("stop requested")
        self._stop.set()

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """A task the daemon keeps a reference to until it ends (and cancels at stop)."""
        assert self._loop is not None
        task = self._loop.create_task(coro, name=name)
        self._tasks.append(task)
        task.add_done_callback(lambda t: t in self._tasks and self._tasks.remove(t))
        return task

    def request_reload(self) -> None:
        async def reload() -> None:
            with contextlib.suppress(ConfigError):  # logged and kept in last_error by reload()
                await self.reload()

        self.spawn(reload(), "edged-reload")

    async def start(self) -> None:
        from . import parts  # the hardware imports are lazy

        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(Path(self.cfg.state.dir).mkdir, parents=True, exist_ok=True)
        self.notifier = parts.build_notifier()
        self.events = parts.build_events()
        self.conv = Conversation(self, self.cfg, self.set_state, self.publish)
        await parts.start_all(self)
        self.conv.start()
        self.spawn(self.live.run(), "edged-live")
        if self.notifier and self.notifier.watchdog_interval():
            self.spawn(self.notifier.run_watchdog([self._capture_alive]), "edged-watchdog")
        self.set_state(State.MUTED if self.muted else State.IDLE, "ready")
        if self.notifier:
            self.notifier.ready()
        log.info("edged %s ready (pid %d)", __version__, os.getpid())

    async def stop(self) -> None:
        if self.state == State.STOPPING:
            return
        self.set_state(State.STOPPING, "stopping")
        if self.notifier:
            self.notifier.stopping()
        from . import parts

        with contextlib.suppress(Exception):
            if self.conv:
                self.conv.cancel_turn("stopping")
        for task in list(self._tasks):
            task.cancel()
        if self.live:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.live.stop(), 2.0)
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 1.0)
        if self.conv:
            await self.conv.stop()
        await parts.stop_all(self)
        log.info("stopped")

    async def reload(self, new: config.Config | None = None) -> None:
        """Apply a new config: refused whole if invalid (the old one stays)."""
        from . import parts

        if self.notifier:
            self.notifier.reloading()
        try:
            if new is None:
                new = config.load(self.cfg.path)
            await parts.apply(self, new)
        except ConfigError as exc:
            log.error("reload refused, the old config stays: %s", exc)
            self.last_error = str(exc)
            raise
        finally:
            if self.notifier:
                self.notifier.ready()
                self.notifier.status(self.status_line())

    async def restart_live(self) -> None:
        """A new Live session with the current config; it resumes from the persisted handle."""
        from . import parts

        old = self.live
        if old is not None:
            await old.stop()
        parts.start_live(self)
        if old is not None:
            self.live.adopt_counters(old)
        self.spawn(self.live.run(), "edged-live")

    # ---- state -----------------------------------------------------------------------------------
    def effective_state(self, state: State) -> State:
        if self.muted and state not in (State.STOPPING, State.STARTING):
            return State.MUTED
        if state == State.IDLE and any(k in self.problems for k in _CRITICAL):
            return State.ERROR
        return state

    def set_state(self, state: State, why: str) -> None:
        if self.state == State.STOPPING:
            return  # nothing changes the state once stopping
        shown = self.effective_state(state)
        changed = shown != self.state or why != self.state_why
        self.state, self.state_why = shown, why
        if not changed:
            return
        self.state_since = time.monotonic()
        log.info("state %s: %s", shown.value, why, extra={"fields": {"EDGED_STATE": shown.value}})
        if self.lights:
            self.lights.show(shown)
        if self.ear and self.cfg.wake.suppress_while_playing:
            self.ear.set_wake_enabled(shown != State.SPEAKING)
        if self.notifier:
            self.notifier.status(self.status_line())
        self.publish({"event": "state", "state": shown.value, "reason": why})

    def refresh_state(self) -> None:
        base = self.conv.state if self.conv else State.IDLE
        self.set_state(base, self.state_why)

    def problem(self, part: str, message: str | None) -> None:
        """Record (or clear, with None) what is wrong with a part; it shows in status and LEDs."""
        if message is None:
            if self.problems.pop(part, None) is not None:
                log.info("%s recovered", part)
                self.refresh_state()
            return
        if self.problems.get(part) != message:
            self.problems[part] = message
            self.last_error = f"{part}: {message}"
            log.error("%s: %s", part, message)
            self.publish({"event": "error", "message": self.last_error})
            self.refresh_state()

    def status_line(self) -> str:
        line = f"{self.state.value}: {self.state_why}; live {self.live_state}"
        if self.problems:
            line += "; " + "; ".join(f"{k}: {v}" for k, v in sorted(self.problems.items()))
        return line[:300]

    def publish(self, event: dict[str, Any]) -> None:
        # CLOCK_MONOTONIC is one clock for the whole machine: benchmarks compare it across processes
        event.setdefault("mono", round(time.monotonic(), 4))
        if self.events:
            self.events.publish(event)

    # ---- thread -> loop ---------------------------------------------------------------------------
    def threadsafe(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closing during shutdown
                loop.call_soon_threadsafe(fn, *args)

    def _capture_alive(self) -> bool:
        """For the watchdog: the capture and Ear threads have looped lately (they beat even when idle)."""
        now = time.monotonic()
        return all(part is None or now - part.alive() < _STALL_S for part in (self.capture, self.ear))

    # ---- actions used by the conversation, buttons and edgectl ---------------------------------
    def start_turn(self, source: str) -> None:
        """A turn without the wake word (button, edgectl wake, follow-up)."""
        if self.muted:
            raise EdgedError("the microphone is muted")
        if self.ear is None or (self.conv and self.conv.turn_open):
            return
        self.ear.trigger(source)  # the Ear opens it at the next frame: conv.on_turn_start

    def set_muted(self, on: bool) -> None:
        if on == self.muted:
            return
        self.muted = on
        if self.capture:
            self.capture.set_muted(on)
        if on and self.conv:
            if self.ear:
                self.ear.cancel_turn()
            self.conv.cancel_turn("muted")
        log.info("microphone %s", "muted" if on else "on")
        self.set_state(State.MUTED if on else State.IDLE, "muted" if on else "microphone on")
        self.publish({"event": "mute", "muted": on})

    # ---- events from the parts (on the loop) ---------------------------------------------------
    def on_wake_word(self, model: str, score: float) -> None:
        self.wake_stats["detections"] += 1
        self.wake_stats["last_model"], self.wake_stats["last_score"] = model, round(score, 3)
        log.info("wake word %s score %.3f", model, score,
                 extra={"fields": {"WAKE_MODEL": model, "WAKE_SCORE": f"{score:.3f}"}})
        self.publish({"event": "wake", "model": model, "score": round(score, 3), "source": "wake_word"})

    def on_gpio_input(self, name: str, value: Any) -> None:
        self.publish({"event": "gpio", "name": name, "value": value})
        pressed = bool(value)
        if name == self.cfg.gpio.talk_button and pressed:
            with contextlib.suppress(EdgedError):
                self.start_turn("button")
        elif name == self.cfg.gpio.mute_button and pressed:
            self.set_muted(not self.muted)
        else:
            dev = next((d for d in self.cfg.gpio.devices if d.name == name), None)
            if dev and dev.tell_model and self.live and hasattr(self.live, "send_context"):
                text = f"[{name} ({dev.description or dev.kind}) is now {'on' if pressed else 'off'}]"
                self.spawn(self.live.send_context(text), "edged-context")

    def on_live_connection(self, state: str, detail: str) -> None:
        self.live_state = state if not detail else f"{state} ({detail})"
        fields: dict[str, Any] = {"LIVE_STATE": state}
        if self.live is not None:
            st = self.live.status()
            if st.get("session_id"):
                fields["SESSION_ID"] = st["session_id"]
            if st.get("last_close_code") is not None:
                fields["CLOSE_CODE"] = st["last_close_code"]
        log.info("live %s %s", state, detail, extra={"fields": fields})
        if state in ("auth_failed", "offline"):
            self.problem("live", f"{state}: {detail}" if detail else state)
        elif state in ("connected", "resumed"):
            self.problem("live", None)
        if self.conv:
            self.conv.on_connection(state, detail)
        if self.notifier:
            self.notifier.status(self.status_line())

    # ---- status -------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        def part(obj: Any, method: str = "stats") -> Any:
            if obj is None:
                return None
            try:
                return getattr(obj, method)()
            except Exception as exc:  # status must never fail
                return {"error": str(exc)}

        return {
            "version": __version__,
            "pid": os.getpid(),
            "state": self.state.value,
            "why": self.state_why,
            "state_for_s": round(time.monotonic() - self.state_since, 1),
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "muted": self.muted,
            "config": self.cfg.path,
            "live": {"state": self.live_state, **(part(self.live, "status") or {})},
            "wake": {**self.wake_stats, "models": list(self.cfg.wake.models), "threshold": self.cfg.wake.threshold,
                     **({"ear": part(self.ear)} if self.ear else {})},
            "audio": {"capture_device": self.cfg.audio.capture_device,
                      "playback_device": self.cfg.audio.playback_device,
                      "capture": part(self.capture), "playback": part(self.player)},
            "conversation": dict(self.conv.stats) if self.conv else None,
            "gpio": part(self.gpio, "states"),
            "status_led": getattr(self.lights, "current", None) and str(self.lights.current),
            "camera": part(self.camera, "status"),
            "problems": dict(self.problems),
            "last_error": self.last_error,
        }


def main(args: Any) -> int:
    """``edged run``."""
    from .service import logs

    cfg = config.load(args.config)
    level = args.log_level or cfg.log.level
    logs.setup(level)
    api_key = load_api_key(cfg.live.api_key_file, cfg.path)
    if api_key is None and not cfg.live.base_url:
        log.error("no API key: set GEMINI_API_KEY, live.api_key_file, or the gemini-api-key credential")
    daemon = Daemon(cfg, api_key)
    try:
        return asyncio.run(daemon.run())
    except EdgedError as exc:
        log.error("%s", exc)
        return exc.exit_code
