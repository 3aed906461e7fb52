"""A real mosquitto (Debian's package) on 127.0.0.1 with a generated config, for the tests and the demo,
and a client on it that plays Home Assistant.

``find()`` is the broker's path, or None when it is not installed (``EDGED_MOSQUITTO`` overrides
the search; set it empty to run as if mosquitto were missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any


class BrokerError(RuntimeError):
    pass


def find() -> str | None:
    if "EDGED_MOSQUITTO" in os.environ:
        path = os.environ["EDGED_MOSQUITTO"]
        return path if path and Path(path).is_file() else None
    path = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return path if Path(path).is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Broker:
    """mosquitto as a plain process on 127.0.0.1 (no persistence: a restart forgets retained messages)."""

    def __init__(self, workdir: Path, extra: str = "", anonymous: bool = True) -> None:
        self.dir = Path(workdir)
        self.port = free_port()
        self.extra = extra
        self.anonymous = anonymous
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"

    def start(self) -> None:
        exe = find()
        if exe is None:
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if self.anonymous else 'false'}\n"
            "persistence false\n"
            # run as root (tests as root), mosquitto would switch to its own user and lose the test's files
            + (f"user {getpass.getuser()}\n" if os.geteuid() == 0 else "") +
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            f"{self.extra}\n")
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise BrokerError(f"mosquitto exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}"
                                  f" {self.log.read_text() if self.log.exists() else ''}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError("mosquitto did not listen within 10 s")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None


class HomeAssistant:
    """A client playing Home Assistant (aiomqtt): subscribes, keeps every message per topic with its
    retain flag, publishes at QoS 1; ``async with`` connects it and reads until the exit."""

    def __init__(self, port: int, identifier: str | None = None, **kw: Any) -> None:
        import aiomqtt  # the [mqtt] extra: needed only where a client is made

        self.client = aiomqtt.Client("127.0.0.1", port, identifier=identifier or f"ha-{os.getpid()}-{id(self)}",
                                     **kw)
        self.msgs: dict[str, list[tuple[bytes, bool]]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HomeAssistant:
        await self.client.__aenter__()
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            await self.client.__aexit__(None, None, None)

    async def _read(self) -> None:
        async for m in self.client.messages:
            payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
            self.msgs[str(m.topic)].append((payload, bool(m.retain)))

    async def sub(self, *topics: str) -> None:
        await self.client.subscribe([(t, 1) for t in topics])

    async def pub(self, topic: str, payload: str | bytes, retain: bool = False) -> None:
        await self.client.publish(topic, payload, qos=1, retain=retain)

    def count(self, topic: str) -> int:
        return len(self.msgs.get(topic, []))

    def last(self, topic: str) -> bytes | None:
        got = self.msgs.get(topic)
        return got[-1][0] if got else None

    def payloads(self, topic: str, after: int = 0) -> list[bytes]:
        return [payload for payload, _ in self.msgs.get(topic, [])[after:]]

    async def wait(self, topic: str, pred: Callable[[bytes], bool] = lambda p: True, *, after: int = 0,
                   timeout: float = 10.0) -> bytes:
        """The first message on ``topic`` (from index ``after``) that satisfies pred; TimeoutError
        at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            for payload in self.payloads(topic, after):
                if pred(payload):
                    return payload
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for a message on {topic}")
            await asyncio.sleep(0.01)
