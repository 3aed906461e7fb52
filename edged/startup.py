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

BLAS_THREADS = "OPENBLAS_NUM_THREADS"


def one_blas_thread() -> None:
    """Give numpy's OpenBLAS one thread, unless the environment already chose (call before numpy loads).

    OpenBLAS starts a thread per core when it loads, and after every matrix product those threads
    spin for a while waiting for the next one.  The daemon's only products are small (Smart Turn's
    mel filters, 80 x 200 by 200 x 800), so the spinning was all it added: measured on this 2-core
    machine, one decision (features + model) cost 88 ms of process CPU with the default against 46 ms
    with one thread, for the same wall time, and the spinning core slowed a second onnxruntime thread
    (turn.smart_threads = 2: p50 48 ms against 30 ms).  On a 4-core Pi three threads would spin.
    """
    os.environ.setdefault(BLAS_THREADS, "1")


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


# ---- optimized byte code ---------------------------------------------------------------------------
# The unit runs the daemon with PYTHONOPTIMIZE=2 (no docstrings, no asserts: about 4 MB less resident
# memory, most of it google-genai's docstrings) and PYTHONPYCACHEPREFIX=/opt/edged/pycache, which
# scripts/install fills with ``edged precompile``: the service cannot write byte code (ProtectSystem=
# strict), so without it every start would compile its ~600 modules again, slower and with more memory.
# Modules the daemon imports inside functions, beyond edged's own (found from a running daemon's
# import log; tests/test_startup.py checks that nothing a serving daemon loads is missed).
LAZY_IMPORTS = ("onnxruntime", "webrtcvad", "simplejpeg", "PIL.Image", "picamera2", "systemd.daemon",
                "systemd.journal", "traceback", "concurrent.futures", "gpiozero", "gpiozero.pins.mock",
                "gpiozero.pins.lgpio", "gpiozero.pins.pigpio", "gpiozero.pins.native", "aiomqtt", "wave",
                "statistics", "queue", "pickle", "pprint", "difflib", "gettext", "argparse", "runpy",
                "colorsys", "ctypes.util", "concurrent.futures.thread", "stringprep", "encodings.idna",
                "google.auth.aio.credentials", "anyio._backends._asyncio", "anyio.streams.memory",
                "anyio.streams.stapled", "httpcore2._async.http2", "httpcore2._sync.http2",
                "httpcore2._async.socks_proxy", "httpcore2._sync.socks_proxy", "httpcore2._backends.trio",
                "websockets.asyncio.client")


def runtime_modules() -> list[str]:
    """edged's own runtime modules (not the harness: edged.dev, edged.sim)."""
    import pkgutil

    import edged

    return sorted(m.name for m in pkgutil.walk_packages(edged.__path__, "edged.")
                  if not m.name.startswith(("edged.dev", "edged.sim", "edged.__main__")))


def _current(src: str, cfile: str) -> bool:
    """Is ``cfile`` this Python's byte code for ``src`` as it is now (the header's magic number,
    timestamp-checked flags, source mtime and size, as the import system checks them)?"""
    import importlib.util

    try:
        with open(cfile, "rb") as f:
            head = f.read(16)
        st = os.stat(src)
    except OSError:
        return False
    return (len(head) == 16 and head[:4] == importlib.util.MAGIC_NUMBER and head[4:8] == b"\0\0\0\0"
            and int.from_bytes(head[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
            and int.from_bytes(head[12:16], "little") == st.st_size & 0xFFFFFFFF)


def precompile(into: str, optimize: int = 2) -> tuple[int, list[str]]:
    """Import what the daemon imports, then write every one of those modules' byte code at
    ``optimize`` under ``into`` (laid out as PYTHONPYCACHEPREFIX expects).  Returns (files written,
    modules that could not be imported: optional ones, absent on this machine).  Byte code already
    current is kept (an update recompiles only what changed).  A file that cannot be written raises
    EdgedError naming it: the unit would otherwise compile that module at every start."""
    import importlib.util
    import py_compile

    from .errors import EdgedError

    optional, sources = [], set()
    import_live_sdk()  # first, as the daemon does: without the modules it leaves out of the SDK
    for name in [*runtime_modules(), *LAZY_IMPORTS]:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional module (absent, or wrong for this machine)
            optional.append(name)
            # its source, when there is one, still runs at every start until the import fails
            with contextlib.suppress(Exception):
                spec = importlib.util.find_spec(name)
                if spec is not None:
                    sources.add(spec.origin)
    sources |= {getattr(m, "__file__", None) for m in list(sys.modules.values())}
    old, sys.pycache_prefix = sys.pycache_prefix, os.path.abspath(into)
    written = 0
    try:
        for src in sorted(f for f in sources if isinstance(f, str) and f.endswith(".py")):
            cfile = importlib.util.cache_from_source(src, optimization=optimize or "")
            if _current(src, cfile):
                continue
            try:
                py_compile.compile(src, cfile=cfile, doraise=True, optimize=optimize)
            except (py_compile.PyCompileError, OSError) as exc:
                raise EdgedError(f"precompile: cannot write {cfile} for {src}: {exc}") from exc
            written += 1
    finally:
        sys.pycache_prefix = old
    return written, optional
