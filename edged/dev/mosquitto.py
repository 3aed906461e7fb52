"""A real mosquitto (Debian's package) on 127.0.0.1 with a generated config, for the tests and the demo.

``find()`` is the broker's path, or None when it is not installed (``EDGED_MOSQUITTO`` overrides
the search; set it empty to run as if mosquitto were missing).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


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
