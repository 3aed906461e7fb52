"""Config: friendly GPIO device names and their ids, wake model names, files named by the config."""

from pathlib import Path

import pytest
import tomli_w

from edged import config
from edged.errors import ConfigError


def _load(tmp_path: Path, text: str, **kw) -> config.Config:
    path = tmp_path / "edged.toml"
    path.write_text(text)
    return config.load(path, **kw)


def _error_lines(tmp_path: Path, text: str, **kw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text, **kw)
    return str(info.value).splitlines()


@pytest.mark.parametrize(("name", "ident"), [
    ("kitchen light", "kitchen_light"),
    ("Kitchen Light", "kitchen_light"),
    ("kitchen_light", "kitchen_light"),
    ("Küche – Decke", "kuche_decke"),
    ("Straße", "strasse"),
    ("  x", None),
    ("2nd floor lamp", "2nd_floor_lamp"),
    ("Mum's lamp!", "mum_s_lamp"),
])
def test_device_id_is_derived_from_the_name(name, ident):
    if ident is None:
        with pytest.raises(ValueError, match="spaces"):
            config.GpioDevice(name=name, kind="led", pin=17)
        return
    assert config.device_id(name) == ident
    assert config.GpioDevice(name=name, kind="led", pin=17).id == ident


def test_friendly_names_accepted_and_references_resolve_to_the_id(tmp_path):
    cfg = _load(tmp_path, """
[gpio]
status_led = "Status Light"
talk_button = "talk_button"
[[gpio.devices]]
name = "kitchen light"
kind = "led"
pin = 17
[[gpio.devices]]
name = "Status Light"
kind = "led"
pin = 18
[[gpio.devices]]
name = "Talk Button"
kind = "button"
pin = 24
""")
    assert [d.name for d in cfg.gpio.devices] == ["kitchen light", "Status Light", "Talk Button"]
    assert [d.id for d in cfg.gpio.devices] == ["kitchen_light", "status_light", "talk_button"]
    # the parts compare ids: a reference by friendly name is kept as the id
    assert cfg.gpio.status_led == "status_light" and cfg.gpio.talk_button == "talk_button"
    # saving and loading again gives the same config (names stay as written)
    config.save(cfg)
    assert config.load(cfg.path).model_dump() == cfg.model_dump()


def test_two_names_with_one_id_are_an_error_naming_both(tmp_path):
    lines = _error_lines(tmp_path, """
[[gpio.devices]]
name = "Kitchen Light"
kind = "led"
pin = 17
[[gpio.devices]]
name = "kitchen-light"
kind = "led"
pin = 18
""")
    assert len(lines) == 1
    assert lines[0].startswith(f"{tmp_path / 'edged.toml'}: gpio.devices[kitchen-light].name: ")
    assert "'Kitchen Light' and 'kitchen-light' both make the id 'kitchen_light'" in lines[0]


@pytest.mark.parametrize(("name", "reason"), [
    ("a\nb", "control characters"),
    ("!!!", "no letters a-z or digits"),
    ("x" * 41, "longer than 40"),
    ("", "at least 1 character"),
])
def test_bad_device_names(tmp_path, name, reason):
    lines = _error_lines(tmp_path, tomli_w.dumps({"gpio": {"devices": [{"name": name, "kind": "led", "pin": 17}]}}))
    assert len(lines) == 1 and ".name: " in lines[0] and reason in lines[0], lines


def test_reference_to_unknown_device_still_an_error(tmp_path):
    lines = _error_lines(tmp_path, '[gpio]\nmute_button = "Mute Button"\n')
    assert lines == [f"{tmp_path / 'edged.toml'}: gpio.mute_button: 'Mute Button' is not a configured button device"]


def test_misspelt_wake_model_is_refused_with_a_suggestion(tmp_path):
    lines = _error_lines(tmp_path, '[wake]\nmodels = ["alexa", "hey_jarviss"]\n', check_files=False)
    assert lines == [f"{tmp_path / 'edged.toml'}: wake.models[1]: 'hey_jarviss' is not a built-in wake word "
                     "(did you mean 'hey_jarvis'? built-in: alexa, hey_jarvis, hey_mycroft, hey_rhasspy; "
                     "or give the path of a .onnx file)"]
    lines = _error_lines(tmp_path, '[wake]\nmodels = ["melspectrogram.onnx"]\n')
    assert "wake.models[0]: 'melspectrogram.onnx' is a feature model, not a wake word" in lines[0]


def test_builtin_names_and_files_accepted(tmp_path):
    cfg = _load(tmp_path, '[wake]\nmodels = ["hey_jarvis", "alexa_v0.1.onnx", "hey_rhasspy"]\n')
    assert cfg.wake.models == ["hey_jarvis", "alexa_v0.1.onnx", "hey_rhasspy"]


def test_custom_model_path_must_exist_on_the_device(tmp_path):
    missing = tmp_path / "models" / "my_word.onnx"
    text = f'[wake]\nmodels = ["hey_jarvis", "{missing}"]\n'
    # validated on the device (load's default): the file must be there
    assert _error_lines(tmp_path, text) == [f"{tmp_path / 'edged.toml'}: wake.models[1]: {missing}: no such file"]
    # for a file meant for another machine, only names are checked
    assert _load(tmp_path, text, check_files=False).wake.models[1] == str(missing)
    missing.parent.mkdir()
    missing.write_bytes(b"onnx")
    assert _load(tmp_path, text).wake.models[1] == str(missing)


def test_config_set_checks_files_too(tmp_path):
    cfg = config.parse({}, "x.toml")
    with pytest.raises(ConfigError, match=r"^x.toml: wake.models\[0\]: /nope/w.onnx: no such file"):
        config.with_value(cfg, "wake.models", ["/nope/w.onnx"])
    with pytest.raises(ConfigError, match=r"^x.toml: wake.models\[0\]: 'alexxa' is not a built-in"):
        config.with_value(cfg, "wake.models", ["alexxa"])


@pytest.mark.parametrize(("text", "key"), [
    ('[audio]\nvolume = 101\n', "audio.volume"),
    ('[audio]\nmixer_device = "file:\'|touch /tmp/x\'"\n', "audio.mixer_device"),
    ('[cues]\nduck = -1\n', "cues.duck"),
    ('[cues.wake]\nenabled = 3\n', "cues.wake.enabled"),
    ('[cues.doorbell]\nenabled = true\n', "cues.doorbell"),
    ('[timers]\nring_max_s = 0\n', "timers.ring_max_s"),
])
def test_new_sections_name_the_key(tmp_path, text, key):
    lines = _error_lines(tmp_path, text)
    assert lines[0].startswith(f"{tmp_path / 'edged.toml'}: {key}: "), lines
