"""scripts/install and scripts/uninstall: syntax, the --dry-run plan, idempotence, root check."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
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
           "EDGED_STATE": str(tmp_path / "state"), "EDGED_UNIT_DIR": str(tmp_path / "units"),
           "EDGED_COMPLETION_DIR": str(tmp_path / "completions")}
    return env


def test_install_dry_run_plan(fake_root, tmp_path):
    out = run(INSTALL, "--dry-run", env=fake_root)
    assert out.returncode == 0, out.stderr
    plan = actions(out.stdout)
    joined = "\n".join(plan)
    venv = f"{tmp_path}/opt/venv"
    assert f"python3 -m venv --system-site-packages {venv}" in plan
    upgrade = f"{venv}/bin/python -m pip install -q --disable-pip-version-check --upgrade pip"
    assert plan.index(upgrade) == plan.index(f"python3 -m venv --system-site-packages {venv}") + 1
    assert f"{venv}/bin/python -m pip install -q --disable-pip-version-check {ROOT}[all]" in plan
    # the daemon does not write its own configuration: root owns it, the service's group reads it
    assert f"install -d -o root -g edged -m 0750 {tmp_path}/etc" in plan
    assert f"install -o root -g edged -m 0640 {ROOT}/config/edged.toml {tmp_path}/etc/edged.toml" in plan
    assert (f"! no API key yet: install -o root -g root -m 0600 /dev/stdin {tmp_path}/etc/gemini-api-key"
            in out.stdout)
    assert "2770" not in joined and "-o edged -g edged -m 0640" not in joined
    assert f"runuser -u edged -- {venv}/bin/edged models fetch --dir {tmp_path}/state/models" in plan
    # the byte code the unit's PYTHONOPTIMIZE=2 reads, where its PYTHONPYCACHEPREFIX points (PREFIX/pycache)
    assert f"{venv}/bin/edged precompile --into {tmp_path}/opt/pycache" in plan
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
    assert not any("edged.toml" in a and not a.startswith(("chown ", "chmod ")) for a in plan), \
        "an existing config is never overwritten (only its owner and mode are set)"
    assert not any(a.startswith("python3 -m venv") for a in plan)
    assert not any(a.endswith("--upgrade pip") for a in plan), "a re-run leaves the venv's pip alone"
    assert any(a.endswith(f"{ROOT}[all]") for a in plan)  # but installs edged again
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


def test_uninstall_removes_the_completion_install_put_there_and_nothing_else(fake_root, tmp_path):
    comp = tmp_path / "completions" / "edgectl"
    install_plan = actions(run(INSTALL, "--dry-run", env=fake_root).stdout)
    assert f"install -D -m 0644 {ROOT}/scripts/completion/edgectl.bash {comp}" in install_plan
    # what install would have put there
    comp.parent.mkdir()
    shutil.copy(ROOT / "scripts" / "completion" / "edgectl.bash", comp)
    out = run(UNINSTALL, "--dry-run", env=fake_root)
    assert out.returncode == 0, out.stderr
    assert f"rm -f {comp}" in actions(out.stdout) and comp.exists()
    # a file of that name that is not edgectl's completion is someone else's: kept
    comp.write_text("# another tool's completion\n")
    out = run(UNINSTALL, "--dry-run", env=fake_root)
    assert not any(str(comp) in a for a in actions(out.stdout))
    assert f"= no edgectl completion in {comp.parent}" in out.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="a real uninstall needs root")
def test_real_uninstall_removes_the_completion_and_keeps_config_and_state(fake_root, tmp_path):
    comp = tmp_path / "completions" / "edgectl"
    comp.parent.mkdir()
    shutil.copy(ROOT / "scripts" / "completion" / "edgectl.bash", comp)
    etc, state = tmp_path / "etc", tmp_path / "state"
    etc.mkdir(mode=0o750)
    (etc / "edged.toml").write_text("# mine\n")
    (etc / "edged.toml").chmod(0o640)
    (etc / "gemini-api-key").write_text("k\n")
    (etc / "gemini-api-key").chmod(0o600)
    state.mkdir()
    (state / "live_handle.json").write_text("{}")
    (tmp_path / "opt").mkdir()
    out = run(UNINSTALL, env=fake_root)
    assert out.returncode == 0, out.stderr
    assert not comp.exists() and not (tmp_path / "opt").exists()
    assert (etc / "edged.toml").read_text() == "# mine\n" and stat.S_IMODE((etc / "edged.toml").stat().st_mode) == 0o640
    assert stat.S_IMODE((etc / "gemini-api-key").stat().st_mode) == 0o600
    assert (state / "live_handle.json").exists()


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


def test_dry_run_shows_the_ownership_it_repairs(fake_root, tmp_path):
    """An older install (group-writable setgid /etc/edged, a daemon-written config, a readable key):
    the plan puts every one back to root ownership; nothing changes in a dry run."""
    etc = tmp_path / "etc"
    etc.mkdir()
    etc.chmod(0o2770)
    (etc / "edged.toml").write_text("# mine\n")
    (etc / "edged.toml").chmod(0o666)
    (etc / "gemini-api-key").write_text("k\n")
    (etc / "gemini-api-key").chmod(0o644)
    for args in (["--dry-run"], ["--dry-run", "--config-only"]):
        out = run(INSTALL, *args, env=fake_root)
        assert out.returncode == 0, out.stderr
        plan = actions(out.stdout)
        me = f"{pwd.getpwuid(os.getuid()).pw_name}:{grp.getgrgid(os.getgid()).gr_name}"
        for path, owner, mode in ((etc, "root:edged", "00750"), (etc / "edged.toml", "root:edged", "00640"),
                                  (etc / "gemini-api-key", "root:root", "00600")):
            if me != owner:
                assert f"chown {owner} {path}" in plan
            assert f"chmod {mode} {path}" in plan
        assert f"= config {etc}/edged.toml exists: kept" in out.stdout
        assert not any("edged.toml" in a and a.startswith("install") for a in plan), "never overwritten"
    assert stat.S_IMODE(etc.stat().st_mode) == 0o2770 and (etc / "edged.toml").read_text() == "# mine\n"


def test_uninstall_dry_run_keeps_the_configuration_and_shows_its_ownership(fake_root, tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    etc.chmod(0o750)
    (etc / "edged.toml").write_text("x")
    (etc / "edged.toml").chmod(0o640)
    out = run(UNINSTALL, "--dry-run", env=fake_root)
    assert out.returncode == 0, out.stderr
    owner = f"{pwd.getpwuid(os.getuid()).pw_name}:{grp.getgrgid(os.getgid()).gr_name}"
    assert f"= {etc} stays {owner} 750" in out.stdout
    assert f"= {etc}/edged.toml stays {owner} 640" in out.stdout
    assert "= user edged kept" in out.stdout
    assert not any(str(etc) in a for a in actions(out.stdout))


@pytest.mark.skipif(os.geteuid() != 0, reason="a real install needs root")
def test_real_config_install_sets_and_repairs_ownership_and_purge_removes_it():
    """scripts/install --config-only for real, as root, into a temp /etc with a temp service user."""
    from tests.service.realusers import public_dir, real_users

    with real_users() as users, public_dir("edged-install-") as tmp:  # the service user must reach etc/
        svc = users.user("svc")
        env = {"EDGED_PREFIX": str(tmp / "opt"), "EDGED_ETC": str(tmp / "etc"),
               "EDGED_STATE": str(tmp / "state"), "EDGED_UNIT_DIR": str(tmp / "units"), "EDGED_USER": svc,
               "EDGED_COMPLETION_DIR": str(tmp / "completions")}
        etc = tmp / "etc"

        def owner_mode(p: Path) -> tuple[str, str, int]:
            st_ = os.stat(p)
            return pwd.getpwuid(st_.st_uid).pw_name, grp.getgrgid(st_.st_gid).gr_name, stat.S_IMODE(st_.st_mode)

        out = run(INSTALL, "--config-only", env=env)
        assert out.returncode == 0, out.stderr
        assert owner_mode(etc) == ("root", svc, 0o750)
        assert owner_mode(etc / "edged.toml") == ("root", svc, 0o640)
        assert (etc / "edged.toml").read_bytes() == (ROOT / "config" / "edged.toml").read_bytes()
        # the service user can read the config but not write it, nor add files
        probe = subprocess.run(["runuser", "-u", svc, "--", "sh", "-c",
                                f"cat {etc}/edged.toml >/dev/null && echo read; "
                                f"(echo x >> {etc}/edged.toml) 2>/dev/null || echo no-write; "
                                f"(touch {etc}/new) 2>/dev/null || echo no-create"],
                               capture_output=True, text=True, timeout=60, cwd="/")
        assert probe.stdout.split() == ["read", "no-write", "no-create"], probe
        # break it as an older install left it; a second run repairs everything and keeps the content
        etc.chmod(0o2770)
        os.chown(etc / "edged.toml", pwd.getpwnam(svc).pw_uid, -1)
        (etc / "edged.toml").chmod(0o666)
        (etc / "edged.toml").write_text("# the admin's own config\n")
        (etc / "gemini-api-key").write_text("k\n")
        (etc / "gemini-api-key").chmod(0o644)
        os.chown(etc / "gemini-api-key", -1, grp.getgrnam(svc).gr_gid)
        (etc / ".edged.toml.tmp1").write_text("left by an old daemon")
        os.chown(etc / ".edged.toml.tmp1", pwd.getpwnam(svc).pw_uid, -1)
        out = run(INSTALL, "--config-only", env=env)
        assert out.returncode == 0, out.stderr
        assert owner_mode(etc) == ("root", svc, 0o750), "setgid and group write are gone"
        assert owner_mode(etc / "edged.toml") == ("root", svc, 0o640)
        assert owner_mode(etc / "gemini-api-key") == ("root", "root", 0o600)
        assert owner_mode(etc / ".edged.toml.tmp1")[0] == "root"
        assert (etc / "edged.toml").read_text() == "# the admin's own config\n"
        # a third run changes nothing
        again = run(INSTALL, "--config-only", env=env)
        assert actions(again.stdout) == [] and f"= {etc} is root:{svc} 0750" in again.stdout
        # uninstall keeps it all; --purge removes the configuration and the user
        kept = run(UNINSTALL, env=env)
        assert kept.returncode == 0, kept.stderr
        assert owner_mode(etc / "edged.toml") == ("root", svc, 0o640)
        purged = run(UNINSTALL, "--purge", env=env)
        assert purged.returncode == 0, purged.stderr
        assert not etc.exists()
        assert subprocess.run(["id", "-u", svc], capture_output=True).returncode != 0
