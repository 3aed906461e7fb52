"""Timeouts for the VM bench's guest side that hold on both the guest's clock and the host's.

The guest runs under icount with ``sleep=off`` (scripts/vm-test): while its one vCPU is busy its
clock advances with the instructions it runs, and while it waits (for the disk, mostly) the clock
jumps straight to the next timer.  A guest waiting on thousands of disk reads can therefore see
minutes pass in seconds of real time: a CI run's ``espeak-ng`` "timed out after 120 seconds" 16 s
after the guest booted, and ``scripts/uninstall`` once passed 600 s of guest time in 13 s of the
host's.  Waits on CPU work go the other way: TCG runs the guest several times slower than real time.

So a limit here is passed only when *both* clocks say so: the guest's ``time.monotonic()`` and the
host's, which the guest reads as the time the host stamps on a file in the 9p share when the guest
writes it (qemu's 9p server makes the write on the host's file system).  Neither clock alone can end
a wait early; a step that really hangs is still bounded by vm-test's own limit in host time.

Standard library only: this runs on the guest's python3 before edged is installed.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Fail(Exception):
    """A scenario's check did not hold: the message says which and what was seen."""


class HostClock:
    """The host's wall clock, read through a file in a shared directory (None until attached)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path

    def attach(self, share: Path) -> None:
        self.path = share / ".host-clock"

    def now(self) -> float | None:
        """Seconds on the host's clock, or None with no share (then only the guest's clock counts)."""
        if self.path is None:
            return None
        try:
            with open(self.path, "wb") as f:
                f.write(b"t")  # the host's file system stamps the write with the host's time
            return os.stat(self.path).st_mtime
        except OSError:
            return None


HOST = HostClock()


class HostWatch:
    """Host seconds since it was made (None without a host clock): the VM bench's honest durations,
    since the guest's clock runs fast while the guest waits and slow while it computes."""

    def __init__(self, host: HostClock | None = None) -> None:
        self.host = host or HOST
        self.t0 = self.host.now()

    def seconds(self) -> float | None:
        now = self.host.now()
        return None if self.t0 is None or now is None else round(now - self.t0, 1)


def guest_now() -> float:
    """The guest's own clock (a name of its own so the tests can make it race)."""
    return time.monotonic()


class Deadline:
    """``limit`` seconds from now, passed only when both the guest's and the host's clocks say so."""

    def __init__(self, limit: float, *, host: HostClock | None = None,
                 guest: Callable[[], float] | None = None) -> None:
        self.limit, self.host, self.guest = limit, host or HOST, guest or guest_now
        self.guest0 = self.guest()
        self.host0 = self.host.now()
        self.guest_seen = self.host_seen = 0.0  # each clock's elapsed time when last read

    def passed(self) -> bool:
        self.guest_seen = self.guest() - self.guest0
        if self.guest_seen < self.limit:
            return False  # the host's clock is read only once the guest's says the limit is up
        now = self.host.now()
        if self.host0 is None or now is None:
            return True
        self.host_seen = now - self.host0
        return self.host_seen >= self.limit

    def describe(self) -> str:
        host = f"{self.host_seen:.0f} s" if self.host0 is not None else "unknown"
        return f"guest clock {self.guest_seen:.0f} s, host clock {host}"


def _late(p: subprocess.Popen[Any], shown: str, timeout: float, deadline: Deadline) -> Fail:
    """Kill ``p``, which outlived ``timeout`` on both clocks, and say so (for the caller to raise)."""
    p.kill()
    p.wait()
    return Fail(f"`{shown}` still running after {timeout:.0f} s ({deadline.describe()})")


def sh(cmd: str | list[str], *, check: bool = True, timeout: float = 120, user: str | None = None,
       env: dict[str, str] | None = None, text: bool = True, poll: float = 1.0) -> subprocess.CompletedProcess[Any]:
    """Run ``cmd`` (a string goes to bash), capture its output, fail naming it if it exits non-zero
    (with ``check``) or is still running when ``timeout`` has passed on both clocks.  ``text=False``
    gives bytes (the journal's export format is binary)."""
    args = ["bash", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    if user:
        args = ["runuser", "-u", user, "--", *args]
    shown = cmd if isinstance(cmd, str) else " ".join(cmd)
    deadline = Deadline(timeout)
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text, env=env) as p:
        while True:
            try:
                out, err = p.communicate(timeout=poll)
                break
            except subprocess.TimeoutExpired:
                if deadline.passed():
                    raise _late(p, shown, timeout, deadline) from None
    r = subprocess.CompletedProcess(args, p.returncode, out, err)
    if check and r.returncode != 0:
        said = r.stderr or r.stdout
        said = said if isinstance(said, str) else said.decode(errors="replace")
        raise Fail(f"`{shown}` exited {r.returncode}: {said.strip()[-600:]}")
    return r


def sh_stamped(cmd: list[str], *, timeout: float, poll: float = 1.0) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with its stderr in its stdout, each line prefixed as it arrives with the host's
    seconds since the start (``[   12.3] ...``; ``[      ?]`` without a host clock): where a long
    step such as scripts/install spends real time.  Fails as sh() does when ``timeout`` has passed on
    both clocks; does not check the exit status."""
    deadline, watch, lines = Deadline(timeout), HostWatch(), []

    def stamp(line: str) -> str:
        took = watch.seconds()
        return f"[{'?' if took is None else took:>7}] {line}"

    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        assert p.stdout is not None
        reader = threading.Thread(target=lambda: lines.extend(stamp(ln) for ln in p.stdout), daemon=True)
        reader.start()
        while p.poll() is None:
            try:
                p.wait(timeout=poll)
            except subprocess.TimeoutExpired:
                if deadline.passed():
                    raise _late(p, " ".join(cmd), timeout, deadline) from None
        reader.join(10)
    return subprocess.CompletedProcess(cmd, p.returncode, "".join(lines), "")


def step_seconds(stamped: str, marker: str = "+ ") -> list[tuple[str, float]]:
    """(step, host seconds) for each line of sh_stamped()'s output that starts with ``marker`` (a
    traced command): the time until the next stamped line."""
    rows = []
    for line in stamped.splitlines():
        head, _, text = line.partition("] ")
        try:
            rows.append((float(head.strip("[ ")), text))
        except ValueError:
            continue
    return [(text[len(marker):][:100], round(rows[i + 1][0] - t, 1))
            for i, (t, text) in enumerate(rows[:-1]) if text.startswith(marker)]


def wait_for(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll ``pred`` until it returns something truthy, or fail naming ``what`` after ``timeout`` s."""
    deadline = Deadline(timeout)
    last_exc: Exception | None = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except (Fail, OSError, ValueError, subprocess.SubprocessError) as exc:
            last_exc = exc
        if deadline.passed():
            extra = f" (last error: {last_exc})" if last_exc else ""
            raise Fail(f"timed out after {timeout:.0f} s waiting for {what} ({deadline.describe()}){extra}")
        time.sleep(every)


def join(thread: Any, limit: float, poll: float = 1.0) -> bool:
    """Wait for ``thread`` to end, up to ``limit`` on both clocks; True if it ended."""
    deadline = Deadline(limit)
    while thread.is_alive():
        thread.join(poll)
        if thread.is_alive() and deadline.passed():
            return False
    return True
