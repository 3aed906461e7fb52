"""Home Assistant and the real daemon: ``edged run`` (edged/dev/rig.py: the Live emulator, ALSA file
devices, gpiozero's mock pins) with [mqtt] on, a real mosquitto started here, and an aiomqtt client
playing Home Assistant.  One daemon serves the module; the tests run in file order and the last
ones restart the broker, stop the daemon and kill it."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import tomli_w

from edged import ctl_status
from edged.dev.rig import DEMO_DEVICES, Rig
from edged.mqtt import discovery
from edged.sim import speech as sim_speech
from edged.sim.scenario import Scenario

from .conftest import HA, Broker
from .daemon_rig import BASE, DEV_ID, eventually, home_assistant, mqtt_section, running, until

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]

DISC = f"homeassistant/device/{DEV_ID}/config"
AVAIL = f"{BASE}/availability"
LIGHT = f"{BASE}/gpio/kitchen_light"
FAN = f"{BASE}/gpio/fan"
STATE = f"{BASE}/speaker/state"
MUTE = f"{BASE}/speaker/mute"
LISTEN = f"{BASE}/speaker/listen/press"
ANNOUNCE = f"{BASE}/speaker/announce"
REPLY = "Here is the announcement."


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig(broker: Broker, models_dir, tmp_path_factory) -> AsyncIterator[Rig]:
    async with running(tmp_path_factory.mktemp("mqtt-daemon"), models_dir, broker,
                       Scenario([[{"say": REPLY}]]), turn={"no_speech_timeout_s": 3.0}) as r:
        yield r


@pytest_asyncio.fixture(loop_scope="module")
async def hass(broker: Broker) -> AsyncIterator[HA]:
    async with home_assistant(broker, DISC, f"{BASE}/#") as client:
        yield client


async def gpio(rig: Rig) -> dict:
    """``edgectl gpio list``: the daemon's pins."""
    answer = await rig.request("gpio.list")
    assert answer["ok"], answer
    return answer["result"]


def write_config(rig: Rig) -> None:
    rig.config_path.write_text(tomli_w.dumps(rig.config_dict()))


async def reload(rig: Rig) -> None:
    answer = await rig.request("reload")
    assert answer["ok"], answer


# ---- discovery -------------------------------------------------------------------------------------
async def test_discovery_from_the_daemon_is_valid(rig: Rig, hass: HA) -> None:
    doc = json.loads(await hass.wait(DISC, bool))
    assert discovery.problems(doc) == []
    for cid, c in doc["cmps"].items():
        for key in discovery.REQUIRED[c["p"]]:
            assert key in c, f"{cid} ({c['p']}) lacks {key}"
    assert doc["dev"]["name"] == "Kitchen speaker" and doc["avty_t"] == AVAIL
    ids = set(doc["cmps"])
    assert {"gpio_kitchen_light_light", "gpio_fan_switch", "gpio_talk_event", "speaker_state_sensor",
            "speaker_mute_switch", "speaker_listen_button", "speaker_announce_notify", "speaker_volume_number",
            "speaker_timers_sensor", "speaker_problem_binary_sensor", "speaker_live_sensor"} <= ids
    # the LEDs the daemon drives itself are not Home Assistant's; privacy: no camera, no transcripts
    assert not {"gpio_status_light", "gpio_camera_light_light", "speaker_camera_camera",
                "speaker_transcript_sensor"} & ids
    await hass.wait(AVAIL, lambda p: p == b"online")
    await hass.wait(STATE, lambda p: p == b"idle")
    await hass.wait(MUTE, lambda p: p == b"OFF")
    await hass.wait(f"{BASE}/speaker/live", lambda p: p.startswith(b"connected"))
    st = await rig.status()
    assert st["mqtt"]["discovery_topic"] == DISC and st["mqtt"]["base_topic"] == BASE
    assert "password" not in json.dumps(st["mqtt"])
    assert _mqtt_row(st) == f"connected, 127.0.0.1:{rig.overrides['mqtt']['port']}"  # edgectl status


def _mqtt_row(st: dict) -> str:
    rows = [ln.split(":", 1)[1].strip() for ln in ctl_status.summary(st).splitlines() if ln.strip().startswith("MQTT:")]
    assert len(rows) == 1
    return rows[0]


# ---- commands ----------------------------------------------------------------------------------------
async def test_a_light_switched_from_home_assistant_drives_the_pin(rig: Rig, hass: HA) -> None:
    assert not (await gpio(rig))["kitchen_light"]["value"]
    n = hass.count(LIGHT)
    await hass.pub(f"{LIGHT}/set", json.dumps({"state": "ON"}))
    await until(lambda: _value(rig, "kitchen_light", True), "the daemon's pin to go on")
    await hass.wait(LIGHT, lambda p: json.loads(p)["state"] == "ON", after=n)
    n = hass.count(LIGHT)
    await hass.pub(f"{LIGHT}/set", json.dumps({"state": "OFF"}))
    await until(lambda: _value(rig, "kitchen_light", False), "the daemon's pin to go off")
    await hass.wait(LIGHT, lambda p: json.loads(p)["state"] == "OFF", after=n)


async def _value(rig: Rig, name: str, on: bool) -> bool:
    return bool((await gpio(rig))[name]["value"]) is on


async def test_announce_is_a_text_turn_and_its_reply_is_played(rig: Rig, hass: HA) -> None:
    before = len(rig.emu.frames_of("client_content"))
    wav = rig.wavs[-1]
    played_before = wav.stat().st_size
    n = hass.count(STATE)
    await hass.pub(ANNOUNCE, "The laundry is done.")
    frames = await rig.emu.wait_frames("client_content", n=before + 1, timeout=20)
    sent = json.dumps(frames[-1].data)
    assert "The laundry is done." in sent and "exactly as written" in sent
    await hass.wait(STATE, lambda p: p == b"speaking", after=n, timeout=30)
    await rig.wait_state("idle", timeout=30)
    await hass.wait(STATE, lambda p: p == b"idle", after=n)
    # the emulator's reply (its own espeak-ng render) reached the speaker's WAV, bit-exact; the ALSA
    # file plugin writes a buffer at a time, so its first second is checked while the daemon runs
    expected = await sim_speech.say(REPLY, cache_dir=rig.root / "certs" / "tts")
    head = expected[: 24000 * 2]
    await until(lambda: head in wav.read_bytes()[played_before:], "the reply in the playback WAV")
    st = await rig.status()
    assert st["mqtt"]["announcements"]["said"] >= 1 and st["conversation"]["text_turns"] >= 1


async def test_mute_from_home_assistant_closes_the_capture_and_refuses_announcements(rig: Rig, hass: HA) -> None:
    n_mute, n_state = hass.count(MUTE), hass.count(STATE)
    await hass.pub(f"{MUTE}/set", "ON")
    st = await eventually(rig, lambda st: st["muted"] and st["audio"]["capture"]["state"] == "muted",
                          "the capture to close")
    await hass.wait(MUTE, lambda p: p == b"ON", after=n_mute)
    await hass.wait(STATE, lambda p: p == b"muted", after=n_state)
    # muted is "do not disturb": an announcement and the listen button are refused, nothing reaches the model
    refused = st["mqtt"]["refused"]
    texts, starts = len(rig.emu.frames_of("client_content")), len(rig.emu.frames_of("activity_start"))
    await hass.pub(ANNOUNCE, "Dinner is ready.")
    await hass.pub(LISTEN, "PRESS")
    st = await eventually(rig, lambda st: st["mqtt"]["refused"] >= refused + 2, "both commands refused")
    assert st["mqtt"]["announcements"]["refused"] >= 1
    assert len(rig.emu.frames_of("client_content")) == texts
    assert len(rig.emu.frames_of("activity_start")) == starts
    n_mute = hass.count(MUTE)
    await hass.pub(f"{MUTE}/set", "OFF")
    await eventually(rig, lambda st: not st["muted"] and st["audio"]["capture"]["state"] == "running",
                     "the capture to open again")
    await hass.wait(MUTE, lambda p: p == b"OFF", after=n_mute)


async def test_listen_opens_a_turn_and_an_announcement_waits_for_its_end(rig: Rig, hass: HA) -> None:
    starts, texts = len(rig.emu.frames_of("activity_start")), len(rig.emu.frames_of("client_content"))
    n = hass.count(STATE)
    await hass.pub(LISTEN, "PRESS")
    await rig.emu.wait_frames("activity_start", n=starts + 1, timeout=20)
    await hass.wait(STATE, lambda p: p == b"listening", after=n)
    # the turn is open (nobody speaks; it ends after turn.no_speech_timeout_s): the announcement waits
    waited = (await rig.status())["mqtt"]["announcements"]["waited"]
    await hass.pub(ANNOUNCE, "The post has arrived.")
    st = await eventually(rig, lambda st: st["mqtt"]["announcements"]["waited"] == waited + 1, "it to wait")
    assert st["state"] == "listening" and len(rig.emu.frames_of("client_content")) == texts
    # the turn ends unheard, then the announcement is said
    frames = await rig.emu.wait_frames("client_content", n=texts + 1, timeout=30)
    assert "The post has arrived." in json.dumps(frames[-1].data)
    assert rig.emu.frames_of("activity_end")[-1].t < frames[-1].t  # after the turn, not into it
    await rig.wait_state("speaking", timeout=30)
    await rig.wait_state("idle", timeout=30)


async def test_bad_payloads_are_refused_and_the_true_state_is_published_again(rig: Rig, hass: HA) -> None:
    st = await rig.status()
    pid, refused = st["pid"], st["mqtt"]["refused"]
    light, mute = await hass.wait(LIGHT, bool), await hass.wait(MUTE, bool)  # the retained truth
    volume = await hass.wait(f"{BASE}/speaker/volume", bool)
    assert json.loads(light)["state"] == "OFF" and mute == b"OFF"
    cases = [
        (f"{LIGHT}/set", b"not json", LIGHT, light),
        (f"{LIGHT}/set", b'{"state": "PURPLE"}', LIGHT, light),
        (f"{LIGHT}/set", b"\xff\xfe\x00", LIGHT, light),
        (f"{MUTE}/set", b"MAYBE", MUTE, mute),
        (f"{BASE}/speaker/volume/set", b"loud", f"{BASE}/speaker/volume", volume),
        (LISTEN, b"NOPE", None, None),
        (ANNOUNCE, b"   ", None, None),
        (ANNOUNCE, b"x" * 5000, None, None),
        (f"{BASE}/gpio/status/set", b"ON", None, None),  # the status LED is the daemon's: no such command
    ]
    texts = len(rig.emu.frames_of("client_content"))
    for topic, payload, state_topic, truth in cases:
        n = hass.count(state_topic) if state_topic else 0
        await hass.pub(topic, payload)
        if state_topic:
            await hass.wait(state_topic, lambda p, t=truth: p == t, after=n)
    # the last case has no subscriber in the bridge: it is not counted; the rest are refused
    await eventually(rig, lambda st: st["mqtt"]["refused"] >= refused + len(cases) - 1, "every bad payload refused")
    # the same rate limit as the model's and edgectl's: the fan takes one change per second
    n = hass.count(FAN)
    await hass.pub(f"{FAN}/set", "ON")
    await hass.pub(f"{FAN}/set", "OFF")
    await hass.wait(FAN, lambda p: p == b"ON", after=n)
    st = await eventually(rig, lambda st: st["mqtt"]["refused"] >= refused + len(cases), "the second change refused")
    assert (await gpio(rig))["fan"]["value"] and hass.last(FAN) == b"ON"
    assert st["pid"] == pid and st["state"] == "idle" and not st["muted"]
    assert len(rig.emu.frames_of("client_content")) == texts


async def test_home_assistant_online_makes_it_publish_again(rig: Rig, hass: HA) -> None:
    await hass.wait(DISC, bool)
    n_disc, n_state, n_avail = hass.count(DISC), hass.count(STATE), hass.count(AVAIL)
    await hass.pub("homeassistant/status", "online")
    await hass.wait(DISC, bool, after=n_disc)
    await hass.wait(STATE, lambda p: p == b"idle", after=n_state)
    await hass.wait(AVAIL, lambda p: p == b"online", after=n_avail)
    assert (await rig.status())["mqtt"]["rediscoveries"] >= 1


# ---- reloads -----------------------------------------------------------------------------------------
async def test_a_removed_device_is_removed_from_home_assistant(rig: Rig, hass: HA) -> None:
    pid = (await rig.status())["pid"]
    await hass.wait(FAN, bool)
    n_disc, n_fan = hass.count(DISC), hass.count(FAN)
    rig.devices = [d for d in DEMO_DEVICES if d["name"] != "fan"]
    try:
        write_config(rig)
        await reload(rig)
        doc = json.loads(await hass.wait(DISC, lambda p: json.loads(p)["cmps"].get("gpio_fan_switch") == {"p": "switch"},
                                         after=n_disc))
        assert discovery.problems(doc) == [] and "gpio_kitchen_light_light" in doc["cmps"]
        await hass.wait(FAN, lambda p: p == b"", after=n_fan)  # its retained state cleared
    finally:
        rig.devices = DEMO_DEVICES
        write_config(rig)
        n_disc = hass.count(DISC)
        await reload(rig)
    doc = json.loads(await hass.wait(DISC, lambda p: "command_topic" in json.loads(p)["cmps"]["gpio_fan_switch"],
                                     after=n_disc))
    assert discovery.problems(doc) == []
    st = await rig.status()
    assert st["pid"] == pid and "fan" in st["gpio"]


async def test_a_reload_that_changes_mqtt_reconnects_without_a_restart(rig: Rig, hass: HA, broker: Broker) -> None:
    st = await rig.status()
    pid, connects = st["pid"], st["mqtt"]["connects"]
    moved = "edged/moved"
    await hass.sub(f"{moved}/#")
    n_old = hass.count(AVAIL)
    rig.overrides["mqtt"] = mqtt_section(broker, base_topic=moved)
    try:
        write_config(rig)
        await reload(rig)
        await hass.wait(f"{moved}/availability", lambda p: p == b"online")
        await hass.wait(AVAIL, lambda p: p == b"offline", after=n_old)  # the old base said goodbye
        doc = json.loads(await hass.wait(DISC, lambda p: json.loads(p)["avty_t"] == f"{moved}/availability"))
        assert discovery.problems(doc) == []
        assert doc["cmps"]["gpio_kitchen_light_light"]["command_topic"] == f"{moved}/gpio/kitchen_light/set"
        st = await eventually(rig, lambda st: st["mqtt"]["connected"], "the bridge to reconnect")
        assert st["pid"] == pid and st["mqtt"]["base_topic"] == moved and st["mqtt"]["connects"] == connects + 1
        # and commands arrive on the new topics
        await hass.pub(f"{moved}/gpio/kitchen_light/set", json.dumps({"state": "ON"}))
        await until(lambda: _value(rig, "kitchen_light", True), "the pin on through the moved topics")
        await hass.pub(f"{moved}/gpio/kitchen_light/set", json.dumps({"state": "OFF"}))
        await until(lambda: _value(rig, "kitchen_light", False), "the pin off")
    finally:
        rig.overrides["mqtt"] = mqtt_section(broker)
        write_config(rig)
        n = hass.count(AVAIL)
        await reload(rig)
    await hass.wait(AVAIL, lambda p: p == b"online", after=n)
    assert (await rig.status())["pid"] == pid


async def test_edgectl_doctor_shows_the_mqtt_check(rig: Rig) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edged.ctl", "--config", str(rig.config_path), "--socket", str(rig.socket),
        "--json", "--timeout", "10", "doctor", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    checks = {c["name"]: c for c in json.loads(out)}
    assert checks["mqtt"]["status"] == "ok", checks["mqtt"]
    assert "connected to 127.0.0.1:" in checks["mqtt"]["detail"] and DEV_ID in checks["mqtt"]["detail"]


# ---- failures ------------------------------------------------------------------------------------------
async def test_a_broker_restart_brings_back_discovery_and_the_full_state(rig: Rig, broker: Broker) -> None:
    connects = (await rig.status())["mqtt"]["connects"]
    broker.stop()  # no persistence: the restarted broker has forgotten every retained message
    st = await eventually(rig, lambda st: not st["mqtt"]["connected"], "the bridge to notice")
    assert st["state"] == "idle"  # the speaker works on
    assert _mqtt_row(st).startswith("disconnected, 127.0.0.1:") and "error: " in _mqtt_row(st)
    broker.start()
    await eventually(rig, lambda st: st["mqtt"]["connected"] and st["mqtt"]["connects"] > connects,
                     "the bridge to reconnect", 30)
    async with home_assistant(broker, DISC, f"{BASE}/#") as ha:
        doc = json.loads(await ha.wait(DISC, bool))
        assert discovery.problems(doc) == []
        fan = b"ON" if (await gpio(rig))["fan"]["value"] else b"OFF"
        for topic, want in ((AVAIL, b"online"), (STATE, b"idle"), (MUTE, b"OFF"), (FAN, fan),
                            (f"{BASE}/gpio/kitchen_light/available", b"online")):
            await ha.wait(topic, lambda p, w=want: p == w)
        assert json.loads(await ha.wait(LIGHT, bool))["state"] == "OFF"
    async with home_assistant(broker, DISC, f"{BASE}/#") as late:  # one that starts now finds it all retained
        for topic in (DISC, AVAIL, STATE, MUTE, LIGHT, FAN):
            await late.wait(topic, bool)
            assert all(retained for _, retained in late.msgs[topic]), topic


async def test_a_clean_stop_says_offline_and_a_kill_leaves_it_to_the_last_will(rig: Rig, hass: HA) -> None:
    await hass.wait(AVAIL, lambda p: p == b"online")
    n = hass.count(AVAIL)
    await rig.restart(signal.SIGTERM)  # the daemon publishes offline itself, before its pins are released
    await hass.wait(AVAIL, lambda p: p == b"offline", after=n)
    await hass.wait(AVAIL, lambda p: p == b"online", after=n + 1, timeout=30)
    n = hass.count(AVAIL)
    await rig.stop_daemon(signal.SIGKILL)  # no chance to say anything: the broker sends the will
    await hass.wait(AVAIL, lambda p: p == b"offline", after=n)
