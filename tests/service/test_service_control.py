"""ControlServer on a real Unix socket: protocol, errors, limits, peers, events (with a protocol-only
handler; the daemon's own commands are in test_service_daemon.py)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.control_client import ControlClient
from edged.errors import ControlError
from edged.service.control import CommandError, ControlServer, EventHub, parse_request
from tests.service.conftest import ProtocolHandler, ThreadedServer, rpc, send_raw


def test_socket_file_mode_and_removal(sock_path):
    srv = ThreadedServer(sock_path).start()
    try:
        st_ = os.stat(sock_path)
        assert stat.S_ISSOCK(st_.st_mode)
        assert stat.S_IMODE(st_.st_mode) == 0o660
        assert st_.st_gid == os.getegid()
    finally:
        srv.stop()
    assert not sock_path.exists()


def _refuse_chown(monkeypatch) -> list[tuple]:
    """edged.service's SystemCallFilter (~@privileged) answers chown with EPERM: the same answer here."""
    calls: list[tuple] = []

    def chown(*args):
        calls.append(args)
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chown", chown)
    return calls


def test_the_default_group_needs_no_chown(sock_path, monkeypatch, caplog):
    """The socket is born in the service's own group: asking for that group again is a chown the unit
    forbids, which logged a warning at every start under systemd (seen in the VM bench's journal)."""
    calls = _refuse_chown(monkeypatch)
    srv = ThreadedServer(sock_path).start()
    try:
        assert os.stat(sock_path).st_gid == os.getegid()
        assert calls == []
        assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
        assert ok(sock_path, n=1)["ok"]
    finally:
        srv.stop()


def test_a_control_group_the_service_may_not_give_says_what_to_do(sock_path, monkeypatch, caplog):
    other = "daemon"  # a group in every Debian; the socket is born in root's group here
    calls = _refuse_chown(monkeypatch)
    srv = ThreadedServer(sock_path, group=other).start()
    try:
        assert calls and calls[0][2] != os.getegid()
        assert os.stat(sock_path).st_gid == os.getegid()  # where it stays
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1, errors
        text = errors[0]
        assert text.startswith(f"control.group '{other}' not applied: {sock_path} stays in group 'root'")
        assert "Operation not permitted" in text and "usermod -aG root USER" in text
        assert f"SupplementaryGroups={other} and SystemCallFilter=@chown" in text
        assert ok(sock_path, n=1)["ok"]  # the daemon's own side still works
    finally:
        srv.stop()


def ok(path, cmd="echo", **args):
    return ControlClient(path, timeout=20).call(cmd, **args)


def test_request_response(server):
    assert ok(server.path, n=1, text="hi") == {"ok": True, "result": {"n": 1, "text": "hi"}}
    assert server.handler.calls == [{"cmd": "echo", "n": 1, "text": "hi"}]


def test_several_requests_on_one_connection(server):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(20)
        s.connect(str(server.path))
        s.sendall(b'{"cmd": "echo", "n": 1}\n\n{"cmd": "echo", "n": 2}\n')
        f = s.makefile("rb")
        assert json.loads(f.readline()) == {"ok": True, "result": {"n": 1}}
        assert json.loads(f.readline()) == {"ok": True, "result": {"n": 2}}


@pytest.mark.parametrize(("request_", "kind", "text"), [
    ({"cmd": "nope"}, "usage", "unknown command 'nope'"),
    ({"cmd": "raise", "what": "usage"}, "usage", "bad argument"),
    ({"cmd": "raise", "what": "config"}, "config", "/etc/edged/edged.toml: wake.threshold: must be less than 1"),
    ({"cmd": "raise", "what": "not_found"}, "not_found", "no device named 'toaster'"),
    ({"cmd": "raise", "what": "failed"}, "failed", "raise failed: RuntimeError: kaput"),
])
def test_error_kinds(server, request_, kind, text):
    """How the server maps what a handler raises to an answer (CommandError, ConfigError,
    LookupError, anything else)."""
    assert ok(server.path, **request_) == {"ok": False, "error": text, "kind": kind}
    # the server is still there
    assert ok(server.path) == {"ok": True, "result": {}}


@pytest.mark.parametrize(("raw", "text"), [
    (b"{not json\n", "malformed JSON"),
    (b"[1, 2]\n", "a request is a JSON object"),
    (b'"status"\n', "a request is a JSON object"),
    (b'{"command": "status"}\n', 'a request needs "cmd"'),
    (b'{"cmd": 5}\n', 'a request needs "cmd"'),
    (b"\xff\xfe\n", "not UTF-8"),
])
def test_malformed_requests_close_the_connection(server, raw, text):
    # a valid request after the bad one on the same connection is NOT answered: it was closed
    resps = send_raw(server.path, raw + b'{"cmd": "echo"}\n')
    assert len(resps) == 1
    assert resps[0]["ok"] is False and resps[0]["kind"] == "usage"
    assert text in resps[0]["error"]


def test_oversized_request(server):
    big = json.dumps({"cmd": "echo", "text": "x" * 10000}).encode() + b"\n"
    [resp] = send_raw(server.path, big)
    assert resp == {"ok": False, "error": "request too large: over 4096 bytes", "kind": "usage"}
    assert server.handler.calls == []
    assert ok(server.path) == {"ok": True, "result": {}}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.binary(max_size=6000))
def test_fuzz_random_bytes_server_survives(server, junk):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(20)
        s.connect(str(server.path))
        try:
            s.sendall(junk + b"\n")
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert ok(server.path) == {"ok": True, "result": {}}


def test_parse_request_deep_nesting():
    req, why = parse_request(b"[" * 100000 + b"]" * 100000)
    assert req is None and "malformed JSON" in why


def test_read_timeout_closes_idle_connection(sock_path):
    srv = ThreadedServer(sock_path, read_timeout_s=0.5).start()
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(20)
            s.connect(str(sock_path))
            data = s.makefile("rb").read()  # read until the server closes
        resp = json.loads(data)
        assert resp["ok"] is False and "no request within 0.5 s" in resp["error"]
    finally:
        srv.stop()


def test_connection_limit(sock_path):
    srv = ThreadedServer(sock_path, max_connections=2).start()
    try:
        held = [socket.socket(socket.AF_UNIX) for _ in range(2)]
        for s in held:
            s.settimeout(20)
            s.connect(str(sock_path))
            s.sendall(b'{"cmd": "echo"}\n')
            s.makefile("rb").readline()  # served: the connection is open and counted
        resp = ok(sock_path)
        assert resp["ok"] is False and "too many connections (max 2)" in resp["error"]
        held[0].close()
        assert srv.wait_for(lambda: srv.server.stats()["connections"] < 2)  # the server notices the close
        assert ok(sock_path) == {"ok": True, "result": {}}
        held[1].close()
    finally:
        srv.stop()


async def test_stale_socket_is_replaced_and_live_one_refused(tmp_path):
    path = tmp_path / "c.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    async with ControlServer(path, handler=ProtocolHandler()) as first:
        assert first.path.exists()
        with pytest.raises(ControlError, match="already listening"):
            await ControlServer(path, handler=ProtocolHandler()).start()
        assert path.exists(), "the running server's socket must survive"
    assert not path.exists()


async def test_refuses_to_replace_a_regular_file(tmp_path):
    path = tmp_path / "c.sock"
    path.write_text("important")
    with pytest.raises(ControlError, match="not a socket"):
        await ControlServer(path, handler=ProtocolHandler()).start()
    assert path.read_text() == "important"


async def test_unknown_group_is_a_config_error(tmp_path):
    with pytest.raises(Exception, match="control.group: no such group 'no-such-group-xyz'"):
        await ControlServer(tmp_path / "c.sock", group="no-such-group-xyz", handler=ProtocolHandler()).start()


def test_other_uid_refused_by_peercred():
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as nobody")
    # a directory and socket everybody may reach: the refusal must come from SO_PEERCRED
    d = Path(tempfile.mkdtemp(prefix="edged-ctl-"))
    try:
        os.chmod(d, 0o755)
        srv = ThreadedServer(d / "control.sock", socket_mode=0o666).start()
        try:
            client = textwrap.dedent(f"""
                import os, socket
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(20)
                s.connect({str(d / 'control.sock')!r})
                try:  # the server may answer and close before the request is sent
                    s.sendall(b'{{"cmd": "status"}}\\n')
                except BrokenPipeError:
                    pass
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                print(os.getuid(), data.decode())
            """)
            out = subprocess.run(["/usr/bin/python3", "-c", client], user=65534, group=65534, extra_groups=[],
                                 capture_output=True, text=True, timeout=60, cwd="/")
            assert out.returncode == 0, out.stderr
            uid, _, line = out.stdout.partition(" ")
            assert uid == "65534"
            resp = json.loads(line)
            assert resp["ok"] is False and resp["kind"] == "permission"
            assert resp["error"].startswith("permission denied: uid 65534 is not root")
            assert srv.handler.calls == [], "the request must not reach the handler"
            assert srv.server.stats()["refused"] == 1
            # root still gets in
            assert ok(d / "control.sock") == {"ok": True, "result": {}}
        finally:
            srv.stop()
    finally:
        os.rmdir(d)


def test_events_stream(server):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(20)
        s.connect(str(server.path))
        s.sendall(b'{"cmd": "events"}\n')
        f = s.makefile("rb")
        assert json.loads(f.readline()) == {"ok": True, "result": "subscribed"}
        server.publish({"event": "state", "state": "listening"}, {"event": "wake", "model": "hey_jarvis",
                                                                 "score": 0.9})
        a, b = json.loads(f.readline()), json.loads(f.readline())
        assert a["event"] == "state" and a["state"] == "listening" and isinstance(a["time"], float)
        assert b["event"] == "wake" and b["score"] == 0.9
        assert server.hub.subscribers == 1
        f.close()  # the socket really closes only when its file object does
    assert server.wait_for(lambda: server.hub.subscribers == 0), "a closed client is unsubscribed"


def test_slow_subscriber_drops_oldest(sock_path):
    srv = ThreadedServer(sock_path, queue_size=8).start()
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(20)
            s.connect(str(sock_path))
            s.sendall(b'{"cmd": "events"}\n')
            f = s.makefile("rb")
            assert json.loads(f.readline())["result"] == "subscribed"
            # a burst the subscriber cannot take in time (one loop turn, big payloads)
            n = 300
            srv.publish(*({"event": "tick", "n": i, "pad": "x" * 4096} for i in range(n)))
            got: list[dict] = []
            dropped = 0
            while True:
                ev = json.loads(f.readline())
                if ev["event"] == "dropped":
                    dropped += ev["count"]
                else:
                    got.append(ev)
                if got and got[-1]["n"] == n - 1:
                    break
        assert dropped > 0
        assert len(got) + dropped == n, "every event is either delivered or counted as dropped"
        assert [e["n"] for e in got] == sorted(e["n"] for e in got), "order is kept"
        assert got[-1]["n"] == n - 1, "the newest are kept, the oldest dropped"
        assert len(got) <= 8 + 2
    finally:
        srv.stop()


def test_event_hub_rejects_non_events():
    hub = EventHub()
    with pytest.raises(ValueError, match="'event' key"):
        hub.publish({"state": "idle"})


# -- the key never leaves over the socket --------------------------------------------------
KEY = "AIzaSyCONTROL-test-key-0123456789abcdef"


class LeakyDaemon:
    """A handler that puts the key everywhere it can: results, errors, exceptions."""

    async def __call__(self, req: dict) -> object:
        cmd = req["cmd"]
        if cmd == "status":
            return {"state": "idle", "last_error": f"401 for key={KEY}", "nested": [{"k": KEY}]}
        if cmd == "say":
            raise CommandError(f"the service refused {KEY}", "failed")
        if cmd == "wake":
            raise RuntimeError(f"boom with {KEY}")
        if cmd == "config.get":
            raise KeyError(f"no such key {KEY}")
        raise CommandError("unknown", "usage")


def test_secret_scrubbed_from_results_errors_and_events(sock_path):
    from edged import secrets

    secrets.register(secrets.Secret(KEY, "test"))
    srv = ThreadedServer(sock_path)
    srv.handler = LeakyDaemon()
    srv.start()
    try:
        raw = b""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(20)
            s.connect(str(sock_path))
            f = s.makefile("rb")
            for req in ({"cmd": "status"}, {"cmd": "say", "text": "x"}, {"cmd": "wake"},
                        {"cmd": "config.get", "key": "k"}):
                s.sendall(json.dumps(req).encode() + b"\n")
                raw += f.readline()
            f.close()
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(20)
            s.connect(str(sock_path))
            s.sendall(b'{"cmd": "events"}\n')
            f = s.makefile("rb")
            raw += f.readline()
            srv.publish({"event": "error", "message": f"auth failed for {KEY}"},
                        {"event": "transcript", "role": "model", "text": f"your key is {KEY}"})
            raw += f.readline() + f.readline()
            f.close()
        lines = [json.loads(line) for line in raw.splitlines()]
        assert len(lines) == 7
        assert KEY.encode() not in raw, "the key went out over the control socket"
        assert raw.count(b"***") == 7
        assert lines[0]["result"]["last_error"] == "401 for key=***"
        assert lines[2] == {"ok": False, "error": "wake failed: RuntimeError: boom with ***", "kind": "failed"}
        assert lines[6]["text"] == "your key is ***"
    finally:
        srv.stop()


# -- subscribers: their own pool, dropped when they stop reading ---------------------------
def _wait(pred, what: str, timeout: float = 20.0) -> None:
    import time

    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        threading.Event().wait(0.02)


def test_stalled_subscriber_is_dropped_without_blocking_others(sock_path):
    srv = ThreadedServer(sock_path, queue_size=2000, event_write_timeout_s=0.5).start()
    n = 400
    got: list[int] = []
    try:
        stalled = socket.socket(socket.AF_UNIX)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.settimeout(20)
        stalled.connect(str(sock_path))
        stalled.sendall(b'{"cmd": "events"}\n')
        assert b"subscribed" in stalled.recv(64)  # then it reads nothing more
        reader = socket.socket(socket.AF_UNIX)
        reader.settimeout(20)
        reader.connect(str(sock_path))
        reader.sendall(b'{"cmd": "events"}\n')
        rf = reader.makefile("rb")
        assert json.loads(rf.readline())["result"] == "subscribed"

        def read_all() -> None:
            while len(got) < n:
                ev = json.loads(rf.readline())
                if ev["event"] == "tick":
                    got.append(ev["n"])

        t = threading.Thread(target=read_all, daemon=True)
        t.start()
        srv.publish(*({"event": "tick", "n": i, "pad": "x" * 8192} for i in range(n)))
        t.join(30)
        assert got == list(range(n)), "the reading subscriber got every event, in order, meanwhile"
        _wait(lambda: srv.server.stats()["dropped_subscribers"] == 1, "the stalled subscriber to be dropped")
        _wait(lambda: srv.hub.subscribers == 1, "the hub to forget it")
        assert srv.server.stats()["subscribers"] == 1
        # the stalled client finds its connection closed once it reads again
        stalled.settimeout(20)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := stalled.recv(1 << 20):
                data += chunk
        assert len(data) < n * 8192
        stalled.close()
        rf.close()
        reader.close()
    finally:
        srv.stop()


def test_pools_are_released_on_close_and_on_stop(sock_path):
    srv = ThreadedServer(sock_path, max_connections=2, max_subscribers=2).start()
    socks = []
    try:
        for line in (b'{"cmd": "events"}\n', b'{"cmd": "events"}\n', b'{"cmd": "wake"}\n'):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(20)
            s.connect(str(sock_path))
            s.sendall(line)
            assert s.recv(4096).endswith(b"\n")
            socks.append(s)
        st = srv.server.stats()
        assert (st["subscribers"], st["connections"]) == (2, 1), "a subscriber does not hold a command slot"
        [busy] = rpc(sock_path, {"cmd": "events"})
        assert busy["ok"] is False and "too many event subscribers (max 2)" in busy["error"]
        socks.pop(0).close()
        _wait(lambda: srv.server.stats()["subscribers"] == 1, "a subscriber slot to come back")
        assert rpc(sock_path, {"cmd": "events"})[0]["result"] == "subscribed"
        srv.call(srv.server.stop())  # cancels the rest mid-stream
        st = srv.server.stats()
        assert (st["subscribers"], st["connections"], st["status_lane"], st["open"]) == (0, 0, 0, 0)
        srv.server = None
    finally:
        for s in socks:
            s.close()
        srv.stop()


def test_unlisted_commands_need_admin_and_the_table_is_data():
    from edged.service import roles

    assert roles.role_needed("status") == "operator"
    assert roles.role_needed("config.set") == "admin"
    assert roles.role_needed("something.new") == "admin", "fail closed"
    op = roles.Peer(1, 1000, 1000, frozenset(), "operator", "alice")
    assert op.may("gpio.set") and not op.may("reload") and not op.may("something.new")
    assert roles.refusal(op, "reload", None) == ("permission denied: reload needs the admin role (root "
                                                 "(control.admin_group names a group whose members may too)); "
                                                 "uid 1000 (alice) is an operator")


def test_a_value_nested_too_deeply_gets_an_error_answer_not_silence(server):
    """A config.set value of a thousand nested arrays made the server's own checks raise RecursionError:
    the connection ended without an answer.  Now it is a usage error like any bad request."""
    value = "[" * 1000 + "]" * 1000
    answers = send_raw(server.path, (json.dumps({"cmd": "config.set", "key": "wake.threshold", "value": value})
                                     + "\n").encode())
    assert len(answers) == 1 and answers[0]["ok"] is False, answers
    assert answers[0]["kind"] == "usage" and "nested too deeply" in answers[0]["error"]
    assert send_raw(server.path, b'{"cmd": "echo", "x": 1}\n')[0] == {"ok": True, "result": {"x": 1}}
