"""gemini-3.8-live's conversation rules through the real daemon and the emulator in Google-like pacing
(issue 10, items 3-5): a NON_BLOCKING call in the middle of a reply, a model that chooses not to
answer, toolCallCancellation, and a model the service refuses."""

from __future__ import annotations

import asyncio
import contextlib
import time

import numpy as np

from edged import ctl_status
from edged.control_client import AsyncControlClient
from edged.dev.filedev import silence
from edged.dev.rig import Rig
from edged.live.profiles import DEFAULT_MODEL
from edged.sim.scenario import Scenario
from edged.state import State

from .conftest import speech, summary_rows
from .test_e2e_inproc import speaker

AMBER = (1.0, 0.55, 0.0)
PERIOD = 24000 * 2 * 20 // 1000  # the player's period in bytes


def played_pcm(path) -> bytes:
    """The PCM of the speaker's WAV so far (ALSA's file PCM fixes the header's sizes only at close)."""
    data = path.read_bytes()
    at = data.find(b"data")
    assert at != -1, f"{path}: no data chunk"
    pcm = data[at + 8:]
    return pcm[: len(pcm) - len(pcm) % 2]


def longest_zero_run_ms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, "<i2")
    if not len(x):
        return 0.0
    z = np.concatenate(([0], (x == 0).astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(z))
    runs = edges[1::2] - edges[::2]
    return float(runs.max() if len(runs) else 0) * 1000 / 24000


async def follow(socket, sink: list[dict]) -> None:
    """What `edgectl events` shows: the control socket's event stream."""
    async for ev in AsyncControlClient(socket).events():
        sink.append(ev)


async def test_non_blocking_call_mid_reply_plays_on_complete_and_switches_the_pin(tmp_path, models_dir, monkeypatch):
    scenario = Scenario([[
        {"tone": {"hz": 440, "ms": 1200}},
        {"tool_call": {"name": "set_device", "args": {"device": "kitchen_light", "state": "on"},
                       "then": [{"tone": {"hz": 660, "ms": 400}}]}},  # the confirmation, WHEN_IDLE
        {"tone": {"hz": 550, "ms": 1200}},
    ]], pacing="google")
    async with speaker(tmp_path, models_dir, monkeypatch, scenario=scenario,
                       audio={"jitter_ms": 80, "volume": 100}) as sp:  # volume 100: gain 1
        assert sp.d.cfg.live.model == DEFAULT_MODEL == "gemini-3.8-live"
        events: list[dict] = []
        follower = asyncio.create_task(follow(tmp_path / "c.sock", events))
        await sp.wait(lambda: sp.d.events.subscribers >= 1, timeout=10, what="the events subscription")
        seen_amber = False
        try:
            sp.d.conv.say("turn on the kitchen light")
            await sp.wait(lambda: sp.d.state == State.SPEAKING, timeout=15, what="speaking")

            def amber() -> bool:
                nonlocal seen_amber
                seen_amber = seen_amber or sp.rgb() == AMBER
                return seen_amber

            await sp.wait(lambda: amber() or sp.d.state != State.SPEAKING, timeout=15, what="the LED overlay")
            assert seen_amber, "the status LED never showed the running call"
            await sp.wait(lambda: sp.d.state == State.IDLE, timeout=30, what="idle after the reply")
            await sp.wait(lambda: any(e["event"] == "state" and e["state"] == "idle" for e in events),
                          timeout=5, what="the idle event")
        finally:
            follower.cancel()
        rec = sp.emu.connections[-1]
        assert rec.model == "gemini-3.8-live" and rec.violations == []
        (call,) = rec.tool_calls
        assert call["behavior"] == "NON_BLOCKING"
        # the pin switched; the response carried the id and WHEN_IDLE
        assert sp.pin(17).state == 1
        (resp,) = rec.tool_responses
        assert resp["id"] == call["id"] and resp["scheduling"] == "WHEN_IDLE"
        # `edgectl events`: the call and its result with the id, while the state stayed speaking
        ev_call = next(e for e in events if e["event"] == "tool_call")
        ev_result = next(e for e in events if e["event"] == "tool_result")
        assert ev_call["id"] == ev_result["id"] == call["id"]
        assert ev_call["state"] == ev_result["state"] == "speaking" and ev_result["ok"]
        states = [e["state"] for e in events if e["event"] == "state"]
        assert states == ["thinking", "speaking", "idle"], states  # never left speaking, even for the follow-up
        st = sp.d.status()
        assert st["audio"]["playback"]["flushes"] == 0 and st["tools_running"] == []
        assert st["conversation"]["tool_calls_during_speech"] == 1
        # the played audio is exactly what the emulator sent (the reply, then the WHEN_IDLE follow-up):
        # nothing cut, nothing inserted
        sent = b"".join(f.payload for f in sp.emu.sent_of("audio"))
        assert len(sent) == 24000 * 2 * 2800 // 1000
        await sp.d.stop()  # ALSA's file PCM writes what it holds at close
        played = played_pcm(tmp_path / "played.wav")
        assert played[: len(sent)] == sent
        assert played[len(sent):] == bytes(len(played) - len(sent)) and len(played) - len(sent) < PERIOD
        assert longest_zero_run_ms(played[: len(sent)]) == longest_zero_run_ms(sent)


async def test_tool_call_cancellation_stops_a_pulse_and_a_watch(tmp_path, models_dir, monkeypatch):
    async with speaker(tmp_path, models_dir, monkeypatch) as sp:
        sub = sp.d.events.subscribe()
        # a pulse: on for 30 s ... cancelled: back off at once, long before
        cid = await sp.emu.send_tool_call("set_device", {"device": "kitchen_light", "state": "on", "duration_s": 30})
        await sp.wait(lambda: sp.pin(17).state == 1, timeout=10, what="the pulse on")
        await sp.emu.send_raw({"toolCallCancellation": {"ids": [cid]}})
        t0 = time.monotonic()
        await sp.wait(lambda: sp.pin(17).state == 0, timeout=5, what="the pulse undone")
        assert time.monotonic() - t0 < 5
        # a watch: frames stream, the camera LED is lit ... cancelled: it stops, no response is sent
        wid = await sp.emu.send_tool_call("watch", {"seconds": 30})
        await sp.emu.wait_frames("video", n=2, timeout=15)
        assert sp.pin(16).state == 1
        assert [c["id"] for c in sp.d.status()["tools_running"]] == [wid]
        assert summary_rows(ctl_status.summary(sp.d.status()))["Tool calls"].startswith("watch for ")  # edgectl status
        await sp.emu.send_raw({"toolCallCancellation": {"ids": [wid]}})
        await sp.wait(lambda: not sp.d.status()["tools_running"], timeout=10, what="the watch ended")
        assert "Tool calls" not in summary_rows(ctl_status.summary(sp.d.status()))
        assert sp.pin(16).state == 0
        n = len(sp.emu.frames_of("video"))
        seen = []
        with contextlib.suppress(TimeoutError):
            while True:
                ev = await asyncio.wait_for(sub.get(), 2)
                seen.append(ev)
        result = [e for e in seen if e.get("event") == "tool_result" and e.get("id") == wid]
        assert result and result[0]["cancelled"] is True
        assert [e["ids"] for e in seen if e.get("event") == "tool_cancel"] == [[cid], [wid]]
        assert len(sp.emu.frames_of("video")) == n  # no frame after the cancellation (2 s)
        assert wid not in [r.get("id") for r in sp.emu.connections[-1].tool_responses]


async def test_a_silent_non_answer_is_idle_within_300_ms_of_turn_complete(tmp_path, models_dir, monkeypatch):
    scenario = Scenario([[{"input_transcript": "hmm"}, {"no_answer": True}]], pacing="google")
    async with speaker(tmp_path, models_dir, monkeypatch, scenario=scenario, turn={"reply_timeout_s": 30.0}) as sp:
        sub = sp.d.events.subscribe()
        sp.feeder.feed(speech("hey jarvis") + speech("hmm, I wonder") + silence(1.5))
        await sp.emu.wait_frames("activity_end", timeout=30)
        (tc,) = await sp.emu.wait_for(lambda: sp.emu.sent_of("turn_complete"), timeout=10)
        idle = no_answer = None
        while idle is None or no_answer is None:
            ev = await asyncio.wait_for(sub.get(), 10)
            if ev.get("event") == "state" and ev["state"] == "idle":
                idle = ev
            if ev.get("event") == "no_answer":
                no_answer = ev
        # events carry the daemon's monotonic time; the emulator's records the same clock
        assert 0 <= idle["mono"] - tc.t < 0.3, idle["mono"] - tc.t
        assert idle["reason"] == "idle (no answer: the model chose not to answer)"
        assert no_answer["reason"].startswith("no_answer") and no_answer["user_turn"] is True
        st = sp.d.status()
        assert st["state"] == "idle" and "no answer" in st["why"]
        assert st["conversation"]["no_answers"] == 1 and st["live"]["no_answers"] == 1
        assert sp.emu.sent_of("audio") == []


async def test_a_model_the_service_refuses_is_an_error_naming_it_and_retried_slowly(tmp_path, models_dir):
    rig = Rig(tmp_path / "rig", models_dir, overrides={"live": {
        "model": "gemini-9.9-live", "auth_retry_s": 1.0, "backoff_initial_s": 0.05, "backoff_max_s": 0.1}})
    await rig.start()
    try:
        st = await rig.wait_state("error", timeout=30)
        await rig.emu.wait_connections(2, timeout=10)
        # over a window the backoff alone would fill with 30+ attempts, the refused model is tried
        # once a second (live.auth_retry_s)
        first = len(rig.emu.connections)
        t0 = time.monotonic()
        await asyncio.sleep(3.0)  # the observation window itself: attempts are counted over it
        n = len(rig.emu.connections) - first
        window = time.monotonic() - t0
        assert 1 <= n <= window / 1.0 + 1, f"{n} attempts in {window:.1f} s"
        opens = [c.t_open for c in rig.emu.connections]
        assert min(b - a for a, b in zip(opens, opens[1:], strict=False)) >= 0.9
        assert all(c.refused and c.refused[0] == 1008 for c in rig.emu.connections)
        st = await rig.status()
        assert st["state"] == "error"
        assert "gemini-9.9-live" in st["why"] and "fix: set live.model" in st["why"]
        assert "model_unavailable" in st["problems"]["live"] and "gemini-9.9-live" in st["problems"]["live"]
        assert st["live"]["state"] == "model_unavailable"
        assert st["live"]["model_failures"] >= 2 and st["live"]["model"] == "gemini-9.9-live"
    finally:
        await rig.close()
