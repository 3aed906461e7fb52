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
from typing import Any, Protocol

from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ..config import LiveConfig
from ..secrets import Secret
from .backoff import Backoff
from .resumption import Handle, HandleStore
from .wire import AUDIO_MIME, REPLAY_CHUNK, Failure, about_handle, build_client, connect_config, describe

log = logging.getLogger(__name__)

HANDLE_FILE = "live_handle.json"


class LiveHandler(Protocol):
    """What the session reports, called on the event loop.  Exceptions raised here are logged."""

    def on_audio(self, pcm24k: bytes) -> None: ...
    def on_interrupted(self) -> None: ...
    def on_generation_complete(self) -> None: ...
    def on_turn_complete(self) -> None: ...
    def on_tool_call(self, calls: list[types.FunctionCall]) -> None: ...
    def on_tool_cancel(self, ids: list[str]) -> None: ...
    def on_transcript(self, role: str, text: str) -> None: ...
    def on_connection(self, state: str, detail: str) -> None: ...


class _Turn:
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


class _Link:
    """One connection: the SDK session and why it ended."""

    def __init__(self, session: Any, resumed: bool) -> None:
        self.session = session
        self.resumed = resumed
        self.ended = asyncio.Event()
        self.error: BaseException | None = None
        self.why = ""
        self.messages = 0
        self.goaway_deadline: float | None = None
        self.goaway_timer: asyncio.TimerHandle | None = None
        self.reply_audio = False  # reply audio arrived for the open turn


class LiveSession:
    def __init__(self, cfg: LiveConfig, api_key: Secret | None, state_dir: Path, handler: LiveHandler,
                 tools: Callable[[], list[types.Tool]]) -> None:
        self.cfg = cfg
        self._api_key = api_key
        self.store = HandleStore(Path(state_dir) / HANDLE_FILE, cfg.handle_max_age_s)
        self.handler = handler
        self._tools = tools
        self._backoff = Backoff(cfg.backoff_initial_s, cfg.backoff_max_s, cfg.stable_after_s)
        self._turn_limit = int(getattr(cfg, "replay_buffer_s", 30.0) * 32000)
        self._handle: Handle | None = None
        self._handle_loaded = False
        self._force_fresh = False
        self._link: _Link | None = None
        self._turn: _Turn | None = None
        self._pending_tool_responses: list[types.FunctionResponse] = []
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self._connected_evt: asyncio.Event | None = None
        self._finished: asyncio.Event | None = None
        self._send_lock: asyncio.Lock | None = None
        self._last_end: tuple[str, str] = ("", "")
        self._stats: dict[str, Any] = {
            "session_id": None, "last_close_code": None, "last_close_reason": "", "reconnects": 0,
            "resumes": 0, "fresh_starts": 0, "goaways": 0, "auth_failures": 0, "resume_fallbacks": 0,
            "turns_replayed": 0, "audio_dropped_bytes": 0, "video_dropped": 0, "last_error": "",
            "state": "stopped", "usage": None,
        }

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
        out["handle_age_s"] = round(self._handle.age(), 1) if self._handle else None
        out["turn_in_progress"] = self._turn is not None
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
        self._handle = None
        self._handle_loaded = True
        self.store.clear()
        log.info("resumption handle forgotten: the next connection starts a fresh session")

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
        if self._turn is not None and not self._turn.ended:
            log.debug("activity_start while a turn is open: the open turn is kept")
            return
        self._turn = _Turn("audio", self._turn_limit)
        if self._link is not None:
            self._link.reply_audio = False
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
        self._turn = _Turn("text", self._turn_limit, text)
        if self._link is not None:
            self._link.reply_audio = False
        await self._flush_turn()

    async def send_context(self, text: str) -> None:
        """Tell the model something (e.g. "the doorbell button was pressed") without asking for a reply.

        Sent as client content with turn_complete=False; dropped (and counted) while disconnected:
        a sensor change that old is not worth replaying.
        """
        link = self._link
        if link is None or link.ended.is_set():
            self._stats["context_dropped"] = self._stats.get("context_dropped", 0) + 1
            return
        await self._send(link, link.session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text=text)]), turn_complete=False))

    async def send_tool_responses(self, responses: list[types.FunctionResponse]) -> None:
        link = self._link
        if link is None or link.ended.is_set():
            self._pending_tool_responses.extend(responses)
            del self._pending_tool_responses[:-32]
            return
        await self._send(link, link.session.send_tool_response(function_responses=responses))

    async def send_video(self, jpeg: bytes) -> None:
        link = self._link
        if link is None or link.ended.is_set():
            self._stats["video_dropped"] += 1
            return
        await self._send(link, link.session.send_realtime_input(video=types.Blob(data=jpeg, mime_type="image/jpeg")))

    # ---- sending -----------------------------------------------------------------------------------
    def _events(self) -> tuple[asyncio.Event, asyncio.Event, asyncio.Event]:
        if self._wake is None or self._connected_evt is None or self._finished is None:
            self._wake, self._connected_evt, self._finished = asyncio.Event(), asyncio.Event(), asyncio.Event()
        return self._wake, self._connected_evt, self._finished

    async def _send(self, link: _Link, coro: Any) -> bool:
        try:
            await coro
            return True
        except (ConnectionClosed, genai_errors.APIError, OSError) as exc:
            code, reason = describe(exc)
            log.info("send failed (%s %s): reconnecting", code, reason)
            if not link.ended.is_set():
                link.error = link.error or exc
                link.why = link.why or f"send failed: {reason}"
                link.ended.set()
            return False

    async def _flush_turn(self) -> None:
        """Send what the open turn has not yet sent on the current connection."""
        if self._send_lock is None:
            self._send_lock = asyncio.Lock()
        async with self._send_lock:
            t, link = self._turn, self._link
            if t is None or link is None or link.ended.is_set():
                return
            s = link.session
            # each flag is set before the send: the reply (and its turnComplete) can be dispatched by the
            # reader before the send returns; a failed send ends the link and the turn is replayed anyway
            if t.kind == "text":
                if not t.end_sent:
                    t.start_sent = t.end_sent = True
                    await self._send(link, s.send_client_content(
                        turns=types.Content(role="user", parts=[types.Part(text=t.text)]), turn_complete=True))
                return
            if not t.start_sent:
                t.start_sent = True
                if not await self._send(link, s.send_realtime_input(activity_start=types.ActivityStart())):
                    return
            while t.sent_upto < len(t.audio):
                chunk = bytes(t.audio[t.sent_upto:t.sent_upto + REPLAY_CHUNK])
                t.sent_upto += len(chunk)
                if not await self._send(link, s.send_realtime_input(
                        audio=types.Blob(data=chunk, mime_type=AUDIO_MIME))):
                    return
            if t.ended and not t.end_sent:
                t.end_sent = True
                await self._send(link, s.send_realtime_input(activity_end=types.ActivityEnd()))

    # ---- the supervisor ----------------------------------------------------------------------------
    def _client(self) -> genai.Client:
        return build_client(self.cfg, self._api_key)

    def _connect_config(self, handle: Handle | None) -> types.LiveConnectConfig:
        try:
            tools = list(self._tools() or [])
        except Exception:
            log.exception("the tools callable failed: connecting without tools")
            tools = []
        return connect_config(self.cfg, handle.value if handle else None, tools)

    def _emit(self, state: str, detail: str = "") -> None:
        self._stats["state"] = state
        try:
            self.handler.on_connection(state, detail)
        except Exception:
            log.exception("handler.on_connection failed")

    def _current_handle(self) -> Handle | None:
        if not self._handle_loaded:
            self._handle = self.store.load()
            self._handle_loaded = True
        h = self._handle
        if h is not None and h.age() > self.cfg.handle_max_age_s:
            log.info("the resumption handle is too old (%.0f s): starting a fresh session", h.age())
            self._handle = h = None
        return h

    def _drop_handle(self) -> None:
        self._handle = None
        self._handle_loaded = True
        self.store.clear()

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
        self._stats["state"] = "starting"
        client = self._client()
        fallback_used = False
        try:
            while not self._stopping:
                handle = None if self._force_fresh else self._current_handle()
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
                        self._drop_handle()
                        self._force_fresh = True
                        delay = 0.0
                    elif f.kind == "auth":
                        self._stats["auth_failures"] += 1
                        log.error("the Live API refused the credentials (%s): retrying in %.1f s",
                                  f.detail, self.cfg.auth_retry_s)
                        self._emit("auth_failed", f.detail)
                        delay = self.cfg.auth_retry_s
                    else:
                        if f.kind == "fresh" or (f.kind == "rejected" and handle is not None):
                            self._drop_handle()
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

    def _after_link(self) -> float:
        """Decide the delay after an established connection ended (from self._last_end)."""
        kind, detail = self._last_end
        if kind == "goaway" or kind == "stopping":
            return 0.0
        if kind == "fresh":
            log.warning("the session ended with 1007 (%s): starting a fresh session", detail)
            self._drop_handle()
            self._force_fresh = True
        if kind == "auth":
            self._stats["auth_failures"] += 1
            self._emit("auth_failed", detail)
            return self.cfg.auth_retry_s
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
            link = _Link(session, resumed=handle is not None)
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
            reader = asyncio.get_running_loop().create_task(self._reader(link))
            try:
                await self._on_new_link(link)
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

    def _finish_link(self, link: _Link, handle: Handle | None) -> None:
        if self._stopping:
            self._last_end = ("stopping", "")
            return
        if link.why == "goaway":
            self._last_end = ("goaway", "")
            return
        code, reason = describe(link.error) if link.error else (None, link.why)
        self._stats["last_close_code"], self._stats["last_close_reason"] = code, reason
        self._stats["last_error"] = f"{code} {reason}" if code else reason
        if self._turn is not None and link.reply_audio:
            self._safe(self.handler.on_interrupted)  # the partial reply is dropped; the turn is replayed
        self._emit("disconnected", f"{code} {reason}" if code else reason)
        if link.messages == 0 and handle is not None and code not in (None, 1000, 1001, 1006):
            if code != 1008 or about_handle(reason):
                raise Failure("rejected", f"{code} {reason}", code)
        if code == 1007:
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

    async def _on_new_link(self, link: _Link) -> None:
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
                await self._send(link, link.session.send_tool_response(function_responses=responses))
            else:
                log.info("dropping %d tool responses meant for the previous session", len(responses))

    async def _wait_link(self, link: _Link) -> None:
        try:
            await link.ended.wait()
        finally:
            if link.goaway_timer is not None:
                link.goaway_timer.cancel()

    def _goaway_deadline(self, link: _Link) -> None:
        if not link.ended.is_set():
            log.warning("GoAway deadline near with a turn in progress: reconnecting now (the turn is replayed)")
            link.why = "goaway"
            link.ended.set()

    # ---- receiving ---------------------------------------------------------------------------------
    def _safe(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("handler %s failed", getattr(fn, "__name__", fn))

    async def _reader(self, link: _Link) -> None:
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

    def _maybe_goaway_now(self, link: _Link) -> None:
        if link.goaway_deadline is not None and self._turn is None and not link.ended.is_set():
            link.why = "goaway"
            link.ended.set()

    async def _dispatch(self, link: _Link, msg: types.LiveServerMessage) -> None:
        h = self.handler
        sc = msg.server_content
        if sc is not None:
            if sc.model_turn and sc.model_turn.parts:
                for part in sc.model_turn.parts:
                    if part.inline_data and part.inline_data.data:
                        link.reply_audio = True
                        self._safe(h.on_audio, part.inline_data.data)
            if sc.input_transcription and sc.input_transcription.text:
                self._safe(h.on_transcript, "user", sc.input_transcription.text)
            if sc.output_transcription and sc.output_transcription.text:
                self._safe(h.on_transcript, "model", sc.output_transcription.text)
            if sc.interrupted:
                self._safe(h.on_interrupted)
            if sc.generation_complete:
                self._safe(h.on_generation_complete)
            if sc.turn_complete:
                t = self._turn
                if t is not None and t.ended and t.end_sent:
                    self._turn = None
                link.reply_audio = False
                self._safe(h.on_turn_complete)
                self._maybe_goaway_now(link)
        if msg.tool_call and msg.tool_call.function_calls:
            self._safe(h.on_tool_call, list(msg.tool_call.function_calls))
        if msg.tool_call_cancellation and msg.tool_call_cancellation.ids:
            self._safe(h.on_tool_cancel, list(msg.tool_call_cancellation.ids))
        if msg.usage_metadata is not None:
            self._stats["usage"] = msg.usage_metadata.model_dump(exclude_none=True, mode="json")
        upd = msg.session_resumption_update
        if upd is not None and upd.resumable and upd.new_handle:
            handle = Handle(upd.new_handle, time.time(), self._stats["session_id"])
            self._handle, self._handle_loaded = handle, True
            try:
                await asyncio.to_thread(self.store.save, handle)
            except OSError as exc:
                log.warning("cannot persist the resumption handle in %s: %s", self.store.path, exc)
        if msg.go_away is not None:
            left = _seconds(msg.go_away.time_left)
            self._stats["goaways"] += 1
            margin = min(max(0.5, left * 0.2), 5.0)
            link.goaway_deadline = time.monotonic() + max(0.0, left - margin)
            if link.goaway_timer is None:
                link.goaway_timer = asyncio.get_running_loop().call_later(
                    max(0.0, left - margin), self._goaway_deadline, link)
            log.info("GoAway: %.1f s left; resuming %s", left,
                     "now" if self._turn is None else "after the current turn")
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
