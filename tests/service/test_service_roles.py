"""Roles on the control socket, with real users: a member of the control group (operator), a
member of the admin group (admin), and a member of neither, each created with useradd and
running a stdlib client with runuser against a real ControlServer."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from edged.service import roles
from edged.service.control import current_peer
from tests.service.conftest import AnyCommand, ThreadedServer, handled, rpc
from tests.service.realusers import ask_as, public_dir, real_users, uid_of

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates users: needs root")


class RoleRecorder:
    """A small real handler that takes the Peer, as the daemon's does: records who asked what."""

    def __init__(self) -> None:
        self.fake = AnyCommand()
        self.seen: list[tuple[str, str, str]] = []

    async def __call__(self, req: dict[str, Any], peer: roles.Peer) -> Any:
        assert current_peer() is peer
        self.seen.append((req["cmd"], peer.role, peer.name))
        return await self.fake(req)


@pytest.fixture(scope="module")
def people() -> Iterator[dict[str, str]]:
    with real_users() as u:
        ctl = u.group("ctl")
        adm = u.group("adm")
        yield {"ctl": ctl, "adm": adm,
               "operator": u.user("op", ctl),
               "admin": u.user("ad", ctl, adm),  # the socket file is 0660 to the control group
               "adminonly": u.user("ao", adm),
               "nobody": u.user("no")}


def start(d, people, mode: int = 0o660, **kw: Any) -> ThreadedServer:
    srv = ThreadedServer(d / "control.sock", group=people["ctl"], admin_group=people["adm"], socket_mode=mode, **kw)
    srv.handler = RoleRecorder()
    return srv.start()


OPERATOR_CMDS = [{"cmd": "status"}, {"cmd": "config.show"}, {"cmd": "config.get", "key": "wake.threshold"},
                 {"cmd": "gpio.list"}, {"cmd": "gpio.set", "name": "kitchen_light", "value": True},
                 {"cmd": "wake"}, {"cmd": "say", "text": "hello"}, {"cmd": "mute", "on": True},
                 {"cmd": "snapshot"}, {"cmd": "timers.list"}, {"cmd": "timers.cancel", "id": "timer-1"},
                 {"cmd": "timers.stop"}]
ADMIN_CMDS = [{"cmd": "config.set", "key": "wake.threshold", "value": "0.6"}, {"cmd": "reload"},
              {"cmd": "session.reset"}, {"cmd": "config.validate"}]


def test_operator_may_operate_but_not_configure(people):
    with public_dir() as d:
        srv = start(d, people)
        try:
            got = ask_as(people["operator"], srv.path, *OPERATOR_CMDS, *ADMIN_CMDS)["answers"]
            ops, adms = got[:len(OPERATOR_CMDS)], got[len(OPERATOR_CMDS):]
            assert all(a["ok"] for a in ops), ops
            assert ops[0]["result"] == handled("status")
            for req, a in zip(ADMIN_CMDS, adms, strict=True):
                assert a["ok"] is False and a["kind"] == "permission", a
                assert a["error"] == (f"permission denied: {req['cmd']} needs the admin role (root or a member of "
                                      f"group {people['adm']!r}); uid {uid_of(people['operator'])} "
                                      f"({people['operator']}) is an operator")
            # the refused commands never reached the handler; the others came with the operator role
            assert {cmd for cmd, _, _ in srv.handler.seen} == {r["cmd"] for r in OPERATOR_CMDS}
            assert {(role, name) for _, role, name in srv.handler.seen} == {("operator", people["operator"])}
            # events too
            [sub] = ask_as(people["operator"], srv.path, {"cmd": "events"})["answers"]
            assert sub == {"ok": True, "result": "subscribed"}
        finally:
            srv.stop()


def test_admin_may_configure(people):
    with public_dir() as d:
        srv = start(d, people)
        try:
            got = ask_as(people["admin"], srv.path, *ADMIN_CMDS, {"cmd": "status"})["answers"]
            # every one reached the handler and was answered by it
            assert got == [{"ok": True, "result": handled(q["cmd"])} for q in [*ADMIN_CMDS, {"cmd": "status"}]], got
            assert [(c, r) for c, r, _ in srv.handler.seen] == [(q["cmd"], "admin") for q in [*ADMIN_CMDS,
                                                                                               {"cmd": "status"}]]
        finally:
            srv.stop()


def test_admin_role_comes_from_the_kernel_groups_not_the_socket_mode(people):
    # the admin group alone is enough for the role; the file mode is the other fence
    with public_dir() as d:
        srv = start(d, people, mode=0o666)
        try:
            [a] = ask_as(people["adminonly"], srv.path, {"cmd": "reload"})["answers"]
            assert a["ok"] is True and srv.handler.seen == [("reload", "admin", people["adminonly"])]
        finally:
            srv.stop()


def test_neither_member_is_refused_by_the_file_and_by_peercred(people):
    with public_dir() as d:
        srv = start(d, people)
        try:
            assert ask_as(people["nobody"], srv.path, {"cmd": "status"}) == {"connect_error": "PermissionError"}
        finally:
            srv.stop()
        srv = start(d, people, mode=0o666)
        try:
            [a] = ask_as(people["nobody"], srv.path, {"cmd": "status"})["answers"]
            assert a["kind"] == "permission"
            assert a["error"].startswith(f"permission denied: uid {uid_of(people['nobody'])} is not root")
            assert srv.handler.seen == [] and srv.server.stats()["refused"] == 1
        finally:
            srv.stop()


@pytest.mark.parametrize(("key", "value", "why"), [
    ("live.base_url", "https://some.host", "cannot be changed over the control socket"),
    ("live.ca_file", "/tmp/ca.pem", "cannot be changed over the control socket"),
    ("live.api_key_file", "/tmp/k", "cannot be changed over the control socket"),
    ("live.api_version", "v1", "cannot be changed over the control socket"),
    ("state.dir", "/tmp", "the state section cannot be changed"),
    ("control.admin_group", "users", "the control section cannot be changed"),
    ("audio.playback_device", "file:'|touch /tmp/x',raw", "ALSA's file plugin would run the rest as a shell command"),
    ("audio.capture_device", "file:/var/lib/edged/rec,raw", "inline 'file' plugin"),
])
def test_endpoint_keys_and_unsafe_devices_refused_to_everyone(people, key, value, why):
    with public_dir() as d:
        srv = start(d, people, config_path="/etc/edged/edged.toml")
        try:
            req = {"cmd": "config.set", "key": key, "value": value}
            as_admin = ask_as(people["admin"], srv.path, req)["answers"][0]
            [as_root] = rpc(srv.path, req)
            for a in (as_admin, as_root):
                assert a["ok"] is False and a["kind"] == "permission", a
                assert a["error"].startswith(f"/etc/edged/edged.toml: {key}: ") and why in a["error"]
            assert srv.handler.seen == [], "nothing reached the daemon"
        finally:
            srv.stop()


def test_config_validate_of_another_file_is_refused(people):
    with public_dir() as d:
        srv = start(d, people)
        try:
            [a] = rpc(srv.path, {"cmd": "config.validate", "path": "/etc/shadow"})
            assert a["kind"] == "usage" and "edgectl config validate FILE" in a["error"]
            assert srv.handler.seen == []
        finally:
            srv.stop()


def _subscribe(path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(str(path))
    s.sendall(b'{"cmd": "events"}\n')
    return s


def test_status_answers_with_40_idle_subscribers_and_a_full_command_pool(people):
    with public_dir() as d:
        srv = start(d, people, max_connections=4, max_subscribers=8, status_lane=2)
        held: list[socket.socket] = []
        try:
            answers = []
            for _ in range(40):  # idle event subscribers: 8 get in, the rest are told to come back
                s = _subscribe(srv.path)
                held.append(s)
                answers.append(s.makefile("rb").readline())
            assert sum(b'"subscribed"' in a for a in answers) == 8
            assert sum(b"too many event subscribers (max 8)" in a for a in answers) == 32
            assert srv.server.stats()["subscribers"] == 8
            # status still answers: the subscribers have their own pool
            assert rpc(srv.path, {"cmd": "status"}) == [{"ok": True, "result": handled("status")}]
            [a] = ask_as(people["operator"], srv.path, {"cmd": "status"})["answers"]
            assert a == {"ok": True, "result": handled("status")}
            # now fill the command pool with idle connections too
            for _ in range(4):
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(20)
                s.connect(str(srv.path))
                s.sendall(b'{"cmd": "wake"}\n')
                s.makefile("rb").readline()  # served: it holds its command slot
                held.append(s)
            assert srv.server.stats()["connections"] == 4
            [a] = ask_as(people["operator"], srv.path, {"cmd": "status"})["answers"]
            assert a == {"ok": True, "result": handled("status")}, "the status lane answers an operator"
            assert rpc(srv.path, {"cmd": "status"}) == [{"ok": True, "result": handled("status")}], "and root"
            [a] = ask_as(people["operator"], srv.path, {"cmd": "wake"})["answers"]
            assert a["ok"] is False and "only status is answered now" in a["error"]
        finally:
            for s in held:
                s.close()
            srv.stop()
