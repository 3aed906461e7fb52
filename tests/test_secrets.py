"""The API key: sources, and that it never shows in text or logs."""

import logging
import pickle

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
