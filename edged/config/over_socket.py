"""What ``config set`` may change over the control socket, whoever asks: the sections, the keys
that only root may change by editing the file, and the ALSA PCM names that are safe to take."""

from __future__ import annotations

import re
from typing import Any

from ..errors import ConfigError

# -- what the control socket may change ---------------------------------------------------------
# Sections whose keys ``config set`` may change over the socket.  Any other section (state,
# control, and every section added later) is refused until it is listed here: fail closed.
SOCKET_SECTIONS = frozenset({"live", "audio", "wake", "turn", "gpio", "camera", "cues", "timers", "log"})
# mqtt stays file-only: its host, certificates and password file decide where credentials go.
# Keys inside those sections that only root may change, by editing the file: where the API key
# is sent, which CA is trusted, where the key is read from, and where code-like files are loaded.
NEVER_OVER_SOCKET = frozenset({"live.base_url", "live.ca_file", "live.api_key_file", "live.api_version",
                               "wake.models_dir"})
# PCM name prefixes that take only card/device arguments (see check_alsa_pcm below).
_PCM_ARGS = {"hw": ("CARD", "DEV", "SUBDEV"), "plughw": ("CARD", "DEV", "SUBDEV"), "sysdefault": ("CARD",),
             "dmix": ("CARD", "DEV"), "dsnoop": ("CARD", "DEV")}
# Plugins that write audio to a file, a command, shared memory or load code.
_WRITING_PLUGINS = {"file": "writes audio into a file, or into a command when the name starts with '|'",
                    "pipe": "feeds audio to a command", "tee": "writes audio into a file",
                    "shm": "exchanges audio through a shared-memory server",
                    "ladspa": "loads a LADSPA plugin library"}
_PCM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_CARD_RE = re.compile(r"^[A-Za-z0-9_]{1,32}$")
_NUM_RE = re.compile(r"^\d{1,3}$")


class NotSettableError(ConfigError, PermissionError):
    """A key (or value) that the control socket may not set, whoever asks."""


def check_alsa_pcm(name: object) -> str:
    """The reason ``name`` is not a PCM name that is safe to take from the control socket, or "".

    alsa-lib parses a PCM name as configuration: ``file:'|cmd',raw`` runs ``cmd`` through
    popen(), ``file:/path`` writes there, braces and quotes open inline definitions.  Accepted:
    named PCMs (``mic``, ``echo-cancel``: letters, digits, ``_`` and ``-``), ``default``,
    ``pipewire``, ``pulse``, and ``hw:``/``plughw:``/``sysdefault:``/``dmix:``/``dsnoop:`` with
    card and device arguments only (``hw:1,0``, ``plughw:CARD=Device,DEV=0``).
    """
    if not isinstance(name, str):
        return f"must be a string (an ALSA PCM name), not {type(name).__name__}"
    if not name:
        return "is empty"
    if len(name) > 128:
        return "is too long for an ALSA PCM name"
    if "|" in name:
        return "contains '|': ALSA's file plugin would run the rest as a shell command"
    if "'" in name or '"' in name:
        return "contains a quote: ALSA would read the rest as its own configuration"
    if "{" in name or "}" in name:
        return "contains a brace: an inline ALSA definition"
    base, colon, args = name.partition(":")
    if base.lower() in _WRITING_PLUGINS:
        return f"is ALSA's inline {base.lower()!r} plugin, which {_WRITING_PLUGINS[base.lower()]}"
    if not colon:
        if _PCM_NAME_RE.match(name):
            return ""
        return ("is not a PCM name: use a named PCM (letters, digits, '_' and '-'), default, pipewire, pulse, "
                "or hw:CARD,DEV")
    if base not in _PCM_ARGS:
        return (f"{base + ':'!r} is not accepted over the control socket: use a named PCM or "
                f"{'/'.join(k + ':' for k in _PCM_ARGS)} with card and device arguments")
    return _check_pcm_args(base, args)


def _check_pcm_args(base: str, args: str) -> str:
    names = _PCM_ARGS[base]
    items = args.split(",")
    if not args or len(items) > len(names):
        return f"{base}: takes {', '.join(names)} (e.g. {base}:1{',0' if len(names) > 1 else ''})"
    seen: set[str] = set()
    for pos, item in enumerate(items):
        key, eq, value = item.partition("=")
        if not eq:
            key, value = names[pos], item
        if key not in names or key in seen:
            return f"{base}: argument {item!r} is not one of {', '.join(names)}"
        seen.add(key)
        if not (_CARD_RE if key == "CARD" else _NUM_RE).match(value):
            what = "a card number or name" if key == "CARD" else "a number"
            return f"{base}: {key} must be {what}, not {value!r}"
    if "CARD" not in seen:
        return f"{base}: needs a card (e.g. {base}:1 or {base}:CARD=Device)"
    return ""


def check_settable_over_socket(key: str, value: Any, file: str = "<config>") -> None:
    """Raise :class:`NotSettableError` if ``config set key value`` must be refused on the socket.

    The daemon calls it before anything else in its config.set path, for every caller, root
    included: endpoint and secret keys (``NEVER_OVER_SOCKET``), sections outside
    ``SOCKET_SECTIONS`` (``state.*``, ``control.*``, ...), ALSA device names that could run a
    command or write a file, and wake models given as paths.  The root-owned file may still set
    any of these.
    """
    parts = key.split(".") if isinstance(key, str) else []
    if len(parts) < 2 or not all(parts):
        raise NotSettableError(file, str(key), "give section.key, e.g. wake.threshold")
    root = f"edit {file} as root" if file != "<config>" else "edit the config file as root"
    if parts[0] not in SOCKET_SECTIONS:
        raise NotSettableError(file, key, f"the {parts[0]} section cannot be changed over the control socket: {root}")
    if key in NEVER_OVER_SOCKET or (parts[0] == "cues" and parts[-1] == "file"):
        raise NotSettableError(file, key, f"cannot be changed over the control socket: {root}")
    if parts[0] == "audio" and parts[-1].endswith("_device"):
        reason = check_alsa_pcm(value)
        if reason:
            raise NotSettableError(file, key, f"{value!r} refused over the control socket: {reason}")
    if key == "wake.models":
        for name in value if isinstance(value, list) else [value]:
            if not isinstance(name, str) or not _PCM_NAME_RE.match(name.replace(".", "_")) or \
                    name.endswith(".onnx") or ".." in name:
                raise NotSettableError(file, key, f"{name!r} refused over the control socket: give a built-in "
                                       f"model name (e.g. hey_jarvis); a custom .onnx file is set in the file by root")
