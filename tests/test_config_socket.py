"""What ``config set`` may change over the control socket: config.check_settable_over_socket and
the ALSA device-name rule (alsa-lib parses a PCM name as configuration and can run commands)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from edged import config
from edged.errors import ConfigError

FILE = "/etc/edged/edged.toml"


@pytest.mark.parametrize("key", ["live.base_url", "live.ca_file", "live.api_key_file", "live.api_version",
                                 "state.dir", "control.socket", "control.group", "control.admin_group",
                                 "control.max_request_bytes", "wake.models_dir", "cues.wake.file",
                                 "cues.ring.file"])
def test_endpoint_secret_and_control_keys_are_never_settable(key):
    value = {"live.base_url": "https://evil.example", "live.api_version": "v1"}.get(key, "/tmp/x")
    with pytest.raises(config.NotSettableError) as info:
        config.check_settable_over_socket(key, value, FILE)
    err = info.value
    assert isinstance(err, ConfigError) and isinstance(err, PermissionError)
    assert str(err).startswith(f"{FILE}: {key}: ")
    assert "cannot be changed over the control socket" in str(err) and f"edit {FILE} as root" in str(err)


def test_unknown_or_new_sections_are_refused_fail_closed():
    with pytest.raises(config.NotSettableError, match=r"mqtt\.host: the mqtt section cannot be changed"):
        config.check_settable_over_socket("mqtt.host", "broker", FILE)
    for bad in ("live", "", "live.", ".model", None):
        with pytest.raises(config.NotSettableError, match="give section.key"):
            config.check_settable_over_socket(bad, "x", FILE)  # type: ignore[arg-type]


@pytest.mark.parametrize(("key", "value"), [
    ("wake.threshold", 0.6), ("live.model", "gemini-3.8-live"), ("live.voice", "Kore"), ("log.level", "debug"),
    ("camera.backend", "synthetic"), ("turn.silence_ms", 500), ("gpio.pin_factory", "mock"),
    ("wake.models", ["hey_jarvis", "alexa"]),
    ("audio.capture_device", "mic"), ("audio.playback_device", "echo-cancel"), ("audio.capture_device", "default"),
    ("audio.playback_device", "pipewire"), ("audio.playback_device", "pulse"), ("audio.capture_device", "hw:1,0"),
    ("audio.capture_device", "hw:1"), ("audio.capture_device", "hw:CARD=Loopback,DEV=1"),
    ("audio.playback_device", "plughw:CARD=Device,DEV=0"), ("audio.playback_device", "plughw:0,0,0"),
    ("audio.playback_device", "sysdefault:CARD=vc4hdmi0"), ("audio.playback_device", "dmix:CARD=1,DEV=0"),
    ("audio.capture_device", "dsnoop:1,0"), ("cues.volume", 40), ("cues.wake.enabled", False),
    ("timers.ring_max_s", 120.0),
])
def test_safe_values_pass(key, value):
    config.check_settable_over_socket(key, value, FILE)  # raises if refused
    assert config.check_alsa_pcm(value) == "" or not key.startswith("audio.")


@pytest.mark.parametrize(("value", "reason"), [
    ("file:'|touch /tmp/x',raw", "contains '|': ALSA's file plugin would run the rest as a shell command"),
    ("|touch /tmp/x", "contains '|'"),
    ("file:\"/etc/edged/x\",raw", "contains a quote"),
    ("plug:'hw:1'", "contains a quote"),
    ("{type file file /tmp/x slave.pcm null}", "contains a brace: an inline ALSA definition"),
    ("file:/var/lib/edged/out,raw", "is ALSA's inline 'file' plugin, which writes audio into a file"),
    ("file", "is ALSA's inline 'file' plugin"),
    ("pipe:cmd", "is ALSA's inline 'pipe' plugin, which feeds audio to a command"),
    ("shm:/tmp/socket,pcm", "is ALSA's inline 'shm' plugin"),
    ("ladspa:/usr/lib/ladspa/x.so", "is ALSA's inline 'ladspa' plugin, which loads a LADSPA plugin library"),
    ("plug:mic", "'plug:' is not accepted over the control socket"),
    ("hw:", "hw: takes CARD, DEV, SUBDEV"),
    ("hw:1,0,0,0", "hw: takes CARD, DEV, SUBDEV"),
    ("hw:DEV=0", "hw: needs a card"),
    ("hw:CARD=a b", "hw: CARD must be a card number or name"),
    ("hw:1,x", "hw: DEV must be a number"),
    ("sysdefault:1,0", "sysdefault: takes CARD"),
    ("hw:FOO=1", "argument 'FOO=1' is not one of CARD, DEV, SUBDEV"),
    ("hw:CARD=1,CARD=2", "is not one of"),
    ("mic; rm -rf /", "is not a PCM name"),
    ("a.b", "is not a PCM name"),
    ("", "is empty"),
    ("x" * 200, "too long"),
    (5, "must be a string"),
])
def test_dangerous_device_names_are_refused_each_with_its_reason(value, reason):
    assert reason in config.check_alsa_pcm(value)
    for key in ("audio.capture_device", "audio.playback_device"):
        with pytest.raises(config.NotSettableError) as info:
            config.check_settable_over_socket(key, value, FILE)
        assert str(info.value).startswith(f"{FILE}: {key}: {value!r} refused over the control socket: ")
        assert reason in str(info.value)


def test_wake_models_as_paths_are_refused():
    for bad in (["/tmp/evil.onnx"], ["hey_jarvis", "../x"], ["custom.onnx"], "hey_jarvis/../../x", [3]):
        with pytest.raises(config.NotSettableError, match="give a built-in model name"):
            config.check_settable_over_socket("wake.models", bad, FILE)


def test_the_config_file_may_still_name_any_pcm():
    # root writes the file: the demo's file devices are named PCMs, and anything ALSA accepts is allowed
    cfg = config.parse({"audio": {"capture_device": "file:'/tmp/in.raw',raw", "playback_device": "mic"}})
    assert cfg.audio.capture_device.startswith("file:")


def test_the_attack_is_real_and_the_validator_stops_it(tmp_path):
    """pyalsaaudio opening `file:'|touch X',raw` really runs the command (so the rule matters)."""
    marker = tmp_path / "ran"
    name = f"file:'|touch {marker}',raw"
    assert config.check_alsa_pcm(name).startswith("contains '|'")
    # a child process, so that the shell ALSA popen()s cannot outlive the test
    code = textwrap.dedent(f"""
        import alsaaudio
        pcm = alsaaudio.PCM(alsaaudio.PCM_PLAYBACK, device={name!r})
        pcm.close()
    """)
    env = {k: v for k, v in os.environ.items() if k != "ALSA_CONFIG_PATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert marker.exists(), "alsa-lib's file plugin ran the command in the PCM name"
    # the same name over the socket is refused before any device is opened
    marker.unlink()
    with pytest.raises(config.NotSettableError, match="shell command"):
        config.check_settable_over_socket("audio.playback_device", name, FILE)
    assert not marker.exists()
