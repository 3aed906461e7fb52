"""The whole listening path through the real daemon process: wake word, manual activity
detection, reply playback, interruption and barge-in, against the emulator."""

import asyncio
import wave

import pytest

from edged.dev.filedev import silence
from edged.dev.rig import Rig
from edged.sim import speech as sim_speech
from edged.sim.scenario import Scenario
from tests.waiting import status_until

from .conftest import speech

LONG = ("Once upon a time, in a small kitchen, there lived a speaker that listened all day long, and every "
        "evening it told the family a long and winding story about the stars and the sea.")


def _wav_frames(path) -> bytes:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        return w.readframes(w.getnframes())


async def _events(rig, sink):
    async for ev in rig.events():
        sink.append(ev)


def _heard(st: dict) -> int:
    """Capture frames the Ear has gone past (lost ones included)."""
    ear = st["wake"]["ear"]
    return ear["frames"] + ear["seq_gaps"]


async def _ear_went_past_the_mic(rig) -> None:
    """Wait until everything queued on the microphone has gone through the Ear."""
    await status_until(rig, lambda st: rig.mic_idle(), "the microphone's queue written to the FIFO")
    past = _heard(await rig.status()) + int(rig.feeder.lead_s * 32000) // 2560 + 2
    await status_until(rig, lambda st: _heard(st) >= past, "the Ear went past it")


async def test_wake_turn_reply_and_tool_call(tmp_path, models_dir):
    reply = "The kitchen light is on."
    scenario = Scenario([[
        {"input_transcript": "turn on the kitchen light"},
        {"tool_call": {"name": "set_device", "args": {"device": "kitchen_light", "state": "on"}}},
        {"say": reply},
    ]])
    rig = Rig(tmp_path / "rig", models_dir, scenario=scenario)
    await rig.start()
    events: list[dict] = []
    follower = asyncio.create_task(_events(rig, events))
    try:
        await rig.emu.wait_connections(1, timeout=15)
        # words without the wake word: nothing at all leaves the device
        negative = speech("what a lovely day it is today")
        rig.speak(negative, pad_s=1.0)
        await _ear_went_past_the_mic(rig)
        assert rig.emu.frames_of("activity_start") == []
        assert rig.emu.frames_of("audio") == []

        utterance = speech("hey jarvis") + speech("turn on the kitchen light")
        wake_len = len(speech("hey jarvis"))
        rig.speak(utterance, pad_s=2.0)
        await rig.wait_state("thinking", "speaking", timeout=30)
        st = await rig.wait_state("idle", timeout=60)

        # manual activity detection: start, audio, end, in that order, on one connection
        kinds = [f.kind for f in rig.emu.frames if f.kind in ("activity_start", "audio", "activity_end")]
        assert kinds[0] == "activity_start" and kinds[-1] == "activity_end"
        assert kinds.count("activity_start") == 1 and kinds.count("activity_end") == 1
        assert rig.emu.connections[0].violations == []
        # the audio is sample-identical to a contiguous slice of what the microphone heard,
        # from before the wake word's end to past the command's end: nothing lost or duplicated
        sent = b"".join(f.payload for f in rig.emu.frames_of("audio"))
        pad = silence(30)
        heard = pad + utterance + pad
        at = heard.find(sent)
        while at != -1 and at % 2:
            at = heard.find(sent, at + 1)
        assert at != -1, "the turn's audio is not a contiguous slice of the input"
        assert at <= len(pad) + wake_len, "the turn starts after the wake word's end"
        assert at + len(sent) >= len(pad) + len(utterance), "the command was clipped"
        assert st["conversation"]["last_turn_end"] == "silence"

        # the function call switched the LED, and its response carried the id and the new state
        responses = rig.emu.connections[0].tool_responses
        assert len(responses) == 1
        assert responses[0]["id"].startswith("call-")
        assert responses[0]["response"]["state"] == "on"
        gpio = (await rig.request("gpio.list"))["result"]
        assert gpio["kitchen_light"]["value"] in (True, 1, "on")

        # the reply was played, bit-exact, into the speaker's WAV
        await rig.stop_daemon()
        played = _wav_frames(rig.wavs[-1])
        expected = await sim_speech.say(reply, cache_dir=rig.root / "certs" / "tts")  # the emulator's render
        assert played[: len(expected)] == expected
        assert played[len(expected):] == bytes(len(played) - len(expected))  # the last period's padding
        assert len(played) - len(expected) < 24000 * 2 * 20 // 1000
        states = [e["state"] for e in events if e["event"] == "state"]
        states = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]  # reasons change too
        assert states[:4] == ["listening", "thinking", "speaking", "idle"], states
        wakes = [e for e in events if e["event"] == "wake"]
        assert wakes and wakes[0]["model"] == "hey_jarvis" and wakes[0]["score"] >= 0.5
    finally:
        follower.cancel()
        await rig.close()


@pytest.mark.parametrize("how", ["interrupted", "barge_in"])
async def test_reply_stops_on_interruption_and_barge_in(tmp_path, models_dir, how):
    scenario = Scenario([[{"say": LONG}], [{"say": "Yes?"}]])
    rig = Rig(tmp_path / "rig", models_dir, scenario=scenario)
    await rig.start()
    try:
        full = await sim_speech.say(LONG, cache_dir=rig.root / "certs" / "tts")
        rig.speak(speech("hey jarvis") + speech("tell me a story"), pad_s=2.0)
        await rig.wait_state("speaking", timeout=40)
        await status_until(rig, lambda st: st["audio"]["playback"]["frames_written"] >= 24000 // 2,
                           "half a second of the reply played")
        if how == "interrupted":
            await rig.emu.interrupt()
            st = await rig.wait_state("idle", timeout=10)
            assert st["conversation"]["interruptions"] >= 1
        else:
            rig.speak(speech("hey jarvis"), pad_s=2.5)
            await rig.emu.wait_frames("activity_start", n=2, timeout=20)
            st = await rig.wait_state("idle", timeout=40)
            assert st["conversation"]["barge_ins"] == 1
            assert st["conversation"]["turns"] == 2
        stats = st["audio"]["playback"]
        assert stats["flushes"] >= 1
        await rig.stop_daemon()
        played = _wav_frames(rig.wavs[-1])
        # what was played of the story is its beginning, and stops well before its end
        assert len(played) < len(full) * 0.6
        assert full.startswith(played[: len(played) // 2])
    finally:
        await rig.close()
