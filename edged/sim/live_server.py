"""A local Live API emulator: the unmodified google-genai SDK connects to it over TLS.

Public API::

    emu = LiveEmulator(scenario=None, host="127.0.0.1", port=0, cert_dir=None, api_key=None,
                       speed=1.0, record=None, models=None, pacing=None)
    await emu.start()            # or: async with LiveEmulator(...) as emu:
    emu.base_url                 # "https://127.0.0.1:PORT"  -> HttpOptions(base_url=...)
    emu.ca_file                  # PEM to trust: ssl.create_default_context(cafile=emu.ca_file)
    emu.frames                   # deque of Frame(conn, t, kind, data, payload) received (bounded)
    emu.sent                     # deque of Frame sent to clients (bounded): t = monotonic time just before
                                 # the send; kinds audio (payload = the 24 kHz PCM), turn_complete,
                                 # generation_complete, interrupted, tool_call, tool_call_cancellation,
                                 # go_away, resumption_update, setup_complete, transcript
    emu.sent_of(kind, conn=None) -> list[Frame]
    emu.connections              # list of ConnRecord (setup, resumed, handle, close code, violations...)
    emu.handshake_rejections     # list of (t, http_status, reason) for refused handshakes
    emu.sessions                 # dict session_id -> SimSession(id, turns)
    emu.handles_issued           # every handle sent, in order (the last one is the newest)
    emu.turns_received           # number of turns the emulator answered (all sessions)
    await emu.stop()

    # runtime controls (act on the newest open connection, or conn=N)
    await emu.goaway(time_left=10.0)     await emu.close(code=1000, reason="")
    await emu.drop()                      await emu.interrupt()
    await emu.send_tool_call(name, args) -> call id
    emu.arm(no_setup_complete=True | reject_resume=True | setup_delay=S | close_on_setup=(code, reason))
        faults for the NEXT connection only (consumed when it arrives)
    await emu.wait_for(predicate, timeout=10)          -> predicate's truthy value or TimeoutError
    await emu.wait_frames(kind, n=1, conn=None, timeout=10) -> list[Frame]
    await emu.wait_connections(n, timeout=10)          -> list[ConnRecord] (setups received)

Frame kinds: setup, activity_start, audio, activity_end, audio_stream_end, video, text,
client_content, tool_response, unknown, malformed.

Models and their rules (:mod:`edged.sim.rules`, which cites each): the setup's ``model`` must be one of
``models`` (default: every Gemini-API model of :mod:`edged.live.profiles` that is not retired), else
close 1008 with Google's "is not found for API version ..." text (R1); a setup field or value the model
refuses closes 1007 (R2-R4); ``scheduling`` in a tool response for a model without it closes 1007 (R5);
functions declared with ``parameters_json_schema`` on 2.5 native audio are called with empty args (R6).
``GET /{version}/models`` and ``/{version}/models/NAME`` answer as the Gemini API's models endpoint
(:mod:`edged.sim.models_api`), so ``client.aio.models.list()/get()`` work against the emulator.

The emulator is this module's ``LiveEmulator`` (its state, start and stop, the controls) made of parts,
one module each, every rule cited where it is kept:

    records     ``Frame``, ``ConnRecord``, ``SimSession``, and ``Conn``: an open connection's state
    recording   ``Recording``: the frames received and sent, the record file, the waits, ``_send``
    connection  ``Connections``: the handshake (path, key, models endpoint), the setup and its rules,
                session resumption, GoAway and the close, with the choices Google does not publish
    turns       ``Turns``: the client's messages; manual activity detection is enforced (breaches are
                the connection's ``violations``); barge-in: activityStart or a new text turn during a
                reply interrupts it
    tool_calls  ``ToolCalls``: calls by their declared ``behavior``; BLOCKING ones hold the reply until
                the response, NON_BLOCKING ones let it go on and the response's ``scheduling`` decides
                when the step's ``then`` steps play
    replies     ``Replies``: the scenario's steps, the end of a reply, its interruption, and the reply
                audio paced ``realtime`` (``speed`` times real time), ``instant``, or ``google`` (bursts
                faster than real time, as the service sends them); chosen by ``pacing=`` (the CLI's
                ``--pacing``), else the scenario's ``pacing``, else ``realtime``

``LiveEmulatorThread`` runs one in a background thread for synchronous code.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.server import serve

from ..live.profiles import bare, live_models
from ..live.wslog import ws_logger
from .certs import ensure_certs
from .connection import Connections
from .recording import MAX_FRAMES, MAX_SENT, Recording
from .records import Conn, ConnRecord, Frame, SimSession
from .replies import Replies
from .scenario import PACINGS, Scenario
from .tool_calls import ToolCalls
from .turns import Turns

__all__ = ["ConnRecord", "Frame", "LiveEmulator", "LiveEmulatorThread", "SimSession"]

log = logging.getLogger(__name__)


class LiveEmulator(Connections, Turns, ToolCalls, Replies, Recording):
    def __init__(self, scenario: Scenario | None = None, host: str = "127.0.0.1", port: int = 0,
                 cert_dir: str | Path | None = None, api_key: str | None = None, speed: float = 1.0,
                 record: str | Path | None = None, models: list[str] | None = None,
                 pacing: str | None = None) -> None:
        self.scenario = scenario or Scenario()
        if pacing is not None and pacing not in PACINGS:
            raise ValueError(f"pacing must be one of {', '.join(PACINGS)} (got {pacing!r})")
        self.pacing = pacing
        # the models this key may use; the default is every Live model the Gemini API still serves
        self.models: list[str] = ([bare(m) for m in models] if models is not None
                                  else [p.name for p in live_models() if p.api == "gemini"])
        self.host, self.port = host, port
        self.cert_dir = Path(cert_dir) if cert_dir else None
        self.api_key = api_key
        self.speed = speed
        self.record_path = Path(record) if record else None
        self.frames: deque[Frame] = deque(maxlen=MAX_FRAMES)
        self.sent: deque[Frame] = deque(maxlen=MAX_SENT)
        self.connections: list[ConnRecord] = []
        self.handshake_rejections: list[tuple[float, int, str]] = []
        self.sessions: dict[str, SimSession] = {}
        self.handles_issued: list[str] = []
        self.turns_received = 0
        self.ca_file: Path | None = None
        self._handles: dict[str, SimSession] = {}
        self._live: dict[int, Conn] = {}
        self._faults: dict[str, Any] = {}
        self._counter = itertools.count(1)
        self._calls = itertools.count(1)
        self._server: Any = None
        self._tmpdir: Any = None
        self._record_file: Any = None
        self._changed: asyncio.Event | None = None

    # ---- lifecycle -------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    async def start(self) -> LiveEmulator:
        if self.cert_dir is None:
            import tempfile

            self._tmpdir = tempfile.TemporaryDirectory(prefix="edged-sim-")
            self.cert_dir = Path(self._tmpdir.name)
        paths = await asyncio.to_thread(ensure_certs, self.cert_dir)
        self.ca_file = paths.ca_file
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(paths.cert_file, paths.key_file)
        if self.record_path:
            self._record_file = await asyncio.to_thread(self._open_record)
        self._changed = asyncio.Event()
        self._server = await serve(self._handler, self.host, self.port, ssl=ctx,
                                   process_request=self._process_request, max_size=16 * 1024 * 1024,
                                   ping_interval=None, logger=ws_logger("edged.sim.websockets"))
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("emulator listening on %s", self.base_url)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        for c in list(self._live.values()):
            for t in list(c.tasks):
                t.cancel()
        if self._record_file is not None:
            self._record_file.close()
            self._record_file = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    async def __aenter__(self) -> LiveEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- controls ----------------------------------------------------------------------------------
    def arm(self, **faults: Any) -> None:
        """Faults for the next connection: no_setup_complete, reject_resume, setup_delay, close_on_setup."""
        known = {"no_setup_complete", "reject_resume", "setup_delay", "close_on_setup"}
        bad = set(faults) - known
        if bad:
            raise ValueError(f"unknown fault(s) {sorted(bad)}; known: {sorted(known)}")
        self._faults.update(faults)

    def current(self, conn: int | None = None) -> Conn | None:
        if conn is not None:
            return self._live.get(conn)
        live = [c for c in self._live.values() if c.open]
        return live[-1] if live else None

    async def goaway(self, time_left: float = 10.0, conn: int | None = None) -> None:
        c = self.current(conn)
        if c is not None:
            await self._goaway(c, time_left)

    async def close(self, code: int = 1000, reason: str = "", conn: int | None = None) -> None:
        c = self.current(conn)
        if c is not None:
            await self._server_close(c, code, reason)

    async def drop(self, conn: int | None = None) -> None:
        c = self.current(conn)
        if c is not None:
            c.rec.closed_by = "drop"
            c.ws.transport.abort()

    async def interrupt(self, conn: int | None = None) -> None:
        c = self.current(conn)
        if c is not None:
            await self._interrupt(c)

    async def send_tool_call(self, name: str, args: dict[str, Any] | None = None,
                             conn: int | None = None) -> str:
        c = self.current(conn)
        if c is None:
            raise ConnectionError("emulator: no open connection")
        call = self._new_call(c, name, args or {}, None)  # as a scenario's call is made (R6) and recorded
        await self._send_call(c, call)
        return str(call["id"])

    async def send_raw(self, message: dict[str, Any] | str, conn: int | None = None) -> None:
        c = self.current(conn)
        if c is not None:
            await self._send(c, message)


class LiveEmulatorThread:
    """Runs a LiveEmulator on its own event loop in a background thread (for synchronous code).

    ``with LiveEmulatorThread(scenario=..., speed=...) as t:`` then ``t.base_url``, ``t.ca_file``,
    ``t.emu`` (read its records), and ``t.call(t.emu.goaway, 5)`` to run a control coroutine.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.emu = LiveEmulator(**kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LiveEmulatorThread:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.emu.start())
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.emu.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="edged-sim", daemon=True)
        self._thread.start()
        ready.wait(30)
        if errors:
            raise errors[0]
        return self

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 30.0, **kwargs: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(fn(*args, **kwargs), self._loop).result(timeout)

    @property
    def base_url(self) -> str:
        return self.emu.base_url

    @property
    def ca_file(self) -> Path | None:
        return self.emu.ca_file

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop = None

    def __enter__(self) -> LiveEmulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
