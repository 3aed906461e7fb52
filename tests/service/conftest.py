"""Fixtures for the control server's own tests: a real ControlServer on a real Unix socket, run by
its own loop in a thread, with a protocol-only handler.

The handler is not the daemon and answers none of the daemon's commands: it echoes, raises what
it is asked to raise and sleeps, so the server's framing, limits, peer checks, error mapping and
event streams can be driven exactly. The daemon's commands are tested against the real daemon
(the ``daemon`` fixture in tests/conftest.py): test_service_daemon.py, test_service_ctl.py and
test_service_doctor.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edged.errors import ConfigError
from edged.service.control import CommandError, ControlServer, EventHub

RAISES: dict[str, Any] = {
    "usage": lambda: CommandError("bad argument", "usage"),
    "config": lambda: ConfigError("/etc/edged/edged.toml", "wake.threshold", "must be less than 1"),
    "not_found": lambda: KeyError("no device named 'toaster'"),
    "failed": lambda: RuntimeError("kaput"),
}


@dataclass
class ProtocolHandler:
    """``echo`` answers its arguments, ``raise`` raises RAISES[what], ``slow`` sleeps; the rest is
    unknown (a usage error). Every request is recorded in ``calls``."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, req: dict[str, Any]) -> Any:
        self.calls.append(req)
        cmd = req["cmd"]
        if cmd == "echo":
            return {k: v for k, v in req.items() if k != "cmd"}
        if cmd == "raise":
            raise RAISES[req["what"]]()
        if cmd == "slow":
            await asyncio.sleep(30)
        raise CommandError(f"unknown command {cmd!r}", "usage")


class ThreadedServer:
    """A ControlServer on its own loop in a background thread (so blocking clients can run)."""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        self.path = path
        self.handler = ProtocolHandler()
        self.hub = EventHub(queue_size=kwargs.pop("queue_size", 256))
        self.kwargs = kwargs
        self.loop = asyncio.new_event_loop()
        self.server: ControlServer | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="control-test", daemon=True)

    def start(self) -> ThreadedServer:
        self._thread.start()
        self.server = ControlServer(self.path, handler=self.handler, events=self.hub, **self.kwargs)
        self.call(self.server.start())
        return self

    def call(self, coro: Any, timeout: float = 20) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def wait_for(self, pred: Any, timeout: float = 20.0) -> bool:
        """True once pred() (evaluated on the server's loop) holds; False at the deadline."""
        async def poll() -> bool:
            deadline = self.loop.time() + timeout
            while not pred():
                if self.loop.time() > deadline:
                    return False
                await asyncio.sleep(0.02)
            return True
        return self.call(poll(), timeout + 10)

    def publish(self, *events: dict[str, Any]) -> None:
        async def pub() -> None:
            for ev in events:
                self.hub.publish(ev)
        self.call(pub())

    def stop(self) -> None:
        if self.server is not None:
            self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "control.sock"


@pytest.fixture
def server(sock_path: Path) -> Iterator[ThreadedServer]:
    srv = ThreadedServer(sock_path, max_request_bytes=4096, read_timeout_s=20).start()
    yield srv
    srv.stop()


def _exchange(path: Path, data: bytes, *, half_close: bool, one_line: bool, timeout: float) -> list[dict[str, Any]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, OSError):
            pass
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
            if one_line and out.endswith(b"\n"):
                break
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def send_raw(path: Path, data: bytes, timeout: float = 20) -> list[dict[str, Any]]:
    """Write raw bytes (malformed on purpose, or several requests), then read every answer line
    until the server closes. Well-formed single requests go through edged.control_client."""
    return _exchange(path, data, half_close=True, one_line=False, timeout=timeout)


def rpc(path: Path, payload: bytes | dict[str, Any], timeout: float = 20) -> list[dict[str, Any]]:
    """Send one raw request without closing our side (as a client that keeps the connection
    would), return every response line until the server closes or, for a well-formed request,
    the first line."""
    data = payload if isinstance(payload, bytes) else (json.dumps(payload) + "\n").encode()
    return _exchange(path, data, half_close=False, one_line=isinstance(payload, dict), timeout=timeout)


def handled(cmd: str) -> dict[str, Any]:
    """What AnyCommand answers: proof that the server passed the request through to the handler."""
    return {"handled": cmd}


class AnyCommand:
    """A handler that answers every command with ``handled(cmd)``: for tests of what the server lets
    through (roles, lanes), not of what the daemon answers."""

    async def __call__(self, req: dict[str, Any]) -> Any:
        return handled(req["cmd"])
