"""What the conversation needs from LiveSession on today's models: a refused model, a non-answer,
NON_BLOCKING calls during a reply with their scheduling, resumable:false, Google-like pacing."""

from __future__ import annotations

import asyncio
import json
import ssl
import time

import pytest
from google import genai
from google.genai import types

from edged.sim import LiveEmulator, Scenario, ScenarioError

from .conftest import RecordingHandler, live_cfg, until


class TurnHandler(RecordingHandler):
    def on_turn_end(self, info) -> None:
        self.events.append(("turn_end", info))

    def ends(self) -> list:
        return [v for k, v in self.events if k == "turn_end"]


DECL = types.Tool(function_declarations=[types.FunctionDeclaration(name="switch", description="switch")])


async def test_model_unavailable_names_model_and_fix_and_retries_slowly(cert_dir, runner):
    async with LiveEmulator(cert_dir=cert_dir, speed=50, models=["gemini-3.1-flash-live-preview"]) as e:
        s, h = runner.start(live_cfg(e, auth_retry_s=1.0, backoff_initial_s=0.01, backoff_max_s=0.02))
        await until(lambda: h.states().count("model_unavailable") >= 2, timeout=20, what="two refusals")
        detail = next(v[1] for k, v in h.events if k == "connection" and v[0] == "model_unavailable")
        assert "'gemini-3.8-live'" in detail and "fix: set live.model" in detail and "is not found" in detail
        opens = [c.t_open for c in e.connections]
        assert all(b - a >= 0.9 for a, b in zip(opens, opens[1:], strict=False))  # auth_retry_s, not backoff
        st = s.status()
        assert st["state"] == "model_unavailable" and st["model_failures"] >= 2 and st["model"] == "gemini-3.8-live"
        assert "disconnected" not in h.states()


async def test_no_answer_is_reported_at_turn_complete(emu, runner):
    emu.scenario = Scenario([[{"no_answer": True}], [{"tone": {"ms": 80}}]])
    s, h = runner.start(live_cfg(emu), handler=TurnHandler())
    assert await s.wait_connected(15)
    await s.activity_start()
    await s.send_audio(b"\x01\x00" * 1600)
    await s.activity_end()
    await until(lambda: h.count("turn_complete") >= 1, what="turnComplete")
    kinds = [k for k, _ in h.events if k in ("audio", "turn_end", "turn_complete", "generation_complete")]
    assert kinds == ["turn_end", "turn_complete"]  # summarised first, nothing else
    (info,) = h.ends()
    assert info.no_answer and info.user_turn and info.audio_bytes == 0 and info.reason.startswith("no_answer")
    assert s.status()["no_answers"] == 1 and s.status()["last_turn"]["no_answer"] is True
    await s.send_text("again")  # an answered turn is not a non-answer
    await until(lambda: h.count("turn_complete") >= 2, what="second turn")
    assert not h.ends()[-1].no_answer and h.ends()[-1].audio_bytes == 24000 * 2 * 80 // 1000


async def test_non_blocking_call_mid_reply_keeps_the_reply_and_follows_up_when_idle(emu, runner):
    emu.speed = 2.0
    emu.scenario = Scenario([[{"tone": {"ms": 400}},
                              {"tool_call": {"name": "switch", "args": {"on": True}, "then": [{"tone": {"ms": 120}}]}},
                              {"tone": {"ms": 400}}]])
    s, h = runner.start(live_cfg(emu), handler=TurnHandler(), tools=lambda: [DECL])
    assert await s.wait_connected(15)
    await s.send_text("switch it")
    await until(lambda: h.count("turn_complete") >= 2, what="reply and the follow-up")
    kinds = [k for k, _ in h.events if k in ("audio", "tool_call", "interrupted", "turn_complete")]
    # audio, then the call while the reply streams, more audio of the same reply, its end, then the
    # WHEN_IDLE follow-up (the handler's response carried no scheduling: the default)
    assert kinds == ["audio", "tool_call", "audio", "turn_complete", "audio", "turn_complete"]
    conn = emu.connections[0]
    assert conn.tool_calls[0]["behavior"] == "NON_BLOCKING"  # declared explicitly for gemini-3.8-live
    assert conn.setup["tools"][0]["functionDeclarations"][0]["behavior"] == "NON_BLOCKING"
    assert len(h.audio) == 24000 * 2 * 920 // 1000  # the reply was not cut: 400 + 400 + 120 ms
    first, second = h.ends()
    assert first.tool_calls == 1 and first.user_turn and not first.no_answer
    assert second.user_turn is False and second.audio_bytes == 24000 * 2 * 120 // 1000
    assert conn.violations == []


async def test_interrupt_scheduling_cuts_the_reply_and_pending_call_is_not_a_non_answer(emu, runner):
    emu.speed = 1.0
    emu.scenario = Scenario([[{"tool_call": {"name": "switch", "args": {}, "then": [{"tone": {"ms": 80}}]}},
                              {"tone": {"ms": 3000}}]])
    h = TurnHandler()
    h.auto_tool_response = False
    s, h = runner.start(live_cfg(emu), handler=h, tools=lambda: [DECL])
    assert await s.wait_connected(15)
    await s.send_text("go")
    await until(lambda: h.count("tool_call") >= 1 and len(h.audio) > 0, what="call and reply audio")
    assert s.status()["tool_calls_running"] == 1
    call = next(v for k, v in h.events if k == "tool_call")[0]
    await s.send_tool_responses([types.FunctionResponse(id=call.id, name=call.name, response={"ok": True},
                                                        scheduling="INTERRUPT")])
    await until(lambda: h.count("turn_complete") >= 2, what="interrupted reply and the follow-up")
    assert h.count("interrupted") == 1 and len(h.audio) < 24000 * 2 * 3
    assert s.status()["tool_calls_running"] == 0
    assert emu.connections[0].tool_responses[0]["scheduling"] == "INTERRUPT"
    # a call still running at turnComplete without audio: not a non-answer
    emu.scenario = Scenario([[{"tool_call": {"name": "switch", "args": {}}}]])
    await s.send_text("again")
    await until(lambda: len(h.ends()) >= 3, what="third turn end")
    last = h.ends()[-1]
    assert last.audio_bytes == 0 and last.pending_tool_calls and not last.no_answer
    assert last.reason.startswith("tool_pending")


async def test_scheduling_dropped_for_models_without_it(emu, runner):
    emu.scenario = Scenario([[{"tool_call": {"name": "switch", "args": {}}}, {"tone": {"ms": 40}}]])
    h = TurnHandler()
    h.auto_tool_response = False
    s, h = runner.start(live_cfg(emu, model="gemini-3.1-flash-live-preview"), handler=h, tools=lambda: [DECL])
    assert await s.wait_connected(15)
    await s.send_text("go")
    await until(lambda: h.count("tool_call") >= 1, what="call")
    call = next(v for k, v in h.events if k == "tool_call")[0]
    await s.send_tool_responses([types.FunctionResponse(id=call.id, name=call.name, response={},
                                                        scheduling="WHEN_IDLE")])
    await until(lambda: h.count("turn_complete") >= 1, what="reply after the blocking call")
    conn = emu.connections[0]
    assert "scheduling" not in conn.tool_responses[0] and conn.refused is None
    assert "behavior" not in conn.setup["tools"][0]["functionDeclarations"][0]
    assert conn.tool_calls[0]["behavior"] == "BLOCKING"


async def test_resumable_false_during_generation_keeps_the_stored_handle(emu, runner, tmp_path):
    emu.scenario = Scenario([[{"tone": {"ms": 80}},
                              {"resumption_update": {"resumable": False, "new_handle": "stale-handle"}},
                              {"resumption_update": {"resumable": False}},
                              {"tone": {"ms": 80}}, {"drop": True}],
                             [{"tone": {"ms": 40}}]])
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    first = emu.handles_issued[0]
    f = tmp_path / "state" / "live_handle.json"
    await until(lambda: f.exists() and first in f.read_text(), what="first handle stored")
    await s.send_text("hi")
    conns = await emu.wait_connections(2, timeout=20)
    assert conns[1].handle == first and conns[1].resumed  # not "stale-handle", not empty
    stored = json.loads(f.read_text())
    assert stored["handle"] in emu.handles_issued  # only resumable handles are ever stored


async def _arrivals(emu) -> list[float]:
    c = genai.Client(api_key="k", http_options=types.HttpOptions(
        base_url=emu.base_url, api_version="v1beta",
        async_client_args={"ssl": ssl.create_default_context(cafile=str(emu.ca_file))}))
    times: list[float] = []
    async with c.aio.live.connect(model="gemini-3.8-live") as sess:
        await sess.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="x")]),
                                       turn_complete=True)
        async for m in sess.receive():
            if m.data:
                times.append(time.monotonic())
    return times


async def test_google_pacing_sends_bursts_faster_than_real_time(cert_dir):
    async with LiveEmulator(Scenario([[{"tone": {"ms": 3000}}]], pacing="google"), cert_dir=cert_dir,
                            speed=1.0) as e:
        assert e.pacing_mode() == "google"
        t = await _arrivals(e)
    assert len(t) == 75  # 3 s in 40 ms chunks
    span = t[-1] - t[0]
    assert span < 1.5  # 3 s of audio delivered at about 3x real time (2/3 s)
    gaps = sorted(b - a for a, b in zip(t, t[1:], strict=False))
    assert gaps[-2] > 0.15 and gaps[-3] < 0.1  # two pauses between three 1-s bursts, the rest back to back
    async with LiveEmulator(Scenario([[{"tone": {"ms": 1000}}]]), cert_dir=cert_dir, speed=1.0,
                            pacing="realtime") as e:
        t = await _arrivals(e)
    assert t[-1] - t[0] > 0.8  # real time


async def test_google_pacing_pauses_after_each_burst_whatever_its_length(cert_dir, monkeypatch):
    from edged.sim import replies

    monkeypatch.setattr(replies, "GOOGLE_BURST_S", 0.5)  # 12.5 chunks of 40 ms: bursts of 12
    async with LiveEmulator(Scenario([[{"tone": {"ms": 3000}}]], pacing="google"), cert_dir=cert_dir,
                            speed=1.0) as e:
        t = await _arrivals(e)
    assert len(t) == 75
    gaps = [b - a for a, b in zip(t, t[1:], strict=False)]
    pauses = [i + 1 for i, g in enumerate(gaps) if g > 0.1]  # each about 0.48 s / 3 = 0.16 s
    assert pauses == [12, 24, 36, 48, 60, 72], gaps


def test_pacing_is_validated():
    with pytest.raises(ScenarioError, match="pacing must be one of"):
        Scenario.from_obj({"turns": [], "pacing": "fast"})
    with pytest.raises(ValueError, match="pacing must be one of"):
        LiveEmulator(pacing="fast")
    with pytest.raises(ScenarioError, match="behavior must be"):
        Scenario([[{"tool_call": {"name": "x", "behavior": "MAYBE"}}]])
    s = Scenario([[{"tool_call": {"name": "x", "then": [{"say": "done"}]}}, {"no_answer": 1},
                   {"resumption_update": {"resumable": False}}]])
    assert s.reply(0)[0].args["then"][0].kind == "say" and s.reply(0)[2].args == {"resumable": False,
                                                                                 "new_handle": ""}


async def test_cli_pacing_option(tmp_path):
    import sys

    from .test_live_sim import ROOT

    p = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edged", "sim", "--pacing", "nope", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=str(ROOT))
    _, err = await asyncio.wait_for(p.communicate(), 30)
    assert p.returncode == 2 and b"--pacing" in err


async def test_setup_refused_is_reported_and_retried_slowly(emu, runner):
    from edged.sim.rules import INVALID_ARGUMENT

    emu.arm(close_on_setup=(1007, INVALID_ARGUMENT))
    s, h = runner.start(live_cfg(emu, auth_retry_s=1.0, backoff_initial_s=0.01, backoff_max_s=0.02))
    await until(lambda: "setup_refused" in h.states(), what="setup_refused")
    detail = next(v[1] for k, v in h.events if k == "connection" and v[0] == "setup_refused")
    assert "gemini-3.8-live" in detail and INVALID_ARGUMENT in detail
    assert await s.wait_connected(15)  # the next attempt (armed faults are one-shot) connects
    a, b = emu.connections[0].t_open, emu.connections[1].t_open
    assert b - a >= 0.9 and s.status()["setup_refusals"] == 1
