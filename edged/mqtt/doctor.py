"""``edgectl doctor``'s MQTT check: ``check(cfg.mqtt, status)`` -> (ok|warn|fail, detail, fix).

``status`` is the daemon's ``MqttBridge.status()`` when the daemon runs (None otherwise: then the
broker is probed with a plain TCP connection).  No credential is ever part of the answer.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

from ..config import MqttConfig

HINT = 'see README "Home Assistant"'


def check(cfg: MqttConfig, status: dict[str, Any] | None = None, timeout: float = 3.0) -> tuple[str, str, str]:
    if not cfg.enabled:
        return "ok", "off (mqtt.enabled = false)", ""
    broker = f"{cfg.host}:{cfg.broker_port}"
    for key in ("password_file", "ca_file", "cert_file", "key_file"):
        path = getattr(cfg, key)
        if not path:
            continue
        try:
            st = os.stat(path)
            Path(path).open("rb").close()
        except OSError as exc:
            return "fail", f"mqtt.{key}: cannot read {path}: {exc.strerror or exc}", \
                f"create it, readable by the edged user ({HINT})"
        if key in ("password_file", "key_file") and st.st_mode & stat.S_IROTH:
            return "warn", f"mqtt.{key}: {path} is readable by every user", f"chmod o-r {path}"
    if status is not None:
        if status.get("connected"):
            return "ok", (f"connected to {broker}{' over TLS' if cfg.tls else ''} as {status.get('device_id')} "
                          f"({status.get('entities')} entities)"), ""
        return "fail", f"not connected to {broker}: {status.get('last_error') or 'connecting'}", \
            f"check mqtt.host, port, tls and the credentials ({HINT})"
    try:
        with socket.create_connection((cfg.host, cfg.broker_port), timeout=timeout):
            pass
    except OSError as exc:
        return "fail", f"the broker {broker} is not reachable: {exc.strerror or exc}", \
            f"start the broker or fix mqtt.host / mqtt.port ({HINT})"
    return "ok", f"the broker {broker} accepts connections (the daemon is not running)", ""
