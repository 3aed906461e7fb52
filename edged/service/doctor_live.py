"""``edgectl doctor``'s questions to the Live service itself.

- :func:`check_models`: through the SDK's models API (``client.aio.models.get/list``), does
  ``live.model`` exist for this key and support ``bidiGenerateContent``, and which Live models can
  the key use.
- :func:`round_trip` (``edgectl doctor --live``): one short real session with edged's own setup
  (:func:`edged.live.wire.connect_config`) and a single harmless read-only tool, ``doctor_clock``
  (it returns the time; no device tool is declared, so nothing can be switched).  Steps, each pass or
  fail: set-up time, a text turn, time to first audio, a tool-call round trip, a resumption handle.

Both return :class:`Step` results (``edgectl doctor`` shows them as its checks; this module does not
import the doctor, so there is no import circle) and never print the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass
from typing import Any

from google import genai
from google.genai import types

from ..errors import EdgedError
from ..live import profiles
from ..live.wire import adapt_responses, build_client, connect_config, describe


@dataclass
class Step:
    """One result: name, ok | warn | fail, what was seen, what to do (same fields as doctor.Check)."""

    name: str
    status: str
    detail: str
    fix: str = ""


Check = Step

BIDI = "bidiGenerateContent"
CLOCK = "doctor_clock"
TEXT_PROMPT = "This is a connection test. Please answer with one short sentence."
TOOL_PROMPT = f"Call the {CLOCK} function now, then tell me the time it returns."


def _key(cfg: Any) -> tuple[Any, str]:
    from ..secrets import load_api_key  # noqa: PLC0415

    try:
        key = load_api_key(cfg.live.api_key_file, cfg.path)
    except EdgedError as exc:
        return None, str(exc)
    if key is None and not cfg.live.base_url:
        return None, "no API key (set $GEMINI_API_KEY, live.api_key_file or the credential)"
    return key, ""


def _rest_client(cfg: Any, key: Any) -> genai.Client:
    """REST goes through httpx, which takes the CA as ``verify`` (the websocket takes ``ssl``)."""
    from ..live.wire import PLACEHOLDER_KEY  # noqa: PLC0415
    from ..secrets import register  # noqa: PLC0415

    opts: dict[str, Any] = {"base_url": cfg.live.base_url or None, "api_version": cfg.live.api_version}
    if cfg.live.ca_file:
        ctx = ssl.create_default_context(cafile=cfg.live.ca_file)
        opts["client_args"] = {"verify": ctx}
        opts["async_client_args"] = {"verify": ctx}
    if key is not None:
        register(key)
    return genai.Client(api_key=key.reveal() if key is not None else PLACEHOLDER_KEY,
                        http_options=types.HttpOptions(**opts))


def _short(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    msg = getattr(exc, "message", None) or str(exc)
    return f"{code} {msg}".strip() if code else f"{type(exc).__name__}: {msg}"


async def _models(cfg: Any, key: Any) -> list[Check]:
    client = _rest_client(cfg, key)
    model = profiles.bare(cfg.live.model)
    out: list[Check] = []
    live: list[str] = []
    try:
        pager = await client.aio.models.list()
        async for m in pager:
            if BIDI in (m.supported_actions or []):
                live.append(profiles.bare(m.name or ""))
    except Exception as exc:
        out.append(Check("live models", "fail", f"cannot list models: {_short(exc)}",
                         "check the key and live.base_url / live.api_version"))
    else:
        known = [f"{n}{'' if profiles.lookup(n).known else ' (unknown to edged)'}" for n in live]
        out.append(Check("live models", "ok" if live else "fail",
                         f"{len(live)} Live model(s) for this key: {', '.join(known) or 'none'}",
                         "" if live else "the key cannot use the Live API: check it in Google AI Studio"))
    fix = f"set live.model to one of: {', '.join(live) or profiles.DEFAULT_MODEL}"
    try:
        m = await client.aio.models.get(model=model)
    except Exception as exc:
        out.insert(0, Check("live model", "fail", f"{model}: {_short(exc)}", fix))
        return out
    p = profiles.lookup(model)
    if BIDI not in (m.supported_actions or []):
        out.insert(0, Check("live model", "fail", f"{model} exists but does not support {BIDI}", fix))
    else:
        note = f"edged profile: {p.stage}" if p.known else "unknown to edged: conservative setup"
        out.insert(0, Check("live model", "warn" if p.stage == "legacy" or not p.known else "ok",
                            f"{model} supports {BIDI} ({note})",
                            f"move to {p.replacement}" if p.stage == "legacy" else ""))
    return out


def check_models(cfg: Any, timeout: float = 10.0) -> list[Check]:
    """Ask the service about live.model and the key's Live models (never raises)."""
    key, why = _key(cfg)
    if why:
        return [Check("live model", "fail", why, "see the api key check")]
    try:
        return asyncio.run(asyncio.wait_for(_models(cfg, key), timeout))
    except TimeoutError:
        return [Check("live model", "fail", f"the models API did not answer within {timeout:g} s",
                      "check the network and live.base_url")]


class _Reader:
    """Reads the session into a bounded queue (one reader; receive() ends at each turnComplete)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.queue: asyncio.Queue[types.LiveServerMessage] = asyncio.Queue(maxsize=4096)
        self.handles: list[str] = []
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            async for msg in self.session.receive():
                upd = msg.session_resumption_update
                if upd is not None and upd.resumable and upd.new_handle:
                    self.handles.append(upd.new_handle)
                with contextlib.suppress(asyncio.QueueFull):
                    self.queue.put_nowait(msg)

    async def next(self, deadline: float) -> types.LiveServerMessage:
        if self.task.done():
            exc = self.task.exception()
            raise exc if exc else ConnectionError("the session ended")
        getter = asyncio.ensure_future(self.queue.get())
        done, _ = await asyncio.wait({getter, self.task}, timeout=max(0.0, deadline - time.monotonic()),
                                     return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        if self.task in done:
            exc = self.task.exception()
            raise exc if exc else ConnectionError("the session ended")
        raise TimeoutError


def _clock_tool() -> types.Tool:
    return types.Tool(function_declarations=[types.FunctionDeclaration(
        name=CLOCK, description="Read the current time of this device (read-only; changes nothing).")])


async def _round_trip(cfg: Any, key: Any, timeout: float) -> list[Check]:
    out: list[Check] = []
    p = profiles.lookup(cfg.live.model)
    client = build_client(cfg.live, key)
    t0 = time.monotonic()
    try:
        async with contextlib.AsyncExitStack() as stack:
            async with asyncio.timeout(timeout):
                session = await stack.enter_async_context(client.aio.live.connect(
                    model=cfg.live.model, config=connect_config(cfg.live, None, [_clock_tool()], p)))
            out.append(Check("live set-up", "ok", f"setupComplete in {(time.monotonic() - t0) * 1000:.0f} ms "
                                                  f"({cfg.live.model})"))
            reader = _Reader(session)
            stack.callback(reader.task.cancel)
            out += await _text_turn(session, reader, timeout)
            out.append(await _tool_turn(session, reader, p, timeout))
            out.append(Check("live resumption", "ok" if reader.handles else "fail",
                             "a resumption handle arrived" if reader.handles else "no resumption handle arrived",
                             "" if reader.handles else "the service did not offer resumption: sessions would "
                             "not survive a reconnect"))
    except Exception as exc:
        code, reason = describe(exc)
        step = "live set-up" if not out else "live session"
        fix = ("set live.model to a Live model the key can use (see `live models`)"
               if code == 1008 and "not found" in reason else "see the steps above and `edgectl doctor`")
        out.append(Check(step, "fail", f"{code} {reason}" if code else reason, fix))
    return out


async def _text_turn(session: Any, reader: _Reader, timeout: float) -> list[Check]:
    t0 = time.monotonic()
    deadline = t0 + timeout
    await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=TEXT_PROMPT)]),
                                      turn_complete=True)
    first_audio = None
    try:
        while True:
            msg = await reader.next(deadline)
            if msg.data and first_audio is None:
                first_audio = time.monotonic() - t0
            if msg.server_content and msg.server_content.turn_complete:
                break
    except TimeoutError:
        return [Check("live text turn", "fail", f"no turnComplete within {timeout:g} s"),
                Check("live first audio", "fail", "no reply audio")]
    total = (time.monotonic() - t0) * 1000
    return [Check("live text turn", "ok", f"turnComplete in {total:.0f} ms"),
            Check("live first audio", "ok" if first_audio is not None else "fail",
                  f"first reply audio after {first_audio * 1000:.0f} ms" if first_audio is not None
                  else "the turn completed without audio (the model may choose not to answer; try again)")]


async def _tool_turn(session: Any, reader: _Reader, p: profiles.Profile, timeout: float) -> Check:
    t0 = time.monotonic()
    deadline = t0 + timeout
    await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=TOOL_PROMPT)]),
                                      turn_complete=True)
    call = None
    try:
        while call is None:
            msg = await reader.next(deadline)
            for fc in (msg.tool_call.function_calls or []) if msg.tool_call else []:
                if fc.name == CLOCK:
                    call = fc
        called = time.monotonic() - t0
        # a read the model needs for its answer: INTERRUPT, as edged's own reads (tools/registry.py)
        resp = types.FunctionResponse(id=call.id, name=CLOCK, response={"time": time.strftime("%H:%M")},
                                      scheduling=types.FunctionResponseScheduling.INTERRUPT)
        await session.send_tool_response(function_responses=adapt_responses([resp], p))
        while True:  # the model answers with audio (or at least ends its turn)
            msg = await reader.next(deadline)
            if msg.data or (msg.server_content and msg.server_content.turn_complete):
                break
    except TimeoutError:
        what = "the model did not call the tool" if call is None else "no answer after the tool response"
        return Check("live tool call", "fail", f"{what} within {timeout:g} s",
                     "a model may decline; run again, or check live.model")
    return Check("live tool call", "ok", f"{CLOCK} called after {called * 1000:.0f} ms (id {call.id}), answered "
                                         f"{(time.monotonic() - t0 - called) * 1000:.0f} ms after the response")


def round_trip(cfg: Any, timeout: float = 20.0) -> list[Check]:
    """``edgectl doctor --live``: one short real session (never raises)."""
    key, why = _key(cfg)
    if why:
        return [Check("live set-up", "fail", why, "see the api key check")]
    try:
        return asyncio.run(asyncio.wait_for(_round_trip(cfg, key, timeout), timeout * 4))
    except TimeoutError:
        return [Check("live session", "fail", f"the round trip did not finish within {timeout * 4:g} s")]
