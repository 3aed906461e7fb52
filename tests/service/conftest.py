"""Fixtures: a real ControlServer on a real Unix socket, run by its own loop in a thread, with a
fake daemon handler (the daemon's real handler is tested by the daemon's author)."""

from __future__ import annotations

import asyncio
import base64
import io
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

STATUS: dict[str, Any] = {
    "state": "idle",
    "uptime_s": 3725.4,
    "live": {"connected": True, "session_id": "sess-42", "handle_age_s": 61.0, "last_close_code": 1000,
             "reconnects": 2},
    "wake": {"models": ["hey_jarvis"], "detections": 7, "last_score": 0.93},
    "audio": {"capture": {"device": "mic", "drops": 0}, "playback": {"device": "spk", "underruns": 1}},
    "gpio": {"kitchen_light": {"kind": "led", "value": True}, "door": {"kind": "button", "value": False}},
    "camera": {"backend": "synthetic", "ok": True},
    "last_error": None,
}


def tiny_jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


@dataclass
class FakeDaemon:
    calls: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event | None = None

    async def __call__(self, req: dict[str, Any]) -> Any:
        self.calls.append(req)
        cmd = req["cmd"]
        if cmd == "status":
            return STATUS
        if cmd == "config.get":
            if req.get("key") == "wake.threshold":
                return 0.5
            raise CommandError(f"no such key {req.get('key')!r}", "not_found")
        if cmd == "config.set":
            if req.get("value") == "2":
                raise ConfigError("/etc/edged/edged.toml", req["key"], "must be less than 1")
            return {"key": req["key"], "value": req["value"], "reloaded": True}
        if cmd == "config.show":
            return {"wake": {"threshold": 0.5}}
        if cmd == "gpio.list":
            return STATUS["gpio"]
        if cmd == "gpio.set":
            if req.get("name") not in STATUS["gpio"]:
                raise KeyError(f"no GPIO device named {req.get('name')!r}")
            return {"name": req["name"], "value": req["value"]}
        if cmd == "say":
            if not req.get("text"):
                raise ValueError("say needs text")
            return "queued"
        if cmd == "snapshot":
            return {"jpeg_b64": base64.b64encode(tiny_jpeg()).decode()}
        if cmd in ("wake", "reload", "session.reset"):
            return "ok"
        if cmd == "mute":
            return {"muted": True if req.get("on") is None else req["on"]}
        if cmd == "boom":
            raise RuntimeError("kaput")
        if cmd == "slow":
            await asyncio.sleep(30)
        raise CommandError(f"unknown command {cmd!r}", "usage")


class ThreadedServer:
    """A ControlServer on its own loop in a background thread (so blocking clients can run)."""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        self.path = path
        self.handler = FakeDaemon()
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


def rpc(path: Path, payload: bytes | dict[str, Any], timeout: float = 20) -> list[dict[str, Any]]:
    """Send one raw request, return every response line until the server closes or one line
    arrives for a well-formed request."""
    data = payload if isinstance(payload, bytes) else (json.dumps(payload) + "\n").encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        try:
            s.sendall(data)
        except BrokenPipeError:
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
            if isinstance(payload, dict) and out.endswith(b"\n"):
                break
    return [json.loads(line) for line in out.splitlines() if line.strip()]
