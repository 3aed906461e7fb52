"""Building, starting, stopping and re-configuring the daemon's parts.

Each part is started on its own: one that fails is recorded as a problem (shown in
status, the journal and the status LED) and the daemon keeps everything else running.
Hardware libraries are imported here, lazily, so ``edged --help`` works anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import config

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger(__name__)

FRAME_MS = 80


def build_notifier() -> Any:
    from .service.notify import Notifier

    return Notifier()


def build_events() -> Any:
    from .service.control import EventHub

    return EventHub()


class _LiveHandler:
    """Adapts LiveSession callbacks to the conversation and the daemon."""

    def __init__(self, d: Daemon) -> None:
        self._d = d

    def __getattr__(self, name: str) -> Any:
        return getattr(self._d.conv, name)

    def on_connection(self, state: str, detail: str = "") -> None:
        self._d.on_live_connection(state, detail or "")


# ---- start ---------------------------------------------------------------------------------------
async def start_all(d: Daemon) -> None:
    start_gpio(d)
    start_camera(d)
    start_tools(d)
    start_player(d)
    start_hearing(d)
    start_live(d)
    await start_control(d)


def start_gpio(d: Daemon) -> None:
    from .status_leds import StatusLights
    from .tools.gpio import GpioBank

    cfg = d.cfg
    d.gpio = None
    if cfg.gpio.devices:
        try:
            bank = GpioBank(cfg.gpio, on_input=lambda name, value: d.threadsafe(d.on_gpio_input, name, value))
            bank.start()
            d.gpio = bank
            d.problem("gpio", None)
        except Exception as exc:
            d.problem("gpio", str(exc))
    led = _device(d, cfg.gpio.status_led)
    d.lights = StatusLights(led)


def _device(d: Daemon, name: str) -> Any:
    if not name or d.gpio is None:
        return None
    try:
        return d.gpio.device(name)
    except Exception:
        return None


def start_camera(d: Daemon) -> None:
    from .tools.camera import Camera

    d.camera = None
    if d.cfg.camera.backend == "none":
        return
    led_name = d.cfg.gpio.camera_led
    cam = Camera(d.cfg.camera, led=(lambda: _device(d, led_name)) if led_name else None)
    try:
        cam.start()
        d.problem("camera", None)
    except Exception as exc:  # the tools answer "no camera" and status says why
        d.problem("camera", str(exc))
    d.camera = cam


def start_tools(d: Daemon) -> None:
    from .tools.registry import ToolRegistry

    async def send_video(jpeg: bytes) -> None:
        await d.live.send_video(jpeg)
        d.publish({"event": "video_frame", "bytes": len(jpeg)})

    d.tools = ToolRegistry(d.gpio, d.camera, send_video)


def start_player(d: Daemon) -> None:
    from .audio.playback import Player

    a = d.cfg.audio

    def on_status(state: str, error: str | None) -> None:
        d.threadsafe(_device_status, d, "playback", state, error)

    d.player = Player(a.playback_device, rate=a.playback_rate, channels=a.playback_channels,
                      jitter_ms=a.jitter_ms, on_status=on_status,
                      on_drained=lambda: d.threadsafe(lambda: d.conv and d.conv.on_drained()))
    d.player.start()


def _device_status(d: Daemon, part: str, state: str, error: str | None) -> None:
    if state == "failed":
        d.problem(part, error or "failed")
    elif state in ("running", "open", "muted"):
        d.problem(part, None)
    d.publish({"event": "device", "part": part, "state": state, **({"error": error} if error else {})})


def build_wake(d: Daemon) -> Any:
    from .audio.wake import WakeDetector

    w = d.cfg.wake
    det = WakeDetector(w.models, d.cfg.models_dir, threshold=w.threshold, trigger_frames=w.trigger_frames,
                       refractory_s=w.refractory_s)
    try:
        det.load()
        d.problem("wake", None)
        return det
    except Exception as exc:  # buttons and edgectl wake still work; status says what to do
        d.problem("wake", f"{exc}")
        return None


def build_endpointer(d: Daemon) -> Any:
    from .audio.endpoint import Endpointer

    t = d.cfg.turn
    ep = Endpointer(t.vad, silence_ms=t.silence_ms, max_utterance_s=t.max_utterance_s,
                    no_speech_timeout_s=t.no_speech_timeout_s, aggressiveness=t.vad_aggressiveness,
                    models_dir=d.cfg.models_dir)
    try:
        ep.load()
    except Exception as exc:  # silero's model missing: fall back to webrtc, say so
        d.problem("vad", f"{exc}; using webrtc")
        ep = Endpointer("webrtc", silence_ms=t.silence_ms, max_utterance_s=t.max_utterance_s,
                        no_speech_timeout_s=t.no_speech_timeout_s, aggressiveness=t.vad_aggressiveness)
    return ep


def build_capture(d: Daemon, ring: Any) -> Any:
    from .audio.capture import Capture

    a = d.cfg.audio
    return Capture(a.capture_device, device_rate=a.capture_rate, device_channels=a.capture_channels,
                   period_ms=FRAME_MS, ring=ring, backoff_max_s=a.reopen_backoff_max_s,
                   on_status=lambda state, error: d.threadsafe(_device_status, d, "capture", state, error))


def build_ear(d: Daemon, ring: Any) -> Any:
    from .audio.ear import Ear, EarCallbacks

    def on_wake(det: Any) -> None:
        d.threadsafe(d.on_wake_word, det.model, float(det.score))

    def conv(method: str) -> Any:
        def call(*args: Any) -> None:
            d.threadsafe(lambda: d.conv is not None and getattr(d.conv, method)(*args))
        return call

    callbacks = EarCallbacks(on_wake=on_wake, on_turn_start=conv("on_turn_start"),
                             on_turn_audio=conv("on_turn_audio"), on_turn_end=conv("on_turn_end"),
                             on_drops=conv("on_drops"))
    return Ear(ring, build_wake(d), build_endpointer(d), preroll_ms=d.cfg.turn.preroll_ms, callbacks=callbacks)


def start_hearing(d: Daemon) -> None:
    from .audio.frames import FrameRing

    ring = FrameRing(max(2, d.cfg.audio.capture_buffer_ms // FRAME_MS))
    d.capture = build_capture(d, ring)
    d.ear = build_ear(d, ring)
    d.ear.start()
    d.capture.start()
    if d.muted:
        d.capture.set_muted(True)


def start_live(d: Daemon) -> None:
    from .live.session import LiveSession

    d.live = LiveSession(d.cfg.live, d.api_key, Path(d.cfg.state.dir), _LiveHandler(d),
                         tools=lambda: d.tools.tools() if d.tools else [])


async def start_control(d: Daemon) -> None:
    from .control_api import ControlApi
    from .service.control import ControlServer

    c = d.cfg.control
    api = ControlApi(d)
    d.control = ControlServer(c.socket, group=c.group, max_request_bytes=c.max_request_bytes,
                              handler=api.handle, events=d.events)
    try:
        await d.control.start()
        d.problem("control", None)
    except Exception as exc:
        d.problem("control", f"control socket {c.socket}: {exc}")
        d.control = None


# ---- stop ----------------------------------------------------------------------------------------
async def stop_all(d: Daemon) -> None:
    """Reverse order; each step bounded so the whole stop stays well inside 5 s."""
    if d.control:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(d.control.stop(), 1.0)
    for name in ("capture", "ear", "player"):
        part = getattr(d, name)
        if part is not None:
            try:
                await asyncio.to_thread(part.stop)
            except Exception as exc:
                log.warning("stopping %s: %s", name, exc)
    if d.tools:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(d.tools.close(), 1.0)
    if d.camera:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(d.camera.stop)
    if d.lights:
        with contextlib.suppress(Exception):
            d.lights.close()
    if d.gpio:
        try:
            d.gpio.stop()  # outputs back to safe values, pins released
        except Exception as exc:
            log.warning("releasing GPIO: %s", exc)


# ---- reload --------------------------------------------------------------------------------------
async def apply(d: Daemon, new: config.Config) -> None:
    """Apply a validated config, restarting only the parts whose sections changed."""
    old = d.cfg
    changed = {name for name in type(new).model_fields if getattr(old, name) != getattr(new, name)}
    if not changed:
        log.info("reload: nothing changed")
        return
    if "state" in changed or "control" in changed:
        # paths the service manager set up; they take a restart
        raise config.ConfigError(new.path, "state" if "state" in changed else "control",
                                 "changing this takes a restart (systemctl restart edged)")
    d.cfg = new
    log.info("reload: applying changes to %s", ", ".join(sorted(changed)))
    if "log" in changed:
        logging.getLogger("edged").setLevel(new.log.level.upper())
    if "gpio" in changed or "camera" in changed:
        if d.tools:
            await d.tools.close()
        if d.camera:
            await asyncio.to_thread(d.camera.stop)
        if d.lights:
            d.lights.close()
        if d.gpio:
            d.gpio.stop()
        start_gpio(d)
        start_camera(d)
        start_tools(d)
        d.lights.show(d.state)
    if changed & {"wake", "turn", "audio"}:
        d.conv.cancel_turn("reload")
        for name in ("capture", "ear"):
            await asyncio.to_thread(getattr(d, name).stop)
        if "audio" in changed:
            await asyncio.to_thread(d.player.stop)
            start_player(d)
        start_hearing(d)
    if changed & {"live", "gpio", "camera"}:
        # a new setup (model, voice, tools): a new connection, resuming the same conversation
        await d.restart_live()
    d.conv.cfg = new  # the conversation reads its timings from the current config
    d.publish({"event": "reloaded", "sections": sorted(changed)})
