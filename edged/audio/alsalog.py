"""Route libasound's own error printing into a logger, at debug level.

alsa-lib prints its errors straight to stderr (``ALSA lib confmisc.c:855:(parse_card) cannot find card
'0'``, 18 such lines when a machine has no sound card), before the daemon can say in one line what is
wrong.  ``install()`` replaces that printer with ``snd_lib_error_set_handler`` so each line becomes a
debug record of the ``edged.audio.alsalog`` logger; the daemon and ``edgectl doctor`` call it early, before
the first PCM or mixer is opened.

The handler is a C-variadic function ``(file, line, function, err, fmt, ...)``.  ctypes cannot read the
variable arguments portably, and guessing them from the calling convention could crash the process on a
``%s`` for a debug line, so the record carries ``file:line (function)``, the format string as it is, and
``snd_strerror(err)``: e.g. ``alsa-lib confmisc.c:855 (parse_card): cannot find card '%s'``.
The ctypes callback object is kept in this module for as long as it is installed, so it is never
collected while alsa-lib may call it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading

log = logging.getLogger(__name__)

_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_callback: ctypes._CFuncPtr | None = None  # kept referenced while installed
lines = 0  # records made, for status and tests


def _text(b: bytes | None) -> str:
    return b.decode("utf-8", "replace") if b else ""


def _handle(file: bytes | None, line: int, function: bytes | None, err: int, fmt: bytes | None) -> None:
    global lines
    try:
        msg = _text(fmt).rstrip("\n")
        if err and _lib is not None:
            msg += f": {_text(_lib.snd_strerror(err))}"
        lines += 1
        log.debug("alsa-lib %s:%d (%s): %s", _text(file), line, _text(function), msg)
    except Exception:  # never let an exception cross into C (ctypes would print it to stderr)
        pass


def _load() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("asound") or "libasound.so.2"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        log.debug("alsa-lib not loaded (%s): its messages are not routed", exc)
        return None
    lib.snd_lib_error_set_handler.argtypes = [_HANDLER]
    lib.snd_lib_error_set_handler.restype = ctypes.c_int
    lib.snd_strerror.argtypes = [ctypes.c_int]
    lib.snd_strerror.restype = ctypes.c_char_p
    return lib


def install() -> bool:
    """Route alsa-lib's error lines to this module's logger.  Returns False when libasound is absent.
    Idempotent."""
    global _lib, _callback
    with _lock:
        if _callback is not None:
            return True
        lib = _load()
        if lib is None:
            return False
        cb = _HANDLER(_handle)
        if lib.snd_lib_error_set_handler(cb) != 0:
            log.debug("snd_lib_error_set_handler failed: alsa-lib keeps printing to stderr")
            return False
        _lib, _callback = lib, cb
        return True


def uninstall() -> None:
    """Give alsa-lib its own printer back (it then prints to stderr again)."""
    global _callback
    with _lock:
        if _lib is not None and _callback is not None:
            _lib.snd_lib_error_set_handler(_HANDLER())  # a NULL handler: alsa-lib's default
        _callback = None


def installed() -> bool:
    return _callback is not None
