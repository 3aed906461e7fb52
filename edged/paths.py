"""Where edged's files are by default: the config file and the control socket.

Standard library only: ``edgectl`` finds the socket here without loading the configuration, which
imports and runs pydantic (0.7 s of every edgectl command in the VM bench's guest, most of it).
"""

from __future__ import annotations

import os
import tomllib

DEFAULT_CONFIG = "/etc/edged/edged.toml"
DEFAULT_SOCKET = "/run/edged/control.sock"


def config_path(given: str | os.PathLike[str] | None = None) -> str:
    """The config file: the one given, else ``$EDGED_CONFIG``, else the default."""
    return os.fspath(given) if given else (os.environ.get("EDGED_CONFIG") or DEFAULT_CONFIG)


def control_socket(config: str | os.PathLike[str] | None = None) -> str:
    """``control.socket`` as the config file sets it, read as plain TOML; the default socket when the
    file cannot be read (a non-member of the edged group may not read it) or does not set the key.
    The daemon validates the whole file when it loads it; this only says where to knock."""
    try:
        with open(config_path(config), "rb") as f:
            value = tomllib.load(f).get("control", {}).get("socket")
    except (OSError, tomllib.TOMLDecodeError, AttributeError):
        return DEFAULT_SOCKET
    return value if isinstance(value, str) and value else DEFAULT_SOCKET
