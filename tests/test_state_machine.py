"""The conversation's transition table, walked row by row.

The conversation drives its parts through the narrow protocols of edged.ports; here they are
recording fakes (the real player, Ear and Live session are exercised by tests/e2e).  Every state is
reached through the conversation's own inputs (no state is set by hand).  For every row of
edged.transitions.TABLE the test checks the next state and the action's visible effect; for every
(state, event) pair without a row it checks that nothing at all happens.
"""

import asyncio
import contextlib
import inspect
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from google.genai import types

from edged import config
from edged.conversation import Conversation
from edged.errors import EdgedError
from edged.live.session import LiveHandler, TurnEnd
from edged.ports import Ports
from edged.state import State
from edged.transitions import REST, SAME, TABLE, Ev, markdown
from tests import waiting

PCM = b"\x01\x00" * 160
SILENT_TURN = TurnEnd(audio_bytes=0, tool_calls=0, pending_tool_calls=(), interrupted=False, user_turn=True)


@dataclass
class Rec:
    """What the conversation told the parts, in order: (part, call, argument)."""

    calls: list[tuple[str, str, object]] = field(default_factory=list)

    def add(self, part: str, call: str, arg: object = None) -> None:
        self.calls.append((part, call, arg))

    def has(self, part: str, call: str) -> bool:
        return any(c[0] == part and c[1] == call for c in self.calls)


class FakePlayer:
    def __init__(self, rec: Rec) -> None:
        self.rec = rec

    def write(self, pcm: bytes) -> None:
        self.rec.add("player", "write", len(pcm))

    def end_of_reply(self) -> None:
        self.rec.add("player", "end_of_reply")

    def flush(self) -> int:
        self.rec.add("player", "flush")
        return 0

    def play_cue(self, name: str, *, loop: bool = False) -> bool:
        self.rec.add("player", "play_cue", name)
        return True

    def stop_cue(self) -> None:
        self.rec.add("player", "stop_cue")


class FakeEar:
    def __init__(self, rec: Rec) -> None:
        self.rec = rec

    def trigger(self, source: str = "button") -> None:
        self.rec.add("ear", "trigger", source)

    def cancel_turn(self) -> None:
        self.rec.add("ear", "cancel_turn")

    def set_wake_enabled(self, enabled: bool) -> None:
        self.rec.add("ear", "set_wake_enabled", enabled)


class FakeMic:
    def __init__(self, rec: Rec) -> None:
        self.rec = rec

    def set_muted(self, muted: bool) -> None:
        self.rec.add("capture", "set_muted", muted)


class FakeLive:
    def __init__(self, rec: Rec) -> None:
        self.rec = rec

    async def activity_start(self) -> None:
        self.rec.add("live", "activity_start")

    async def send_audio(self, pcm16k: bytes) -> None:
        self.rec.add("live", "send_audio", len(pcm16k))

    async def activity_end(self) -> None:
        self.rec.add("live", "activity_end")

    async def send_text(self, text: str) -> None:
        self.rec.add("live", "send_text", text)

    async def send_tool_responses(self, responses) -> None:
        self.rec.add("live", "send_tool_responses", [r.id for r in responses])

    def status(self) -> dict:
        return {"session_id": "test-session", "last_close_code": None}

    def retry_now(self) -> bool:
        self.rec.add("live", "retry_now")
        return True


class FakeTools:
    def __init__(self, rec: Rec) -> None:
        self.rec = rec
        self.release = asyncio.Event()
        self.release.set()

    async def call(self, fc):
        self.rec.add("tools", "call", fc.name)
        await self.release.wait()
        return types.FunctionResponse(id=fc.id, name=fc.name, response={"ok": True})

    def cancel(self, ids) -> None:
        self.rec.add("tools", "cancel", list(ids))


class FakeTimers:
    """The Timers part as the conversation sees it: what rings, and stop_ringing()."""

    def __init__(self, rec: Rec) -> None:
        self.rec = rec
        self.ringing: list[dict] = []

    def stop_ringing(self) -> list[dict]:
        self.rec.add("timers", "stop_ringing")
        stopped, self.ringing = self.ringing, []
        return stopped


@dataclass
class FakeParts:
    player: FakePlayer
    ear: FakeEar
    capture: FakeMic
    live: FakeLive
    tools: FakeTools
    timers: FakeTimers = field(default_factory=lambda: FakeTimers(Rec()))  # nothing rings unless a test says


class Harness:
    def __init__(self, **turn) -> None:
        self.rec = Rec()
        self.events: list[dict] = []
        self.problems: list[tuple[str, str | None]] = []
        self.changes = 0
        cfg = config.parse({"turn": turn, "wake": {"suppress_while_playing": True}}, "test.toml")
        ports = Ports(publish=self.events.append, problem=lambda p, m: self.problems.append((p, m)),
                      post=lambda fn, *a: fn(*a), spawn=lambda coro, name: asyncio.get_running_loop().create_task(coro))
        self.conv = Conversation(cfg, ports, on_change=self._changed)
        r = self.rec
        self.parts = FakeParts(FakePlayer(r), FakeEar(r), FakeMic(r), FakeLive(r), FakeTools(r), FakeTimers(r))
        self.conv.attach(self.parts)
        self.conv.start()

    def _changed(self) -> None:
        self.changes += 1

    def published(self, name: str) -> list[dict]:
        return [e for e in self.events if e["event"] == name]

    async def until(self, pred, what: str, timeout: float = 2.0) -> None:
        """tests.waiting.until at the fakes' pace, showing the parts' calls on a failure."""
        await waiting.until(pred, what, timeout, every=0.001, detail=lambda: f"calls: {self.rec.calls}")

    async def close(self) -> None:
        self.conv.stop_now()
        await self.conv.stop()


# How each state is reached, by the conversation's own inputs.
PATHS = {
    State.STARTING: [],
    State.IDLE: [("ready",)],
    State.ERROR: [("ready",), ("on_health", ["capture"])],
    State.LISTENING: [("ready",), ("on_turn_start", "wake")],
    State.THINKING: [("ready",), ("on_turn_start", "wake"), ("on_turn_end", "silence")],
    State.SPEAKING: [("ready",), ("on_turn_start", "wake"), ("on_turn_end", "silence"), ("on_audio", PCM)],
    State.MUTED: [("ready",), ("set_muted", True)],
    State.STOPPING: [("ready",), ("stop_now",)],
}

ARGS = {
    Ev.TURN_START: ("button",), Ev.TURN_OFFLINE: ("button",), Ev.UNREACHABLE: ("offline: network down",), Ev.TURN_AUDIO: (PCM,), Ev.SPEECH_END: ("silence",), Ev.NO_SPEECH: ("no_speech",),
    Ev.REQUEST_TURN: ("button",), Ev.SAY: ("hello",), Ev.AUDIO: (PCM,), Ev.STALE_AUDIO: (PCM,),
    Ev.TOOL_CALL: ([types.FunctionCall(id="c1", name="get_devices", args={})],), Ev.CANCEL: ("reload",),
    Ev.NO_ANSWER: (SILENT_TURN,),
    Ev.RING_TURN_START: ("wake",), Ev.RING_REQUEST_TURN: ("button",),
}


async def reach(state: State, **turn) -> Harness:
    h = Harness(**turn)
    for method, *args in PATHS[state]:
        getattr(h.conv, method)(*args)
    assert h.conv.state == state, f"path to {state} ended in {h.conv.state}"
    await asyncio.sleep(0)  # let the sender take what the path queued
    h.rec.calls.clear()
    h.events.clear()
    return h


# The visible effect of each action: a check run after the row fired (h, the state before).
async def _sent(h: Harness, call: str) -> None:
    await h.until(lambda: h.rec.has("live", call), f"live.{call}")


async def eff_none(h, before):
    assert not [c for c in h.rec.calls if c[1] != "set_wake_enabled"]


async def eff_stop(h, before):
    assert h.rec.has("player", "flush") and h.rec.has("ear", "cancel_turn")


async def eff_open_turn(h, before):
    await _sent(h, "activity_start")
    assert h.published("wake")[0]["source"] == "button"
    assert h.conv.stats["turns"] >= 1


async def eff_offline_turn(h, before):
    assert ("player", "play_cue", "offline") in h.rec.calls and h.rec.has("ear", "cancel_turn")
    assert not h.rec.has("live", "activity_start") and h.published("offline_wake")[0]["source"] == "button"
    assert h.conv.stats["offline_wakes"] == 1
    if before in (State.THINKING, State.SPEAKING):  # the reply in flight is called off
        assert h.rec.has("player", "flush") and h.conv._stale


async def eff_give_up_offline(h, before):
    assert ("player", "play_cue", "offline") in h.rec.calls and h.rec.has("ear", "cancel_turn") and h.conv._stale
    assert h.published("turn_end")[-1]["reason"] == "offline"


async def eff_barge_in(h, before):
    await _sent(h, "activity_start")
    assert h.rec.has("player", "flush") and h.published("barge_in") and h.conv.stats["barge_ins"] == 1


async def eff_reject_turn(h, before):
    assert h.rec.calls == [("ear", "cancel_turn", None)]


async def eff_send_turn_audio(h, before):
    await _sent(h, "send_audio")


async def eff_close_turn(h, before):
    await _sent(h, "activity_end")
    assert h.published("turn_end")[0]["reason"] == "silence"


async def eff_close_unheard(h, before):
    await _sent(h, "activity_end")
    assert h.conv.stats["no_speech"] == 1 and h.conv.stats["last_turn_end"] == "no_speech"


async def eff_trigger(h, before):
    assert ("ear", "trigger", "button") in h.rec.calls


async def eff_send_text(h, before):
    await h.until(lambda: ("live", "send_text", "hello") in h.rec.calls, "send_text")
    assert h.conv.stats["text_turns"] == 1


async def eff_interrupt_with_text(h, before):
    await eff_send_text(h, before)
    assert h.rec.has("player", "flush")


async def eff_play(h, before):
    assert ("player", "write", len(PCM)) in h.rec.calls


async def eff_interrupted(h, before):
    assert h.rec.has("player", "flush") and h.published("interrupted") and h.conv.stats["interruptions"] >= 1


async def eff_interrupted_stale(h, before):
    await eff_interrupted(h, before)
    assert not h.conv._stale


async def eff_end_stale(h, before):
    assert not h.conv._stale and not h.rec.calls


async def eff_count_complete(h, before):
    assert h.conv.stats["turns_completed"] == 1


async def eff_end_of_reply(h, before):
    assert h.rec.has("player", "end_of_reply") and h.conv.stats["turns_completed"] == 1


async def eff_reply_done(h, before):
    assert h.conv.stats["turns_completed"] == 1 and not h.rec.has("ear", "trigger")  # follow-up is off


async def eff_finish_reply(h, before):
    assert h.conv.stats["turns_completed"] == 0 and not h.rec.has("ear", "trigger")


async def eff_run_tools(h, before):
    await h.until(lambda: ("live", "send_tool_responses", ["c1"]) in h.rec.calls, "the tool's response")
    assert h.published("tool_call") and h.published("tool_result")[0]["ok"]


async def eff_run_tools_aside(h, before):
    await h.until(lambda: ("live", "send_tool_responses", ["c1"]) in h.rec.calls, "the tool's response")
    call = h.published("tool_call")[0]
    assert call["id"] == "c1" and call["state"] == "speaking"  # edgectl events: the call, during speech
    assert not h.rec.has("player", "flush") and h.conv._reply_timer is None
    assert h.conv.stats["tool_calls_during_speech"] == 1


async def eff_wait_for_tools(h, before):
    assert h.conv.stats["turns_completed"] == 1 and h.conv._reply_timer is not None  # bounded
    assert h.conv.why.startswith("thinking (tool_pending")


async def eff_no_answer(h, before):
    assert h.conv.stats["no_answers"] == 1 and h.conv.stats["turns_completed"] == 1
    assert h.published("no_answer")[0]["reason"].startswith("no_answer")
    assert h.conv.why == "idle (no answer: the model chose not to answer)" and h.conv._reply_timer is None


async def eff_give_up(h, before):
    assert h.conv._stale


async def eff_cancel(h, before):
    assert h.rec.has("player", "flush") and h.rec.has("ear", "cancel_turn") and h.conv._stale


async def eff_mute(h, before):
    assert ("capture", "set_muted", True) in h.rec.calls and h.published("mute")[0]["muted"] is True


async def eff_unmute(h, before):
    assert ("capture", "set_muted", False) in h.rec.calls and h.published("mute")[0]["muted"] is False


async def eff_stop_ringing(h, before):
    # the ringing is stopped, and nothing else: no turn asked for or opened, the reply plays on
    assert h.rec.calls == [("timers", "stop_ringing", None)] and not h.events


async def eff_stop_ringing_drop_turn(h, before):
    # the turn the Ear opened on the wake word is called off, nothing reaches the model
    assert h.rec.calls == [("ear", "cancel_turn", None), ("timers", "stop_ringing", None)] and not h.events
    await asyncio.sleep(0)
    turns_on_the_path = 1 if before in (State.THINKING, State.SPEAKING) else 0
    assert not h.rec.has("live", "activity_start") and h.conv.stats["turns"] == turns_on_the_path


EFFECTS = {name[4:]: fn for name, fn in globals().items() if name.startswith("eff_")}


def test_every_action_has_an_effect_check():
    actions = {a for a, _ in TABLE.values() if not a.startswith("refuse_")}
    assert actions <= set(EFFECTS), actions - set(EFFECTS)
    for action in {a for a, _ in TABLE.values()}:
        assert hasattr(Conversation, "_do_" + action), action


@pytest.mark.parametrize("state,ev", sorted(TABLE, key=lambda k: (list(State).index(k[0]), list(Ev).index(k[1]))),
                         ids=lambda x: x.value)
async def test_row(state, ev):
    action, nxt = TABLE[(state, ev)]
    h = await reach(state)
    try:
        if action.startswith("refuse_"):
            why = h.conv.why
            with pytest.raises(EdgedError):
                h.conv.handle(ev, *ARGS.get(ev, ()))
            assert (h.conv.state, h.conv.why) == (state, why) and not h.rec.calls and not h.events
            return
        assert h.conv.handle(ev, *ARGS.get(ev, ())) is True
        expected = state if nxt == SAME else (State.IDLE if nxt == REST and state != State.ERROR else
                                              State.ERROR if nxt == REST else nxt)
        assert h.conv.state == expected
        if expected != state:
            assert h.published("state")[-1]["state"] == expected.value
        await EFFECTS[action](h, state)
    finally:
        await h.close()


MISSING = [(s, e) for s in State for e in Ev if (s, e) not in TABLE]


@pytest.mark.parametrize("state,ev", MISSING, ids=lambda x: x.value)
async def test_events_without_a_row_are_ignored(state, ev):
    h = await reach(state)
    try:
        snapshot = (h.conv.state, h.conv.why, h.conv._stale, dict(h.conv.stats), h.changes)
        assert h.conv.handle(ev, *ARGS.get(ev, ())) is False
        await asyncio.sleep(0)
        assert (h.conv.state, h.conv.why, h.conv._stale, dict(h.conv.stats), h.changes) == snapshot
        assert not h.rec.calls and not h.events
    finally:
        await h.close()


def test_the_table_has_no_rows_for_stopping_and_every_other_state_can_stop():
    assert not [k for k in TABLE if k[0] == State.STOPPING]
    assert all((s, Ev.STOP) in TABLE for s in State if s != State.STOPPING)


def test_the_conversation_implements_the_live_handler_protocol_itself():
    wanted = {n for n, _ in inspect.getmembers(LiveHandler, inspect.isfunction) if n.startswith("on_")}
    assert wanted == {"on_audio", "on_interrupted", "on_generation_complete", "on_turn_complete", "on_tool_call",
                      "on_tool_cancel", "on_transcript", "on_connection"}
    for name in wanted:
        assert name in vars(Conversation), name  # defined on the class, not found through __getattr__
        ours = inspect.signature(getattr(Conversation, name))
        theirs = inspect.signature(getattr(LiveHandler, name))
        assert len(ours.parameters) >= len(theirs.parameters), name
    assert not hasattr(Conversation, "__getattr__")


def test_the_architecture_doc_carries_the_table():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert markdown() in doc, "docs/ARCHITECTURE.md: the transition table differs from edged/transitions.py"


# ---- inputs are classified into the table's events ------------------------------------------------
async def test_reply_audio_after_a_barge_in_is_stale_until_the_interruption():
    h = await reach(State.SPEAKING)
    try:
        h.conv.on_turn_start("wake")  # barge-in
        assert h.conv.state == State.LISTENING and h.conv.turn_open
        h.rec.calls.clear()
        h.conv.on_audio(PCM)  # the old reply's audio: dropped
        assert not h.rec.has("player", "write")
        h.conv.on_interrupted()  # the server's interruption of the old reply: from now on replies count
        h.conv.on_turn_end("silence")
        h.conv.on_audio(PCM)
        assert h.conv.state == State.SPEAKING and h.rec.has("player", "write")
    finally:
        await h.close()


async def test_turn_complete_waits_for_running_tool_calls():
    h = await reach(State.THINKING)
    try:
        h.parts.tools.release.clear()  # the tool call runs until released
        h.conv.on_tool_call(ARGS[Ev.TOOL_CALL][0])
        await h.until(lambda: h.rec.has("tools", "call"), "the tool call")
        h.conv.on_turn_complete()  # the model's turn ended with the call: keep thinking
        assert h.conv.state == State.THINKING
        h.parts.tools.release.set()
        await h.until(lambda: h.rec.has("live", "send_tool_responses"), "the response")
        await h.until(lambda: not h.conv.calls.tasks, "the tool task to end")
        h.conv.on_turn_complete()  # the answer after the response, without audio
        assert h.conv.state == State.IDLE
    finally:
        await h.close()


@pytest.mark.parametrize("reason,event", [("silence", State.THINKING), ("max_length", State.THINKING),
                                          ("no_speech", State.IDLE), ("cancelled", State.IDLE)])
async def test_turn_end_reasons(reason, event):
    h = await reach(State.LISTENING)
    try:
        h.conv.on_turn_end(reason)
        assert h.conv.state == event and h.conv.stats["last_turn_end"] == reason
    finally:
        await h.close()


async def test_mute_during_a_reply_drops_the_rest_of_it_and_unmute_rests():
    h = await reach(State.SPEAKING)
    try:
        h.conv.set_muted(True)
        assert h.conv.state == State.MUTED and h.conv.muted
        h.rec.calls.clear()
        h.conv.on_audio(PCM)
        assert not h.rec.has("player", "write")  # the MUTED check is real: nothing plays
        with pytest.raises(EdgedError, match="muted"):
            h.conv.request_turn("edgectl")
        h.conv.set_muted(False)
        assert h.conv.state == State.IDLE and h.conv.why == "microphone on"
    finally:
        await h.close()


async def test_a_critical_problem_makes_rest_error_and_its_end_idle():
    h = await reach(State.LISTENING)
    try:
        h.conv.on_health(["live"])
        assert h.conv.state == State.LISTENING  # a turn in progress goes on
        h.conv.on_turn_end("no_speech")
        assert h.conv.state == State.ERROR and h.conv.why == "error (live)"
        h.conv.on_turn_start("button")  # buttons still work in the error state
        assert h.conv.state == State.LISTENING
        h.conv.on_turn_end("no_speech")
        h.conv.on_health([])
        assert h.conv.state == State.IDLE
    finally:
        await h.close()


async def test_wake_is_suppressed_while_speaking_when_configured():
    h = await reach(State.THINKING)
    try:
        h.conv.on_audio(PCM)
        assert ("ear", "set_wake_enabled", False) in h.rec.calls
        h.conv.on_turn_complete()
        h.conv.on_drained()
        assert h.rec.calls[-1] == ("ear", "set_wake_enabled", True) and h.conv.state == State.IDLE
    finally:
        await h.close()


async def test_follow_up_asks_the_ear_for_a_turn_after_the_reply():
    h = Harness(follow_up_s=3.0)
    try:
        for method, *args in PATHS[State.SPEAKING]:
            getattr(h.conv, method)(*args)
        h.conv.on_turn_complete()
        h.conv.on_drained()
        assert h.conv.state == State.IDLE and ("ear", "trigger", "follow-up") in h.rec.calls
    finally:
        await h.close()


async def test_no_reply_in_time_gives_up():
    h = Harness(reply_timeout_s=0.05)
    try:
        for method, *args in PATHS[State.THINKING]:
            getattr(h.conv, method)(*args)
        await h.until(lambda: h.conv.state == State.IDLE, "the reply timeout")
        assert h.conv.why == "idle (no reply)"
        h.conv.on_audio(PCM)  # the late reply is stale
        assert h.conv.state == State.IDLE and not h.rec.has("player", "write")
    finally:
        await h.close()


async def test_connection_changes_report_the_live_problem():
    h = await reach(State.IDLE)
    try:
        h.conv.on_connection("offline", "no route")
        assert h.problems[-1] == ("live", "offline: no route") and h.conv.live_state == "offline (no route)"
        h.conv.on_connection("connected")
        assert h.problems[-1] == ("live", None) and h.published("connection")[-1]["state"] == "connected"
    finally:
        await h.close()


async def test_stop_ends_the_sender_and_tool_calls():
    h = await reach(State.THINKING)
    h.parts.tools.release.clear()
    h.conv.on_tool_call(ARGS[Ev.TOOL_CALL][0])
    await h.until(lambda: h.rec.has("tools", "call"), "the tool call")
    tasks = list(h.conv.calls.tasks.values())
    await h.close()
    assert h.conv.state == State.STOPPING and all(t.done() for t in tasks)
    with contextlib.suppress(EdgedError):
        h.conv.say("late")
    assert h.conv.state == State.STOPPING


# ---- issue 10: asynchronous calls, no answer, a refused model ------------------------------------
CALL = [types.FunctionCall(id="c1", name="set_device", args={"device": "lamp", "state": "on"})]


async def test_a_tool_call_during_speech_runs_beside_the_reply():
    h = await reach(State.SPEAKING)
    try:
        h.parts.tools.release.clear()  # the call runs until released
        before = h.changes
        h.conv.on_tool_call(CALL)
        assert h.conv.state == State.SPEAKING and h.changes > before  # status/LED told: a call runs
        await h.until(lambda: h.rec.has("tools", "call"), "the tool call")
        assert [c["id"] for c in h.conv.tools_running] == ["c1"] and h.conv.tools_running[0]["name"] == "set_device"
        h.conv.on_audio(PCM)  # the reply goes on while the call runs
        assert h.rec.calls.count(("player", "write", len(PCM))) == 1 and not h.rec.has("player", "flush")
        assert not h.published("state")  # the state never left speaking
        changes = h.changes
        h.parts.tools.release.set()
        await h.until(lambda: ("live", "send_tool_responses", ["c1"]) in h.rec.calls, "the response")
        await h.until(lambda: not h.conv.tools_running, "the call to end")
        assert h.changes > changes and h.published("tool_result")[0]["state"] == "speaking"
        h.conv.on_turn_end(TurnEnd(4800, 1, (), False, True))
        h.conv.on_turn_complete()
        h.conv.on_drained()
        assert h.conv.state == State.IDLE
    finally:
        await h.close()


async def test_interrupt_scheduling_is_a_real_cut_and_its_reply_plays():
    h = await reach(State.SPEAKING)
    try:
        h.conv.on_tool_call(CALL)
        await h.until(lambda: h.rec.has("live", "send_tool_responses"), "the response")
        h.conv.on_interrupted()  # the response's INTERRUPT: the server cut the reply
        assert h.conv.state == State.IDLE and h.rec.has("player", "flush")
        h.conv.on_turn_end(TurnEnd(4800, 1, (), True, True))
        h.conv.on_turn_complete()
        h.conv.on_audio(PCM)  # the answer with the call's result
        assert h.conv.state == State.SPEAKING
    finally:
        await h.close()


async def test_a_reply_the_model_gives_on_its_own_plays_and_rests():
    """WHEN_IDLE: after the reply ended, the call's result makes the model speak again."""
    h = await reach(State.IDLE)
    try:
        h.conv.on_audio(PCM)
        assert h.conv.state == State.SPEAKING and h.rec.has("player", "write")
        h.conv.on_turn_end(TurnEnd(len(PCM), 0, (), False, False))
        h.conv.on_turn_complete()
        assert h.rec.has("player", "end_of_reply") and h.conv.state == State.SPEAKING
        h.conv.on_drained()
        assert h.conv.state == State.IDLE
    finally:
        await h.close()


async def test_no_answer_is_idle_at_once_never_the_reply_timeout():
    h = Harness(reply_timeout_s=60.0)
    try:
        for method, *args in PATHS[State.THINKING]:
            getattr(h.conv, method)(*args)
        assert h.conv._reply_timer is not None
        h.conv.on_turn_end(SILENT_TURN)
        h.conv.on_turn_complete()
        assert h.conv.state == State.IDLE and h.conv._reply_timer is None
        assert h.conv.why == "idle (no answer: the model chose not to answer)"
        assert h.published("no_answer")[0]["user_turn"] is True
        assert [e["state"] for e in h.published("state")][-1] == "idle"
    finally:
        await h.close()


async def test_a_silent_turn_while_an_older_call_runs_is_still_no_answer():
    """A watch from an earlier turn still runs: a later turn the model does not answer is not held."""
    h = await reach(State.IDLE)
    try:
        h.parts.tools.release.clear()
        h.conv.on_tool_call(CALL)  # idle -> thinking, the call runs
        h.conv.on_turn_end(TurnEnd(0, 1, ("c1",), False, False))
        h.conv.on_turn_complete()
        assert h.conv.state == State.THINKING  # its result will be spoken: wait
        h.conv.on_audio(PCM)
        h.conv.on_turn_end(TurnEnd(len(PCM), 0, ("c1",), False, False))
        h.conv.on_turn_complete()
        h.conv.on_drained()
        assert h.conv.state == State.IDLE and h.conv.tools_running
        h.conv.say("hello")  # a new turn; the model says nothing, the old call still runs
        h.conv.on_turn_end(TurnEnd(0, 0, ("c1",), False, True))
        h.conv.on_turn_complete()
        assert h.conv.state == State.IDLE and h.conv.stats["no_answers"] == 1
    finally:
        h.parts.tools.release.set()
        await h.close()


@pytest.mark.parametrize("follow_up", [True, False])
async def test_tool_pending_waits_for_the_follow_up_bounded_by_the_reply_timeout(follow_up):
    h = Harness(reply_timeout_s=0.3)
    try:
        for method, *args in PATHS[State.THINKING]:
            getattr(h.conv, method)(*args)
        h.parts.tools.release.clear()
        h.conv.on_tool_call(CALL)
        h.conv.on_turn_end(TurnEnd(0, 1, ("c1",), False, True))
        h.conv.on_turn_complete()
        assert h.conv.state == State.THINKING and "tool_pending" in h.conv.why
        h.parts.tools.release.set()
        await h.until(lambda: h.rec.has("live", "send_tool_responses"), "the response")
        if follow_up:
            h.conv.on_audio(PCM)  # the model speaks the call's result
            assert h.conv.state == State.SPEAKING
        else:
            await h.until(lambda: h.conv.state == State.IDLE, "the reply timeout", timeout=5)
            assert h.conv.why == "idle (no reply)"
    finally:
        await h.close()


async def test_a_refused_model_makes_error_whose_why_names_the_model_and_the_fix():
    h = await reach(State.IDLE)
    try:
        detail = ("live.model 'gemini-9-live' is not available to this key (1008 models/gemini-9-live is not "
                  "found ...); fix: set live.model to a Live model the key can use")
        h.conv.on_connection("model_unavailable", detail)
        assert h.problems[-1] == ("live", f"model_unavailable: {detail}")
        h.conv.on_health(["live"])  # what the root does when the problem registry changes
        assert h.conv.state == State.ERROR
        assert "gemini-9-live" in h.conv.why and "fix: set live.model" in h.conv.why
        h.conv.on_health(["capture", "live"])  # another part fails too: why says both
        assert h.conv.why.startswith("error (capture; live: model_unavailable")
        h.conv.on_connection("connected", "s1")
        h.conv.on_health([])
        assert h.conv.state == State.IDLE and h.problems[-1] == ("live", None)
    finally:
        await h.close()


async def test_a_generation_summary_never_closes_the_open_turn():
    """The Ear and the Live session both call on_turn_end: the session's TurnEnd (e.g. for the reply a
    barge-in cut, arriving while the new turn is open) must not end the user's turn."""
    h = await reach(State.LISTENING)
    try:
        h.conv.on_turn_end(TurnEnd(4800, 0, (), True, True))
        await asyncio.sleep(0)
        assert h.conv.state == State.LISTENING and not h.rec.has("live", "activity_end")
        h.conv.on_turn_end("silence")  # the Ear's end of the turn still closes it
        assert h.conv.state == State.THINKING
    finally:
        await h.close()


# ---- a timer or alarm ringing: the wake word and the talk button stop it -------------------------
async def test_the_wake_word_while_it_rings_stops_the_ringing_and_opens_no_turn():
    h = await reach(State.IDLE)
    try:
        h.parts.timers.ringing = [{"id": "timer-1"}]
        assert h.conv.ringing
        h.conv.on_turn_start("wake")
        assert h.conv.state == State.IDLE and not h.conv.ringing
        assert h.rec.calls == [("ear", "cancel_turn", None), ("timers", "stop_ringing", None)]
        h.conv.on_turn_audio(PCM)  # what the Ear had sent before it was told: ignored
        h.conv.on_turn_end("cancelled")
        await asyncio.sleep(0)
        assert h.conv.state == State.IDLE and not h.rec.has("live", "activity_start")
        h.conv.on_turn_start("wake")  # nothing rings any more: the wake word opens a turn again
        assert h.conv.state == State.LISTENING
    finally:
        await h.close()


async def test_the_wake_word_while_it_rings_during_a_reply_stops_only_the_ringing():
    h = await reach(State.SPEAKING)
    try:
        h.parts.timers.ringing = [{"id": "alarm-2"}]
        h.conv.on_turn_start("wake")
        assert h.conv.state == State.SPEAKING and h.conv.stats["barge_ins"] == 0
        assert not h.rec.has("player", "flush") and h.rec.has("timers", "stop_ringing")
    finally:
        await h.close()


@pytest.mark.parametrize("state", [State.IDLE, State.THINKING, State.MUTED, State.LISTENING])
async def test_the_talk_button_or_edgectl_wake_while_it_rings_stops_the_ringing(state):
    h = await reach(state)
    try:
        h.parts.timers.ringing = [{"id": "timer-1"}]
        h.conv.request_turn("button")  # not refused while muted: silencing the bell needs no microphone
        assert h.conv.state == state and h.rec.calls == [("timers", "stop_ringing", None)]
        h.rec.calls.clear()
        if state == State.IDLE:
            h.conv.request_turn("button")  # nothing rings: the button asks for a turn again
            assert h.rec.calls == [("ear", "trigger", "button")]
    finally:
        await h.close()


async def test_a_follow_up_turn_while_it_rings_is_a_turn():
    h = await reach(State.IDLE)
    try:
        h.parts.timers.ringing = [{"id": "timer-1"}]
        h.conv.on_turn_start("follow-up")  # not a person's gesture: the ringing goes on
        assert h.conv.state == State.LISTENING and not h.rec.has("timers", "stop_ringing")
    finally:
        await h.close()


async def test_a_retry_loops_connection_states_are_logged_once_per_reason(caplog):
    """A week without the network is one line per state and reason, not three lines every retry; the
    status and events still follow every state, and a connection makes the next failure news."""
    caplog.set_level(logging.DEBUG, logger="edged.conversation")
    h = await reach(State.IDLE)

    def said(text: str) -> int:
        return sum(1 for r in caplog.records if r.levelno >= logging.INFO and r.getMessage().startswith(text))

    try:
        for _ in range(50):
            h.conv.on_connection("connecting", "fresh session")
            h.conv.on_connection("offline", "no route")
        assert said("live connecting fresh session") == 1 and said("live offline no route") == 1
        assert len(h.published("connection")) >= 100 and h.conv.live_state == "offline (no route)"
        h.conv.on_connection("offline", "name resolution failed")  # a new reason is news
        assert said("live offline name resolution failed") == 1
        now = [1000.0]
        h.conv.live.clock = lambda: now[0]
        h.conv.on_connection("connected", "sim-1")
        now[0] += h.conv.cfg.live.stable_after_s  # it lasted: the next failure is news
        h.conv.on_connection("offline", "no route")
        assert said("live connected") == 1 and said("live offline no route") == 2
    finally:
        await h.close()


async def test_a_connection_that_keeps_dropping_is_logged_once_until_one_lasts(caplog):
    """A quota that runs out, or a middlebox that cuts connections: the link comes up and drops again
    within seconds, every retry.  Its three state lines are said once, not every cycle, until a
    connection lasts ``live.stable_after_s``; events and status still see every state."""
    caplog.set_level(logging.DEBUG, logger="edged.conversation")
    h = await reach(State.IDLE)
    now = [1000.0]
    h.conv.live.clock = lambda: now[0]

    def said(text: str) -> int:
        return sum(1 for r in caplog.records if r.levelno >= logging.INFO and r.getMessage().startswith(text))

    try:
        for i in range(30):
            h.conv.on_connection("connecting", "resuming")
            h.conv.on_connection("resumed", f"sim-{i}")
            now[0] += 2.0
            h.conv.on_connection("disconnected", "1011 quota exceeded")
            now[0] += 1.0
        assert said("live connecting") == 1 and said("live resumed") == 1 and said("live disconnected") == 1
        assert len(h.published("connection")) >= 90 and h.conv.live_state == "disconnected (1011 quota exceeded)"
        h.conv.on_connection("connecting", "resuming")
        h.conv.on_connection("resumed", "sim-lasting")
        now[0] += h.conv.cfg.live.stable_after_s
        assert said("live resumed") == 1  # still held: it has not yet ended
        h.conv.on_connection("disconnected", "1011 quota exceeded")
        h.conv.on_connection("connecting", "resuming")
        h.conv.on_connection("resumed", "sim-next")
        assert said("live disconnected") == 2 and said("live connecting") == 2 and said("live resumed") == 2
    finally:
        await h.close()
