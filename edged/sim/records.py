"""What the emulator keeps: the frames it received and sent, each connection's record, each session,
and the live state of an open connection (:class:`Conn`, which the other emulator modules share)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from ..live.profiles import Profile, lookup
from .scenario import Step

FOLLOW_UPS_MAX = 8


@dataclass
class Frame:
    conn: int
    t: float  # time.monotonic()
    kind: str
    data: Any  # the (sub)message as received
    payload: bytes = b""  # decoded audio / video bytes


@dataclass
class ConnRecord:
    n: int
    path: str
    t_open: float
    setup: dict[str, Any] | None = None
    handle: str | None = None  # the resumption handle the client presented
    resumed: bool = False
    resume_rejected: bool = False
    session_id: str | None = None
    setup_complete_sent: bool = False
    closed: bool = False
    t_close: float | None = None
    close_code: int | None = None
    close_reason: str = ""
    closed_by: str = ""  # "client" | "server" | "drop"
    violations: list[str] = field(default_factory=list)
    tool_responses: list[dict[str, Any]] = field(default_factory=list)
    turns: int = 0
    model: str = ""  # the setup's model, without "models/"
    refused: tuple[int, str] | None = None  # (close code, reason) when a rule refused the setup or a message
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # every call sent: id, name, args, behavior


@dataclass
class SimSession:
    id: str
    turns: int = 0
    live: Conn | None = None


class Conn:
    def __init__(self, ws: ServerConnection, rec: ConnRecord) -> None:
        self.ws = ws
        self.rec = rec
        self.session: SimSession | None = None
        self.in_turn = False
        self.reply: asyncio.Task[None] | None = None
        self.video_since_reply = 0
        self.tool_waits: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.send_lock = asyncio.Lock()
        self.profile: Profile = lookup("")
        self.setup: dict[str, Any] = {}
        self.empty_args: set[str] = set()
        self.follow_ups: dict[str, tuple[Step, ...]] = {}  # NON_BLOCKING call id -> its `then` steps
        self.when_idle: deque[tuple[Step, ...]] = deque(maxlen=FOLLOW_UPS_MAX)
        self.turn_audio_in = 0  # bytes of 16 kHz audio received since activityStart (for usageMetadata)
        self.reply_audio_out = 0  # bytes of 24 kHz audio sent in the current reply

    @property
    def open(self) -> bool:
        return self.ws.state is State.OPEN

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """A task of this connection: cancelled when it closes."""
        t = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)
        return t
