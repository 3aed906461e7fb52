"""scripts/install and scripts/uninstall: syntax, the --dry-run plan, idempotence, root check."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
INSTALL = ROOT / "scripts" / "install"
UNINSTALL = ROOT / "scripts" / "uninstall"


def run(script: Path, *args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, **kw)


def actions(out: str) -> list[str]:
    return [line[2:] for line in out.splitlines() if line.startswith("+ ")]


@pytest.mark.parametrize("script", [INSTALL, UNINSTALL])
def test_bash_syntax(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True, timeout=30).returncode == 0
    assert os.access(script, os.X_OK)


@pytest.fixture
def fake_root(tmp_path):
    """Install paths moved under tmp_path (the environment overrides the scripts support)."""
    env = {"EDGED_PREFIX": str(tmp_path / "opt"), "EDGED_ETC": str(tmp_path / "etc"),
           "EDGED_STATE": str(tmp_path / "state"), "EDGED_UNIT_DIR": str(tmp_path / "units")}
    return env


def test_install_dry_run_plan(fake_root, tmp_path):
    out = run(INSTALL, "--dry-run", env=fake_root)
    assert out.returncode == 0, out.stderr
    plan = actions(out.stdout)
    joined = "\n".join(plan)
    venv = f"{tmp_path}/opt/venv"
    assert f"python3 -m venv --system-site-packages {venv}" in plan
    assert f"{venv}/bin/python -m pip install -q --disable-pip-version-check {ROOT}[all]" in plan
    assert f"install -o edged -g edged -m 0640 {ROOT}/config/edged.toml {tmp_path}/etc/edged.toml" in plan
    assert f"install -d -o root -g edged -m 2770 {tmp_path}/etc" in plan
    assert f"runuser -u edged -- {venv}/bin/edged models fetch --dir {tmp_path}/state/models" in plan
    assert f"install -m 0644 {ROOT}/systemd/edged.service {tmp_path}/units/edged.service" in plan
    assert plan[-3:] == ["systemctl daemon-reload", "systemctl enable edged.service",
                         "systemctl restart edged.service"]
    if subprocess.run(["id", "-u", "edged"], capture_output=True).returncode != 0:
        assert any(a.startswith("useradd --system --user-group") and a.endswith(" edged")
                   and "--groups audio,gpio,video" in a for a in plan)
    assert "dry run: nothing was changed" in out.stdout
    # nothing was changed
    assert not any((tmp_path / d).exists() for d in ("opt", "etc", "state", "units"))
    assert "rm " not in joined


def test_install_dry_run_twice_same_plan_and_keeps_what_exists(fake_root, tmp_path):
    first = run(INSTALL, "--dry-run", env=fake_root)
    second = run(INSTALL, "--dry-run", env=fake_root)
    assert first.stdout == second.stdout
    # now pretend it is installed: config present, unit current, venv present
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "edged.toml").write_text("# the user's own config\n")
    (tmp_path / "units").mkdir()
    shutil.copy(ROOT / "systemd" / "edged.service", tmp_path / "units" / "edged.service")
    (tmp_path / "opt" / "venv" / "bin").mkdir(parents=True)
    py = tmp_path / "opt" / "venv" / "bin" / "python"
    py.write_text("#!/bin/sh\n")
    py.chmod(0o755)
    again = run(INSTALL, "--dry-run", env=fake_root)
    plan = actions(again.stdout)
    assert f"= config {tmp_path}/etc/edged.toml exists: kept" in again.stdout
    assert f"= unit {tmp_path}/units/edged.service is current" in again.stdout
    assert f"= venv {tmp_path}/opt/venv exists" in again.stdout
    assert not any("edged.toml" in a for a in plan), "an existing config is never overwritten"
    assert not any(a.startswith("python3 -m venv") for a in plan)
    assert not any(a.startswith("install -m 0644") and a.endswith("edged.service") for a in plan)
    assert (tmp_path / "etc" / "edged.toml").read_text() == "# the user's own config\n"


def test_uninstall_dry_run(fake_root, tmp_path):
    (tmp_path / "opt").mkdir()
    out = run(UNINSTALL, "--dry-run", env=fake_root)
    assert out.returncode == 0, out.stderr
    plan = actions(out.stdout)
    assert plan[0] == "systemctl disable --now edged.service"
    assert f"rm -f {tmp_path}/units/edged.service" in plan
    assert f"rm -rf {tmp_path}/opt" in plan
    assert not any(str(tmp_path / "etc") in a or str(tmp_path / "state") in a for a in plan), "kept without --purge"
    assert (tmp_path / "opt").exists()
    purge = actions(run(UNINSTALL, "--dry-run", "--purge", env=fake_root).stdout)
    assert f"rm -rf {tmp_path}/etc {tmp_path}/state" in purge


@pytest.mark.parametrize("script", [INSTALL, UNINSTALL])
def test_unknown_argument(script):
    out = run(script, "--frobnicate")
    assert out.returncode == 2 and "unknown argument: --frobnicate" in out.stderr


@pytest.mark.parametrize("script", [INSTALL, UNINSTALL])
def test_refuses_non_root_without_dry_run(script):
    if os.geteuid() != 0:
        out = run(script)
    else:
        # run as nobody from a copy of scripts/ that nobody can read: the clone itself may be in a
        # private folder (under /root, or made by mktemp -d)
        shared = Path(tempfile.mkdtemp(prefix="edged-install-"))
        try:
            copy = shutil.copytree(ROOT / "scripts", shared / "scripts")
            for path in [shared, *shared.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)
            out = subprocess.run(["bash", str(Path(copy) / script.name)], capture_output=True, text=True,
                                 timeout=60, user=65534, group=65534, extra_groups=[], cwd="/")
        finally:
            shutil.rmtree(shared)
    assert out.returncode == 1
    assert "must run as root" in out.stderr and "--dry-run" in out.stderr
    assert out.stdout == ""
