#!/usr/bin/env python3
"""Home Assistant command -> GPIO pin change, through a real mosquitto (edged.mqtt).

    .venv/bin/python bench/bench_mqtt.py [--samples N] [--json FILE]

A mosquitto on a free loopback port; the MqttBridge over a real SpeakerAdapter and GpioBank on
gpiozero's MockFactory; an aiomqtt client playing Home Assistant publishes ``{"state": "ON"}`` /
``OFF`` (QoS 1) to a light's command topic.  Measured per command, all on CLOCK_MONOTONIC:

- command -> pin: the client's publish call -> the mock pin's change (MockPin records the
  monotonic time of its last change);
- command -> state back: the publish call -> the new retained state received by the client.

Commands are paced 100 ms apart (a person's clicks are further apart).  Goal: p95 <= 20 ms.
The bridge sets TCP_NODELAY on its socket; the "state back" figure also contains the broker's own
Nagle delay towards the client (mosquitto's ``set_tcp_nodelay`` is false by default): with
``set_tcp_nodelay true`` in mosquitto.conf it drops to about the pin figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GPIOZERO_MOCK_REVISION", "d04170")

GOAL_P95_MS = 20.0
PACE_S = 0.1  # between commands: a person's clicks are further apart


def _stats(values: list[float]) -> dict[str, Any]:
    v = sorted(values)
    if not v:
        return {"n": 0}
    return {"n": len(v), "median": statistics.median(v), "p95": v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))],
            "min": v[0], "max": v[-1]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_broker(workdir: Path, nodelay: bool = False) -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    port = _free_port()
    conf = workdir / "mosquitto.conf"
    user = f"user {os.environ.get('USER') or 'root'}\n" if os.geteuid() == 0 else ""
    extra = "set_tcp_nodelay true\n" if nodelay else ""
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{user}{extra}")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("mosquitto did not start")
        time.sleep(0.01)


async def measure(port: int, samples: int) -> dict[str, Any]:
    import aiomqtt
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from edged.config import GpioConfig, GpioDevice, MqttConfig
    from edged.mqtt import MqttBridge, SpeakerAdapter
    from edged.service.control import EventHub
    from edged.tools.gpio import GpioBank

    loop = asyncio.get_running_loop()
    hub = EventHub()
    factory = MockFactory(pin_class=MockPWMPin)
    bank = GpioBank(GpioConfig(devices=[GpioDevice(name="lamp", kind="led", pin=17)]),
                    lambda n, v: loop.call_soon_threadsafe(hub.publish, {"event": "gpio", "name": n, "value": v}),
                    factory=factory)
    adapter = SpeakerAdapter(gpio=bank, events=hub, state=lambda: "idle", is_muted=lambda: False,
                             set_muted=lambda on: None, start_turn=lambda s: None, say=lambda t: None)
    bridge = MqttBridge(MqttConfig(enabled=True, host="127.0.0.1", port=port, device_id="bench"), adapter)
    bank.start()
    await bridge.start()
    pin = factory.pin(17)
    state_topic, cmd_topic = "edged/bench/gpio/lamp", "edged/bench/gpio/lamp/set"
    to_pin: list[float] = []
    to_state: list[float] = []
    try:
        # the client playing Home Assistant keeps the default socket options (Nagle on)
        async with aiomqtt.Client("127.0.0.1", port, identifier="bench-ha") as ha:
            await ha.subscribe(state_topic, qos=1)
            got: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

            async def read() -> None:
                async for m in ha.messages:
                    await got.put((time.monotonic(), bytes(m.payload)))  # type: ignore[arg-type]

            reader = asyncio.create_task(read())
            await asyncio.wait_for(got.get(), 10)  # the retained state: the bridge is up and subscribed
            for i in range(samples + 5):  # the first 5 warm up
                want = i % 2 == 0
                word = b'"ON"' if want else b'"OFF"'
                t0 = time.monotonic()
                await ha.publish(cmd_topic, json.dumps({"state": "ON" if want else "OFF"}), qos=1)
                while True:
                    t_state, payload = await asyncio.wait_for(got.get(), 10)
                    if word in payload:
                        break
                if bool(pin.state) != want:
                    raise RuntimeError("the pin did not follow the command")
                if i >= 5:
                    to_pin.append((pin._last_change - t0) * 1000)  # MockPin: monotonic time of the last change
                    to_state.append((t_state - t0) * 1000)
                await asyncio.sleep(PACE_S)
            reader.cancel()
    finally:
        await bridge.stop()
        bank.stop()
    return {"command_to_pin_ms": _stats(to_pin), "command_to_state_ms": _stats(to_state),
            "goal_p95_ms": GOAL_P95_MS, "refused": bridge.stats["refused"]}


def run(samples: int, broker_nodelay: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edged-bench-mqtt-") as d:
        proc, port = _start_broker(Path(d), broker_nodelay)
        try:
            return asyncio.run(measure(port, samples))
        finally:
            proc.terminate()
            proc.wait(5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    ap.add_argument("--broker-nodelay", action="store_true", help="mosquitto with set_tcp_nodelay true")
    a = ap.parse_args(argv)
    r = run(a.samples, a.broker_nodelay)
    text = json.dumps(r, indent=2)
    if a.json:
        Path(a.json).write_text(text + "\n")
    print(text)
    p = r["command_to_pin_ms"]
    print(f"HA command -> pin: median {p['median']:.2f} ms, p95 {p['p95']:.2f} ms (n={p['n']}); "
          f"goal p95 <= {GOAL_P95_MS:g} ms: {'met' if p['p95'] <= GOAL_P95_MS else 'MISSED'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
