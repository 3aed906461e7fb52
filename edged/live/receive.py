"""How the server's messages become the handler's events: the receive loop of one link.

:class:`Receiver` reads a link until it ends (a failure ends the link; the supervisor reconnects) and
dispatches each ``LiveServerMessage``: reply audio, transcripts, ``interrupted``, the completions
(every ``turnComplete`` summarised first as a :class:`edged.live.handler.TurnEnd`), tool calls and
cancellations (the calls still open, bounded), usage, resumable ``sessionResumptionUpdate`` handles
(kept through :class:`edged.live.resumption.CurrentHandle`) and ``goAway``: the link is ended once no
turn is in progress, or at the latest shortly before ``timeLeft`` runs out (the supervisor then
resumes at once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from google.genai import types

from .handler import LiveHandler, TurnEnd, safe_call
from .link import Link
from .resumption import CurrentHandle, Handle
from .sender import Sender

log = logging.getLogger("edged.live.session")  # the name the session's messages have always had


class Receiver:
    """The server's side of the session.  ``stats`` and ``open_calls`` are the session's, shared with
    the sender (which reads and ends the open turn: :meth:`Sender.turn_complete`)."""

    def __init__(self, handler: LiveHandler, sender: Sender, open_calls: dict[str, str], stats: dict[str, Any],
                 handles: CurrentHandle) -> None:
        self.handler = handler
        self._sender = sender
        self._open_calls = open_calls
        self._stats = stats
        self._handles = handles

    async def read(self, link: Link) -> None:
        try:
            while not link.ended.is_set():
                async for msg in link.session.receive():
                    link.messages += 1
                    await self._dispatch(link, msg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # APIError (close), TypeError/ValueError (bad frame), ConnectionClosed...
            if not link.ended.is_set():
                link.error = exc
                link.why = link.why or "receive failed"
                link.ended.set()

    def _turn_end(self, link: Link, user_turn: bool) -> None:
        info = TurnEnd(audio_bytes=link.gen_audio, tool_calls=link.gen_calls,
                       pending_tool_calls=tuple(self._open_calls), interrupted=link.gen_interrupted,
                       user_turn=user_turn)
        if info.no_answer:
            self._stats["no_answers"] += 1
            log.info("turn complete without audio: %s", info.reason)
        self._stats["last_turn"] = {"audio_bytes": info.audio_bytes, "tool_calls": info.tool_calls,
                                    "pending_tool_calls": len(info.pending_tool_calls),
                                    "no_answer": info.no_answer, "reason": info.reason}
        fn = getattr(self.handler, "on_turn_end", None)
        if fn is not None:
            safe_call(fn, info)

    def _maybe_goaway_now(self, link: Link) -> None:
        if link.goaway_deadline is not None and self._sender.turn is None and not link.ended.is_set():
            link.why = "goaway"
            link.ended.set()

    def _goaway_deadline(self, link: Link) -> None:
        if not link.ended.is_set():
            log.warning("GoAway deadline near with a turn in progress: reconnecting now (the turn is replayed)")
            link.why = "goaway"
            link.ended.set()

    async def _dispatch(self, link: Link, msg: types.LiveServerMessage) -> None:
        h = self.handler
        sc = msg.server_content
        if sc is not None:
            if sc.model_turn and sc.model_turn.parts:
                for part in sc.model_turn.parts:
                    if part.inline_data and part.inline_data.data:
                        link.reply_audio = True
                        link.gen_audio += len(part.inline_data.data)
                        safe_call(h.on_audio, part.inline_data.data)
            if sc.input_transcription and sc.input_transcription.text:
                safe_call(h.on_transcript, "user", sc.input_transcription.text)
            if sc.output_transcription and sc.output_transcription.text:
                safe_call(h.on_transcript, "model", sc.output_transcription.text)
            if sc.interrupted:
                link.gen_interrupted = True
                safe_call(h.on_interrupted)
            if sc.generation_complete:
                safe_call(h.on_generation_complete)
            if sc.turn_complete:
                user_turn = self._sender.turn_complete()
                self._turn_end(link, user_turn)
                link.new_generation()
                safe_call(h.on_turn_complete)
                self._maybe_goaway_now(link)
        if msg.tool_call and msg.tool_call.function_calls:
            calls = list(msg.tool_call.function_calls)
            link.gen_calls += len(calls)
            for c in calls:
                if c.id is not None:
                    self._open_calls[c.id] = c.name or ""
            while len(self._open_calls) > 64:  # bounded: a model that never sees answers cannot grow it
                self._open_calls.pop(next(iter(self._open_calls)))
            self._stats["tool_calls_running"] = len(self._open_calls)
            safe_call(h.on_tool_call, calls)  # also mid-reply: the reply keeps streaming (NON_BLOCKING)
        if msg.tool_call_cancellation and msg.tool_call_cancellation.ids:
            for cid in msg.tool_call_cancellation.ids:
                self._open_calls.pop(cid, None)
            self._stats["tool_calls_running"] = len(self._open_calls)
            safe_call(h.on_tool_cancel, list(msg.tool_call_cancellation.ids))
        if msg.usage_metadata is not None:
            self._stats["usage"] = msg.usage_metadata.model_dump(exclude_none=True, mode="json")
        upd = msg.session_resumption_update
        # resumable false (mid-generation or while tools run) may come with an empty or a stale handle:
        # resuming there loses data (ai.google.dev/api/live#SessionResumptionUpdate), so keep ours
        if upd is not None and upd.resumable is True and upd.new_handle:
            await self._handles.keep(Handle(upd.new_handle, time.time(), self._stats["session_id"]))
        if msg.go_away is not None:
            left = _seconds(msg.go_away.time_left)
            self._stats["goaways"] += 1
            margin = min(max(0.5, left * 0.2), 5.0)
            link.goaway_deadline = time.monotonic() + max(0.0, left - margin)
            if link.goaway_timer is None:
                link.goaway_timer = asyncio.get_running_loop().call_later(
                    max(0.0, left - margin), self._goaway_deadline, link)
            log.info("GoAway: %.1f s left; resuming %s", left,
                     "now" if self._sender.turn is None else "after the current turn")
            self._maybe_goaway_now(link)


def _seconds(value: Any) -> float:
    if value is None:
        return 10.0
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    try:
        return float(str(value).rstrip("s"))
    except ValueError:
        return 10.0
