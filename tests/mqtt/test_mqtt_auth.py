"""A broker with TLS (certificates made here with cryptography) and a password file: the bridge
authenticates; a wrong password is reported, retried, never logged, and fixed by a reload."""

from __future__ import annotations

import json
import logging
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.config import MqttConfig
from edged.sim.certs import ensure_certs
from tests.waiting import until

from .conftest import HA, Broker, Rig

USER, PASSWORD = "edged", "s3cret-Pa55word-for-the-test"


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Path]]:
    d = tmp_path_factory.mktemp("mosquitto-tls")
    certs = ensure_certs(d / "certs")
    passwd = d / "passwd"
    passwd.touch(mode=0o600)
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), USER, PASSWORD], check=True, capture_output=True)
    b = Broker(d, anonymous=False, extra=(f"password_file {passwd}\ncafile {certs.ca_file}\n"
                                          f"certfile {certs.cert_file}\nkeyfile {certs.key_file}\n"))
    b.start()
    yield b, Path(certs.ca_file)
    b.stop()


def cfg(b: Broker, ca: Path, pw_file: Path, device_id: str) -> MqttConfig:
    return MqttConfig(enabled=True, host="127.0.0.1", port=b.port, tls=True, ca_file=str(ca), username=USER,
                      password_file=str(pw_file), device_id=device_id, backoff_initial_s=0.05, backoff_max_s=0.3)


def ha_client(b: Broker, ca: Path) -> HA:
    return HA(b.port, username=USER, password=PASSWORD, tls_context=ssl.create_default_context(cafile=str(ca)))


async def test_tls_and_password_authenticate(tls_broker: tuple[Broker, Path], tmp_path: Path) -> None:
    b, ca = tls_broker
    pw = tmp_path / "mqtt-password"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    r = Rig(cfg(b, ca, pw, "t_tls"), devices=[dict(name="lamp", kind="led", pin=17)])
    await r.start()
    try:
        await until(lambda: r.bridge.connected, what="a TLS + password connection")
        async with ha_client(b, ca) as ha:
            await ha.sub("homeassistant/device/t_tls/config", "edged/t_tls/gpio/lamp")
            assert json.loads(await ha.wait("homeassistant/device/t_tls/config"))["o"]["name"] == "edged"
            await ha.pub("edged/t_tls/gpio/lamp/set", json.dumps({"state": "ON"}))
            await until(lambda: r.pin(17).state, what="the lamp on over TLS")
        st = r.bridge.status()
        assert st["tls"] is True and st["connected"] is True and st["broker"] == f"127.0.0.1:{b.port}"
        assert PASSWORD not in json.dumps(st) and "username" not in st
    finally:
        await r.stop()


async def test_wrong_password_is_reported_not_logged_and_a_reload_fixes_it(
        tls_broker: tuple[Broker, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from edged.secrets import RedactFilter

    b, ca = tls_broker
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password-x7")
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(RedactFilter())  # the daemon's log handler has it (edged.service.logs)
    r = Rig(cfg(b, ca, wrong, "t_badauth"), devices=[])
    await r.start()
    try:
        await until(lambda: r.bridge.stats["connects"] == 0 and r.bridge.status()["last_error"],
                    what="the refusal")
        err = r.bridge.status()["last_error"]
        assert "not authorized" in err.lower() or "bad user name or password" in err.lower(), err
        assert not r.bridge.connected
        # retried with backoff, and the daemon's side keeps working
        await until(lambda: r.bridge.status()["next_retry_in_s"] is not None, what="a retry")
        assert "not-the-password-x7" not in caplog.text and "not-the-password-x7" not in json.dumps(r.bridge.status())
        # a missing password file is a config error naming file and key
        assert await r.bridge.reconfigure(cfg(b, ca, tmp_path / "absent", "t_badauth"))
        await until(lambda: "mqtt.password_file" in (r.bridge.status()["last_error"] or ""), what="the file error")
        assert "absent" in r.bridge.status()["last_error"]
        good = tmp_path / "good"
        good.write_text(PASSWORD)
        assert await r.bridge.reconfigure(cfg(b, ca, good, "t_badauth"))
        await until(lambda: r.bridge.connected, what="the connection after the reload")
        assert r.bridge.status()["last_error"] is None
        assert PASSWORD not in caplog.text
    finally:
        await r.stop()


async def test_untrusted_certificate_is_refused(tls_broker: tuple[Broker, Path], tmp_path: Path) -> None:
    b, _ = tls_broker
    other = ensure_certs(tmp_path / "other-ca")  # a CA the broker's certificate does not come from
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    r = Rig(cfg(b, Path(other.ca_file), pw, "t_badca"), devices=[])
    await r.start()
    try:
        await until(lambda: r.bridge.status()["last_error"], what="the TLS error")
        assert "certificate" in r.bridge.status()["last_error"].lower()
        assert not r.bridge.connected
    finally:
        await r.stop()
