"""The emulator's recording: every frame received (``frames``, and the ``record`` file) and sent
(``sent``), each stamped with the monotonic clock; the waits on them; and the one way out, ``_send``.

:class:`Recording` is a part of :class:`edged.sim.live_server.LiveEmulator`, which makes the state below.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .records import Conn, ConnRecord, Frame

log = logging.getLogger(__name__)

MAX_FRAMES = 50_000
MAX_SENT = 20_000  # sent messages kept (audio chunks of 40 ms: 13 minutes of reply audio at most)


class Recording:
    frames: deque[Frame]
    sent: deque[Frame]
    connections: list[ConnRecord]
    record_path: Path | None
    _record_file: Any
    _changed: asyncio.Event | None

    def _open_record(self) -> Any:
        assert self.record_path is not None
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        return self.record_path.open("a", encoding="utf-8", buffering=1)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    def _record(self, conn: int, kind: str, data: Any, payload: bytes = b"") -> Frame:
        f = Frame(conn, time.monotonic(), kind, data, payload)
        self.frames.append(f)
        if self._record_file is not None:
            try:
                self._record_file.write(json.dumps({"conn": conn, "t": f.t, "kind": kind, "data": data},
                                                   default=str) + "\n")
            except OSError as exc:
                log.warning("cannot write the record file: %s", exc)
        self._notify()
        return f

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("emulator: condition not met in time")
            assert self._changed is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.1))

    def sent_of(self, kind: str, conn: int | None = None) -> list[Frame]:
        return [f for f in self.sent if f.kind == kind and (conn is None or f.conn == conn)]

    def frames_of(self, kind: str, conn: int | None = None) -> list[Frame]:
        return [f for f in self.frames if f.kind == kind and (conn is None or f.conn == conn)]

    async def wait_frames(self, kind: str, n: int = 1, conn: int | None = None,
                          timeout: float = 10.0) -> list[Frame]:  # noqa: ASYNC109
        def have() -> list[Frame] | None:
            fs = self.frames_of(kind, conn)
            return fs if len(fs) >= n else None

        return await self.wait_for(have, timeout)

    async def wait_connections(self, n: int, timeout: float = 10.0) -> list[ConnRecord]:  # noqa: ASYNC109
        return await self.wait_for(
            lambda: [c for c in self.connections if c.setup is not None]
            if sum(c.setup is not None for c in self.connections) >= n else None, timeout)

    async def _send(self, c: Conn, message: dict[str, Any] | str, payload: bytes = b"") -> None:
        text = message if isinstance(message, str) else json.dumps(message)
        async with c.send_lock:
            self._note_sent(c, message, payload)
            await c.ws.send(text)

    _SENT_KINDS = (("toolCall", "tool_call"), ("toolCallCancellation", "tool_call_cancellation"),
                   ("goAway", "go_away"), ("sessionResumptionUpdate", "resumption_update"),
                   ("setupComplete", "setup_complete"))
    _CONTENT_KINDS = (("modelTurn", "audio"), ("inputTranscription", "transcript"),
                      ("outputTranscription", "transcript"), ("interrupted", "interrupted"),
                      ("generationComplete", "generation_complete"), ("turnComplete", "turn_complete"))

    def _note_sent(self, c: Conn, message: dict[str, Any] | str, payload: bytes) -> None:
        """What was sent, when (the monotonic clock is the machine's: tests compare it with the daemon's)."""
        if not isinstance(message, dict):
            return
        t = time.monotonic()
        sc = message.get("serverContent") or {}
        kinds = [k for key, k in self._CONTENT_KINDS if sc.get(key)]
        kinds += [k for key, k in self._SENT_KINDS if key in message]
        for kind in kinds:
            audio = kind == "audio"
            self.sent.append(Frame(c.rec.n, t, kind, {"bytes": len(payload)} if audio else message,
                                   payload if audio else b""))
        if kinds:
            self._notify()
