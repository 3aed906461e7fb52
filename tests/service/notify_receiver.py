"""A stand-in for systemd's notify socket, for tests: a datagram socket bound in a SEPARATE
process (systemd-python's notify blocks holding the GIL when datagrams pile up unread, so a
receiver in the test's own process could deadlock).

    with NotifyReceiver(tmp_path / "notify.sock") as rx:        # or NotifyReceiver("@name")
        monkeypatch.setenv("NOTIFY_SOCKET", rx.address)
        ...
        msg = rx.wait_for("READY", timeout=10)                    # -> Message
        rx.messages()                                             # every datagram so far
        rx.wait_until(lambda msgs: ..., timeout=10)               # a condition on them

Each ``Message`` has ``fields`` (dict of KEY -> value), ``raw`` text and ``t``: the kernel's
receive time (SO_TIMESTAMP, wall clock: compare with time.time()), exact even when the
receiver process is scheduled late on a busy machine.

Run as a script it is the receiver process itself: binds, prints "BOUND", then one JSON line
per datagram on stdout.  Importable by other test areas (``from tests.service.notify_receiver
import NotifyReceiver``).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Message:
    raw: str
    t: float
    fields: dict[str, str] = field(default_factory=dict)

    def __contains__(self, key: str) -> bool:
        return key in self.fields


class NotifyReceiver:
    def __init__(self, address: str | os.PathLike[str]) -> None:
        self.address = str(address)
        self._proc: subprocess.Popen[str] | None = None
        self._messages: list[Message] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 20.0) -> NotifyReceiver:
        self._proc = subprocess.Popen([sys.executable, __file__, self.address], stdout=subprocess.PIPE,
                                      text=True, bufsize=1)
        assert self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = self._proc.stdout.readline()
        if line.strip() != "BOUND" or time.monotonic() > deadline:
            self.stop()
            raise RuntimeError(f"notify receiver did not start: {line!r}")
        self._reader = threading.Thread(target=self._read, name="notify-receiver", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            item = json.loads(line)
            raw = item["data"]
            fields = dict(part.split("=", 1) for part in raw.split("\n") if "=" in part)
            with self._cond:
                self._messages.append(Message(raw, item["t"], fields))
                self._cond.notify_all()

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._reader is not None:
            self._reader.join(10)
        if not self.address.startswith("@"):
            Path(self.address).unlink(missing_ok=True)

    def __enter__(self) -> NotifyReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def messages(self, key: str | None = None) -> list[Message]:
        with self._cond:
            return [m for m in self._messages if key is None or key in m.fields]

    def wait_for(self, key: str, timeout: float = 20.0, *, after: int = 0) -> Message:
        """The first message at index >= ``after`` carrying ``key``; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self._messages[after:]:
                    if key in m.fields:
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {key} notification within {timeout} s; got "
                                         f"{[m.raw for m in self._messages]}")
                self._cond.wait(left)

    def wait_until(self, pred: Callable[[list[Message]], Any], timeout: float = 20.0) -> Any:
        """pred(messages)'s first truthy value, evaluated whenever a datagram arrives;
        AssertionError at the deadline."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (value := pred(list(self._messages))):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"condition not met within {timeout} s; got "
                                         f"{[m.raw for m in self._messages]}")
                self._cond.wait(left)
            return value

    def count(self) -> int:
        with self._cond:
            return len(self._messages)


SO_TIMESTAMP = getattr(socket, "SO_TIMESTAMP", 29)  # Linux value; Python 3.11 does not export it


def _serve(address: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    print("BOUND", flush=True)
    tv_size = struct.calcsize("ll")
    while True:
        data, ancdata, _flags, _addr = sock.recvmsg(65536, socket.CMSG_SPACE(tv_size))
        t = time.time()
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP:
                sec, usec = struct.unpack("ll", payload[:tv_size])
                t = sec + usec / 1e6
        print(json.dumps({"t": t, "data": data.decode("utf-8", "replace")}), flush=True)


if __name__ == "__main__":
    try:
        _serve(sys.argv[1])
    except (KeyboardInterrupt, BrokenPipeError):
        pass
