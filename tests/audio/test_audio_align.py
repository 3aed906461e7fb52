"""Where the end-of-turn corpus puts its pauses (edged.dev.align): at the end of the first words inside
the sentence, not after their own (longer) duration."""

import subprocess

import numpy as np
import pytest

from edged.dev import align, tts
from edged.dev import turn_corpus as tc

RATE = 16000


def _pcm(path):
    x = np.frombuffer(path.read_bytes(), dtype="<i2")
    a, b = tc._trim(x)
    return x[a:b].copy()


def _stretch(x: np.ndarray, factor: float) -> np.ndarray:
    """``x`` made ``factor`` times longer at the same pitch (sox tempo), as a voice lengthens the
    last syllable of an utterance."""
    fmt = ["-t", "raw", "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer"]
    out = subprocess.run(["sox", *fmt, "-", *fmt, "-", "tempo", "-s", str(1 / factor)], input=x.tobytes(),
                         capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(out, dtype="<i2")


@pytest.mark.parametrize("voice,speed", [("en-us", 160), ("en-gb", 140), ("festival:cmu_us_slt_arctic_hts", 0)])
def test_the_first_words_end_where_they_end_in_the_sentence_despite_final_lengthening(voice, speed, tmp_path):
    sentence = _pcm(tts.render("set the thermostat to twenty degrees", voice=voice, speed=speed,
                               cache_dir=tmp_path))
    truth = tc._split_point(sentence, int(sentence.size * 0.55))  # a quiet point mid-sentence
    # the phrase as spoken alone: the same start, its last 250 ms drawn out by 40 %
    tail = RATE // 4
    phrase = np.concatenate([sentence[: truth - tail], _stretch(sentence[truth - tail: truth], 1.4)])
    assert phrase.size - truth >= RATE // 10  # the phrase's own length overshoots by 100 ms
    found = align.phrase_end(phrase, sentence)
    assert abs(found - truth) <= RATE * 40 // 1000, (found / RATE, truth / RATE)
    # and the corpus's placement (the quietest 20 ms within 50 ms) lands on the boundary itself
    assert abs(tc._split_point(sentence, found) - truth) <= RATE * 10 // 1000


def test_the_end_is_never_after_latest():
    rng = np.random.default_rng(0)
    sentence = (rng.standard_normal(RATE * 2) * 3000).astype(np.int16)
    latest = RATE // 2
    assert align.phrase_end(sentence, sentence, latest=latest) <= latest


def test_every_pause_leaves_half_the_rest_of_the_sentence_after_it(tmp_path):
    """Version 1 of the corpus put festival's "switch the fan ... on" pause after "on"."""
    corpus = tc.build(tmp_path, voices=tc.TRAINED_VOICES)
    paused = [c for c in corpus if c.label == "pause"]
    assert len(paused) == len(tc.PAUSED)
    for c in paused:
        first, rest = c.text.split(" ... ")
        rest_len = _pcm(tts.render(rest, voice=c.voice, speed=c.speed, cache_dir=tmp_path / "tts")).size
        after = c.speech_end - c.pause_at - c.pause_ms * RATE // 1000
        assert after >= rest_len // 2 - RATE // 20, (c.text, after / RATE, rest_len / RATE)
