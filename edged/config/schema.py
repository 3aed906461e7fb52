"""The config's schema: one pydantic model per TOML section and ``Config``, which holds them; the
device kinds and cue names, ``device_id`` and the GPIO pin checks."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..live import profiles
from ..paths import DEFAULT_SOCKET


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class LiveConfig(_Section):
    model: str = Field(profiles.DEFAULT_MODEL, min_length=1)  # checked against edged/live/profiles.py
    api_key_file: str = ""
    base_url: str = ""  # empty = Google
    ca_file: str = ""  # PEM trusted for base_url (the emulator's CA)
    api_version: Literal["v1", "v1beta", "v1alpha"] = "v1beta"
    voice: str = "Puck"
    language: str = ""  # BCP-47, empty = the model's choice
    system_instruction: str = (
        "You are a friendly smart speaker in a home. Answer briefly, in speech. "
        "Use the tools to control devices and the camera when asked."
    )
    transcription: bool = True
    connect_timeout_s: float = Field(10.0, gt=0, le=120)
    handle_max_age_s: float = Field(7200.0, gt=0, le=86400)
    backoff_initial_s: float = Field(0.5, gt=0, le=60)
    backoff_max_s: float = Field(30.0, gt=0, le=3600)
    stable_after_s: float = Field(60.0, gt=0, le=3600)
    auth_retry_s: float = Field(300.0, gt=0, le=86400)
    compression_trigger_tokens: int = Field(25600, ge=1000)
    compression_target_tokens: int = Field(12800, ge=500)
    ping_interval_s: float = Field(20.0, ge=0, le=600)  # 0 = no keep-alive pings
    ping_timeout_s: float = Field(60.0, gt=0, le=600)
    replay_buffer_s: float = Field(30.0, ge=1, le=120)  # turn audio kept to replay after a drop
    # Optional model features, each checked against the model's profile at load (edged/live/profiles.py):
    thinking_level: Literal["", "minimal", "low", "medium", "high"] = ""  # "" = the model's default
    proactive_audio: bool | None = None  # 2.5 native audio only; None = not sent
    affective_dialog: bool | None = None  # 2.5 native audio only; None = not sent
    media_resolution: Literal["low", "medium", "high"] = "low"  # camera frames cost tokens
    google_search: bool = False  # adds the built-in Google Search tool

    @model_validator(mode="after")
    def _check(self) -> LiveConfig:
        if self.compression_target_tokens >= self.compression_trigger_tokens:
            raise ValueError("compression_target_tokens must be below compression_trigger_tokens")
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError("backoff_initial_s must not exceed backoff_max_s")
        if self.base_url and not re.match(r"^(https?|wss?)://", self.base_url):
            raise ValueError("base_url must start with https:// (or be empty for Google)")
        return self


class AudioConfig(_Section):
    capture_device: str = "default"
    playback_device: str = "default"
    # The device's own format: converted to 16 kHz mono in the daemon.
    capture_rate: int = Field(16000, ge=8000, le=192000)
    capture_channels: int = Field(1, ge=1, le=8)
    playback_rate: int = Field(24000, ge=8000, le=192000)
    playback_channels: int = Field(1, ge=1, le=8)
    capture_buffer_ms: int = Field(2000, ge=160, le=60000)
    jitter_ms: int = Field(120, ge=0, le=2000)
    reopen_backoff_max_s: float = Field(10.0, gt=0, le=600)
    # Volume 0-100: software gain on a perceptual curve (edged/audio/volume.py), or, when `mixer` names
    # an ALSA mixer control, that control.  A level changed at run time is kept in the state dir.
    volume: int = Field(70, ge=0, le=100)
    volume_step: int = Field(10, ge=1, le=50)  # "up" / "down"
    mixer: str = Field("", max_length=64, pattern=r"^[A-Za-z0-9 _.,-]*$")  # e.g. "PCM"; empty = software gain
    mixer_device: str = Field("default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_:,=.-]+$")


class WakeConfig(_Section):
    engine: Literal["lean", "openwakeword"] = "lean"  # lean: onnxruntime + numpy only (see audio/oww_lean.py)
    models: list[str] = Field(default_factory=lambda: ["hey_jarvis"], min_length=1)
    models_dir: str = ""  # empty = state.dir/models
    threshold: float = Field(0.5, gt=0, lt=1)
    trigger_frames: int = Field(1, ge=1, le=10)  # consecutive frames over threshold
    refractory_s: float = Field(2.0, ge=0, le=30)
    suppress_while_playing: bool = False  # for setups without echo cancellation
    quiet_margin_db: float = Field(3.0, ge=0, le=40)  # models skipped while no sound is this far over the floor; 0 = never


class TurnConfig(_Section):
    vad: Literal["webrtc", "silero"] = "webrtc"
    vad_aggressiveness: int = Field(2, ge=0, le=3)
    detector: Literal["smart_turn", "silence"] = "silence"
    silence_ms: int = Field(700, ge=100, le=10000)  # silence: the end; smart_turn: the cap
    smart_silence_ms: int = Field(200, ge=80, le=2000)  # smart_turn: silence before the model decides
    smart_threshold: float = Field(0.5, gt=0, lt=1)  # smart_turn: P(complete) that ends the turn
    smart_reask_ms: int = Field(0, ge=0, le=5000)  # smart_turn: ask again this often in a silence; 0 = once
    smart_threads: int = Field(1, ge=1, le=4)  # smart_turn: onnxruntime intra-op threads
    preroll_ms: int = Field(400, ge=0, le=2000)
    max_utterance_s: float = Field(15.0, gt=0, le=120)
    no_speech_timeout_s: float = Field(5.0, gt=0, le=60)
    follow_up_s: float = Field(0.0, ge=0, le=30)  # 0 = off
    reply_timeout_s: float = Field(30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _smart(self) -> TurnConfig:
        if self.detector == "smart_turn" and self.smart_silence_ms >= self.silence_ms:
            raise ValueError("smart_silence_ms must be below silence_ms (the cap) with detector = \"smart_turn\"")
        return self


class StateConfig(_Section):
    dir: str = "/var/lib/edged"


class ControlConfig(_Section):
    socket: str = DEFAULT_SOCKET
    group: str = ""  # members of this group may use edgectl (besides root and the service user)
    admin_group: str = ""  # members may also configure (config set, reload, session reset); "" = root only
    max_request_bytes: int = Field(65536, ge=256, le=16 * 1024 * 1024)


DeviceKind = Literal["led", "pwm_led", "rgb_led", "relay", "buzzer", "button", "motion_sensor", "digital_input"]
OUTPUT_KINDS = {"led", "pwm_led", "rgb_led", "relay", "buzzer"}
INPUT_KINDS = {"button", "motion_sensor", "digital_input"}
_PIN_RE = re.compile(r"^(GPIO|BCM)?(\d{1,2})$|^(BOARD|J8:|P1:)(\d{1,2})$|^WPI\d{1,2}$", re.I)


def device_id(name: str) -> str:
    """The id a device name stands for: "Kitchen Light" -> "kitchen_light" (accents dropped,
    lower case, every run of other characters one "_").  The model, MQTT and edgectl use the id."""
    text = unicodedata.normalize("NFKD", name.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")


class GpioDevice(_Section):
    # a friendly name ("kitchen light"); the id derived from it is what the model and MQTT see
    name: str = Field(min_length=1, max_length=60)
    kind: DeviceKind
    pin: int | str | None = None
    pins: list[int | str] | None = None  # rgb_led: red, green, blue
    active_high: bool = True
    initial_value: bool | float = False
    description: str = ""
    room: str = ""
    pull_up: bool = True  # inputs
    bounce_time_s: float | None = Field(None, ge=0, le=5)
    min_interval_s: float = Field(0.0, ge=0, le=3600)  # rate limit for outputs
    tell_model: bool = False  # inputs: send changes to the model as context

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
            raise ValueError("must not contain control characters or line breaks")
        if name != name.strip():
            raise ValueError("must not start or end with spaces")
        ident = device_id(name)
        if not ident:
            raise ValueError(f"{name!r} has no letters a-z or digits to make an id from")
        if len(ident) > 40:
            raise ValueError(f"its id {ident!r} is longer than 40 characters")
        return name

    @property
    def id(self) -> str:
        """What the model, MQTT and ``edgectl gpio`` call the device: ``device_id(name)``."""
        return device_id(self.name)

    @field_validator("pin")
    @classmethod
    def _pin(cls, p: int | str | None) -> int | str | None:
        return None if p is None else _check_pin(p)

    @field_validator("pins")
    @classmethod
    def _pin_list(cls, pins: list[int | str] | None) -> list[int | str] | None:
        return None if pins is None else [_check_pin(p) for p in pins]

    @field_validator("initial_value")
    @classmethod
    def _initial(cls, v: bool | float) -> bool | float:
        if not isinstance(v, bool) and not 0 <= v <= 1:
            raise ValueError("must be between 0 and 1")
        return v

    @model_validator(mode="after")
    def _pins(self) -> GpioDevice:
        if self.kind == "rgb_led":
            if not self.pins or len(self.pins) != 3:
                raise ValueError("rgb_led needs pins = [red, green, blue]")
        elif self.pin is None:
            raise ValueError(f"{self.kind} needs a pin")
        return self

    def all_pins(self) -> list[int | str]:
        return list(self.pins) if self.kind == "rgb_led" else [self.pin]  # type: ignore[list-item]


def _check_pin(p: int | str) -> int | str:
    if isinstance(p, int):
        if not 0 <= p <= 27:
            raise ValueError(f"pin {p} does not exist (BCM pins are 0..27)")
    elif not _PIN_RE.match(p):
        raise ValueError(f"{p!r} is not a pin (use a BCM number or a name like 'GPIO17' or 'BOARD11')")
    elif _pin_key(p).startswith("board"):
        raise ValueError(f"{p!r} is not a GPIO pin of the 40-pin header")
    return p


class GpioConfig(_Section):
    pin_factory: str = ""  # empty = gpiozero's default; "mock" for simulation
    status_led: str = ""  # name of an led / pwm_led / rgb_led device showing the daemon's state
    camera_led: str = ""  # on while the camera takes frames
    talk_button: str = ""  # a button that starts a turn like the wake word
    mute_button: str = ""  # a button that toggles the microphone mute
    devices: list[GpioDevice] = Field(default_factory=list)
    # status_led .. mute_button name a device by its name or its id; parse() rewrites them to the id



class CameraConfig(_Section):
    backend: Literal["picamera2", "synthetic", "none"] = "none"
    max_side: int = Field(768, ge=64, le=4056)
    quality: int = Field(80, ge=10, le=100)
    watch_fps: float = Field(1.0, gt=0, le=5)
    watch_max_s: float = Field(60.0, gt=0, le=90)  # audio+video sessions end at 2 min


CUE_NAMES = ("wake", "listen_end", "offline", "mute_on", "mute_off", "ring")


class CueConfig(_Section):
    enabled: bool = True
    file: str = ""  # a custom WAV (PCM, any rate, mono or stereo); empty = the built-in sound


class CuesConfig(_Section):
    volume: int = Field(60, ge=0, le=100)  # cue loudness on the same curve as audio.volume (which applies too)
    duck: int = Field(30, ge=0, le=100)  # while a cue plays, the reply plays at this % of its level
    wake: CueConfig = Field(default_factory=CueConfig)  # the wake word was heard
    listen_end: CueConfig = Field(default_factory=CueConfig)  # end of listening
    offline: CueConfig = Field(default_factory=CueConfig)  # the assistant cannot be reached
    mute_on: CueConfig = Field(default_factory=CueConfig)
    mute_off: CueConfig = Field(default_factory=CueConfig)
    ring: CueConfig = Field(default_factory=CueConfig)  # a timer or alarm is ringing (looped)


class TimersConfig(_Section):
    max: int = Field(10, ge=1, le=100)  # timers and alarms at once
    ring_max_s: float = Field(300.0, gt=0, le=3600)  # a ringing timer stops by itself after this
    missed_max_s: float = Field(3600.0, ge=0, le=7 * 86400)  # due while the daemon was down: rung if this late at most
_TOPIC_RE = re.compile(r"^[^#+\x00]+$")
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class MqttConfig(_Section):
    """Home Assistant over MQTT (edged.mqtt); off unless ``enabled``."""

    enabled: bool = False
    host: str = ""
    port: int = Field(0, ge=0, le=65535)  # 0 = 1883, or 8883 with tls
    tls: bool = False
    ca_file: str = ""  # PEM of the broker's CA; empty = the system's trust store
    cert_file: str = ""  # client certificate (PEM), optional
    key_file: str = ""  # its private key (PEM)
    username: str = ""
    password_file: str = ""  # the password is read from this file, never written in the config
    client_id: str = Field("", max_length=128, pattern=r"^[ -~]*$")  # empty = "edged-<device id>"
    device_id: str = ""  # empty = derived from /etc/machine-id (stable across restarts)
    discovery_prefix: str = Field("homeassistant", min_length=1)
    base_topic: str = ""  # empty = "edged/<device id>"
    device_name: str = ""  # empty = "edged on <hostname>"
    share_transcripts: bool = False  # publish what was said (privacy: off)
    camera: bool = False  # offer a camera entity with snapshots (privacy: off)
    keepalive_s: int = Field(30, ge=5, le=3600)
    backoff_initial_s: float = Field(0.5, gt=0, le=60)
    backoff_max_s: float = Field(30.0, gt=0, le=3600)

    @field_validator("discovery_prefix", "base_topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        if v and (not _TOPIC_RE.match(v) or v.startswith("/") or v.endswith("/") or "//" in v):
            raise ValueError(f"{v!r} is not a usable topic (no '#', '+', leading, trailing or double '/')")
        return v

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if "://" in v or "/" in v or " " in v:
            raise ValueError(f"{v!r} is not a host name or address (no scheme, path or spaces: set tls and port)")
        return v

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, v: str) -> str:
        if v and not _ID_RE.match(v):
            raise ValueError("only letters, digits, '_' and '-' (Home Assistant's discovery topics allow no more)")
        return v

    @property
    def broker_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Section):
    live: LiveConfig = Field(default_factory=LiveConfig)
    audio: AudioConfig = Field(default_factory=AudioConfig)
    wake: WakeConfig = Field(default_factory=WakeConfig)
    turn: TurnConfig = Field(default_factory=TurnConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    gpio: GpioConfig = Field(default_factory=GpioConfig)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    cues: CuesConfig = Field(default_factory=CuesConfig)
    timers: TimersConfig = Field(default_factory=TimersConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    # where it was loaded from (not a TOML key)
    _path: str = ""

    @property
    def path(self) -> str:
        return self._path

    @property
    def models_dir(self) -> Path:
        return Path(self.wake.models_dir) if self.wake.models_dir else Path(self.state.dir) / "models"

    def to_toml(self) -> str:
        return tomli_w.dumps(_drop_none(self.model_dump()))


# Physical header pin -> BCM number (40-pin header), so BOARD11 and 17 are seen as one pin.
_BOARD_TO_BCM = {3: 2, 5: 3, 7: 4, 8: 14, 10: 15, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23, 18: 24, 19: 10,
                 21: 9, 22: 25, 23: 11, 24: 8, 26: 7, 27: 0, 28: 1, 29: 5, 31: 6, 32: 12, 33: 13, 35: 19,
                 36: 16, 37: 26, 38: 20, 40: 21}


def _pin_key(pin: int | str) -> str:
    if isinstance(pin, int):
        return f"bcm{pin}"
    m = _PIN_RE.match(pin)
    if m and m.group(2):
        return f"bcm{int(m.group(2))}"
    if m and m.group(4):
        n = int(m.group(4))
        return f"bcm{_BOARD_TO_BCM[n]}" if n in _BOARD_TO_BCM else f"board{n}"
    return pin.lower()


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj]
    return obj
