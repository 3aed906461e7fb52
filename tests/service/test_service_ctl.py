"""edgectl against the real daemon (tests/conftest.py's ``daemon``), and its rendering."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import tomllib

import pytest
import tomli_w

from edged import ctl
from tests.waiting import status_until


def run(capsys, *argv):
    code = ctl.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


STATUS = {  # a status as the daemon sends it (fields abridged), to check the table rendering
    "state": "idle",
    "uptime_s": 3725.4,
    "live": {"connected": True, "session_id": "sess-42", "handle_age_s": 61.0, "last_close_code": 1000,
             "reconnects": 2},
    "wake": {"models": ["hey_jarvis"], "detections": 7, "last_score": 0.93},
    "audio": {"capture": {"device": "mic", "drops": 0}, "playback": {"device": "spk", "underruns": 1}},
    "gpio": {"kitchen_light": {"kind": "led", "value": True, "room": "kitchen", "ok": True, "error": None},
             "door": {"kind": "button", "value": False, "room": "hall", "ok": False, "error": "pin 4 in use"}},
    "last_error": None,
}


def sock(daemon) -> list[str]:
    return ["--socket", str(daemon.rig.socket)]


def test_status_json(daemon, capsys):
    code, out, _ = run(capsys, *sock(daemon), "--json", "status")
    assert code == 0
    status = json.loads(out)
    assert status["state"] == "idle" and status["pid"] == daemon.rig.proc.pid
    assert set(status) == set(daemon.client.request("status"))
    ear = status["wake"]["ear"]  # the wake word's scored and rested frames (wake.quiet_margin_db)
    assert isinstance(ear["wake_frames_scored"], int) and isinstance(ear["wake_quiet_skipped"], int)


SUMMARY_MAX = 16  # lines before the GPIO table: about 20 with it, like `systemctl status`


def test_status_summary_of_the_daemon(daemon, capsys):
    # the daemon is shared: after another file's session.reset the new session is connecting, and has
    # no resumption handle until its first turn (the emulator sends one after a turn)
    daemon.call(status_until(daemon.rig, lambda st: st["live"]["connected"], "a connected session"))
    code, out, _ = run(capsys, *sock(daemon), "status")
    assert code == 0
    status = daemon.client.request("status")
    lines = out.splitlines()
    head, gpio = lines[:lines.index("GPIO:")], lines[lines.index("GPIO:") + 1:]
    assert len(head) <= SUMMARY_MAX and len(gpio) == 1 + len(status["gpio"])
    assert re.match(r"edged: idle( \(.+\))? for \d", lines[0]) and "\x1b" not in out  # no colour, no dot: not a TTY
    rows = {ln.split(":", 1)[0].strip(): ln.split(":", 1)[1].strip() for ln in head[1:] if ":" in ln}
    live = status["live"]
    handle = ", handle " if live.get("handle_age_s") is not None else ""
    assert rows["Live"].startswith(f"connected, {live['model']}, session {live['session_id']} (fresh){handle}")
    assert rows["Wake word"].startswith("hey_jarvis, threshold 0.5, ")
    assert rows["Microphone"].startswith("mic: running") and rows["Speaker"].startswith("speaker: running")
    assert rows["Config"] == str(daemon.rig.config_path)
    assert rows["Problems"].startswith("none")
    assert f"pid {daemon.rig.proc.pid}" in rows["Version"]
    assert gpio[0].split() == ["ID", "NAME", "KIND", "VALUE", "ROOM"]
    assert ["kitchen_light", "kitchen_light", "led", "off", "kitchen"] in [ln.split() for ln in gpio]


def test_status_verbose_of_the_daemon(daemon, capsys):
    code, out, _ = run(capsys, *sock(daemon), "status", "--verbose")
    assert code == 0
    status = daemon.client.request("status")
    lines = out.splitlines()
    assert len(lines) > 60  # every counter
    for section in ("live", "wake", "audio", "conversation", "camera"):
        assert f"{section}:" in lines
    for counter in ("fresh starts", "ring drops", "frames written", "underruns", "barge ins"):
        assert any(ln.strip().split("  ")[0] == counter for ln in lines), counter
    raw = [ln for ln in lines if re.match(r"^\s*-\s", ln) or re.search(r"\d[eE][+-]\d", ln)]
    assert raw == []  # no raw list dumps such as "first writes: - - 1 - 1.56e+03", no exponents
    assert f"frames written  {status['audio']['playback']['frames_written']}" in out


def test_status_summary_rendering():
    text = ctl.ctl_status.summary({**STATUS, "volume": {"level": 40}, "timers": {"timers": [
        {"id": "t1", "kind": "timer", "label": "pasta", "remaining_s": 300}]},
        "problems": {"live": "auth_failed: the key was refused"}, "why": "live: auth_failed"})
    lines = text.splitlines()
    assert lines[0] == "edged: idle (live: auth_failed)"
    rows = {ln.split(":", 1)[0].strip(): ln.split(":", 1)[1].strip() for ln in lines[1:lines.index("GPIO:")] if ln}
    assert rows["Volume"] == "40%"
    assert rows["Timers"] == "timer 'pasta' in 5m00s"
    assert rows["MQTT"] == "-"  # absent from this status: shown as "-"
    assert rows["Problem"] == "live: auth_failed: the key was refused"
    assert rows["Fix"] == "check the API key (`edgectl doctor`), then `edgectl reload`"
    assert rows["Live"] == "session sess-42 (fresh), handle 1m01s old"
    assert lines[-1].split() == ["door", "door", "button", "off", "hall", "FAILED:", "pin", "4", "in", "use"]
    assert rows["Wake word"] == "hey_jarvis, 7 detections, last 0.93 (?)"
    resting = {**STATUS, "wake": {**STATUS["wake"], "ear": {"wake_frames_scored": 250, "wake_quiet_skipped": 750}}}
    rows = {ln.split(":", 1)[0].strip(): ln.split(":", 1)[1].strip() for ln in ctl.ctl_status.summary(resting).splitlines()
            if ":" in ln}
    assert rows["Wake word"] == "hey_jarvis, 7 detections, last 0.93 (?), models resting 75% (quiet room)"
    coloured = ctl.ctl_status.summary(STATUS, colour=True).splitlines()[0]
    assert coloured.startswith("\x1b[32m\u25cf\x1b[0m edged: idle")


def test_status_verbose_rendering():
    lines = ctl.render_status({**STATUS, "audio": {"playback": {"first_writes": [[0.1, 1560.0], [2, 3]],
                                                                "underruns": 1}}}).splitlines()
    assert lines[0].split() == ["state", "idle"]
    assert lines[1].split() == ["uptime", "1h02m05s"]
    assert "live:" in lines
    assert any(line.split() == ["session", "id", "sess-42"] for line in lines)
    assert any(line.split() == ["last", "close", "code", "1000"] for line in lines)
    assert any(line.split() == ["handle", "age", "1m01s"] for line in lines)
    assert any(line.split() == ["last", "score", "0.93"] for line in lines)
    assert any(line.split() == ["models", "hey_jarvis"] for line in lines)
    assert any(line.split() == ["last", "error", "-"] for line in lines)
    assert "    first writes  (0.1, 1560), (2, 3)" in lines  # a list of pairs on one line, no exponent
    assert "    underruns     1" in lines  # nesting shows as indentation
    assert lines[-3:] == ["  ID             NAME           KIND    VALUE  ROOM",
                          "  kitchen_light  kitchen_light  led     on     kitchen",
                          "  door           door           button  off    hall     FAILED: pin 4 in use"]


@pytest.mark.parametrize("argv", [["--json", "status"], ["status", "--json"], ["status", "--socket", "S", "--json"],
                                  ["--socket", "S", "--json", "status"], ["--json", "--socket", "S", "status"]])
def test_global_options_anywhere(daemon, capsys, argv):
    argv = [str(daemon.rig.socket) if a == "S" else a for a in argv]
    if "--socket" not in argv:
        argv = [*argv, "--socket", str(daemon.rig.socket)]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert json.loads(out)["pid"] == daemon.rig.proc.pid


def test_global_options_in_nested_commands():
    args = ctl.parse_args(["--socket", "/a", "config", "get", "wake.threshold", "--json", "--timeout", "5"])
    assert (args.socket, args.json, args.timeout, args.key) == ("/a", True, 5.0, "wake.threshold")
    args = ctl.parse_args(["gpio", "list", "--verbose"])
    assert (args.socket, args.json, args.verbose) == (None, False, True)  # defaults kept from the top level
    args = ctl.parse_args(["say", "--", "-5", "degrees", "--json"])  # dashes after -- are words
    assert (args.text, args.json) == (["-5", "degrees", "--json"], False)


def test_config_commands(daemon, capsys):
    path = str(daemon.rig.config_path)
    code, out, err = run(capsys, *sock(daemon), "--json", "config", "get", "wake.threshold")
    assert code == 0, err
    assert json.loads(out) == {"key": "wake.threshold", "value": 0.5}
    code, out, _ = run(capsys, *sock(daemon), "config", "get", "wake.threshold")
    assert out.splitlines() == ["key    wake.threshold", "value  0.5"]
    code, out, _ = run(capsys, *sock(daemon), "--json", "config", "show")
    shown = json.loads(out)
    assert shown["path"] == path and shown["config"]["wake"]["threshold"] == 0.5
    code, out, _ = run(capsys, *sock(daemon), "--json", "reload")
    assert code == 0 and json.loads(out) == {"path": path, "state": "idle"}


def test_gpio_mute_and_session_commands(daemon, capsys):
    try:
        code, out, err = run(capsys, *sock(daemon), "--json", "gpio", "set", "kitchen_light", "on")
        assert code == 0, err
        assert json.loads(out)["value"] is True
        code, out, _ = run(capsys, *sock(daemon), "--json", "gpio", "list")
        assert json.loads(out)["kitchen_light"]["value"] is True
        code, out, _ = run(capsys, *sock(daemon), "--json", "mute", "on")
        assert (code, json.loads(out)) == (0, {"muted": True})
        assert daemon.client.request("status")["state"] == "muted"
        code, out, _ = run(capsys, *sock(daemon), "--json", "mute")  # no argument: toggle
        assert (code, json.loads(out)) == (0, {"muted": False})
        code, out, _ = run(capsys, *sock(daemon), "mute", "off")
        assert (code, out.strip()) == (0, "muted  no")
        code, out, _ = run(capsys, *sock(daemon), "--json", "session", "reset")
        assert (code, json.loads(out)) == (0, {"reset": True})
    finally:
        daemon.client.call("mute", on=False)
        daemon.client.call("gpio.set", name="kitchen_light", value=False)
    daemon.call(daemon.rig.wait_state("idle", timeout=10))


def test_say_and_wake_reach_the_model(daemon, capsys):
    rig = daemon.rig
    code, out, err = run(capsys, *sock(daemon), "--json", "say", "turn", "on", "the", "light")
    assert code == 0, err
    assert set(json.loads(out)) == {"state"}
    said = lambda: [f for f in (*rig.emu.frames_of("client_content"), *rig.emu.frames_of("text"))  # noqa: E731
                    if "turn on the light" in json.dumps(f.data)]
    assert daemon.call(rig.emu.wait_for(said, timeout=15))
    daemon.call(rig.wait_state("idle", timeout=30))
    starts = len(rig.emu.frames_of("activity_start"))
    code, out, err = run(capsys, *sock(daemon), "--json", "wake")
    assert code == 0, err
    assert set(json.loads(out)) == {"state"}  # the state when asked: the turn opens at the next frame
    daemon.call(rig.wait_state("listening", timeout=10))
    daemon.call(rig.emu.wait_frames("activity_start", n=starts + 1, timeout=15))
    daemon.call(rig.wait_state("idle", timeout=40))  # no speech: the turn ends by itself


def test_daemon_error_exit_1(daemon, capsys):
    code, _, err = run(capsys, *sock(daemon), "gpio", "set", "toaster", "on")
    assert code == 1
    assert err.strip() == "edgectl: gpio: no GPIO device named 'toaster' (gpio list shows them) (not_found)"


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["config"], ["gpio", "set", "x"], ["mute", "maybe"],
                                  ["say"]])
def test_usage_exit_2(tmp_path, capsys, argv):
    # no socket there: a usage error is found before edgectl connects (else it would exit 69)
    code, _, err = run(capsys, "--socket", str(tmp_path / "none.sock"), *argv)
    assert code == 2
    assert "usage: edgectl" in err


def test_daemon_not_running_exit_69(tmp_path, capsys):
    code, _, err = run(capsys, "--socket", str(tmp_path / "none.sock"), "status")
    assert code == 69
    assert "edged is not running" in err and "systemctl start edged" in err and "edged run --config" in err


def test_socket_from_config(daemon, tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "edged.toml"
    cfg.write_text(f'[control]\nsocket = "{daemon.rig.socket}"\n')
    monkeypatch.setenv("EDGED_CONFIG", str(cfg))
    code, out, _ = run(capsys, "--json", "status")
    assert code == 0 and json.loads(out)["pid"] == daemon.rig.proc.pid
    monkeypatch.delenv("EDGED_CONFIG")
    code, out, _ = run(capsys, "--config", str(cfg), "--json", "gpio", "list")
    assert code == 0 and "kitchen_light" in json.loads(out)


def test_snapshot_writes_file(daemon, tmp_path, capsys, monkeypatch):
    from PIL import Image

    target = tmp_path / "pic.jpg"
    code, out, err = run(capsys, *sock(daemon), "snapshot", str(target))
    assert code == 0, err
    jpeg = target.read_bytes()
    assert out.strip() == f"{target} ({len(jpeg)} bytes)"
    with Image.open(target) as im:
        assert im.format == "JPEG" and max(im.size) == 640  # camera.max_side of the rig
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, *sock(daemon), "--json", "snapshot")
    assert code == 0
    [default] = list(tmp_path.glob("snapshot-*.jpg"))
    assert default.read_bytes()[:2] == b"\xff\xd8"
    assert json.loads(out) == {"file": default.name, "bytes": default.stat().st_size}


def test_validate_without_daemon(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text("[wake]\nthreshold = 0.6\n")
    bad = tmp_path / "bad.toml"
    bad.write_text("[wake]\nthreshold = 2\n[bogus]\n")
    code, out, _ = run(capsys, "--socket", str(tmp_path / "none.sock"), "config", "validate", str(good))
    assert code == 0 and out.strip() == f"{good}: ok"
    code, _, err = run(capsys, "config", "validate", str(bad))
    assert code == 78
    assert f"{bad}: wake.threshold:" in err and f"{bad}: bogus: unknown key" in err
    code, out, _ = run(capsys, "--json", "config", "validate", str(bad))
    assert code == 78 and json.loads(out)["valid"] is False


def test_events_printed_as_they_come(daemon):
    # a real edgectl process against the real daemon: it prints and flushes each event at once
    proc = subprocess.Popen([sys.executable, "-m", "edged.ctl", *sock(daemon), "events"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the subscription is acknowledged before edgectl prints anything: set the light until
        # edgectl shows a change (each set is an event; the first may come before it subscribed)
        seen: list[dict] = []
        reader = threading.Thread(target=lambda: seen.extend(json.loads(ln) for ln in iter(proc.stdout.readline, "")),
                                  daemon=True)
        reader.start()
        deadline = time.monotonic() + 30
        value = True
        while not any(e.get("event") == "gpio" for e in seen):
            assert time.monotonic() < deadline and proc.poll() is None, (seen, proc.poll())
            daemon.client.request("gpio.set", name="kitchen_light", value=value)
            value = not value
            reader.join(0.2)
        ev = next(e for e in seen if e.get("event") == "gpio")
        assert ev["name"] == "kitchen_light" and ev["by"] == "edgectl" and proc.poll() is None
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        daemon.client.call("gpio.set", name="kitchen_light", value=False)


def test_events_end_at_eof(server):
    """When the daemon closes the stream (it stops), edgectl events exits 0."""
    proc = subprocess.Popen([sys.executable, "-m", "edged.ctl", "--socket", str(server.path), "events"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.wait_for(lambda: server.hub.subscribers == 1, timeout=30)
        server.publish({"event": "state", "state": "speaking"})
        first = json.loads(proc.stdout.readline())  # arrives while edgectl still runs: flushed
        assert first["event"] == "state" and first["state"] == "speaking"
        threading.Thread(target=lambda: server.call(server.server.stop()), daemon=True).start()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_render_lists_of_dicts():
    text = "\n".join(ctl.render({"devices": [{"name": "a", "on": True}, {"name": "b", "on": False}]}))
    assert text.splitlines() == ["devices:", "  - name  a", "    on    yes", "  - name  b", "    on    no"]


@pytest.mark.parametrize("argv,request_", [
    (["volume"], {"cmd": "volume"}), (["volume", "40"], {"cmd": "volume", "level": 40}),
    (["volume", "up"], {"cmd": "volume", "step": "up"}), (["volume", "down"], {"cmd": "volume", "step": "down"}),
    (["timers"], {"cmd": "timers.list"}), (["timers", "list"], {"cmd": "timers.list"}),
    (["timers", "cancel", "t1"], {"cmd": "timers.cancel", "id": "t1"}), (["timers", "stop"], {"cmd": "timers.stop"})])
def test_volume_and_timers_requests(server, capsys, argv, request_):
    # the protocol-only server records each request and knows neither command: edgectl says so clearly
    code, out, err = run(capsys, "--socket", str(server.path), *argv)
    assert server.handler.calls[-1] == request_
    assert code == 1 and out == ""
    assert err.strip() == (f"edgectl: {argv[0]}: the running edged does not have `{request_['cmd']}` (it is older "
                           "than this edgectl): update edged and restart it")


@pytest.mark.parametrize("argv", [["volume", "101"], ["volume", "loud"], ["volume", "-5"], ["timers", "cancel"]])
def test_volume_and_timers_usage(tmp_path, capsys, argv):
    code, _, err = run(capsys, "--socket", str(tmp_path / "none.sock"), *argv)
    assert code == 2 and "usage: edgectl" in err


def test_volume_on_the_daemon(daemon, capsys):
    code, _, err = run(capsys, *sock(daemon), "volume", "up")
    if code == 0:  # the daemon has the command (issue 12): it answers the new level
        assert "level" in daemon.client.request("volume")
    else:
        assert (code, err.strip()) == (1, "edgectl: volume: the running edged does not have `volume` (it is older "
                                          "than this edgectl): update edged and restart it")


def test_timers_rendering():
    text = ctl._timers_text({"timers": [{"id": "t1", "kind": "timer", "label": "pasta", "remaining_s": 61},
                                        {"id": "a12", "kind": "alarm", "due": "07:30", "ringing": True}]})
    assert text.splitlines() == ["t1   timer 'pasta' in 1m01s", "a12  alarm 07:30 (ringing)"]
    assert ctl._timers_text([]) == "no timers or alarms"


def test_gpio_list_shows_id_and_friendly_name(daemon, capsys):
    rig = daemon.rig
    original = rig.config_path.read_text()
    data = tomllib.loads(original)
    for dev in data["gpio"]["devices"]:
        if dev["name"] == "kitchen_light":
            dev["name"] = "Kitchen light"  # its id stays kitchen_light
    try:
        rig.config_path.write_text(tomli_w.dumps(data))
        daemon.client.request("reload")
        code, out, _ = run(capsys, *sock(daemon), "gpio", "list")
        assert code == 0
        rows = [re.split(r"\s{2,}", ln.strip()) for ln in out.splitlines()]  # columns: 2+ spaces apart
        assert rows[0] == ["ID", "NAME", "KIND", "VALUE", "ROOM"]
        assert ["kitchen_light", "Kitchen light", "led", "off", "kitchen"] in rows
        code, out, err = run(capsys, *sock(daemon), "--json", "gpio", "set", "Kitchen light", "on")  # by its name
        assert code == 0, err
        assert json.loads(out)["value"] is True
        assert daemon.client.request("gpio.list")["kitchen_light"]["value"] is True
    finally:
        daemon.client.call("gpio.set", name="kitchen_light", value=False)
        rig.config_path.write_text(original)
        daemon.client.request("reload")


def test_edgectl_talks_to_the_daemon_without_importing_asyncio_or_pydantic(daemon):
    """What a slow board pays on every edgectl command, measured in the VM bench's guest: asyncio (the
    control client's other face) was 130 of edgectl's 200 ms of imports, and finding the socket by
    loading the whole config (pydantic) 0.7 s more.  In a fresh process, the socket found from the
    config file (no --socket): `edgectl --json status` and `gpio list` answer, and neither is imported."""
    code = (
        "import json, sys\n"
        "from edged.ctl import main\n"
        f"argv = ['--config', {str(daemon.rig.config_path)!r}, '--json']\n"
        "codes = [main(argv + ['status']), main(argv + ['gpio', 'list'])]\n"
        "sys.stderr.write(json.dumps({'codes': codes, 'heavy': [m for m in ('asyncio', 'pydantic') "
        "if m in sys.modules]}))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    seen = json.loads(p.stderr.strip().splitlines()[-1])
    assert seen["codes"] == [0, 0], p.stdout[-1000:]
    assert '"state"' in p.stdout
    assert seen["heavy"] == []
