"""Home Assistant's device-based MQTT discovery: one retained ``<prefix>/device/<id>/config``.

Format (https://www.home-assistant.io/integrations/mqtt/#device-discovery-payload): a JSON object
with the shared ``dev`` (device, with ``ids``) and ``o`` (origin, required: here edged and its
version) mappings, shared availability, and ``cmps``: one mapping per component, each with its
platform ``p`` and, for entity platforms, a ``unique_id``.

Removing a component: Home Assistant's discovery (homeassistant/components/mqtt/discovery.py,
``async_discovery_message_received``) treats a component of a device payload whose config holds
nothing but ``p`` as a removal of that component ("If the dict is empty after removing the platform,
the payload is assumed to remove the existing config"); an empty retained payload on the device
topic removes every component of the device (the docs: "To remove the components, publish an empty
(retained) string payload to the discovery topic").  So a device dropped from the config is
published once as ``{"p": platform}`` (a tombstone) and left out after that; edged uses no
per-component discovery topics, so there is no other config topic to clear.  Its state topics are
cleared with empty retained payloads.

REQUIRED lists, per platform, the options Home Assistant's docs mark ``required: true`` for MQTT
discovery (the configuration block of each page below); the tests check every component against it.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from typing import Any

from .. import __version__
from .entities import Entity

# platform -> options Home Assistant requires (from the configuration block of each docs page)
REQUIRED: dict[str, tuple[str, ...]] = {
    # https://www.home-assistant.io/integrations/binary_sensor.mqtt/  state_topic: required
    "binary_sensor": ("state_topic",),
    # https://www.home-assistant.io/integrations/button.mqtt/  command_topic: required
    "button": ("command_topic",),
    # https://www.home-assistant.io/integrations/camera.mqtt/  topic: required
    "camera": ("topic",),
    # https://www.home-assistant.io/integrations/event.mqtt/  event_types, state_topic: required
    "event": ("event_types", "state_topic"),
    # https://www.home-assistant.io/integrations/light.mqtt/#json-schema  command_topic: required;
    # schema: json selects the JSON schema; supported_color_modes is needed for brightness/colour
    "light": ("command_topic", "schema", "supported_color_modes"),
    # https://www.home-assistant.io/integrations/notify.mqtt/  command_topic: required
    "notify": ("command_topic",),
    # https://www.home-assistant.io/integrations/number.mqtt/  command_topic: required
    "number": ("command_topic",),
    # https://www.home-assistant.io/integrations/sensor.mqtt/  state_topic: required
    # (device_class enum needs options: https://www.home-assistant.io/integrations/sensor/#device-class)
    "sensor": ("state_topic",),
    # https://www.home-assistant.io/integrations/switch.mqtt/  command_topic: required
    "switch": ("command_topic",),
}
# https://www.home-assistant.io/integrations/mqtt/#device-discovery-payload: "Also required is a
# unique_id for entity-based components" (all of the above are entity platforms)
ENTITY_PLATFORMS = frozenset(REQUIRED)


def device_id_default() -> str:
    """A stable id for this machine: from /etc/machine-id (hashed, never the id itself), else the host name."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            mid = Path(path).read_text().strip()
        except OSError:
            continue
        if mid:
            return hashlib.sha256(f"edged:{mid}".encode()).hexdigest()[:12]
    host = socket.gethostname() or "edged"
    return "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in host)[:64]


def discovery_topic(prefix: str, device_id: str) -> str:
    return f"{prefix}/device/{device_id}/config"


def payload(entities: list[Entity], *, device_id: str, device_name: str, base: str,
            tombstones: dict[str, str] | None = None) -> dict[str, Any]:
    """The device discovery payload; ``tombstones`` (component id -> platform) are removed components."""
    cmps: dict[str, Any] = {e.cmp_id: e.config() for e in entities}
    for cid, platform in (tombstones or {}).items():
        if cid not in cmps:
            cmps[cid] = {"p": platform}
    return {
        "dev": {"ids": [f"edged_{device_id}"], "name": device_name, "mf": "edged", "mdl": "edged smart speaker",
                "sw": __version__},
        "o": {"name": "edged", "sw": __version__},
        "avty_t": f"{base}/availability",
        "qos": 1,
        "cmps": cmps,
    }


def live_components(doc: Any) -> dict[str, str]:
    """Component id -> platform of the components a (retained) payload still declares (not tombstones)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("cmps"), dict):
        return {}
    out: dict[str, str] = {}
    for cid, cfg in doc["cmps"].items():
        if isinstance(cfg, dict) and isinstance(cfg.get("p"), str) and set(cfg) - {"p", "platform"}:
            out[cid] = cfg["p"]
    return out


def problems(doc: dict[str, Any]) -> list[str]:
    """What Home Assistant would refuse in a device payload (empty = valid)."""
    out: list[str] = []
    dev = doc.get("dev")
    if not isinstance(dev, dict) or not (dev.get("ids") or dev.get("cns")):
        out.append("dev: needs identifiers (ids) or connections")
    o = doc.get("o")
    if not isinstance(o, dict) or not o.get("name"):
        out.append("o: the origin needs a name")
    cmps = doc.get("cmps")
    if not isinstance(cmps, dict) or not cmps:
        out.append("cmps: no components")
        return out
    seen: set[str] = set()
    for cid, cfg in cmps.items():
        p = cfg.get("p")
        if p not in REQUIRED:
            out.append(f"cmps.{cid}: unknown platform {p!r}")
            continue
        if set(cfg) == {"p"}:
            continue  # a tombstone
        uid = cfg.get("unique_id")
        if p in ENTITY_PLATFORMS and not uid:
            out.append(f"cmps.{cid}: unique_id is required")
        if uid in seen:
            out.append(f"cmps.{cid}: unique_id {uid!r} is used twice")
        seen.add(uid)
        for key in REQUIRED[p]:
            if key not in cfg and not (key in ("state_topic", "command_topic") and key in doc):
                out.append(f"cmps.{cid}: {p} requires {key}")
        if cfg.get("device_class") == "enum" and not cfg.get("options"):
            out.append(f"cmps.{cid}: an enum sensor requires options")
    return out
