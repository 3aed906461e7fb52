"""Test and demo audio rendered with espeak-ng (or a festival voice), converted by sox to 16 kHz mono
S16_LE (raw and WAV).

espeak-ng's prosody comes from rules.  A voice named ``festival:NAME`` (e.g.
``festival:cmu_us_slt_arctic_hts``, Debian's festvox-us-slt-hts: an HTS voice whose durations and
pitch were trained on a recorded speaker) is spoken by festival's ``text2wave`` at its own trained
pace: ``speed`` does not apply to it.

Renders are cached: the file name carries a hash of text, voice, speed and rate, so a second call is a
file lookup.  ``render_set(outdir)`` makes the standard set used by the tests and the demo.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import EdgedError

log = logging.getLogger(__name__)

WAKE_VARIANTS = [("en-us", 140), ("en-us", 175), ("en-gb", 140), ("en-gb", 175), ("en+f3", 140), ("en+f3", 175)]
NEGATIVES = ["good morning", "what time is it", "play some music", "hello there", "turn off the radio"]
FESTIVAL = "festival:"
PACKAGES = {"espeak-ng": "espeak-ng", "text2wave": "festival festvox-us-slt-hts", "sox": "sox"}  # Debian's
COMMANDS = {"light": "turn on the kitchen light", "see": "what do you see"}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40]


def render(text: str, path: str | os.PathLike[str] | None = None, *, rate: int = 16000, voice: str = "en-us",
           speed: int = 175, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Speak ``text`` into a raw S16_LE mono file at ``rate`` (and a .wav beside it); returns the raw path.

    Without ``path`` the file goes to ``cache_dir`` (default ``$EDGED_AUDIO_CACHE`` or ~/.cache/edged/tts)
    under a name derived from the parameters; an existing render is reused.
    """
    festival = voice.startswith(FESTIVAL)
    for tool in ("text2wave" if festival else "espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise EdgedError(f"{tool}: not installed (apt-get install {PACKAGES[tool]})")
    # "-D": sox dithers by default when it converts to 16 bits, with a random generator, so every
    # render of the same text differed (and a render's .raw from its .wav); renders made so are not reused
    key = hashlib.sha256(f"{text}|{voice}|{speed}|{rate}|no-dither".encode()).hexdigest()[:12]
    if path is None:
        base = Path(cache_dir or os.environ.get("EDGED_AUDIO_CACHE") or Path.home() / ".cache/edged/tts")
        path = base / f"{_slug(text)}-{_slug(voice)}-{speed}-{key}.raw"
    raw = Path(path)
    wav = raw.with_suffix(".wav")
    if raw.is_file() and wav.is_file():
        return raw
    raw.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edged-tts-") as tmp:
        spoken = Path(tmp) / "spoken.wav"
        if festival:
            name = voice[len(FESTIVAL):]
            if not re.fullmatch(r"[a-z0-9_]+", name):
                raise EdgedError(f"{voice!r}: not a festival voice name")
            done = subprocess.run(["text2wave", "-eval", f"(voice_{name})", "-o", str(spoken)], input=text.encode(),
                                  capture_output=True, timeout=120)
            if done.returncode != 0 or b"SIOD ERROR" in done.stderr or not spoken.is_file():
                why = done.stderr.decode(errors="replace").strip()[-300:]
                raise EdgedError(f"festival voice {name}: {why} (is its festvox package installed?)")
        else:
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(spoken), text], check=True,
                           capture_output=True, timeout=60)
        fmt = ["-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer"]
        tmp_raw, tmp_wav = Path(tmp) / "out.raw", Path(tmp) / "out.wav"
        subprocess.run(["sox", "-D", str(spoken), *fmt, "-t", "raw", str(tmp_raw)], check=True, capture_output=True,
                       timeout=60)
        subprocess.run(["sox", "-D", str(spoken), *fmt, str(tmp_wav)], check=True, capture_output=True, timeout=60)
        shutil.move(tmp_wav, wav)
        shutil.move(tmp_raw, raw)
    log.debug("rendered %r (%s, %s) -> %s", text, voice, speed, raw)
    return raw


def silence(seconds: float, rate: int = 16000) -> bytes:
    return bytes(2 * round(seconds * rate))


def render_set(outdir: str | os.PathLike[str], rate: int = 16000) -> dict[str, Path]:
    """The standard clips: wake_<voice>_<speed>, neg_<n>, cmd_<name>, silence_1s; raw + wav each."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    for voice, speed in WAKE_VARIANTS:
        name = f"wake_{_slug(voice)}_{speed}"
        made[name] = render("hey jarvis", out / f"{name}.raw", rate=rate, voice=voice, speed=speed)
    for i, text in enumerate(NEGATIVES):
        made[f"neg_{i}"] = render(text, out / f"neg_{i}.raw", rate=rate)
    for name, text in COMMANDS.items():
        made[f"cmd_{name}"] = render(text, out / f"cmd_{name}.raw", rate=rate)
    sil = out / "silence_1s.raw"
    if not sil.is_file():
        sil.write_bytes(silence(1.0, rate))
    made["silence_1s"] = sil
    return made
