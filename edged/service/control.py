"""The control socket: newline-delimited JSON over a Unix stream socket (see docs/CONTROL.md).

    request   {"cmd": "status", ...args}\\n
    response  {"ok": true, "result": ...}\\n
              {"ok": false, "error": "<message>", "kind": "usage|config|not_found|failed|permission"}\\n

Who may connect, and with which role, is decided by SO_PEERCRED and SO_PEERGROUPS (the
socket file's 0660 mode is only a second fence): see ``roles``.  The server refuses a command
the peer's role does not allow, a ``config.set`` of a key the socket may never change
(``config.check_settable_over_socket``) and ``config.validate`` of another file, before the
handler sees the request.  The ``events`` command turns a connection into a stream of
``{"event": ...}`` lines fed by ``EventHub``.

The handler (the daemon's) is ``async def handler(request: dict[, peer: Peer]) -> result``
(given the Peer when it takes a second argument; ``current_peer()`` also returns it during
the call) where result is any JSON value; it reports errors by raising
``CommandError(message, kind)``; other exceptions are mapped (PermissionError -> permission,
ConfigError -> config, LookupError -> not_found, ValueError -> usage, anything else ->
failed, logged with its traceback).  No handler error stops the server.

Every line the server writes passes through ``secrets.scrub``: a registered secret never
leaves in a result, an error or an event.

Limits: command connections (``max_connections``) and event subscribers (``max_subscribers``)
have their own pools.  When the command pool is full, a connection may still ask for
``status`` in the status lane (``status_lane`` more; root always): one answer, then closed.  A
subscriber whose writes do not drain within ``event_write_timeout_s`` is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import grp
import inspect
import json
import logging
import os
import stat
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .. import config
from ..errors import ConfigError, ControlError
from ..secrets import scrub
from .roles import Peer, identify, refusal, role_needed

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]  # (request) or (request, peer)
KINDS = ("usage", "config", "not_found", "failed", "permission")
COMMANDS = ("status", "config.show", "config.get", "config.set", "config.validate", "reload", "gpio.list",
            "gpio.set", "wake", "say", "snapshot", "session.reset", "mute", "volume", "events")
_peer: contextvars.ContextVar[Peer | None] = contextvars.ContextVar("edged_control_peer", default=None)


def current_peer() -> Peer | None:
    """The Peer whose request the handler is running (None outside a request)."""
    return _peer.get()


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
    """One protocol line, with every registered secret scrubbed out of it."""
    text = json.dumps(obj, separators=(",", ":"), default=str, ensure_ascii=False)
    return (scrub(text) + "\n").encode("utf-8")


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


# -- server --------------------------------------------------------------------------------
def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


class ControlServer:
    """``start()`` binds ``path`` (mode 0660, group ``group`` or the daemon's own group);
    ``stop()`` closes every connection and removes the file."""

    def __init__(self, path: str | os.PathLike[str], *, group: str = "", admin_group: str = "",
                 max_request_bytes: int = 65536, handler: Handler, events: EventHub | None = None,
                 max_connections: int = 16, max_subscribers: int = 16, status_lane: int = 8,
                 read_timeout_s: float = 60.0, event_write_timeout_s: float = 5.0, socket_mode: int = 0o660,
                 config_path: str = "") -> None:
        if max_request_bytes < 16:
            raise ValueError(f"max_request_bytes must be at least 16, not {max_request_bytes}")
        self.path = Path(path)
        self.group = group
        self.admin_group = admin_group
        self.max_request_bytes = max_request_bytes
        self.handler = handler
        self._handler_takes_peer = _takes_two_args(handler)
        self.events = events if events is not None else EventHub()
        self.max_connections = max_connections
        self.max_subscribers = max_subscribers
        self.status_lane = status_lane
        self.read_timeout_s = read_timeout_s
        self.lane_timeout_s = min(read_timeout_s, 5.0)
        self.event_write_timeout_s = event_write_timeout_s
        self.socket_mode = socket_mode
        self.config_path = config_path
        self._server: asyncio.AbstractServer | None = None
        self._gid: int | None = None
        self._admin_gid: int | None = None
        self._inode: tuple[int, int] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pools = {"commands": 0, "subscribers": 0, "lane": 0}
        self.refused = 0
        self.requests = 0
        self.errors = 0
        self.denied = 0  # commands refused for the peer's role
        self.busy = 0  # connections turned away because every pool was full
        self.dropped_subscribers = 0

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._gid = self._resolve_group(self.group, "control.group") if self.group else os.getegid()
        self._admin_gid = self._resolve_group(self.admin_group, "control.admin_group") if self.admin_group else None
        await self._remove_stale()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.start_unix_server(self._on_connect, path=str(self.path),
                                                       limit=self.max_request_bytes + 1)
        os.chmod(self.path, self.socket_mode)
        st = os.stat(self.path)
        if st.st_gid != self._gid:  # the default (our own group) needs no chown, which the unit forbids
            self._give_to_group(st.st_gid)
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
        return {"connections": self._pools["commands"], "subscribers": self.events.subscribers,
                "status_lane": self._pools["lane"], "open": len(self._tasks), "requests": self.requests,
                "errors": self.errors, "refused": self.refused, "denied": self.denied, "busy": self.busy,
                "dropped_subscribers": self.dropped_subscribers}

    def _give_to_group(self, current_gid: int) -> None:
        try:
            os.chown(self.path, -1, self._gid)
        except OSError as exc:
            here, wanted = _group_name(current_gid), self.group or _group_name(self._gid)
            log.error("control.group %r not applied: %s stays in group %r (%s). A process may give a file only "
                      "to a group it is in, and edged.service's system-call filter forbids chown: add the "
                      "people who use edgectl to group %r (usermod -aG %s USER), or give the unit a drop-in "
                      "with SupplementaryGroups=%s and SystemCallFilter=@chown",
                      wanted, self.path, here, exc.strerror, here, here, wanted)

    @staticmethod
    def _resolve_group(name: str, key: str) -> int:
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            raise ConfigError("config", key, f"no such group {name!r}") from None

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
    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        slot = _Slot(self._pools)
        cancelled = False
        try:
            assert self._gid is not None
            peer, why = identify(writer.get_extra_info("socket"), self._gid, self._admin_gid)
            if peer is None:
                self.refused += 1
                log.warning("control: %s", why)
                await self._send(writer, error_response(why, "permission"))
                return
            if self._pools["commands"] < self.max_connections:
                slot.take("commands")
                await self._serve(reader, writer, peer, slot)
            elif self._pools["lane"] < self.status_lane or peer.is_root:
                slot.take("lane")
                await self._serve_status_lane(reader, writer, peer)
            else:
                self.busy += 1
                await self._send(writer, error_response(self._too_many(), "failed"))
        except (ConnectionError, TimeoutError):
            pass
        except asyncio.CancelledError:
            # stop() cancels connections; Python 3.11's stream callback would log a cancelled
            # task as an error, and nothing awaits this task but stop()
            cancelled = True
        except Exception:
            log.exception("control connection failed")
        finally:
            slot.release()
            if not cancelled:
                await self._linger(reader, writer)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Before closing: send EOF, then read and discard what the client still sends (briefly,
        boundedly).  Closing a Unix socket with unread input resets the connection, and the
        client would see ECONNRESET instead of the answer it was sent (e.g. a refusal)."""
        if writer.transport.is_closing():
            return
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
            left = 4 * self.max_request_bytes
            async with asyncio.timeout(1.0):
                while left > 0 and (chunk := await reader.read(min(left, 65536))):
                    left -= len(chunk)

    def _too_many(self) -> str:
        return f"too many connections (max {self.max_connections}): try again"

    async def _read_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            timeout: float) -> dict[str, Any] | None:
        """The next request; None (after answering why, if there is a why) when the connection ends."""
        while True:
            try:
                async with asyncio.timeout(timeout):
                    line = await reader.readline()
            except TimeoutError:
                await self._send(writer, error_response(f"no request within {timeout:g} s: closing", "usage"))
                return None
            except (ValueError, asyncio.LimitOverrunError):
                await self._send(writer, error_response(
                    f"request too large: over {self.max_request_bytes} bytes", "usage"))
                return None
            if not line:
                return None  # EOF
            if len(line) > self.max_request_bytes:
                await self._send(writer, error_response(
                    f"request too large: over {self.max_request_bytes} bytes", "usage"))
                return None
            if not line.strip():
                continue
            request, problem = parse_request(line)
            if request is None:
                self.errors += 1
                await self._send(writer, error_response(problem, "usage"))
            return request

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer,
                     slot: _Slot) -> None:
        while True:
            request = await self._read_request(reader, writer, self.read_timeout_s)
            if request is None:
                return
            if request["cmd"] == "events" and peer.may("events"):
                if self._pools["subscribers"] >= self.max_subscribers:
                    self.busy += 1
                    await self._send(writer, error_response(
                        f"too many event subscribers (max {self.max_subscribers}): try again later", "failed"))
                    return
                slot.move("subscribers")  # its own pool: a subscriber never holds a command slot
                await self._stream_events(reader, writer, peer)
                return
            await self._send(writer, await self._dispatch(request, peer))

    async def _serve_status_lane(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                 peer: Peer) -> None:
        """The command pool is full: answer one ``status``, refuse anything else, close."""
        request = await self._read_request(reader, writer, self.lane_timeout_s)
        if request is None:
            return
        if request["cmd"] != "status":
            self.busy += 1
            await self._send(writer, error_response(self._too_many() + " (only status is answered now)", "failed"))
            return
        await self._send(writer, await self._dispatch(request, peer))

    def _guard(self, request: dict[str, Any], peer: Peer) -> dict[str, Any] | None:
        """An error response if the server itself refuses the request, else None."""
        cmd = request["cmd"]
        if not peer.may(cmd):
            self.denied += 1
            log.warning("control: %s (pid %d) may not run %s: needs %s", peer.describe(), peer.pid, cmd,
                        role_needed(cmd))
            return error_response(refusal(peer, cmd, self._admin_gid), "permission")
        if cmd == "config.validate" and request.get("path") not in (None, ""):
            return error_response("config.validate over the socket checks only the daemon's own file: "
                                  "`edgectl config validate FILE` checks another one with your own permissions",
                                  "usage")
        if cmd == "config.set":
            key, raw = request.get("key"), request.get("value")
            if isinstance(key, str) and "value" in request:
                value = config.coerce_value(raw) if isinstance(raw, str) else raw
                try:
                    config.check_settable_over_socket(key, value, self.config_path or "<config>")
                except config.NotSettableError as exc:
                    self.denied += 1
                    log.warning("control: %s (pid %d): %s", peer.describe(), peer.pid, exc)
                    return error_response(str(exc), "permission")
        return None

    async def _dispatch(self, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        self.requests += 1
        cmd = request["cmd"]
        try:
            refused = self._guard(request, peer)
        except RecursionError:  # a value nested thousands deep: the checks cannot walk it
            refused = error_response(f"{cmd}: the request's values are nested too deeply", "usage")
        if refused is not None:
            self.errors += 1
            return refused
        token = _peer.set(peer)
        try:
            if self._handler_takes_peer:
                result = await self.handler(request, peer)  # type: ignore[call-arg]
            else:
                result = await self.handler(request)
        except asyncio.CancelledError:
            raise
        except CommandError as exc:
            response = error_response(str(exc), exc.kind)
        except PermissionError as exc:  # config.NotSettableError, or a handler's own refusal
            response = error_response(str(exc), "permission")
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
        finally:
            _peer.reset(token)
        self.errors += 1
        return response

    async def _stream_events(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer) -> None:
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
                try:
                    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel (stop())
                    # that arrives as the drain completes, and the task would then wait forever
                    async with asyncio.timeout(self.event_write_timeout_s):
                        await writer.drain()
                except TimeoutError:
                    self.dropped_subscribers += 1
                    log.warning("control: dropping the event subscriber %s (pid %d): it read nothing for %g s",
                                peer.describe(), peer.pid, self.event_write_timeout_s)
                    writer.transport.abort()  # nothing more is written: close without flushing
                    return
        finally:
            self.events.unsubscribe(sub)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def _send(self, writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
        writer.write(encode(obj))
        async with asyncio.timeout(self.read_timeout_s):
            await writer.drain()


class _Slot:
    """The pool one connection counts in (commands, subscribers or lane), released once."""

    def __init__(self, pools: dict[str, int]) -> None:
        self._pools = pools
        self.pool = ""

    def take(self, pool: str) -> None:
        self._pools[pool] += 1
        self.pool = pool

    def move(self, pool: str) -> None:
        self.release()
        self.take(pool)

    def release(self) -> None:
        if self.pool:
            self._pools[self.pool] -= 1
            self.pool = ""


def _takes_two_args(handler: Handler) -> bool:
    try:
        params = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


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
