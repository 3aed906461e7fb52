"""ToolRegistry: declarations, dispatch, every error path, fuzzing, pulses and cancellation."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from google.genai import types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.config import CameraConfig
from edged.tools.camera import Camera
from edged.tools.gpio import GpioBank
from edged.tools.registry import MAX_PULSE_S, ToolRegistry

from .conftest import DEVICES, gpio_config

OUTPUTS = ["kitchen_light", "desk_lamp", "mood", "heater", "beeper"]
ALL = [d["name"] for d in DEVICES] + ["status", "cam_led"]
EXTRA = [dict(name="status", kind="led", pin=26), dict(name="cam_led", kind="led", pin=16)]


class Sink:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    async def __call__(self, jpeg: bytes) -> None:
        self.frames.append(jpeg)


@pytest.fixture
def parts(factory):
    bank = GpioBank(gpio_config(EXTRA, status_led="status", camera_led="cam_led"), None, factory=factory)
    bank.start()
    cam = Camera(CameraConfig(backend="synthetic", max_side=160, watch_fps=5, watch_max_s=3),
                 led=bank.device("cam_led"))
    cam.start()
    sink = Sink()
    reg = ToolRegistry(bank, cam, sink)
    yield reg, bank, cam, sink, factory
    cam.stop()
    bank.stop()


def fc(name: str, args: dict | None = None, id: str = "call-1") -> types.FunctionCall:
    return types.FunctionCall(id=id, name=name, args=args)


def decl(reg: ToolRegistry, name: str) -> dict:
    """The declaration's parameters as the JSON the SDK sends (types.Schema, no parameters_json_schema)."""
    d = next(d for d in reg.declarations() if d.name == name)
    assert d.parameters_json_schema is None
    return d.parameters.model_dump(exclude_none=True, mode="json") if d.parameters else {}


def _no_additional_properties(node) -> bool:
    if isinstance(node, dict):
        return not ({"additionalProperties", "additional_properties"} & set(node)) and all(
            _no_additional_properties(v) for v in node.values())
    if isinstance(node, list):
        return all(_no_additional_properties(v) for v in node)
    return True


def test_declarations_schemas(parts):
    reg = parts[0]
    assert [d.name for d in reg.declarations()] == ["set_device", "read_devices", "look", "watch"]
    s = decl(reg, "set_device")
    assert s["type"] == "OBJECT"
    assert s["properties"]["device"]["enum"] == OUTPUTS  # status and camera LEDs are the daemon's
    assert s["required"] == ["device"] and _no_additional_properties(s)
    assert s["properties"]["state"]["enum"] == ["on", "off", "toggle"]
    assert (s["properties"]["brightness"]["minimum"], s["properties"]["brightness"]["maximum"]) == (0, 1)
    assert s["properties"]["duration_s"]["maximum"] == MAX_PULSE_S
    assert "desk_lamp, mood" in s["properties"]["brightness"]["description"]
    assert s["properties"]["color"]["any_of"][0]["enum"][:2] == ["white", "warm_white"]
    assert "kitchen_light: ceiling light (led, in the kitchen)" in reg.declarations()[0].description
    assert decl(reg, "read_devices")["properties"]["devices"]["items"]["enum"] == ALL
    w = decl(reg, "watch")["properties"]["seconds"]
    assert (w["minimum"], w["maximum"]) == (1, 3)
    assert decl(reg, "look") == {}  # no arguments
    tools = reg.tools()
    assert len(tools) == 1 and len(tools[0].function_declarations) == 4
    json.dumps([d.model_dump(exclude_none=True, mode="json") for d in reg.declarations()])  # serialisable


def test_setup_message_carries_the_schemas(parts):
    """What the SDK puts into the Live setup message for these tools, on the default model's profile."""
    from google.genai import _common
    from google.genai import _live_converters as conv

    from edged.config import LiveConfig
    from edged.live.wire import connect_config

    class _Client:
        vertexai = False

    cfg = connect_config(LiveConfig(), None, parts[0].tools())
    setup = _common.convert_to_dict(conv._LiveConnectParameters_to_mldev(
        api_client=_Client(), from_object=types.LiveConnectParameters(model="models/m", config=cfg)
        .model_dump(exclude_none=True)))["setup"]
    fds = setup["tools"][0]["functionDeclarations"]
    assert fds[0]["name"] == "set_device"
    assert fds[0]["parameters"]["properties"]["device"]["enum"] == OUTPUTS
    assert all("parameters_json_schema" not in f and "parametersJsonSchema" not in f for f in fds)
    assert all(f["behavior"] == "NON_BLOCKING" for f in fds)  # explicit, gemini-3.8-live's default
    assert _no_additional_properties(setup["tools"])


async def test_responses_carry_id_and_scheduling_per_tool(parts):
    reg = parts[0]
    s = types.FunctionResponseScheduling
    r = await reg.call(fc("set_device", {"device": "kitchen_light", "state": "on"}, id="a1"))
    assert (r.id, r.scheduling) == ("a1", s.WHEN_IDLE)  # confirmed when the model is free
    r = await reg.call(fc("read_devices", {}, id="a2"))
    assert (r.id, r.scheduling) == ("a2", s.INTERRUPT)  # the answer itself: at once
    r = await reg.call(fc("look", {}, id="a3"))
    assert (r.id, r.scheduling) == ("a3", s.INTERRUPT)
    r = await reg.call(fc("set_device", {"device": "nope"}, id="a4"))  # errors keep the tool's scheduling
    assert r.id == "a4" and "error" in r.response and r.scheduling == s.WHEN_IDLE
    r = await reg.call(fc("no_such", {}, id="a5"))
    assert r.id == "a5" and r.scheduling == s.WHEN_IDLE


def test_no_camera_no_camera_tools(factory):
    bank = GpioBank(gpio_config(), None, factory=factory)
    bank.start()
    try:
        reg = ToolRegistry(bank, Camera(CameraConfig(backend="none")), Sink())
        assert [d.name for d in reg.declarations()] == ["set_device", "read_devices"]
        reg2 = ToolRegistry(None, None, Sink())
        assert reg2.declarations() == [] and reg2.tools() == []
    finally:
        bank.stop()


async def test_set_device_success(parts):
    reg, bank, _, _, f = parts
    r = await reg.call(fc("set_device", {"device": "kitchen_light", "state": "on"}))
    assert r.id == "call-1" and r.name == "set_device"
    assert r.response == {"device": "kitchen_light", "kind": "led", "room": "kitchen", "state": "on"}
    assert f.pin(17).state == 1
    r = await reg.call(fc("set_device", {"device": "desk_lamp", "brightness": 0.4}))
    assert r.response["state"] == "on" and r.response["brightness"] == 0.4
    assert f.pin(18).state == pytest.approx(0.4)
    r = await reg.call(fc("set_device", {"device": "mood", "color": "red", "brightness": 0.5}))
    assert r.response["color"] == "#800000" and r.response["brightness"] == 0.5
    assert [f.pin(p).state for p in (5, 6, 13)] == pytest.approx([0.5, 0, 0])
    r = await reg.call(fc("set_device", {"device": "mood", "color": "#00ff00"}))
    assert [f.pin(p).state for p in (5, 6, 13)] == pytest.approx([0, 1, 0])
    r = await reg.call(fc("set_device", {"device": "mood", "state": "toggle"}))
    assert r.response["state"] == "off"
    r = await reg.call(fc("set_device", {"device": "mood", "state": "on"}))  # back to its last colour
    assert r.response["color"] == "#00ff00"
    r = await reg.call(fc("set_device", {"device": "heater", "state": "on"}))
    assert f.pin(22).state == 0  # active low


async def test_read_devices(parts):
    reg, _, _, _, f = parts
    f.pin(24).drive_low()
    r = await reg.call(fc("read_devices", {"devices": ["doorbell", "heater"]}))
    assert r.response == {"devices": {
        "doorbell": {"device": "doorbell", "kind": "button", "room": "hall", "state": "pressed"},
        "heater": {"device": "heater", "kind": "relay", "room": "bathroom", "state": "off"}}}
    r = await reg.call(fc("read_devices", None))
    assert set(r.response["devices"]) == set(ALL)


@pytest.mark.parametrize("name,args,needle", [
    ("fly", {}, "unknown function 'fly'"),
    ("set_device", {}, "device must be one of"),
    ("set_device", {"device": "toaster", "state": "on"}, "device must be one of kitchen_light"),
    ("set_device", {"device": "status", "state": "on"}, "device must be one of"),
    ("set_device", {"device": "doorbell", "state": "on"}, "device must be one of"),
    ("set_device", {"device": "kitchen_light"}, "give state"),
    ("set_device", {"device": "kitchen_light", "state": "dim"}, "state must be on, off or toggle"),
    ("set_device", {"device": "kitchen_light", "state": 1}, "state must be on, off or toggle"),
    ("set_device", {"device": "kitchen_light", "brightness": 0.5}, "cannot be dimmed"),
    ("set_device", {"device": "desk_lamp", "brightness": 2}, "brightness must be from 0 to 1"),
    ("set_device", {"device": "desk_lamp", "brightness": "half"}, "brightness must be a number"),
    ("set_device", {"device": "desk_lamp", "brightness": True}, "brightness must be a number"),
    ("set_device", {"device": "desk_lamp", "brightness": math.nan}, "brightness must be from 0 to 1"),
    ("set_device", {"device": "desk_lamp", "color": "red"}, "has no colour"),
    ("set_device", {"device": "mood", "color": "chartreuse-ish"}, "color must be one of"),
    ("set_device", {"device": "mood", "color": "#12345"}, "color must be one of"),
    ("set_device", {"device": "beeper", "state": "on", "duration_s": 1e9}, "duration_s must be from 0.1"),
    ("set_device", {"device": "beeper", "state": "on", "volume": 3}, "unexpected argument 'volume'"),
    ("read_devices", {"devices": ["nope"]}, "devices must be a list of"),
    ("read_devices", {"devices": "doorbell"}, "devices must be a list of"),
    ("look", {"zoom": 2}, "takes no arguments"),
    ("watch", {}, "seconds is required"),
    ("watch", {"seconds": 99}, "seconds must be from 1 to 3"),
    ("watch", {"seconds": -1}, "seconds must be from 1 to 3"),
])
async def test_errors_are_function_responses(parts, name, args, needle):
    reg = parts[0]
    r = await reg.call(fc(name, args, id="e-1"))
    assert isinstance(r, types.FunctionResponse) and r.id == "e-1" and r.name == name
    assert set(r.response) == {"error"} and needle in r.response["error"], r.response


async def test_rate_limit_and_device_failure_are_error_responses(factory):
    from edged.config import GpioConfig, GpioDevice

    cfg = GpioConfig(devices=[GpioDevice(name="fan", kind="relay", pin=4, min_interval_s=60),
                              GpioDevice(name="lamp", kind="led", pin=7)])
    bank = GpioBank(cfg, None, factory=factory, retry_initial_s=30)
    bank.start()
    try:
        reg = ToolRegistry(bank, None, Sink())
        assert "state" in (await reg.call(fc("set_device", {"device": "fan", "state": "on"}))).response
        r = await reg.call(fc("set_device", {"device": "fan", "state": "off"}, id="x"))
        assert r.id == "x" and "at most once every 60 s" in r.response["error"]
        assert factory.pin(4).state == 1
        bank.device("lamp").close()
        r = await reg.call(fc("set_device", {"device": "lamp", "state": "on"}, id="y"))
        assert r.id == "y" and "lamp (pin 7)" in r.response["error"]
        r = await reg.call(fc("set_device", {"device": "lamp", "state": "on"}, id="z"))
        assert "lamp is not working" in r.response["error"]
        r = await reg.call(fc("read_devices", {"devices": ["lamp"]}))
        assert r.response["devices"]["lamp"]["ok"] is False
    finally:
        bank.stop()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from(ALL + ["on", "off", "toggle", "red", "#ff00ff"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10)
arg_keys = st.sampled_from(["device", "state", "brightness", "color", "duration_s", "devices", "seconds",
                            "x", ""])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["set_device", "read_devices", "look", "watch", "nope", ""]),
       args=st.none() | st.dictionaries(arg_keys, json_values, max_size=5))
def test_fuzz_never_raises(parts, name, args):
    reg, bank = parts[0], parts[1]
    for s in bank._slots.values():  # no rate limits here; keep pulses short so none outlive the test
        s.last_set = -math.inf
    if isinstance(args, dict) and isinstance(args.get("seconds"), int | float):
        args["seconds"] = min(args["seconds"], 1.2) if not isinstance(args["seconds"], bool) else True

    async def run():
        r = await reg.call(fc(name, args, id="fz"))
        await reg.close()
        return r

    r = asyncio.run(run())
    assert isinstance(r, types.FunctionResponse) and r.id == "fz" and r.name == name
    assert isinstance(r.response, dict) and r.response
    assert ("error" in r.response) != ("device" in r.response or "devices" in r.response
                                       or "camera" in r.response)
    json.dumps(r.response)


async def test_duration_pulse_restores(parts):
    reg, _, _, _, f = parts
    r = await reg.call(fc("set_device", {"device": "beeper", "state": "on", "duration_s": 0.2}))
    assert r.response["for_s"] == 0.2 and r.response["then"] == "off" and f.pin(23).state == 1
    for _ in range(200):
        if f.pin(23).state == 0:
            break
        await asyncio.sleep(0.05)
    assert f.pin(23).state == 0


async def test_cancel_undoes_pulse(parts):
    reg, _, _, _, f = parts
    r = await reg.call(fc("set_device", {"device": "kitchen_light", "state": "on", "duration_s": 300}, id="p1"))
    assert r.response["state"] == "on" and f.pin(17).state == 1
    reg.cancel(["p1"])
    for _ in range(200):
        if f.pin(17).state == 0:
            break
        await asyncio.sleep(0.02)
    assert f.pin(17).state == 0
    assert reg._pulses == {}


async def test_cancel_before_call_gives_no_response(parts):
    reg, _, _, _, f = parts
    reg.cancel(["c9"])
    assert await reg.call(fc("set_device", {"device": "kitchen_light", "state": "on"}, id="c9")) is None
    assert f.pin(17).state == 0


async def test_look_sends_one_frame(parts):
    reg, _, _, sink, f = parts
    r = await reg.call(fc("look", {}))
    assert r.response["frames_sent"] == 1 and len(sink.frames) == 1
    assert sink.frames[0][:2] == b"\xff\xd8"
    assert f.pin(16).state == 0  # camera LED off again
    f.pin(16).assert_states([0, 1, 0])  # and it was on while the frame was taken


async def test_watch_sends_about_seconds_times_fps(parts):
    reg, _, _, sink, f = parts
    r = await reg.call(fc("watch", {"seconds": 1}, id="w1"))
    assert r.response["frames_sent"] == 5 == len(sink.frames)  # 1 s at 5 fps
    assert len(set(sink.frames)) == 5  # every frame differs
    f.pin(16).assert_states([0, 1, 0])


async def test_watch_cancelled_stops_and_returns_none(parts):
    reg, _, _, sink, _ = parts
    task = asyncio.create_task(reg.call(fc("watch", {"seconds": 3}, id="w2")))
    for _ in range(500):
        if sink.frames:
            break
        await asyncio.sleep(0.01)
    reg.cancel(["w2"])
    assert await asyncio.wait_for(task, 10) is None
    n = len(sink.frames)
    assert 1 <= n < 15
    await asyncio.sleep(0.5)
    assert len(sink.frames) == n  # nothing more was sent


async def test_camera_failure_is_an_error_response(parts):
    reg, _, cam, sink, _ = parts
    cam.break_("sensor unplugged")
    r = await reg.call(fc("look", {}, id="l1"))
    assert r.id == "l1" and "sensor unplugged" in r.response["error"] and sink.frames == []
    r = await reg.call(fc("watch", {"seconds": 1}, id="l2"))
    assert "sensor unplugged" in r.response["error"] and "after 0 frames" in r.response["error"]
    cam.repair()
    assert (await reg.call(fc("look", {}))).response["frames_sent"] == 1


async def test_send_video_failure_is_an_error_response(parts):
    _, bank, cam, _, _ = parts

    async def broken(jpeg: bytes) -> None:
        raise ConnectionError("socket closed")

    reg = ToolRegistry(bank, cam, broken)
    r = await reg.call(fc("look", {}))
    assert "could not be sent" in r.response["error"] and "socket closed" in r.response["error"]
