"""Configuration: the documented example, defaults, and FILE: key: reason errors."""

import os
import stat
import tomllib
from pathlib import Path

import pytest

from edged import config
from edged.errors import EX_CONFIG, ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "edged.toml"


def _keys(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _keys(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def _get(d, key):
    for part in key.split("."):
        d = d[part]
    return d


def test_example_documents_every_key_with_its_default():
    data = tomllib.loads(EXAMPLE.read_text())
    cfg = config.parse(data, str(EXAMPLE))
    defaults = config.Config().model_dump()
    # every key of the schema is in the example, and every value there is the default
    # (gpio.devices is a list of tables: documented by the commented [[gpio.devices]] example)
    # (keys whose default is "unset" cannot be written in TOML: they are documented commented out)
    unset = {k for k in _keys(defaults) if _get(defaults, k) is None}
    assert unset == {"live.proactive_audio", "live.affective_dialog"}
    assert all(f"# {k.split('.')[-1]} = " in EXAMPLE.read_text() for k in unset)
    assert set(_keys(data)) | {"gpio.devices"} == set(_keys(defaults)) - unset
    assert cfg.model_dump() == defaults
    # the commented device example is itself valid once uncommented
    text = EXAMPLE.read_text().split("[[gpio.devices]]", 1)[1].split("[camera]")[0]
    device = "\n".join(line.lstrip("# ").rstrip() for line in text.splitlines() if line.startswith("# ") and "=" in line
                       and not line.startswith("# # "))
    parsed = tomllib.loads(device)
    config.parse({"gpio": {"devices": [parsed]}})


def test_contract_keys_exist():
    cfg = config.Config()
    for key in ["live.model", "live.api_key_file", "live.base_url", "live.ca_file", "live.voice",
                "live.system_instruction", "audio.capture_device", "audio.playback_device", "wake.models",
                "wake.threshold", "state.dir", "control.socket", "gpio.pin_factory", "gpio.devices", "camera.backend"]:
        config.get_key(cfg, key)
    assert cfg.state.dir == "/var/lib/edged"
    assert cfg.control.socket == "/run/edged/control.sock"


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[wake]\nthreshold = 1.5\n", "wake.threshold", "less than 1"),
        ("[wake]\nthreshold = 'high'\n", "wake.threshold", "valid number"),
        ("[live]\nmodle = 'x'\n", "live.modle", "unknown key"),
        ("[nonsense]\na = 1\n", "nonsense", "unknown key"),
        ("[camera]\nbackend = 'webcam'\n", "camera.backend", "'picamera2', 'synthetic' or 'none'"),
        ("[audio]\ncapture_rate = 1000\n", "audio.capture_rate", "greater than or equal to 8000"),
        ("[[gpio.devices]]\nname='a'\nkind='lamp'\npin=17\n", "gpio.devices[a].kind", "must be 'led'"),
        ("[[gpio.devices]]\nname='a'\nkind='led'\npin=40\n", "gpio.devices[a].pin", "does not exist"),
        ("[[gpio.devices]]\nname='a'\nkind='led'\npin='PIN9'\n", "gpio.devices[a].pin", "is not a pin"),
        ("[[gpio.devices]]\nname='a'\nkind='led'\npin=17\n[[gpio.devices]]\nname='b'\nkind='relay'\npin='BOARD11'\n",
         "gpio.devices[b].pin", "already used by 'a'"),
        ("[[gpio.devices]]\nname='a'\nkind='led'\npin=17\n[[gpio.devices]]\nname='a'\nkind='led'\npin=18\n",
         "gpio.devices[a].name", "two devices"),
        ("[[gpio.devices]]\nname='rgb'\nkind='rgb_led'\npins=[1,2]\n", "gpio.devices[rgb]", "red, green, blue"),
        ("[gpio]\nstatus_led = 'nope'\n", "gpio.status_led", "not a configured"),
        ("[live]\nbase_url = 'ftp://x'\n", "live", "https://"),
        ("wake = 3\n", "wake", "valid dictionary"),
    ],
)
def test_errors_name_file_key_and_reason(tmp_path, text, key, reason):
    path = tmp_path / "edged.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    err = info.value
    assert err.exit_code == EX_CONFIG
    line = str(err).splitlines()[0]
    assert line.startswith(f"{path}: {key}: "), line
    assert reason in line


def test_all_problems_reported_at_once(tmp_path):
    path = tmp_path / "edged.toml"
    path.write_text("[wake]\nthreshold = 7\n[audio]\njitter_ms = -1\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    lines = str(info.value).splitlines()
    assert [ln.split(": ")[1] for ln in lines] == ["audio.jitter_ms", "wake.threshold"] or \
        sorted(ln.split(": ")[1] for ln in lines) == ["audio.jitter_ms", "wake.threshold"]


def test_syntax_error_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[wake\nthreshold = 0.5\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: TOML syntax"):
        config.load(bad)
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "absent.toml")


def test_env_override(tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    path.write_text("[wake]\nthreshold = 0.7\n")
    monkeypatch.setenv("EDGED_CONFIG", str(path))
    assert config.load().wake.threshold == 0.7
    assert config.load().path == str(path)


def test_with_value_validates_whole_config_and_changes_nothing_on_error(tmp_path):
    cfg = config.parse({"wake": {"threshold": 0.6}}, "x.toml")
    new = config.with_value(cfg, "wake.threshold", config.coerce_value("0.8"))
    assert new.wake.threshold == 0.8 and cfg.wake.threshold == 0.6
    with pytest.raises(ConfigError, match=r"x.toml: wake.threshold: "):
        config.with_value(cfg, "wake.threshold", config.coerce_value("3"))
    with pytest.raises(ConfigError, match="no such key"):
        config.with_value(cfg, "wake.nope", 1)
    assert config.coerce_value("hello") == "hello"
    assert config.coerce_value('["alexa"]') == ["alexa"]


def test_write_atomic_roundtrip_and_mode(tmp_path):
    cfg = config.parse({"gpio": {"pin_factory": "mock", "devices": [
        {"name": "lamp", "kind": "pwm_led", "pin": "GPIO12", "initial_value": 0.25}]}}, str(tmp_path / "c.toml"))
    config.save(cfg)
    again = config.load(tmp_path / "c.toml")
    assert again.model_dump() == cfg.model_dump()
    config.write_atomic(tmp_path / "secret", "x", mode=0o600)
    assert stat.S_IMODE(os.stat(tmp_path / "secret").st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_edged_run_exits_78_on_bad_config(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "bad.toml"
    path.write_text("[wake]\nthreshold = 2\n")
    proc = subprocess.run([sys.executable, "-m", "edged", "run", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == EX_CONFIG
    assert f"{path}: wake.threshold:" in proc.stderr
