"""What the Live session reports: the :class:`LiveHandler` protocol, :class:`TurnEnd`, and :func:`safe_call`.

The conversation implements the handler.  The session calls it on the event loop, every call through
:func:`safe_call` (or, for ``on_connection``, its own guard), so an exception raised in the handler is
logged and never ends the session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from google.genai import types

log = logging.getLogger("edged.live.session")  # the name the session's messages have always had


@dataclass(frozen=True)
class TurnEnd:
    """How a generation ended (given to ``handler.on_turn_end`` just before ``on_turn_complete``)."""

    audio_bytes: int  # reply audio (24 kHz PCM) since the user's turn started, or since the last turnComplete
    tool_calls: int  # tool calls received during this generation
    pending_tool_calls: tuple[str, ...]  # ids of calls (any generation) still without a response or cancel
    interrupted: bool  # the server sent `interrupted` during it
    user_turn: bool  # it answers a turn edged sent (False: the model spoke on its own, e.g. after a tool result)

    @property
    def no_answer(self) -> bool:
        """The model chose not to answer: turnComplete, no audio, nothing interrupted, no call running."""
        return self.audio_bytes == 0 and not self.interrupted and not self.pending_tool_calls

    @property
    def reason(self) -> str:
        if self.no_answer:
            return "no_answer: the model chose not to answer (turnComplete without audio)"
        if self.audio_bytes == 0 and self.pending_tool_calls:
            return f"tool_pending: no audio yet, {len(self.pending_tool_calls)} tool call(s) running"
        if self.interrupted:
            return "interrupted"
        return "answered"


class LiveHandler(Protocol):
    """What the session reports, called on the event loop.  Exceptions raised here are logged.

    Optional (called when the handler has it): ``on_turn_end(info: TurnEnd)`` before ``on_turn_complete``.
    Connection states given to ``on_connection``: connecting, connected, resumed, disconnected, offline,
    auth_failed, model_unavailable, setup_refused, no_key, no_ca.
    """

    def on_audio(self, pcm24k: bytes) -> None: ...
    def on_interrupted(self) -> None: ...
    def on_generation_complete(self) -> None: ...
    def on_turn_complete(self) -> None: ...
    def on_tool_call(self, calls: list[types.FunctionCall]) -> None: ...
    def on_tool_cancel(self, ids: list[str]) -> None: ...
    def on_transcript(self, role: str, text: str) -> None: ...
    def on_connection(self, state: str, detail: str) -> None: ...


def safe_call(fn: Callable[..., Any], *args: Any) -> None:
    """Call a handler's method; an exception is logged, never raised."""
    try:
        fn(*args)
    except Exception:
        log.exception("handler %s failed", getattr(fn, "__name__", fn))
