"""edged as a service: edgectl end to end, sd_notify, reload, stop, and the key never leaking."""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.dev.rig import Rig
from edged.live.session import HANDLE_FILE
from edged.sim.scenario import Scenario
from tests.service.notify_receiver import NotifyReceiver

API_KEY = "AIzaSyE2E-secret-key-that-must-never-show-0123"


def edgectl(rig, *args, check=None):
    proc = subprocess.run([sys.executable, "-m", "edged.ctl", "--socket", str(rig.socket), *args],
                          capture_output=True, text=True, timeout=60)
    if check is not None:
        assert proc.returncode == check, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc


@pytest.fixture
async def served(tmp_path, models_dir):
    """A daemon with a notify socket (in another process), a watchdog, and an API key."""
    rx = NotifyReceiver(tmp_path / "notify.sock")
    rx.start()
    env = {"NOTIFY_SOCKET": rx.address, "WATCHDOG_USEC": "2000000", "GEMINI_API_KEY": API_KEY}
    rig = Rig(tmp_path / "rig", models_dir, scenario=Scenario([[{"tone": {"hz": 440, "ms": 300}}]]), env=env)
    await rig.start()
    try:
        yield rig, rx
    finally:
        await rig.close()
        rx.stop()


async def test_edgectl_commands_against_the_daemon(served):
    rig, _ = served
    await rig.emu.wait_connections(1, timeout=15)
    run = lambda *a, **k: asyncio.to_thread(edgectl, rig, *a, **k)  # noqa: E731

    p = await run("--json", "status", check=0)
    status = json.loads(p.stdout)
    assert status["state"] == "idle" and status["gpio"]["kitchen_light"]["kind"] == "led"
    p = await run("status", check=0)
    assert "idle" in p.stdout and "kitchen_light" in p.stdout

    # edgectl events: one JSON object a line, as things happen
    follower = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edged.ctl", "--socket", str(rig.socket), "events",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    # edgectl prints nothing when subscribed: set the light (each set is an event) until it shows one
    seen: list[dict] = []
    deadline = time.monotonic() + 30
    while not any(e.get("event") == "gpio" for e in seen):
        assert time.monotonic() < deadline and follower.returncode is None, seen
        await run("--json", "gpio", "set", "kitchen_light", "on", check=0)
        with contextlib.suppress(TimeoutError):
            while line := await asyncio.wait_for(follower.stdout.readline(), 0.5):
                seen.append(json.loads(line))
                if seen[-1].get("event") == "gpio":
                    break
    gpio_event = next(e for e in seen if e.get("event") == "gpio")
    assert gpio_event["name"] == "kitchen_light" and gpio_event["value"] in (True, 1)
    follower.terminate()
    await follower.wait()
    p = await run("--json", "gpio", "list", check=0)
    assert json.loads(p.stdout)["kitchen_light"]["value"] in (True, 1)
    p = await run("gpio", "set", "no_such_device", "on", check=1)
    assert "no_such_device" in p.stderr
    p = await run("gpio", "set", "talk", "on", check=1)  # an input cannot be set

    # config: get, set (validated, written atomically, applied), bad key and bad value change nothing
    p = await run("--json", "config", "get", "wake.threshold", check=0)
    assert json.loads(p.stdout)["value"] == 0.5
    await run("config", "set", "wake.threshold", "0.6", check=0)
    assert "threshold = 0.6" in rig.config_path.read_text()
    before = rig.config_path.read_text()
    p = await run("config", "set", "wake.threshold", "7", check=78)  # an invalid config: EX_CONFIG
    assert f"{rig.config_path}: wake.threshold: must be less than 1" in p.stderr
    p = await run("config", "set", "wake.nonsense", "1", check=78)
    assert "no such key" in p.stderr
    assert rig.config_path.read_text() == before
    p = await run("--json", "config", "show", check=0)
    assert json.loads(p.stdout)["config"]["wake"]["threshold"] == 0.6
    await run("config", "validate", str(rig.config_path), check=0)
    bad = rig.root / "bad.toml"
    bad.write_text("[wake]\nthreshold = 3\n")
    p = await run("config", "validate", str(bad), check=78)
    assert f"{bad}: wake.threshold" in p.stderr

    # a change to the live section reconnects (resuming the one session) and status keeps counting
    before = (await rig.status())["live"]
    conns = len(rig.emu.connections)
    await run("config", "set", "live.voice", "Kore", check=0)
    new_conn = (await rig.emu.wait_connections(conns + 1, timeout=15))[-1]
    assert new_conn.resumed and new_conn.setup is not None and "Kore" in json.dumps(new_conn.setup)
    after = (await rig.status())["live"]
    assert after["resumes"] >= before["resumes"] + 1 and after["fresh_starts"] >= before["fresh_starts"]

    # reload with a broken file is refused, the old config stays
    good = rig.config_path.read_text()
    rig.config_path.write_text(good.replace("threshold = 0.6", "threshold = 9"))
    p = await run("reload", check=1)
    assert "wake.threshold" in p.stderr
    assert (await rig.status())["wake"]["threshold"] == 0.6
    rig.config_path.write_text(good)
    await run("reload", check=0)

    # session reset forgets the persisted handle (before the turn below makes a new one)
    handle_file = rig.state_dir / HANDLE_FILE
    assert handle_file.exists()
    await run("session", "reset", check=0)
    assert not handle_file.exists()  # forgotten: the next connection starts a fresh session

    # snapshot, mute, wake
    out = rig.root / "snap.jpg"
    await run("snapshot", str(out), check=0)
    assert out.read_bytes()[:2] == b"\xff\xd8"
    await run("mute", "on", check=0)
    assert (await rig.status())["state"] == "muted"
    p = await run("wake", check=1)  # muted: refused, with the reason
    assert "muted" in p.stderr
    await run("mute", "off", check=0)
    await rig.wait_state("idle", "error", timeout=10)
    await run("wake", check=0)
    await rig.wait_state("listening", timeout=10)
    await rig.emu.wait_frames("activity_start", timeout=10)
    await rig.wait_state("idle", timeout=40)  # no speech: the turn ends by itself
    # usage errors and a daemon that is not there
    await run("gpio", check=2)
    proc = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "edged.ctl", "--socket",
                                   str(rig.root / "absent.sock"), "status"], capture_output=True, text=True)
    assert proc.returncode == 69 and "edged run" in proc.stderr + proc.stdout


async def test_notify_reload_stop_and_no_key_leak(served):
    rig, rx = served
    ready = await asyncio.to_thread(rx.wait_for, "READY", 30)
    assert ready.fields["READY"] == "1"
    statuses = [m for m in rx.messages() if "STATUS" in m]
    assert statuses and any("idle" in m.fields["STATUS"] for m in statuses)
    # the watchdog: WATCHDOG_USEC is 2 s, so a ping every ~1 s, never faster
    pings = await asyncio.to_thread(rx.wait_until, lambda ms: (p := [m for m in ms if "WATCHDOG" in m])[2:] and p,
                                    30)
    assert all(b.t - a.t >= 0.95 for a, b in zip(pings, pings[1:], strict=False)), [m.t for m in pings]
    # SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1
    rig.proc.send_signal(signal.SIGHUP)
    reloading = await asyncio.to_thread(rx.wait_for, "RELOADING", 15)
    assert int(reloading.fields["MONOTONIC_USEC"]) > 0
    after = await asyncio.to_thread(
        rx.wait_until, lambda ms: [m for m in ms if "READY" in m and m.t >= reloading.t], 15)
    assert after[0].fields["READY"] == "1"
    # SIGTERM: STOPPING=1 and a clean exit well within 5 s; the socket is removed
    t0 = time.monotonic()
    code = await rig.stop_daemon(signal.SIGTERM, timeout=10)
    took = time.monotonic() - t0
    assert code == 0
    assert any("STOPPING" in m for m in rx.messages())
    assert took < 5.0, f"stopping took {took:.1f} s"
    assert not rig.socket.exists()
    # the key: in no log line, no status, no artifact of the run
    for path in rig.root.rglob("*"):
        if path.is_file() and path.suffix not in (".wav",) and not path.is_fifo():
            assert API_KEY.encode() not in path.read_bytes(), path
    assert all(API_KEY not in m.raw for m in rx.messages())


async def test_control_socket_refuses_other_users_and_survives_junk(tmp_path, models_dir):
    shared = Path(tempfile.mkdtemp(prefix="edged-e2e-"))  # a directory everybody may reach
    os.chmod(shared, 0o755)
    rig = Rig(tmp_path / "rig", models_dir, overrides={"control": {"socket": str(shared / "control.sock")}})
    await rig.start()
    try:
        await _refused_and_fuzzed(rig)
    finally:
        await rig.close()
        shutil.rmtree(shared, ignore_errors=True)


async def _refused_and_fuzzed(rig):
    os.chmod(rig.socket, 0o666)  # the file mode would let nobody in: SO_PEERCRED must not
    # the server may answer and close before the request is even sent: a broken pipe is fine
    code = (f"import socket, contextlib; s=socket.socket(socket.AF_UNIX); s.connect({str(rig.socket)!r})\n"
            "with contextlib.suppress(BrokenPipeError): s.sendall(b'{\"cmd\": \"status\"}\\n')\n"
            "print(s.recv(65536).decode())")
    proc = await asyncio.to_thread(subprocess.run, ["/usr/bin/python3", "-c", code], user=65534, group=65534,
                                   extra_groups=[], cwd="/", capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["ok"] is False and answer["kind"] == "permission"

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=300), st.just(b"{" * 70000), st.just(b"x" * 70000 + b"\n"),
                     st.sampled_from([b"[]\n", b'{"cmd": 5}\n', b'{"cmd": "nope"}\n', b'{"cmd": "gpio.set"}\n',
                                      b'{"cmd": "gpio.set", "name": [1], "value": {}}\n', b"\xff\xfe\n"])))
    def junk(data):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(rig.socket))
            blank = not data.strip()  # blank lines are skipped: then a real request must still work
            # the server may answer (too large, malformed) and close before all is sent
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                s.sendall(data + b"\n" + (b'{"cmd": "status"}\n' if blank else b""))
            reply = b""
            with contextlib.suppress(ConnectionResetError):
                while not reply.endswith(b"\n") and (chunk := s.recv(65536)):
                    reply += chunk
            assert reply.endswith(b"\n"), f"no answer to {data[:80]!r}: {reply[:200]!r}"
            answer = json.loads(reply.splitlines()[0])
            if answer["ok"] and not blank:  # hypothesis may well find a real request
                assert isinstance(json.loads(next(ln for ln in data.splitlines() if ln.strip())), dict)
            else:
                assert answer["ok"] is blank, answer
                assert blank or answer["kind"] in ("usage", "not_found", "config", "failed"), answer

    await asyncio.to_thread(junk)
    st_ = await rig.status()
    assert st_["state"] in ("idle", "error") and rig.proc.returncode is None


def test_key_never_in_status_or_errors(tmp_path, monkeypatch):
    """A wrong key against the emulator: auth failure reported, the key nowhere."""
    from edged.sim.live_server import LiveEmulatorThread

    with LiveEmulatorThread(api_key="the-right-key", cert_dir=tmp_path / "certs") as emu:
        cfg = tmp_path / "c.toml"
        cfg.write_text(tomli_w.dumps({
            "live": {"base_url": emu.base_url, "ca_file": str(emu.ca_file), "auth_retry_s": 1.0},
            "audio": {"capture_device": "nonexistent_mic", "playback_device": "nonexistent_speaker"},
            "wake": {"models_dir": str(tmp_path / "no-models")},
            "state": {"dir": str(tmp_path / "state")}, "control": {"socket": str(tmp_path / "c.sock")}}))
        env = {**os.environ, "GEMINI_API_KEY": API_KEY}
        env.pop("NOTIFY_SOCKET", None)
        proc = subprocess.Popen([sys.executable, "-m", "edged", "run", "--config", str(cfg)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            status = {}
            while time.monotonic() < deadline:
                p = subprocess.run([sys.executable, "-m", "edged.ctl", "--socket", str(tmp_path / "c.sock"),
                                    "--json", "status"], capture_output=True, text=True)
                if p.returncode == 0:
                    status = json.loads(p.stdout)
                    if status["live"].get("auth_failures", 0) >= 1:
                        break
                time.sleep(0.3)
            assert status["live"]["auth_failures"] >= 1
            assert status["state"] == "error"  # and the daemon is still up, saying what is wrong
            assert {"capture", "wake", "live"} <= set(status["problems"])
            assert API_KEY not in json.dumps(status)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0
        assert API_KEY.encode() not in out
        assert b"auth" in out.lower()
