"""The session-resumption handle, persisted so a restart (even ``kill -9``) resumes the session.

``CurrentHandle(store)``: the handle the Live session resumes with (``get()``, ``keep(handle)``, ``drop()``).
``HandleStore(path, max_age_s)``: ``load() -> Handle | None``, ``save(handle)``, ``clear()``.
The file is JSON ``{"handle", "received_at" (wall clock, s), "session_id"}``, written atomically
(temp file in the same directory, fsync, rename, fsync of the directory) with mode 0600.
A missing or too old file is no handle.  A bad one (over ``MAX_FILE_BYTES``, not a regular
file, not UTF-8 JSON, wrong types, a non-finite or future time) is moved aside as
``<name>.bad-<UTC time>`` for inspection (the newest ``KEEP_BAD`` are kept), logged, and
``load()`` returns None: a fresh session starts.  Nothing is ever raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import remove_stale_temps, write_atomic

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 64 * 1024  # a handle is a few hundred bytes
MAX_HANDLE_CHARS = 16 * 1024
FUTURE_SLACK_S = 300.0  # a clock stepped back a little must not throw a fresh handle away
KEEP_BAD = 3


class BadHandleFile(ValueError):
    """The handle file is not one this store wrote."""


@dataclass(frozen=True)
class Handle:
    value: str
    received_at: float  # time.time() when the server sent it (persisted, so wall clock)
    session_id: str | None = None

    def age(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.received_at)

    def __repr__(self) -> str:  # handles grant access to a conversation: never logged whole
        return f"Handle({self.value[:6]}..., age={self.age():.0f}s, session_id={self.session_id!r})"

    __str__ = __repr__


class HandleStore:
    def __init__(self, path: str | os.PathLike[str], max_age_s: float) -> None:
        self.path = Path(path)
        self.max_age_s = max_age_s

    def load(self) -> Handle | None:
        removed = remove_stale_temps(self.path)  # from a kill -9 during a save: never the state itself
        if removed:
            log.info("removed %d unfinished handle file(s) left by an earlier crash", removed)
        try:
            handle = self._read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read the resumption handle %s (%s): starting a fresh session", self.path,
                        exc.strerror or exc)
            return None
        except BadHandleFile as exc:
            kept = self._move_aside()
            log.warning("the resumption handle file %s is bad (%s): %s; starting a fresh session", self.path, exc,
                        f"kept as {kept.name}" if kept else "could not move it aside")
            return None
        age = handle.age()
        if age > self.max_age_s:
            log.info("the resumption handle is %.0f s old (limit %.0f s): starting a fresh session",
                     age, self.max_age_s)
            return None
        return handle

    def _read(self) -> Handle:
        # O_NONBLOCK: a FIFO put in its place must not hang the daemon; O_NOFOLLOW: no symlinks
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise BadHandleFile("not a regular file")
            if st.st_size > MAX_FILE_BYTES:
                raise BadHandleFile(f"{st.st_size} bytes, over the {MAX_FILE_BYTES}-byte cap")
            raw = f.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise BadHandleFile(f"over the {MAX_FILE_BYTES}-byte cap")
        return parse_handle(raw, time.time())

    def _move_aside(self) -> Path | None:
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
        target = self.path.with_name(f"{self.path.name}.bad-{stamp}")  # sorts by time
        try:
            os.replace(self.path, target)
        except OSError as exc:
            log.warning("cannot move %s aside: %s", self.path, exc.strerror or exc)
            with contextlib.suppress(OSError):
                self.path.unlink()
            return None
        for old in sorted(self.path.parent.glob(f"{self.path.name}.bad-*"))[:-KEEP_BAD]:
            with contextlib.suppress(OSError):
                old.unlink()
        return target

    def save(self, handle: Handle | str, session_id: str | None = None) -> Handle:
        if isinstance(handle, str):
            handle = Handle(handle, time.time(), session_id)
        data = {"handle": handle.value, "received_at": handle.received_at, "session_id": handle.session_id}
        write_atomic(self.path, json.dumps(data) + "\n", mode=0o600)
        return handle

    def clear(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove the resumption handle %s: %s", self.path, exc)


class CurrentHandle:
    """The handle the session resumes with: read from the store at the first connection, replaced (and
    persisted) by every resumable update, dropped when it must not be used again.  One per LiveSession."""

    def __init__(self, store: HandleStore) -> None:
        self.store = store
        self.handle: Handle | None = None
        self._loaded = False

    def get(self) -> Handle | None:
        """The handle for the next connection, or None (a fresh session)."""
        if not self._loaded:
            self.handle = self.store.load()
            self._loaded = True
        h = self.handle
        if h is not None and h.age() > self.store.max_age_s:
            log.info("the resumption handle is too old (%.0f s): starting a fresh session", h.age())
            self.handle = h = None
        return h

    async def keep(self, handle: Handle) -> None:
        """A new resumable handle: use it from now on, and persist it (in a thread)."""
        self.handle, self._loaded = handle, True
        try:
            await asyncio.to_thread(self.store.save, handle)
        except OSError as exc:
            log.warning("cannot persist the resumption handle in %s: %s", self.store.path, exc)

    def drop(self) -> None:
        """Forget the handle, here and on disk: the next connection starts a fresh session."""
        self.handle = None
        self._loaded = True
        self.store.clear()


def parse_handle(raw: bytes, now: float) -> Handle:
    """A Handle from the file's bytes, or BadHandleFile saying what is wrong."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadHandleFile("not UTF-8") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise BadHandleFile(f"not JSON: {getattr(exc, 'msg', exc)}") from None
    if not isinstance(data, dict):
        raise BadHandleFile(f"a JSON {type(data).__name__}, not an object")
    value, received_at, session_id = data.get("handle"), data.get("received_at"), data.get("session_id")
    if not isinstance(value, str) or not value:
        raise BadHandleFile("handle is not a non-empty string")
    if len(value) > MAX_HANDLE_CHARS:
        raise BadHandleFile(f"handle is {len(value)} characters long")
    if isinstance(received_at, bool) or not isinstance(received_at, int | float):
        raise BadHandleFile(f"received_at is not a number ({type(received_at).__name__})")
    if not math.isfinite(received_at):
        raise BadHandleFile(f"received_at is not finite ({received_at})")
    if received_at > now + FUTURE_SLACK_S:
        raise BadHandleFile(f"received_at is {received_at - now:.0f} s in the future")
    if session_id is not None and not isinstance(session_id, str):
        raise BadHandleFile(f"session_id is not a string ({type(session_id).__name__})")
    return Handle(value, float(received_at), session_id)
