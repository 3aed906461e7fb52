"""The doctor's MQTT check, against a real broker and a closed port."""

from __future__ import annotations

from pathlib import Path

from edged.config import MqttConfig
from edged.mqtt import doctor
from tests.waiting import until

from .conftest import Broker, Rig, free_port, mqtt_cfg


def test_off_is_fine() -> None:
    assert doctor.check(MqttConfig())[0] == "ok"


def test_broker_probe_without_the_daemon(broker: Broker) -> None:
    assert doctor.check(mqtt_cfg(broker, "t_doc"))[0] == "ok"
    status, detail, fix = doctor.check(MqttConfig(enabled=True, host="127.0.0.1", port=free_port()), timeout=1)
    assert status == "fail" and "not reachable" in detail and "mqtt.host" in fix


def test_password_file_problems(tmp_path: Path, broker: Broker) -> None:
    cfg = mqtt_cfg(broker, "t_doc", username="u", password_file=str(tmp_path / "missing"))
    status, detail, _ = doctor.check(cfg)
    assert status == "fail" and "mqtt.password_file" in detail
    pw = tmp_path / "pw"
    pw.write_text("hunter2-secret")
    pw.chmod(0o644)
    status, detail, fix = doctor.check(cfg.model_copy(update={"password_file": str(pw)}))
    assert status == "warn" and fix == f"chmod o-r {pw}" and "hunter2" not in detail


async def test_with_the_daemons_status(broker: Broker) -> None:
    r = Rig(mqtt_cfg(broker, "t_doc_live"), devices=[])
    await r.start()
    try:
        await until(lambda: r.bridge.connected, what="connected")
        status, detail, _ = doctor.check(r.bridge.cfg, r.bridge.status())
        assert status == "ok" and "connected to" in detail and "t_doc_live" in detail
    finally:
        await r.stop()
    status, detail, _ = doctor.check(r.bridge.cfg, {**r.bridge.status(), "last_error": "MqttCodeError: refused"})
    assert status == "fail" and "refused" in detail
