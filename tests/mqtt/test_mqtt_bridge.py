"""The bridge against a real mosquitto, with a client playing Home Assistant and the port over a
real GpioBank on gpiozero's MockFactory."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from edged import __version__
from edged.mqtt import discovery
from edged.mqtt.entities import SPEAKER_STATES
from tests.waiting import until

from .conftest import HA, Broker, Rig, mqtt_cfg

DISC = "homeassistant/device/{}/config"


@pytest.fixture
async def rig(broker: Broker, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    dev_id = "t_" + request.node.name[:40].replace("[", "_").replace("]", "_")
    r = Rig(mqtt_cfg(broker, dev_id), volume=False)
    await r.start()
    await until(lambda: r.bridge.connected, what="the bridge to connect")
    yield r
    await r.stop()


def base(r: Rig) -> str:
    return r.bridge.status()["base_topic"]


async def discovered(ha: HA, r: Rig) -> dict:
    topic = DISC.format(r.bridge.status()["device_id"])
    await ha.sub(topic)
    return json.loads(await ha.wait(topic, lambda p: bool(p)))


def cmp_of(doc: dict, key: str) -> dict:
    hits = [c for cid, c in doc["cmps"].items() if cid.startswith(key + "_") and set(c) != {"p"}]
    assert len(hits) == 1, f"{key}: {list(doc['cmps'])}"
    return hits[0]


async def test_discovery_payload_is_valid_for_home_assistant(ha: HA, rig: Rig) -> None:
    doc = await discovered(ha, rig)
    assert discovery.problems(doc) == []
    assert doc["o"] == {"name": "edged", "sw": __version__}
    assert doc["dev"]["name"] == "Test speaker" and doc["dev"]["ids"]
    assert doc["avty_t"] == f"{base(rig)}/availability"
    for cid, c in doc["cmps"].items():
        for key in discovery.REQUIRED[c["p"]]:
            assert key in c, f"{cid} ({c['p']}) lacks {key}"
        assert c["unique_id"].startswith("edged_")
    assert len({c["unique_id"] for c in doc["cmps"].values()}) == len(doc["cmps"])
    # GPIO devices, by kind
    light = cmp_of(doc, "gpio_kitchen_light")
    assert (light["p"], light["schema"], light["supported_color_modes"], light["name"]) == \
        ("light", "json", ["onoff"], "Kitchen light")
    assert cmp_of(doc, "gpio_desk_lamp")["supported_color_modes"] == ["brightness"]
    assert cmp_of(doc, "gpio_mood")["supported_color_modes"] == ["rgb"]
    assert cmp_of(doc, "gpio_heater")["p"] == "switch"
    assert cmp_of(doc, "gpio_beeper")["p"] == "switch"
    motion = cmp_of(doc, "gpio_hall_motion")
    assert (motion["p"], motion["device_class"]) == ("binary_sensor", "motion")
    assert cmp_of(doc, "gpio_back_door")["p"] == "binary_sensor"
    bell = cmp_of(doc, "gpio_doorbell")
    assert (bell["p"], bell["event_types"]) == ("event", ["press", "release"])
    assert not [cid for cid in doc["cmps"] if cid.startswith("gpio_status_")], "the status LED is the daemon's"
    # the speaker
    state = cmp_of(doc, "speaker_state")
    assert (state["p"], state["device_class"], state["options"]) == ("sensor", "enum", list(SPEAKER_STATES))
    assert cmp_of(doc, "speaker_mute")["p"] == "switch"
    assert cmp_of(doc, "speaker_volume")["p"] == "number"
    assert cmp_of(doc, "speaker_listen")["p"] == "button"
    assert cmp_of(doc, "speaker_announce")["p"] == "notify"
    assert cmp_of(doc, "speaker_live")["p"] == "sensor"
    assert cmp_of(doc, "speaker_problem")["device_class"] == "problem"
    assert cmp_of(doc, "speaker_wake")["p"] == "event"
    assert cmp_of(doc, "speaker_timers")["p"] == "sensor"
    # privacy: no transcripts, no camera unless asked for
    assert not [cid for cid in doc["cmps"] if "transcript" in cid or "camera" in cid or "snapshot" in cid]
    # retained, with availability online
    await ha.sub(f"{base(rig)}/availability")
    assert await ha.wait(f"{base(rig)}/availability") == b"online"
    assert ha.msgs[DISC.format(rig.bridge.status()["device_id"])][0][1] is True  # retained


def test_discovery_problems_catches_missing_keys() -> None:
    """The validity check itself goes red on what Home Assistant would refuse."""
    doc = {"dev": {"ids": ["x"]}, "o": {"name": "edged"},
           "cmps": {"a": {"p": "switch", "unique_id": "u1", "state_topic": "s"},
                    "b": {"p": "event", "unique_id": "u2", "state_topic": "t"},
                    "c": {"p": "sensor", "state_topic": "s"},
                    "d": {"p": "sensor", "unique_id": "u4", "state_topic": "s", "device_class": "enum"},
                    "e": {"p": "light"}}}
    got = discovery.problems(doc)
    assert "cmps.a: switch requires command_topic" in got
    assert "cmps.b: event requires event_types" in got
    assert "cmps.c: unique_id is required" in got
    assert "cmps.d: an enum sensor requires options" in got
    assert not [p for p in got if p.startswith("cmps.e")], "a component with only p is a tombstone"
    assert discovery.problems({"cmps": {}}) == ["dev: needs identifiers (ids) or connections",
                                                "o: the origin needs a name", "cmps: no components"]


async def test_light_from_home_assistant_drives_the_pin_and_the_state_follows(ha: HA, rig: Rig) -> None:
    b = base(rig)
    await ha.sub(f"{b}/gpio/#")
    assert json.loads(await ha.wait(f"{b}/gpio/kitchen_light"))["state"] == "OFF"
    await ha.pub(f"{b}/gpio/kitchen_light/set", json.dumps({"state": "ON"}))
    await until(lambda: rig.pin(17).state, what="pin 17 high")
    assert json.loads(await ha.wait(f"{b}/gpio/kitchen_light", lambda p: b'"ON"' in p))["state"] == "ON"
    # dimmable: brightness 0..255 -> PWM level
    await ha.pub(f"{b}/gpio/desk_lamp/set", json.dumps({"state": "ON", "brightness": 51}))
    await until(lambda: abs(rig.pin(18).state - 0.2) < 1e-6, what="pin 18 at 20 %")
    st = json.loads(await ha.wait(f"{b}/gpio/desk_lamp", lambda p: b'"ON"' in p))
    assert (st["brightness"], st["color_mode"]) == (51, "brightness")
    # RGB: colour at a brightness
    await ha.pub(f"{b}/gpio/mood/set", json.dumps({"state": "ON", "color": {"r": 255, "g": 0, "b": 127},
                                                   "brightness": 255}))
    await until(lambda: rig.pin(5).state == 1.0 and abs(rig.pin(13).state - 127 / 255) < 1e-3,
                what="the RGB pins")
    assert rig.pin(6).state == 0
    st = json.loads(await ha.wait(f"{b}/gpio/mood", lambda p: b'"ON"' in p))
    assert st["color"] == {"r": 255, "g": 0, "b": 127}
    # a switch
    await ha.pub(f"{b}/gpio/beeper/set", "ON")
    await until(lambda: rig.pin(23).state, what="pin 23 high")
    await ha.wait(f"{b}/gpio/beeper", lambda p: p == b"ON")
    # the light off again
    await ha.pub(f"{b}/gpio/kitchen_light/set", json.dumps({"state": "OFF"}))
    await until(lambda: not rig.pin(17).state, what="pin 17 low")
    await ha.wait(f"{b}/gpio/kitchen_light", lambda p: b'"OFF"' in p, after=1)


async def test_inputs_motion_and_button_reach_home_assistant(ha: HA, rig: Rig) -> None:
    b = base(rig)
    await ha.sub(f"{b}/gpio/#")
    await ha.wait(f"{b}/gpio/hall_motion", lambda p: p == b"OFF")
    rig.pin(25).drive_high()
    await ha.wait(f"{b}/gpio/hall_motion", lambda p: p == b"ON")
    rig.pin(25).drive_low()
    await ha.wait(f"{b}/gpio/hall_motion", lambda p: p == b"OFF", after=1)
    rig.pin(26).drive_low()  # digital_input with pull-up: low = active
    await ha.wait(f"{b}/gpio/back_door", lambda p: p == b"ON")
    rig.pin(24).drive_low()  # the button, pull-up: pressed
    press = json.loads(await ha.wait(f"{b}/gpio/doorbell"))
    rig.pin(24).drive_high()
    n = ha.count(f"{b}/gpio/doorbell")
    release = json.loads(await ha.wait(f"{b}/gpio/doorbell", after=n - 1 if n > 1 else 1))
    assert (press["event_type"], release["event_type"]) == ("press", "release")
    assert not any(retained for _, retained in ha.msgs[f"{b}/gpio/doorbell"]), "events are not retained"


async def test_speaker_commands_go_through_the_port(ha: HA, rig: Rig) -> None:
    b = base(rig)
    await ha.sub(f"{b}/speaker/#")
    await ha.wait(f"{b}/speaker/mute", lambda p: p == b"OFF")
    await ha.pub(f"{b}/speaker/mute/set", "ON")
    await ha.wait(f"{b}/speaker/mute", lambda p: p == b"ON")
    assert rig.calls["mute"] == [True]
    # the state sensor follows the daemon's state events
    rig.state = "muted"
    rig.hub.publish({"event": "state", "state": "muted"})
    await ha.wait(f"{b}/speaker/state", lambda p: p == b"muted")
    await ha.pub(f"{b}/speaker/announce", "Dinner is ready")
    await until(lambda: rig.calls["say"], what="the announcement")
    assert "Dinner is ready" in rig.calls["say"][0] and "exactly as written" in rig.calls["say"][0]
    await ha.pub(f"{b}/speaker/listen/press", "PRESS")
    await until(lambda: rig.calls["turn"], what="a turn")
    assert rig.calls["turn"] == ["mqtt"]
    # problems and the Live connection
    rig.problems["capture"] = "no microphone"
    rig.live = "reconnecting"
    rig.hub.publish({"event": "error", "message": "capture: no microphone"})
    await ha.wait(f"{b}/speaker/problem", lambda p: p == b"ON")
    assert json.loads(await ha.wait(f"{b}/speaker/problem/attributes", lambda p: b"capture" in p)) == \
        {"problems": {"capture": "no microphone"}}
    await ha.wait(f"{b}/speaker/live", lambda p: p == b"reconnecting")
    # a cleared problem: Problems' `recovered` event brings the sensor back at once (not at the resync)
    assert rig.bridge.resync_s >= 30
    n = ha.count(f"{b}/speaker/problem")
    rig.problems.clear()
    rig.hub.publish({"event": "recovered", "part": "capture", "was": "no microphone"})
    await ha.wait(f"{b}/speaker/problem", lambda p: p == b"OFF", after=n)
    # a wake word detection is an event; a turn opened otherwise is not
    rig.hub.publish({"event": "wake", "source": "button"})
    rig.hub.publish({"event": "wake", "model": "hey_jarvis", "score": 0.91, "source": "wake_word"})
    ev = json.loads(await ha.wait(f"{b}/speaker/wake"))
    assert ev == {"event_type": "detected", "model": "hey_jarvis", "score": 0.91}
    assert ha.count(f"{b}/speaker/wake") == 1
    # timers
    rig.timers.append({"name": "pasta", "remaining_s": 540})
    rig.hub.publish({"event": "timer", "name": "pasta"})
    await ha.wait(f"{b}/speaker/timers", lambda p: p == b"1")


async def test_bad_payloads_never_crash_and_the_true_state_is_published_again(ha: HA, rig: Rig) -> None:
    b = base(rig)
    await ha.sub(f"{b}/gpio/#", f"{b}/speaker/#")
    for t in ("gpio/kitchen_light", "gpio/heater", "speaker/mute", "speaker/volume"):
        await ha.wait(f"{b}/{t}")
    cases = [
        ("gpio/kitchen_light/set", "gpio/kitchen_light", b"not json"),
        ("gpio/kitchen_light/set", "gpio/kitchen_light", b'{"state": "MAYBE"}'),
        ("gpio/desk_lamp/set", "gpio/desk_lamp", b'{"state": "ON", "brightness": 9000}'),
        ("gpio/mood/set", "gpio/mood", b'{"state": "ON", "color": {"r": "red"}}'),
        ("gpio/heater/set", "gpio/heater", b"\xff\xfe\x00"),
        ("gpio/heater/set", "gpio/heater", b"ON" * 5000),
        ("speaker/mute/set", "speaker/mute", b"perhaps"),
        ("speaker/volume/set", "speaker/volume", b"NaN"),
        ("speaker/volume/set", "speaker/volume", b"40"),  # no volume control: the port refuses
    ]
    for cmd, state, payload in cases:
        n = ha.count(f"{b}/{state}")
        truth = ha.last(f"{b}/{state}")
        await ha.pub(f"{b}/{cmd}", payload)
        again = await ha.wait(f"{b}/{state}", after=n)
        assert again == truth, f"{payload[:20]!r} on {cmd}"
    assert rig.bridge.stats["refused"] == len(cases)
    assert rig.calls["mute"] == [] and not rig.pin(17).state and not rig.pin(22).state
    # still working
    await ha.pub(f"{b}/gpio/heater/set", "ON")
    await until(lambda: rig.pin(22).state, what="the heater on")
    # the rate limit (min_interval_s = 30) applies as it does for the model and edgectl
    n = ha.count(f"{b}/gpio/heater")
    await ha.wait(f"{b}/gpio/heater", lambda p: p == b"ON", after=n - 1)
    n = ha.count(f"{b}/gpio/heater")
    await ha.pub(f"{b}/gpio/heater/set", "OFF")
    assert await ha.wait(f"{b}/gpio/heater", after=n) == b"ON"
    assert rig.pin(22).state
    # the daemon's own status LED is not Home Assistant's to drive
    await ha.pub(f"{b}/gpio/status/set", json.dumps({"state": "ON"}))
    await ha.pub(f"{b}/gpio/heater/set", "garbage")  # a marker: handled after the one before
    await until(lambda: rig.bridge.stats["refused"] == len(cases) + 2, what="the marker")
    assert not rig.pin(27).state


async def test_home_assistant_online_gets_discovery_and_state_again(ha: HA, rig: Rig) -> None:
    b = base(rig)
    topic = DISC.format(rig.bridge.status()["device_id"])
    await ha.sub(topic, f"{b}/speaker/state")
    await ha.wait(topic)
    await ha.wait(f"{b}/speaker/state")
    n_disc, n_state = ha.count(topic), ha.count(f"{b}/speaker/state")
    await ha.pub("homeassistant/status", "offline")
    await ha.pub("homeassistant/status", "online")
    await ha.wait(topic, after=n_disc)
    await ha.wait(f"{b}/speaker/state", after=n_state)
    assert rig.bridge.stats["rediscoveries"] == 1
    assert not ha.msgs[topic][-1][1], "delivered live, not from the retained store"


async def test_transcripts_and_camera_only_when_enabled(broker: Broker, ha: HA) -> None:
    off = Rig(mqtt_cfg(broker, "t_privacy_off"), devices=[], camera=True)
    on = Rig(mqtt_cfg(broker, "t_privacy_on", share_transcripts=True, camera=True), devices=[], camera=True)
    for r in (off, on):
        await r.start()
    try:
        await until(lambda: off.bridge.connected and on.bridge.connected, what="both bridges")
        await ha.sub("edged/t_privacy_off/#", "edged/t_privacy_on/#")
        await ha.wait("edged/t_privacy_on/speaker/state")
        for r in (off, on):
            r.hub.publish({"event": "transcript", "role": "user", "text": "what is the weather"})
        await ha.wait("edged/t_privacy_on/speaker/transcript", lambda p: p == b"what is the weather")
        doc_off = await discovered(ha, off)
        doc_on = await discovered(ha, on)
        assert not [c for c in doc_off["cmps"] if "transcript" in c or "camera" in c]
        assert cmp_of(doc_on, "speaker_camera")["p"] == "camera"
        # a snapshot is taken only when asked, and only where camera = true
        await ha.pub("edged/t_privacy_on/speaker/snapshot/press", "PRESS")
        assert await ha.wait("edged/t_privacy_on/speaker/camera") == b"\xff\xd8fake-jpeg\xff\xd9"
        await ha.pub("edged/t_privacy_off/speaker/snapshot/press", "PRESS")
        await ha.pub("edged/t_privacy_off/speaker/mute/set", "ON")  # a marker handled after it
        await until(lambda: off.calls["mute"], what="the marker")
        assert not [t for t in ha.msgs if t.startswith("edged/t_privacy_off/") and
                    ("transcript" in t or "camera" in t)]
        assert off.calls["snapshot"] == [] and on.calls["snapshot"] == [True]
    finally:
        for r in (off, on):
            await r.stop()


async def test_removed_device_is_removed_from_home_assistant(broker: Broker, ha: HA) -> None:
    """A device dropped from the config: its component becomes {"p": platform} (Home Assistant
    removes it), its retained state is cleared; both on a reload and after a restart."""
    two = [dict(name="lamp", kind="led", pin=17), dict(name="fan", kind="relay", pin=22)]
    topic = DISC.format("t_removal")
    await ha.sub(topic, "edged/t_removal/gpio/#")
    first = Rig(mqtt_cfg(broker, "t_removal"), devices=two)
    await first.start()
    await ha.wait("edged/t_removal/gpio/fan", lambda p: p == b"OFF")
    assert cmp_of(json.loads(await ha.wait(topic)), "gpio_fan")["p"] == "switch"
    await first.stop()
    # a restart with the fan gone from the config: the retained payload tells what was there
    second = Rig(mqtt_cfg(broker, "t_removal"), devices=two[:1])
    await second.start()
    try:
        doc = json.loads(await ha.wait(topic, lambda p: b'"gpio_fan_switch":{"p":"switch"}' in p))
        assert discovery.problems(doc) == []
        assert "gpio_lamp_light" in discovery.live_components(doc)
        await ha.wait("edged/t_removal/gpio/fan", lambda p: p == b"")  # retained state cleared
        # a reload that drops the lamp too (the port's devices change, then the daemon says "reloaded")
        second.port._gpio = None
        second.hub.publish({"event": "reloaded", "sections": ["gpio"]})
        doc = json.loads(await ha.wait(topic, lambda p: b'"gpio_lamp_light":{"p":"light"}' in p))
        assert "gpio_lamp_light" not in discovery.live_components(doc)
        await ha.wait("edged/t_removal/gpio/lamp", lambda p: p == b"")
    finally:
        await second.stop()


async def test_reconfigure_reconnects_without_a_restart(broker: Broker, ha: HA) -> None:
    r = Rig(mqtt_cfg(broker, "t_reconf_a"), devices=[])
    await r.start()
    try:
        await ha.sub(DISC.format("t_reconf_a"), DISC.format("t_reconf_b"), "edged/+/availability")
        await ha.wait("edged/t_reconf_a/availability", lambda p: p == b"online")
        assert await r.bridge.reconfigure(r.bridge.cfg) is False  # unchanged: nothing happens
        assert await r.bridge.reconfigure(mqtt_cfg(broker, "t_reconf_b")) is True
        await ha.wait("edged/t_reconf_a/availability", lambda p: p == b"offline")
        await ha.wait(DISC.format("t_reconf_a"), lambda p: p == b"")  # the old device is removed
        await ha.wait(DISC.format("t_reconf_b"), lambda p: bool(p))
        await ha.wait("edged/t_reconf_b/availability", lambda p: p == b"online")
        assert r.bridge.status()["device_id"] == "t_reconf_b" and r.bridge.connected
        disabled = mqtt_cfg(broker, "t_reconf_b").model_copy(update={"enabled": False})
        assert await r.bridge.reconfigure(disabled) is True
        await ha.wait("edged/t_reconf_b/availability", lambda p: p == b"offline")
        assert not r.bridge.connected and r.bridge.status()["enabled"] is False
    finally:
        await r.stop()
