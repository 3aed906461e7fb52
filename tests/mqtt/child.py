"""A process holding an MQTT bridge (for the kill -9 test): ``child.py PORT DEVICE_ID``.

Prints ``connected`` once the bridge is online, then runs until killed."""

from __future__ import annotations

import asyncio
import sys

from edged.config import MqttConfig
from edged.mqtt import MqttBridge, SpeakerAdapter
from edged.service.control import EventHub


async def main(port: int, device_id: str) -> None:
    hub = EventHub()
    adapter = SpeakerAdapter(gpio=None, events=hub, state=lambda: "idle", is_muted=lambda: False,
                             set_muted=lambda on: None, start_turn=lambda src: None, say=lambda text: None)
    bridge = MqttBridge(MqttConfig(enabled=True, host="127.0.0.1", port=port, device_id=device_id), adapter)
    await bridge.start()
    for _ in range(3000):  # 30 s
        if bridge.connected:
            break
        await asyncio.sleep(0.01)
    print("connected", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
