"""The one client of the control protocol (docs/CONTROL.md), with a blocking and an asyncio face.

Below everything that talks to a running daemon: ``edgectl`` (edged/ctl.py), ``edgectl doctor``
(edged/service/doctor.py), the harness (edged/dev/rig.py) and the tests. It imports nothing of
edged but the errors, so none of them import each other for it.

Both faces have the same three calls:

- ``call(cmd, **args)``: the daemon's raw answer, ``{"ok": true, "result": ...}`` or
  ``{"ok": false, "error": ..., "kind": ...}`` (for callers that look at refusals themselves);
- ``request(cmd, **args)``: the result, or :class:`DaemonError` carrying the message and kind;
- ``subscribe()``: returns once the daemon has acknowledged the subscription (so nothing
  published afterwards is missed) an event stream to iterate (``for`` / ``async for``) and close;
- ``events()``: the same as one iterator, subscribing at the first ``next()``.

A missing socket or a refused connection raises :class:`NotRunningError` (exit 69 in edgectl),
a socket this user may not open, no answer in time or a malformed answer raise ``ControlError``.
One connection per request; ``events()`` keeps its own.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

from .errors import ControlError, NotRunningError
from .paths import DEFAULT_SOCKET

START_HINT = "start it with `systemctl start edged` (or `edged run --config FILE` in a terminal)"


class DaemonError(ControlError):
    """The daemon answered ``{"ok": false, ...}``; ``kind`` is its error kind (usage, config, ...)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def encode(cmd: str, **args: Any) -> bytes:
    """One request line."""
    return json.dumps({"cmd": cmd, **args}).encode() + b"\n"


def decode(line: bytes, cmd: str) -> dict[str, Any]:
    """One answer line as a dict; ControlError if there is none or it is not a JSON object."""
    if not line:
        raise ControlError(f"the daemon closed the connection without answering {cmd}")
    try:
        answer = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ControlError(f"the daemon sent a malformed answer to {cmd}") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
        raise ControlError(f"the daemon sent a malformed answer to {cmd}")
    return answer


def result(answer: dict[str, Any]) -> Any:
    """The result of an answer, or DaemonError with the daemon's message and kind."""
    if answer["ok"]:
        return answer.get("result")
    raise DaemonError(str(answer.get("error", "unknown error")), str(answer.get("kind", "failed")))


def _connect_error(path: str, exc: OSError) -> Exception:
    if isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
        return NotRunningError(f"edged is not running (no control socket at {path}): {START_HINT}")
    if isinstance(exc, PermissionError):
        return ControlError(f"permission denied on {path}: run as root or as a member of the "
                            "control group (control.group)")
    return ControlError(f"cannot connect to {path}: {exc.strerror or exc}")


class EventStream:
    """A subscription (blocking): iterate for each event as a dict until the daemon closes it."""

    def __init__(self, sock: socket.socket, file: Any) -> None:
        self._sock = sock
        self._file = file

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for line in self._file:
            if line.strip():
                yield json.loads(line)

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncEventStream:
    """A subscription (asyncio): ``async for`` each event until the daemon closes it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        while line := await self._reader.readline():
            if line.strip():
                yield json.loads(line)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class ControlClient:
    """The blocking face."""

    def __init__(self, path: str | Path = DEFAULT_SOCKET, *, timeout: float = 30.0) -> None:
        self.path = str(path)
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.path)
        except OSError as exc:
            s.close()
            raise _connect_error(self.path, exc) from None
        return s

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        with self._connect() as s:
            try:
                s.sendall(encode(cmd, **args))
            except BrokenPipeError:  # refused (e.g. permission) before the request was read
                pass
            with s.makefile("rb") as f:
                try:
                    line = f.readline()
                except TimeoutError:
                    raise ControlError(f"no answer to {cmd} within {self.timeout:g} s") from None
                except ConnectionResetError:
                    line = b""
        return decode(line, cmd)

    def request(self, cmd: str, **args: Any) -> Any:
        return result(self.call(cmd, **args))

    def subscribe(self) -> EventStream:
        s = self._connect()
        f = s.makefile("rb")  # one buffered reader: events right after the answer stay in it
        try:
            s.sendall(encode("events"))
            line = b""
            with contextlib.suppress(ConnectionResetError):
                line = f.readline()
            result(decode(line, "events"))
        except BaseException as exc:
            f.close()
            s.close()
            if isinstance(exc, TimeoutError):
                raise ControlError(f"no answer to events within {self.timeout:g} s") from None
            raise
        s.settimeout(None)  # events come when they come
        return EventStream(s, f)

    def events(self) -> Iterator[dict[str, Any]]:
        with self.subscribe() as stream:
            yield from stream


class AsyncControlClient:
    """The asyncio face.  ``asyncio`` is imported when it is first used, not with this module: it is
    most of what edgectl (which uses the blocking face) would import, 130 ms of a 200 ms start-up
    in the VM bench's guest."""

    def __init__(self, path: str | Path = DEFAULT_SOCKET, *, timeout: float = 30.0) -> None:
        self.path = str(path)
        self.timeout = timeout

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        import asyncio

        try:
            return await asyncio.wait_for(asyncio.open_unix_connection(self.path, limit=1 << 24), self.timeout)
        except TimeoutError:
            raise ControlError(f"cannot connect to {self.path} within {self.timeout:g} s") from None
        except OSError as exc:
            raise _connect_error(self.path, exc) from None

    @staticmethod
    async def _close(writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    async def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        import asyncio

        reader, writer = await self._connect()
        try:
            writer.write(encode(cmd, **args))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await writer.drain()
            try:
                line = await asyncio.wait_for(reader.readline(), self.timeout)
            except TimeoutError:
                raise ControlError(f"no answer to {cmd} within {self.timeout:g} s") from None
            except ConnectionResetError:
                line = b""
            return decode(line, cmd)
        finally:
            await self._close(writer)

    async def request(self, cmd: str, **args: Any) -> Any:
        return result(await self.call(cmd, **args))

    async def subscribe(self) -> AsyncEventStream:
        import asyncio

        reader, writer = await self._connect()
        try:
            writer.write(encode("events"))
            await writer.drain()
            try:
                line = await asyncio.wait_for(reader.readline(), self.timeout)
            except TimeoutError:
                raise ControlError(f"no answer to events within {self.timeout:g} s") from None
            result(decode(line, "events"))
        except BaseException:
            await self._close(writer)
            raise
        return AsyncEventStream(reader, writer)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        async with await self.subscribe() as stream:
            async for event in stream:
                yield event
