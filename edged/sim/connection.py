"""The emulator's connections: the HTTP handshake (the Live path, the key, the models endpoint), the
setup (Google's per-model rules, :mod:`edged.sim.rules`), session resumption, GoAway and the close.

Choices (documented, since Google does not publish them): an unknown or refused resumption handle
closes the socket with 1008 "resumption handle is invalid"; a resume while the session's previous
socket is still open closes with 1008 "session is still in use by another connection"; a missed
GoAway deadline closes with 1011.  A wrong key gets HTTP 403 at the handshake; the key is never logged.

:class:`Connections` is a part of :class:`edged.sim.live_server.LiveEmulator`, which makes the state below.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from ..live.profiles import bare, lookup
from . import models_api, rules
from .records import Conn, ConnRecord, SimSession
from .rules import field_of

log = logging.getLogger(__name__)

PATH_PREFIX = "/ws/google.ai.generativelanguage."
PATH_SUFFIX = ".GenerativeService.BidiGenerateContent"
API_VERSIONS = ("v1", "v1beta", "v1alpha")
INVALID_HANDLE = "resumption handle is invalid"


def close_reason(reason: str) -> str:
    """A close reason cut to the 123 bytes a close frame holds (RFC 6455 5.5); Google's are cut too:
    google/adk-samples#23 shows "... is not supported for bidiGenerateContent. Call ListMod"."""
    data = reason.encode()
    return reason if len(data) <= 123 else data[:123].decode(errors="ignore")


class Connections:
    api_key: str | None
    models: list[str]
    connections: list[ConnRecord]
    handshake_rejections: list[tuple[float, int, str]]
    sessions: dict[str, SimSession]
    handles_issued: list[str]
    _handles: dict[str, SimSession]
    _live: dict[int, Conn]
    _faults: dict[str, Any]
    _counter: Iterator[int]

    # ---- the handshake -----------------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Any) -> Any:
        path = "/" + request.path.split("?")[0].lstrip("/")
        version, _, rest = path.lstrip("/").partition("/")
        if version in API_VERSIONS and (rest == "models" or rest.startswith("models/")):
            return self._models_request(request, version, rest)
        ok_path = (path.startswith(PATH_PREFIX) and path.endswith(PATH_SUFFIX)
                   and path[len(PATH_PREFIX):-len(PATH_SUFFIX)] in API_VERSIONS)
        if not ok_path:
            self.handshake_rejections.append((time.monotonic(), 404, "unknown path"))
            self._notify()
            return connection.respond(HTTPStatus.NOT_FOUND, "Not found\n")
        if self.api_key is not None and request.headers.get("x-goog-api-key") != self.api_key:
            self.handshake_rejections.append((time.monotonic(), 403, "API key not valid"))
            log.info("handshake refused: API key not valid")
            self._notify()
            return connection.respond(HTTPStatus.FORBIDDEN, "API key not valid. Please pass a valid API key.\n")
        return None

    def _models_request(self, request: Any, version: str, rest: str) -> Response:
        if self.api_key is not None and request.headers.get("x-goog-api-key") != self.api_key:
            self.handshake_rejections.append((time.monotonic(), 403, "API key not valid"))
            self._notify()
            status, obj = 403, {"error": {"code": 403, "message": "API key not valid. Please pass a valid API key.",
                                          "status": "PERMISSION_DENIED"}}
        else:
            query = request.path.partition("?")[2]
            status, obj = models_api.answer(rest, query, version, self.models)
        code, data = models_api.body(status, obj)
        headers = Headers([("Content-Type", "application/json; charset=UTF-8"), ("Content-Length", str(len(data))),
                           ("Connection", "close")])
        return Response(code.value, code.phrase, headers, data)

    # ---- the connection ----------------------------------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        n = next(self._counter)
        rec = ConnRecord(n=n, path=ws.request.path if ws.request else "", t_open=time.monotonic())
        c = Conn(ws, rec)
        self.connections.append(rec)
        self._live[n] = c
        faults, self._faults = self._faults, {}
        self._notify()
        try:
            await self._serve(c, faults)
        except ConnectionClosed:
            pass
        finally:
            for t in list(c.tasks):
                t.cancel()
            if c.session is not None and c.session.live is c:
                c.session.live = None
            rec.closed = True
            rec.t_close = time.monotonic()
            if rec.closed_by == "server":
                close = ws.protocol.close_sent
            elif rec.closed_by == "drop":
                close = None
            else:
                rec.closed_by = "client" if ws.protocol.close_rcvd is not None else "drop"
                close = ws.protocol.close_rcvd
            rec.close_code = close.code if close else 1006
            rec.close_reason = close.reason if close else ""
            self._live.pop(n, None)
            self._notify()

    async def _server_close(self, c: Conn, code: int, reason: str) -> None:
        """The server closes ``c``: every close the emulator makes (a rule broken, a scenario's close
        step, the close control), its reason cut to what a close frame holds."""
        c.rec.closed_by = "server"
        await c.ws.close(code, close_reason(reason))

    async def _serve(self, c: Conn, faults: dict[str, Any]) -> None:
        rec = c.rec
        raw = await c.ws.recv()
        try:
            msg = json.loads(raw)
        except (ValueError, TypeError):
            msg = None
        setup = field_of(msg, "setup")
        if not isinstance(setup, dict):
            self._record(rec.n, "malformed", raw if isinstance(raw, str) else repr(raw))
            return await self._server_close(c, 1007, "the first message must be setup")
        rec.setup = setup
        self._record(rec.n, "setup", setup)
        aad = field_of(field_of(setup, "realtimeInputConfig", "realtime_input_config"),
                       "automaticActivityDetection", "automatic_activity_detection")
        if field_of(aad, "disabled") is not True:
            rec.violations.append("setup does not disable automatic activity detection")
        if faults.get("close_on_setup"):
            code, reason = faults["close_on_setup"]
            return await self._server_close(c, code, reason)
        model = str(field_of(setup, "model") or "")
        rec.model = bare(model)
        version = rec.path.split(PATH_PREFIX, 1)[-1].split(".", 1)[0] if PATH_PREFIX in rec.path else "v1beta"
        if rec.model not in self.models:  # R1: unknown, retired or not enabled for this key
            rec.refused = (1008, rules.not_found(model or "models/", version))
            self._notify()
            return await self._server_close(c, *rec.refused)
        c.profile = lookup(rec.model)
        c.setup = setup
        refusal = rules.check_setup(setup, c.profile)  # R2-R4
        if refusal is not None:
            rec.refused = refusal
            self._notify()
            return await self._server_close(c, *refusal)
        c.empty_args = rules.json_schema_functions(setup, c.profile)  # R6
        handle = field_of(field_of(setup, "sessionResumption", "session_resumption"), "handle")
        if handle:
            rec.handle = handle
            session = self._handles.get(handle)
            if session is None or faults.get("reject_resume"):
                rec.resume_rejected = True
                self._notify()
                return await self._server_close(c, 1008, INVALID_HANDLE)
            if session.live is not None and session.live.open:
                rec.resume_rejected = True
                self._notify()
                return await self._server_close(c, 1008, "session is still in use by another connection")
            rec.resumed = True
        else:
            session = SimSession(id=f"sim-{secrets.token_hex(6)}")
            self.sessions[session.id] = session
        c.session = session
        session.live = c
        rec.session_id = session.id
        self._notify()
        if faults.get("no_setup_complete"):
            async for raw in c.ws:  # never answer: the client must time out
                self._record(rec.n, "unknown", raw if isinstance(raw, str) else repr(raw))
            return
        if faults.get("setup_delay"):
            await asyncio.sleep(float(faults["setup_delay"]))
        await self._send(c, {"setupComplete": {"sessionId": session.id}})
        rec.setup_complete_sent = True
        self._notify()
        await self._send_handle(c)
        async for raw in c.ws:
            await self._on_message(c, raw)

    # ---- resumption and GoAway ----------------------------------------------------------------------
    def _issue_handle(self, session: SimSession) -> str:
        h = secrets.token_urlsafe(24)
        self._handles[h] = session
        self.handles_issued.append(h)
        return h

    async def _send_handle(self, c: Conn) -> None:
        assert c.session is not None
        await self._send(c, {"sessionResumptionUpdate": {"newHandle": self._issue_handle(c.session),
                                                         "resumable": True}})

    async def _goaway(self, c: Conn, time_left: float) -> None:
        await self._send(c, {"goAway": {"timeLeft": f"{time_left:g}s"}})

        async def deadline() -> None:
            await asyncio.sleep(time_left)
            if c.open:
                c.rec.closed_by = "server"
                await c.ws.close(1011, "GoAway deadline passed")

        c.spawn(deadline())
