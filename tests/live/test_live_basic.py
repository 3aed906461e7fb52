"""The unmodified SDK against the emulator over TLS: setup contents, turns, reply audio."""

from __future__ import annotations

import os
import stat

from google.genai import types

from edged.sim import Scenario

from .conftest import live_cfg, until


def _pcm(n: int, seed: int = 1) -> bytes:
    return bytes((i * 7 + seed) % 256 for i in range(n))


async def test_setup_contents(emu, runner):
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(name="set_light", description="light")])
    cfg = live_cfg(emu, voice="Kore", language="de-DE", system_instruction="Be brief.",
                   compression_trigger_tokens=20000, compression_target_tokens=10000)
    s, h = runner.start(cfg, tools=lambda: [tool])
    assert await s.wait_connected(15)
    (conn,) = await emu.wait_connections(1)
    setup = conn.setup
    assert conn.path.endswith("google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent")
    assert setup["generationConfig"]["responseModalities"] == ["AUDIO"]
    assert setup["realtimeInputConfig"]["automatic_activity_detection"]["disabled"] is True
    assert setup["sessionResumption"] == {}
    cwc = setup["contextWindowCompression"]
    assert cwc["sliding_window"]["target_tokens"] in (10000, "10000")
    assert cwc["trigger_tokens"] in (20000, "20000")
    assert "inputAudioTranscription" in setup and "outputAudioTranscription" in setup
    voice = setup["generationConfig"]["speechConfig"]
    assert voice["voice_config"]["prebuilt_voice_config"]["voice_name"] == "Kore"
    assert voice["language_code"] == "de-DE"
    assert setup["systemInstruction"]["parts"][0]["text"] == "Be brief."
    assert setup["tools"][0]["functionDeclarations"][0]["name"] == "set_light"
    assert conn.violations == []
    assert h.states()[:2] == ["connecting", "connected"]
    assert s.status()["connected"] is True and s.status()["session_id"] == conn.session_id


async def test_audio_turn_order_bytes_and_reply(emu, runner, tmp_path):
    emu.scenario = Scenario([[{"input_transcript": "hello"}, {"tone": {"hz": 500, "ms": 600}},
                              {"output_transcript": "hi"}]])
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    chunks = [_pcm(2560, seed=i) for i in range(5)]
    await s.activity_start()
    for c in chunks:
        await s.send_audio(c)
    await s.activity_end()
    await until(lambda: h.count("turn_complete") >= 1, what="turn complete")
    kinds = [f.kind for f in emu.frames if f.kind in ("activity_start", "audio", "activity_end")]
    assert kinds == ["activity_start"] + ["audio"] * 5 + ["activity_end"]
    assert b"".join(f.payload for f in emu.frames_of("audio")) == b"".join(chunks)
    assert all(f.data["mime_type"] == "audio/pcm;rate=16000" for f in emu.frames_of("audio"))
    assert len(h.audio) == 24000 * 2 * 600 // 1000  # the whole tone, intact
    order = [k for k, _ in h.events if k in ("audio", "generation_complete", "turn_complete")]
    assert order == ["audio", "generation_complete", "turn_complete"]
    assert ("transcript", ("user", "hello")) in h.events and ("transcript", ("model", "hi")) in h.events
    assert emu.connections[0].violations == []
    # the emulator counts 32 tokens per second of audio: 0.4 s in (5 x 2560 bytes at 16 kHz),
    # 0.6 s out (the tone at 24 kHz); the status shows this turn's figures
    assert s.status()["usage"] == {"prompt_token_count": 12, "response_token_count": 19,
                                   "total_token_count": 31}
    # the handle from the last update is persisted, 0600
    f = tmp_path / "state" / "live_handle.json"
    await until(lambda: f.exists() and emu.handles_issued[-1] in f.read_text(), what="handle persisted")
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600


async def test_text_turn_and_audio_outside_turn_not_sent(emu, runner):
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    await s.send_audio(b"\x00" * 640)  # no turn open: not sent (manual activity detection)
    await s.send_text("what time is it")
    await until(lambda: h.count("turn_complete") >= 1, what="text turn reply")
    (cc,) = emu.frames_of("client_content")
    assert cc.data["turns"][0]["parts"][0]["text"] == "what time is it"
    assert (cc.data.get("turn_complete") or cc.data.get("turnComplete")) is True
    assert emu.frames_of("audio") == []
    assert s.status()["audio_dropped_bytes"] == 640
    assert len(h.audio) > 0


async def test_tool_call_round_trip_and_video(emu, runner):
    emu.scenario = Scenario([[{"tool_call": {"name": "snap", "args": {"n": 1}, "timeout": 10}},
                              {"await_video": {"frames": 2, "timeout": 10}}, {"say": "done"}]])
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    await s.send_text("look")
    await until(lambda: h.count("tool_call") >= 1, what="tool call")
    calls = next(v for k, v in h.events if k == "tool_call")
    assert calls[0].name == "snap" and calls[0].args == {"n": 1}
    await s.send_video(b"\xff\xd8jpeg1\xff\xd9")
    await s.send_video(b"\xff\xd8jpeg2\xff\xd9")
    await until(lambda: h.count("turn_complete") >= 1, what="reply after tool")
    conn = emu.connections[0]
    assert conn.tool_responses[0]["id"] == calls[0].id and conn.tool_responses[0]["response"] == {"ok": True}
    assert [f.payload for f in emu.frames_of("video")] == [b"\xff\xd8jpeg1\xff\xd9", b"\xff\xd8jpeg2\xff\xd9"]
    assert conn.violations == []


async def test_emulator_tool_cancel_and_interrupt_controls(emu, runner):
    emu.scenario = Scenario([[{"tone": {"ms": 3000}}]])
    emu.speed = 1.0
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    await s.activity_start()
    await s.send_audio(b"\x01\x00" * 800)
    await s.activity_end()
    await until(lambda: len(h.audio) > 0, what="reply audio")
    await emu.interrupt()
    await until(lambda: h.count("interrupted") >= 1, what="interrupted")
    assert len(h.audio) < 24000 * 2 * 3  # stopped mid-reply
    await emu.send_raw({"toolCallCancellation": {"ids": ["a", "b"]}})
    await until(lambda: h.count("tool_cancel") >= 1, what="cancel")
    assert ("tool_cancel", ["a", "b"]) in h.events


async def test_idle_session_sends_nothing(emu, runner):
    import asyncio

    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    await asyncio.sleep(1.0)
    assert [f.kind for f in emu.frames] == ["setup"]
    assert len(emu.connections) == 1 and s.connected
