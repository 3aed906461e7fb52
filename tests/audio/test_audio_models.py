import argparse
import hashlib

import pytest

from edged.audio import models, models_cli
from edged.errors import ModelError


def _args(action, d):
    return argparse.Namespace(action=action, config=None, dir=str(d))


def test_fetch_into_empty_dir_then_corrupt_file_is_replaced(tmp_path, capsys):
    d = tmp_path / "m"
    assert models_cli.cli(_args("check", d)) == 1  # nothing there yet
    assert "missing" in capsys.readouterr().err
    assert models_cli.cli(_args("fetch", d)) == 0
    for name, digest in models.MANIFEST.items():
        assert hashlib.sha256((d / name).read_bytes()).hexdigest() == digest
    assert models.check(d) == []
    # corrupt one file, delete another: check names both, fetch repairs them
    (d / "hey_jarvis_v0.1.onnx").write_bytes(b"garbage")
    (d / "melspectrogram.onnx").unlink()
    problems = models.check(d)
    assert any("hey_jarvis_v0.1.onnx: corrupt" in p for p in problems)
    assert any("melspectrogram.onnx: missing" in p for p in problems)
    assert models_cli.cli(_args("check", d)) == 1
    assert sorted(models.fetch(d)) == ["hey_jarvis_v0.1.onnx", "melspectrogram.onnx"]
    assert models.check(d) == []
    assert models.fetch(d) == []  # complete: nothing to do
    assert not [p for p in d.iterdir() if p.name.startswith(".")]  # no temp files left


def test_check_for_configured_names(models_dir, tmp_path):
    assert models.check(models_dir, ["hey_jarvis", "alexa"]) == []
    custom = tmp_path / "mine.onnx"
    assert models.check(models_dir, [str(custom)]) == [f"{custom}: missing"]
    assert "unknown" in models.check(models_dir, ["hey_siri"])[0]


def test_resolve(tmp_path):
    assert models.resolve("hey_jarvis", tmp_path) == tmp_path / "hey_jarvis_v0.1.onnx"
    assert models.resolve("/opt/w/my_word.onnx", tmp_path).as_posix() == "/opt/w/my_word.onnx"
    with pytest.raises(ModelError, match="hey_siri"):
        models.resolve("hey_siri", tmp_path)


def test_cli_uses_config_models_dir(tmp_path, models_dir, capsys):
    cfg = tmp_path / "edged.toml"
    cfg.write_text(f'[wake]\nmodels = ["hey_jarvis"]\nmodels_dir = "{tmp_path / "none"}"\n')
    assert models_cli.cli(argparse.Namespace(action="check", config=str(cfg), dir=None)) == 1
    assert str(tmp_path / "none") in capsys.readouterr().err
    cfg.write_text(f'[wake]\nmodels = ["hey_jarvis"]\nmodels_dir = "{models_dir}"\n')
    assert models_cli.cli(argparse.Namespace(action="check", config=str(cfg), dir=None)) == 0


def test_fetch_from_nothing_starts_pip_once_for_both_wheels(tmp_path, monkeypatch):
    # starting pip costs seconds on a slow board: both wheels (openWakeWord's, Pipecat's) come from one run
    runs = []
    real_run = models.subprocess.run

    def counting(cmd, *a, **kw):
        if cmd[1:4] == ["-m", "pip", "download"]:
            runs.append(cmd)
        return real_run(cmd, *a, **kw)

    monkeypatch.setattr(models.subprocess, "run", counting)
    d = tmp_path / "m"
    assert sorted(models.fetch(d)) == sorted(models.MANIFEST)
    assert models.check(d) == []
    assert len(runs) == 1
    assert models.PACKAGE in runs[0] and models.SMART_PACKAGE in runs[0]


def test_a_failed_download_says_which_wheels_to_fetch_by_hand(tmp_path, monkeypatch):
    def pip_fails(cmd, *a, **kw):
        return models.subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for pipecat-ai==1.14.0\n")

    monkeypatch.setattr(models.subprocess, "run", pip_fails)
    with pytest.raises(ModelError) as err:
        models.fetch(tmp_path / "m")
    msg = str(err.value)
    assert "No matching distribution found for pipecat-ai==1.14.0" in msg
    assert models.WHEEL in msg and models.SMART_WHEEL in msg and models.SMART_PREFIX in msg
    assert not (tmp_path / "m" / models.SMART_TURN).exists()
