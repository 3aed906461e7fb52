"""The conversation: the state machine from wake word to reply, on the event loop.

It receives events from the Ear (wake word, turn audio, end of speech; marshalled onto
the loop by the daemon), from the Live session (reply audio, interruptions, tool calls,
turn completion), from buttons and from edgectl, and is the one place that decides what
happens next.  It tells the parts what to do; they never call each other.

    idle --wake--> listening --end of speech--> thinking --audio--> speaking --drained--> idle
      ^                |no speech                   |tool calls: run, answer, stay thinking
      |                v                            |
      +------------- idle        wake during thinking/speaking: barge-in (flush, new turn)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .state import State

log = logging.getLogger(__name__)

# Bound on the audio waiting to go to the Live session: the longest utterance allowed,
# plus slack.  Past it the oldest audio of the turn is dropped and counted.
_SEND_SLACK_FRAMES = 25


class Conversation:
    """Turn-taking logic.  ``parts`` is the daemon: it gives access to ear, player, live, tools."""

    def __init__(self, parts: Any, cfg: Any, set_state: Callable[[State, str], None],
                 publish: Callable[[dict], None]) -> None:
        self._p = parts
        self.cfg = cfg
        self._set_state = set_state
        self._publish = publish
        max_frames = int(cfg.turn.max_utterance_s / 0.08) + _SEND_SLACK_FRAMES
        self._outq: deque[tuple[str, Any]] = deque()
        self._out_audio = 0
        self._out_max = max_frames
        self._out_ready = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._tool_tasks: dict[str, asyncio.Task[None]] = {}
        self._reply_timer: asyncio.TimerHandle | None = None
        # True from a barge-in until the old reply's interrupted/turnComplete: its audio is stale
        self._discard_reply = False
        self.turn_open = False
        self.state = State.IDLE
        self.stats = {"turns": 0, "turns_completed": 0, "barge_ins": 0, "interruptions": 0,
                      "no_speech": 0, "cancelled": 0, "send_drops": 0, "capture_drops": 0, "tool_calls": 0, "text_turns": 0,
                      "last_turn_end": None, "last_transcript": {}}

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._sender = asyncio.get_running_loop().create_task(self._send_loop(), name="edged-send")

    async def stop(self) -> None:
        self._cancel_timers()
        tasks = [t for t in (self._sender, *self._tool_tasks.values()) if t]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    def _go(self, state: State, why: str) -> None:
        self.state = state
        self._set_state(state, why)

    # ---- from the Ear (already on the loop) ------------------------------------------------
    def on_turn_start(self, source: str) -> None:
        """The Ear opened a turn: on the wake word ("wake"), or a trigger (button, edgectl, follow-up)."""
        if self.state == State.MUTED:
            return
        if self.turn_open:
            log.debug("turn start during an open turn ignored (%s)", source)
            return
        if self.state in (State.THINKING, State.SPEAKING):
            self.stats["barge_ins"] += 1
            log.info("barge-in by %s: reply stopped", source)
            self._p.player.flush()
            self._discard_reply = True
            self._publish({"event": "barge_in", "source": source})
        else:
            # nothing is pending from an earlier turn that needs discarding any more (a reply to a
            # no-speech turn that never came must not swallow this turn's reply)
            self._discard_reply = False
        if source != "wake":
            self._publish({"event": "wake", "source": source})
        self._cancel_timers()
        self.turn_open = True
        self.stats["turns"] += 1
        self._enqueue("start", source)
        self._go(State.LISTENING, f"listening (woken by {'the wake word' if source == 'wake' else source})")

    def on_drops(self, frames: int) -> None:
        self.stats["capture_drops"] += frames

    def on_turn_audio(self, pcm: bytes) -> None:
        if not self.turn_open:
            return
        self._enqueue("audio", pcm)

    def on_turn_end(self, reason: str) -> None:
        if not self.turn_open:
            return
        self.turn_open = False
        self.stats["last_turn_end"] = reason
        self._enqueue("end", reason)
        self._publish({"event": "turn_end", "reason": reason})
        if reason in ("no_speech", "cancelled"):
            self.stats["no_speech" if reason == "no_speech" else "cancelled"] += 1
            # nothing was said (or the turn was called off): the model's answer is not played
            self._discard_reply = True
            self._go(State.IDLE, "idle (no speech after the wake word)" if reason == "no_speech" else "idle")
            return
        self._go(State.THINKING, f"thinking (end of speech: {reason})")
        self._arm_reply_timer()

    def cancel_turn(self, why: str) -> None:
        """Mute, stop or reload: close any turn, stop any reply, and be idle."""
        if self.turn_open:
            self.turn_open = False
            self._enqueue("end", why)
            self._discard_reply = True
        elif self.state in (State.THINKING, State.SPEAKING):
            self._discard_reply = True
        self._p.player.flush()
        self._cancel_timers()
        if self.state not in (State.IDLE, State.STOPPING):
            self._go(State.IDLE, f"idle ({why})")

    # ---- text turns (edgectl say) ------------------------------------------------------------
    def say(self, text: str) -> None:
        if self.state == State.SPEAKING:
            self._p.player.flush()
            self._discard_reply = True
        self.stats["text_turns"] += 1
        self.stats["turns"] += 1
        self._enqueue("text", text)
        self._go(State.THINKING, "thinking (text turn)")
        self._arm_reply_timer()

    # ---- the sender: one task, so start/audio/end keep their order -------------------------
    def _enqueue(self, kind: str, payload: Any) -> None:
        if kind == "audio":
            if self._out_audio >= self._out_max:
                # drop the oldest audio still waiting (never a start/end marker)
                for i, (k, _) in enumerate(self._outq):
                    if k == "audio":
                        del self._outq[i]
                        self._out_audio -= 1
                        self.stats["send_drops"] += 1
                        break
            self._out_audio += 1
        self._outq.append((kind, payload))
        self._out_ready.set()

    async def _send_loop(self) -> None:
        while True:
            await self._out_ready.wait()
            while self._outq:
                kind, payload = self._outq.popleft()
                live = self._p.live  # read each time: a reload (restart_live) replaces the session
                try:
                    if kind == "audio":
                        self._out_audio -= 1
                        await live.send_audio(payload)
                    elif kind == "start":
                        await live.activity_start()
                    elif kind == "end":
                        await live.activity_end()
                    elif kind == "text":
                        await live.send_text(payload)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the session buffers/replays; never kill the sender
                    log.warning("sending %s to the Live session failed: %s", kind, exc)
            self._out_ready.clear()

    # ---- from the Live session (LiveHandler) --------------------------------------------------
    def on_audio(self, pcm: bytes) -> None:
        if self._discard_reply or self.state in (State.MUTED, State.LISTENING):
            return
        self._p.player.write(pcm)
        if self.state != State.SPEAKING:
            self._cancel_timers()
            self._go(State.SPEAKING, "speaking")

    def on_interrupted(self) -> None:
        self.stats["interruptions"] += 1
        self._p.player.flush()
        self._publish({"event": "interrupted"})
        if self._discard_reply:
            # the barge-in's own interruption: from now on replies belong to the new turn
            self._discard_reply = False
        elif self.state == State.SPEAKING:
            self._go(State.IDLE, "idle (reply interrupted)")

    def on_generation_complete(self) -> None:
        pass

    def on_turn_complete(self) -> None:
        if self._discard_reply:
            self._discard_reply = False
            return
        if self.state == State.LISTENING:
            return
        self.stats["turns_completed"] += 1
        self._cancel_timers()
        if self.state == State.SPEAKING:
            self._p.player.end_of_reply()  # -> on_drained when the last sample has played
        elif self.state == State.THINKING and not self._tool_tasks:
            self._after_reply()

    def on_drained(self) -> None:
        if self.state == State.SPEAKING:
            self._after_reply()

    def _after_reply(self) -> None:
        self._go(State.IDLE, "idle")
        if self.cfg.turn.follow_up_s > 0:
            # listen on without the wake word; the no-speech timeout closes it if nobody talks
            self._p.start_turn("follow-up")

    def on_transcript(self, role: str, text: str) -> None:
        self.stats["last_transcript"][role] = text
        self._publish({"event": "transcript", "role": role, "text": text})

    # ---- tool calls -----------------------------------------------------------------------------
    def on_tool_call(self, calls: list[Any]) -> None:
        for fc in calls:
            self.stats["tool_calls"] += 1
            key = fc.id or f"anon-{time.monotonic_ns()}"
            task = asyncio.get_running_loop().create_task(self._run_tool(fc), name=f"tool-{fc.name}")
            self._tool_tasks[key] = task
            task.add_done_callback(lambda _t, k=key: self._tool_tasks.pop(k, None))
        self._cancel_timers()
        if self.state not in (State.SPEAKING, State.LISTENING):
            self._go(State.THINKING, f"thinking (running {', '.join(fc.name or '?' for fc in calls)})")
        self._arm_reply_timer()

    async def _run_tool(self, fc: Any) -> None:
        self._publish({"event": "tool_call", "name": fc.name, "args": dict(fc.args or {}), "id": fc.id})
        response = await self._p.tools.call(fc)
        if response is None:  # cancelled: no response is sent
            self._publish({"event": "tool_result", "name": fc.name, "id": fc.id, "ok": False, "cancelled": True})
            return
        result = response.response or {}
        self._publish({"event": "tool_result", "name": fc.name, "id": fc.id, "ok": "error" not in result,
                       "response": result})
        try:
            await self._p.live.send_tool_responses([response])
        except Exception as exc:
            log.warning("sending the response to %s failed: %s", fc.name, exc)

    def on_tool_cancel(self, ids: list[str]) -> None:
        self._p.tools.cancel(ids)
        self._publish({"event": "tool_cancel", "ids": list(ids)})

    def on_connection(self, state: str, detail: str) -> None:
        self._publish({"event": "connection", "state": state, "detail": detail})

    # ---- timers ------------------------------------------------------------------------------
    def _arm_reply_timer(self) -> None:
        if self._reply_timer:
            self._reply_timer.cancel()
        loop = asyncio.get_running_loop()
        self._reply_timer = loop.call_later(self.cfg.turn.reply_timeout_s, self._reply_timed_out)

    def _reply_timed_out(self) -> None:
        self._reply_timer = None
        if self.state == State.THINKING:
            log.warning("no reply within %.0f s: back to idle", self.cfg.turn.reply_timeout_s)
            self._discard_reply = True
            self._go(State.IDLE, "idle (no reply)")

    def _cancel_timers(self) -> None:
        if self._reply_timer:
            self._reply_timer.cancel()
            self._reply_timer = None
