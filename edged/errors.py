"""One exception root for the project.

Each error also subclasses the fitting built-in, so callers that only know the
built-ins still catch it.  ``exit_code`` is what ``edged`` / ``edgectl`` exit
with when the error reaches the top level.
"""

from __future__ import annotations

EX_OK = 0
EX_ERROR = 1
EX_USAGE = 2
EX_UNAVAILABLE = 69  # daemon not running
EX_SOFTWARE = 70
EX_CONFIG = 78


class EdgedError(Exception):
    """Root of every error edged raises on purpose."""

    exit_code = EX_ERROR


class ConfigError(EdgedError, ValueError):
    """A configuration file or value is invalid.  Message: ``FILE: key: reason``."""

    exit_code = EX_CONFIG

    def __init__(self, file: str, key: str, reason: str) -> None:
        self.file = file
        self.key = key
        self.reason = reason
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {reason}")


class ConfigErrors(ConfigError):
    """Several configuration problems at once (all reported, one per line)."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        first = errors[0]
        EdgedError.__init__(self, "\n".join(str(e) for e in errors))
        self.file, self.key, self.reason = first.file, first.key, first.reason


class DeviceError(EdgedError, OSError):
    """An audio, GPIO or camera device failed or is missing."""


class ModelError(EdgedError, FileNotFoundError):
    """A wake-word or VAD model is missing or corrupt."""


class LiveError(EdgedError, ConnectionError):
    """The Live session failed."""


class AuthError(LiveError, PermissionError):
    """The Live API refused the credentials (close 1008 / HTTP 403)."""


class ToolError(EdgedError, ValueError):
    """A function call had bad arguments or could not be carried out."""


class ControlError(EdgedError):
    """The daemon answered a control request with an error."""


class NotRunningError(EdgedError, ConnectionRefusedError):
    """The daemon's control socket is not there or refuses connections."""

    exit_code = EX_UNAVAILABLE
