"""The emulator itself: scenario files, the CLI line, paths, violations, recording, thread mode, certs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import sys
from pathlib import Path

import pytest
from google import genai
from google.genai import types

from edged.sim import LiveEmulator, LiveEmulatorThread, Scenario, ScenarioError
from edged.sim.certs import ensure_certs

ROOT = Path(__file__).resolve().parents[2]
M = "gemini-3.8-live"


def _client(base_url: str, ca: Path, version: str = "v1beta") -> genai.Client:
    return genai.Client(api_key="k", http_options=types.HttpOptions(
        base_url=base_url, api_version=version,
        async_client_args={"ssl": ssl.create_default_context(cafile=str(ca))}))


def test_scenario_toml_and_json(tmp_path):
    t = tmp_path / "s.toml"
    t.write_text('repeat_last = false\ndefault = [{tone = {hz = 300, ms = 50}}]\n'
                 '[[turns]]\nsteps = [{say = "hello"}, {tool_call = {name = "f", args = {x = 1}}}, {drop = true}]\n')
    s = Scenario.load(t)
    assert [st.kind for st in s.reply(0)] == ["say", "tool_call", "drop"]
    assert s.reply(0)[1].args["args"] == {"x": 1}
    assert s.reply(1)[0].kind == "tone" and s.reply(1)[0].args["hz"] == 300
    j = tmp_path / "s.json"
    j.write_text(json.dumps({"turns": [[{"sleep": 0.5}], {"steps": [{"goaway": 3}]}]}))
    s2 = Scenario.load(j)
    assert s2.reply(0)[0].args == {"s": 0.5} and s2.reply(5)[0].args == {"time_left": 3.0}  # last repeats


@pytest.mark.parametrize("text,needle", [
    ('[[turns]]\nsteps = [{sing = "x"}]', "unknown step 'sing'"),
    ('[[turns]]\nsteps = [{tone = {hz = -1}}]', "hz must be a number"),
    ('[[turns]]\nsteps = [{say = 1, tone = {}}]', "exactly one key"),
    ('turnz = []', "unknown key(s) turnz"),
    ('[[turns', "syntax"),
])
def test_scenario_errors_name_place_and_reason(tmp_path, text, needle):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ScenarioError) as ei:
        Scenario.load(p)
    assert str(p) in str(ei.value) and needle in str(ei.value)


def test_certs_are_reused_when_valid(tmp_path):
    a = ensure_certs(tmp_path)
    before = a.ca_file.read_bytes()
    b = ensure_certs(tmp_path)
    assert b.ca_file.read_bytes() == before
    assert oct(os.stat(a.key_file).st_mode & 0o777) == "0o600"
    a.cert_file.write_text("garbage")
    assert ensure_certs(tmp_path).ca_file.read_bytes() != before  # regenerated


async def test_paths_versions_trailing_slash_and_404(cert_dir):
    async with LiveEmulator(cert_dir=cert_dir, speed=50) as emu:
        for version in ("v1", "v1alpha"):
            c = _client(emu.base_url + "/", emu.ca_file, version)  # "//ws/..." is normalised
            async with c.aio.live.connect(model=M) as s:
                assert s.session_id
        assert [c.path.split(".")[3] for c in emu.connections] == ["v1", "v1alpha"]
        import websockets

        ctx = ssl.create_default_context(cafile=str(emu.ca_file))
        with pytest.raises(websockets.InvalidStatus) as ei:
            async with websockets.connect(f"wss://127.0.0.1:{emu.port}/nope", ssl=ctx):
                pass
        assert ei.value.response.status_code == 404


async def test_violations_and_recording(cert_dir, tmp_path):
    rec = tmp_path / "rec.jsonl"
    async with LiveEmulator(cert_dir=cert_dir, speed=50, record=rec) as emu:
        c = _client(emu.base_url, emu.ca_file)
        async with c.aio.live.connect(model=M, config=types.LiveConnectConfig(response_modalities=["AUDIO"])) as s:
            await s.send_realtime_input(audio=types.Blob(data=b"\0\0" * 10, mime_type="audio/pcm;rate=16000"))
            await s.send_realtime_input(activity_end=types.ActivityEnd())
            await emu.wait_frames("activity_end")
        v = emu.connections[0].violations
        assert "setup does not disable automatic activity detection" in v
        assert "audio outside activityStart..activityEnd" in v and "activityEnd without activityStart" in v
    kinds = [json.loads(line)["kind"] for line in rec.read_text().splitlines()]
    assert kinds == ["setup", "audio", "activity_end"]


async def test_resume_refused_while_old_socket_open(cert_dir):
    async with LiveEmulator(cert_dir=cert_dir, speed=50) as emu:
        c = _client(emu.base_url, emu.ca_file)
        async with c.aio.live.connect(model=M) as s1:
            async for m in s1.receive():
                if m.session_resumption_update:
                    handle = m.session_resumption_update.new_handle
                    break
            cfg = types.LiveConnectConfig(session_resumption=types.SessionResumptionConfig(handle=handle))
            with pytest.raises(genai.errors.APIError) as ei:
                async with c.aio.live.connect(model=M, config=cfg):
                    pass
            assert ei.value.code == 1008
        async with c.aio.live.connect(model=M, config=cfg) as s2:  # old socket closed: accepted
            assert s2.session_id == emu.connections[0].session_id


def test_thread_mode(cert_dir):
    with LiveEmulatorThread(cert_dir=cert_dir, speed=50) as t:
        async def go():
            async with _client(t.base_url, t.ca_file).aio.live.connect(model=M) as s:
                await s.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="x")]),
                                            turn_complete=True)
                got = [m async for m in s.receive()]
                return got

        msgs = asyncio.run(go())
        assert msgs[-1].server_content.turn_complete
        assert t.emu.turns_received == 1


async def test_cli_prints_one_line_and_stops_on_sigterm(tmp_path):
    p = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edged", "sim", "--port", "0", "--cert-dir", str(tmp_path / "c"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(ROOT))
    try:
        line = (await asyncio.wait_for(p.stdout.readline(), 30)).decode()
        assert line.startswith("edged-sim listening base_url=https://127.0.0.1:")
        fields = dict(kv.split("=", 1) for kv in line.split()[2:])
        assert "BEGIN CERTIFICATE" in await asyncio.to_thread(Path(fields["ca_file"]).read_text)
        async with _client(fields["base_url"], Path(fields["ca_file"])).aio.live.connect(model=M) as s:
            assert s.session_id
        p.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(p.wait(), 20) == 0
        assert await p.stdout.read() == b""  # exactly one line
    finally:
        if p.returncode is None:
            p.kill()
            await p.wait()
