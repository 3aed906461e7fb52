"""The emulator's side of a turn: the client's messages (activity, audio, video, text, client content)
recorded and checked, and each finished turn answered with the scenario's next reply.

Manual activity detection is enforced: a setup without
``realtimeInputConfig.automatic_activity_detection.disabled = true`` (checked at the setup,
:mod:`edged.sim.connection`) and audio outside activityStart..activityEnd are recorded as ``violations``
of the connection.  Barge-in: activityStart (or a new text turn) during a reply stops it and sends
``interrupted`` then ``turnComplete``.

:class:`Turns` is a part of :class:`edged.sim.live_server.LiveEmulator`, which makes the state below.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .records import Conn
from .rules import field_of
from .scenario import Scenario


def _b64(data: Any) -> bytes:
    if not isinstance(data, str):
        return b""
    s = data.replace("+", "-").replace("/", "_").rstrip("=")
    try:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except ValueError:
        return b""


class Turns:
    scenario: Scenario
    turns_received: int

    async def _on_message(self, c: Conn, raw: str | bytes) -> None:
        n = c.rec.n
        try:
            msg = json.loads(raw)
        except (ValueError, TypeError):
            self._record(n, "malformed", raw if isinstance(raw, str) else repr(raw))
            c.rec.violations.append("a client frame is not JSON")
            return
        rt = field_of(msg, "realtime_input", "realtimeInput")
        cc = field_of(msg, "client_content", "clientContent")
        tr = field_of(msg, "tool_response", "toolResponse")
        if isinstance(rt, dict):
            await self._on_realtime(c, rt)
        elif isinstance(cc, dict):
            self._record(n, "client_content", cc)
            if field_of(cc, "turn_complete", "turnComplete"):
                await self._end_turn(c)
        elif isinstance(tr, dict):
            await self._on_tool_response(c, tr)
        else:
            self._record(n, "unknown", msg)

    async def _on_realtime(self, c: Conn, rt: dict[str, Any]) -> None:
        n = c.rec.n
        if field_of(rt, "activity_start", "activityStart") is not None:
            self._record(n, "activity_start", rt)
            if c.in_turn:
                c.rec.violations.append("activityStart while a turn is open")
            if c.reply is not None and not c.reply.done():
                await self._interrupt(c)  # barge-in
            c.in_turn = True
            c.turn_audio_in = 0
        blobs = []
        for key, kind in (("audio", "audio"), ("video", "video")):
            b = field_of(rt, key)
            if isinstance(b, dict):
                blobs.append((kind, b))
        for b in field_of(rt, "media_chunks", "mediaChunks") or []:
            mime = str(field_of(b, "mime_type", "mimeType") or "")
            blobs.append(("video" if mime.startswith("image/") else "audio", b))
        for kind, b in blobs:
            payload = _b64(field_of(b, "data"))
            self._record(n, kind, {"mime_type": field_of(b, "mime_type", "mimeType"), "bytes": len(payload)}, payload)
            if kind == "audio":
                c.turn_audio_in += len(payload)
            if kind == "audio" and not c.in_turn:
                c.rec.violations.append("audio outside activityStart..activityEnd")
            if kind == "video":
                c.video_since_reply += 1
                self._notify()
        text = field_of(rt, "text")
        if isinstance(text, str):
            self._record(n, "text", {"text": text})
        if field_of(rt, "audio_stream_end", "audioStreamEnd") is not None:
            self._record(n, "audio_stream_end", rt)
        if field_of(rt, "activity_end", "activityEnd") is not None:
            self._record(n, "activity_end", rt)
            if not c.in_turn:
                c.rec.violations.append("activityEnd without activityStart")
            c.in_turn = False
            await self._end_turn(c)

    async def _end_turn(self, c: Conn) -> None:
        if c.reply is not None and not c.reply.done():
            await self._interrupt(c)
        assert c.session is not None
        steps = self.scenario.reply(c.session.turns)
        c.session.turns += 1
        c.rec.turns += 1
        self.turns_received += 1
        c.video_since_reply = 0
        c.reply = c.spawn(self._reply(c, steps))
        self._notify()
