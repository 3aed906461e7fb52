"""ControlServer on a real Unix socket: protocol, errors, limits, peers, events (with a protocol-only
handler; the daemon's own commands are in test_service_daemon.py)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.control_client import ControlClient
from edged.errors import ControlError
from edged.service.control import ControlServer, EventHub, parse_request
from tests.service.conftest import ProtocolHandler, ThreadedServer, send_raw


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
