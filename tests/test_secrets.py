"""The API key: sources, and that it never shows in text or logs."""

import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edged import secrets
from edged.errors import ConfigError

KEY = "AIzaSyTEST-not-a-real-key-0123456789"


def test_secret_never_formats(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    s = secrets.load_api_key("")
    assert s.reveal() == KEY
    percent = "%s" % (s,)  # noqa: UP031 - the old formatting must be safe too
    for text in (str(s), repr(s), f"{s}", percent, f"{s!r}", str([s]), str({"k": s})):
        assert KEY not in text
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_sources_in_order(tmp_path, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert secrets.load_api_key("") is None
    cred = tmp_path / "creds"
    cred.mkdir()
    (cred / "gemini-api-key").write_text(KEY + "-cred\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(cred))
    assert secrets.load_api_key("").reveal() == KEY + "-cred"
    f = tmp_path / "key"
    f.write_text(KEY + "-file\n")
    assert secrets.load_api_key(str(f)).reveal() == KEY + "-file"
    monkeypatch.setenv("GOOGLE_API_KEY", KEY + "-google")
    assert secrets.load_api_key(str(f)).reveal() == KEY + "-google"
    monkeypatch.setenv("GEMINI_API_KEY", KEY + "-gemini")
    assert secrets.load_api_key(str(f)).source == "$GEMINI_API_KEY"


def test_unreadable_key_file_names_file_not_key(tmp_path, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"edged.toml: live.api_key_file: cannot read .*absent"):
        secrets.load_api_key(str(tmp_path / "absent"), "edged.toml")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        secrets.load_api_key(str(empty), "edged.toml")


def test_log_filter_scrubs_messages_and_tracebacks(monkeypatch, caplog):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    secrets.load_api_key("")
    log = logging.getLogger("edged.test.secret")
    log.addFilter(secrets.RedactFilter())
    with caplog.at_level(logging.INFO, logger="edged.test.secret"):
        log.info("connecting with %s", KEY)
        try:
            raise RuntimeError(f"server said bad key {KEY}")
        except RuntimeError:
            log.exception("failed")
    text = caplog.text + "".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert KEY not in text
    assert "***" in text


def test_missing_key_says_why_and_how_to_fix(monkeypatch):
    reason = secrets.missing_key("", None)
    assert reason is not None and reason.startswith("no API key: ")
    assert "/etc/edged/gemini-api-key" in reason and "edgectl reload" in reason
    assert secrets.missing_key("", secrets.Secret("", "empty")) == reason
    assert secrets.missing_key("", secrets.Secret(KEY, "$GEMINI_API_KEY")) is None
    assert secrets.missing_key("https://127.0.0.1:8443", None) is None  # the emulator needs none


def test_scrub_catches_the_json_escaped_spelling():
    odd = 'k3y"with\\quote-0123456789'
    secrets.register(secrets.Secret(odd, "test"))
    line = json.dumps({"error": f"bad {odd}"})
    assert odd not in secrets.scrub(line) and json.dumps(odd)[1:-1] not in secrets.scrub(line)
    assert json.loads(secrets.scrub(line)) == {"error": "bad ***"}


CHILD_ENV = """
import os, subprocess, sys
from edged import secrets
key = secrets.load_api_key("", forget=True)
print("source", key.source)
print("os.environ", [v for v in ("GEMINI_API_KEY", "GOOGLE_API_KEY") if v in os.environ])
print("child", subprocess.run(["env"], capture_output=True, text=True).stdout.count("_API_KEY"))
sys.stdout.flush()
sys.stdout.buffer.write(b"child-env:" + subprocess.run(["env"], capture_output=True).stdout + b"\\n")
sys.stdout.buffer.write(b"proc-environ:" + open("/proc/self/environ", "rb").read() + b"\\n")
"""


def test_key_leaves_the_environment_once_read_and_children_do_not_inherit_it():
    env = {**os.environ, "GEMINI_API_KEY": KEY, "GOOGLE_API_KEY": KEY + "-google"}
    env.pop("CREDENTIALS_DIRECTORY", None)
    out = subprocess.run([sys.executable, "-c", CHILD_ENV], capture_output=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert b"source $GEMINI_API_KEY" in text
    assert b"os.environ []" in text
    assert b"child 0" in text
    assert KEY.encode() not in text, "the key shows in a child's environment or in /proc/self/environ"
    assert b"proc-environ:" in text and b"GEMINI_API_KEY=" in text  # the block is there, wiped


def test_key_from_a_file_still_clears_the_environment(tmp_path, monkeypatch):
    f = tmp_path / "key"
    f.write_text(KEY + "\n")
    monkeypatch.setenv("GOOGLE_API_KEY", "")
    assert secrets.load_api_key(str(f), forget=True).source == str(f)
    assert "GOOGLE_API_KEY" not in os.environ


def test_harden_process_makes_it_undumpable_and_forbids_cores():
    code = ("import resource; from edged import secrets; before = secrets.is_dumpable(); "
            "ok = secrets.harden_process(); print(before, ok, secrets.is_dumpable(), "
            "resource.getrlimit(resource.RLIMIT_CORE))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(maxsplit=3)[:3] == ["True", "True", "False"]
    assert out.stdout.strip().endswith("(0, 0)")


HOLDER = """
import os, sys
sys.path.insert(0, sys.argv[1])
from edged import secrets
if sys.argv[2] == "harden":
    assert secrets.harden_process()
print(os.getpid(), flush=True)
sys.stdin.read()
"""
READER = """
import sys
try:
    data = open(f"/proc/{sys.argv[1]}/environ", "rb").read()
    print("read", b"EDGED_MARK=1" in data)
except PermissionError:
    print("denied")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run two processes as another user")
@pytest.mark.parametrize(("mode", "expected"), [("plain", "read True"), ("harden", "denied")])
def test_non_dumpable_process_is_closed_to_its_own_user(mode, expected):
    """As nobody: a sibling process of the same user reads a plain process's /proc/PID/environ,
    and is refused once harden_process() ran.  The package is copied to a world-readable place:
    the clone may live in a directory nobody cannot read."""
    d = Path(tempfile.mkdtemp(prefix="edged-dump-"))
    try:
        os.chmod(d, 0o755)
        src = Path(secrets.__file__).parent
        (d / "edged").mkdir()
        for name in ("__init__.py", "errors.py", "secrets.py"):
            shutil.copy(src / name, d / "edged" / name)
        for p in [d / "edged", *(d / "edged").iterdir()]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        as_nobody = {"user": 65534, "group": 65534, "extra_groups": [], "cwd": "/"}
        holder = subprocess.Popen(["/usr/bin/python3", "-c", HOLDER, str(d), mode], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, env={"EDGED_MARK": "1", "PATH": "/usr/bin"},
                                  **as_nobody)
        try:
            pid = holder.stdout.readline().strip()
            assert pid.isdigit(), "the holder did not start"
            out = subprocess.run(["/usr/bin/python3", "-c", READER, pid], capture_output=True, text=True,
                                 timeout=60, **as_nobody)
            assert out.returncode == 0, out.stderr
            assert out.stdout.strip() == expected
        finally:
            holder.stdin.close()
            holder.wait(30)
    finally:
        shutil.rmtree(d)


def test_a_tool_that_does_not_forget_can_read_the_key_again(monkeypatch):
    # edgectl doctor reads the key in several steps; only the daemon forgets it
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    assert secrets.load_api_key("").reveal() == KEY
    assert secrets.load_api_key("").reveal() == KEY and os.environ["GEMINI_API_KEY"] == KEY
