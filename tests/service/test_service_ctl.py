"""edgectl against a real ControlServer socket with a fake daemon handler."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from edged import ctl
from tests.service.conftest import STATUS, tiny_jpeg


def run(capsys, *argv):
    code = ctl.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_status_json(server, capsys):
    code, out, _ = run(capsys, "--socket", str(server.path), "--json", "status")
    assert code == 0
    assert json.loads(out) == STATUS


def test_status_table_renders_nested_dict(server, capsys):
    code, out, _ = run(capsys, "--socket", str(server.path), "status")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["state", "idle"]
    assert lines[1].split() == ["uptime", "1h02m05s"]
    assert "live:" in lines
    assert any(line.split() == ["session", "id", "sess-42"] for line in lines)
    assert any(line.split() == ["last", "close", "code", "1000"] for line in lines)
    assert any(line.split() == ["handle", "age", "1m01s"] for line in lines)
    assert any(line.split() == ["last", "score", "0.93"] for line in lines)
    assert any(line.split() == ["underruns", "1"] for line in lines)
    assert any(line.split() == ["models", "hey_jarvis"] for line in lines)
    assert any(line.split() == ["last", "error", "-"] for line in lines)
    # nesting shows as indentation
    assert "    underruns  1" in out or any(ln.startswith("    ") and "underruns" in ln for ln in lines)


@pytest.mark.parametrize(("argv", "expect"), [
    (["config", "get", "wake.threshold"], {"cmd": "config.get", "key": "wake.threshold"}),
    (["config", "set", "wake.threshold", "0.6"], {"cmd": "config.set", "key": "wake.threshold", "value": "0.6"}),
    (["config", "show"], {"cmd": "config.show"}),
    (["reload"], {"cmd": "reload"}),
    (["gpio", "list"], {"cmd": "gpio.list"}),
    (["gpio", "set", "kitchen_light", "on"], {"cmd": "gpio.set", "name": "kitchen_light", "value": True}),
    (["gpio", "set", "kitchen_light", "0.25"], {"cmd": "gpio.set", "name": "kitchen_light", "value": 0.25}),
    (["wake"], {"cmd": "wake"}),
    (["say", "turn", "on", "the", "light"], {"cmd": "say", "text": "turn on the light"}),
    (["session", "reset"], {"cmd": "session.reset"}),
    (["mute"], {"cmd": "mute", "on": None}),
    (["mute", "on"], {"cmd": "mute", "on": True}),
    (["mute", "off"], {"cmd": "mute", "on": False}),
])
def test_commands_send_the_documented_request(server, capsys, argv, expect):
    code, _, err = run(capsys, "--socket", str(server.path), *argv)
    assert code == 0, err
    assert server.handler.calls[-1] == expect


def test_json_output_parses(server, capsys):
    code, out, _ = run(capsys, "--socket", str(server.path), "--json", "gpio", "list")
    assert code == 0 and json.loads(out) == STATUS["gpio"]
    code, out, _ = run(capsys, "--socket", str(server.path), "--json", "mute", "on")
    assert code == 0 and json.loads(out) == {"muted": True}


def test_daemon_error_exit_1(server, capsys):
    code, out, err = run(capsys, "--socket", str(server.path), "config", "set", "wake.threshold", "2")
    assert code == 1
    assert err.strip() == ("edgectl: config: /etc/edged/edged.toml: wake.threshold: must be less than 1 (config)")
    code, _, err = run(capsys, "--socket", str(server.path), "gpio", "set", "toaster", "on")
    assert code == 1 and "no GPIO device named 'toaster' (not_found)" in err


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["config"], ["gpio", "set", "x"], ["mute", "maybe"],
                                  ["say"]])
def test_usage_exit_2(server, capsys, argv):
    code, _, err = run(capsys, "--socket", str(server.path), *argv)
    assert code == 2
    assert "usage: edgectl" in err
    assert server.handler.calls == []


def test_daemon_not_running_exit_69(tmp_path, capsys):
    code, _, err = run(capsys, "--socket", str(tmp_path / "none.sock"), "status")
    assert code == 69
    assert "edged is not running" in err and "systemctl start edged" in err and "edged run --config" in err


def test_socket_from_config(server, tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "edged.toml"
    cfg.write_text(f'[control]\nsocket = "{server.path}"\n')
    monkeypatch.setenv("EDGED_CONFIG", str(cfg))
    code, out, _ = run(capsys, "--json", "status")
    assert code == 0 and json.loads(out)["state"] == "idle"
    monkeypatch.delenv("EDGED_CONFIG")
    code, out, _ = run(capsys, "--config", str(cfg), "wake")
    assert code == 0 and out.strip() == "ok"


def test_snapshot_writes_file(server, tmp_path, capsys, monkeypatch):
    target = tmp_path / "pic.jpg"
    code, out, _ = run(capsys, "--socket", str(server.path), "snapshot", str(target))
    assert code == 0
    assert target.read_bytes() == tiny_jpeg()
    assert out.strip() == f"{target} ({len(tiny_jpeg())} bytes)"
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "--socket", str(server.path), "snapshot")
    assert code == 0
    [default] = list(tmp_path.glob("snapshot-*.jpg"))
    assert default.read_bytes()[:2] == b"\xff\xd8"


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


def test_events_streams_until_eof(server, tmp_path):
    # a real edgectl process: it must print and flush each event as it comes
    proc = subprocess.Popen([sys.executable, "-m", "edged.ctl", "--socket", str(server.path), "events"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while server.hub.subscribers == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.hub.subscribers == 1
        server.publish({"event": "state", "state": "speaking"})
        first = json.loads(proc.stdout.readline())  # arrives while edgectl still runs: flushed
        assert first["event"] == "state" and first["state"] == "speaking"
        server.publish({"event": "wake", "model": "hey_jarvis", "score": 0.97})
        second = json.loads(proc.stdout.readline())
        assert second["score"] == 0.97
        # stopping the server closes the stream: EOF ends edgectl
        threading.Thread(target=lambda: server.call(server.server.stop()), daemon=True).start()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_render_lists_of_dicts():
    text = "\n".join(ctl.render({"devices": [{"name": "a", "on": True}, {"name": "b", "on": False}]}))
    assert text.splitlines() == ["devices:", "  - name  a", "    on    yes", "  - name  b", "    on    no"]
