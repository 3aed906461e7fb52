"""Reply audio for the emulator: 24 kHz S16_LE mono PCM.

``tone(hz, ms)`` is a sine with 5 ms fades.  ``await say(text)`` renders speech with espeak-ng and
resamples it with sox; results are cached in memory (and in ``cache_dir`` when given).  Without
espeak-ng or sox it falls back to a tone as long as the text would take to say.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

RATE = 24000
_cache: dict[str, bytes] = {}
_MAX_CACHE = 256


def tone(hz: float = 440.0, ms: float = 300.0, rate: int = RATE, amplitude: float = 0.3) -> bytes:
    n = max(0, int(rate * ms / 1000))
    t = np.arange(n) / rate
    wave = np.sin(2 * np.pi * hz * t) * amplitude
    fade = min(n // 2, int(rate * 0.005))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        wave[:fade] *= ramp
        wave[n - fade:] *= ramp[::-1]
    return (wave * 32767).astype("<i2").tobytes()


async def _run(argv: list[str], stdin: bytes | None = None) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin)
    if proc.returncode != 0:
        raise OSError(f"{argv[0]} failed ({proc.returncode}): {err.decode(errors='replace').strip()[:200]}")
    return out


async def say(text: str, voice: str = "en-us", cache_dir: Path | None = None) -> bytes:
    """Speech for ``text`` as 24 kHz S16_LE mono (a tone when espeak-ng/sox are missing or fail)."""
    key = hashlib.sha256(f"{voice}\0{text}".encode()).hexdigest()[:24]
    if key in _cache:
        return _cache[key]
    disk = cache_dir / f"{key}.s16" if cache_dir else None
    if disk is not None and disk.is_file():
        pcm = disk.read_bytes()
    else:
        pcm = await _render(text, voice)
        if disk is not None:
            try:
                disk.parent.mkdir(parents=True, exist_ok=True)
                disk.write_bytes(pcm)
            except OSError as exc:
                log.warning("cannot cache speech in %s: %s", disk, exc)
    if len(_cache) >= _MAX_CACHE:
        _cache.pop(next(iter(_cache)))
    _cache[key] = pcm
    return pcm


async def _render(text: str, voice: str) -> bytes:
    espeak, sox = shutil.which("espeak-ng"), shutil.which("sox")
    if espeak and sox:
        try:
            wav = await _run([espeak, "-v", voice, "--stdout", text])
            pcm = await _run([sox, "-q", "-t", "wav", "-", "-t", "raw", "-r", str(RATE), "-e", "signed-integer",
                              "-b", "16", "-c", "1", "-L", "-"], stdin=wav)
            if pcm:
                return pcm
        except OSError as exc:
            log.warning("speech synthesis failed, using a tone instead: %s", exc)
    else:
        log.warning("espeak-ng or sox is missing: replies are tones")
    return tone(330.0, min(5000.0, 80.0 * max(1, len(text.split())) + 200))
