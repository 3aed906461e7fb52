"""Start-up trace: monotonic stamps per step of ``edged run``, logged at debug when READY is sent.

``process_age()`` is the time since the kernel started this process (so the interpreter's start and
the imports before :class:`edged.app.App` existed are counted too); each ``Trace.stamp`` records how
long the step that just ended took.  Read by a developer profiling the start (``--log-level debug``)
and by ``bench/bench_daemon.py``'s start-up figures.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
from collections.abc import Iterator


def process_age() -> float:
    """Seconds since this process started (CLOCK_BOOTTIME against /proc/self/stat's starttime)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        start_ticks = int(stat[stat.rindex(b")") + 2:].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


class Trace:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.age0 = process_age()  # the interpreter's start and the imports so far
        self._last = self.t0
        self.steps: list[tuple[str, float]] = []

    def stamp(self, name: str) -> None:
        now = time.monotonic()
        self.steps.append((name, now - self._last))
        self._last = now

    def summary(self) -> str:
        parts = [f"imports {self.age0:.3f}"] + [f"{name} {s:.3f}" for name, s in self.steps]
        return f"start-up {self.age0 + self._last - self.t0:.3f} s: " + ", ".join(parts)


def rss_mb() -> float:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def settle_memory() -> tuple[float, float]:
    """Once started: collect the start-up garbage, freeze what is left out of later collections, and
    give the allocator's free pages back to the kernel (glibc ``malloc_trim``).  Returns the RSS in
    MB before and after.  Measured on the idle daemon: about -2.2 MB (the trim; the collection alone
    changed nothing measurable)."""
    import ctypes
    import ctypes.util
    import gc

    before = rss_mb()
    gc.collect()
    gc.freeze()  # the start-up objects live as long as the daemon: later collections skip them
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    return before, rss_mb()


# Optional modules google-genai imports when they are installed, which the daemon never uses: PIL (the
# SDK accepts PIL images; the daemon sends JPEG bytes) and trio (httpcore2's other async backend; the
# daemon runs on asyncio).  Measured: 2.1 MB and 3.3 MB of RSS, and about 0.2 s of start-up for trio.
UNUSED_BY_SDK = ("PIL", "trio")
SDK_MODULES = ("google.genai.types", "google.genai", "httpcore2")


@contextlib.contextmanager
def without(*names: str) -> Iterator[None]:
    """Inside, importing any of ``names`` (not yet imported) raises ImportError, as if not installed;
    after, they can be imported again (the camera imports PIL when it resizes)."""
    blocked = [n for n in names if n not in sys.modules]
    for n in blocked:
        sys.modules[n] = None  # type: ignore[assignment]  # the documented way to make an import fail
    try:
        yield
    finally:
        for n in blocked:
            if sys.modules.get(n, 0) is None:
                del sys.modules[n]


def import_live_sdk() -> None:
    """Import google-genai and its HTTP stack now, without the optional modules it would pull in."""
    with without(*UNUSED_BY_SDK):
        for name in SDK_MODULES:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
