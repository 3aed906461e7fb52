"""The speaker's volume: a level 0-100, as software gain or an ALSA mixer control, kept across restarts.

The curve.  Loudness is heard roughly logarithmically, so a level maps to a gain by a cube:
``gain = (level / 100) ** 3``.  100 is full scale (0 dB), 79 about -6 dB, 50 about -18 dB,
22 about -40 dB, 10 -60 dB, 0 silence.  Equal steps of ``audio.volume_step`` then sound like
roughly equal changes over most of the range (the cube is the curve many desktop mixers use
for their sliders).  The same curve sets the level of sound cues (``cues.volume``).

The mixer.  When ``audio.mixer`` names a control (e.g. ``PCM``, ``Master``), the level goes to that
control on ``audio.mixer_device`` through pyalsaaudio (percent of the control's range, which most
cards step in dB) and the software gain stays 1.  If the control cannot be opened, the level falls
back to software gain and ``status()`` says why.

Persistence.  A level set at run time is written atomically to ``STATE_DIR/volume.json`` together
with the configured ``audio.volume`` of that moment.  At start the kept level wins, unless
``audio.volume`` has been changed in the config since (then the config wins).  A file that cannot be
read or makes no sense is ignored with a log line.

One owner.  Every change of the level, whoever asks (``edgectl volume``, the model's ``set_volume``,
Home Assistant's volume entity), goes through :meth:`Volume.set`, which tells ``on_change(level, was,
by)``; the daemon publishes that as the one ``volume`` event (``edged.parts.build_volume``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..config import AudioConfig, remove_stale_temps, write_atomic
from ..errors import DeviceError, ToolError
from .gain import SoftGain, gain

log = logging.getLogger(__name__)

FILE_NAME = "volume.json"


class MixerLike(Protocol):
    def setvolume(self, volume: int) -> None: ...
    def getvolume(self) -> list[int]: ...


MixerFactory = Callable[[str, str], MixerLike]
OnChange = Callable[[int, int, str], None]  # (level, was, by)


def alsa_mixer(control: str, device: str) -> MixerLike:
    """pyalsaaudio's Mixer for a control on a ctl device; DeviceError when it cannot be opened."""
    import alsaaudio

    try:
        return alsaaudio.Mixer(control=control, device=device)
    except alsaaudio.ALSAAudioError as exc:
        raise DeviceError(f"mixer control {control!r} on {device!r}: {exc}") from exc


class Volume:
    """The level, where it goes (software gain or mixer) and where it is kept.

    ``start()`` restores the kept level and opens the mixer; ``set(level | "up" | "down")`` changes it;
    ``gain`` is what the player multiplies by (1.0 when a mixer does the work).  Call from one thread
    (the event loop); the player only reads ``soft``.
    """

    def __init__(self, cfg: AudioConfig, state_dir: str | Path, *,
                 mixer_factory: MixerFactory = alsa_mixer, on_change: OnChange | None = None) -> None:
        self.cfg = cfg
        self.on_change = on_change
        self.path = Path(state_dir) / FILE_NAME
        self._mixer_factory = mixer_factory
        self._mixer: MixerLike | None = None
        self.level = cfg.volume
        self.error: str | None = None
        self.soft = SoftGain(gain(cfg.volume), channels=cfg.playback_channels,
                             ramp=max(1, cfg.playback_rate // 100))

    # lifecycle ---------------------------------------------------------------------------------
    def configure(self, cfg: AudioConfig) -> None:
        """A reload of ``[audio]``: the new settings and a new ``soft`` for the new player (its channel
        count may have changed); ``start()`` then restores the level and reopens the mixer."""
        self.stop()
        self.cfg = cfg
        self.soft = SoftGain(gain(self.level), channels=cfg.playback_channels, ramp=max(1, cfg.playback_rate // 100))

    def start(self) -> None:
        self.level = self._restore()
        if self.cfg.mixer:
            try:
                self._mixer = self._mixer_factory(self.cfg.mixer, self.cfg.mixer_device)
                self.error = None
            except Exception as exc:
                self._mixer = None
                self.error = f"{exc}; using software volume instead (check audio.mixer and audio.mixer_device)"
                log.warning("volume: %s", self.error)
        self._apply()

    def stop(self) -> None:
        self._mixer = None

    # queries -----------------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        return "mixer" if self._mixer is not None else "software"

    @property
    def gain(self) -> float:
        return self.soft.gain

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"level": self.level, "backend": self.backend}
        if self.cfg.mixer:
            out["mixer"] = f"{self.cfg.mixer} on {self.cfg.mixer_device}"
        if self.error:
            out["error"] = self.error
        return out

    # control -----------------------------------------------------------------------------------
    def set(self, value: Any, by: str = "") -> int:
        """A level 0-100 or "up" / "down" (by ``audio.volume_step``).  Returns the new level.
        ``by`` says who asked (edgectl, model, mqtt); a change is told to ``on_change``.

        Raises ToolError for anything else (a bool, a fraction, text, out of range)."""
        level = self.parse(value, self.level, self.cfg.volume_step)
        was = self.level
        if level != was:
            self.level = level
            self._apply()
        self._save()
        if level != was and self.on_change is not None:
            try:
                self.on_change(level, was, by)
            except Exception:
                log.exception("volume: on_change failed")
        return self.level

    @staticmethod
    def parse(value: Any, current: int, step: int) -> int:
        if isinstance(value, str):
            word = value.strip().lower()
            if word == "up":
                return min(100, current + step)
            if word == "down":
                return max(0, current - step)
            try:
                value = int(word)
            except ValueError:
                raise ToolError(f"volume must be a level from 0 to 100, up or down (got {value!r})") from None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise ToolError(f"volume must be a whole number from 0 to 100, up or down (got {value!r})")
        return value

    # internals ---------------------------------------------------------------------------------
    def _apply(self) -> None:
        if self._mixer is not None:
            try:
                self._mixer.setvolume(self.level)
                self.soft.set(1.0)
                return
            except Exception as exc:
                self._mixer = None
                self.error = f"mixer control {self.cfg.mixer!r}: {exc}; using software volume instead"
                log.warning("volume: %s", self.error)
        self.soft.set(gain(self.level))

    def _restore(self) -> int:
        remove_stale_temps(self.path)  # a save cut short by a power loss leaves its temp file
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return self.cfg.volume
        except OSError as exc:
            log.warning("volume: ignoring %s: %s", self.path, exc.strerror or exc)
            return self.cfg.volume
        try:
            data = json.loads(text)
            level, configured = data["level"], data["config"]
            if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 100 for v in (level, configured)):
                raise ValueError("levels must be whole numbers from 0 to 100")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("volume: ignoring %s (%s); using audio.volume = %d", self.path, exc, self.cfg.volume)
            return self.cfg.volume
        if configured != self.cfg.volume:
            log.info("volume: audio.volume changed in the config (%d -> %d): it replaces the kept level %d",
                     configured, self.cfg.volume, level)
            return self.cfg.volume
        log.info("volume: restored level %d from %s", level, self.path)
        return level

    def _save(self) -> None:
        try:
            write_atomic(self.path, json.dumps({"level": self.level, "config": self.cfg.volume}) + "\n", 0o644)
        except OSError as exc:
            log.warning("volume: cannot keep the level in %s: %s", self.path, exc.strerror or exc)
