"""The conversation: the daemon's one state machine, from start-up to shutdown, on the event loop.

It owns every state (:class:`edged.state.State`, muted and error included) and is the only place
that decides what happens next.  Its inputs come from the Ear (a turn opened, its audio, its end;
posted onto the loop by the root), from the Live session (it implements
:class:`edged.live.session.LiveHandler` itself), from the player (drained), from buttons and
edgectl (request a turn, say, mute), and from the problem registry (a critical part failed or
recovered).  Each input becomes one :class:`edged.transitions.Ev`; the transition table
(:data:`edged.transitions.TABLE`) says which action runs and which state follows.

    idle --wake--> listening --end of speech--> thinking --audio--> speaking --drained--> idle
      ^                |no speech                   |tool calls: run, answer, stay thinking
      |                v                            |turnComplete, no audio: no answer -> idle
      +------------- idle        wake during thinking/speaking: barge-in (flush, new turn)

A tool call during speaking (NON_BLOCKING) runs beside the reply: nothing is flushed, the state
stays speaking, ``tools_running`` lists it (status, the LED overlay).  A reply the model gives on
its own (after a tool result scheduled WHEN_IDLE) plays like any other: idle -> speaking -> idle.

Whether a turn is open is this object's truth (``state == LISTENING``).  The Ear streams a turn's
audio once it opened one and is told when to stop (``ear.cancel_turn()``); the Live session keeps a
copy of the turn in flight only to replay it after a reconnect.

Its helpers carry out what it decides: :class:`edged.outbox.Outbox` (what goes to the Live session,
in order, sent by one task), :class:`edged.tool_calls.ToolCalls` (the model's function calls as
tasks) and :class:`edged.live_state.LiveState` (the connection's state line, problem and reach).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import EdgedError
from .live.reach import Reach
from .live_state import LiveState
from .outbox import Outbox
from .ports import ConversationParts, Ports
from .state import State
from .tool_calls import ToolCalls
from .transitions import REST, SAME, TABLE, Ev

if TYPE_CHECKING:
    from google.genai import types

    from .config import Config
    from .live.session import TurnEnd

log = logging.getLogger(__name__)

# Bound on the audio waiting to go to the Live session: the longest utterance allowed,
# plus slack.  Past it the oldest audio of the turn is dropped and counted.
_SEND_SLACK_FRAMES = 25

_SPEECH_ENDS = ("silence", "max_length")  # any other end of a turn means nothing was said
# turns that a person started on purpose: acknowledged with the "wake" cue (not a follow-up)
_WAKE_CUE_SOURCES = ("wake", "button", "edgectl")


class Conversation:
    def __init__(self, cfg: Config, ports: Ports, on_change: Callable[[], None] = lambda: None) -> None:
        self.cfg = cfg
        self._ports = ports
        self._on_change = on_change  # the state, its reason or the Live connection changed
        self._parts: ConversationParts | None = None
        self.state = State.STARTING
        self.why = "starting"
        self.since = time.monotonic()
        self.live = LiveState(ports, cfg.live.stable_after_s)  # the connection's state line, its problem, reach
        self._critical: list[str] = []  # critical parts with a problem: the resting state is ERROR
        # True from a barge-in (or a turn with nothing said, a timeout, mute) until the old reply's
        # interrupted/turnComplete: its messages arrive as the stale_* events
        self._stale = False
        self._outbox = Outbox(int(cfg.turn.max_utterance_s / 0.08) + _SEND_SLACK_FRAMES, self._count_send_drop)
        self._sender: asyncio.Task[None] | None = None
        self.calls = ToolCalls(ports.publish, self._p, lambda: self.state, on_change)
        self._turn_info: TurnEnd | None = None  # the session's summary of the generation that just ended
        self._reply_timer: asyncio.TimerHandle | None = None
        self.wake_stats: dict[str, Any] = {"detections": 0, "last_model": None, "last_score": None}
        self.stats: dict[str, Any] = {
            "turns": 0, "turns_completed": 0, "barge_ins": 0, "interruptions": 0, "no_speech": 0, "cancelled": 0,
            "send_drops": 0, "capture_drops": 0, "tool_calls": 0, "tool_calls_during_speech": 0, "no_answers": 0,
            "text_turns": 0, "last_turn_end": None,
            "last_transcript": {}, "offline_wakes": 0, "turns_given_up_offline": 0}

    # ---- lifecycle (the root) -----------------------------------------------------------------
    def attach(self, parts: ConversationParts) -> None:
        """The root's container of the current parts (read at each use: a reload replaces some)."""
        self._parts = parts

    def reconfigure(self, cfg: Config) -> None:
        self.cfg = cfg

    def start(self, watch: Callable[[Callable[[], Any], str], asyncio.Task[Any]] | None = None) -> None:
        """Start the sender (the one task that talks to the Live session, so start/audio/end keep order).

        ``watch(factory, "sender")``: the root's supervisor, which restarts it if it crashes."""
        if self._sender is None:
            if watch is not None:
                self._sender = watch(self._send_loop, "sender")
            else:
                self._sender = asyncio.get_running_loop().create_task(self._send_loop(), name="edged-send")

    def ready(self) -> None:
        self.handle(Ev.READY)

    async def stop(self) -> None:
        """End the sender and any tool call (the STOP event has put the machine in STOPPING)."""
        self._cancel_timers()
        tasks = [t for t in (self._sender, *self.calls.tasks.values()) if t]
        self._sender = None
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    @property
    def muted(self) -> bool:
        return self.state == State.MUTED

    @property
    def live_state(self) -> str:
        return self.live.text

    @property
    def reach(self) -> Reach:
        return self.live.reach

    @property
    def turn_open(self) -> bool:
        return self.state == State.LISTENING

    @property
    def ringing(self) -> bool:
        """A timer or alarm rings now (the Timers part's truth; a container without one: never)."""
        timers = getattr(self._parts, "timers", None)
        return timers is not None and bool(timers.ringing)

    @property
    def tools_running(self) -> list[dict[str, Any]]:
        """The tool calls running now (any state; during speech they run beside the reply)."""
        return self.calls.running()

    # ---- the machine ------------------------------------------------------------------------------
    def handle(self, ev: Ev, *args: Any) -> bool:
        """Run the table's row for (state, ev).  False when there is none: the event is ignored."""
        row = TABLE.get((self.state, ev))
        if row is None:
            log.debug("%s ignored while %s", ev.value, self.state.value)
            return False
        action, nxt = row
        why = getattr(self, "_do_" + action)(*args)  # a refuse_* action raises EdgedError
        if nxt == SAME:
            return True
        target = self._rest() if nxt == REST else State(nxt)
        if why is None or target == State.ERROR:
            why = self._default_why(target)  # at rest with a part failing: say which
        self._go(target, why)
        return True

    def _rest(self) -> State:
        return State.ERROR if self._critical else State.IDLE

    def _default_why(self, state: State) -> str:
        if state == State.ERROR:
            parts = [f"live: {self.live.problem}" if p == "live" and self.live.problem else p
                     for p in self._critical]
            return f"error ({'; '.join(parts)})"
        return state.value

    def _go(self, state: State, why: str) -> None:
        if state == self.state and why == self.why:
            return
        self.state, self.why, self.since = state, why, time.monotonic()
        log.info("state %s: %s", state.value, why, extra={"fields": {"EDGED_STATE": state.value}})
        if self._parts is not None and self.cfg.wake.suppress_while_playing:
            self._parts.ear.set_wake_enabled(state != State.SPEAKING)
        self._on_change()
        self._ports.publish({"event": "state", "state": state.value, "reason": why})

    # ---- inputs: the root, buttons, edgectl, the problem registry -----------------------------
    def request_turn(self, source: str) -> None:
        """A turn without the wake word (button, edgectl wake, follow-up).  Raises when muted.
        While a timer or alarm rings, it stops the ringing instead."""
        self.handle(Ev.RING_REQUEST_TURN if self.ringing else Ev.REQUEST_TURN, source)

    def say(self, text: str) -> None:
        """A text turn (edgectl say).  Raises EdgedError when it cannot be taken now."""
        self.handle(Ev.SAY, text)

    def set_muted(self, on: bool) -> None:
        self.handle(Ev.MUTE if on else Ev.UNMUTE)

    def cancel(self) -> None:
        """A reload: call off any turn and any reply."""
        self.handle(Ev.CANCEL, "reload")

    def stop_now(self) -> None:
        self.handle(Ev.STOP)

    def on_health(self, critical: list[str]) -> None:
        """The critical parts that have a problem now (empty: none)."""
        self._critical = list(critical)
        self.handle(Ev.FAULT if critical else Ev.RECOVERED)
        if self.state == State.ERROR and critical:
            self._go(State.ERROR, self._default_why(State.ERROR))  # another part failed: say so

    # ---- inputs: the Ear (posted onto the loop) ------------------------------------------------
    def on_wake(self, model: str, score: float) -> None:
        """Every wake-word detection (also during a turn or a reply): counted and published."""
        self.wake_stats["detections"] += 1
        self.wake_stats["last_model"], self.wake_stats["last_score"] = model, round(score, 3)
        log.info("wake word %s score %.3f", model, score,
                 extra={"fields": {"WAKE_MODEL": model, "WAKE_SCORE": f"{score:.3f}"}})
        self._ports.publish({"event": "wake", "model": model, "score": round(score, 3), "source": "wake_word"})

    def on_turn_start(self, source: str) -> None:
        # the wake word while a timer or alarm rings stops the ringing (a follow-up turn does not);
        # otherwise a turn while the assistant cannot be reached gets the "offline" cue
        if source == "wake" and self.ringing:
            self.handle(Ev.RING_TURN_START, source)
        else:
            self.handle(Ev.TURN_OFFLINE if self.reach.offline else Ev.TURN_START, source)

    def on_turn_audio(self, pcm: bytes) -> None:
        self.handle(Ev.TURN_AUDIO, pcm)

    def on_turn_end(self, end: str | TurnEnd) -> None:
        """Two callers share this name: the Ear closing the turn (``end`` is its reason) and the Live
        session summarising a generation just before its turnComplete (``end`` is a TurnEnd)."""
        if not isinstance(end, str):
            self._turn_info = end  # classified by on_turn_complete, which comes next
            return
        self.handle(Ev.SPEECH_END if end in _SPEECH_ENDS else Ev.NO_SPEECH, end)

    def on_drops(self, frames: int) -> None:
        self.stats["capture_drops"] += frames

    # ---- inputs: the player (posted) ----------------------------------------------------------
    def on_drained(self) -> None:
        self.handle(Ev.DRAINED)

    # ---- inputs: the Live session (LiveHandler, on the loop) ------------------------------------
    def on_audio(self, pcm24k: bytes) -> None:
        self.handle(Ev.STALE_AUDIO if self._stale else Ev.AUDIO, pcm24k)

    def on_interrupted(self) -> None:
        self.handle(Ev.STALE_INTERRUPTED if self._stale else Ev.INTERRUPTED)

    def on_generation_complete(self) -> None:
        """Nothing to do: the reply is complete once it has played (turn_complete, then drained)."""

    def on_turn_complete(self) -> None:
        info, self._turn_info = self._turn_info, None
        if self._stale:
            self.handle(Ev.STALE_TURN_COMPLETE)
        elif info is None:  # a session that does not summarise: only the calls running here tell
            self.handle(Ev.TURN_COMPLETE_TOOLS if self.calls.tasks else Ev.TURN_COMPLETE)
        elif info.audio_bytes or info.interrupted:
            self.handle(Ev.TURN_COMPLETE_TOOLS if info.tool_calls and self.calls.tasks else Ev.TURN_COMPLETE)
        elif info.tool_calls:
            # no audio, but this generation called functions: their results will be spoken (NON_BLOCKING
            # with WHEN_IDLE/INTERRUPT, or BLOCKING): wait for that, bounded by reply_timeout_s.  A call
            # from an earlier turn that still runs (a watch) does not hold a turn the model left silent.
            self.handle(Ev.TURN_COMPLETE_TOOLS, info)
        else:
            self.handle(Ev.NO_ANSWER, info)

    def on_tool_call(self, calls: list[types.FunctionCall]) -> None:
        self.handle(Ev.TOOL_CALL, calls)

    def on_tool_cancel(self, ids: list[str]) -> None:
        self.calls.cancel(ids)

    def on_transcript(self, role: str, text: str) -> None:
        self.stats["last_transcript"][role] = text
        self._ports.publish({"event": "transcript", "role": role, "text": text})

    def on_connection(self, state: str, detail: str = "") -> None:
        down = self.live.update(state, detail or "", self._parts.live.status() if self._parts is not None else None)
        if down:
            self.handle(Ev.UNREACHABLE, self.reach.verdict()[1])  # a turn waiting for it is given up
        self._on_change()

    # ---- actions (the table's) -------------------------------------------------------------------
    def _p(self) -> ConversationParts:
        assert self._parts is not None, "the conversation is not attached to its parts"
        return self._parts

    def _do_none(self, *_: Any) -> None:
        return None

    def _do_refuse_muted(self, *_: Any) -> None:
        raise EdgedError("the microphone is muted")

    def _do_refuse_turn_open(self, *_: Any) -> None:
        raise EdgedError("a spoken turn is open: try again when it has ended")

    def _do_refuse_not_ready(self, *_: Any) -> None:
        raise EdgedError(f"not ready ({self.state.value})")

    def _do_open_turn(self, source: str) -> str:
        self._stale = False  # no earlier reply is pending any more (a no-speech turn's never came)
        return self._open(source)

    def _do_barge_in(self, source: str) -> str:
        self.stats["barge_ins"] += 1
        log.info("barge-in by %s: reply stopped", source)
        self._p().player.flush()
        self._stale = True
        self._ports.publish({"event": "barge_in", "source": source})
        return self._open(source)

    def _open(self, source: str) -> str:
        if source != "wake":
            self._ports.publish({"event": "wake", "source": source})
        if source in _WAKE_CUE_SOURCES:
            self._cue("wake")
        self._cancel_timers()
        self.stats["turns"] += 1
        self._enqueue("start", source)
        return f"listening (woken by {'the wake word' if source == 'wake' else source})"

    def _do_reject_turn(self, source: str) -> None:
        log.info("turn from %s refused while %s", source, self.state.value)
        if self._parts is not None:
            self._parts.ear.cancel_turn()

    def _do_send_turn_audio(self, pcm: bytes) -> None:
        self._enqueue("audio", pcm)

    def _do_close_turn(self, reason: str) -> str:
        self._cue("listen_end")
        self._end_turn(reason)
        self._arm_reply_timer()
        return f"thinking (end of speech: {reason})"

    def _do_close_unheard(self, reason: str) -> str:
        self._end_turn(reason)
        self.stats["no_speech" if reason == "no_speech" else "cancelled"] += 1
        self._stale = True  # nothing was said (or the turn was called off): its answer is not played
        return "idle (no speech after the wake word)" if reason == "no_speech" else "idle"

    def _end_turn(self, reason: str) -> None:
        self.stats["last_turn_end"] = reason
        self._enqueue("end", reason)
        self._ports.publish({"event": "turn_end", "reason": reason})

    def _do_trigger(self, source: str) -> None:
        self._p().ear.trigger(source)  # the Ear opens it at its next frame: on_turn_start

    def _do_send_text(self, text: str) -> str:
        self.stats["text_turns"] += 1
        self.stats["turns"] += 1
        self._enqueue("text", text)
        self._arm_reply_timer()
        return "thinking (text turn)"

    def _do_interrupt_with_text(self, text: str) -> str:
        self._p().player.flush()
        self._stale = True
        return self._do_send_text(text)

    def _do_play(self, pcm: bytes) -> str:
        self._p().player.write(pcm)
        if self.state != State.SPEAKING:
            self._cancel_timers()
        return "speaking"

    def _do_interrupted(self) -> str:
        self.stats["interruptions"] += 1
        self._p().player.flush()
        self._ports.publish({"event": "interrupted"})
        return "idle (reply interrupted)"

    def _do_interrupted_stale(self) -> None:
        # the barge-in's own interruption: from now on replies belong to the new turn
        self._do_interrupted()
        self._stale = False

    def _do_end_stale(self) -> None:
        self._stale = False

    def _do_count_complete(self, *_: Any) -> None:
        self.stats["turns_completed"] += 1
        self._cancel_timers()

    def _do_end_of_reply(self, *_: Any) -> None:
        self._do_count_complete()
        self._p().player.end_of_reply()  # -> on_drained when the last sample has played

    def _do_wait_for_tools(self, info: TurnEnd | None = None) -> str:
        self._do_count_complete()
        self._arm_reply_timer()  # the results' reply is bounded like any other
        n = self.calls.count() or (info.tool_calls if info is not None else 0)
        return f"thinking (tool_pending: waiting for the reply to {n} tool call(s))"

    def _do_no_answer(self, info: TurnEnd) -> str:
        self._do_count_complete()
        self.stats["no_answers"] += 1
        reason = "no_answer: the model chose not to answer (turnComplete without audio)"
        log.info("%s", reason)
        self._ports.publish({"event": "no_answer", "reason": reason, "user_turn": info.user_turn})
        return "idle (no answer: the model chose not to answer)"

    def _do_reply_done(self) -> str:
        self._do_count_complete()
        return self._do_finish_reply()

    def _do_finish_reply(self) -> str:
        if self.cfg.turn.follow_up_s > 0:
            # listen on without the wake word; the no-speech timeout closes it if nobody talks
            self._p().ear.trigger("follow-up")
        return "idle"

    def _do_run_tools(self, calls: list[types.FunctionCall]) -> str:
        self._start_tools(calls)
        self._cancel_timers()
        self._arm_reply_timer()
        return f"thinking (running {', '.join(fc.name or '?' for fc in calls)})"

    def _do_run_tools_aside(self, calls: list[types.FunctionCall]) -> None:
        """A call while the reply plays (NON_BLOCKING): it runs beside it; nothing is flushed or timed."""
        self.stats["tool_calls_during_speech"] += len(calls)
        log.info("tool call during the reply: %s (playback goes on)", ", ".join(fc.name or "?" for fc in calls))
        self._start_tools(calls)

    def _start_tools(self, calls: list[types.FunctionCall]) -> None:
        self.stats["tool_calls"] += len(calls)
        self.calls.start(calls)

    def _do_give_up(self) -> str:
        log.warning("no reply within %.0f s: back to idle", self.cfg.turn.reply_timeout_s)
        self._stale = True
        return "idle (no reply)"

    def _do_cancel(self, why: str) -> str:
        self._call_off()
        return f"idle ({why})"

    def _call_off(self) -> None:
        """Close an open turn, drop the reply in flight (and mark the rest of it stale)."""
        if self.state == State.LISTENING:
            self._enqueue("end", "cancelled")
        if self.state in (State.LISTENING, State.THINKING, State.SPEAKING):
            self._stale = True
        if self._parts is not None:
            self._parts.ear.cancel_turn()
            self._parts.player.flush()
        self._cancel_timers()

    def _do_mute(self) -> str:
        self._call_off()
        if self._parts is not None:
            self._parts.capture.set_muted(True)
        self._cue("mute_on")
        log.info("microphone muted")
        self._ports.publish({"event": "mute", "muted": True})
        return "muted"

    def _do_unmute(self) -> str:
        self._p().capture.set_muted(False)
        self._cue("mute_off")
        log.info("microphone on")
        self._ports.publish({"event": "mute", "muted": False})
        return "microphone on"

    def _do_stop_ringing(self, source: str) -> None:
        timers = self._p().timers
        stopped = timers.stop_ringing() if timers is not None else []  # it reports each end (edged.ringing)
        log.info("ringing stopped by %s: %s", source, ", ".join(it["id"] for it in stopped) or "nothing rang")

    def _do_stop_ringing_drop_turn(self, source: str) -> None:
        self._p().ear.cancel_turn()  # the wake word only silenced the ringing: no turn
        self._do_stop_ringing(source)
    def _do_offline_turn(self, source: str) -> str:
        """A turn opened while the assistant cannot be reached: the "offline" cue, no turn (the Ear's
        is called off, a reply in flight too), and one early reconnect if the service had refused us."""
        why = self.reach.verdict()[1]
        self.stats["offline_wakes"] += 1
        log.warning("%s while the assistant cannot be reached (%s): no turn", source, why)
        self._call_off()
        self._cue("offline")
        retry = False
        if self.reach.refused and self._parts is not None:
            retry = self._parts.live.retry_now()  # at most one early try per 30 s (the session's rule)
        self._ports.publish({"event": "offline_wake", "source": source, "why": why, "retry": retry})
        return f"the assistant cannot be reached ({why})"

    def _do_give_up_offline(self, why: str) -> str:
        """The session went offline while a turn waited for it: tell the person now, not at the reply
        timeout."""
        log.warning("the assistant cannot be reached (%s): the turn is given up", why)
        self.stats["turns_given_up_offline"] += 1
        self._call_off()
        self._cue("offline")
        self._ports.publish({"event": "turn_end", "reason": "offline"})
        return f"the assistant cannot be reached ({why})"

    def _cue(self, name: str) -> None:
        """Play a sound cue (not when it is switched off in [cues]); published as a ``cue`` event."""
        if self._parts is None:
            return
        try:
            played = self._parts.player.play_cue(name)
        except Exception as exc:  # a cue must never break a transition
            log.warning("cue %s: %s", name, exc)
            return
        if played:
            self._ports.publish({"event": "cue", "name": name})

    def _do_stop(self) -> str:
        self._call_off()
        return "stopping"

    # ---- the sender: one task, so start/audio/end keep their order (edged/outbox.py) -----------
    def _enqueue(self, kind: str, payload: Any) -> None:
        self._outbox.put(kind, payload)

    def _count_send_drop(self) -> None:
        self.stats["send_drops"] += 1

    async def _send_loop(self) -> None:
        await self._outbox.run(lambda: self._p().live)  # read each time: a reload replaces the session

    # ---- timers ------------------------------------------------------------------------------
    def _arm_reply_timer(self) -> None:
        if self._reply_timer:
            self._reply_timer.cancel()
        loop = asyncio.get_running_loop()
        self._reply_timer = loop.call_later(self.cfg.turn.reply_timeout_s, self._reply_timed_out)

    def _reply_timed_out(self) -> None:
        self._reply_timer = None
        self.handle(Ev.REPLY_TIMEOUT)

    def _cancel_timers(self) -> None:
        if self._reply_timer:
            self._reply_timer.cancel()
            self._reply_timer = None
