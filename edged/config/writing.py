"""Writing files: atomically (a crash leaves the old content or the new), the temp files a killed
write leaves behind, and saving a Config."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from .schema import Config


def write_atomic(path: str | os.PathLike[str], text: str, mode: int | None = None) -> None:
    """Write a file so that a crash leaves either the old or the new content: temp, fsync, rename.

    ``mode=None`` keeps the mode and the owner of the file it replaces (0644 and the caller for a
    new file); a caller who may not give the new file that owner gets PermissionError and the old
    file stays.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keep = None
    if mode is None:
        try:
            keep = path.stat()
        except FileNotFoundError:
            mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    f = os.fdopen(fd, "w", encoding="utf-8")  # closes fd on every path below
    try:
        if keep is not None:
            made = os.fstat(fd)
            if (made.st_uid, made.st_gid) != (keep.st_uid, keep.st_gid):
                os.fchown(fd, keep.st_uid, keep.st_gid)  # before the mode: chown clears setuid/setgid bits
            os.fchmod(fd, keep.st_mode & 0o7777)
        else:
            os.fchmod(fd, mode)  # type: ignore[arg-type]
        with f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        f.close()
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(path.parent, os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


STALE_TEMP_S = 60.0  # a save writes its temp file in well under this; an older one was left by a kill


def remove_stale_temps(path: str | os.PathLike[str], min_age_s: float = STALE_TEMP_S) -> int:
    """Delete temp files that write_atomic left behind when its process was killed mid-write.

    Only temp files older than ``min_age_s`` (by mtime): a younger one may belong to a save in
    flight (the session persists a new handle while a load runs), and deleting it would make that
    save fail.  Only for files with a single writer (the daemon's own state).
    """
    path = Path(path)
    removed = 0
    now = time.time()
    for stale in path.parent.glob(f".{path.name}.*"):
        try:
            if now - stale.stat().st_mtime < min_age_s:
                continue
            stale.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def save(cfg: Config, path: str | os.PathLike[str] | None = None) -> None:
    write_atomic(path or cfg.path, cfg.to_toml())
