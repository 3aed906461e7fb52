"""The speaker keeps its Live session across GoAways and restarts, and looks through the camera."""

import io
import signal

from PIL import Image

from edged.dev.rig import Rig
from edged.live.session import HANDLE_FILE
from edged.sim.scenario import Scenario

from .conftest import speech


async def _turn(rig, text):
    wake, _, command = text.partition(", ")
    rig.speak(speech(wake) + speech(command), pad_s=2.0)
    await rig.wait_state("thinking", "speaking", timeout=30)
    return await rig.wait_state("idle", timeout=60)


async def test_goaway_restart_and_kill9_resume(tmp_path, models_dir):
    rig = Rig(tmp_path / "rig", models_dir, scenario=Scenario([[{"tone": {"hz": 440, "ms": 300}}]]))
    await rig.start()
    try:
        emu = rig.emu
        await emu.wait_connections(1, timeout=15)
        await _turn(rig, "hey jarvis, what time is it")
        # GoAway: a new connection that resumes with the newest handle, the old one closed first
        newest = emu.handles_issued[-1]
        await emu.goaway(time_left=5.0)
        conns = await emu.wait_connections(2, timeout=10)
        assert conns[1].resumed and conns[1].handle == newest
        assert conns[0].closed and conns[0].closed_by == "client" and conns[0].close_code != 1011
        await _turn(rig, "hey jarvis, are you still there")
        assert emu.turns_received == 2

        # a clean restart resumes with the persisted handle
        newest = emu.handles_issued[-1]
        assert await rig.stop_daemon(signal.SIGTERM, timeout=10) == 0
        await rig.start_daemon()
        conns = await emu.wait_connections(3, timeout=15)
        assert conns[2].resumed and conns[2].handle == newest

        # and so does one after kill -9
        await _turn(rig, "hey jarvis, one more thing")
        newest = emu.handles_issued[-1]
        await emu.wait_for(lambda: (rig.state_dir / HANDLE_FILE).exists(), timeout=5)
        await rig.stop_daemon(signal.SIGKILL)
        await rig.start_daemon()
        conns = await emu.wait_connections(4, timeout=15)
        assert conns[3].resumed and conns[3].handle == newest
        st = await rig.status()
        assert st["live"]["state"].startswith(("connected", "resumed"))
        sessions = {c.session_id for c in conns}
        assert len(sessions) == 1, "every connection continued the one session"
    finally:
        await rig.close()


async def test_look_sends_a_jpeg_frame(tmp_path, models_dir):
    scenario = Scenario([[{"tool_call": {"name": "look", "args": {}}}, {"await_video": {"frames": 1}},
                          {"say": "I see a square."}]])
    rig = Rig(tmp_path / "rig", models_dir, scenario=scenario)
    await rig.start()
    try:
        await _turn(rig, "hey jarvis, what do you see")
        frames = rig.emu.frames_of("video")
        assert len(frames) == 1
        img = Image.open(io.BytesIO(frames[0].payload))
        assert img.format == "JPEG" and max(img.size) == 640
        response = rig.emu.connections[0].tool_responses[0]
        assert response["name"] == "look" and response["response"]["frames_sent"] == 1
        snap = await rig.request("snapshot")
        assert snap["ok"] and snap["result"]["bytes"] > 1000
    finally:
        await rig.close()


async def test_text_turn_from_edgectl_say(tmp_path, models_dir):
    rig = Rig(tmp_path / "rig", models_dir, scenario=Scenario([[{"tone": {"hz": 300, "ms": 400}}]]))
    await rig.start()
    try:
        await rig.emu.wait_connections(1, timeout=15)
        answer = await rig.request("say", text="what is the weather")
        assert answer["ok"]
        await rig.wait_state("speaking", timeout=20)
        await rig.wait_state("idle", timeout=20)
        texts = rig.emu.frames_of("client_content") + rig.emu.frames_of("text")
        assert any("what is the weather" in str(f.data) for f in texts)
        assert rig.emu.frames_of("activity_start") == []
    finally:
        await rig.close()
