"""Sound cues: short sounds that tell the people in the room what the speaker is doing.

Cues (``edged.config.CUE_NAMES``): ``wake`` (the wake word was heard: a rising pair of notes),
``listen_end`` (end of listening: the same pair falling), ``offline`` (the assistant cannot be reached:
two low falling notes), ``mute_on`` (one low note), ``mute_off`` (one high note) and ``ring`` (a timer or
alarm: three beeps and a pause, looped while it rings).  They are generated here with numpy at the
player's source format (24 kHz mono S16_LE), peaking at -6 dBFS before ``cues.volume``; each can be
switched off or replaced by a WAV file in ``[cues]``.

``CueMixer`` puts a cue into the reply stream chunk by chunk: while a cue sounds, the reply is ducked
to ``cues.duck`` percent of its level (the gain ramps over ``ramp`` frames each way, so no click), and
every output sample is ``clip(rint(reply * duck_gain + cue), -32768, 32767)``.
"""

from __future__ import annotations

import logging
import threading
import wave
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgedError
from .convert import Converter
from .gain import apply_gain, gain

log = logging.getLogger(__name__)

RATE = 24000
MAX_CUE_S = 30.0
PEAK = 0.5 * 32767  # -6 dBFS at cues.volume = 100


class CueFileError(EdgedError, ValueError):
    """A custom cue file cannot be played.  Message: ``PATH: reason``."""


# -- loading a custom cue ---------------------------------------------------------------------------
def load_wav(path: str | Path, rate: int = RATE, *, max_s: float = MAX_CUE_S) -> np.ndarray:
    """Read a PCM WAV (8, 16, 24 or 32 bit, any rate, 1-8 channels) as int16 mono at ``rate``.

    Raises CueFileError naming the file and what is wrong with it.
    """
    p = Path(path).expanduser()
    try:
        with open(p, "rb") as f, wave.open(f, "rb") as w:
            channels, width, src_rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            if not 1 <= channels <= 8:
                raise CueFileError(f"{p}: {channels} channels (1 to 8 can be played)")
            if width not in (1, 2, 3, 4):
                raise CueFileError(f"{p}: {8 * width}-bit samples (8, 16, 24 or 32 bit PCM can be played)")
            if not 8000 <= src_rate <= 192000:
                raise CueFileError(f"{p}: sample rate {src_rate} Hz (8000 to 192000 can be played)")
            if n == 0:
                raise CueFileError(f"{p}: holds no audio")
            if n / src_rate > max_s:
                raise CueFileError(f"{p}: {n / src_rate:.1f} s long; a cue may last at most {max_s:g} s")
            raw = w.readframes(n)
    except CueFileError:
        raise
    except FileNotFoundError:
        raise CueFileError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise CueFileError(f"{p}: is a directory, not a WAV file") from None
    except OSError as exc:
        raise CueFileError(f"{p}: cannot read: {exc.strerror or exc}") from None
    except (wave.Error, EOFError) as exc:
        raise CueFileError(f"{p}: not a PCM WAV file ({exc})") from None
    frames = len(raw) // (width * channels)
    if frames == 0:
        raise CueFileError(f"{p}: holds no audio")
    x = _to_float(raw[: frames * width * channels], width).reshape(frames, channels).mean(axis=1)
    mono = np.clip(np.rint(x), -32768, 32767).astype("<i2")
    return resample(mono, src_rate, rate)


def _to_float(raw: bytes, width: int) -> np.ndarray:
    """PCM bytes -> samples scaled to the int16 range (float64)."""
    if width == 1:  # unsigned 8 bit
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) * 256.0
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.float64)
    if width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        return v.astype(np.float64) / 256.0
    return np.frombuffer(raw, dtype="<i4").astype(np.float64) / 65536.0


def resample(mono: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """A whole int16 mono clip at another rate: ``ceil(n * rate_out / rate_in)`` samples, aligned
    (the converter's filter delay is flushed with zeros and cut off)."""
    if rate_in == rate_out:
        return mono.astype(np.int16)
    conv = Converter(rate_in, 1, rate_out)
    n_out = -(-len(mono) * rate_out // rate_in)
    delay = round(conv.half_width * rate_out / rate_in)
    pad = np.zeros(conv.half_width + 1, dtype="<i2")
    out = np.frombuffer(conv.process(mono.astype("<i2").tobytes() + pad.tobytes()), dtype="<i2")
    return out[delay: delay + n_out].astype(np.int16)


# -- the built-in sounds ----------------------------------------------------------------------------
def _note(freq: float, dur: float, rate: int, *, decay: float = 0.25) -> np.ndarray:
    """A soft bell-like note: sine plus a quiet octave, exponential decay, 4 ms attack, 12 ms release."""
    t = np.arange(int(dur * rate)) / rate
    x = np.sin(2 * np.pi * freq * t) + 0.25 * np.sin(4 * np.pi * freq * t)
    env = np.exp(-t / decay)
    attack, release = int(0.004 * rate), int(0.012 * rate)
    env[:attack] *= np.linspace(0, 1, attack, endpoint=False)
    env[-release:] *= np.linspace(1, 0, release)
    return x * env


def _silence(dur: float, rate: int) -> np.ndarray:
    return np.zeros(int(dur * rate))


def _shape(name: str, rate: int) -> np.ndarray:
    e5, a5, a4, g4, d4 = 659.26, 880.0, 440.0, 392.0, 293.66
    if name == "wake":
        parts = [_note(e5, 0.07, rate), _note(a5, 0.11, rate)]
    elif name == "listen_end":
        parts = [_note(a5, 0.07, rate), _note(e5, 0.11, rate)]
    elif name == "offline":
        parts = [_note(g4, 0.15, rate, decay=0.4), _note(d4, 0.25, rate, decay=0.4)]
    elif name == "mute_on":
        parts = [_note(a4, 0.15, rate)]
    elif name == "mute_off":
        parts = [_note(a5, 0.15, rate)]
    elif name == "ring":
        beep = _note(1046.5, 0.12, rate, decay=1.0)
        parts = [beep, _silence(0.08, rate)] * 3 + [_silence(0.6, rate)]
    else:
        raise KeyError(name)
    x = np.concatenate(parts)
    return x / np.max(np.abs(x))


def builtin(name: str, rate: int = RATE) -> np.ndarray:
    """A built-in cue as int16 mono, peaking at -6 dBFS."""
    return np.rint(_shape(name, rate) * PEAK).astype(np.int16)


class CueBank:
    """The cues to play, from ``[cues]``: built-in or custom, at ``cues.volume``, None when switched off.

    ``load()`` reads the custom files (at start or reload; a file that fails here, although the config
    was valid when loaded, is logged and the built-in sound is used instead).
    """

    def __init__(self, cfg: Any, rate: int = RATE) -> None:
        # cfg: edged.config.CuesConfig, not imported here (config imports this module to check cue files)
        self.cfg = cfg
        self.rate = rate
        self._cues: dict[str, np.ndarray | None] = {}
        self.problems: dict[str, str] = {}

    def load(self) -> None:
        g = gain(self.cfg.volume)
        cues: dict[str, np.ndarray | None] = {}
        self.problems = {}
        for name, c in self.cfg:  # the CueConfig sections of [cues], in order
            if not hasattr(c, "enabled"):
                continue
            if not c.enabled:
                cues[name] = None
                continue
            samples = None
            if c.file:
                try:
                    samples = load_wav(c.file, self.rate)
                except CueFileError as exc:
                    self.problems[name] = str(exc)
                    log.warning("cues.%s.file: %s; playing the built-in sound", name, exc)
            if samples is None:
                samples = builtin(name, self.rate)
            cues[name] = apply_gain(samples, g)
        self._cues = cues

    def get(self, name: str) -> np.ndarray | None:
        """The samples of a cue (int16 mono at ``rate``, volume applied), or None when it is off."""
        if name not in self._cues:
            raise KeyError(f"no cue named {name!r}")
        return self._cues[name]


# -- mixing -----------------------------------------------------------------------------------------
class CueMixer:
    """Mixes one cue at a time into a stream of S16_LE frames, ducking the stream while it sounds.

    ``play(samples, loop=False)`` starts a cue (replacing one that sounds); ``stop()`` ends it (a looped
    cue sounds until then); ``mix(pcm)`` returns the chunk with the cue added, the same length.  Give it
    silence (zero bytes) when no reply is playing.  ``play``/``stop`` may be called from any thread;
    ``mix`` from one (the player's writer).  ``duck`` is the reply's gain while a cue sounds (0-1);
    the gain moves between 1 and ``duck`` by ``(1 - duck) / ramp`` per frame.
    """

    def __init__(self, duck: float, *, channels: int = 1, ramp: int = 240) -> None:
        if not 0.0 <= duck <= 1.0:
            raise ValueError(f"duck must be from 0 to 1 (got {duck})")
        self.duck = float(duck)
        self.channels = channels
        self.ramp = max(0, ramp)
        self._lock = threading.Lock()
        self._cue: np.ndarray | None = None
        self._pos = 0
        self._loop = False
        self._g = 1.0  # the reply's gain now
        self.played = 0  # cues started

    @property
    def active(self) -> bool:
        """A cue is sounding, or the reply is still coming back up from the duck."""
        return self._cue is not None or self._g != 1.0

    def play(self, samples: np.ndarray, *, loop: bool = False) -> None:
        if samples.dtype != np.int16 or samples.ndim != 1:
            raise ValueError("a cue is a 1-D int16 array (mono)")
        with self._lock:
            self._cue = samples if len(samples) else None
            self._pos = 0
            self._loop = loop
            self.played += 1

    def stop(self) -> None:
        with self._lock:
            self._cue = None
            self._loop = False

    def mix(self, pcm: bytes) -> bytes:
        frame = 2 * self.channels
        if len(pcm) % frame:
            raise ValueError("pcm must hold whole frames")
        with self._lock:
            if self._cue is None and self._g == 1.0:
                return pcm
            x = np.frombuffer(pcm, dtype="<i2").reshape(-1, self.channels).astype(np.float64)
            n = len(x)
            add = np.zeros(n, dtype=np.float64)
            sounding = self._take(add)  # frames [0, sounding) have the cue
            gains = np.empty(n, dtype=np.float64)
            gains[:sounding] = self._ramp(sounding, self.duck)
            gains[sounding:] = self._ramp(n - sounding, 1.0)
        y = x * gains[:, None] + add[:, None]
        return np.clip(np.rint(y), -32768, 32767).astype("<i2").tobytes()

    def _take(self, add: np.ndarray) -> int:
        """Copy the next cue samples into ``add``; returns how many frames the cue covers (lock held)."""
        n, done = len(add), 0
        while self._cue is not None and done < n:
            cue = self._cue
            k = min(n - done, len(cue) - self._pos)
            add[done: done + k] = cue[self._pos: self._pos + k]
            done += k
            self._pos += k
            if self._pos >= len(cue):
                self._pos = 0
                if not self._loop:
                    self._cue = None
        return done

    def _ramp(self, n: int, target: float) -> np.ndarray:
        """The reply's gains for the next ``n`` frames moving toward ``target`` (lock held)."""
        if n == 0:
            return np.empty(0)
        g0 = self._g
        if g0 == target or self.ramp == 0:
            self._g = target
            return np.full(n, target)
        step = (1.0 - self.duck) / self.ramp
        k = np.arange(1, n + 1, dtype=np.float64)
        g = np.maximum(g0 - step * k, target) if target < g0 else np.minimum(g0 + step * k, target)
        self._g = float(g[-1])
        return g
