"""The API key: where it comes from, and how it is kept out of every output.

``load_api_key`` reads the key once and removes ``GEMINI_API_KEY``/``GOOGLE_API_KEY`` from the
environment (and wipes the value from the process's original environment block, which
``/proc/PID/environ`` shows), so no child inherits it.  ``harden_process`` (the daemon calls it
first thing) makes the process non-dumpable: no core file, no ptrace or ``/proc/PID/mem``,
``environ`` or ``fd`` access by other processes of the same user.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import resource
from pathlib import Path

from .errors import ConfigError

CREDENTIAL_NAME = "gemini-api-key"
ENV_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
_REDACTED = "***"
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4

log = logging.getLogger(__name__)


class Secret:
    """A string that never shows itself in ``str``, ``repr`` or f-strings."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(source={self.source!r}, value={_REDACTED})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self):  # never pickled into a crash dump or a subprocess
        raise TypeError("Secret cannot be pickled")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_known: set[str] = set()


def register(secret: Secret) -> None:
    """Remember a secret so the logging filter can scrub it from any message."""
    if secret.reveal():
        _known.add(secret.reveal())


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced, also in its JSON-escaped spelling."""
    for value in _known:
        if value and value in text:
            text = text.replace(value, _REDACTED)
        escaped = json.dumps(value, ensure_ascii=False)[1:-1]
        if escaped != value and escaped in text:
            text = text.replace(escaped, _REDACTED)
    return text


def known() -> bool:
    """Whether any secret is registered (callers may skip scrubbing when none is)."""
    return bool(_known)


class RedactFilter(logging.Filter):
    """Replaces any registered secret in a record's final message and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _known:
            return True
        msg = record.getMessage()
        clean = scrub(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            import traceback

            text = "".join(traceback.format_exception(*record.exc_info))
            if scrub(text) != text:
                record.exc_text = scrub(text)
                record.exc_info = None
        return True


def load_api_key(api_key_file: str, config_file: str = "", *, forget: bool = False) -> Secret | None:
    """Find the key: environment, then ``live.api_key_file``, then the systemd credential.

    Returns None when there is none (the emulator needs none).  A file that is
    named but unreadable is a config error naming the file, never the key.  ``forget`` (the
    daemon) removes the key variables from the environment once read, so no child inherits
    them; a command-line tool such as ``edgectl doctor`` reads them as often as it needs.
    """
    from_env = None
    for var in ENV_VARS:
        value = os.environ.get(var, "").strip()
        if value and from_env is None:
            from_env = Secret(value, f"${var}")
    if forget:
        forget_environment()
    if from_env is not None:
        return _keep(from_env)
    if api_key_file:
        path = Path(api_key_file)
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(config_file or "config", "live.api_key_file",
                              f"cannot read {path}: {exc.strerror or exc}") from None
        if not value:
            raise ConfigError(config_file or "config", "live.api_key_file", f"{path} is empty")
        return _keep(Secret(value, str(path)))
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        path = Path(cred_dir) / CREDENTIAL_NAME
        if path.is_file():
            value = path.read_text(encoding="utf-8").strip()
            if value:
                return _keep(Secret(value, f"credential {CREDENTIAL_NAME}"))
    return None


def _keep(secret: Secret) -> Secret:
    register(secret)
    return secret


NO_KEY_FIX = ("put the key in /etc/edged/gemini-api-key (root, mode 0600; the unit loads it as the "
              f"{CREDENTIAL_NAME} credential), or set live.api_key_file or $GEMINI_API_KEY, then `edgectl reload`")


def missing_key(base_url: str, api_key: Secret | None) -> str | None:
    """Why the Live part must not connect for lack of a key, or None when it may.

    Google (an empty ``live.base_url``) needs a key: without one the Live part should stay in a
    "no key" state, connect to nothing and show this text with its fix.  Another endpoint (the
    local emulator) may be used without a key.
    """
    if api_key is not None and api_key.reveal():
        return None
    if base_url:
        return None
    return f"no API key: {NO_KEY_FIX}"


def forget_environment() -> None:
    """Remove the key variables from the environment children inherit, and wipe their values
    from the environment block the process started with (``/proc/PID/environ`` reads it)."""
    for var in ENV_VARS:
        if var in os.environ:
            _wipe_c_environ(var)
            os.environ.pop(var, None)  # unsetenv(): gone from the C environ children get


def _wipe_c_environ(var: str) -> None:
    try:
        libc = ctypes.CDLL(None)
        environ = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
    except (OSError, ValueError):
        return
    prefix = var.encode() + b"="
    i = 0
    while environ[i]:
        addr = environ[i]
        entry = ctypes.string_at(addr)
        if entry.startswith(prefix):
            ctypes.memset(addr + len(prefix), 0, len(entry) - len(prefix))
        i += 1


def harden_process() -> bool:
    """Make this process non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``) and forbid core files.

    Non-dumpable: no core dump, and other processes of the same user can neither ptrace it nor
    read its ``/proc/PID/mem``, ``environ`` or open files.  Returns False (and logs) if the
    kernel refused."""
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError) as exc:
        log.warning("cannot forbid core files: %s", exc)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        log.warning("prctl(PR_SET_DUMPABLE, 0) failed: %s", os.strerror(ctypes.get_errno()))
        return False
    return True


def is_dumpable() -> bool:
    libc = ctypes.CDLL(None)
    return libc.prctl(PR_GET_DUMPABLE, ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0),
                      ctypes.c_ulong(0)) == 1
