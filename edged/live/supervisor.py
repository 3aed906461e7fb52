"""The Live session's supervisor: connect, wait for the connection to end, decide the delay, reconnect.

:class:`LinkSupervisor` runs until ``stop()``, one :class:`edged.live.link.Link` at a time: it builds the
client (:mod:`edged.live.wire`), connects with the current resumption handle (or a fresh session),
starts the receiver's loop on the link, lets the sender replay the open turn, and, when the link
ends, reads why (:func:`edged.live.wire.describe`) and chooses: resume at once (GoAway), back off
(:class:`edged.live.backoff.Backoff`), drop the handle and start fresh (1007, a refused resume), or
wait ``live.auth_retry_s`` while the service refuses the key, the model or the setup.  It is the one
owner of the current link and of the connection state reported to ``handler.on_connection``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from websockets.exceptions import InvalidStatus

from ..config import LiveConfig
from ..repeats import Repeats
from ..secrets import Secret, missing_key
from ..supervise import cancel_and_wait
from .backoff import Backoff
from .handler import LiveHandler, safe_call
from .link import Link
from .profiles import DEFAULT_MODEL, Profile
from .reach import REFUSED
from .receive import Receiver
from .resumption import CurrentHandle, Handle
from .sender import Sender
from .wire import (
    Failure,
    TrustError,
    about_handle,
    about_model,
    about_setup,
    build_client,
    connect_config,
    describe,
)

log = logging.getLogger("edged.live.session")  # the name the session's messages have always had

RETRY_NOW_MIN_S = 30.0  # retry_now(): at most one early try per this many seconds
READER_STOP_S = 5.0  # a link's reader gets this long to stop when the link ends


class LinkSupervisor:
    """``stats`` is the session's (shared with the sender and the receiver); this class sets ``state``,
    the connection and failure counters and the last close."""

    def __init__(self, cfg: LiveConfig, api_key: Secret | None, profile: Profile,
                 tools: Callable[[], list[types.Tool]], handler: LiveHandler, stats: dict[str, Any],
                 handles: CurrentHandle, sender: Sender, receiver: Receiver) -> None:
        self.cfg = cfg
        self._api_key = api_key
        self.profile = profile
        self._tools = tools
        self.handler = handler
        self._stats = stats
        self._handles = handles
        self._sender = sender
        self._receiver = receiver
        self._backoff = Backoff(cfg.backoff_initial_s, cfg.backoff_max_s, cfg.stable_after_s)
        self._repeats = Repeats()  # failure lines: once per reason while it lasts, not per retry
        self._force_fresh = False
        self.link: Link | None = None  # the open connection (or the one ending); only this class sets it
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self._connected_evt: asyncio.Event | None = None
        self._finished: asyncio.Event | None = None
        self._last_end: tuple[str, str] = ("", "")
        self._retry_now_at: float | None = None

    @property
    def connected(self) -> bool:
        return self.link is not None and not self.link.ended.is_set()

    async def wait_connected(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        evt = self._events()[1]
        try:
            async with asyncio.timeout(timeout):
                await evt.wait()
        except TimeoutError:
            return False
        return True

    def retry_now(self) -> bool:
        """While the service refuses us (auth failed, model or setup refused) the session waits
        ``live.auth_retry_s`` between tries: try once now instead (a wake, ``edgectl reload``).  At most
        one such try per ``RETRY_NOW_MIN_S``; returns whether one was started."""
        if self._stats["state"] not in REFUSED or self._stopping:
            return False
        now = time.monotonic()
        if self._retry_now_at is not None and now - self._retry_now_at < RETRY_NOW_MIN_S:
            log.info("not retrying the Live connection yet: the last early try was %.0f s ago (one per %.0f s)",
                     now - self._retry_now_at, RETRY_NOW_MIN_S)
            return False
        self._retry_now_at = now
        log.info("retrying the Live connection now (%s)", self._stats["state"])
        self._repeats.clear()  # someone is waiting for this try: its outcome is logged, even if the same
        self._events()[0].set()  # ends the wait in _sleep()
        return True

    async def stop(self) -> None:
        self._stopping = True
        wake, _, finished = self._events()
        wake.set()
        if self.link is not None:
            self.link.why = self.link.why or "stopping"
            self.link.ended.set()
        if self._stats["state"] != "stopped":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(15):
                    await finished.wait()

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
        fallback_used = False
        try:
            client = await self._make_client()
            while client is not None and not self._stopping:
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
                        say, held = self._repeats.seen(f"auth:{f.detail}")
                        if say:
                            log.error("the Live API refused the credentials (%s): retrying in %.1f s%s",
                                      f.detail, self.cfg.auth_retry_s, Repeats.more(held))
                        self._emit("auth_failed", f.detail)
                        delay = self.cfg.auth_retry_s
                    elif f.kind in ("model", "setup"):
                        delay = self._refused(f)
                    else:
                        if f.kind == "fresh" or (f.kind == "rejected" and handle is not None):
                            self._handles.drop()
                            self._force_fresh = True
                        delay = self._backoff.next_delay()
                        say, held = self._repeats.seen(f"{f.kind}:{f.detail}")
                        if say:  # once per reason, then a reminder (edged.repeats): not every retry
                            log.warning("Live connection failed (%s): retrying in %.2f s%s", f.detail, delay,
                                        Repeats.more(held))
                        self._emit("offline" if f.kind == "offline" else "disconnected", f.detail)
                if delay > 0:
                    await self._sleep(delay)
        finally:
            connected_evt.clear()
            self.link = None
            self._stats["state"] = "stopped"
            finished.set()

    async def _make_client(self) -> genai.Client | None:
        """The SDK client, or None once stopping.  While ``live.ca_file`` cannot be used the session
        says so (state ``no_ca``) and tries again on its backoff: the file may yet appear (a CA that
        is written after the daemon starts, a mount that comes late)."""
        said = ""
        while not self._stopping:
            try:
                # in a thread: building the client imports its HTTP stack and loads the CA bundle
                # (about 0.1 s), which would hold up the loop, and READY, at start-up
                return await asyncio.to_thread(self._client)
            except TrustError as exc:
                detail = f"{exc}; fix: point live.ca_file at a PEM file of CA certificates, then `edgectl reload`"
                self._stats["last_error"] = detail
                delay = self._backoff.next_delay()
                if detail != said:  # once per new reason, not on every retry
                    log.error("Live session not started: %s (trying again every %.0f s or less)",
                              detail, self.cfg.backoff_max_s)
                    said = detail
                    self._emit("no_ca", detail)
                await self._sleep(delay)
        return None

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
        say, held = self._repeats.seen(f"{state}:{detail}")
        if say:
            log.error("%s: retrying in %.1f s%s", detail, self.cfg.auth_retry_s, Repeats.more(held))
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
        say, held = self._repeats.seen("lost")  # whatever the words: they may vary as it flaps
        log.log(logging.INFO if say else logging.DEBUG, "Live connection lost (%s): reconnecting in %.2f s%s",
                detail, delay, Repeats.more(held))
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
            self.link = link
            if self._stopping:  # stop() came while connecting
                link.why = "stopping"
                link.ended.set()
            self._backoff.connected()
            sid = getattr(session, "session_id", None)
            self._stats["session_id"] = sid or self._stats["session_id"]
            self._stats["resumes" if handle else "fresh_starts"] += 1
            if self._stats["resumes"] + self._stats["fresh_starts"] > 1:
                self._stats["reconnects"] += 1
            up_since = time.monotonic()
            # said once while connections keep dropping soon after they are made (a quota that runs out,
            # a middlebox that cuts long connections): news again once one has lasted (below)
            say, held = self._repeats.seen("up")
            log.log(logging.INFO if say else logging.DEBUG, "Live session %s (%s)%s",
                    "resumed" if handle else "started", sid or "no session id", Repeats.more(held))
            connected_evt.set()
            self._emit("resumed" if handle else "connected", sid or "")
            reader = asyncio.get_running_loop().create_task(self._receiver.read(link))
            try:
                await self._sender.on_new_link(link)
                await self._wait_link(link)
            finally:
                connected_evt.clear()
                # bounded: a cancel the SDK swallows must not hang the reconnect (supervise.py)
                if not await cancel_and_wait(reader, READER_STOP_S):
                    log.warning("the Live reader did not stop within %.0f s; going on without it", READER_STOP_S)
                elif not reader.cancelled():
                    reader.exception()  # the reader's own end (the link's end is classified elsewhere)
                self.link = None
                self._backoff.disconnected()
                if time.monotonic() - up_since >= self.cfg.stable_after_s:
                    self._repeats.clear()  # it worked for a while: its end, and any failure after it, is news
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
