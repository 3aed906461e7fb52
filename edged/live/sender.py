"""What edged sends on the Live connection: the open turn, context, tool responses and video.

:class:`Sender` owns the open turn (:class:`Turn`): it is kept (bounded) until its ``turnComplete``
(:meth:`Sender.turn_complete`, called by the receiver), its audio is buffered while disconnected, and
a new connection replays it (:meth:`Sender.on_new_link`, called by the supervisor).  It also keeps the
tool responses that could not be sent (the newest 32) for a resumed session.  It sends on the link
the supervisor has open now (``link()``); it never opens one, and ends one only by a failed send
(:func:`edged.live.link.send`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from google.genai import types

from .link import Link, send
from .profiles import Profile
from .wire import AUDIO_MIME, REPLAY_CHUNK, adapt_responses

log = logging.getLogger("edged.live.session")  # the name the session's messages have always had


class Turn:
    """A user turn kept until its turnComplete, with what was sent on the current connection."""

    def __init__(self, kind: str, limit: int, text: str = "") -> None:
        self.kind = kind
        self.text = text
        self.audio = bytearray()
        self.limit = limit
        self.overflow = 0
        self.ended = kind == "text"
        self.start_sent = False
        self.sent_upto = 0
        self.end_sent = False
        self.replays = 0


class Sender:
    """The client's side of the session.  ``stats`` and ``open_calls`` (tool call id -> name, until
    answered or cancelled) are the session's, shared with the receiver."""

    def __init__(self, stats: dict[str, Any], open_calls: dict[str, str], profile: Profile, turn_limit: int,
                 link: Callable[[], Link | None]) -> None:
        self._stats = stats
        self._open_calls = open_calls
        self.profile = profile
        self._turn_limit = turn_limit
        self._link = link  # the supervisor's current link, read at each send
        self._turn: Turn | None = None
        self._pending_tool_responses: list[types.FunctionResponse] = []
        self._send_lock: asyncio.Lock | None = None

    @property
    def turn(self) -> Turn | None:
        """The open turn (None when there is none); only this class changes it."""
        return self._turn

    def turn_complete(self) -> bool:
        """A turnComplete came: whether it answers the open turn (ended and all of it sent), which is then done."""
        t = self._turn
        user_turn = t is not None and t.ended and t.end_sent
        if user_turn:
            self._turn = None
        return user_turn

    async def activity_start(self) -> None:
        if self._turn is not None and not self._turn.ended:
            log.debug("activity_start while a turn is open: the open turn is kept")
            return
        self._turn = Turn("audio", self._turn_limit)
        link = self._link()
        if link is not None:
            link.new_generation()
        await self._flush_turn()

    async def send_audio(self, pcm16k: bytes) -> None:
        t = self._turn
        if t is None or t.ended:
            self._stats["audio_dropped_bytes"] += len(pcm16k)
            return
        room = t.limit - len(t.audio)
        if room < len(pcm16k):
            if not t.overflow:
                log.warning("turn audio exceeds the replay buffer (%d bytes): the rest is not sent", t.limit)
            t.overflow += len(pcm16k) - max(room, 0)
            self._stats["audio_dropped_bytes"] += len(pcm16k) - max(room, 0)
            pcm16k = pcm16k[:max(room, 0)]
        t.audio += pcm16k
        await self._flush_turn()

    async def activity_end(self) -> None:
        if self._turn is None or self._turn.ended:
            return
        self._turn.ended = True
        await self._flush_turn()

    async def send_text(self, text: str) -> None:
        self._turn = Turn("text", self._turn_limit, text)
        link = self._link()
        if link is not None:
            link.new_generation()
        await self._flush_turn()

    async def send_context(self, text: str) -> None:
        """Tell the model something (e.g. "the doorbell button was pressed") without asking for a reply.

        Sent as client content with turn_complete=False; dropped (and counted) while disconnected:
        a sensor change that old is not worth replaying.
        """
        link = self._link()
        if link is None or link.ended.is_set():
            self._stats["context_dropped"] = self._stats.get("context_dropped", 0) + 1
            return
        await send(link, link.session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text=text)]), turn_complete=False))

    async def send_tool_responses(self, responses: list[types.FunctionResponse]) -> None:
        """Send tool results (``scheduling`` is dropped where the model does not take it)."""
        responses = adapt_responses(responses, self.profile)
        for r in responses:
            if r.id is not None:
                self._open_calls.pop(r.id, None)
        self._stats["tool_calls_running"] = len(self._open_calls)
        link = self._link()
        if link is None or link.ended.is_set():
            self._pending_tool_responses.extend(responses)
            del self._pending_tool_responses[:-32]
            return
        await send(link, link.session.send_tool_response(function_responses=responses))

    async def send_video(self, jpeg: bytes) -> None:
        link = self._link()
        if link is None or link.ended.is_set():
            self._stats["video_dropped"] += 1
            return
        await send(link, link.session.send_realtime_input(video=types.Blob(data=jpeg, mime_type="image/jpeg")))

    async def on_new_link(self, link: Link) -> None:
        """A connection was just made (``link`` is the current one): replay the open turn, send the kept
        tool responses if the session was resumed (a fresh session never made those calls)."""
        t = self._turn
        if t is not None and t.start_sent:  # partly or wholly sent on the old connection: replay it
            t.start_sent = t.end_sent = False
            t.sent_upto = 0
            t.replays += 1
            self._stats["turns_replayed"] += 1
            log.info("replaying the open turn on the new connection (%d bytes of audio%s)",
                     len(t.audio), ", ended" if t.ended else "")
        await self._flush_turn()
        if self._pending_tool_responses:
            responses, self._pending_tool_responses = self._pending_tool_responses, []
            if link.resumed:
                await send(link, link.session.send_tool_response(function_responses=responses))
            else:
                log.info("dropping %d tool responses meant for the previous session", len(responses))

    async def _flush_turn(self) -> None:
        """Send what the open turn has not yet sent on the current connection."""
        if self._send_lock is None:
            self._send_lock = asyncio.Lock()
        async with self._send_lock:
            t, link = self._turn, self._link()
            if t is None or link is None or link.ended.is_set():
                return
            s = link.session
            # each flag is set before the send: the reply (and its turnComplete) can be dispatched by the
            # reader before the send returns; a failed send ends the link and the turn is replayed anyway
            if t.kind == "text":
                if not t.end_sent:
                    t.start_sent = t.end_sent = True
                    await send(link, s.send_client_content(
                        turns=types.Content(role="user", parts=[types.Part(text=t.text)]), turn_complete=True))
                return
            if not t.start_sent:
                t.start_sent = True
                if not await send(link, s.send_realtime_input(activity_start=types.ActivityStart())):
                    return
            while t.sent_upto < len(t.audio):
                chunk = bytes(t.audio[t.sent_upto:t.sent_upto + REPLAY_CHUNK])
                t.sent_upto += len(chunk)
                if not await send(link, s.send_realtime_input(
                        audio=types.Blob(data=chunk, mime_type=AUDIO_MIME))):
                    return
            if t.ended and not t.end_sent:
                t.end_sent = True
                await send(link, s.send_realtime_input(activity_end=types.ActivityEnd()))
