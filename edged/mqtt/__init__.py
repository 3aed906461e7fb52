"""Home Assistant over MQTT: the speaker and its GPIO devices as one discovered device.

- port.py: ``SpeakerPort``, the narrow interface to the daemon, and ``SpeakerAdapter``;
- entities.py: what Home Assistant sees, and how its commands are carried out;
- discovery.py: the device-based discovery payload and the keys Home Assistant requires;
- bridge.py: ``MqttBridge``, the client with its supervisor (aiomqtt, imported lazily);
- doctor.py: ``check(cfg, status)`` for ``edgectl doctor``.
"""

from .bridge import MqttBridge
from .port import SpeakerAdapter, SpeakerPort

__all__ = ["MqttBridge", "SpeakerAdapter", "SpeakerPort"]
