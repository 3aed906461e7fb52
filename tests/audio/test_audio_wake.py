import numpy as np
import pytest

from edged.audio.endpoint import Endpointer
from edged.audio.frames import AudioFrame
from edged.audio.wake import WakeDetector
from edged.errors import ModelError

from .conftest import pad_frames


def _frames(data, t0=0.0):
    data = pad_frames(data)
    for i in range(0, len(data), 2560):
        yield AudioFrame(data[i:i + 2560], 16000, t0 + (i + 2560) / 32000, i // 2560)


def _run(det, data):
    return [d for f in _frames(data) if (d := det.process(f)) is not None]


ENGINES = ["lean", "openwakeword"]


@pytest.fixture(scope="module", params=ENGINES)
def detector(request, models_dir):
    d = WakeDetector(["hey_jarvis", "alexa"], models_dir, threshold=0.5, trigger_frames=2, refractory_s=2.0,
                     engine=request.param)
    d.load()
    return d


def test_hey_jarvis_detected_in_every_voice_and_speed(detector, clips, caplog):
    caplog.set_level("INFO", logger="edged.audio.wake")
    wakes = sorted(k for k in clips if k.startswith("wake_"))
    assert len(wakes) >= 6
    for name in wakes:
        detector.reset()
        detector._quiet_until = float("-inf")
        hits = _run(detector, bytes(32000) + clips[name] + bytes(32000))
        assert len(hits) == 1, name  # debounce + refractory: one utterance fires once
        assert hits[0].model == "hey_jarvis" and hits[0].score >= 0.5
    assert "wake word hey_jarvis detected, score" in caplog.text


def test_no_detection_on_other_phrases(detector, clips):
    for name in [k for k in clips if k.startswith(("neg_", "cmd_"))]:
        detector.reset()
        assert _run(detector, bytes(16000) + clips[name] + bytes(16000)) == [], name


@pytest.mark.parametrize("engine", ENGINES)
def test_refractory_then_fires_again(engine, models_dir, clips):
    det = WakeDetector(["hey_jarvis"], models_dir, refractory_s=3.0, engine=engine)
    w = clips["wake_en_us_175"]
    gap = bytes(32000)  # 1 s: the second "hey jarvis" is within the 3 s refractory period
    assert len(_run(det, gap + w + gap + w + gap)) == 1
    det2 = WakeDetector(["hey_jarvis"], models_dir, refractory_s=0.5, engine=engine)
    assert len(_run(det2, gap + w + gap + w + gap)) == 2
    assert det2.stats()["detections"] == 2 and det2.stats()["last_model"] == "hey_jarvis"
    assert det2.stats()["engine"] == engine


@pytest.mark.parametrize("engine", ENGINES)
def test_missing_or_corrupt_model_names_file_and_fix(engine, tmp_path, models_dir):
    with pytest.raises(ModelError, match=r"hey_jarvis_v0.1.onnx: missing.*edged models fetch"):
        WakeDetector(["hey_jarvis"], tmp_path, engine=engine).load()
    bad = tmp_path / "custom.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"custom.onnx.*edged models fetch"):
        WakeDetector([str(bad)], models_dir, engine=engine).load()


@pytest.mark.parametrize("engine", ENGINES)
def test_custom_model_path(engine, models_dir, clips):
    det = WakeDetector([str(models_dir / "hey_jarvis_v0.1.onnx")], models_dir, engine=engine)
    hits = _run(det, bytes(32000) + clips["wake_en_gb_140"] + bytes(32000))
    assert len(hits) == 1 and hits[0].model.endswith("hey_jarvis_v0.1.onnx")


@pytest.mark.parametrize("kind", ["webrtc", "silero"])
def test_endpointer_reasons(kind, models_dir, clips):
    def run(ep, data):
        for n, f in enumerate(_frames(data)):
            if (r := ep.process(f)) is not None:
                return r, (n + 1) * 0.08
        return None, None

    ep = Endpointer(kind, silence_ms=500, max_utterance_s=15, no_speech_timeout_s=2.0, models_dir=models_dir)
    cmd = clips["cmd_light"]
    loud = np.flatnonzero(np.abs(np.frombuffer(cmd, "<i2")) > 300)
    speech_end = 0.5 + loud[-1] / 16000
    reason, at = run(ep, bytes(16000) + cmd + bytes(32000 * 3))
    assert reason == "silence" and speech_end + 0.5 - 0.2 <= at <= speech_end + 0.5 + 0.6
    ep.reset()
    assert run(ep, bytes(32000 * 4)) == ("no_speech", pytest.approx(2.0, abs=0.09))
    ep = Endpointer(kind, silence_ms=500, max_utterance_s=1.0, no_speech_timeout_s=5, models_dir=models_dir)
    assert run(ep, cmd + bytes(32000))[0] == "max_length"


def test_endpointer_bad_kind():
    with pytest.raises(ValueError, match="turn.vad"):
        Endpointer("energy")
