"""The control socket: newline-delimited JSON over a Unix stream socket (see docs/CONTROL.md).

    request   {"cmd": "status", ...args}\\n
    response  {"ok": true, "result": ...}\\n
              {"ok": false, "error": "<message>", "kind": "usage|config|not_found|failed|permission"}\\n

Who may connect is decided by SO_PEERCRED (the socket file's 0660 mode is only a second
fence): root, the daemon's own uid, and members of the control group.  The ``events``
command turns a connection into a stream of ``{"event": ...}`` lines fed by ``EventHub``.

The handler (the daemon's) is ``async def handler(request: dict) -> result`` where result is
any JSON value; it reports errors by raising ``CommandError(message, kind)``; other
exceptions are mapped (ConfigError -> config, LookupError -> not_found, ValueError -> usage,
anything else -> failed, logged with its traceback).  No handler error stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import pwd
import socket
import stat
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ControlError
from ..secrets import scrub

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
KINDS = ("usage", "config", "not_found", "failed", "permission")
COMMANDS = ("status", "config.show", "config.get", "config.set", "config.validate", "reload", "gpio.list",
            "gpio.set", "wake", "say", "snapshot", "session.reset", "mute", "events")
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13


class CommandError(ControlError):
    """Raised by a handler: becomes ``{"ok": false, "error": message, "kind": kind}``."""

    def __init__(self, message: str, kind: str = "failed") -> None:
        if kind not in KINDS:
            raise ValueError(f"error kind must be one of {', '.join(KINDS)}, not {kind!r}")
        super().__init__(message)
        self.kind = kind


def error_response(message: str, kind: str) -> dict[str, Any]:
    return {"ok": False, "error": scrub(message), "kind": kind}


def encode(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), default=str, ensure_ascii=False) + "\n").encode("utf-8")


# -- events --------------------------------------------------------------------------------
class Subscription:
    """One subscriber's bounded queue: when full the oldest event is dropped and counted; the
    reader then gets ``{"event": "dropped", "count": n}`` before the events that were kept."""

    def __init__(self, maxsize: int) -> None:
        self._queue: deque[dict[str, Any]] = deque()
        self._maxsize = maxsize
        self._wake = asyncio.Event()
        self.dropped = 0  # not yet reported
        self.dropped_total = 0
        self.closed = False

    def put(self, event: dict[str, Any]) -> None:
        if len(self._queue) >= self._maxsize:
            self._queue.popleft()
            self.dropped += 1
            self.dropped_total += 1
        self._queue.append(event)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def get(self) -> dict[str, Any] | None:
        """The next event (or a dropped notice); None once closed."""
        while True:
            if self.dropped:
                n, self.dropped = self.dropped, 0
                return {"event": "dropped", "count": n}
            if self._queue:
                return self._queue.popleft()
            if self.closed:
                return None
            self._wake.clear()
            await self._wake.wait()


class EventHub:
    """Fans events out to subscribers.  ``publish`` must be called on the loop (from a thread:
    ``loop.call_soon_threadsafe(hub.publish, event)``).  Adds ``"time"`` (wall clock) if absent."""

    def __init__(self, queue_size: int = 256) -> None:
        if queue_size < 1:
            raise ValueError(f"event queue_size must be at least 1, not {queue_size}")
        self.queue_size = queue_size
        self._subs: set[Subscription] = set()
        self.published = 0

    def publish(self, event: dict[str, Any]) -> None:
        if not isinstance(event, dict) or "event" not in event:
            raise ValueError(f"an event is a dict with an 'event' key, not {event!r}")
        event.setdefault("time", round(time.time(), 3))
        self.published += 1
        for sub in self._subs:
            sub.put(event)

    def subscribe(self) -> Subscription:
        sub = Subscription(self.queue_size)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        sub.close()

    @property
    def subscribers(self) -> int:
        return len(self._subs)


# -- peers ---------------------------------------------------------------------------------
def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the peer, from SO_PEERCRED."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)


def peer_groups(sock: socket.socket, pid: int) -> set[int]:
    """The peer's supplementary groups: SO_PEERGROUPS, else /proc/<pid>/status (may be hidden)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * 1024)
        return set(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))
    except OSError:
        pass
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Groups:"):
                return {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()


# -- server --------------------------------------------------------------------------------
class ControlServer:
    """``start()`` binds ``path`` (mode 0660, group ``group`` or the daemon's own group);
    ``stop()`` closes every connection and removes the file."""

    def __init__(self, path: str | os.PathLike[str], *, group: str = "", max_request_bytes: int = 65536,
                 handler: Handler, events: EventHub | None = None, max_connections: int = 16,
                 read_timeout_s: float = 60.0, socket_mode: int = 0o660) -> None:
        if max_request_bytes < 16:
            raise ValueError(f"max_request_bytes must be at least 16, not {max_request_bytes}")
        self.path = Path(path)
        self.group = group
        self.max_request_bytes = max_request_bytes
        self.handler = handler
        self.events = events if events is not None else EventHub()
        self.max_connections = max_connections
        self.read_timeout_s = read_timeout_s
        self.socket_mode = socket_mode
        self._server: asyncio.AbstractServer | None = None
        self._gid: int | None = None
        self._inode: tuple[int, int] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.refused = 0
        self.requests = 0
        self.errors = 0

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._gid = self._resolve_group()
        await self._remove_stale()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.start_unix_server(self._on_connect, path=str(self.path),
                                                       limit=self.max_request_bytes + 1)
        os.chmod(self.path, self.socket_mode)
        try:
            os.chown(self.path, -1, self._gid)
        except OSError as exc:
            log.warning("cannot give %s to group %s: %s", self.path, self.group or self._gid, exc.strerror)
        st = os.stat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        log.info("control socket listening on %s", self.path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        with contextlib.suppress(OSError):
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:  # never remove another daemon's socket
                self.path.unlink()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def stats(self) -> dict[str, Any]:
        return {"connections": len(self._tasks), "requests": self.requests, "errors": self.errors,
                "refused": self.refused, "subscribers": self.events.subscribers}

    def _resolve_group(self) -> int:
        if not self.group:
            return os.getegid()
        try:
            return grp.getgrnam(self.group).gr_gid
        except KeyError:
            raise ConfigError("config", "control.group", f"no such group {self.group!r}") from None

    async def _remove_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(f"{self.path} exists and is not a socket: remove it or set control.socket")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(self.path)), 2)
        except (OSError, TimeoutError):
            log.info("removing stale control socket %s", self.path)
            self.path.unlink(missing_ok=True)
            return
        writer.close()
        raise ControlError(f"another edged is already listening on {self.path}")

    # -- connections -------------------------------------------------------------------------
    def _allowed(self, sock: socket.socket) -> tuple[bool, str]:
        pid, uid, gid = peer_credentials(sock)
        if uid in (0, os.geteuid()) or gid == self._gid:
            return True, ""
        if self._gid in peer_groups(sock, pid):
            return True, ""
        with contextlib.suppress(KeyError):
            if pwd.getpwuid(uid).pw_name in grp.getgrgid(self._gid).gr_mem:  # type: ignore[arg-type]
                return True, ""
        try:
            group = grp.getgrgid(self._gid).gr_name  # type: ignore[arg-type]
        except KeyError:
            group = str(self._gid)
        return False, (f"permission denied: uid {uid} is not root, the service user or a member of group "
                       f"{group!r} (add the user to it: usermod -aG {group} USER)")

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if len(self._tasks) > self.max_connections:
                await self._send(writer, error_response(
                    f"too many connections (max {self.max_connections}): try again", "failed"))
                return
            ok, why = self._allowed(writer.get_extra_info("socket"))
            if not ok:
                self.refused += 1
                log.warning("control: %s", why)
                await self._send(writer, error_response(why, "permission"))
                return
            await self._serve(reader, writer)
        except (ConnectionError, TimeoutError):
            pass
        except asyncio.CancelledError:
            # stop() cancels connections; Python 3.11's stream callback would log a cancelled
            # task as an error, and nothing awaits this task but stop()
            pass
        except Exception:
            log.exception("control connection failed")
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), self.read_timeout_s)
            except TimeoutError:
                await self._send(writer, error_response(
                    f"no request within {self.read_timeout_s:g} s: closing", "usage"))
                return
            except (ValueError, asyncio.LimitOverrunError):
                await self._send(writer, error_response(
                    f"request too large: over {self.max_request_bytes} bytes", "usage"))
                return
            if not line:
                return  # EOF
            if len(line) > self.max_request_bytes:
                await self._send(writer, error_response(
                    f"request too large: over {self.max_request_bytes} bytes", "usage"))
                return
            if not line.strip():
                continue
            request, problem = parse_request(line)
            if request is None:
                self.errors += 1
                await self._send(writer, error_response(problem, "usage"))
                return
            if request["cmd"] == "events":
                await self._stream_events(reader, writer)
                return
            await self._send(writer, await self._dispatch(request))

    async def _dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests += 1
        cmd = request["cmd"]
        try:
            result = await self.handler(request)
        except asyncio.CancelledError:
            raise
        except CommandError as exc:
            response = error_response(str(exc), exc.kind)
        except ConfigError as exc:
            response = error_response(str(exc), "config")
        except LookupError as exc:
            response = error_response(str(exc.args[0]) if exc.args else type(exc).__name__, "not_found")
        except ValueError as exc:
            response = error_response(str(exc), "usage")
        except Exception as exc:
            log.exception("control command %s failed", cmd)
            response = error_response(f"{cmd} failed: {type(exc).__name__}: {exc}", "failed")
        else:
            return {"ok": True, "result": result}
        self.errors += 1
        return response

    async def _stream_events(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sub = self.events.subscribe()

        async def watch_eof() -> None:
            with contextlib.suppress(Exception):
                while await reader.read(4096):
                    pass  # anything the client sends while subscribed is ignored
            sub.close()

        watcher = asyncio.create_task(watch_eof())
        try:
            await self._send(writer, {"ok": True, "result": "subscribed"})
            while (event := await sub.get()) is not None:
                writer.write(encode(event))
                await writer.drain()
        finally:
            self.events.unsubscribe(sub)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def _send(self, writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
        writer.write(encode(obj))
        await asyncio.wait_for(writer.drain(), self.read_timeout_s)


def parse_request(line: bytes) -> tuple[dict[str, Any] | None, str]:
    """(request, "") or (None, why it is not a request)."""
    try:
        obj = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "malformed request: not UTF-8"
    except json.JSONDecodeError as exc:
        return None, f"malformed JSON: {exc.msg} at column {exc.colno}"
    except RecursionError:
        return None, "malformed JSON: nested too deeply"
    if not isinstance(obj, dict):
        return None, f"a request is a JSON object like {{\"cmd\": \"status\"}}, not {type(obj).__name__}"
    cmd = obj.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        return None, "a request needs \"cmd\": a command name (e.g. \"status\")"
    return obj, ""
