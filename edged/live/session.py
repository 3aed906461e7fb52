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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from websockets.exceptions import InvalidStatus

from ..config import LiveConfig
from ..secrets import Secret, missing_key
from .backoff import Backoff
from .handler import LiveHandler, TurnEnd, safe_call
from .link import Link
from .profiles import DEFAULT_MODEL, lookup
from .receive import Receiver
from .resumption import CurrentHandle, Handle, HandleStore
from .sender import Sender
from .wire import (
    Failure,
    about_handle,
    about_model,
    about_setup,
    build_client,
    connect_config,
    describe,
)

__all__ = ["HANDLE_FILE", "RETRY_NOW_MIN_S", "LiveHandler", "LiveSession", "TurnEnd"]

log = logging.getLogger(__name__)

HANDLE_FILE = "live_handle.json"
RETRY_NOW_MIN_S = 30.0  # retry_now(): at most one early try per this many seconds
_REFUSED = ("auth_failed", "model_unavailable", "setup_refused")


class LiveSession:
    def __init__(self, cfg: LiveConfig, api_key: Secret | None, state_dir: Path, handler: LiveHandler,
                 tools: Callable[[], list[types.Tool]]) -> None:
        self.cfg = cfg
        self._api_key = api_key
        self.store = HandleStore(Path(state_dir) / HANDLE_FILE, cfg.handle_max_age_s)
        self.handler = handler
        self.profile = lookup(cfg.model)
        self._tools = tools
        self._open_calls: dict[str, str] = {}  # tool call id -> name, until answered or cancelled
        self._backoff = Backoff(cfg.backoff_initial_s, cfg.backoff_max_s, cfg.stable_after_s)
        self._handles = CurrentHandle(self.store)
        self._force_fresh = False
        self._link: Link | None = None
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self._connected_evt: asyncio.Event | None = None
        self._finished: asyncio.Event | None = None
        self._last_end: tuple[str, str] = ("", "")
        self._retry_now_at: float | None = None
        self._stats: dict[str, Any] = {
            "session_id": None, "last_close_code": None, "last_close_reason": "", "reconnects": 0,
            "resumes": 0, "fresh_starts": 0, "goaways": 0, "auth_failures": 0, "resume_fallbacks": 0,
            "turns_replayed": 0, "audio_dropped_bytes": 0, "video_dropped": 0, "last_error": "",
            "state": "stopped", "usage": None, "model": self.profile.name, "model_failures": 0,
            "setup_refusals": 0, "no_answers": 0, "tool_calls_running": 0, "last_turn": None,
        }
        turn_limit = int(getattr(cfg, "replay_buffer_s", 30.0) * 32000)
        # the sender reads the current link at each send
        self._sender = Sender(self._stats, self._open_calls, self.profile, turn_limit, link=lambda: self._link)
        self._receiver = Receiver(handler, self._sender, self._open_calls, self._stats, self._handles)

    # ---- public ------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._link is not None and not self._link.ended.is_set()

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

    async def wait_connected(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        evt = self._events()[1]
        try:
            async with asyncio.timeout(timeout):
                await evt.wait()
        except TimeoutError:
            return False
        return True

    def reset_handle(self) -> None:
        """Forget the persisted handle: the next connection starts a fresh session."""
        self._handles.drop()
        log.info("resumption handle forgotten: the next connection starts a fresh session")

    def retry_now(self) -> bool:
        """While the service refuses us (auth failed, model or setup refused) the session waits
        ``live.auth_retry_s`` between tries: try once now instead (a wake, ``edgectl reload``).  At most
        one such try per ``RETRY_NOW_MIN_S``; returns whether one was started."""
        if self._stats["state"] not in _REFUSED or self._stopping:
            return False
        now = time.monotonic()
        if self._retry_now_at is not None and now - self._retry_now_at < RETRY_NOW_MIN_S:
            log.info("not retrying the Live connection yet: the last early try was %.0f s ago (one per %.0f s)",
                     now - self._retry_now_at, RETRY_NOW_MIN_S)
            return False
        self._retry_now_at = now
        log.info("retrying the Live connection now (%s)", self._stats["state"])
        self._events()[0].set()  # ends the wait in _sleep()
        return True

    async def stop(self) -> None:
        self._stopping = True
        wake, _, finished = self._events()
        wake.set()
        if self._link is not None:
            self._link.why = self._link.why or "stopping"
            self._link.ended.set()
        if self._stats["state"] != "stopped":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(15):
                    await finished.wait()

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

    # ---- the supervisor ----------------------------------------------------------------------------
    def _events(self) -> tuple[asyncio.Event, asyncio.Event, asyncio.Event]:
        if self._wake is None or self._connected_evt is None or self._finished is None:
            self._wake, self._connected_evt, self._finished = asyncio.Event(), asyncio.Event(), asyncio.Event()
        return self._wake, self._connected_evt, self._finished

    def _client(self) -> genai.Client:
        return build_client(self.cfg, self._api_key)

    def _connect_config(self, handle: Handle | None) -> types.LiveConnectConfig:
        try:
            tools = list(self._tools() or [])
        except Exception:
            log.exception("the tools callable failed: connecting without tools")
            tools = []
        return connect_config(self.cfg, handle.value if handle else None, tools, self.profile)

    def _emit(self, state: str, detail: str = "") -> None:
        self._stats["state"] = state
        try:
            self.handler.on_connection(state, detail)
        except Exception:
            log.exception("handler.on_connection failed")

    async def _sleep(self, seconds: float) -> None:
        wake = self._events()[0]
        wake.clear()
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, seconds)):
                await wake.wait()

    async def run(self) -> None:
        """Connect, receive and reconnect until stop()."""
        _, connected_evt, finished = self._events()
        finished.clear()
        no_key = missing_key(self.cfg.base_url, self._api_key)
        if no_key:  # Google without a key: connect to nothing, say so until stopped
            self._stats["last_error"] = no_key
            log.error("Live session not started: %s", no_key)
            self._emit("no_key", no_key)
            try:
                while not self._stopping:
                    await self._sleep(3600)
            finally:
                self._stats["state"] = "stopped"
                finished.set()
            return
        self._stats["state"] = "starting"
        # in a thread: building the client imports its HTTP stack and loads the CA bundle (about 0.1 s),
        # which would hold up the loop, and READY, at start-up
        client = await asyncio.to_thread(self._client)
        fallback_used = False
        try:
            while not self._stopping:
                handle = None if self._force_fresh else self._handles.get()
                self._force_fresh = False
                self._emit("connecting", "resuming" if handle else "fresh session")
                try:
                    await self._connection(client, handle, connected_evt)
                    fallback_used = False
                    if self._stopping:
                        break
                    delay = self._after_link()
                except Failure as f:
                    self._stats["last_error"] = f.detail
                    if f.kind == "rejected" and handle is not None and not fallback_used:
                        fallback_used = True
                        self._stats["resume_fallbacks"] += 1
                        log.warning("the server refused the resumption handle (%s): starting a fresh session "
                                    "(the conversation context is lost)", f.detail)
                        self._handles.drop()
                        self._force_fresh = True
                        delay = 0.0
                    elif f.kind == "auth":
                        self._stats["auth_failures"] += 1
                        log.error("the Live API refused the credentials (%s): retrying in %.1f s",
                                  f.detail, self.cfg.auth_retry_s)
                        self._emit("auth_failed", f.detail)
                        delay = self.cfg.auth_retry_s
                    elif f.kind in ("model", "setup"):
                        delay = self._refused(f)
                    else:
                        if f.kind == "fresh" or (f.kind == "rejected" and handle is not None):
                            self._handles.drop()
                            self._force_fresh = True
                        delay = self._backoff.next_delay()
                        log.warning("Live connection failed (%s): retrying in %.2f s", f.detail, delay)
                        self._emit("offline" if f.kind == "offline" else "disconnected", f.detail)
                if delay > 0:
                    await self._sleep(delay)
        finally:
            connected_evt.clear()
            self._link = None
            self._stats["state"] = "stopped"
            finished.set()

    def _refused(self, f: Failure) -> float:
        """The service refused the model or the setup: say what to fix, retry slowly (like auth)."""
        if f.kind == "model":
            self._stats["model_failures"] += 1
            detail = (f"live.model {self.profile.name!r} is not available to this key ({f.detail}); fix: set "
                      f"live.model to a Live model the key can use (`edgectl doctor` lists them; the default "
                      f"is {DEFAULT_MODEL})")
            state = "model_unavailable"
        else:
            self._stats["setup_refusals"] += 1
            detail = (f"the service refused the setup for {self.profile.name} ({f.detail}); fix: check the "
                      f"[live] keys against the model (README, Supported Live models)")
            state = "setup_refused"
        self._stats["last_error"] = detail
        log.error("%s: retrying in %.1f s", detail, self.cfg.auth_retry_s)
        self._emit(state, detail)
        return self.cfg.auth_retry_s

    def _after_link(self) -> float:
        """Decide the delay after an established connection ended (from self._last_end)."""
        kind, detail = self._last_end
        if kind == "goaway" or kind == "stopping":
            return 0.0
        if kind == "fresh":
            log.warning("the session ended with 1007 (%s): starting a fresh session", detail)
            self._handles.drop()
            self._force_fresh = True
        if kind == "auth":
            self._stats["auth_failures"] += 1
            self._emit("auth_failed", detail)
            return self.cfg.auth_retry_s
        if kind == "model":
            return self._refused(Failure("model", detail))
        delay = self._backoff.next_delay()
        log.info("Live connection lost (%s): reconnecting in %.2f s", detail, delay)
        return delay

    async def _connection(self, client: genai.Client, handle: Handle | None, connected_evt: asyncio.Event) -> None:
        """One connection from connect to close.  Raises Failure when it could not be established."""
        self._last_end = ("", "")
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout(self.cfg.connect_timeout_s):
                    session = await stack.enter_async_context(
                        client.aio.live.connect(model=self.cfg.model, config=self._connect_config(handle)))
            except TimeoutError:
                raise Failure("transient", f"no setupComplete within {self.cfg.connect_timeout_s:g} s") from None
            except Exception as exc:
                raise self._classify_connect(exc, handle) from None
            link = Link(session, resumed=handle is not None)
            self._link = link
            if self._stopping:  # stop() came while connecting
                link.why = "stopping"
                link.ended.set()
            self._backoff.connected()
            sid = getattr(session, "session_id", None)
            self._stats["session_id"] = sid or self._stats["session_id"]
            self._stats["resumes" if handle else "fresh_starts"] += 1
            if self._stats["resumes"] + self._stats["fresh_starts"] > 1:
                self._stats["reconnects"] += 1
            log.info("Live session %s (%s)", "resumed" if handle else "started", sid or "no session id")
            connected_evt.set()
            self._emit("resumed" if handle else "connected", sid or "")
            reader = asyncio.get_running_loop().create_task(self._receiver.read(link))
            try:
                await self._sender.on_new_link(link)
                await self._wait_link(link)
            finally:
                connected_evt.clear()
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
                self._link = None
                self._backoff.disconnected()
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5):
                        await stack.aclose()
            self._finish_link(link, handle)

    def _finish_link(self, link: Link, handle: Handle | None) -> None:
        if self._stopping:
            self._last_end = ("stopping", "")
            return
        if link.why == "goaway":
            self._last_end = ("goaway", "")
            return
        code, reason = describe(link.error) if link.error else (None, link.why)
        self._stats["last_close_code"], self._stats["last_close_reason"] = code, reason
        self._stats["last_error"] = f"{code} {reason}" if code else reason
        if self._sender.turn is not None and link.reply_audio:
            safe_call(self.handler.on_interrupted)  # the partial reply is dropped; the turn is replayed
        self._emit("disconnected", f"{code} {reason}" if code else reason)
        if link.messages == 0 and handle is not None and code not in (None, 1000, 1001, 1006):
            if code != 1008 or about_handle(reason):
                raise Failure("rejected", f"{code} {reason}", code)
        if code == 1008 and about_model(reason):
            self._last_end = ("model", f"{code} {reason}")
        elif code == 1007:
            self._last_end = ("fresh", f"{code} {reason}")
        elif code == 1008 and not about_handle(reason):
            self._last_end = ("auth", f"{code} {reason}")
        else:
            self._last_end = ("transient", f"{code} {reason}" if code else reason)

    def _classify_connect(self, exc: BaseException, handle: Handle | None) -> Failure:
        code, reason = describe(exc)
        detail = f"{code} {reason}" if code else reason
        self._stats["last_close_code"], self._stats["last_close_reason"] = code, reason
        if isinstance(exc, InvalidStatus):
            return Failure("auth" if code in (401, 403) else "transient", detail, code)
        if isinstance(exc, genai_errors.APIError):
            if code == 1008 and about_model(reason):
                return Failure("model", detail, code)
            if code == 1007 and about_setup(reason) and handle is None:
                return Failure("setup", detail, code)
            if code == 1008 and not about_handle(reason):
                return Failure("auth", detail, code)
            if handle is not None and code not in (1000, 1001, 1006):
                return Failure("rejected", detail, code)
            if code == 1007:
                return Failure("fresh", detail, code)
            return Failure("transient", detail, code)
        if isinstance(exc, OSError) and not isinstance(exc, ConnectionError | ssl.SSLError):
            return Failure("offline", detail)
        if isinstance(exc, ConnectionRefusedError):
            return Failure("offline", detail)
        return Failure("transient", detail)

    async def _wait_link(self, link: Link) -> None:
        try:
            await link.ended.wait()
        finally:
            if link.goaway_timer is not None:
                link.goaway_timer.cancel()
