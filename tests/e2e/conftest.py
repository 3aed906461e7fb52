"""Fixtures for end-to-end tests: the real daemon, the emulator, ALSA file devices, mock GPIO."""

from pathlib import Path

from edged.dev.tts import render

ROOT = Path(__file__).resolve().parents[2]
TTS_CACHE = ROOT / ".cache" / "tts"


def speech(text: str, **kw) -> bytes:
    """16 kHz mono S16_LE speech rendered with espeak-ng (cached).

    Render the wake word on its own and add the command: espeak-ng hurries "hey jarvis" at the
    start of a longer sentence and the model scores it near 0.5; alone it scores about 0.99."""
    return render(text, cache_dir=TTS_CACHE, **kw).read_bytes()


def summary_rows(text: str) -> dict[str, str]:
    """``edgectl status``'s summary (edged/ctl_status.py) as {row name: value}, up to the GPIO table."""
    lines = text.splitlines()[1:]
    if "GPIO:" in lines:
        lines = lines[: lines.index("GPIO:")]
    return {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in lines if ":" in ln)}
