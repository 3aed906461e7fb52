"""Configuration: schema, loading, validation, atomic writes.

One TOML file (``/etc/edged/edged.toml`` by default; ``--config`` or
``$EDGED_CONFIG`` override).  Every problem is reported as
``FILE: section.key: reason`` and is a :class:`ConfigError` (exit 78).

Callers import from ``edged.config``, which re-exports its modules' public names:
``schema`` (the section models and ``Config``), ``loading`` (``load``, ``parse``, the checks,
one key read or changed), ``writing`` (``write_atomic``, ``save``) and ``over_socket`` (what
``config set`` may change over the control socket).
"""

from __future__ import annotations

from ..errors import ConfigError, ConfigErrors
from ..paths import DEFAULT_CONFIG as DEFAULT_PATH
from .loading import coerce_value, default_path, get_key, load, parse, with_value
from .over_socket import (
    NEVER_OVER_SOCKET,
    SOCKET_SECTIONS,
    NotSettableError,
    check_alsa_pcm,
    check_settable_over_socket,
)
from .schema import (
    CUE_NAMES,
    INPUT_KINDS,
    OUTPUT_KINDS,
    AudioConfig,
    CameraConfig,
    Config,
    ControlConfig,
    CueConfig,
    CuesConfig,
    DeviceKind,
    GpioConfig,
    GpioDevice,
    LiveConfig,
    LogConfig,
    MqttConfig,
    StateConfig,
    TimersConfig,
    TurnConfig,
    WakeConfig,
    device_id,
)
from .writing import STALE_TEMP_S, remove_stale_temps, save, write_atomic

__all__ = [
    # the schema
    "INPUT_KINDS", "OUTPUT_KINDS", "CUE_NAMES", "DeviceKind", "device_id",
    "Config", "LiveConfig", "AudioConfig", "WakeConfig", "TurnConfig", "StateConfig", "ControlConfig",
    "GpioDevice", "GpioConfig", "CameraConfig", "CueConfig", "CuesConfig", "TimersConfig", "MqttConfig",
    "LogConfig",
    # loading and validation (ConfigError / ConfigErrors: edged.errors, what they raise)
    "ConfigError", "ConfigErrors", "DEFAULT_PATH", "default_path", "load", "parse", "get_key", "coerce_value",
    "with_value",
    # writing
    "STALE_TEMP_S", "write_atomic", "remove_stale_temps", "save",
    # what the control socket may change
    "SOCKET_SECTIONS", "NEVER_OVER_SOCKET", "NotSettableError", "check_alsa_pcm", "check_settable_over_socket",
]

