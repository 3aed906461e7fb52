"""The daemon's control commands, answered by the real daemon (``edged run`` through the harness):
the shapes docs/CONTROL.md documents, its error kinds, and both faces of the control client."""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time

import pytest

from edged.control_client import AsyncControlClient, ControlClient
from edged.errors import ControlError, NotRunningError

GPIO_FIELDS = {"name", "kind", "value", "room", "description", "ok", "error"}  # keyed by id; name: the friendly name


def _settled(c, timeout: float = 30.0) -> dict:
    """The status once the daemon is idle with its Live session connected: the daemon is shared by
    the session's tests, and one that reloaded the config leaves it reconnecting for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        status = c.request("status")
        if status["state"] == "idle" and status["live"].get("connected") or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_read_only_answers(daemon):
    c, rig = daemon.client, daemon.rig
    status = _settled(c)
    assert status["state"] == "idle" and status["muted"] is False
    assert {"version", "pid", "state", "why", "uptime_s", "live", "wake", "audio", "gpio", "camera",
            "last_error"} <= set(status)
    assert status["pid"] == rig.proc.pid
    assert status["live"]["connected"] is True and status["live"]["session_id"]
    path = str(rig.config_path)
    assert c.request("config.get", key="wake.threshold") == {"key": "wake.threshold", "value": 0.5}
    section = c.request("config.get", key="wake")
    assert section["key"] == "wake" and section["value"]["models"] == ["hey_jarvis"]
    shown = c.request("config.show")
    assert set(shown) == {"path", "config", "toml"} and shown["path"] == path
    assert shown["config"]["control"]["socket"] == str(rig.socket) and "[wake]" in shown["toml"]
    assert c.request("config.validate") == {"path": path, "valid": True}
    assert c.request("reload") == {"path": path, "state": "idle"}
    devices = c.request("gpio.list")
    assert list(devices) == [d["name"] for d in rig.devices]
    assert all(set(d) == GPIO_FIELDS for d in devices.values())
    assert devices["kitchen_light"]["kind"] == "led" and devices["talk"]["kind"] == "button"
    snap = c.request("snapshot")
    assert set(snap) == {"jpeg_b64", "bytes"}
    jpeg = base64.b64decode(snap["jpeg_b64"], validate=True)
    assert jpeg[:2] == b"\xff\xd8" and len(jpeg) == snap["bytes"]


def test_changing_commands_and_their_answers(daemon):
    c, rig = daemon.client, daemon.rig
    try:
        assert c.request("gpio.set", name="kitchen_light", value=True) == {
            "name": "kitchen_light", "kind": "led", "value": True, "room": "kitchen", "description": "the light over the kitchen counter",
            "ok": True, "error": None}
        assert c.request("gpio.list")["kitchen_light"]["value"] is True
        assert c.request("gpio.set", name="kitchen_light", value="off")["value"] is False
        assert c.request("mute", on=True) == {"muted": True}
        assert c.request("status")["state"] == "muted"
        assert c.request("mute", on=None) == {"muted": False}  # null toggles
        assert c.request("mute", on=None) == {"muted": True}
        assert c.request("mute", on=False) == {"muted": False}
        daemon.call(rig.wait_state("idle", timeout=10))
        assert c.request("session.reset") == {"reset": True}
    finally:
        c.call("mute", on=False)
        c.call("gpio.set", name="kitchen_light", value=False)


def test_the_daemon_does_not_write_its_config_edgectl_does(daemon):
    """config.set is retired on the daemon (it cannot write /etc/edged): refused with the way to do it,
    nothing written, nothing applied; the rig's config_set (edgectl's code) writes and reloads."""
    c, rig = daemon.client, daemon.rig
    before = rig.config_path.read_bytes()
    answer = c.call("config.set", key="wake.threshold", value="0.6")
    assert answer == {"ok": False, "kind": "usage", "error": (
        "config.set is not done by the daemon (it never writes its configuration): `edgectl config set KEY VALUE` "
        "writes the file as you, then asks the daemon to reload")}
    assert rig.config_path.read_bytes() == before
    assert c.request("status")["wake"]["threshold"] == 0.5
    try:
        assert daemon.call(rig.config_set("wake.threshold", "0.6"))["reloaded"] is True
        assert c.request("status")["wake"]["threshold"] == 0.6
    finally:
        daemon.call(rig.config_set("wake.threshold", "0.5"))
    assert c.request("config.get", key="wake.threshold")["value"] == 0.5


@pytest.mark.parametrize(("request_", "kind", "text"), [
    ({"cmd": "nope"}, "usage", "unknown command 'nope'"),
    ({"cmd": "say"}, "usage", "missing argument 'text'"),
    ({"cmd": "say", "text": "  "}, "usage", "say needs some text"),
    ({"cmd": "config.get", "key": "x.y"}, "config", "{path}: x.y: no such key"),
    ({"cmd": "config.get", "key": 5}, "usage", "argument 'key' has the wrong type"),
    ({"cmd": "gpio.set", "name": "toaster", "value": True}, "not_found",
     "no GPIO device named 'toaster' (gpio list shows them)"),
    ({"cmd": "gpio.set", "name": "talk", "value": True}, "usage", "talk is a button (an input): it cannot be set"),
    ({"cmd": "gpio.set", "name": "kitchen_light", "value": "blue"}, "usage",
     "kitchen_light: state must be on, off or toggle (got 'blue')"),
    ({"cmd": "mute", "on": "x"}, "usage", "mute takes on: true, false or null (toggle)"),
])
def test_error_kinds(daemon, request_, kind, text):
    answer = daemon.client.call(**request_)
    assert answer == {"ok": False, "error": text.format(path=daemon.rig.config_path), "kind": kind}
    assert daemon.client.request("status")["state"] == "idle"  # nothing changed, still serving


def test_wake_refused_while_muted(daemon):
    c = daemon.client
    try:
        c.request("mute", on=True)
        assert c.call("wake") == {"ok": False, "error": "the microphone is muted", "kind": "failed"}
    finally:
        c.request("mute", on=False)
    daemon.call(daemon.rig.wait_state("idle", timeout=10))


def test_events_on_both_faces(daemon):
    """The sync and the async client each subscribe; a GPIO change set by a third reaches both."""
    rig = daemon.rig

    async def run() -> tuple[dict, dict]:
        sync_stream = await asyncio.to_thread(ControlClient(rig.socket, timeout=30).subscribe)
        async_stream = await AsyncControlClient(rig.socket).subscribe()

        def first_gpio_sync() -> dict:
            with sync_stream:
                return next(e for e in sync_stream if e["event"] == "gpio")

        async def first_gpio_async() -> dict:
            async with async_stream:
                async for e in async_stream:
                    if e["event"] == "gpio":
                        return e
            raise AssertionError("the stream ended without a gpio event")

        waiting = asyncio.gather(asyncio.to_thread(first_gpio_sync), first_gpio_async())
        # both are subscribed (acknowledged) before the change: neither may miss it
        assert (await rig.client.request("gpio.set", name="fan", value=True))["value"] is True
        return tuple(await asyncio.wait_for(waiting, 20))

    try:
        for ev in daemon.call(run()):
            assert (ev["name"], ev["value"], ev["by"]) == ("fan", True, "edgectl")
            assert isinstance(ev["time"], float) and isinstance(ev["mono"], float)
    finally:
        daemon.client.call("gpio.set", name="fan", value=False)


def test_clients_say_when_the_daemon_is_not_there(tmp_path):
    with pytest.raises(NotRunningError, match="edged is not running"):
        ControlClient(tmp_path / "none.sock").request("status")
    with pytest.raises(NotRunningError, match="edged is not running"):
        asyncio.run(AsyncControlClient(tmp_path / "none.sock").request("status"))


@pytest.mark.parametrize(("reply", "text"), [(b"not json\n", "malformed answer to status"),
                                             (b"[1]\n", "malformed answer to status"),
                                             (b"", "closed the connection without answering status")])
def test_clients_refuse_a_broken_answer(tmp_path, reply, text):
    path = tmp_path / "odd.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()

    def serve() -> None:
        for _ in range(2):  # one connection per face
            conn, _ = listener.accept()
            with conn:
                conn.makefile("rb").readline()
                conn.sendall(reply)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with pytest.raises(ControlError, match=text):
            ControlClient(path, timeout=10).request("status")
        with pytest.raises(ControlError, match=text):
            asyncio.run(AsyncControlClient(path, timeout=10).request("status"))
        t.join(10)
    finally:
        listener.close()
