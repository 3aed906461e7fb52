"""The bash completion of edgectl (scripts/completion/edgectl.bash), run by a real bash."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "completion" / "edgectl.bash"


def complete(*words: str) -> list[str]:
    """What bash offers after ``edgectl WORDS`` (the last word is the one being completed)."""
    line = ["edgectl", *words]
    code = (f"source {shlex.quote(str(SCRIPT))}\n"
            f"COMP_WORDS=({' '.join(shlex.quote(w) for w in line)})\n"
            f"COMP_CWORD={len(line) - 1}\n"
            "_edgectl\n"
            'printf "%s\\n" "${COMPREPLY[@]}"\n')
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", code], capture_output=True, text=True, timeout=60,
                         env=env, cwd=ROOT)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    return [w for w in out.stdout.splitlines() if w]


def example_keys() -> list[str]:
    def walk(d: dict, prefix: str = "") -> list[str]:
        return [k for key, v in d.items()
                for k in (walk(v, f"{prefix}{key}.") if isinstance(v, dict) else [prefix + key])]
    return walk(tomllib.loads((ROOT / "config" / "edged.toml").read_text()))


def test_config_keys_are_those_of_the_example_config():
    listed = re.search(r'_EDGECTL_CONFIG_KEYS="(.*?)"', SCRIPT.read_text(), re.S).group(1).split()
    assert listed == example_keys()


def test_commands_actions_and_options():
    assert complete("") == ["status", "config", "reload", "gpio", "volume", "timers", "wake", "say", "snapshot",
                            "session", "mute", "events", "doctor"]
    assert complete("st") == ["status"]
    assert complete("status", "--j") == ["--json"]
    assert complete("--json", "con") == ["config"]  # a global option before the command
    assert complete("config", "") == ["show", "get", "set", "validate"]
    assert complete("config", "validate", "--p") == ["--portable"]
    assert complete("timers", "") == ["list", "cancel", "stop"]
    assert complete("volume", "") == ["up", "down"]
    assert complete("doctor", "--l") == ["--live"]


def test_config_keys():
    assert complete("config", "get", "wake.th") == ["wake.threshold"]
    assert complete("--json", "config", "set", "wake.th") == ["wake.threshold"]
    assert complete("config", "get", "live.base") == ["live.base_url"]
    assert complete("config", "set", "live.base") == []  # never set with edgectl: not offered
    assert complete("config", "set", "control.") == []
    assert "cues.wake.enabled" in complete("config", "set", "cues.wake.")
    assert "cues.wake.file" not in complete("config", "set", "cues.wake.")


@pytest.mark.skipif(not (Path(sys.executable).parent / "edgectl").exists(), reason="edgectl is not installed")
def test_gpio_ids_from_the_running_daemon(daemon):
    ids = list(daemon.client.request("gpio.list"))
    assert complete("--socket", str(daemon.rig.socket), "gpio", "set", "") == ids
    assert complete("gpio", "--socket", str(daemon.rig.socket), "set", "kit") == ["kitchen_light"]
    assert complete("gpio", "set", "kitchen_light", "o") == ["on", "off"]


def test_installer_installs_it(tmp_path):
    env = {**os.environ, "EDGED_PREFIX": str(tmp_path / "opt"), "EDGED_ETC": str(tmp_path / "etc"),
           "EDGED_STATE": str(tmp_path / "state"), "EDGED_UNIT_DIR": str(tmp_path / "units"),
           "EDGED_COMPLETION_DIR": str(tmp_path / "completions")}
    out = subprocess.run(["bash", str(ROOT / "scripts" / "install"), "--dry-run"], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    plan = [line[2:] for line in out.stdout.splitlines() if line.startswith("+ ")]
    assert f"install -D -m 0644 {SCRIPT} {tmp_path}/completions/edgectl" in plan
