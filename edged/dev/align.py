"""Where a spoken phrase ends inside a longer rendering of the same words (for the end-of-turn corpus).

The corpus inserts a pause into a whole sentence after its first words ("turn on the ... kitchen
light").  The first words rendered on their own are longer than the same words inside the sentence:
a voice lengthens the last syllable of an utterance (final lengthening), festival's HTS voice by up
to 30 %.  Taking the phrase's own duration as the split point therefore put 7 of the 10 festival
pauses after or inside the next word: pocketsphinx heard "switch the fan on", "play some music by
the b" before the pause.

So the phrase's frames are aligned to the sentence's by dynamic time warping, open at the sentence's
end: the phrase ends where its last frame aligns.  Features: log mel band energies (40 bands, 25 ms
windows every 10 ms), mean-normalised per band, compared by cosine distance.
"""

from __future__ import annotations

import numpy as np

from ..audio.melspec import mel_filters

WIN, HOP, BANDS = 400, 160, 40  # 25 ms and 10 ms at 16 kHz


def features(x: np.ndarray) -> np.ndarray:
    """(frames, BANDS) unit-length rows of mean-normalised log mel energies of int16 (or float) audio."""
    x = np.asarray(x, dtype=np.float64) / 32768.0
    n = 1 + max(0, (x.size - WIN) // HOP)
    x = np.pad(x, (0, max(0, WIN - x.size)))
    frames = x[np.arange(WIN)[None, :] + HOP * np.arange(n)[:, None]] * np.hanning(WIN)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    m = np.log(power @ mel_filters(BANDS, WIN, 16000).T.astype(np.float64) + 1e-8)
    m -= m.mean(axis=0)
    return m / (np.linalg.norm(m, axis=1, keepdims=True) + 1e-9)


def phrase_end(phrase: np.ndarray, sentence: np.ndarray, latest: int | None = None) -> int:
    """The sample of ``sentence`` (16 kHz, trimmed to its speech) where ``phrase`` (the same voice
    speaking the sentence's first words, trimmed) ends, at or before ``latest``.

    Open-end DTW: both start together; the phrase may end anywhere in the sentence.  Steps (1,1),
    (1,0) and (0,1); the end is the column with the least cost per step of the path.
    """
    cost = 1.0 - features(phrase) @ features(sentence).T
    n, m = cost.shape
    last = m if latest is None else max(1, min(m, (latest - WIN // 2) // HOP + 1))
    c = cost.tolist()
    # d[j], steps[j]: the best path's cost and length to (i, j); row by row
    d = [0.0] * m
    steps = [0] * m
    acc = 0.0
    for j in range(m):
        acc += c[0][j]
        d[j], steps[j] = acc, j + 1
    for i in range(1, n):
        row = c[i]
        prev_d, prev_s = d, steps
        d, steps = [0.0] * m, [0] * m
        d[0], steps[0] = prev_d[0] + row[0], prev_s[0] + 1
        for j in range(1, m):
            best, s = prev_d[j - 1], prev_s[j - 1]  # diagonal
            if prev_d[j] < best:
                best, s = prev_d[j], prev_s[j]
            if d[j - 1] < best:
                best, s = d[j - 1], steps[j - 1]
            d[j], steps[j] = row[j] + best, s + 1
    j = min(range(last), key=lambda k: d[k] / steps[k])
    return j * HOP + WIN // 2
