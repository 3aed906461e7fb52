"""The composition root: builds the parts once into a typed container, starts them in order, stops
them in reverse under one deadline, and applies a new config by restarting only what it changes.

    App.start():  build every part (parts.py factories, each given only its ports)
                  -> the conversation is attached to the container
                  -> groups opened in order, each an AsyncExitStack:
                     devices (GPIO, status LED, camera, tools), player, timers, hearing (Ear,
                     capture), live (its supervisor task), conversation (its sender), mqtt (Home
                     Assistant, when enabled), control, watchdog
                  -> READY
    App.stop():   STOP (the conversation is stopping) -> every thread's stop event is set
                  -> groups closed in reverse, every step bounded by one Deadline (SHUTDOWN_S);
                     the threads are joined in parallel; one that hangs is left behind.
    App.reload(): validate, then close and reopen only the groups whose sections changed (the rules:
                  reload.py).

The status (``status.py``) and edgectl's facade (``controls.py``) only read the root and forward to it.

Data flows one way: the parts report to the conversation (through ``Ports.post``) and to the
problem registry; the conversation tells the parts what to do; the root wires and watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, config, parts
from .control_api import ControlApi
from .controls import Controls
from .conversation import Conversation
from .errors import ConfigError, EdgedError
from .health import Problems
from .parts import Parts
from .ports import Deadline, LoopPost, Ports, Tasks
from .reload import RELOAD_STOP_S, changed_sections, groups_to_restart, refuse_restart_only, reread_key
from .ringing import Ringer
from .secrets import Secret
from .service.control import EventHub
from .service.notify import Notifier
from .startup import Trace, import_live_sdk, settle_memory
from .state import State
from .status import StatusReport
from .stopping import Bounded, quietly
from .supervise import Supervisor

if TYPE_CHECKING:
    from .audio.playback import Player

log = logging.getLogger(__name__)

SHUTDOWN_S = 3.5  # the whole stop, hung threads included (systemd's TimeoutStopSec is 15 s)
STALL_S = 10.0  # a thread whose heartbeat is older than this is hung: the watchdog pings stop
# Long-lived tasks that crash are restarted (edged/supervise.py): backoff from RESTART_INITIAL_S
# doubling to RESTART_MAX_S; a run of TASK_STABLE_S clears the problem; CRASH_LOOP crashes in a
# row without one stop the watchdog's pings.
RESTART_INITIAL_S = 0.5
RESTART_MAX_S = 30.0
TASK_STABLE_S = 10.0
CRASH_LOOP = 5
WATCHED = {"sender": "the conversation's sender", "timers": "the timers' clock",
           "mqtt": "the MQTT connection", "mqtt-events": "the MQTT event follower"}  # names in messages
# mqtt after the conversation and before control; closed before the devices, so `offline` is
# published while the pins are still valid
GROUPS = ("devices", "player", "timers", "hearing", "live", "conversation", "mqtt", "control", "watchdog")


class App:
    def __init__(self, cfg: config.Config, api_key: Secret | None) -> None:
        self.cfg = cfg
        self.api_key = api_key
        self.started_at = time.monotonic()
        self.trace = Trace()  # start-up steps, logged at debug with READY
        self.events = EventHub()
        self.notifier = Notifier()
        self.tasks = Tasks(on_error=self._task_failed)
        self._post: LoopPost | None = None
        self.ports = Ports(publish=self.publish, problem=self._problem, post=self._post_to_loop,
                           spawn=self.tasks.spawn)
        self.problems = Problems(self.publish, self._health_changed)
        self.supervisor = Supervisor(self._problem, self.publish, initial_s=RESTART_INITIAL_S, max_s=RESTART_MAX_S,
                                     stable_s=TASK_STABLE_S, crash_loop=CRASH_LOOP)
        self.conv = Conversation(cfg, self.ports, on_change=self._status_changed)
        self.ringer = Ringer(self.ports)  # the bell, events and context of ringing timers (edged/ringing.py)
        self.parts: Parts | None = None
        self.report = StatusReport(conv=self.conv, problems=self.problems, supervisor=self.supervisor,
                                   ringer=self.ringer, parts=lambda: self.parts, cfg=lambda: self.cfg,
                                   started_at=self.started_at)
        self._groups: dict[str, AsyncExitStack] = {}
        self._shown: tuple[State, bool] | None = None
        self._bounded = Bounded()  # the current stop's deadline, and its bounded steps (stopping.py)
        self._stopped = False

    # ---- ports -----------------------------------------------------------------------------------
    def publish(self, event: dict[str, Any]) -> None:
        # CLOCK_MONOTONIC is one clock for the whole machine: benchmarks compare it across processes
        event.setdefault("mono", round(time.monotonic(), 4))
        self.events.publish(event)

    def _problem(self, part: str, message: str | None) -> None:
        self.problems.report(part, message)

    def _post_to_loop(self, fn: Callable[..., object], *args: object) -> None:
        if self._post is not None:
            self._post(fn, *args)

    def _task_failed(self, name: str, exc: BaseException) -> None:
        """A one-shot task (``Ports.spawn``) ended with an exception: logged and shown as last_error."""
        log.error("task %s failed: %s: %s", name, type(exc).__name__, exc, exc_info=exc)
        self.problems.note_error(f"{name}: {type(exc).__name__}: {exc}")
        self.publish({"event": "error", "message": f"{name}: {type(exc).__name__}: {exc}"})

    def _watch(self, factory: Callable[[], Any], name: str) -> asyncio.Task[Any]:
        """For a part that runs its own task (the conversation's sender, the timers' clock): watched
        and restarted like every long-lived task; the part cancels the returned runner to stop it."""
        w = self.supervisor.watch(name, factory, WATCHED.get(name, name))
        assert w.task is not None
        return w.task

    def _health_changed(self) -> None:
        self.conv.on_health(self.problems.critical())
        self._status_changed()

    def _status_changed(self) -> None:
        state, tools = self.conv.state, bool(self.conv.tools_running)
        if self.parts is not None and (state, tools) != self._shown:
            self._shown = (state, tools)
            self.parts.lights.show(state, tools=tools)  # a running call: an overlay (idle, speaking)
        self.notifier.status(self.status_line())

    # ---- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._post = LoopPost(loop)
        await asyncio.to_thread(Path(self.cfg.state.dir).mkdir, parents=True, exist_ok=True)
        self.trace.stamp("state dir")
        self.parts = self._build(self.cfg)
        self.trace.stamp("build")
        self.conv.attach(self.parts)
        self.ringer.attach(self.parts)
        for name in GROUPS:
            await self._open(name)
            self.trace.stamp(name)
        self.conv.ready()
        self.notifier.ready()
        log.info("edged %s ready (pid %d)", __version__, os.getpid())
        log.debug("%s", self.trace.summary())
        before, after = await asyncio.to_thread(settle_memory)
        log.debug("memory settled: RSS %.1f -> %.1f MB", before, after)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        deadline = Deadline(SHUTDOWN_S)
        self.conv.stop_now()
        self.notifier.stopping()
        if self.parts is not None:
            for worker in self.parts.threads():
                worker.request_stop()  # all at once: they stop in parallel, joined below
        for name in reversed(self._order()):
            await self._close(name, deadline)
        await self.supervisor.stop_all(deadline)
        await self.tasks.cancel_all(deadline)
        log.info("stopped")

    def _build(self, cfg: config.Config) -> Parts:
        models = parts.HearingModels(cfg)  # in threads, while the other parts are built (start-up time)
        import_live_sdk()
        gpio = parts.build_gpio(cfg, self.ports, self._on_gpio_input)
        camera = parts.build_camera(cfg, gpio)
        ring = parts.build_ring(cfg)
        control = parts.build_control(cfg, ControlApi(Controls(self)), self.events)
        timers = parts.build_timers(cfg, self.ports, self.ringer.ring, self.ringer.ended)
        volume = parts.build_volume(cfg, self.ports)
        household = parts.build_household(timers, volume)
        built = Parts(gpio=gpio, lights=parts.build_lights(None, ""), camera=camera,
                      tools=parts.build_tools(gpio, camera, self._send_video, household), volume=volume,
                      player=parts.build_player(cfg, self.ports, self.conv.on_drained, volume, parts.build_cues(cfg)),
                      capture=parts.build_capture(cfg, self.ports, ring),
                      ear=parts.build_ear(cfg, self.ports, ring, self.conv, models),
                      live=parts.build_live(cfg, self.api_key, self.conv, self._tool_schemas), control=control,
                      timers=timers, household=household)
        if cfg.mqtt.enabled:
            self._build_mqtt(built, cfg)
        return built

    def _build_mqtt(self, p: Parts, cfg: config.Config) -> None:
        p.announcer = parts.build_announcer(self.conv, self.ports, self.events)
        p.mqtt = parts.build_mqtt(cfg, self.conv, self.problems, self.events, p.announcer, lambda: self.parts)

    # ---- groups: each one's lifetime is an AsyncExitStack ---------------------------------------
    async def _open(self, name: str) -> None:
        stack = AsyncExitStack()
        self._groups[name] = stack  # keeps its place in the order when a reload reopens it
        await getattr(self, "_open_" + name)(stack)

    def _order(self) -> list[str]:
        """The open groups in GROUPS order (a reload reopens a group at the end of the dict)."""
        return [g for g in GROUPS if g in self._groups] + [g for g in self._groups if g not in GROUPS]

    async def _close(self, name: str, deadline: Deadline) -> None:
        stack = self._groups.pop(name, None)
        if stack is None:
            return
        self._bounded.deadline = deadline
        try:
            await stack.aclose()
        except Exception as exc:  # one part failing to stop must not keep the others running
            log.warning("stopping %s: %s", name, exc)

    async def _open_devices(self, stack: AsyncExitStack) -> None:
        p = self.running_parts()
        if p.gpio is not None:
            try:
                p.gpio.start()
                self.ports.problem("gpio", None)
            except Exception as exc:
                self.ports.problem("gpio", str(exc))
                p.gpio = None
            else:
                stack.callback(quietly, "releasing GPIO", p.gpio.stop)  # outputs to safe values, pins freed
        p.lights = parts.build_lights(p.gpio, self.cfg.gpio.status_led)
        stack.callback(quietly, "status LED", p.lights.close)
        self._shown = None
        if p.camera is not None:
            camera = p.camera
            try:
                camera.start()
                self.ports.problem("camera", None)
            except Exception as exc:  # the tools answer "no camera" and status says why
                self.ports.problem("camera", str(exc))
            stack.push_async_callback(self._bounded.part, "camera", lambda: asyncio.to_thread(camera.stop))
        tools = p.tools
        stack.push_async_callback(self._bounded.part, "tools", tools.close)
        self._status_changed()  # the new LED shows the current state

    async def _open_player(self, stack: AsyncExitStack) -> None:
        p = self.running_parts()
        player, volume = p.player, p.volume
        await asyncio.to_thread(volume.start)  # the kept level (state dir), the mixer if configured
        stack.callback(quietly, "volume", volume.stop)
        await self._load_cues(player)
        player.start()
        stack.push_async_callback(self._bounded.join, player)
        self.ringer.player_started()  # a new player rings on while something rings

    async def _open_timers(self, stack: AsyncExitStack) -> None:
        timers = self.running_parts().timers
        try:
            await timers.start(self._watch)  # reads STATE_DIR/timers.json; what fell due meanwhile rings now
            self.ports.problem("timers", None)
        except Exception as exc:  # the rest of the speaker works; the model's calls answer the error
            self.ports.problem("timers", f"timers: {exc}")
            return
        stack.push_async_callback(self._bounded.part, "timers", timers.stop)

    async def _load_cues(self, player: Player) -> None:
        cues = parts.build_cues(self.cfg)
        await asyncio.to_thread(cues.load)  # custom WAVs are read here (a bad one: the built-in sound)
        self.ports.problem("cues", "; ".join(cues.problems.values()) or None)
        player.set_cues(cues, self.cfg.cues.duck / 100)

    async def _open_hearing(self, stack: AsyncExitStack) -> None:
        p = self.running_parts()
        capture, ear = p.capture, p.ear
        ear.start()
        stack.push_async_callback(self._bounded.join, capture, ear)  # capture stops first: no frame is left half-read
        capture.set_muted(self.conv.muted)
        capture.start()

    async def _open_live(self, stack: AsyncExitStack) -> None:
        live = self.running_parts().live
        watched = self.supervisor.watch("live", live.run, "the Live supervisor")

        async def stop() -> None:
            watched.retire()  # run() returns once stopped: that is no crash
            await self._bounded.part("the Live session", live.stop, 2.0)
            await watched.stop(self._bounded.deadline)

        stack.push_async_callback(stop)

    async def _open_conversation(self, stack: AsyncExitStack) -> None:
        self.conv.start(self._watch)
        stack.push_async_callback(self._bounded.part, "conversation", self.conv.stop)

    async def _open_mqtt(self, stack: AsyncExitStack) -> None:
        p = self.running_parts()
        bridge, announcer = p.mqtt, p.announcer
        if bridge is None or announcer is None:
            return
        watched = self.supervisor.watch("announce", announcer.run, "the announcer")
        stack.push_async_callback(self._bounded.watched, watched)
        await bridge.start(self._watch)  # returns at once, also when the broker is down (it keeps retrying)
        # publishes `offline` and disconnects, bounded by what is left of the deadline
        stack.push_async_callback(self._bounded.part, "mqtt", lambda: bridge.stop(self._bounded.deadline.left(1.0)), 1.5)

    async def _open_control(self, stack: AsyncExitStack) -> None:
        p = self.running_parts()
        server = p.control
        if server is None:
            return
        try:
            await server.start()
            self.ports.problem("control", None)
        except Exception as exc:
            self.ports.problem("control", f"control socket {self.cfg.control.socket}: {exc}")
            p.control = None
            return
        stack.push_async_callback(self._bounded.part, "control", server.stop, 1.0)

    async def _open_watchdog(self, stack: AsyncExitStack) -> None:
        if not self.notifier.watchdog_interval():
            return
        checks = [self._capture_alive, self.loop_tasks_alive]
        watched = self.supervisor.watch("watchdog", lambda: self.notifier.run_watchdog(checks), "the watchdog")
        stack.push_async_callback(self._bounded.watched, watched)

    def running_parts(self) -> Parts:
        assert self.parts is not None, "not started"
        return self.parts

    # ---- reload ----------------------------------------------------------------------------------
    async def reload(self, new: config.Config | None = None) -> None:
        """Apply a new config (read from the file when None): refused whole if invalid (the old one stays)."""
        self.notifier.reloading()
        try:
            if new is None:
                new = config.load(self.cfg.path)
            await self.apply(new)
            await self._reconnect_if_refused()
        except ConfigError as exc:
            log.error("reload refused, the old config stays: %s", exc)
            self.problems.note_error(str(exc))
            raise
        finally:
            self.notifier.ready()
            self.notifier.status(self.status_line())

    async def apply(self, new: config.Config) -> None:
        """Apply a validated config, restarting only the groups whose sections changed."""
        changed = changed_sections(self.cfg, new)
        if not changed:
            log.info("reload: nothing changed")
            return
        refuse_restart_only(new, changed)
        self.cfg = new
        log.info("reload: applying changes to %s", ", ".join(sorted(changed)))
        if "log" in changed:
            logging.getLogger("edged").setLevel(new.log.level.upper())
        p = self.running_parts()
        deadline = Deadline(RELOAD_STOP_S)
        restart = groups_to_restart(changed)
        if "hearing" in restart:
            self.conv.cancel()  # the turn goes with the Ear
        for name in reversed(GROUPS):
            if name in restart:
                await self._close(name, deadline)
        if "devices" in restart:
            p.gpio = parts.build_gpio(new, self.ports, self._on_gpio_input)
            p.camera = parts.build_camera(new, p.gpio)
            p.tools = parts.build_tools(p.gpio, p.camera, self._send_video, p.household)
        if "player" in restart:
            p.volume.configure(new.audio)  # the same Volume (the tools hold it); start() restores the level
            p.player = parts.build_player(new, self.ports, self.conv.on_drained, p.volume)
        if "hearing" in restart:
            ring = parts.build_ring(new)
            p.capture = parts.build_capture(new, self.ports, ring)
            p.ear = parts.build_ear(new, self.ports, ring, self.conv)
        if "live" in restart:
            old_live = p.live
            p.live = parts.build_live(new, self.api_key, self.conv, self._tool_schemas)
            p.live.adopt_counters(old_live)
        self.conv.reconfigure(new)  # the conversation reads its timings from the current config
        p.timers.cfg = new.timers  # read at each check: ring_max_s, missed_max_s, max
        if "mqtt" in changed:
            if p.mqtt is None and new.mqtt.enabled:  # turned on: build the bridge and open its group
                self._build_mqtt(p, new)
                await self._close("mqtt", deadline)
                restart.append("mqtt")
            elif p.mqtt is not None:  # reconnects with the new settings (off: `offline`, disconnected)
                await p.mqtt.reconfigure(new.mqtt)
        for name in GROUPS:
            if name in restart:
                await self._open(name)
        if "cues" in changed and "player" not in restart:
            await self._load_cues(p.player)  # the player goes on; a cue sounding finishes
        # a devices change reaches the bridge through this event: it re-publishes the discovery
        self.publish({"event": "reloaded", "sections": sorted(changed)})

    async def _reconnect_if_refused(self) -> None:
        """After a reload: a key that changed (file or credential) gets a new Live session at once;
        while the service refuses us, one early try (the session allows one per 30 s)."""
        p = self.running_parts()
        key = await asyncio.to_thread(reread_key, self.api_key, self.cfg)
        if key != self.api_key:
            log.info("reload: the API key changed: a new Live session")
            self.api_key = key
            await self._close("live", Deadline(RELOAD_STOP_S))
            old = p.live
            p.live = parts.build_live(self.cfg, key, self.conv, self._tool_schemas)
            p.live.adopt_counters(old)
            await self._open("live")
        elif self.conv.reach.refused:
            self.publish({"event": "live_retry", "by": "reload", "tried": p.live.retry_now()})

    # ---- wiring --------------------------------------------------------------------------------------
    def _tool_schemas(self) -> list[Any]:
        return self.parts.tools.tools() if self.parts is not None else []

    async def _send_video(self, jpeg: bytes) -> None:
        await self.running_parts().live.send_video(jpeg)
        self.publish({"event": "video_frame", "bytes": len(jpeg)})

    def _on_gpio_input(self, name: str, value: Any) -> None:
        """An input changed (on the loop): published; the talk and mute buttons go to the conversation;
        a ``tell_model`` input is told to the model as context."""
        self.publish({"event": "gpio", "name": name, "value": value})
        pressed = bool(value)
        if name == self.cfg.gpio.talk_button and pressed:
            with contextlib.suppress(EdgedError):
                self.conv.request_turn("button")
        elif name == self.cfg.gpio.mute_button and pressed:
            self.conv.set_muted(not self.conv.muted)
        else:
            dev = next((d for d in self.cfg.gpio.devices if d.name == name), None)
            if dev and dev.tell_model and self.parts is not None:
                text = f"[{name} ({dev.description or dev.kind}) is now {'on' if pressed else 'off'}]"
                self.tasks.spawn(self.parts.live.send_context(text), "edged-context")

    def _capture_alive(self) -> bool:
        """For the watchdog: the capture and Ear threads have looped lately (they beat even when idle)."""
        if self.parts is None:
            return True
        now = time.monotonic()
        return all(now - part.alive() < STALL_S for part in (self.parts.capture, self.parts.ear))

    def loop_tasks_alive(self) -> bool:
        """For the watchdog: no long-lived task of the loop is dead or crash-looping."""
        return self.supervisor.failing() is None

    # ---- status (status.py) -------------------------------------------------------------------
    def status_line(self) -> str:
        return self.report.line()

    def status(self) -> dict[str, Any]:
        return self.report.status()
