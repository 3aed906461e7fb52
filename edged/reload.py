"""What a reload changes: the rules :meth:`edged.app.App.apply` follows (it does the closing,
rebuilding and reopening).

- ``changed_sections``: the config sections that differ;
- ``refuse_restart_only``: ``state`` and ``control`` (paths the service manager set up) take a restart;
- ``groups_to_restart``: which of the root's groups a change closes and reopens:
  ``gpio``/``camera`` -> devices; ``wake``/``turn`` -> hearing; ``audio`` -> player and hearing;
  ``live``/``gpio``/``camera`` -> live (a new setup: model, voice, tools).  ``cues``, ``timers``,
  ``mqtt`` and ``log`` are applied to the running parts;
- ``reread_key``: the API key as it is now, for a new Live session when it changed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .errors import ConfigError
from .secrets import load_api_key

if TYPE_CHECKING:
    from .config import Config
    from .secrets import Secret

log = logging.getLogger("edged.app")  # the name its line had before the split (the journal's LOGGER field)

RELOAD_STOP_S = 4.0  # stopping the parts a reload replaces


def changed_sections(old: Config, new: Config) -> set[str]:
    return {name for name in type(new).model_fields if getattr(old, name) != getattr(new, name)}


def refuse_restart_only(new: Config, changed: set[str]) -> None:
    """Raise ConfigError when a section that takes a restart changed."""
    if "state" in changed or "control" in changed:
        # paths the service manager set up; they take a restart
        raise ConfigError(new.path, "state" if "state" in changed else "control",
                          "changing this takes a restart (systemctl restart edged)")


def groups_to_restart(changed: set[str]) -> list[str]:
    restart: list[str] = []
    if changed & {"gpio", "camera"}:
        restart.append("devices")
    if changed & {"wake", "turn", "audio"}:
        restart += ["player", "hearing"] if "audio" in changed else ["hearing"]
    if changed & {"live", "gpio", "camera"}:
        # a new setup (model, voice, tools): a new connection, resuming the same conversation
        restart.append("live")
    return restart


def reread_key(current: Secret | None, cfg: Config) -> Secret | None:
    """The key as it is now in live.api_key_file or the credential (one from the environment
    cannot change: it was read once and removed); the current one when it cannot be read."""
    if current is not None and current.source.startswith("$"):
        return current
    try:
        return load_api_key(cfg.live.api_key_file, cfg.path)
    except ConfigError as exc:
        log.warning("reload: the API key cannot be read again (%s): keeping the current one", exc)
        return current
