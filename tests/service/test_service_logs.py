"""logs.setup: stderr format, journal fields mapping, secret redaction."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edged import secrets
from edged.service import logs

KEY = "AIzaSyTESTKEY-never-print-me-0123456789"


@pytest.fixture(autouse=True)
def clean_loggers():
    yield
    for name in ("edged", *logs.THIRD_PARTY):
        logger = logging.getLogger(name)
        for h in list(logger.handlers):
            if getattr(h, "_edged_setup", False):
                logger.removeHandler(h)
        logger.setLevel(logging.NOTSET)


@pytest.fixture
def secret():
    s = secrets.Secret(KEY, "test")
    secrets.register(s)
    yield s
    secrets._known.discard(KEY)


def test_stderr_when_journal_stream_unset(monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    out = io.StringIO()
    handler = logs.setup("info", stream=out)
    assert isinstance(handler, logging.StreamHandler)
    log = logging.getLogger("edged.test")
    log.info("wake word %s (%.2f)", "hey_jarvis", 0.93, extra=logs.fields(wake_model="hey_jarvis", wake_score=0.93))
    log.debug("not shown at info")
    line = out.getvalue()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO edged\.test: wake word hey_jarvis \(0\.93\)\n",
                        line), line
    assert "WAKE_MODEL" not in line


def test_third_party_only_warnings(monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    out = io.StringIO()
    logs.setup("debug", stream=out)
    logging.getLogger("websockets.client").info("chatty frame dump")
    logging.getLogger("google_genai.live").warning("server said goodbye")
    assert "chatty" not in out.getvalue()
    assert "WARNING google_genai.live: server said goodbye" in out.getvalue()


def test_setup_twice_replaces_the_handler(monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    first, second = io.StringIO(), io.StringIO()
    logs.setup("info", stream=first)
    logs.setup("info", stream=second)
    logging.getLogger("edged.x").warning("once")
    assert first.getvalue() == "" and second.getvalue().count("once") == 1


def test_journal_chosen_when_journal_stream_set(monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    assert isinstance(logs.setup("info"), logs.JournalFieldsHandler)
    monkeypatch.delenv("JOURNAL_STREAM")
    assert isinstance(logs.setup("info", journal=True), logs.JournalFieldsHandler)
    assert isinstance(logs.setup("info"), logging.StreamHandler)


def _record(msg: str, *args, level=logging.INFO, fields=None, exc_info=None) -> logging.LogRecord:
    rec = logging.getLogger("edged.daemon").makeRecord("edged.daemon", level, "/x/daemon.py", 42, msg, args,
                                                      exc_info, func="on_wake",
                                                      extra={"fields": fields} if fields is not None else None)
    return rec


def test_record_fields_mapping():
    rec = _record("state %s", "listening", level=logging.WARNING, fields={
        "edged_state": "listening", "WAKE_MODEL": "hey_jarvis", "wake_score": 0.9312, "session-id": "abc",
        "CLOSE_CODE": 1011, "skip": None, "__": "dropped", "1st": "x"})
    f = logs.record_fields(rec)
    assert f["MESSAGE"] == "state listening"
    assert f["PRIORITY"] == "4"
    assert f["LOGGER"] == "edged.daemon"
    assert f["CODE_FILE"] == "/x/daemon.py" and f["CODE_LINE"] == "42" and f["CODE_FUNC"] == "on_wake"
    assert f["SYSLOG_IDENTIFIER"] == "edged"
    assert f["EDGED_STATE"] == "listening"
    assert f["WAKE_MODEL"] == "hey_jarvis"
    assert f["WAKE_SCORE"] == "0.9312"
    assert f["SESSION_ID"] == "abc"
    assert f["CLOSE_CODE"] == "1011"
    assert f["F_1ST"] == "x"
    assert "SKIP" not in f and "" not in f
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", k) for k in f)


def test_priorities():
    assert [logs.priority(x) for x in (10, 20, 30, 40, 50)] == [7, 6, 4, 3, 2]


def test_exception_in_fields():
    try:
        raise RuntimeError("socket closed 1011")
    except RuntimeError:
        import sys

        rec = _record("live dropped", exc_info=sys.exc_info())
    f = logs.record_fields(rec)
    assert "RuntimeError: socket closed 1011" in f["EXCEPTION_TEXT"]
    assert f["MESSAGE"].startswith("live dropped\nTraceback")


def test_secret_never_in_stderr_output(monkeypatch, secret):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    out = io.StringIO()
    logs.setup("debug", stream=out)
    log = logging.getLogger("edged.live")
    log.info("connecting with key %s", KEY)
    log.warning("header x-goog-api-key: " + KEY)  # noqa: G003 - a careless caller
    try:
        raise ValueError(f"bad key {KEY}")
    except ValueError:
        log.exception("failed")
    logging.getLogger("websockets.client").warning("handshake with %s", KEY)
    text = out.getvalue()
    assert KEY not in text
    assert text.count("***") >= 4
    assert "ValueError: bad key ***" in text


def test_secret_never_in_journal_fields(secret):
    rec = _record("using %s", KEY, fields={"detail": f"k={KEY}"})
    handler = logs.JournalFieldsHandler()
    sent: list[tuple[str, dict]] = []
    handler._send = lambda message, **kw: sent.append((message, kw))  # capture what journal.send would get
    handler.addFilter(secrets.RedactFilter())
    handler.handle(rec)
    assert len(sent) == 1
    message, kw = sent[0]
    assert KEY not in message and all(KEY not in str(v) for v in kw.values())
    assert message == "using ***" and kw["DETAIL"] == "k=***"
    assert kw["CODE_LINE"] == 42 and kw["PRIORITY"] == "6"


JOURNALD = Path("/lib/systemd/systemd-journald")

# Runs in a private mount namespace: a tmpfs over /run (and /var/log/journal) hides the machine's
# own journal, a real systemd-journald serves /run/systemd/journal/socket (where libsystemd sends),
# edged's handler logs, and the entry is read back from the journal file.
JOURNAL_CHILD = """
import json, logging, os, subprocess, sys, time
from systemd import journal
from edged import secrets
from edged.service import logs

for target in ("/run", "/var/log/journal"):
    if os.path.isdir(target):
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", target], check=True)
os.makedirs("/run/systemd/journal")
jd = subprocess.Popen([sys.argv[1]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    deadline = time.monotonic() + 30
    while not os.path.exists("/run/systemd/journal/socket"):
        assert time.monotonic() < deadline and jd.poll() is None, "journald did not start"
        time.sleep(0.02)
    key = os.environ.pop("EDGED_TEST_KEY")
    secrets.register(secrets.Secret(key, "test"))
    handler = logs.JournalFieldsHandler()
    handler.addFilter(secrets.RedactFilter())
    log = logging.getLogger("edged.daemon")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.warning("state %s with key %s", "listening", key,
                extra=logs.fields(edged_state="listening", wake_score=0.93, session_id=sys.argv[2]))
    while True:  # read it back from the journal files journald writes
        reader = journal.Reader(path="/run/log/journal")
        reader.add_match(SESSION_ID=sys.argv[2])
        entries = [{k: str(v) for k, v in e.items()} for e in reader]
        reader.close()
        if entries or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    print(json.dumps(entries))
finally:
    jd.terminate()
    jd.wait(10)
"""


def test_journal_handler_sends_to_a_real_journald(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("not root: a private systemd-journald needs a mount namespace (tmpfs over /run)")
    if not JOURNALD.exists() or not shutil.which("unshare"):
        pytest.skip(f"{JOURNALD} or unshare(1) is not installed: no journald to send to")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here ({probe.stderr.strip()}): cannot run a journald")
    session = f"test-{os.getpid()}-{time.monotonic_ns()}"
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c",
                           JOURNAL_CHILD, str(JOURNALD), session],  # the key not in argv: journald logs it
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "EDGED_TEST_KEY": KEY})
    assert proc.returncode == 0, proc.stderr
    [entry] = json.loads(proc.stdout)
    assert entry["MESSAGE"] == "state listening with key ***"
    assert entry["PRIORITY"] == "4" and entry["SYSLOG_IDENTIFIER"] == "edged"
    assert entry["EDGED_STATE"] == "listening" and entry["WAKE_SCORE"] == "0.93"
    assert entry["LOGGER"] == "edged.daemon" and entry["CODE_FUNC"] == "<module>"
    assert entry["_TRANSPORT"] == "journal"  # received by journald over its native socket
    assert all(KEY not in v for v in entry.values())


def test_bad_level():
    with pytest.raises(ValueError, match="log level"):
        logs.setup("loud")
