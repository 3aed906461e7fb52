"""What Home Assistant sees: one entity per GPIO device and the speaker's own entities.

Each :class:`Entity` knows its component config for device-based discovery, the retained state
messages it publishes (read from the port), and how to carry out a command from Home Assistant
(through the port, so the daemon's validation and rate limits apply).  A malformed payload raises
:class:`BadPayload`; the bridge logs it and re-publishes the true state.

Topics, under ``base`` (``mqtt.base_topic``, default ``edged/<device id>``):

    <base>/availability                 online / offline (last will)
    <base>/gpio/<name>                  state (ON/OFF, or JSON for lights); button events (JSON)
    <base>/gpio/<name>/set              commands
    <base>/gpio/<name>/available        online / offline: the device works or has failed
    <base>/speaker/<what>[/set]         the speaker's entities
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from ..config import GpioDevice
from ..errors import ToolError
from .port import SpeakerPort, clean_announcement

SPEAKER_STATES = ("idle", "listening", "thinking", "speaking", "muted", "error")
HA_STATE_MAX = 255  # Home Assistant refuses sensor states longer than this


class BadPayload(ToolError):
    """A command payload from MQTT that cannot be understood."""


@dataclass(frozen=True)
class Context:
    device_id: str
    base: str
    share_transcripts: bool = False
    camera: bool = False

    def uid(self, key: str) -> str:
        return f"edged_{self.device_id}_{key}"


Message = tuple[str, str | bytes]  # (topic, payload) retained


class Entity:
    platform = ""

    def __init__(self, ctx: Context, key: str, name: str) -> None:
        self.ctx = ctx
        self.key = key  # the component id in the device discovery payload
        self.name = name
        self.state_topic: str | None = None
        self.command_topic: str | None = None

    @property
    def cmp_id(self) -> str:
        return f"{self.key}_{self.platform}"

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"p": self.platform, "unique_id": self.ctx.uid(self.key), "name": self.name}
        if self.state_topic:
            cfg["state_topic"] = self.state_topic
        if self.command_topic:
            cfg["command_topic"] = self.command_topic
        return cfg

    def states(self, port: SpeakerPort) -> list[Message]:
        """The retained state messages for the current truth (empty for stateless entities)."""
        return []

    async def command(self, payload: str, port: SpeakerPort) -> None:
        raise BadPayload(f"{self.name} takes no commands")


def _on_off(payload: str) -> bool:
    word = payload.strip().upper()
    if word not in ("ON", "OFF"):
        raise BadPayload(f"expected ON or OFF, got {payload[:40]!r}")
    return word == "ON"


def _json_object(payload: str) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except ValueError:
        raise BadPayload(f"not JSON: {payload[:60]!r}") from None
    if not isinstance(data, dict):
        raise BadPayload("expected a JSON object")
    return data


def _pretty(name: str) -> str:
    return name.replace("_", " ").capitalize()


# ---- GPIO devices -------------------------------------------------------------------------------
class GpioEntity(Entity):
    def __init__(self, ctx: Context, dev: GpioDevice) -> None:
        super().__init__(ctx, f"gpio_{dev.name}", dev.description or _pretty(dev.name))
        self.dev = dev
        self.topic = f"{ctx.base}/gpio/{dev.name}"
        self.available_topic = f"{self.topic}/available"
        self.state_topic = self.topic

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        # the entity is available while edged is online AND the device works
        cfg["availability"] = [{"topic": f"{self.ctx.base}/availability"}, {"topic": self.available_topic}]
        cfg["availability_mode"] = "all"
        return cfg

    def _state(self, port: SpeakerPort) -> dict[str, Any] | None:
        return port.gpio_states().get(self.dev.name)

    def states(self, port: SpeakerPort) -> list[Message]:
        st = self._state(port)
        ok = bool(st and st.get("ok"))
        out: list[Message] = [(self.available_topic, "online" if ok else "offline")]
        if ok and st is not None:
            value = self.render(st.get("value"))
            if value is not None:
                out.append((self.topic, value))
        return out

    def render(self, value: Any) -> str | None:
        if value is None:
            return None
        return "ON" if bool(value) else "OFF"


class SwitchEntity(GpioEntity):
    """relay, buzzer: a switch (ON / OFF)."""

    platform = "switch"

    def __init__(self, ctx: Context, dev: GpioDevice) -> None:
        super().__init__(ctx, dev)
        self.command_topic = f"{self.topic}/set"

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        if self.dev.kind == "relay":
            cfg["device_class"] = "switch"
        return cfg

    async def command(self, payload: str, port: SpeakerPort) -> None:
        await port.set_gpio(self.dev.name, _on_off(payload))


class LightEntity(GpioEntity):
    """led (on/off), pwm_led (brightness), rgb_led (rgb): a light with the JSON schema."""

    platform = "light"

    def __init__(self, ctx: Context, dev: GpioDevice) -> None:
        super().__init__(ctx, dev)
        self.command_topic = f"{self.topic}/set"
        self.mode = {"led": "onoff", "pwm_led": "brightness", "rgb_led": "rgb"}[dev.kind]
        self._last_on: Any = None  # what "ON" without brightness or colour restores

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        cfg["schema"] = "json"
        cfg["supported_color_modes"] = [self.mode]
        if self.mode != "onoff":
            cfg["brightness"] = True
            cfg["brightness_scale"] = 255
        return cfg

    def render(self, value: Any) -> str | None:
        if value is None:
            return None
        if self.mode == "onoff":
            return json.dumps({"state": "ON" if value else "OFF", "color_mode": "onoff"})
        if self.mode == "brightness":
            level = float(value)
            if level > 0:
                self._last_on = level
            out: dict[str, Any] = {"state": "ON" if level > 0 else "OFF", "color_mode": "brightness"}
            if level > 0:
                out["brightness"] = round(level * 255)
            return json.dumps(out)
        rgb = [float(c) for c in value]
        peak = max(rgb)
        out = {"state": "ON" if peak > 0 else "OFF", "color_mode": "rgb"}
        if peak > 0:
            self._last_on = tuple(rgb)
            out["brightness"] = round(peak * 255)
            out["color"] = {k: round(c / peak * 255) for k, c in zip("rgb", rgb, strict=True)}
        return json.dumps(out)

    async def command(self, payload: str, port: SpeakerPort) -> None:
        await port.set_gpio(self.dev.name, self.target(_json_object(payload), port))

    def target(self, cmd: dict[str, Any], port: SpeakerPort) -> Any:
        state = cmd.get("state")
        if not isinstance(state, str) or state.upper() not in ("ON", "OFF"):
            raise BadPayload('a light command needs "state": "ON" or "OFF"')
        on = state.upper() == "ON"
        if self.mode == "onoff":
            return on
        if not on:
            return 0.0 if self.mode == "brightness" else (0.0, 0.0, 0.0)
        level = None
        if "brightness" in cmd:
            b = cmd["brightness"]
            if isinstance(b, bool) or not isinstance(b, int | float) or not math.isfinite(b) or not 0 <= b <= 255:
                raise BadPayload(f"brightness must be 0..255 (got {b!r})")
            level = b / 255
        if self.mode == "brightness":
            if level is None:
                level = self._last_on if self._last_on else 1.0
            return round(level, 4)
        current = self._current_rgb(port)
        color = cmd.get("color")
        if color is not None:
            if not isinstance(color, dict) or not all(k in color for k in "rgb"):
                raise BadPayload('color must be {"r": .., "g": .., "b": ..}')
            chans = [color[k] for k in "rgb"]
            if any(isinstance(c, bool) or not isinstance(c, int | float) or not 0 <= c <= 255 for c in chans):
                raise BadPayload("color channels must be 0..255")
            top = max(chans)
            hue = tuple(c / top for c in chans) if top else (1.0, 1.0, 1.0)
        else:
            base = current if current and max(current) > 0 else self._last_on or (1.0, 1.0, 1.0)
            top = max(base)
            hue = tuple(c / top for c in base)
        if level is None:
            level = max(current) if current and max(current) > 0 else max(self._last_on or (1.0,))
        return tuple(round(c * level, 4) for c in hue)

    def _current_rgb(self, port: SpeakerPort) -> tuple[float, ...] | None:
        st = self._state(port)
        v = st.get("value") if st else None
        return tuple(float(c) for c in v) if isinstance(v, list | tuple) else None


class BinarySensorEntity(GpioEntity):
    """motion_sensor (device_class motion), digital_input."""

    platform = "binary_sensor"

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        if self.dev.kind == "motion_sensor":
            cfg["device_class"] = "motion"
        return cfg


class ButtonEventEntity(GpioEntity):
    """button: an event entity firing press / release (events are not retained)."""

    platform = "event"
    EVENT_TYPES = ("press", "release")

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        cfg["event_types"] = list(self.EVENT_TYPES)
        cfg["device_class"] = "button"
        return cfg

    def states(self, port: SpeakerPort) -> list[Message]:
        st = self._state(port)
        return [(self.available_topic, "online" if st and st.get("ok") else "offline")]

    def event(self, value: Any) -> str:
        return json.dumps({"event_type": "press" if value else "release"})


def gpio_entity(ctx: Context, dev: GpioDevice) -> GpioEntity:
    if dev.kind in ("led", "pwm_led", "rgb_led"):
        return LightEntity(ctx, dev)
    if dev.kind in ("relay", "buzzer"):
        return SwitchEntity(ctx, dev)
    if dev.kind == "button":
        return ButtonEventEntity(ctx, dev)
    return BinarySensorEntity(ctx, dev)


# ---- the speaker ----------------------------------------------------------------------------------
class SpeakerEntity(Entity):
    def __init__(self, ctx: Context, what: str, name: str) -> None:
        super().__init__(ctx, f"speaker_{what}", name)
        self.topic = f"{ctx.base}/speaker/{what}"


class StateSensor(SpeakerEntity):
    platform = "sensor"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "state", "State")
        self.state_topic = self.topic

    def config(self) -> dict[str, Any]:
        return {**super().config(), "device_class": "enum", "options": list(SPEAKER_STATES),
                "icon": "mdi:speaker-message"}

    def states(self, port: SpeakerPort) -> list[Message]:
        st = port.speaker_state()
        # starting / stopping are moments the availability topic already tells
        return [(self.topic, st)] if st in SPEAKER_STATES else []


class MuteSwitch(SpeakerEntity):
    platform = "switch"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "mute", "Microphone mute")
        self.state_topic = self.topic
        self.command_topic = f"{self.topic}/set"

    def config(self) -> dict[str, Any]:
        return {**super().config(), "icon": "mdi:microphone-off"}

    def states(self, port: SpeakerPort) -> list[Message]:
        return [(self.topic, "ON" if port.muted() else "OFF")]

    async def command(self, payload: str, port: SpeakerPort) -> None:
        await port.set_muted(_on_off(payload))


class VolumeNumber(SpeakerEntity):
    platform = "number"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "volume", "Volume")
        self.state_topic = self.topic
        self.command_topic = f"{self.topic}/set"

    def config(self) -> dict[str, Any]:
        return {**super().config(), "min": 0, "max": 100, "step": 1, "unit_of_measurement": "%",
                "mode": "slider", "icon": "mdi:volume-high"}

    def states(self, port: SpeakerPort) -> list[Message]:
        v = port.volume()
        return [(self.topic, "None" if v is None else str(round(v * 100)))]

    async def command(self, payload: str, port: SpeakerPort) -> None:
        try:
            pct = float(payload.strip())
        except ValueError:
            raise BadPayload(f"volume must be a number 0..100 (got {payload[:40]!r})") from None
        if not math.isfinite(pct) or not 0 <= pct <= 100:
            raise BadPayload(f"volume must be 0..100 (got {pct:g})")
        await port.set_volume(pct / 100)


class ListenButton(SpeakerEntity):
    platform = "button"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "listen", "Listen")
        self.command_topic = f"{self.topic}/press"

    def config(self) -> dict[str, Any]:
        return {**super().config(), "payload_press": "PRESS", "icon": "mdi:microphone-message"}

    async def command(self, payload: str, port: SpeakerPort) -> None:
        if payload.strip() != "PRESS":
            raise BadPayload(f"expected PRESS, got {payload[:40]!r}")
        await port.listen()


class AnnounceNotify(SpeakerEntity):
    """notify: the message is said by the speaker (a text turn asking to say it as given)."""

    platform = "notify"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "announce", "Announce")
        self.command_topic = self.topic

    def config(self) -> dict[str, Any]:
        return {**super().config(), "icon": "mdi:bullhorn"}

    async def command(self, payload: str, port: SpeakerPort) -> None:
        await port.announce(clean_announcement(payload))


class LiveSensor(SpeakerEntity):
    platform = "sensor"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "live", "Live connection")
        self.state_topic = self.topic

    def config(self) -> dict[str, Any]:
        return {**super().config(), "entity_category": "diagnostic", "icon": "mdi:cloud-sync"}

    def states(self, port: SpeakerPort) -> list[Message]:
        return [(self.topic, port.live_state()[:HA_STATE_MAX])]


class ProblemSensor(SpeakerEntity):
    platform = "binary_sensor"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "problem", "Problem")
        self.state_topic = self.topic
        self.attributes_topic = f"{self.topic}/attributes"

    def config(self) -> dict[str, Any]:
        return {**super().config(), "device_class": "problem", "entity_category": "diagnostic",
                "json_attributes_topic": self.attributes_topic}

    def states(self, port: SpeakerPort) -> list[Message]:
        problems = port.problems()
        return [(self.topic, "ON" if problems else "OFF"),
                (self.attributes_topic, json.dumps({"problems": problems}, sort_keys=True))]


class WakeEvent(SpeakerEntity):
    platform = "event"
    EVENT_TYPES = ("detected",)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "wake", "Wake word")
        self.state_topic = self.topic

    def config(self) -> dict[str, Any]:
        return {**super().config(), "event_types": list(self.EVENT_TYPES), "icon": "mdi:account-voice"}

    def event(self, ev: dict[str, Any]) -> str:
        return json.dumps({"event_type": "detected", "model": ev.get("model"), "score": ev.get("score")})


class TimersSensor(SpeakerEntity):
    platform = "sensor"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "timers", "Timers")
        self.state_topic = self.topic
        self.attributes_topic = f"{self.topic}/attributes"

    def config(self) -> dict[str, Any]:
        return {**super().config(), "json_attributes_topic": self.attributes_topic, "icon": "mdi:timer-outline",
                "state_class": "measurement"}

    def states(self, port: SpeakerPort) -> list[Message]:
        timers = port.timers()
        return [(self.topic, str(len(timers))),
                (self.attributes_topic, json.dumps({"timers": timers}, sort_keys=True, default=str))]


class TranscriptSensor(SpeakerEntity):
    """Only with mqtt.share_transcripts: the last thing said (by the user or the speaker)."""

    platform = "sensor"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "transcript", "Last transcript")
        self.state_topic = self.topic
        self.attributes_topic = f"{self.topic}/attributes"

    def config(self) -> dict[str, Any]:
        return {**super().config(), "json_attributes_topic": self.attributes_topic, "icon": "mdi:text-box"}

    def messages(self, ev: dict[str, Any]) -> list[Message]:
        text = str(ev.get("text", ""))
        return [(self.topic, text[:HA_STATE_MAX]),
                (self.attributes_topic, json.dumps({"role": ev.get("role"), "text": text}))]


class CameraEntity(SpeakerEntity):
    """Only with mqtt.camera: the image of the last snapshot (never retained)."""

    platform = "camera"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "camera", "Camera")

    def config(self) -> dict[str, Any]:
        return {**super().config(), "topic": self.topic}


class SnapshotButton(SpeakerEntity):
    platform = "button"

    def __init__(self, ctx: Context, camera: CameraEntity) -> None:
        super().__init__(ctx, "snapshot", "Take snapshot")
        self.command_topic = f"{self.topic}/press"
        self.camera = camera

    def config(self) -> dict[str, Any]:
        return {**super().config(), "payload_press": "PRESS", "icon": "mdi:camera"}


def build(ctx: Context, devices: dict[str, GpioDevice]) -> list[Entity]:
    """Every entity for this configuration, in a stable order."""
    out: list[Entity] = [StateSensor(ctx), MuteSwitch(ctx), VolumeNumber(ctx), ListenButton(ctx),
                         AnnounceNotify(ctx), LiveSensor(ctx), ProblemSensor(ctx), WakeEvent(ctx),
                         TimersSensor(ctx)]
    if ctx.share_transcripts:
        out.append(TranscriptSensor(ctx))
    if ctx.camera:
        cam = CameraEntity(ctx)
        out += [cam, SnapshotButton(ctx, cam)]
    out += [gpio_entity(ctx, d) for d in devices.values()]
    return out


_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


def check_id(device_id: str) -> str:
    if not _SAFE.match(device_id):
        raise ValueError(f"device id {device_id!r}: only letters, digits, '_' and '-'")
    return device_id
