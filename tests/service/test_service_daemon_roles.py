"""Every refusal of issue 11 against the REAL daemon (``edged run`` through the harness, the Live
emulator, ALSA file devices), with real users created by useradd and run with runuser:

- an operator (the control group) may status, events, gpio set, wake, say, mute, snapshot, and may
  not reload, session reset or config set; an admin (``control.admin_group``) may reload and reset;
  someone in neither group cannot connect;
- ``config.set`` of an endpoint key or of an ALSA name that would run a command is refused to
  everyone, root included, and the command never runs; the daemon writes no config at all;
- ``config.validate`` of another file is refused and the file's content is never echoed;
- 40 idle event subscribers and a full command pool do not lock ``status`` out for root or an
  operator; a subscriber that stops reading is dropped while another keeps receiving;
- the API key (given in the environment) is in no answer, no event, and not in the daemon's
  environment; the process runs with core files forbidden.

The clients of the users are stdlib ``python3 -c`` snippets (tests/service/realusers.py): this clone
may be in a directory they cannot read.  The socket lives in a world-traversable temp directory.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edged.dev.rig import Rig, ThreadedRig
from edged.sim.scenario import Scenario
from tests.service.realusers import ask_as, public_dir, real_users, uid_of

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates users: needs root")

KEY = "AIzaSyTEST-not-a-real-key-3f9c2e1d0b"


class World:
    def __init__(self, rig: ThreadedRig, people: dict[str, str], public: Path) -> None:
        self.rig, self.people, self.public = rig, people, public

    @property
    def sock(self) -> Path:
        return self.rig.rig.socket

    def ask(self, who: str, *requests: dict[str, Any]) -> list[dict[str, Any]]:
        return ask_as(self.people[who], self.sock, *requests)["answers"]

    def root(self, cmd: str, **args: Any) -> dict[str, Any]:
        return self.rig.client.call(cmd, **args)

    def status(self) -> dict[str, Any]:
        return self.rig.client.request("status")

    def wait(self, pred, timeout: float = 30.0, what: str = "") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not pred(st := self.status()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {st['state']} ({st['why']})")
            time.sleep(0.05)
        return st


@pytest.fixture(scope="module")
def world(tmp_path_factory, models_dir) -> Iterator[World]:
    with real_users() as u, public_dir("edged-daemon-roles-") as public:
        ctl, adm = u.group("ctl"), u.group("adm")
        people = {"operator": u.user("op", ctl), "admin": u.user("ad", ctl, adm), "nobody": u.user("no")}
        root = tmp_path_factory.mktemp("daemon-roles")
        rig = Rig(root / "rig", models_dir, speed=0,
                  scenario=Scenario([[{"output_transcript": "ok"}, {"tone": {"hz": 440, "ms": 200}}]]),
                  overrides={"control": {"socket": str(public / "control.sock"), "group": ctl, "admin_group": adm}},
                  env={"GEMINI_API_KEY": KEY})
        with ThreadedRig(rig) as threaded:
            threaded.call(rig.emu.wait_connections(1, timeout=30))
            threaded.call(rig.wait_state("idle", timeout=30))
            w = World(threaded, people, public)
            yield w
            # the key never left in anything the daemon wrote on its socket or in its log
            assert KEY not in rig.log_path.read_text(errors="replace")


def permission(answer: dict[str, Any], cmd: str, world: World, who: str) -> bool:
    admin_group = world.rig.rig.config_dict()["control"]["admin_group"]
    return answer == {"ok": False, "kind": "permission", "error": (
        f"permission denied: {cmd} needs the admin role (root or a member of group {admin_group!r}); "
        f"uid {uid_of(world.people[who])} ({world.people[who]}) is an operator")}


def test_an_operator_operates(world):
    w = world
    [st, gpio, mon, moff, snap] = w.ask("operator", {"cmd": "status"},
                                        {"cmd": "gpio.set", "name": "kitchen_light", "value": True},
                                        {"cmd": "mute", "on": True}, {"cmd": "mute", "on": False},
                                        {"cmd": "snapshot"})
    try:
        assert st["ok"] and st["result"]["state"] in ("idle", "muted")
        assert gpio["ok"] and gpio["result"]["value"] in (True, 1)
        assert w.status()["gpio"]["kitchen_light"]["value"] in (True, 1)  # it really switched
        assert (mon, moff) == ({"ok": True, "result": {"muted": True}}, {"ok": True, "result": {"muted": False}})
        assert snap["ok"] and snap["result"]["bytes"] > 1000
        w.wait(lambda s: s["state"] == "idle", what="idle after unmute")
        # say: a text turn reaches the model
        emu = w.rig.rig.emu
        turns = emu.turns_received
        [said] = w.ask("operator", {"cmd": "say", "text": "what time is it"})
        assert said["ok"], said
        w.rig.call(_wait_turns(emu, turns + 1))
        w.wait(lambda s: s["state"] == "idle", what="idle after the reply")
        # wake: a turn opens
        [woke] = w.ask("operator", {"cmd": "wake"})
        assert woke["ok"], woke
        w.wait(lambda s: s["state"] in ("listening",) or s["conversation"]["turns"] > 0, what="a turn")
        # events: subscribed
        [sub] = w.ask("operator", {"cmd": "events"})
        assert sub == {"ok": True, "result": "subscribed"}
    finally:
        w.root("gpio.set", name="kitchen_light", value=False)
        w.root("mute", on=False)
        w.wait(lambda s: s["state"] == "idle", what="idle at the end")


async def _wait_turns(emu, n: int) -> None:
    import asyncio

    deadline = time.monotonic() + 20
    while emu.turns_received < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"the emulator got {emu.turns_received} turns, not {n}")
        await asyncio.sleep(0.05)


def test_an_operator_may_not_configure(world):
    w = world
    path = w.rig.rig.config_path
    before = path.read_bytes()
    reloaded = w.status()["uptime_s"]
    answers = w.ask("operator", {"cmd": "reload"}, {"cmd": "session.reset"},
                    {"cmd": "config.set", "key": "wake.threshold", "value": "0.6"}, {"cmd": "config.validate"})
    for cmd, a in zip(("reload", "session.reset", "config.set", "config.validate"), answers, strict=True):
        assert permission(a, cmd, w, "operator"), a
    assert path.read_bytes() == before
    assert w.status()["uptime_s"] >= reloaded
    assert w.status()["control"]["denied"] >= 4


def test_an_admin_reloads_and_resets(world):
    w = world
    events = w.rig.client.subscribe()
    try:
        answers = w.ask("admin", {"cmd": "reload"}, {"cmd": "session.reset"}, {"cmd": "config.validate"},
                        {"cmd": "status"})
        assert [a["ok"] for a in answers] == [True, True, True, True], answers
        assert answers[0]["result"]["path"] == str(w.rig.rig.config_path)
        assert answers[1]["result"] == {"reset": True}
        assert answers[2]["result"] == {"path": str(w.rig.rig.config_path), "valid": True}
    finally:
        events.close()
    # the admin may not make the daemon write its file either: edgectl does that, as the caller
    [a] = w.ask("admin", {"cmd": "config.set", "key": "wake.threshold", "value": "0.6"})
    assert a["ok"] is False and a["kind"] == "usage" and "edgectl config set" in a["error"]


def test_someone_in_neither_group_cannot_connect(world):
    assert ask_as(world.people["nobody"], world.sock, {"cmd": "status"}) == {"connect_error": "PermissionError"}
    assert (os.stat(world.sock).st_mode & 0o777) == 0o660


@pytest.mark.parametrize(("key", "value", "why"), [
    ("live.base_url", "https://some.host", "cannot be changed over the control socket"),
    ("live.ca_file", "/tmp/evil-ca.pem", "cannot be changed over the control socket"),
    ("live.api_key_file", "/tmp/k", "cannot be changed over the control socket"),
    ("audio.playback_device", "file:'|touch {marker}',raw", "ALSA's file plugin would run the rest"),
    ("audio.capture_device", "file:{marker},raw", "inline 'file' plugin"),
    ("state.dir", "/tmp", "the state section cannot be changed"),
    ("control.admin_group", "users", "the control section cannot be changed"),
])
def test_endpoint_keys_and_command_devices_are_refused_to_everyone(world, key, value, why):
    w = world
    marker = w.public / "pwned"
    value = value.format(marker=marker)
    path = w.rig.rig.config_path
    before = path.read_bytes()
    req = {"cmd": "config.set", "key": key, "value": value}
    [as_admin] = w.ask("admin", req)
    [as_operator] = w.ask("operator", req)
    as_root = w.root(**req)
    for a in (as_admin, as_root):
        assert a["ok"] is False and a["kind"] == "permission", a
        assert a["error"].startswith(f"{path}: {key}: ") and why in a["error"], a
    assert permission(as_operator, "config.set", w, "operator")
    # nothing written, nothing applied, and a reload (which reopens nothing changed) runs no command
    assert path.read_bytes() == before
    assert w.root("reload")["ok"]
    st = w.status()
    assert st["audio"]["playback_device"] == "speaker" and st["audio"]["capture_device"] == "mic"
    assert st["live"]["connected"] and not st["problems"]
    assert not marker.exists()


def test_config_validate_of_another_file_is_refused_and_never_read(world, tmp_path):
    w = world
    secret = w.public / "other.toml"
    secret.write_text('[live]\nbase_url = "https://TOPSECRET-VALUE.example"\n[wake\n')
    try:
        req = {"cmd": "config.validate", "path": str(secret)}
        answers = [w.ask("admin", req)[0], w.root(**req), w.ask("operator", req)[0]]
        for a in answers[:2]:
            assert a == {"ok": False, "kind": "usage", "error": (
                "config.validate over the socket checks only the daemon's own file: `edgectl config validate FILE` "
                "checks another one with your own permissions")}
        assert answers[2]["kind"] == "permission"
        assert all("TOPSECRET" not in json.dumps(a) for a in answers)
    finally:
        secret.unlink()


def _connect(path: Path, line: bytes | None) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(str(path))
    if line is not None:
        s.sendall(line)
    return s


def test_40_idle_subscribers_and_a_full_pool_do_not_lock_out_status(world):
    w = world
    held: list[socket.socket] = []
    try:
        answers = []
        for _ in range(40):  # idle event subscribers: 16 get in, the rest are told to come back later
            s = _connect(w.sock, b'{"cmd": "events"}\n')
            held.append(s)
            answers.append(s.makefile("rb").readline())
        assert sum(b'"subscribed"' in a for a in answers) == 16
        assert sum(b"too many event subscribers (max 16)" in a for a in answers) == 24
        assert w.root("status")["ok"]
        [a] = w.ask("operator", {"cmd": "status"})
        assert a["ok"] and a["result"]["control"]["subscribers"] == 16
        # every command slot taken by idle connections (served once, then silent)
        for _ in range(16):
            s = _connect(w.sock, b'{"cmd": "gpio.list"}\n')
            s.makefile("rb").readline()
            held.append(s)
        [a] = w.ask("operator", {"cmd": "status"})
        assert a["ok"] and a["result"]["control"]["connections"] == 16, "the status lane answers an operator"
        assert w.root("status")["ok"], "and root"
        [a] = w.ask("operator", {"cmd": "wake"})
        assert a["ok"] is False and "only status is answered now" in a["error"]
    finally:
        for s in held:
            s.close()
    w.wait(lambda s: s["control"]["subscribers"] == 0 and s["control"]["connections"] <= 1, what="slots freed")


def test_a_stalled_subscriber_is_dropped_while_another_keeps_receiving(world):
    w = world
    dropped0 = w.status()["control"]["dropped_subscribers"]
    stalled = _connect(w.sock, b'{"cmd": "events"}\n')
    assert b"subscribed" in stalled.recv(64)  # and then it reads nothing more
    follower = w.rig.client.subscribe()
    seen: list[dict[str, Any]] = []
    marker = threading.Event()

    def follow() -> None:
        for ev in follower:
            seen.append(ev)
            if ev.get("event") == "mute" and ev.get("muted") is True:
                marker.set()
                return

    reader = threading.Thread(target=follow, name="follower", daemon=True)
    reader.start()
    try:
        # a few hundred kilobytes of events: far more than the socket and transport buffers hold
        batch = b'{"cmd": "gpio.set", "name": "kitchen_light", "value": "toggle"}\n' * 100
        with _connect(w.sock, None) as s:
            f = s.makefile("rb")
            for _ in range(15):  # in batches: the answers must be read for the daemon to go on reading
                s.sendall(batch)
                assert all(json.loads(f.readline())["ok"] for _ in range(100))
        st = w.wait(lambda s: s["control"]["dropped_subscribers"] == dropped0 + 1, timeout=20,
                    what="the stalled subscriber dropped")
        assert st["control"]["subscribers"] == 1, "the follower is still subscribed"
        # an event after the drop still reaches the follower: it was never held up
        w.root("mute", on=True)
        assert marker.wait(20), "the follower stopped receiving"
        assert sum(ev.get("event") == "gpio" for ev in seen) > 0
        stalled.settimeout(20)
        try:
            while stalled.recv(1 << 20):
                pass  # what was in flight, then EOF: the daemon closed it
        except ConnectionResetError:
            pass  # closed without flushing: also closed
    finally:
        follower.close()
        stalled.close()
        reader.join(5)
        w.root("mute", on=False)
        w.root("gpio.set", name="kitchen_light", value=False)


def test_the_key_is_in_no_answer_and_not_in_the_environment(world):
    w = world
    events = w.rig.client.subscribe()
    answers = [w.root("status"), w.root("config.show"), w.root("gpio.set", name=KEY, value=True),
               w.root("config.get", key=f"live.{KEY}"), w.root("say", text=KEY),
               *w.ask("operator", {"cmd": "gpio.set", "name": KEY, "value": True}, {"cmd": "status"})]
    w.wait(lambda s: s["state"] == "idle" and s["conversation"]["text_turns"] >= 1, what="the text turn answered")
    w.root("mute", on=True)  # an event after everything above: the stream is read up to it
    w.root("mute", on=False)
    seen = []
    try:
        for ev in events:
            seen.append(ev)
            if ev.get("event") == "mute" and ev.get("muted") is False:
                break
    finally:
        events.close()
    text = json.dumps(answers) + json.dumps(seen)
    assert KEY not in text
    assert "***" in text
    assert answers[2] == {"ok": False, "kind": "not_found", "error": "no GPIO device named '***' (gpio list shows them)"}
    pid = answers[0]["result"]["pid"]
    assert KEY.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    limits = Path(f"/proc/{pid}/limits").read_text()
    core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"], core  # harden_process ran: no core file can hold the key
    w.wait(lambda s: s["state"] == "idle", what="idle after the text turn")
