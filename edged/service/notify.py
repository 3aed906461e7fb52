"""sd_notify for the daemon: readiness, status, reload, stop, and a watchdog that proves the loop runs.

Built on systemd-python's ``systemd.daemon.notify`` (imported lazily).  Without it the
datagram is written to ``$NOTIFY_SOCKET`` directly (a path, or ``@name`` for an abstract
socket), non-blocking: a notification that cannot be queued is dropped, never waited for.

Without ``$NOTIFY_SOCKET`` (not started by systemd) every method is a cheap no-op that
returns False.

The watchdog is an asyncio task on the daemon's own loop, so a ping is itself the proof
that the loop runs; the daemon adds checks for the other parts (the capture thread's
heartbeat).  A blocked loop or a failing check means no ping, and systemd restarts us.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Literal

log = logging.getLogger(__name__)

Backend = Literal["auto", "systemd", "socket"]


class Notifier:
    """Talks to the service manager.  ``backend``: "auto" (systemd-python if importable),
    "systemd" or "socket" (the built-in writer; tests use both).  ``env`` defaults to
    ``os.environ`` and is read at each call, as sd_notify does."""

    def __init__(self, *, backend: Backend = "auto", env: Mapping[str, str] | None = None) -> None:
        if backend not in ("auto", "systemd", "socket"):
            raise ValueError(f"Notifier backend must be auto, systemd or socket, not {backend!r}")
        self._backend = backend
        self._env = env
        self._sd_notify: Callable[..., bool] | None = None
        self._resolved = False
        self.sent = 0  # notifications handed to the socket
        self.failed = 0  # notifications that could not be sent
        self.watchdog_pings = 0
        self._watchdog_failing: str | None = None

    # -- environment -------------------------------------------------------------------------
    @property
    def _environ(self) -> Mapping[str, str]:
        return os.environ if self._env is None else self._env

    @property
    def enabled(self) -> bool:
        """True when started by a service manager that listens ($NOTIFY_SOCKET is set)."""
        return bool(self._environ.get("NOTIFY_SOCKET"))

    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half of $WATCHDOG_USEC, or None when no watchdog is set
        for this process ($WATCHDOG_PID names another process, or the value is bad)."""
        env = self._environ
        usec = env.get("WATCHDOG_USEC", "").strip()
        if not usec:
            return None
        pid = env.get("WATCHDOG_PID", "").strip()
        if pid:
            try:
                if int(pid) != os.getpid():
                    return None
            except ValueError:
                log.warning("ignoring WATCHDOG_PID=%r: not a process id", pid)
                return None
        try:
            value = int(usec)
        except ValueError:
            log.warning("ignoring WATCHDOG_USEC=%r: not a number of microseconds", usec)
            return None
        if value <= 0:
            return None
        return value / 2 / 1_000_000

    # -- messages ----------------------------------------------------------------------------
    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([_status(status)] if status is not None else []))

    def status(self, text: str) -> bool:
        return self.notify(_status(text))

    def reloading(self, status: str | None = None) -> bool:
        """RELOADING=1 with MONOTONIC_USEC (systemd 253+ needs it); send ready() when done."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        extra = [_status(status)] if status is not None else []
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", *extra)

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([_status(status)] if status is not None else []))

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time to start/stop (EXTEND_TIMEOUT_USEC), e.g. while loading models."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1_000_000))}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields as one datagram.  Never raises."""
        if not self.enabled:
            return False
        text = "\n".join(fields)
        sd = self._systemd_notify()
        try:
            ok = bool(sd(text)) if sd is not None else self._send_socket(text)
        except (OSError, ValueError) as exc:
            log.debug("sd_notify %r failed: %s", fields[0] if fields else "", exc)
            ok = False
        if ok:
            self.sent += 1
        else:
            self.failed += 1
        return ok

    def _systemd_notify(self) -> Callable[..., bool] | None:
        if self._backend == "socket" or self._env is not None:
            return None  # systemd-python reads the real environment only
        if not self._resolved:
            self._resolved = True
            try:
                from systemd import daemon  # noqa: PLC0415 - optional dependency
            except ImportError:
                if self._backend == "systemd":
                    raise
                log.debug("systemd-python not installed: writing to $NOTIFY_SOCKET directly")
            else:
                self._sd_notify = daemon.notify
        return self._sd_notify

    def _send_socket(self, text: str) -> bool:
        address = self._environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        elif not address.startswith("/"):
            log.debug("NOTIFY_SOCKET=%r is neither a path nor an abstract name", address)
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            try:
                sock.sendto(text.encode("utf-8"), address)
            except BlockingIOError:
                log.debug("notify socket is full: dropped %r", text.split("\n", 1)[0])
                return False
        return True

    # -- watchdog ----------------------------------------------------------------------------
    async def run_watchdog(self, checks: list[Callable[[], bool]], *, interval: float | None = None) -> None:
        """Ping WATCHDOG=1 every ``interval`` (default: watchdog_interval()) while every check
        returns True.  Runs until cancelled; returns at once when there is no watchdog.
        Must run as a task on the daemon's loop: the ping is the proof that the loop runs."""
        interval = interval if interval is not None else self.watchdog_interval()
        if interval is None:
            log.debug("no systemd watchdog for this process")
            return
        if interval <= 0:
            raise ValueError(f"watchdog interval must be positive, not {interval}")
        log.debug("watchdog: pinging every %.1f s", interval)
        while True:
            failing = _first_failing(checks)
            if failing is None:
                if self._watchdog_failing is not None:
                    log.info("watchdog: %s recovered, pinging again", self._watchdog_failing)
                    self._watchdog_failing = None
                if self.watchdog():
                    self.watchdog_pings += 1
            elif failing != self._watchdog_failing:
                log.error("watchdog: check %s failed: not pinging (systemd restarts the service "
                          "if it does not recover)", failing)
                self._watchdog_failing = failing
            await asyncio.sleep(interval)

    @property
    def watchdog_failing(self) -> str | None:
        """Name of the check that currently stops the pings, or None."""
        return self._watchdog_failing


def _first_failing(checks: list[Callable[[], bool]]) -> str | None:
    for check in checks:
        name = getattr(check, "__name__", None) or repr(check)
        try:
            if not check():
                return name
        except Exception as exc:  # a broken check counts as failed, it must not end the watchdog
            log.warning("watchdog check %s raised %s: %s", name, type(exc).__name__, exc)
            return name
    return None


def _status(text: str) -> str:
    # a newline would start a new field: STATUS is one line
    return "STATUS=" + " ".join(str(text).split())
