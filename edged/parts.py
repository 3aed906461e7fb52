"""Factories for the daemon's parts: each builds one part from the config and the narrow ports it
needs, and starts nothing (the composition root, :mod:`edged.app`, starts them in order); and
:class:`Parts`, the typed container the root keeps them in.

No factory sees the daemon.  The hardware libraries are imported here, lazily, so ``edged --help``
works anywhere.  A factory that cannot load what a part needs (a wake-word model) reports the
problem through ``ports.problem`` and builds the part without it: the daemon keeps running what
it can.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .ports import Ports

if TYPE_CHECKING:
    from .announce import Announcer
    from .audio.capture import Capture
    from .audio.cues import CueBank
    from .audio.device import Worker
    from .audio.ear import Ear
    from .audio.endpoint import Endpointer
    from .audio.frames import FrameRing
    from .audio.playback import Player
    from .audio.volume import Volume
    from .audio.wake import WakeDetector
    from .config import Config
    from .control_api import ControlApi
    from .conversation import Conversation
    from .health import Problems
    from .live.session import LiveSession
    from .mqtt.bridge import MqttBridge
    from .secrets import Secret
    from .service.control import ControlServer, EventHub
    from .status_leds import StatusLights
    from .timers import OnRing, OnRingEnd, Timers
    from .tools.camera import Camera
    from .tools.gpio import GpioBank
    from .tools.household import HouseholdTools
    from .tools.registry import SendVideo, ToolRegistry

FRAME_MS = 80


@dataclass
class Parts:
    """The current parts.  Built once by :meth:`edged.app.App.start`; a reload replaces the groups it restarts."""

    gpio: GpioBank | None
    lights: StatusLights
    camera: Camera | None
    tools: ToolRegistry
    volume: Volume
    player: Player
    capture: Capture
    ear: Ear
    live: LiveSession
    control: ControlServer | None
    timers: Timers
    household: HouseholdTools  # one instance: every ToolRegistry a reload builds gets it
    mqtt: MqttBridge | None = None  # Home Assistant (mqtt.enabled)
    announcer: Announcer | None = None  # its announcements

    def threads(self) -> list[Worker]:
        return [self.capture, self.ear, self.player]


def build_gpio(cfg: Config, ports: Ports, on_input: Callable[[str, Any], None]) -> GpioBank | None:
    """The GPIO bank (None without devices); ``on_input(name, value)`` runs on the loop."""
    if not cfg.gpio.devices:
        return None
    from .tools.gpio import GpioBank

    return GpioBank(cfg.gpio, on_input=lambda name, value: ports.post(on_input, name, value))


def build_lights(gpio: GpioBank | None, name: str) -> StatusLights:
    """The status LED: the bank's device ``name`` once the bank is started (no LED: a no-op)."""
    from .status_leds import StatusLights

    device = None
    if name and gpio is not None:
        try:
            device = gpio.device(name)
        except Exception:
            device = None
    return StatusLights(device)


def build_camera(cfg: Config, gpio: GpioBank | None) -> Camera | None:
    if cfg.camera.backend == "none":
        return None
    from .tools.camera import Camera

    led_name = cfg.gpio.camera_led

    def led() -> Any:
        try:
            return gpio.device(led_name) if gpio is not None else None
        except Exception:
            return None

    return Camera(cfg.camera, led=led if led_name else None)


def build_tools(gpio: GpioBank | None, camera: Camera | None, send_video: SendVideo,
                household: HouseholdTools | None = None) -> ToolRegistry:
    from .tools.registry import ToolRegistry

    return ToolRegistry(gpio, camera, send_video, household=household)


def build_timers(cfg: Config, ports: Ports, on_ring: OnRing, on_ring_end: OnRingEnd) -> Timers:
    """Timers and alarms, kept in ``STATE_DIR/timers.json``; the callbacks run on the loop.  Setting or
    removing one (the model, edgectl, ringing done) publishes ``{"event": "timers", "count"}``."""
    from .timers import Timers

    def changed() -> None:
        ports.publish({"event": "timers", "count": len(timers.list())})

    timers = Timers(cfg.timers, cfg.state.dir, on_ring=on_ring, on_ring_end=on_ring_end, on_change=changed)
    return timers


def build_household(timers: Timers | None, volume: Any = None) -> HouseholdTools:
    """The model's timer, alarm and volume functions: built once, kept across reloads (the
    ToolRegistry rebuilt by a reload gets the same one)."""
    from .tools.household import HouseholdTools

    return HouseholdTools(timers, volume)


def build_volume(cfg: Config, ports: Ports) -> Volume:
    """The volume (software gain or ALSA mixer), kept in the state dir; ``start()`` restores it.
    Every change, whoever asked, is published as one ``volume`` event (level, was, by)."""
    from .audio.volume import Volume

    def changed(level: int, was: int, by: str) -> None:
        ports.publish({"event": "volume", "level": level, "was": was, "by": by or "daemon"})

    return Volume(cfg.audio, cfg.state.dir, on_change=changed)


def build_cues(cfg: Config) -> CueBank:
    """The sound cues at the player's rate (``load()`` reads custom files: call it off the loop)."""
    from .audio.cues import CueBank

    return CueBank(cfg.cues, rate=cfg.audio.playback_rate)


def build_player(cfg: Config, ports: Ports, on_drained: Callable[[], None], volume: Volume | None = None,
                 cues: CueBank | None = None) -> Player:
    """The player, scaled by the volume's software gain, mixing the cues; ``on_drained`` runs on the loop."""
    from .audio.playback import Player

    a = cfg.audio
    return Player(a.playback_device, rate=a.playback_rate, channels=a.playback_channels, jitter_ms=a.jitter_ms,
                  on_status=ports.device_status("playback"), on_drained=lambda: ports.post(on_drained),
                  gain=volume.soft if volume is not None else None, cues=cues, duck=cfg.cues.duck / 100)


def build_wake(cfg: Config, ports: Ports) -> WakeDetector | None:
    """The wake-word detector with its models loaded, or None (reported): buttons and edgectl
    wake still work, and status says what to do."""
    det, problem = _load_wake(cfg)
    ports.problem("wake", problem)
    return det


def _load_wake(cfg: Config) -> tuple[WakeDetector | None, str | None]:
    from .audio import wake

    det = wake.from_config(cfg)  # wake.engine: lean (default) or the openwakeword package
    try:
        det.load()
    except Exception as exc:
        return None, f"{exc}"
    return det, None


def build_endpointer(cfg: Config, ports: Ports) -> Endpointer:
    """The configured end-of-turn detector; webrtc (reported) if silero's model is missing, silence
    mode (reported) if the Smart Turn model is."""
    ep, vad_problem = _load_endpointer(cfg)
    if vad_problem is not None:
        ports.problem("vad", vad_problem)
    ports.problem("turn", ep.problem)
    return ep


def _load_endpointer(cfg: Config) -> tuple[Endpointer, str | None]:
    from .audio.endpoint import Endpointer

    t = cfg.turn
    ep = Endpointer.from_config(t, cfg.models_dir)
    try:
        ep.load()
    except Exception as exc:
        ep = Endpointer("webrtc", silence_ms=t.silence_ms, max_utterance_s=t.max_utterance_s,
                        no_speech_timeout_s=t.no_speech_timeout_s, aggressiveness=t.vad_aggressiveness)
        return ep, f"{exc}; using webrtc"
    return ep, None


class HearingModels:
    """The wake-word and end-of-turn models, each loading in its own thread from construction on.

    onnxruntime releases the GIL while it builds a session, so the models load on another core while
    the caller imports and builds the other parts (start-up to READY).  Problems are reported by
    ``wake``/``endpointer``, on the caller's thread.
    """

    def __init__(self, cfg: Config) -> None:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(2, thread_name_prefix="edged-load")
        self._wake = pool.submit(_load_wake, cfg)
        self._endpointer = pool.submit(_load_endpointer, cfg)
        pool.shutdown(wait=False)  # the threads end with their task

    def wake(self, ports: Ports) -> WakeDetector | None:
        det, problem = self._wake.result()
        ports.problem("wake", problem)
        return det

    def endpointer(self, ports: Ports) -> Endpointer:
        ep, vad_problem = self._endpointer.result()
        if vad_problem is not None:
            ports.problem("vad", vad_problem)
        ports.problem("turn", ep.problem)
        return ep


def build_ring(cfg: Config) -> FrameRing:
    from .audio.frames import FrameRing

    return FrameRing(max(2, cfg.audio.capture_buffer_ms // FRAME_MS))


def build_capture(cfg: Config, ports: Ports, ring: FrameRing) -> Capture:
    from .audio.capture import Capture

    a = cfg.audio
    return Capture(a.capture_device, device_rate=a.capture_rate, device_channels=a.capture_channels,
                   period_ms=FRAME_MS, ring=ring, backoff_max_s=a.reopen_backoff_max_s,
                   on_status=ports.device_status("capture"))


def build_ear(cfg: Config, ports: Ports, ring: FrameRing, conv: Conversation,
              models: HearingModels | None = None) -> Ear:
    """The Ear, its callbacks posted onto the loop to the conversation; its models from ``models``
    (loading since the start) or loaded now."""
    from .audio.ear import Ear, EarCallbacks
    from .audio.wake import Detection

    post = ports.post

    def on_wake(det: Detection) -> None:
        post(conv.on_wake, det.model, float(det.score))

    callbacks = EarCallbacks(on_wake=on_wake, on_turn_start=lambda source: post(conv.on_turn_start, source),
                             on_turn_audio=lambda pcm: post(conv.on_turn_audio, pcm),
                             on_turn_end=lambda reason: post(conv.on_turn_end, reason),
                             on_drops=lambda n: post(conv.on_drops, n))
    if models is None:
        wake, endpointer = build_wake(cfg, ports), build_endpointer(cfg, ports)
    else:
        wake, endpointer = models.wake(ports), models.endpointer(ports)
    return Ear(ring, wake, endpointer, preroll_ms=cfg.turn.preroll_ms, callbacks=callbacks)


def build_live(cfg: Config, api_key: Secret | None, conv: Conversation,
               tools: Callable[[], list[Any]]) -> LiveSession:
    """The Live session; the conversation is its handler."""
    from .live.session import LiveSession

    return LiveSession(cfg.live, api_key, Path(cfg.state.dir), conv, tools=tools)


def build_control(cfg: Config, api: ControlApi, events: EventHub) -> ControlServer:
    from .service.control import ControlServer

    c = cfg.control
    return ControlServer(c.socket, group=c.group, admin_group=c.admin_group, max_request_bytes=c.max_request_bytes,
                         handler=api.handle, events=events, config_path=cfg.path)


def build_announcer(conv: Conversation, ports: Ports, events: EventHub) -> Announcer:
    """Announcements said through the conversation's say path when the speaker is at rest."""
    from .announce import Announcer

    return Announcer(state=lambda: conv.state.value, say=conv.say, publish=ports.publish,
                     subscribe=events.subscribe, unsubscribe=events.unsubscribe)


def build_mqtt(cfg: Config, conv: Conversation, problems: Problems, events: EventHub, announcer: Announcer,
               current: Callable[[], Any]) -> MqttBridge:
    """The Home Assistant bridge over a SpeakerAdapter of the current parts (``current()``)."""
    from .mqtt.bridge import MqttBridge
    from .mqtt.wiring import speaker_port

    port = speaker_port(conv=conv, problems=problems, events=events, announcer=announcer, current=current)
    return MqttBridge(cfg.mqtt, port, config_file=cfg.path)
