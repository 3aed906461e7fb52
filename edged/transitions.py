"""The conversation's transition table, as data: (state, event) -> (action, next state).

:class:`edged.conversation.Conversation` is the only user: every input it gets (from the Ear, the
Live session, the player, buttons, edgectl, the problem registry) becomes one :class:`Ev`, and the
row for its current state says which action runs and which state follows.  An event that has no
row for the current state is ignored (logged at debug level): that is the design, and the tests
walk every row and every missing pair.  An action named ``refuse_*`` raises
:class:`edged.errors.EdgedError` (the request is answered with the reason; nothing changes).

Next states: a :class:`State`, ``SAME`` (stay), or ``REST``: IDLE, or ERROR while a critical part
(capture, wake word, Live connection) has a problem.

A tool call that arrives while a reply plays (a NON_BLOCKING call on gemini-3.8-live) runs beside
it (``run_tools_aside``): the state stays speaking and the call shows as ``tools_running``.  A
turnComplete is classified by the session's ``TurnEnd``: without audio and without tool calls the
model chose not to answer (``no_answer``: idle at once); without audio but with tool calls their
results will be spoken (``turn_complete_tools``: wait, bounded by ``turn.reply_timeout_s``).

Replies that are no longer wanted (after a barge-in, a turn with nothing said, a reply timeout,
mute) are *stale*: their audio, interruption and turn completion arrive as the ``stale_*``
events, so the table shows what happens to them too.
"""

from __future__ import annotations

from enum import StrEnum

from .state import State


class Ev(StrEnum):
    READY = "ready"  # the parts are up
    TURN_START = "turn_start"  # the Ear opened a turn (the wake word, or a trigger it was given)
    TURN_OFFLINE = "turn_offline"  # the same while the assistant cannot be reached (edged.live.reach)
    TURN_AUDIO = "turn_audio"  # audio of the open turn, from the Ear
    SPEECH_END = "speech_end"  # the Ear closed the turn after speech (silence, max_length)
    NO_SPEECH = "no_speech"  # the Ear closed the turn with nothing said, or cancelled it
    REQUEST_TURN = "request_turn"  # talk button, edgectl wake, follow-up: ask the Ear for a turn
    SAY = "say"  # edgectl say: a text turn
    AUDIO = "audio"  # reply audio from the model
    INTERRUPTED = "interrupted"  # the server stopped its reply
    TURN_COMPLETE = "turn_complete"  # the model's turn is done and no tool call is running
    TURN_COMPLETE_TOOLS = "turn_complete_tools"  # the model's turn is done, its tool calls' results will follow
    NO_ANSWER = "no_answer"  # the model's turn is done without audio: it chose not to answer
    STALE_AUDIO = "stale_audio"  # the same three for a reply that is no longer wanted
    STALE_INTERRUPTED = "stale_interrupted"
    STALE_TURN_COMPLETE = "stale_turn_complete"
    DRAINED = "drained"  # the player played the reply's last sample
    TOOL_CALL = "tool_call"  # the model calls functions
    REPLY_TIMEOUT = "reply_timeout"  # no reply within turn.reply_timeout_s
    UNREACHABLE = "unreachable"  # the Live session went offline (or was refused) while a turn waits
    CANCEL = "cancel"  # a reload: call the turn and the reply off
    MUTE = "mute"
    UNMUTE = "unmute"
    FAULT = "fault"  # a critical part has a problem
    RECOVERED = "recovered"  # no critical part has a problem any more
    STOP = "stop"
    # while a timer or alarm rings (edged.ringing): the person's "stop" gestures
    RING_TURN_START = "ring_turn_start"  # the Ear opened a turn on the wake word while it rings
    RING_REQUEST_TURN = "ring_request_turn"  # talk button, edgectl wake while it rings


SAME = "same"
REST = "rest"
Next = State | str

S = State
AT_REST = (S.IDLE, S.ERROR)
REPLYING = (S.THINKING, S.SPEAKING)
# the states in which the model's messages can arrive (not starting, not stopping)
RUNNING = (S.IDLE, S.ERROR, S.LISTENING, S.THINKING, S.SPEAKING, S.MUTED)

TABLE: dict[tuple[State, Ev], tuple[str, Next]] = {}


def _row(states: tuple[State, ...], event: Ev, action: str, nxt: Next) -> None:
    for state in states:
        key = (state, event)
        assert key not in TABLE, f"two rows for {key}"
        TABLE[key] = (action, nxt)


# start-up and shutdown
_row((S.STARTING,), Ev.READY, "none", REST)
_row((S.STARTING, *RUNNING), Ev.STOP, "stop", S.STOPPING)
# turns from the Ear
_row(AT_REST, Ev.TURN_START, "open_turn", S.LISTENING)
_row(REPLYING, Ev.TURN_START, "barge_in", S.LISTENING)
_row((S.STARTING, S.MUTED), Ev.TURN_START, "reject_turn", SAME)
# offline manners: a wake while the assistant cannot be reached plays the "offline" cue, opens nothing
_row((*AT_REST, *REPLYING), Ev.TURN_OFFLINE, "offline_turn", REST)
_row((S.STARTING, S.MUTED), Ev.TURN_OFFLINE, "reject_turn", SAME)
_row((S.LISTENING, S.THINKING), Ev.UNREACHABLE, "give_up_offline", REST)
_row((S.LISTENING,), Ev.TURN_AUDIO, "send_turn_audio", SAME)
_row((S.LISTENING,), Ev.SPEECH_END, "close_turn", S.THINKING)
_row((S.LISTENING,), Ev.NO_SPEECH, "close_unheard", REST)
# asking for a turn (button, edgectl wake, follow-up)
_row((*AT_REST, *REPLYING), Ev.REQUEST_TURN, "trigger", SAME)
_row((S.MUTED,), Ev.REQUEST_TURN, "refuse_muted", SAME)
_row((S.STARTING,), Ev.REQUEST_TURN, "refuse_not_ready", SAME)
# text turns
_row((*AT_REST, S.THINKING), Ev.SAY, "send_text", S.THINKING)
_row((S.SPEAKING,), Ev.SAY, "interrupt_with_text", S.THINKING)
_row((S.LISTENING,), Ev.SAY, "refuse_turn_open", SAME)
_row((S.MUTED,), Ev.SAY, "refuse_muted", SAME)
_row((S.STARTING,), Ev.SAY, "refuse_not_ready", SAME)
# the reply
_row((*AT_REST, S.THINKING), Ev.AUDIO, "play", S.SPEAKING)
_row((S.SPEAKING,), Ev.AUDIO, "play", SAME)
_row((*AT_REST, S.LISTENING, S.THINKING, S.MUTED), Ev.INTERRUPTED, "interrupted", SAME)
_row((S.SPEAKING,), Ev.INTERRUPTED, "interrupted", REST)
_row((*AT_REST, S.MUTED), Ev.TURN_COMPLETE, "count_complete", SAME)
_row((*AT_REST, S.MUTED), Ev.TURN_COMPLETE_TOOLS, "count_complete", SAME)
_row((S.THINKING,), Ev.TURN_COMPLETE, "reply_done", REST)
_row((S.THINKING,), Ev.TURN_COMPLETE_TOOLS, "wait_for_tools", S.THINKING)
_row((S.SPEAKING,), Ev.TURN_COMPLETE, "end_of_reply", SAME)
_row((S.SPEAKING,), Ev.TURN_COMPLETE_TOOLS, "end_of_reply", SAME)
# the model chose not to answer (proactive audio): idle at once, never the reply timeout
_row((S.THINKING,), Ev.NO_ANSWER, "no_answer", REST)
_row((*AT_REST, S.MUTED), Ev.NO_ANSWER, "count_complete", SAME)
_row((S.SPEAKING,), Ev.NO_ANSWER, "end_of_reply", SAME)  # a silent generation while a reply still plays
_row((S.SPEAKING,), Ev.DRAINED, "finish_reply", REST)
_row((*AT_REST, S.LISTENING, S.THINKING, S.MUTED), Ev.STALE_INTERRUPTED, "interrupted_stale", SAME)
_row((*AT_REST, S.LISTENING, S.THINKING, S.MUTED), Ev.STALE_TURN_COMPLETE, "end_stale", SAME)
_row((S.THINKING,), Ev.REPLY_TIMEOUT, "give_up", REST)
# tool calls are always answered; one during a reply (NON_BLOCKING) runs beside it: nothing is flushed
_row((*AT_REST, S.THINKING), Ev.TOOL_CALL, "run_tools", S.THINKING)
_row((S.SPEAKING,), Ev.TOOL_CALL, "run_tools_aside", SAME)
_row((S.LISTENING, S.MUTED), Ev.TOOL_CALL, "run_tools", SAME)
# reload, mute, problems
_row((S.LISTENING, *REPLYING), Ev.CANCEL, "cancel", REST)
_row((S.STARTING, *AT_REST, S.LISTENING, *REPLYING), Ev.MUTE, "mute", S.MUTED)
_row((S.MUTED,), Ev.UNMUTE, "unmute", REST)
_row((S.IDLE,), Ev.FAULT, "none", S.ERROR)
_row((S.ERROR,), Ev.RECOVERED, "none", S.IDLE)
# a timer or alarm rings: the wake word or the talk button stops the ringing, and that is all it
# does (a person silencing an alarm with "hey jarvis" wants it quiet, not a question): no turn is
# opened (the Ear's is called off) and a reply being played goes on.  Muted, the microphone hears
# nothing: a turn the Ear opened before the mute took hold is refused as usual; the talk button works
_row((S.STARTING, *AT_REST, *REPLYING), Ev.RING_TURN_START, "stop_ringing_drop_turn", SAME)
_row((S.MUTED,), Ev.RING_TURN_START, "reject_turn", SAME)
_row((S.STARTING, *RUNNING), Ev.RING_REQUEST_TURN, "stop_ringing", SAME)


def markdown() -> str:
    """The table as Markdown, one row per (state, event), in the order of the states and events
    (docs/ARCHITECTURE.md carries it; a test keeps the two equal)."""
    lines = ["| state | event | action | next |", "|---|---|---|---|"]
    for state in State:
        for ev in Ev:
            row = TABLE.get((state, ev))
            if row is not None:
                action, nxt = row
                lines.append(f"| {state.value} | {ev.value} | {action} | {nxt} |")
    return "\n".join(lines)
