"""``edgectl config validate`` and ``edgectl config set``: done by edgectl, in the caller's name.

Neither asks the daemon to read or write a file for the caller: ``validate`` reads the file with
the caller's own permissions, ``set`` reads the file the daemon runs with (its path comes from
``status``), validates the whole config with the new value, writes it atomically keeping its mode
and owner, and only then asks the daemon to ``reload``.  A caller who may not write the file gets
"permission denied" naming it, and nothing changes.
"""

from __future__ import annotations

import errno
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from . import config
from .control_client import ControlClient
from .errors import EX_CONFIG, EX_ERROR, EX_OK, ConfigError, EdgedError, NotRunningError

EX_NOPERM = 77  # sysexits.h: the caller may not do this (write the config file)


class PermissionDenied(EdgedError):
    exit_code = EX_NOPERM


def validate(file: str | None, *, portable: bool, as_json: bool) -> int:
    """``config validate [--portable] [FILE]``: exit 0, or 78 with ``FILE: section.key: reason`` lines."""
    try:
        cfg = config.load(file, check_files=not portable)
    except ConfigError as exc:
        errors = getattr(exc, "errors", [exc])
        if as_json:
            print(json.dumps({"valid": False, "file": exc.file, "errors": [str(e) for e in errors]}, indent=2))
        else:
            print(str(exc), file=sys.stderr)
        return EX_CONFIG
    print(json.dumps({"valid": True, "file": cfg.path}) if as_json else f"{cfg.path}: ok")
    return EX_OK


# -- what may never be set over the socket --------------------------------------------------------
# The rule's one owner is edged.config.over_socket.  Endpoint and secret keys, and the state and
# control sections, are changed only by editing the file as root (issue 11).
def check_settable(key: str, value: Any, file: str) -> None:
    """Raise ConfigError if ``config set`` must refuse this key (or value), whoever asks: the same
    rule as the control socket's (endpoint, secret, state and control keys; ALSA names that could run
    a command), so edgectl is no way around it."""
    config.check_settable_over_socket(key, value, file)


# -- config set -----------------------------------------------------------------------------------
def daemon_config_path(client: ControlClient) -> str | None:
    """The file the running daemon uses, or None when it is not running."""
    try:
        status = client.request("status")
    except NotRunningError:
        return None
    path = status.get("config") if isinstance(status, dict) else None
    if not path:
        raise EdgedError("the daemon was started without a config file: there is nothing to set")
    return str(path)


def read_text(path: str) -> str:
    try:
        return Path(path).read_bytes().decode("utf-8")
    except PermissionError:
        raise PermissionDenied(f"{path}: permission denied: cannot read the config file "
                               "(run as root, or as a member of the group that may read it)") from None
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "", "not UTF-8 text") from None


def parse_toml(path: str, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"TOML syntax: {exc}") from None


def with_key(raw: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of the file's own tables with one key set (keys the file leaves out stay out)."""
    out = json.loads(json.dumps(raw))  # TOML values are JSON values but for dates, which edged has none of
    node = out
    *sections, last = key.split(".")
    for part in sections:
        node = node.setdefault(part, {})
    node[last] = value
    return out


def inline(value: Any) -> str:
    """A TOML value on one line (tomli_w writes arrays over several)."""
    if isinstance(value, list):
        return "[" + ", ".join(inline(x) for x in value) + "]"
    return tomli_w.dumps({"v": value})[4:].strip()


_HEADER = re.compile(r"^\s*\[([A-Za-z0-9_.]+)\]\s*(#.*)?$")


def edit_text(text: str, key: str, value: Any, expected: dict[str, Any]) -> str:
    """The file's text with one ``key = value`` line changed or added, its comments kept; when the
    result would not read back as exactly ``expected`` (a value over several lines, dotted keys,
    inline tables), the whole file is written anew from ``expected``."""
    *sections, last = key.split(".")
    section = ".".join(sections)
    rendered = f"{last} = {inline(value)}" if isinstance(value, list) else tomli_w.dumps({last: value}).strip()
    if "\n" in rendered:  # a table or an array of tables: no single line
        return tomli_w.dumps(expected)
    lines = text.splitlines()
    current, header_at, end_at, replaced = "", None, None, False
    for i, line in enumerate(lines):
        m = _HEADER.match(line)
        if m:
            if current == section and header_at is not None:
                end_at = i  # the section ends here without the key
                break
            current = m.group(1)
            if current == section:
                header_at = i
            continue
        if current == section and re.match(rf"^\s*{re.escape(last)}\s*=", line):
            comment = re.search(r"\s+#[^\"']*$", line)
            lines[i] = rendered + (comment.group(0) if comment else "")
            replaced = True
            break
    if not replaced:
        if header_at is None:
            lines += ["", f"[{section}]", rendered]
        else:
            at = end_at if end_at is not None else len(lines)
            while at > header_at + 1 and not lines[at - 1].strip():
                at -= 1
            lines.insert(at, rendered)
    out = "\n".join(lines) + "\n"
    try:
        if tomllib.loads(out) == expected:
            return out
    except tomllib.TOMLDecodeError:
        pass
    return tomli_w.dumps(expected)


def set_key(client: ControlClient, fallback_path: str, key: str, text: str) -> dict[str, Any]:
    """Set ``key`` in the daemon's config file, then reload the daemon.  Returns what was done."""
    path = daemon_config_path(client)
    running = path is not None
    path = path or fallback_path
    value = config.coerce_value(text)
    check_settable(key, value, path)
    text = read_text(path)
    raw = parse_toml(path, text)
    current = config.parse(raw, path, check_files=False)  # the file as it is (a broken file is refused)
    new = config.with_value(current, key, value)  # validates the whole config with the new value
    written = with_key(raw, key, config.get_key(new, key))
    config.parse(written, path, check_files=True)  # what is written is exactly what was validated
    try:
        config.write_atomic(path, edit_text(text, key, config.get_key(new, key), written))
    except PermissionError as exc:
        raise PermissionDenied(f"{path}: permission denied: {exc.strerror or exc}; nothing was changed "
                               "(config set writes the file as you: run it as root or as the file's owner)") from None
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise PermissionDenied(f"{path}: cannot write: {exc.strerror}; nothing was changed") from None
        raise EdgedError(f"{path}: cannot write: {exc.strerror or exc}; nothing was changed") from None
    result: dict[str, Any] = {"key": key, "value": config.get_key(new, key), "written": path}
    if not running:
        result["reloaded"] = False
        result["note"] = "edged is not running: the new value applies when it starts"
        return result
    answer = client.call("reload")
    result["reloaded"] = bool(answer.get("ok"))
    if not answer.get("ok"):
        result["reload_error"] = f"{answer.get('error')} ({answer.get('kind')})"
    return result


def run_set(client: ControlClient, fallback_path: str, key: str, text: str, as_json: bool) -> int:
    result = set_key(client, fallback_path, key, text)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(f"{result['written']}: {key} = {inline(result['value'])}")
        if result.get("note"):
            print(result["note"])
    if "reload_error" in result:
        print(f"edgectl: config: saved {result['written']}, but the daemon did not reload: "
              f"{result['reload_error']}", file=sys.stderr)
        return EX_ERROR
    return EX_OK

