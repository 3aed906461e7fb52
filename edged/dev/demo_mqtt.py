"""The demo's Home Assistant part (when mosquitto is installed): a local broker, [mqtt] on in the
rig's config, and a client that behaves like Home Assistant: it reads the discovery, switches the
kitchen light and sends an announcement, which the speaker says."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from . import mosquitto
from .rig import Rig

DEVICE_ID = "demo"
BASE = f"edged/{DEVICE_ID}"
DISCOVERY = f"homeassistant/device/{DEVICE_ID}/config"
ANNOUNCEMENT = "The laundry is done."


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


class _Client:
    """The Home Assistant stand-in: every message kept per topic."""

    def __init__(self, port: int) -> None:
        import aiomqtt

        self.client = aiomqtt.Client("127.0.0.1", port, identifier="demo-home-assistant")
        self.msgs: dict[str, list[bytes]] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Client:
        await self.client.__aenter__()
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            await self.client.__aexit__(None, None, None)

    async def _read(self) -> None:
        async for m in self.client.messages:
            payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
            self.msgs.setdefault(str(m.topic), []).append(payload)

    async def wait(self, topic: str, pred: Callable[[bytes], bool], after: int = 0, timeout: float = 30.0) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for payload in self.msgs.get(topic, [])[after:]:
                if pred(payload):
                    return payload
            await asyncio.sleep(0.02)
        raise TimeoutError(f"nothing on {topic} within {timeout:g} s")


async def home_assistant_part(rig: Rig, broker: mosquitto.Broker, tl: Says) -> None:
    tl.say("demo", f"Home Assistant over MQTT: a client like Home Assistant on mosquitto 127.0.0.1:{broker.port}")
    async with _Client(broker.port) as ha:
        await ha.client.subscribe([(DISCOVERY, 1), (f"{BASE}/#", 1)])
        doc = json.loads(await ha.wait(DISCOVERY, bool))
        kinds: dict[str, int] = {}
        for c in doc["cmps"].values():
            kinds[c["p"]] = kinds.get(c["p"], 0) + 1
        tl.say("ha", f"discovered {doc['dev']['name']!r}: " + ", ".join(f"{n} {p}" for p, n in sorted(kinds.items())))
        light = f"{BASE}/gpio/kitchen_light"
        n = len(ha.msgs.get(light, []))
        tl.say("ha", "switches the kitchen light on")
        await ha.client.publish(f"{light}/set", json.dumps({"state": "ON"}), qos=1)
        state = await ha.wait(light, lambda p: json.loads(p).get("state") == "ON", after=n)
        tl.say("ha", f"{light} = {state.decode()}")
        pins = (await rig.request("gpio.list"))["result"]
        tl.say("gpio", f"kitchen_light={pins['kitchen_light']['value']} (edgectl gpio list)")
        state_topic = f"{BASE}/speaker/state"
        n = len(ha.msgs.get(state_topic, []))
        tl.say("ha", f"announces {ANNOUNCEMENT!r}")
        await ha.client.publish(f"{BASE}/speaker/announce", ANNOUNCEMENT, qos=1)
        await ha.wait(state_topic, lambda p: p == b"speaking", after=n)
        await ha.wait(state_topic, lambda p: p == b"idle", after=n + 1, timeout=60)
        tl.say("ha", f"{state_topic}: " + " -> ".join(p.decode() for p in ha.msgs[state_topic][n:]))
