"""The [mqtt] section: off by default; every error names FILE: mqtt.key: reason."""

from __future__ import annotations

import pytest

from edged import config
from edged.errors import ConfigError


def _err(mqtt: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        config.parse({"mqtt": mqtt}, "/etc/edged/edged.toml")
    return str(exc.value)


def test_off_by_default() -> None:
    m = config.Config().mqtt
    assert (m.enabled, m.share_transcripts, m.camera, m.discovery_prefix) == (False, False, False, "homeassistant")
    assert m.broker_port == 1883 and m.model_copy(update={"tls": True}).broker_port == 8883


@pytest.mark.parametrize("mqtt, expected", [
    ({"enabled": True}, "/etc/edged/edged.toml: mqtt.host: required when mqtt.enabled is true"),
    ({"host": "mqtt://broker"}, "/etc/edged/edged.toml: mqtt.host: 'mqtt://broker' is not a host name"),
    ({"port": 70000}, "/etc/edged/edged.toml: mqtt.port: must be less than or equal to 65535"),
    ({"ca_file": "/etc/ca.pem"}, "/etc/edged/edged.toml: mqtt.ca_file: needs mqtt.tls = true"),
    ({"tls": True, "cert_file": "/etc/c.pem"}, "/etc/edged/edged.toml: mqtt.key_file: required with cert_file"),
    ({"username": "u", "password_file": "pw"}, "/etc/edged/edged.toml: mqtt.password_file: must be an absolute path"),
    ({"password_file": "/etc/edged/pw"}, "/etc/edged/edged.toml: mqtt.username: required with password_file"),
    ({"base_topic": "edged/#"}, "/etc/edged/edged.toml: mqtt.base_topic: 'edged/#' is not a usable topic"),
    ({"discovery_prefix": ""}, "/etc/edged/edged.toml: mqtt.discovery_prefix: String should have at least 1"),
    ({"device_id": "my speaker"}, "/etc/edged/edged.toml: mqtt.device_id: only letters, digits"),
    ({"password": "x"}, "/etc/edged/edged.toml: mqtt.password: unknown key"),
])
def test_errors_name_file_key_and_reason(mqtt: dict, expected: str) -> None:
    assert expected in _err(mqtt)


def test_a_full_section_is_valid() -> None:
    cfg = config.parse({"mqtt": {"enabled": True, "host": "homeassistant.local", "tls": True,
                                 "ca_file": "/etc/edged/mqtt-ca.pem", "username": "edged",
                                 "password_file": "/etc/edged/mqtt-password", "device_id": "kitchen-speaker"}})
    assert cfg.mqtt.broker_port == 8883
