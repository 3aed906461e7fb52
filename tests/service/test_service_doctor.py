"""edgectl doctor on this machine (no sound card, no GPIO, no network): the checks say what
is wrong and how to fix it, and never show the key. The daemon it asks is the real one
(tests/conftest.py)."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading

import pytest

from edged import ctl
from edged.service import doctor

KEY = "AIzaSyDOCTORKEY-never-print-0123456789"


@pytest.fixture
def config(tmp_path, daemon):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "edged.toml"
    cfg.write_text(f"""
[live]
base_url = "https://127.0.0.1:{port}"
[audio]
capture_device = "no_such_pcm_xyz"
playback_device = "no_such_pcm_xyz"
[gpio]
pin_factory = "mock"
[control]
socket = "{daemon.rig.socket}"
[state]
dir = "{tmp_path / 'state'}"
""")
    return cfg


def test_doctor_reports_each_check(config, capsys, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    code = ctl.main(["--config", str(config), "--json", "doctor"])
    out = capsys.readouterr().out
    assert KEY not in out
    checks = {c["name"]: c for c in json.loads(out)}
    assert code == 1  # the endpoint and the audio devices fail here
    assert checks["config"]["status"] == "ok"
    assert checks["audio capture"]["status"] == "fail" and "no_such_pcm_xyz" in checks["audio capture"]["detail"]
    assert "arecord -L" in checks["audio capture"]["fix"]
    assert checks["gpio"]["status"] == "ok" and "mock" in checks["gpio"]["detail"]
    assert checks["camera"]["status"] == "ok"
    assert checks["api key"] == {"name": "api key", "status": "ok", "detail": "found ($GEMINI_API_KEY; not shown)",
                                 "fix": ""}
    assert checks["live endpoint"]["status"] == "fail" and "127.0.0.1" in checks["live endpoint"]["detail"]
    assert checks["daemon"] == {"name": "daemon", "status": "ok", "detail": "running, state idle", "fix": ""}
    assert checks["wake models"]["status"] in ("fail", "warn")  # nothing fetched into state/models


def test_doctor_human_output_and_daemon_down(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    cfg = tmp_path / "edged.toml"
    cfg.write_text(f'[control]\nsocket = "{tmp_path}/none.sock"\n[live]\nbase_url = "https://127.0.0.1:1"\n')
    code = ctl.main(["--config", str(cfg), "doctor"])
    out = capsys.readouterr().out
    assert code == 1
    assert "[warn] daemon: edged is not running" in out
    assert "[fail] live endpoint: 127.0.0.1:1:" in out
    assert "       fix: check the network" in out


def test_endpoint_ok_over_tls(tmp_path):
    # a local TLS server with a self-signed certificate, trusted through live.ca_file
    from datetime import UTC, datetime, timedelta
    from ipaddress import ip_address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True):
                pass
        except (OSError, ssl.SSLError):
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    from edged.config import parse

    cfg = parse({"live": {"base_url": f"https://127.0.0.1:{port}", "ca_file": str(tmp_path / "cert.pem")}})
    check = doctor.check_endpoint(cfg, 10)
    listener.close()
    assert check.status == "ok", check
    assert check.detail.startswith(f"TLS to 127.0.0.1:{port} in ")


def test_unit_check_parses_exposure(tmp_path, monkeypatch):
    unit = tmp_path / "edged.service"
    unit.write_text((doctor.Path(__file__).parents[2] / "systemd" / "edged.service").read_text())
    monkeypatch.setattr(doctor, "UNIT_PATHS", (str(unit),))
    check = doctor.check_unit(10)
    assert check.status == "ok", check
    assert doctor.exposure(subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                                          capture_output=True, text=True).stdout) <= 1.5


def test_no_raw_alsa_lines(tmp_path):
    # On this machine (no sound card) opening "default" makes libasound print ~16 "ALSA lib ..." lines
    # to stderr; doctor routes them into a debug log first (edged.audio.alsalog), in a real process.
    cfg = tmp_path / "edged.toml"
    cfg.write_text(f'[live]\nbase_url = "https://127.0.0.1:9"\n[state]\ndir = "{tmp_path}"\n')
    out = subprocess.run([sys.executable, "-m", "edged.ctl", "--config", str(cfg), "--socket",
                          str(tmp_path / "none.sock"), "doctor"], capture_output=True, text=True, timeout=120)
    assert "[fail] audio capture: 'default'" in out.stdout  # the device was opened, and failed
    assert [ln for ln in (out.stdout + out.stderr).splitlines() if "ALSA lib" in ln] == []
    assert out.stderr == ""
    assert "(no control socket at" in out.stdout and f"({tmp_path}/none.sock) (" not in out.stdout
