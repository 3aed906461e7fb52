"""The lean wake engine against the openwakeword package (the oracle), engine selection, import hygiene."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edged import config
from edged.audio import models as M
from edged.audio import wake
from edged.audio.frames import AudioFrame
from edged.audio.oww_lean import LeanWakeModel, SessionSettings, start_noise
from edged.audio.wake import WakeDetector
from edged.errors import ConfigError, ModelError

from .conftest import ROOT, pad_frames

TOL = 1e-4
WAKE_FILES = ["hey_jarvis_v0.1.onnx", "alexa_v0.1.onnx"]


def _pair(models_dir, settings=None):
    """(lean, oracle) over the same models; the oracle's start-up noise replaced by the lean engine's."""
    from openwakeword.model import Model

    paths = [str(models_dir / f) for f in WAKE_FILES]
    lean = LeanWakeModel({p.rsplit("/", 1)[1][:-5]: p for p in paths}, models_dir / M.MELSPEC,
                         models_dir / M.EMBEDDING, settings=settings)
    oracle = Model(wakeword_models=paths, inference_framework="onnx", melspec_model_path=str(models_dir / M.MELSPEC),
                   embedding_model_path=str(models_dir / M.EMBEDDING))
    oracle.preprocessor.feature_buffer = lean.features.copy()
    return lean, oracle


def _compare(lean, oracle, audio: np.ndarray, sizes=(1280,)):
    """Feed both in the same chunks; returns (largest difference, per-chunk lean scores)."""
    worst, trace, i, k = 0.0, [], 0, 0
    while i < len(audio):
        n = sizes[k % len(sizes)]
        chunk = audio[i:i + n]
        i, k = i + n, k + 1
        a, b = lean.predict(chunk), oracle.predict(chunk)
        assert a.keys() == b.keys()
        worst = max(worst, *(abs(a[m] - float(b[m])) for m in a))
        trace.append(a)
    return worst, trace


def _pcm(b: bytes) -> np.ndarray:
    return np.frombuffer(pad_frames(b), "<i2")


@pytest.fixture(scope="module")
def pair(models_dir):
    return _pair(models_dir)


def test_start_noise_is_uniform_deterministic_and_seeded():
    a = start_noise()
    assert a.dtype == np.int16 and a.shape == (4 * 16000,)
    assert a.min() == -1000 and a.max() == 999
    counts = np.bincount((a.astype(int) + 1000) // 200, minlength=10)  # ten bins of 200 values
    assert counts.min() > 0.9 * len(a) / 10 and counts.max() < 1.1 * len(a) / 10
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 0.02  # no pattern from one sample to the next
    assert np.array_equal(a, start_noise()) and not np.array_equal(a, start_noise(seed=1))


def test_start_padding_is_the_packages_embedding_of_the_same_noise(pair):
    lean, oracle = pair
    ref = oracle.preprocessor._get_embeddings(start_noise())
    assert ref.shape == lean.features.shape == (41, 96)
    assert np.abs(ref - lean.features).max() <= TOL


def test_scores_equal_the_package_on_every_clip(pair, clips):
    lean, oracle = pair
    peak = {}
    for name in sorted(k for k in clips if k.startswith(("wake_", "neg_", "cmd_"))):
        lean.reset()
        oracle.reset()
        oracle.preprocessor.feature_buffer = lean.features.copy()
        worst, trace = _compare(lean, oracle, _pcm(bytes(32000) + clips[name] + bytes(32000)))
        assert worst <= TOL, name
        peak[name] = max(s["hey_jarvis_v0.1"] for s in trace)
    # the comparison covers real detections, not only scores near 0
    assert min(v for k, v in peak.items() if k.startswith("wake_")) >= 0.5
    assert max(v for k, v in peak.items() if not k.startswith("wake_")) < 0.5


@pytest.mark.parametrize("dbfs", [-60, -40, -20])
def test_scores_equal_the_package_on_noise_and_speech_in_noise(pair, clips, dbfs):
    lean, oracle = pair
    lean.reset()
    oracle.reset()
    oracle.preprocessor.feature_buffer = lean.features.copy()
    rng = np.random.default_rng(-dbfs)
    rms = 32768 * 10 ** (dbfs / 20)
    white = rng.normal(0, rms, 16000 * 4)
    pink = np.cumsum(rng.normal(0, 1, 16000 * 4))
    pink = (pink - np.convolve(pink, np.ones(200) / 200, "same")) * rms / 8  # a rough 1/f-ish noise
    speech = np.frombuffer(clips["wake_en_gb_175"] + clips["neg_1"], "<i2").astype(float)
    bed = rng.normal(0, rms, len(speech))
    audio = np.concatenate([white, pink, speech + bed]).clip(-32768, 32767).astype(np.int16)
    worst, _ = _compare(lean, oracle, audio)
    assert worst <= TOL


def test_scores_equal_the_package_for_uneven_chunks(pair, clips):
    """Partial chunks wait for the rest; several chunks in one call score their best window."""
    lean, oracle = pair
    lean.reset()
    oracle.reset()
    oracle.preprocessor.feature_buffer = lean.features.copy()
    audio = _pcm(bytes(8000) + clips["wake_en_us_140"] + bytes(16000) + clips["wake_en_f3_175"] + bytes(16000))
    worst, trace = _compare(lean, oracle, audio, sizes=(640, 640, 2560, 1000, 280, 3840, 100, 4000, 1280))
    assert worst <= TOL
    assert max(s["hey_jarvis_v0.1"] for s in trace) >= 0.5


def test_memory_settings_do_not_change_scores(models_dir, clips):
    """Options that save memory or CPU, against the lean defaults and the package: the same numbers."""
    lean, oracle = _pair(models_dir, settings=SessionSettings(cpu_mem_arena=False, mem_pattern=True,
                                                              graph_optimization="basic"))
    ref = LeanWakeModel({"hey_jarvis_v0.1": models_dir / WAKE_FILES[0], "alexa_v0.1": models_dir / WAKE_FILES[1]},
                        models_dir / M.MELSPEC, models_dir / M.EMBEDDING)
    audio = _pcm(bytes(16000) + clips["wake_en_us_175"] + bytes(16000))
    worst, _ = _compare(lean, oracle, audio)
    assert worst <= TOL
    lean.reset()
    for i in range(0, len(audio), 1280):
        a, b = lean.predict(audio[i:i + 1280]), ref.predict(audio[i:i + 1280])
        assert max(abs(a[m] - b[m]) for m in a) <= TOL


def test_reset_starts_over(models_dir, clips):
    lean = LeanWakeModel({"j": models_dir / WAKE_FILES[0]}, models_dir / M.MELSPEC, models_dir / M.EMBEDDING)
    audio = _pcm(bytes(16000) + clips["wake_en_us_175"])
    first = [lean.predict(audio[i:i + 1280])["j"] for i in range(0, len(audio), 1280)]
    lean.predict(np.full(5000, 3000, np.int16))
    lean.reset()
    again = [lean.predict(audio[i:i + 1280])["j"] for i in range(0, len(audio), 1280)]
    assert first == again
    assert first[:5] == [0.0] * 5 and max(first) >= 0.5  # the package's rule: the first 5 calls score 0


def _frames(data: bytes):
    data = pad_frames(data)
    for i in range(0, len(data), 2560):
        yield AudioFrame(data[i:i + 2560], 16000, (i + 2560) / 32000, i // 2560)


def test_both_engines_detect_on_the_same_frames(models_dir, clips):
    audio = bytes(32000)
    for name in sorted(k for k in clips if k.startswith(("wake_", "neg_"))):
        audio += clips[name] + bytes(48000)
    hits = {}
    for engine in wake.ENGINES:
        np.random.seed(1234)  # the package pads its buffer with random noise
        det = WakeDetector(["hey_jarvis", "alexa"], models_dir, trigger_frames=2, refractory_s=1.0, engine=engine)
        hits[engine] = [(d.seq, d.model) for f in _frames(audio) if (d := det.process(f)) is not None]
    assert hits["lean"] == hits["openwakeword"]
    assert len(hits["lean"]) == sum(k.startswith("wake_") for k in clips)


def test_not_a_wake_model_is_a_model_error(models_dir):
    # the embedding model is a valid ONNX file with the wrong shapes for a wake model
    with pytest.raises(ModelError, match=r"embedding_model.onnx.*not \[1, frames, 96\]"):
        WakeDetector([str(models_dir / M.EMBEDDING)], models_dir).load()


def test_bad_engine_argument():
    with pytest.raises(ValueError, match="lean, openwakeword"):
        WakeDetector(["hey_jarvis"], "/nonexistent", engine="tflite")


def test_engine_from_config(tmp_path, models_dir):
    cfg = config.parse({"wake": {"models_dir": str(models_dir), "threshold": 0.6, "trigger_frames": 2}})
    det = wake.from_config(cfg)
    assert (det.engine, det.threshold, det.trigger_frames, det.models_dir) == ("lean", 0.6, 2, models_dir)
    cfg = config.parse({"wake": {"engine": "openwakeword", "models": ["alexa"], "models_dir": str(models_dir)}})
    det = wake.from_config(cfg)
    assert det.engine == "openwakeword" and det.names == ["alexa"]
    det.load()
    assert det.scores(AudioFrame(bytes(2560), 16000, 0.08, 0)) == {"alexa": 0.0}


def test_bad_engine_in_config_names_file_and_key(tmp_path):
    path = tmp_path / "edged.toml"
    path.write_text('[wake]\nengine = "tflite"\n')
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert str(e.value) == f"{path}: wake.engine: must be 'lean' or 'openwakeword'"


HEAVY = ["openwakeword", "scipy", "sklearn", "requests", "tqdm"]


@pytest.mark.parametrize("engine", wake.ENGINES)
def test_lean_engine_imports_no_openwakeword(engine, models_dir):
    """A process that loads the detector and scores audio: which heavy modules did it import?"""
    code = textwrap.dedent(f"""
        import json, sys
        from edged.audio.frames import AudioFrame
        from edged.audio.wake import WakeDetector
        det = WakeDetector(["hey_jarvis"], {str(models_dir)!r}, engine={engine!r})
        for i in range(8):
            det.process(AudioFrame(bytes(2560), 16000, 0.08 * (i + 1), i))
        print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
                         + ["numpy.random"] * ("numpy.random" in sys.modules)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         check=True)
    heavy = json.loads(out.stdout)
    if engine == "lean":
        assert heavy == []  # numpy.random included: about 1.5 MB for the start-up noise alone
    else:  # the check sees them when they are there
        assert {"openwakeword", "scipy", "sklearn"} <= set(heavy)
