"""Configuration: schema, loading, validation, atomic writes.

One TOML file (``/etc/edged/edged.toml`` by default; ``--config`` or
``$EDGED_CONFIG`` override).  Every problem is reported as
``FILE: section.key: reason`` and is a :class:`ConfigError` (exit 78).
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, ConfigErrors

DEFAULT_PATH = "/etc/edged/edged.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class LiveConfig(_Section):
    model: str = "gemini-2.5-flash-native-audio-preview-09-2025"
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


class WakeConfig(_Section):
    engine: Literal["lean", "openwakeword"] = "lean"  # lean: onnxruntime + numpy only (see audio/oww_lean.py)
    models: list[str] = Field(default_factory=lambda: ["hey_jarvis"], min_length=1)
    models_dir: str = ""  # empty = state.dir/models
    threshold: float = Field(0.5, gt=0, lt=1)
    trigger_frames: int = Field(1, ge=1, le=10)  # consecutive frames over threshold
    refractory_s: float = Field(2.0, ge=0, le=30)
    suppress_while_playing: bool = False  # for setups without echo cancellation


class TurnConfig(_Section):
    vad: Literal["webrtc", "silero"] = "webrtc"
    vad_aggressiveness: int = Field(2, ge=0, le=3)
    silence_ms: int = Field(700, ge=100, le=10000)
    preroll_ms: int = Field(400, ge=0, le=2000)
    max_utterance_s: float = Field(15.0, gt=0, le=120)
    no_speech_timeout_s: float = Field(5.0, gt=0, le=60)
    follow_up_s: float = Field(0.0, ge=0, le=30)  # 0 = off
    reply_timeout_s: float = Field(30.0, gt=0, le=600)


class StateConfig(_Section):
    dir: str = "/var/lib/edged"


class ControlConfig(_Section):
    socket: str = "/run/edged/control.sock"
    group: str = ""  # members of this group may use edgectl (besides root and the service user)
    max_request_bytes: int = Field(65536, ge=256, le=16 * 1024 * 1024)


DeviceKind = Literal["led", "pwm_led", "rgb_led", "relay", "buzzer", "button", "motion_sensor", "digital_input"]
OUTPUT_KINDS = {"led", "pwm_led", "rgb_led", "relay", "buzzer"}
INPUT_KINDS = {"button", "motion_sensor", "digital_input"}
_PIN_RE = re.compile(r"^(GPIO|BCM)?(\d{1,2})$|^(BOARD|J8:|P1:)(\d{1,2})$|^WPI\d{1,2}$", re.I)


class GpioDevice(_Section):
    name: str = Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")
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



class CameraConfig(_Section):
    backend: Literal["picamera2", "synthetic", "none"] = "none"
    max_side: int = Field(768, ge=64, le=4056)
    quality: int = Field(80, ge=10, le=100)
    watch_fps: float = Field(1.0, gt=0, le=5)
    watch_max_s: float = Field(60.0, gt=0, le=90)  # audio+video sessions end at 2 min


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


def _loc(loc: tuple[Any, ...], data: Any) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            name = None
            # name list entries by their `name` when they have one: gpio.devices[kitchen_light]
            try:
                node = data
                for k in loc[: loc.index(item) + 1]:
                    node = node[k]
                name = node.get("name") if isinstance(node, dict) else None
            except (KeyError, IndexError, TypeError):
                pass
            parts[-1] += f"[{name or item}]" if parts else f"[{item}]"
        else:
            parts.append(str(item))
    return ".".join(parts)


def _errors(file: str, exc: ValidationError, data: Any) -> ConfigErrors:
    out: list[ConfigError] = []
    for err in exc.errors():
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x in ("int", "str", "bool", "float")))
        key = _loc(loc, data)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "literal_error":
            pass
        elif "input" in err and err["type"].endswith(("_type", "_parsing")):
            msg = f"{msg} (got {err['input']!r})"
        msg = msg.replace("Input should be", "must be")
        out.append(ConfigError(file, key, msg))
    return ConfigErrors(out)


def parse(data: dict[str, Any], file: str = "<config>") -> Config:
    """Validate a dict (as read from TOML) into a Config, or raise ConfigErrors."""
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise _errors(file, exc, data) from None
    cfg._path = file
    problems = [ConfigError(file, key, reason) for key, reason in _cross_check(cfg)]
    if problems:
        raise ConfigErrors(problems)
    return cfg


def _cross_check(cfg: Config) -> list[tuple[str, str]]:
    """Checks that span keys; each names the key to fix."""
    out: list[tuple[str, str]] = []
    owner: dict[str, str] = {}
    by_name: dict[str, GpioDevice] = {}
    for d in cfg.gpio.devices:
        where = f"gpio.devices[{d.name}]"
        if d.name in by_name:
            out.append((f"{where}.name", f"two devices are named {d.name!r}"))
        by_name[d.name] = d
        for p in d.all_pins():
            key = _pin_key(p)
            if key in owner:
                out.append((f"{where}.{'pins' if d.pins else 'pin'}", f"pin {p} is already used by {owner[key]!r}"))
            else:
                owner[key] = d.name
    for key, kinds in (("status_led", {"led", "pwm_led", "rgb_led"}), ("camera_led", {"led", "pwm_led"}),
                       ("talk_button", {"button"}), ("mute_button", {"button"})):
        ref = getattr(cfg.gpio, key)
        if ref and (ref not in by_name or by_name[ref].kind not in kinds):
            out.append((f"gpio.{key}", f"{ref!r} is not a configured {' / '.join(sorted(kinds))} device"))
    if cfg.gpio.talk_button and cfg.gpio.talk_button == cfg.gpio.mute_button:
        out.append(("gpio.mute_button", "the talk button cannot also be the mute button"))
    return out


def default_path() -> str:
    return os.environ.get("EDGED_CONFIG") or DEFAULT_PATH


def load(path: str | os.PathLike[str] | None = None) -> Config:
    file = str(path) if path else default_path()
    try:
        raw = Path(file).read_bytes()
    except FileNotFoundError:
        raise ConfigError(file, "", "file not found (use --config FILE or $EDGED_CONFIG)") from None
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(file, "", "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", f"TOML syntax: {exc}") from None
    return parse(data, file)


def get_key(cfg: Config, key: str) -> Any:
    node: Any = cfg.model_dump()
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(cfg.path or "<config>", key, "no such key")
        node = node[part]
    return node


def coerce_value(text: str) -> Any:
    """Parse a command-line value as a TOML value; bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def with_value(cfg: Config, key: str, value: Any) -> Config:
    """A new validated Config with ``key`` set; raises ConfigError and changes nothing if invalid."""
    data = cfg.model_dump()
    node = data
    parts = key.split(".")
    if len(parts) < 2:
        raise ConfigError(cfg.path or "<config>", key, "give section.key, e.g. wake.threshold")
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
            raise ConfigError(cfg.path or "<config>", key, "no such key")
        node = node[part]
    if parts[-1] not in node:
        raise ConfigError(cfg.path or "<config>", key, "no such key")
    node[parts[-1]] = value
    return parse(_drop_none(data), cfg.path or "<config>")


def write_atomic(path: str | os.PathLike[str], text: str, mode: int = 0o644) -> None:
    """Write a file so that a crash leaves either the old or the new content: temp, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(path.parent, os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def remove_stale_temps(path: str | os.PathLike[str]) -> int:
    """Delete temp files that write_atomic left behind when its process was killed mid-write.

    Only for files with a single writer (the daemon's own state): another writer's temp file
    would be taken from under it.
    """
    path = Path(path)
    removed = 0
    for stale in path.parent.glob(f".{path.name}.*"):
        try:
            stale.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def save(cfg: Config, path: str | os.PathLike[str] | None = None) -> None:
    write_atomic(path or cfg.path, cfg.to_toml())
