"""The demo's Home Assistant part (when mosquitto is installed): a local broker, [mqtt] on in the
rig's config, and a client that behaves like Home Assistant: it reads the discovery, switches the
kitchen light and sends an announcement, which the speaker says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from . import mosquitto
from .rig import Rig

DEVICE_ID = "demo"
BASE = f"edged/{DEVICE_ID}"
DISCOVERY = f"homeassistant/device/{DEVICE_ID}/config"
ANNOUNCEMENT = "The laundry is done."
WAIT_S = 30.0  # each step of the Home Assistant part


class Says(Protocol):
    def say(self, who: str, text: str) -> None: ...


def start_broker(out: Path) -> mosquitto.Broker | None:
    """A mosquitto for the demo, or None (not installed, or it would not start: the demo goes on without)."""
    if mosquitto.find() is None:
        return None
    broker = mosquitto.Broker(out / "mosquitto")
    try:
        broker.start()
    except mosquitto.BrokerError as exc:
        print(f"[demo] no MQTT part: {exc}", flush=True)
        return None
    return broker


def mqtt_section(broker: mosquitto.Broker) -> dict[str, Any]:
    return {"enabled": True, "host": "127.0.0.1", "port": broker.port, "device_id": DEVICE_ID,
            "device_name": "Demo speaker", "backoff_initial_s": 0.2, "backoff_max_s": 2.0}


async def home_assistant_part(rig: Rig, broker: mosquitto.Broker, tl: Says) -> None:
    tl.say("demo", f"Home Assistant over MQTT: a client like Home Assistant on mosquitto 127.0.0.1:{broker.port}")
    async with mosquitto.HomeAssistant(broker.port, identifier="demo-home-assistant") as ha:
        await ha.sub(DISCOVERY, f"{BASE}/#")
        doc = json.loads(await ha.wait(DISCOVERY, bool, timeout=WAIT_S))
        kinds: dict[str, int] = {}
        for c in doc["cmps"].values():
            kinds[c["p"]] = kinds.get(c["p"], 0) + 1
        tl.say("ha", f"discovered {doc['dev']['name']!r}: " + ", ".join(f"{n} {p}" for p, n in sorted(kinds.items())))
        light = f"{BASE}/gpio/kitchen_light"
        n = ha.count(light)
        tl.say("ha", "switches the kitchen light on")
        await ha.pub(f"{light}/set", json.dumps({"state": "ON"}))
        state = await ha.wait(light, lambda p: json.loads(p).get("state") == "ON", after=n, timeout=WAIT_S)
        tl.say("ha", f"{light} = {state.decode()}")
        pins = (await rig.request("gpio.list"))["result"]
        tl.say("gpio", f"kitchen_light={pins['kitchen_light']['value']} (edgectl gpio list)")
        state_topic = f"{BASE}/speaker/state"
        n = ha.count(state_topic)
        tl.say("ha", f"announces {ANNOUNCEMENT!r}")
        await ha.pub(f"{BASE}/speaker/announce", ANNOUNCEMENT)
        await ha.wait(state_topic, lambda p: p == b"speaking", after=n, timeout=WAIT_S)
        await ha.wait(state_topic, lambda p: p == b"idle", after=n + 1, timeout=60)
        tl.say("ha", f"{state_topic}: " + " -> ".join(p.decode() for p in ha.payloads(state_topic, n)))
