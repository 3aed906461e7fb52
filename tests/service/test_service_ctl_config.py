"""``edgectl config set`` and ``config validate``, done by edgectl in the caller's name.

Against the real daemon (tests/conftest.py's ``daemon``): the file the daemon runs with is written
by edgectl, keeping its mode and owner, before the daemon is asked to reload. As real users
(created with useradd): a caller who may not write the file gets "permission denied" naming it and
the file stays as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged import config, ctl, ctl_config
from tests.service.realusers import run_admin


def run(capsys, *argv):
    code = ctl.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def sock(daemon) -> list[str]:
    return ["--socket", str(daemon.rig.socket)]


@contextlib.contextmanager
def owned_by(path: Path, uid: int, gid: int, mode: int) -> Iterator[None]:
    st = path.stat()
    os.chown(path, uid, gid)
    path.chmod(mode)
    try:
        yield
    finally:
        os.chown(path, st.st_uid, st.st_gid)
        path.chmod(st.st_mode & 0o7777)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving the file another owner needs root")
def test_set_saves_keeping_mode_and_owner_then_reloads(daemon, capsys):
    path = daemon.rig.config_path
    before = tomllib.loads(path.read_text())
    with owned_by(path, 65534, 65534, 0o640):
        try:
            code, out, err = run(capsys, *sock(daemon), "--json", "config", "set", "wake.threshold", "0.6")
            assert code == 0, err
            assert json.loads(out) == {"key": "wake.threshold", "value": 0.6, "written": str(path), "reloaded": True}
            st = path.stat()
            assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (65534, 65534, 0o640)
            after = tomllib.loads(path.read_text())
            assert after["wake"]["threshold"] == 0.6
            assert after.keys() == before.keys()  # the file's own keys, not every default
            assert {k: v for k, v in after["wake"].items() if k != "threshold"} == \
                {k: v for k, v in before["wake"].items() if k != "threshold"}
            # the daemon re-read the file when asked to reload: it was saved first
            assert daemon.client.request("status")["wake"]["threshold"] == 0.6
            assert not list(path.parent.glob(f".{path.name}.*"))  # no temp file left
            code, out, _ = run(capsys, *sock(daemon), "config", "set", "wake.threshold", "0.5")
            assert (code, out.strip()) == (0, f"{path}: wake.threshold = 0.5")
            assert daemon.client.request("status")["wake"]["threshold"] == 0.5
        finally:
            daemon.call(daemon.rig.config_set("wake.threshold", "0.5"))


@pytest.mark.parametrize("key,value", [("live.base_url", "https://some.host"), ("live.ca_file", "/tmp/ca.pem"),
                                       ("live.api_key_file", "/tmp/key"), ("live.api_version", "v1"),
                                       ("state.dir", "/tmp"), ("control.socket", "/tmp/s.sock")])
def test_set_refuses_keys_never_set_over_the_socket(daemon, capsys, key, value):
    path = daemon.rig.config_path
    text = path.read_bytes()
    code, _, err = run(capsys, *sock(daemon), "config", "set", key, value)
    assert code == 78
    assert err.startswith(f"edgectl: {path}: {key}: ") and "root" in err
    assert path.read_bytes() == text


def test_edgectl_refuses_what_the_socket_refuses():
    # edgectl's config set is no way around the socket's rule: endpoint, secret, state and control keys
    for key in ("live.base_url", "live.ca_file", "live.api_key_file", "live.api_version", "state.dir",
                "control.group", "mqtt.host"):
        with pytest.raises(config.ConfigError) as info:
            ctl_config.check_settable(key, "x", "/etc/edged/edged.toml")
        assert str(info.value).startswith(f"/etc/edged/edged.toml: {key}: ")
    with pytest.raises(config.ConfigError, match="refused over the control socket"):
        ctl_config.check_settable("audio.playback_device", "file:'|touch /tmp/x',raw", "/etc/edged/edged.toml")
    ctl_config.check_settable("wake.threshold", 0.6, "/etc/edged/edged.toml")  # allowed: no error


@pytest.mark.parametrize("key,value,reason", [("wake.threshold", "2", "must be less than 1"),
                                              ("wake.bogus", "1", "no such key"),
                                              ("wake.models", '["hey_jarviss"]', "did you mean 'hey_jarvis'")])
def test_set_invalid_changes_nothing(daemon, capsys, key, value, reason):
    path = daemon.rig.config_path
    text = path.read_bytes()
    code, _, err = run(capsys, *sock(daemon), "config", "set", key, value)
    assert code == 78
    assert err.startswith(f"edgectl: {path}: {key}") and reason in err
    assert path.read_bytes() == text
    assert daemon.client.request("status")["wake"]["threshold"] == 0.5


def test_set_without_daemon_writes_the_file(tmp_path, capsys):
    cfg = tmp_path / "edged.toml"
    cfg.write_text("# mine\n[wake]\nthreshold = 0.5\n")
    cfg.chmod(0o600)
    code, out, err = run(capsys, "--socket", str(tmp_path / "none.sock"), "--config", str(cfg),
                         "config", "set", "turn.follow_up_s", "4")
    assert code == 0, err
    assert out.splitlines() == [f"{cfg}: turn.follow_up_s = 4.0",
                                "edged is not running: the new value applies when it starts"]
    assert tomllib.loads(cfg.read_text()) == {"wake": {"threshold": 0.5}, "turn": {"follow_up_s": 4.0}}
    assert cfg.read_text().startswith("# mine\n[wake]\n")  # the file's comments stay
    assert cfg.stat().st_mode & 0o7777 == 0o600


@pytest.mark.parametrize("key,value,line", [
    ("wake.threshold", 0.6, "threshold = 0.6              # 0 < threshold < 1"),
    ("wake.models", ["alexa", "hey_jarvis"], 'models = ["alexa", "hey_jarvis"]      # hey_jarvis, alexa, hey_mycroft, '
                                             'hey_rhasspy, or paths to custom .onnx models'),
    ("cues.ring.enabled", False, "enabled = false"),
    ("live.voice", "Kore", 'voice = "Kore"')])
def test_set_changes_one_line_of_a_commented_file(key, value, line):
    example = (Path(__file__).resolve().parents[2] / "config" / "edged.toml").read_text()
    raw = tomllib.loads(example)
    expected = ctl_config.with_key(raw, key, value)
    out = ctl_config.edit_text(example, key, value, expected)
    assert tomllib.loads(out) == expected
    changed = [(a, b) for a, b in zip(example.splitlines(), out.splitlines(), strict=True) if a != b]
    assert len(changed) == 1 and changed[0][1] == line


def test_set_adds_a_key_or_a_section():
    text = "# mine\n[wake]\nthreshold = 0.5\n\n[turn]\nvad = \"webrtc\"\n"
    raw = tomllib.loads(text)
    out = ctl_config.edit_text(text, "wake.refractory_s", 3.0, ctl_config.with_key(raw, "wake.refractory_s", 3.0))
    assert out == "# mine\n[wake]\nthreshold = 0.5\nrefractory_s = 3.0\n\n[turn]\nvad = \"webrtc\"\n"
    out = ctl_config.edit_text(text, "log.level", "debug", ctl_config.with_key(raw, "log.level", "debug"))
    assert out == text + '\n[log]\nlevel = "debug"\n'
    dotted = 'wake.threshold = 0.5\n'  # a layout the line edit does not handle: the file is written anew
    out = ctl_config.edit_text(dotted, "wake.threshold", 0.7, {"wake": {"threshold": 0.7}})
    assert tomllib.loads(out) == {"wake": {"threshold": 0.7}}


def test_write_atomic_keeps_mode_and_owner(tmp_path):
    f = tmp_path / "edged.toml"
    config.write_atomic(f, "a = 1\n")
    assert f.stat().st_mode & 0o7777 == 0o644  # a new file
    f.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(f, 65534, 65534)
    config.write_atomic(f, "a = 2\n")
    st = f.stat()
    assert f.read_text() == "a = 2\n" and st.st_mode & 0o7777 == 0o640
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (65534, 65534)
    config.write_atomic(f, "a = 3\n", mode=0o600)  # an explicit mode still wins (the state files)
    assert f.stat().st_mode & 0o7777 == 0o600


# -- as a real user -------------------------------------------------------------------------------
@pytest.fixture
def user() -> Iterator[tuple[str, int, int]]:
    if os.geteuid() != 0 or not shutil.which("useradd"):
        pytest.skip("needs root and useradd")
    name = "ectl" + secrets.token_hex(4)
    run_admin(["useradd", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name])
    try:
        out = subprocess.run(["id", "-u", name], capture_output=True, text=True, check=True).stdout
        gid = subprocess.run(["id", "-g", name], capture_output=True, text=True, check=True).stdout
        yield name, int(out), int(gid)
    finally:
        run_admin(["userdel", name])


# The interpreter of the venv may live where other users cannot read (/root/.pyenv): the child
# starts as root, imports what edgectl needs, then becomes the user before edgectl runs.
AS_USER = r"""
import os, sys, tomllib
from edged import config, ctl, ctl_config, control_client
uid, gid, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
cfg = config.parse(tomllib.loads(open(path).read()), path)
config.with_value(cfg, "wake.threshold", 0.6)  # loads every module validation needs, as root
os.setgroups([])
os.setgid(gid)
os.setuid(uid)
sys.exit(ctl.main(sys.argv[4:]))
"""


def run_as(uid: int, gid: int, cfg: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", AS_USER, str(uid), str(gid), str(cfg), *argv],
                          capture_output=True, text=True, timeout=120, cwd="/")


@pytest.mark.parametrize("layout", ["dir_not_writable", "file_of_another_owner"])
def test_set_as_user_who_may_not_write(user, layout):
    _, uid, gid = user
    d = Path(tempfile.mkdtemp(prefix="edgectl-"))
    try:
        d.chmod(0o755)
        cfg = d / "edged.toml"
        cfg.write_text("[wake]\nthreshold = 0.5\n")
        cfg.chmod(0o644)  # readable by the user, owned by root
        if layout == "file_of_another_owner":
            os.chown(d, uid, gid)  # the user may replace files in the folder, but not give one to root
        text = cfg.read_bytes()
        out = run_as(uid, gid, cfg, "--socket", str(d / "none.sock"), "--config", str(cfg),
                     "config", "set", "wake.threshold", "0.6")
        assert out.returncode == ctl_config.EX_NOPERM, out.stderr
        assert out.stderr.startswith(f"edgectl: {cfg}: permission denied") and "nothing was changed" in out.stderr
        assert cfg.read_bytes() == text and cfg.stat().st_uid == 0
        assert [p.name for p in d.iterdir()] == ["edged.toml"]  # no temp file left behind
        # the same user may still validate the file: it is read with the user's own permissions
        ok = run_as(uid, gid, cfg, "config", "validate", str(cfg))
        assert (ok.returncode, ok.stdout.strip()) == (0, f"{cfg}: ok")
    finally:
        shutil.rmtree(d)


def test_validate_as_user_who_may_not_read(user):
    _, uid, gid = user
    d = Path(tempfile.mkdtemp(prefix="edgectl-"))
    try:
        d.chmod(0o755)
        cfg = d / "edged.toml"
        cfg.write_text("[wake]\nthreshold = 0.5\n")
        cfg.chmod(0o600)  # root's alone
        (d / "readable.toml").write_text("")  # what the child loads as root before it becomes the user
        out = run_as(uid, gid, d / "readable.toml", "config", "validate", str(cfg))
        assert out.returncode == 78
        assert out.stderr.strip() == f"{cfg}: cannot read: Permission denied"
    finally:
        shutil.rmtree(d)


# -- config validate ------------------------------------------------------------------------------
def test_validate_portable_skips_files_the_config_names(tmp_path, capsys):
    cfg = tmp_path / "edged.toml"
    cfg.write_text('[wake]\nmodels = ["/opt/models/hey_kitchen.onnx"]\n')
    code, _, err = run(capsys, "config", "validate", str(cfg))
    assert code == 78
    assert err.strip() == f"{cfg}: wake.models[0]: /opt/models/hey_kitchen.onnx: no such file"
    code, out, _ = run(capsys, "config", "validate", "--portable", str(cfg))
    assert (code, out.strip()) == (0, f"{cfg}: ok")
    code, out, _ = run(capsys, "config", "validate", str(cfg), "--portable", "--json")  # options after the file
    assert (code, json.loads(out)) == (0, {"valid": True, "file": str(cfg)})
    cfg.write_text('[wake]\nmodels = ["hey_jarviss"]\n')  # a misspelt built-in is an error, portable or not
    code, _, err = run(capsys, "config", "validate", "--portable", str(cfg))
    assert code == 78 and f"{cfg}: wake.models[0]: 'hey_jarviss' is not a built-in wake word" in err
