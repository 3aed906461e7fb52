"""The session-resumption handle, persisted so a restart (even ``kill -9``) resumes the session.

``HandleStore(path, max_age_s)``: ``load() -> Handle | None``, ``save(handle)``, ``clear()``.
The file is JSON ``{"handle", "received_at" (wall clock, s), "session_id"}``, written atomically
(temp file in the same directory, fsync, rename, fsync of the directory) with mode 0600.
A missing, corrupt or too old file is treated as no handle (logged, never raised).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import remove_stale_temps, write_atomic

log = logging.getLogger(__name__)


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
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("cannot read the resumption handle %s (%s): starting a fresh session", self.path, exc)
            return None
        try:
            data = json.loads(text)
            handle = Handle(str(data["handle"]), float(data["received_at"]), data.get("session_id"))
            if not handle.value:
                raise ValueError("empty handle")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("the resumption handle file %s is corrupt (%s): starting a fresh session", self.path, exc)
            return None
        age = handle.age()
        if age > self.max_age_s:
            log.info("the resumption handle is %.0f s old (limit %.0f s): starting a fresh session",
                     age, self.max_age_s)
            return None
        return handle

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
