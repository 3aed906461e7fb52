"""Loading a config: read the TOML file, validate it into a Config, and report every problem as
``FILE: section.key: reason`` (the checks that span keys, and of the files the config names, too);
reading and changing one key (``get_key``, ``coerce_value``, ``with_value``)."""

from __future__ import annotations

import logging
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError, ConfigErrors
from ..live import profiles
from ..paths import config_path
from .schema import CUE_NAMES, Config, GpioConfig, GpioDevice, MqttConfig, _drop_none, _pin_key, device_id

log = logging.getLogger("edged.config")  # the name its warnings have always been logged under


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
            if not (isinstance(name, str) and name.isprintable()):
                name = None  # one error, one line
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


def parse(data: dict[str, Any], file: str = "<config>", *, check_files: bool = False) -> Config:
    """Validate a dict (as read from TOML) into a Config, or raise ConfigErrors.

    ``check_files`` also checks what the config names on this machine: custom wake model paths exist,
    custom cue WAVs can be played.  ``load()`` does (it reads the daemon's own config on the device).
    """
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise _errors(file, exc, data) from None
    cfg._path = file
    problems = [ConfigError(file, key, reason) for key, reason in _cross_check(cfg)]
    if check_files:
        problems += [ConfigError(file, key, reason) for key, reason in _check_files(cfg)]
    if problems:
        raise ConfigErrors(problems)
    _canonical_refs(cfg.gpio)
    for note in profiles.notes(cfg.live.model):
        log.warning("%s: %s", file, note)
    return cfg


_GPIO_REFS = (("status_led", {"led", "pwm_led", "rgb_led"}), ("camera_led", {"led", "pwm_led"}),
              ("talk_button", {"button"}), ("mute_button", {"button"}))


def _cross_check(cfg: Config) -> list[tuple[str, str]]:
    """Checks that span keys; each names the key to fix."""
    out: list[tuple[str, str]] = list(profiles.problems(cfg.live))
    owner: dict[str, str] = {}
    by_id: dict[str, GpioDevice] = {}
    for d in cfg.gpio.devices:
        where = f"gpio.devices[{d.name}]"
        other = by_id.get(d.id)
        if other is not None and other.name == d.name:
            out.append((f"{where}.name", f"two devices are named {d.name!r}"))
        elif other is not None:
            out.append((f"{where}.name", f"{other.name!r} and {d.name!r} both make the id {d.id!r}: "
                                         "rename one of them"))
        by_id.setdefault(d.id, d)
        for p in d.all_pins():
            key = _pin_key(p)
            if key in owner:
                out.append((f"{where}.{'pins' if d.pins else 'pin'}", f"pin {p} is already used by {owner[key]!r}"))
            else:
                owner[key] = d.name
    for key, kinds in _GPIO_REFS:
        ref = getattr(cfg.gpio, key)
        dev = by_id.get(device_id(ref)) if ref else None
        if ref and (dev is None or dev.kind not in kinds):
            out.append((f"gpio.{key}", f"{ref!r} is not a configured {' / '.join(sorted(kinds))} device"))
    if cfg.gpio.talk_button and device_id(cfg.gpio.talk_button) == device_id(cfg.gpio.mute_button):
        out.append(("gpio.mute_button", "the talk button cannot also be the mute button"))
    out += _check_wake_names(cfg.wake.models)
    out += _mqtt_check(cfg.mqtt)
    return out


def _canonical_refs(gpio: GpioConfig) -> None:
    """status_led & co. may name a device by its friendly name: keep its id, which the parts use."""
    for key, _ in _GPIO_REFS:
        ref = getattr(gpio, key)
        if ref:
            setattr(gpio, key, device_id(ref))


def _check_wake_names(names: list[str]) -> list[tuple[str, str]]:
    import difflib

    from ..audio.models import BUILTIN, MANIFEST

    out: list[tuple[str, str]] = []
    for i, name in enumerate(names):
        if name in MANIFEST and name not in BUILTIN.values():
            out.append((f"wake.models[{i}]", f"{name!r} is a feature model, not a wake word"))
            continue
        if name in BUILTIN or name in BUILTIN.values() or _is_model_path(name):
            continue
        close = difflib.get_close_matches(name, list(BUILTIN), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        out.append((f"wake.models[{i}]", f"{name!r} is not a built-in wake word ({hint}built-in: "
                                         f"{', '.join(sorted(BUILTIN))}; or give the path of a .onnx file)"))
    return out


def _is_model_path(name: str) -> bool:
    return name.endswith(".onnx") or os.sep in name


def _check_files(cfg: Config) -> list[tuple[str, str]]:
    """What the config names on this machine: custom wake models exist, custom cues are playable WAVs."""
    from ..audio.models import BUILTIN, MANIFEST

    out: list[tuple[str, str]] = []
    for i, name in enumerate(cfg.wake.models):
        if name in BUILTIN or name in MANIFEST or not _is_model_path(name):
            continue  # built-in ones are checked by `edged models check` (they are fetched, not configured)
        path = Path(name).expanduser()
        if not path.is_file():
            out.append((f"wake.models[{i}]", f"{path}: no such file"))
        elif not os.access(path, os.R_OK):
            out.append((f"wake.models[{i}]", f"{path}: not readable"))
    files = [(n, getattr(cfg.cues, n).file) for n in CUE_NAMES if getattr(cfg.cues, n).file]
    if files:
        from ..audio.cues import CueFileError, load_wav

        for n, f in files:
            try:
                load_wav(f)
            except CueFileError as exc:
                out.append((f"cues.{n}.file", str(exc)))
    return out


def _mqtt_check(m: MqttConfig) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if m.enabled and not m.host:
        out.append(("mqtt.host", "required when mqtt.enabled is true"))
    if m.cert_file and not m.key_file:
        out.append(("mqtt.key_file", "required with cert_file (the client certificate's private key)"))
    if m.key_file and not m.cert_file:
        out.append(("mqtt.cert_file", "required with key_file"))
    for key in ("ca_file", "cert_file", "key_file"):
        if getattr(m, key) and not m.tls:
            out.append((f"mqtt.{key}", "needs mqtt.tls = true"))
    for key in ("ca_file", "cert_file", "key_file", "password_file"):
        if getattr(m, key) and not os.path.isabs(getattr(m, key)):
            out.append((f"mqtt.{key}", "must be an absolute path"))
    if m.password_file and not m.username:
        out.append(("mqtt.username", "required with password_file"))
    if m.backoff_initial_s > m.backoff_max_s:
        out.append(("mqtt.backoff_initial_s", "must not exceed backoff_max_s"))
    return out


def default_path() -> str:
    return config_path()


def load(path: str | os.PathLike[str] | None = None, *, check_files: bool = True) -> Config:
    """Read and validate a config file.  ``check_files=False`` skips the checks of files it names
    (custom wake models, cue WAVs): for a file meant for another machine."""
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
    return parse(data, file, check_files=check_files)


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
    return parse(_drop_none(data), cfg.path or "<config>", check_files=True)
