"""Quiet skip: the wake-word models rest while the room holds only its steady noise, and every frame they
do score gets the score it would have had if they had never rested (the engine first gets the frames it
skipped).  Real models, espeak-ng speech, room noise from the end-of-turn corpus's generator."""

import numpy as np
import pytest

from edged.audio.frames import AudioFrame
from edged.audio.wake import BACKLOG_S, FLOOR_S, WakeDetector
from edged.dev.turn_corpus import noise

RATE = 16000
FRAME = 1280


def _scene(parts: list, noise_spec: str, seed: int = 3) -> np.ndarray:
    """``parts``: seconds of room tone (a number) or a clip (int16 bytes), in order, with the noise under all."""
    x = np.concatenate([np.zeros(int(p * RATE)) if isinstance(p, int | float)
                        else np.frombuffer(p, dtype="<i2").astype(np.float64) for p in parts])
    x = np.concatenate([x, np.zeros((-x.size) % FRAME)])
    x = x + noise(noise_spec, x.size, seed)
    return np.clip(np.round(x), -32768, 32767).astype("<i2")


def _feed(det: WakeDetector, x: np.ndarray) -> tuple[list, dict[int, dict[str, float]]]:
    hits, scored = [], {}
    for i in range(0, x.size, FRAME):
        seq = i // FRAME
        before = det.frames
        d = det.process(AudioFrame(x[i:i + FRAME].tobytes(), RATE, (i + FRAME) / RATE, seq))
        if det.frames > before:
            scored[seq] = dict(det.last_scores)
        if d is not None:
            hits.append((d.seq, d.model, round(d.score, 5)))
    return hits, scored


@pytest.mark.parametrize("engine", ["lean", "openwakeword"])
@pytest.mark.parametrize("noise_spec", ["none", "white-60", "pink-50", "hum-50", "white-40"])
def test_scores_with_quiet_skip_are_the_scores_without_it(models_dir, clips, engine, noise_spec):
    wake, other = clips["wake_en_us_140"], clips["neg_0"]
    # a first wake word after the floor is known; a second after a rest shorter than the backlog (the
    # engine goes on from where it stopped); a third after a longer one (the backlog alone brings it
    # back); other speech between
    x = _scene([FLOOR_S + 2.0, wake, 4.0, other, BACKLOG_S - 1.0 + 2.0, wake, 10.0, wake, 3.0], noise_spec)
    plain = WakeDetector(["hey_jarvis"], models_dir, engine=engine)
    quiet = WakeDetector(["hey_jarvis"], models_dir, engine=engine, quiet_margin_db=3.0)
    for det in (plain, quiet):  # the package pads its features with numpy's global random noise
        np.random.seed(1234)
        det.load()
    hits_plain, scores_plain = _feed(plain, x)
    hits_quiet, scores_quiet = _feed(quiet, x)
    assert len(hits_plain) == 3, hits_plain
    assert hits_quiet == hits_plain
    for seq, sc in scores_quiet.items():
        assert sc["hey_jarvis"] == pytest.approx(scores_plain[seq]["hey_jarvis"], abs=1e-5), seq
    # and they rested: in steady noise most of the frames between the words were not scored
    skipped = quiet.gate.skipped
    assert skipped == len(scores_plain) - len(scores_quiet)
    assert skipped >= 0.35 * len(scores_plain), (skipped, len(scores_plain))
    assert quiet.stats()["quiet_skipped"] == skipped
    assert quiet.gate.dropped > 0  # a rest longer than the backlog (the third wake word) was in it


def test_until_the_floor_is_known_and_with_margin_zero_every_frame_is_scored(models_dir):
    x = _scene([FLOOR_S - 1.0], "white-60")
    quiet = WakeDetector(["hey_jarvis"], models_dir, quiet_margin_db=3.0)
    _, scored = _feed(quiet, x)
    assert len(scored) == x.size // FRAME and quiet.gate.skipped == 0
    off = WakeDetector(["hey_jarvis"], models_dir, quiet_margin_db=0.0)
    assert off.gate is None
    _, scored = _feed(off, _scene([FLOOR_S + 5.0], "white-60"))
    assert len(scored) == int((FLOOR_S + 5.0) * RATE) // FRAME


def test_a_sound_over_the_floor_wakes_the_models_and_a_reset_forgets_the_floor(models_dir):
    quiet = WakeDetector(["hey_jarvis"], models_dir, quiet_margin_db=3.0)
    x = _scene([FLOOR_S + 3.0], "white-60")
    _feed(quiet, x)
    assert quiet.gate.skipped > 0
    n = quiet.frames
    tone = (np.sin(2 * np.pi * 440 * np.arange(FRAME) / RATE) * 3000).astype("<i2")  # far over the floor
    quiet.process(AudioFrame(tone.tobytes(), RATE, 100.0, 10_000))
    assert quiet.frames == n + 1
    quiet.reset()
    _, scored = _feed(quiet, _scene([2.0], "white-60"))
    assert len(scored) == int(2.0 * RATE) // FRAME  # the floor is learnt again


def test_the_quiet_skip_comes_from_the_config_and_a_bad_margin_names_file_and_key(tmp_path, models_dir):
    from edged import config
    from edged.audio import wake
    from edged.errors import ConfigError

    det = wake.from_config(config.parse({"wake": {"models_dir": str(models_dir)}}))
    assert det.gate is not None and det.gate.margin_db == 3.0  # on by default
    det = wake.from_config(config.parse({"wake": {"models_dir": str(models_dir), "quiet_margin_db": 6}}))
    assert det.gate.margin_db == 6.0
    assert wake.from_config(config.parse({"wake": {"models_dir": str(models_dir), "quiet_margin_db": 0}})).gate is None
    path = tmp_path / "edged.toml"
    path.write_text("[wake]\nquiet_margin_db = -1\n")
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert str(e.value).startswith(f"{path}: wake.quiet_margin_db: ")
