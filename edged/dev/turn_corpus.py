"""A labelled end-of-turn corpus for tests and benchmarks (not used by the daemon).

Spoken commands rendered with espeak-ng in several voices and speeds (``VOICES``), and with a festival
HTS voice whose pitch and durations were trained on a recorded speaker (``TRAINED_VOICES``; its
prosody is closer to a person's than espeak's rules, see ``tts``):

* ``complete``: a whole command;
* ``pause``: a whole command with 400-900 ms of silence inserted mid-sentence by sox
  (``pad SECONDS@POSITION``) at the quietest point near the word boundary, e.g.
  "turn on the ... kitchen light".  The sentence is rendered whole, so the intonation before the
  pause is that of an unfinished sentence.  The boundary is found by aligning the first words,
  rendered on their own, to the sentence (``align.phrase_end``; version 1 took their own duration,
  which final lengthening makes too long, and put most festival pauses inside the next word).

Each clip carries ``speech_end`` (the sample after its last audible sample) and, for pause clips,
where the pause is.  ``noise(kind, level_dbfs, n)`` makes room noise to mix under a clip: white or
pink at an RMS level, or a mains hum (50 Hz and its harmonics, 100 Hz strongest, like a fridge or a
fan).  Renders are cached under ``cache_dir`` by a hash of everything that makes them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .align import phrase_end
from .tts import FESTIVAL, render

RATE = 16000
VERSION = 2  # bump to re-render (2: pauses placed by alignment)
VOICES = [("en-us", 160), ("en-gb", 140), ("en+f3", 180), ("en-us+m3", 130)]
COMPLETE = [
    "turn on the kitchen light",
    "set a timer for ten minutes",
    "what time is it",
    "turn off the bedroom lamp",
    "what is the weather like today",
    "stop",
    "what do you see",
    "dim the living room lights",
    "is the front door locked",
    "remind me to call mom at five",
    "play some music",
    "how warm is it outside",
]
# (first part, rest): the pause goes between them
PAUSED = [
    ("turn on the", "kitchen light"),
    ("set a timer for", "ten minutes"),
    ("turn off the", "bedroom lamp"),
    ("remind me to", "call mom at five"),
    ("dim the living room", "lights"),
    ("what is the weather like in", "london"),
    ("can you tell me", "what time it is"),
    ("set the thermostat to", "twenty degrees"),
    ("play some music by", "the beatles"),
    ("switch the fan", "on"),
]
TRAINED_VOICES = [("festival:cmu_us_slt_arctic_hts", 0)]  # Debian: festival festvox-us-slt-hts
PAUSES_MS = [400, 550, 700, 900]
AUDIBLE = 100  # int16 amplitude counted as sound when finding where speech ends (about -50 dBFS)


@dataclass(frozen=True)
class Clip:
    name: str
    label: str  # "complete" | "pause"
    text: str
    voice: str
    speed: int
    pcm: np.ndarray  # int16 at 16 kHz, speech only (no lead-in or tail)
    speech_end: int  # sample after the last audible one
    pause_at: int | None = None  # sample where the pause starts
    pause_ms: int = 0

    @property
    def family(self) -> str:
        """"espeak" (rule-based prosody) or "festival" (trained prosody)."""
        return "festival" if self.voice.startswith(FESTIVAL) else "espeak"


def _load(path: Path) -> np.ndarray:
    return np.frombuffer(path.read_bytes(), dtype="<i2").copy()


def _trim(x: np.ndarray) -> tuple[int, int]:
    loud = np.flatnonzero(np.abs(x.astype(np.int32)) > AUDIBLE)
    return (int(loud[0]), int(loud[-1]) + 1) if loud.size else (0, 0)


def _split_point(full: np.ndarray, approx: int, reach: int = RATE // 20) -> int:
    """The quietest 20 ms within ``reach`` samples (50 ms) of ``approx`` (the word boundary), at its middle."""
    win = RATE // 50
    lo, hi = max(win, approx - reach), min(full.size - win, approx + reach)
    if hi <= lo:
        return approx
    e = np.convolve(np.square(full.astype(np.float64)), np.ones(win), mode="same")
    return lo + int(np.argmin(e[lo:hi]))


def _render_paused(first: str, rest: str, voice: str, speed: int, pause_ms: int, cache: Path,
                   tts_cache: Path) -> tuple[np.ndarray, int]:
    text = f"{first} {rest}"
    key = hashlib.sha256(json.dumps([VERSION, first, rest, voice, speed, pause_ms]).encode()).hexdigest()[:16]
    out, meta = cache / f"pause-{key}.raw", cache / f"pause-{key}.json"
    if out.is_file() and meta.is_file():
        return _load(out), int(json.loads(meta.read_text())["pause_at"])
    full_path = render(text, rate=RATE, voice=voice, speed=speed, cache_dir=tts_cache)
    head = _load(render(first, rate=RATE, voice=voice, speed=speed, cache_dir=tts_cache))
    tail = _load(render(rest, rate=RATE, voice=voice, speed=speed, cache_dir=tts_cache))
    full = _load(full_path)
    f0, f1 = _trim(full)
    h0, h1 = _trim(head)
    t0, t1 = _trim(tail)
    # at least half of the rest's own length stays after the pause
    end = phrase_end(head[h0:h1], full[f0:f1], latest=(f1 - f0) - (t1 - t0) // 2)
    at = _split_point(full, f0 + end)
    with tempfile.TemporaryDirectory(prefix="edged-corpus-") as tmp:
        tmp_out = Path(tmp) / "out.raw"
        fmt = ["-t", "raw", "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer"]
        subprocess.run(["sox", *fmt, str(full_path), *fmt, str(tmp_out), "pad", f"{pause_ms / 1000}@{at}s"],
                       check=True, capture_output=True, timeout=60)
        cache.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"pause_at": at, "text": text, "voice": voice, "speed": speed,
                                    "pause_ms": pause_ms}))
        shutil.move(tmp_out, out)
    return _load(out), at


def build(cache_dir: str | Path, *, voices: list[tuple[str, int]] | None = None) -> list[Clip]:
    """Every clip: each complete command and each paused command in every voice (pauses rotate)."""
    vs = voices or VOICES  # render() says which tool is missing, and its package
    cache = Path(cache_dir)
    tts_cache = cache / "tts"
    clips: list[Clip] = []
    for i, text in enumerate(COMPLETE):
        for j, (voice, speed) in enumerate(vs):
            x = _load(render(text, rate=RATE, voice=voice, speed=speed, cache_dir=tts_cache))
            a, b = _trim(x)
            x = x[a:b]
            clips.append(Clip(f"c{i:02d}-{j}", "complete", text, voice, speed, x, x.size))
    for i, (first, rest) in enumerate(PAUSED):
        for j, (voice, speed) in enumerate(vs):
            pause_ms = PAUSES_MS[(i + j) % len(PAUSES_MS)]
            x, at = _render_paused(first, rest, voice, speed, pause_ms, cache, tts_cache)
            a, b = _trim(x)
            clips.append(Clip(f"p{i:02d}-{j}", "pause", f"{first} ... {rest}", voice, speed, x[a:b], b - a,
                              at - a, pause_ms))
    return clips


NOISES = ["none", "white-60", "white-50", "white-40", "pink-60", "pink-50", "pink-40", "hum-50"]


def noise(spec: str, n: int, seed: int = 0) -> np.ndarray:
    """``spec`` is "none" or KIND-LEVEL (white, pink or hum at -LEVEL dBFS RMS); float samples in int16 units."""
    if spec == "none":
        return np.zeros(n)
    kind, level = spec.rsplit("-", 1)
    rms = 32768.0 * 10 ** (-float(level) / 20)
    rng = np.random.default_rng(seed)
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":  # 1/f power: shape white noise in the frequency domain
        spec_ = np.fft.rfft(rng.standard_normal(n))
        f = np.arange(spec_.size, dtype=np.float64)
        f[0] = 1.0
        x = np.fft.irfft(spec_ / np.sqrt(f), n)
    elif kind == "hum":
        t = np.arange(n) / RATE
        phases = rng.uniform(0, 2 * np.pi, 6)
        amps = [0.5, 1.0, 0.4, 0.3, 0.15, 0.1]  # 50, 100, 150, 200, 250, 300 Hz
        x = sum(a * np.sin(2 * np.pi * 50 * (k + 1) * t + ph) for k, (a, ph) in enumerate(zip(amps, phases, strict=True)))
    else:
        raise ValueError(f"noise kind {kind!r}: use white, pink or hum")
    return x * (rms / np.sqrt(np.mean(np.square(x))))


def scene(clip: Clip, noise_spec: str, lead_s: float = 0.5, tail_s: float = 3.0, seed: int = 0) -> tuple[bytes, int]:
    """``lead_s`` of room tone, the clip, ``tail_s`` of room tone, with the noise under all of it.

    Returns S16_LE bytes and the sample where speech ends in them.
    """
    lead, tail = int(lead_s * RATE), int(tail_s * RATE)
    x = np.concatenate([np.zeros(lead), clip.pcm.astype(np.float64), np.zeros(tail)])
    x = x + noise(noise_spec, x.size, seed)
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes(), lead + clip.speech_end


def run(ep, pcm: bytes, frame_samples: int = 1280, realtime_inference: bool = True) -> tuple[str | None, int]:
    """Feed ``pcm`` to a reset Endpointer frame by frame; returns (reason, samples fed when it ended).

    With ``realtime_inference`` a Smart Turn request gets at most one frame of wall time before the
    next frame is fed, as the microphone would give it; otherwise the audio would outrun the model.
    """
    from ..audio.frames import AudioFrame

    ep.reset()
    step = 2 * frame_samples
    fed = 0
    for seq, i in enumerate(range(0, len(pcm) - step + 1, step)):
        reason = ep.process(AudioFrame(pcm[i:i + step], RATE, 0.0, seq))
        fed += frame_samples
        if reason is not None:
            return reason, fed
        if realtime_inference and ep.worker is not None:
            ep.worker.wait_idle(frame_samples / RATE)
    return None, fed
