"""Smart Turn's model file (fetched from the pipecat-ai wheel, checked by sha256) and the [turn] config keys."""

import hashlib
import shutil

import pytest

from edged.audio import models
from edged.audio.endpoint import Endpointer
from edged.config import load
from edged.errors import ConfigError


def test_fetch_takes_smart_turn_from_the_pipecat_wheel(tmp_path, models_dir):
    d = tmp_path / "m"
    d.mkdir()
    for name in models.MANIFEST:  # everything but Smart Turn is there already
        if name != models.SMART_TURN:
            shutil.copy(models_dir / name, d / name)
    assert models.check(d) == [f"{d / models.SMART_TURN}: missing"]
    assert models.fetch(d) == [models.SMART_TURN]
    data = (d / models.SMART_TURN).read_bytes()
    assert hashlib.sha256(data).hexdigest() == models.MANIFEST[models.SMART_TURN]
    assert len(data) > 8_000_000 and models.check(d) == []
    (d / models.SMART_TURN).write_bytes(data[:1000])
    assert "corrupt" in models.check(d)[0]
    assert models.fetch(d) == [models.SMART_TURN] and models.check(d) == []
    assert models.SOURCE_OF[models.SMART_TURN][0] == "pipecat-ai==1.14.0"


def test_a_corrupt_wheel_member_is_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(models.MANIFEST, models.SMART_TURN, "0" * 64)
    with pytest.raises(models.ModelError, match="smart-turn-v3.2-cpu.onnx in pipecat_ai-1.14.0"):
        models.fetch(tmp_path)
    assert not (tmp_path / models.SMART_TURN).exists()


def _cfg(tmp_path, body):
    p = tmp_path / "edged.toml"
    p.write_text(body)
    return p


def test_turn_config_keys(tmp_path, models_dir):
    cfg = load(_cfg(tmp_path, '[turn]\ndetector = "smart_turn"\nsilence_ms = 1200\nsmart_silence_ms = 240\n'
                    'smart_threshold = 0.6\nvad = "silero"\nsmart_reask_ms = 400\nsmart_threads = 2\n'))
    ep = Endpointer.from_config(cfg.turn, models_dir)
    assert (ep.kind, ep.detector, ep.silence_ms, ep.smart_silence_ms, ep.smart_threshold, ep.smart_reask_ms) == \
        ("silero", "smart_turn", 1200, 240, 0.6, 400)
    ep.load()
    assert ep.problem is None and ep.worker is not None
    opts = ep.worker.model._sess.get_session_options()  # the thread count reaches onnxruntime
    assert opts.intra_op_num_threads == 2
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    ep.close()
    defaults = load(_cfg(tmp_path, ""))
    assert (defaults.turn.smart_silence_ms, defaults.turn.smart_reask_ms, defaults.turn.smart_threads) == (200, 0, 1)


@pytest.mark.parametrize("body,key", [
    ('[turn]\ndetector = "smart"\n', "turn.detector"),
    ('[turn]\ndetector = "smart_turn"\nsilence_ms = 200\n', "smart_silence_ms must be below silence_ms"),
    ('[turn]\nsmart_silence_ms = 20\n', "turn.smart_silence_ms"),
    ('[turn]\nsmart_threshold = 1.5\n', "turn.smart_threshold"),
    ('[turn]\nsmart_reask_ms = -1\n', "turn.smart_reask_ms"),
    ('[turn]\nsmart_threads = 0\n', "turn.smart_threads"),
])
def test_turn_config_errors_name_file_and_key(tmp_path, body, key):
    p = _cfg(tmp_path, body)
    with pytest.raises(ConfigError) as e:
        load(p)
    assert str(p) in str(e.value) and key in str(e.value)
