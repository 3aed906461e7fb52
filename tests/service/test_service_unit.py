"""systemd/edged.service checked by the real systemd-analyze.

`systemd-analyze verify` exits 0 on typos, so any output is a failure.  On this machine the
unit's ExecStart binary (/opt/edged/venv/bin/edged) is not installed, which verify reports;
so the real unit is verified twice: (1) a temp copy where ONLY the ExecStart path is pointed
at an existing executable must verify with no output at all, and (2) the real file's output
must be exactly that one complaint about the missing binary (or nothing, where installed).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "systemd" / "edged.service"
REAL_BIN = "/opt/edged/venv/bin/edged"

pytestmark = pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=120)


def test_verify_prints_nothing(tmp_path):
    text = UNIT.read_text()
    assert text.count(f"ExecStart={REAL_BIN} ") == 1
    stand_in = shutil.which("true")
    copy = tmp_path / "edged.service"
    copy.write_text(text.replace(f"ExecStart={REAL_BIN} ", f"ExecStart={stand_in} "))
    # the copy differs in that one line only
    diff = [(a, b) for a, b in zip(text.splitlines(), copy.read_text().splitlines(), strict=True) if a != b]
    assert len(diff) == 1 and diff[0][0].startswith("ExecStart=")
    out = analyze("verify", str(copy))
    assert out.returncode == 0
    assert out.stdout + out.stderr == ""


def test_verify_real_file_only_misses_the_installed_binary():
    out = analyze("verify", str(UNIT))
    text = (out.stdout + out.stderr).strip()
    if Path(REAL_BIN).exists():
        assert text == ""
    else:
        assert text == f"edged.service: Command {REAL_BIN} is not executable: No such file or directory"


def test_verify_catches_a_typo(tmp_path):
    # the harness itself: a misspelt directive must produce output (exit code stays 0)
    copy = tmp_path / "edged.service"
    copy.write_text(UNIT.read_text().replace("ExecStart=" + REAL_BIN, "ExecStart=" + shutil.which("true"))
                    .replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    out = analyze("verify", str(copy))
    assert "NoNewPrivilege" in out.stdout + out.stderr


def test_security_score_at_most_1_5():
    out = analyze("security", "--offline=true", "--threshold=15", str(UNIT))
    m = re.search(r"Overall exposure level for edged\.service: (\d+\.\d+)", out.stdout)
    assert m, out.stdout[-500:]
    score = float(m.group(1))
    assert score <= 1.5, f"exposure {score}"
    assert out.returncode == 0


def test_required_settings():
    text = UNIT.read_text()
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            settings.setdefault(k, []).append(v)
    one = {k: v[-1] for k, v in settings.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["WatchdogSec"] == "30" and one["Restart"] == "on-failure"
    assert one["RestartPreventExitStatus"] == "78"
    assert one["User"] == "edged" and one["Group"] == "edged"
    assert set(one["SupplementaryGroups"].split()) == {"audio", "gpio", "video"}
    assert one["LoadCredential"] == "gemini-api-key:/etc/edged/gemini-api-key"
    # the daemon does not write its own configuration, and dumps no core holding the key
    assert not any("/etc" in v for v in settings.get("ReadWritePaths", []))
    assert one["ProtectSystem"] == "strict"
    assert one["ConfigurationDirectoryMode"] == "0750"
    assert one["LimitCORE"] == "0"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert "ProcSubset" not in one, "gpiozero reads /proc/cpuinfo and /proc/device-tree"
    allowed = " ".join(settings["DeviceAllow"])
    for dev in ("char-alsa", "char-gpiochip", "char-video4linux", "char-media", "char-dma_heap"):
        assert dev in allowed
    families = one["RestrictAddressFamilies"].split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)


def test_optimized_byte_code_comes_from_where_install_writes_it():
    """PYTHONOPTIMIZE=2 needs opt-2 byte code the service cannot write itself (ProtectSystem=strict
    makes /opt read-only): its PYTHONPYCACHEPREFIX is the folder scripts/install fills."""
    env = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            env.update(kv.split("=", 1) for kv in line.split("=", 1)[1].split())
    assert env["PYTHONOPTIMIZE"] == "2"
    install = (UNIT.parents[1] / "scripts" / "install").read_text()
    prefix = re.search(r"^PREFIX=\$\{EDGED_PREFIX:-(\S+)\}$", install, re.M).group(1)
    assert env["PYTHONPYCACHEPREFIX"] == f"{prefix}/pycache"
    assert REAL_BIN.startswith(prefix + "/")
    assert 'edged" precompile --into "$PREFIX/pycache"' in install
