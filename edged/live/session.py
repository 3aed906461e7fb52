"""The resumable Live session: connect, receive, send, reconnect (one component, one supervisor).

Public API (all on the event loop)::

    s = LiveSession(cfg: LiveConfig, api_key: Secret | None, state_dir: Path,
                    handler: LiveHandler, tools: Callable[[], list[types.Tool]])
    task = asyncio.create_task(s.run())     # supervisor until stop()
    await s.wait_connected(timeout) -> bool
    await s.activity_start(); await s.send_audio(pcm16k); await s.activity_end()
    await s.send_text(text); await s.send_tool_responses([FunctionResponse]); await s.send_video(jpeg)
    s.reset_handle(); s.status() -> dict; s.connected -> bool; await s.stop()

Behaviour:
- The handle of every ``sessionResumptionUpdate`` with ``resumable`` is persisted (``state_dir/live_handle.json``,
  0600, atomic) and used on the next connect while younger than ``cfg.handle_max_age_s``.
- A turn (activity_start .. activity_end, or a text turn) is kept (bounded) until its ``turnComplete``.
  Audio sent while disconnected is buffered in it.  On a new connection the turn is replayed:
  activityStart, the buffered audio, activityEnd if it was already sent.  If the connection dropped
  while reply audio was already arriving, ``handler.on_interrupted()`` is called first (the partial
  reply is flushed by the daemon) and the replayed turn's reply is played in full.
- ``goAway``: once no turn is in progress (or right after the current one completes, at the latest
  shortly before ``timeLeft`` runs out) the old socket is closed, then the session resumes with the
  newest handle.  No backoff, and no turn is lost.
- Failures: capped exponential backoff with full jitter (reset after ``cfg.stable_after_s`` connected);
  ``cfg.connect_timeout_s`` for setupComplete; 1007 drops the handle (fresh session); a resume refused
  by the server falls back once to a fresh session (logged, ``status()["resume_fallbacks"]``);
  auth failures (HTTP 401/403, close 1008 not about the handle) call ``on_connection("auth_failed")``
  and retry every ``cfg.auth_retry_s``.
- A model the service refuses (unknown, retired or not enabled for the key: close 1008 "models/X is not
  found for API version ..., or is not supported for bidiGenerateContent", google/adk-python#3964) calls
  ``on_connection("model_unavailable", detail)`` naming the model and the fix, and retries every
  ``cfg.auth_retry_s`` (no reconnect loop).  A setup refused as invalid (1007 "Invalid JSON payload" /
  "invalid argument" before any message) calls ``on_connection("setup_refused", detail)``, same pace.
- The setup and every tool response follow the model's profile (:mod:`edged.live.profiles`).
- Every ``turnComplete`` is summarised first through the optional ``handler.on_turn_end(TurnEnd)``:
  how much reply audio came since the user's turn ended, tool calls and which are still unanswered,
  whether it was interrupted, and ``no_answer`` with its reason when the model chose not to answer.
- A ``sessionResumptionUpdate`` that is not ``resumable`` (sent while the model generates or runs
  tools, ai.google.dev/api/live#SessionResumptionUpdate) never changes the stored handle.
- The API key is revealed only to build the client and never logged.

The parts, one module each (this class only builds them and keeps the status): the supervisor
(:mod:`edged.live.supervisor`: connections, reconnects, GoAway's reconnect, the handle's use), the
receiver (:mod:`edged.live.receive`: server messages to handler events), the sender
(:mod:`edged.live.sender`: the open turn and its replay, context, tool responses, video), one
connection (:mod:`edged.live.link`), what the handler is told (:mod:`edged.live.handler`), the
handle (:mod:`edged.live.resumption`), and what goes on the wire (:mod:`edged.live.wire`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.genai import types

from ..config import LiveConfig
from ..secrets import Secret
from .handler import LiveHandler, TurnEnd
from .profiles import lookup
from .receive import Receiver
from .resumption import CurrentHandle, HandleStore
from .sender import Sender
from .supervisor import RETRY_NOW_MIN_S, LinkSupervisor

__all__ = ["HANDLE_FILE", "RETRY_NOW_MIN_S", "LiveHandler", "LiveSession", "TurnEnd"]

log = logging.getLogger(__name__)

HANDLE_FILE = "live_handle.json"


class LiveSession:
    def __init__(self, cfg: LiveConfig, api_key: Secret | None, state_dir: Path, handler: LiveHandler,
                 tools: Callable[[], list[types.Tool]]) -> None:
        self.cfg = cfg
        self.store = HandleStore(Path(state_dir) / HANDLE_FILE, cfg.handle_max_age_s)
        self.handler = handler
        self.profile = lookup(cfg.model)
        self._stats: dict[str, Any] = {
            "session_id": None, "last_close_code": None, "last_close_reason": "", "reconnects": 0,
            "resumes": 0, "fresh_starts": 0, "goaways": 0, "auth_failures": 0, "resume_fallbacks": 0,
            "turns_replayed": 0, "audio_dropped_bytes": 0, "video_dropped": 0, "last_error": "",
            "state": "stopped", "usage": None, "model": self.profile.name, "model_failures": 0,
            "setup_refusals": 0, "no_answers": 0, "tool_calls_running": 0, "last_turn": None,
        }
        open_calls: dict[str, str] = {}  # tool call id -> name, until answered or cancelled
        self._handles = CurrentHandle(self.store)
        turn_limit = int(getattr(cfg, "replay_buffer_s", 30.0) * 32000)
        # the sender reads the supervisor's current link at each send (the supervisor is built next)
        self._sender = Sender(self._stats, open_calls, self.profile, turn_limit, link=lambda: self._supervisor.link)
        receiver = Receiver(handler, self._sender, open_calls, self._stats, self._handles)
        self._supervisor = LinkSupervisor(cfg, api_key, self.profile, tools, handler, self._stats, self._handles,
                                          self._sender, receiver)

    # ---- public ------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._supervisor.connected

    def adopt_counters(self, old: LiveSession) -> None:
        """Carry the counters of the session this one replaces (a reload), so status keeps counting."""
        for key, value in old._stats.items():
            if isinstance(value, int) and not isinstance(value, bool) and key != "last_close_code":
                self._stats[key] = self._stats.get(key, 0) + value
        self._stats["last_close_code"] = old._stats.get("last_close_code")
        self._stats["last_close_reason"] = old._stats.get("last_close_reason", "")

    def status(self) -> dict[str, Any]:
        out = dict(self._stats)
        out["connected"] = self.connected
        handle = self._handles.handle
        out["handle_age_s"] = round(handle.age(), 1) if handle else None
        out["turn_in_progress"] = self._sender.turn is not None
        return out

    async def run(self) -> None:
        """Connect, receive and reconnect until stop()."""
        await self._supervisor.run()

    async def stop(self) -> None:
        await self._supervisor.stop()

    async def wait_connected(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        return await self._supervisor.wait_connected(timeout)

    def reset_handle(self) -> None:
        """Forget the persisted handle: the next connection starts a fresh session."""
        self._handles.drop()
        log.info("resumption handle forgotten: the next connection starts a fresh session")

    def retry_now(self) -> bool:
        """While refused (auth failed, model or setup refused) try once now instead of waiting
        ``live.auth_retry_s``; at most one such try per ``RETRY_NOW_MIN_S``; returns whether one was started."""
        return self._supervisor.retry_now()

    async def activity_start(self) -> None:
        await self._sender.activity_start()

    async def send_audio(self, pcm16k: bytes) -> None:
        await self._sender.send_audio(pcm16k)

    async def activity_end(self) -> None:
        await self._sender.activity_end()

    async def send_text(self, text: str) -> None:
        await self._sender.send_text(text)

    async def send_context(self, text: str) -> None:
        """Tell the model something without asking for a reply; dropped (and counted) while disconnected."""
        await self._sender.send_context(text)

    async def send_tool_responses(self, responses: list[types.FunctionResponse]) -> None:
        """Send tool results (``scheduling`` is dropped where the model does not take it)."""
        await self._sender.send_tool_responses(responses)

    async def send_video(self, jpeg: bytes) -> None:
        await self._sender.send_video(jpeg)
