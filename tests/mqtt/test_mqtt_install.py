"""scripts/install --with-mosquitto: the broker is installed only when asked, and the way to point
edged and Home Assistant at it is printed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install"


def dry_run(tmp_path: Path, *args: str) -> str:
    env = {**os.environ, "EDGED_PREFIX": str(tmp_path / "opt"), "EDGED_ETC": str(tmp_path / "etc"),
           "EDGED_STATE": str(tmp_path / "state"), "EDGED_UNIT_DIR": str(tmp_path / "units")}
    p = subprocess.run(["bash", str(INSTALL), "--dry-run", *args], capture_output=True, text=True, timeout=120,
                       env=env)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_with_mosquitto_installs_the_broker_and_says_how_to_use_it(tmp_path: Path) -> None:
    out = dry_run(tmp_path, "--with-mosquitto")
    apt = [line for line in out.splitlines() if line.startswith("+ env DEBIAN_FRONTEND=noninteractive apt-get install")
           or line.startswith("= apt packages installed")]
    assert apt and "mosquitto" in apt[0], out
    assert f'password_file = "{tmp_path}/etc/mqtt-password"' in out
    assert "README: Home Assistant" in out


def test_without_the_flag_no_broker(tmp_path: Path) -> None:
    assert "mosquitto" not in dry_run(tmp_path)


def test_help_documents_the_flag_and_an_existing_broker() -> None:
    p = subprocess.run(["bash", str(INSTALL), "--help"], capture_output=True, text=True, timeout=30)
    assert "--with-mosquitto" in p.stdout and "existing broker" in p.stdout
