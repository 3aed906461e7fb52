"""ALSA ``type file`` PCMs for machines without a sound card (tests, the demo).

    env = write_alsa_config(tmp / "asound.conf",
                            captures={"mic": tmp / "in.raw"},        # raw S16_LE in the read format
                            playbacks={"spk": tmp / "out.wav"})      # WAV written by ALSA
    os.environ.update(env)          # before the process opens its first PCM with these names

A capture ``infile`` is read as fast as it is asked for; past its end ALSA returns junk, so pad it
with silence, or make it a FIFO and write it in real time with :class:`FifoFeeder`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

SYSTEM_CONFIG = "/usr/share/alsa/alsa.conf"


def _quote(path: str | os.PathLike[str]) -> str:
    s = str(path)
    if '"' in s or "\\" in s or "\n" in s:
        raise ValueError(f"{s!r}: ALSA config paths must not contain quotes, backslashes or newlines")
    return f'"{s}"'


def _check_name(name: str) -> str:
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        raise ValueError(f"{name!r}: PCM names must be letters, digits, '_' or '-'")
    return name


def alsa_config_text(captures: dict[str, str | os.PathLike[str]] | None = None,
                     playbacks: dict[str, str | os.PathLike[str]] | None = None) -> str:
    out: list[str] = ["# written by edged.dev.filedev"]
    for name, infile in (captures or {}).items():
        out.append(f"pcm.{_check_name(name)} {{\n  type file\n  slave.pcm \"null\"\n  file \"/dev/null\"\n"
                   f"  infile {_quote(infile)}\n  format \"raw\"\n}}")
    for name, wav in (playbacks or {}).items():
        out.append(f"pcm.{_check_name(name)} {{\n  type file\n  slave.pcm \"null\"\n  file {_quote(wav)}\n"
                   f"  format \"wav\"\n}}")
    return "\n".join(out) + "\n"


def alsa_env(path: str | os.PathLike[str]) -> dict[str, str]:
    """The environment that makes alsa-lib read the system config, then ``path``."""
    return {"ALSA_CONFIG_PATH": f"{SYSTEM_CONFIG}:{Path(path).resolve()}"}


def write_alsa_config(path: str | os.PathLike[str], captures: dict[str, str | os.PathLike[str]] | None = None,
                      playbacks: dict[str, str | os.PathLike[str]] | None = None) -> dict[str, str]:
    """Write an ALSA config defining capture PCMs (``name -> raw infile or FIFO``) and playback PCMs
    (``name -> WAV to write``).  Returns the env var(s) to set: ``{"ALSA_CONFIG_PATH": ...}``."""
    path = Path(path)
    text = alsa_config_text(captures, playbacks)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return alsa_env(path)


def silence(seconds: float, rate: int = 16000, channels: int = 1) -> bytes:
    return bytes(2 * channels * round(seconds * rate))


_PIPE_DEFAULT = 65536
_PIPE_WANTED = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size


class FifoFeeder:
    """Writes raw audio into a FIFO at real-time pace, then silence until stopped.

    Start it before the capture PCM opens; stop the capture before the feeder (past the writer's
    close, the file PCM reads junk as fast as it can).

    ``source`` is bytes or a path to a raw file.  More audio can be queued with :meth:`feed` while
    running (e.g. the next line of a scripted conversation).  ``chunk_ms`` must be at least one
    capture period (160 ms for 80 ms reads is a good default).
    """

    def __init__(self, fifo: str | os.PathLike[str], source: bytes | str | os.PathLike[str] = b"", *,
                 rate: int = 16000, channels: int = 1, chunk_ms: int = 160, create: bool = True,
                 period_ms: int = 80, lead_ms: int = 480) -> None:
        self.fifo = Path(fifo)
        self._source = source
        self.rate, self.channels, self.chunk_ms = rate, channels, chunk_ms
        # ALSA's file plugin does one read() per period and fills a short read with junk; writes of
        # at most PIPE_BUF bytes are atomic, so writing whole periods keeps every read whole.
        period = (rate * period_ms // 1000) * 2 * channels
        self._atom = period if period <= select.PIPE_BUF else 0
        # The file plugin fills a read the FIFO cannot satisfy with junk, so the FIFO is kept this far
        # ahead of real time: a feeder starved of CPU for less than this never starves the reader.
        self.lead_s = lead_ms / 1000
        self._create = create
        self._lock = threading.Lock()
        self._pending = bytearray()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd = -1
        self.bytes_written = 0
        self.audio_bytes_written = 0  # of the queued audio (not the trailing silence)
        self.stalls = 0
        self.error: BaseException | None = None

    @property
    def chunk_bytes(self) -> int:
        frame = 2 * self.channels
        return max(frame, (self.rate * self.chunk_ms // 1000) * frame)

    def start(self) -> FifoFeeder:
        """Create the FIFO and open it (read-write, so this never blocks) before anything reads it.

        Start the feeder before the PCM is opened: alsa-lib opens the infile inside ``snd_pcm_open``,
        and pyalsaaudio holds the GIL there, so a FIFO without a writer would freeze the process.
        """
        if self._create and not self.fifo.exists():
            os.mkfifo(self.fifo)
        data = self._source if isinstance(self._source, bytes | bytearray) else Path(self._source).read_bytes()
        self.feed(bytes(data))
        # Linux: opening a FIFO O_RDWR does not wait for a peer; non-blocking so stop() always works
        self._fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
        # The head start must fit in the pipe with room to spare: a full pipe makes the plugin read junk.
        size = _PIPE_DEFAULT
        with contextlib.suppress(OSError):
            size = fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, _PIPE_WANTED)
        per_s = 2 * self.channels * self.rate
        self.lead_s = min(self.lead_s, max(0.0, (size // 2 - 2 * self.chunk_bytes) / per_s))
        self._thread = threading.Thread(target=self._run, name=f"fifo-feeder:{self.fifo.name}", daemon=True)
        self._thread.start()
        return self

    def feed(self, data: bytes) -> None:
        """Queue more audio (played after what is queued; silence fills any gap)."""
        with self._lock:
            self._pending += data

    def pending_bytes(self) -> int:
        with self._lock:
            return len(self._pending)

    def _run(self) -> None:
        fd, n = self._fd, self.chunk_bytes
        dt = n / (2 * self.channels * self.rate)
        atom = self._atom if self._atom and n % self._atom == 0 else n
        t_next = time.monotonic() - self.lead_s
        try:
            while not self._stop.is_set():
                with self._lock:
                    chunk = bytes(self._pending[:n])
                    del self._pending[:n]
                audio = len(chunk)
                chunk += bytes(n - len(chunk))
                for i in range(0, n, atom):
                    piece = memoryview(chunk)[i:i + atom]
                    while piece and not self._stop.is_set():
                        try:  # whole periods (<= PIPE_BUF) are written atomically, or not at all
                            piece = piece[os.write(fd, piece):]
                        except BlockingIOError:  # pipe full: nobody is reading (muted, stopped)
                            self.stalls += 1
                            self._stop.wait(0.05)
                self.bytes_written += n
                self.audio_bytes_written += audio
                t_next += dt
                delay = t_next - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                elif delay < -1.0 - self.lead_s:  # far behind (the reader stalled): do not burst
                    t_next = time.monotonic() - self.lead_s
        except OSError as exc:  # reported to the test / demo that owns the feeder
            self.error = exc
            log.warning("fifo feeder %s failed: %s", self.fifo, exc)
        finally:
            os.close(fd)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> FifoFeeder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
