"""Volume: the curve, gain on samples, up/down, persistence across instances, the ALSA mixer path."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from edged.audio.gain import SoftGain, apply_gain, gain
from edged.audio.volume import FILE_NAME, Volume, alsa_mixer
from edged.config import AudioConfig
from edged.errors import DeviceError, ToolError


def _arr(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<i2")


def test_the_curve():
    assert gain(100) == 1.0 and gain(0) == 0.0
    assert gain(50) == 0.125  # about -18 dB
    assert 20 * np.log10(gain(10)) == pytest.approx(-60)
    assert 20 * np.log10(gain(79)) == pytest.approx(-6.14, abs=0.01)
    levels = np.arange(101)
    assert np.all(np.diff([gain(v) for v in levels]) > 0)  # rises with every step
    assert gain(150) == 1.0 and gain(-5) == 0.0
    with pytest.raises(ValueError):
        gain(float("nan"))


def test_gain_on_samples_rounds_and_saturates():
    x = np.array([1000, -1000, 3, 5, 32767, -32768], dtype=np.int16)
    assert apply_gain(x, 0.5).tolist() == [500, -500, 2, 2, 16384, -16384]  # 1.5 -> 2, 2.5 -> 2: half to even
    assert apply_gain(x, 2.0).tolist() == [2000, -2000, 6, 10, 32767, -32768]


def test_soft_gain_steady_and_ramped():
    g = SoftGain(0.125, ramp=0)
    x = np.array([800, -800, 8, 4], dtype="<i2")
    assert _arr(g.apply(x.tobytes())).tolist() == [100, -100, 1, 0]  # 0.5 -> 0 (half to even)
    r = SoftGain(1.0, ramp=4)
    r.set(0.0)
    out = _arr(r.apply(np.full(6, 1000, dtype="<i2").tobytes()))
    assert out.tolist() == [750, 500, 250, 0, 0, 0]
    r.set(1.0)
    assert _arr(r.apply(np.full(3, 1000, dtype="<i2").tobytes())).tolist() == [250, 500, 750]
    assert _arr(r.apply(np.full(2, 1000, dtype="<i2").tobytes())).tolist() == [1000, 1000]  # ramp spans chunks
    stereo = SoftGain(0.5, channels=2, ramp=0)
    assert _arr(stereo.apply(np.array([100, 200, 300, 400], dtype="<i2").tobytes())).tolist() == [50, 100, 150, 200]
    with pytest.raises(ValueError):
        stereo.apply(b"\x00\x00")


def test_volume_gain_changes_the_samples(tmp_path):
    v = Volume(AudioConfig(volume=100), tmp_path)
    v.start()
    v.soft.ramp = 0  # steady gain for exact maths
    x = np.full(4, 20000, dtype="<i2").tobytes()
    assert _arr(v.soft.apply(x)).tolist() == [20000] * 4
    assert v.set(50) == 50
    assert v.gain == 0.125
    assert _arr(v.soft.apply(x)).tolist() == [2500] * 4
    assert v.status() == {"level": 50, "backend": "software"}


def test_every_change_is_told_once_with_who_asked(tmp_path):
    told = []
    v = Volume(AudioConfig(volume=60, volume_step=10), tmp_path, on_change=lambda *a: told.append(a))
    v.start()
    assert told == []  # restoring the kept level is not a change anyone asked for
    v.set(40, by="mqtt")
    v.set("up", by="model")
    v.set(50, by="edgectl")  # no change: nothing told
    with pytest.raises(ToolError):
        v.set(101, by="edgectl")
    assert told == [(40, 60, "mqtt"), (50, 40, "model")]


def test_up_down_and_bad_values(tmp_path):
    v = Volume(AudioConfig(volume=95, volume_step=10), tmp_path)
    v.start()
    assert v.set("up") == 100 and v.set("up") == 100
    assert v.set("down") == 90 and v.set(" DOWN ") == 80
    assert v.set("35") == 35 and v.set(40.0) == 40
    for bad in (101, -1, 0.5, True, "loud", None, [50], float("nan")):
        with pytest.raises(ToolError, match="volume must be"):
            v.set(bad)
    assert v.level == 40
    v2 = Volume(AudioConfig(volume=5, volume_step=10), tmp_path / "x")
    v2.start()
    assert v2.set("down") == 0 and v2.gain == 0.0


def test_level_persists_across_instances(tmp_path):
    cfg = AudioConfig(volume=70)
    a = Volume(cfg, tmp_path)
    a.start()
    a.set(30)
    assert json.loads((tmp_path / FILE_NAME).read_text()) == {"level": 30, "config": 70}
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]  # written atomically: no temp left
    b = Volume(cfg, tmp_path)
    assert b.level == 70  # nothing read before start()
    b.start()
    assert b.level == 30 and b.gain == gain(30)


def test_a_temp_file_left_by_a_save_cut_short_is_removed_at_start(tmp_path):
    """A power loss during a save leaves .volume.json.XXXX beside the file; the next start removes
    it (only when it is old enough not to be a save in flight)."""
    import os

    stale = tmp_path / f".{FILE_NAME}.k3j2"
    stale.write_text('{"level": 3')
    old = stale.stat().st_mtime - 3600
    os.utime(stale, (old, old))
    Volume(AudioConfig(volume=70), tmp_path).start()
    assert not stale.exists()


def test_config_change_since_wins_over_the_kept_level(tmp_path, caplog):
    a = Volume(AudioConfig(volume=70), tmp_path)
    a.start()
    a.set(30)
    caplog.set_level(logging.INFO, "edged.audio.volume")
    b = Volume(AudioConfig(volume=55), tmp_path)
    b.start()
    assert b.level == 55
    assert "audio.volume changed in the config (70 -> 55)" in caplog.text


@pytest.mark.parametrize("content", [
    "not json", '{"level": 300, "config": 70}', '{"level": "loud", "config": 70}', "[1, 2]", '{"config": 70}',
    '{"level": true, "config": 70}',
])
def test_bad_file_is_ignored_with_a_log_line(tmp_path, caplog, content):
    (tmp_path / FILE_NAME).write_text(content)
    v = Volume(AudioConfig(volume=64), tmp_path)
    with caplog.at_level(logging.WARNING, "edged.audio.volume"):
        v.start()
    assert v.level == 64 and v.gain == gain(64)
    lines = [r.getMessage() for r in caplog.records if r.name == "edged.audio.volume"]
    assert len(lines) == 1 and lines[0].startswith(f"volume: ignoring {tmp_path / FILE_NAME} (")
    v.set(65)  # and the next change replaces it
    assert json.loads((tmp_path / FILE_NAME).read_text())["level"] == 65


def test_unwritable_state_dir_keeps_working(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    v = Volume(AudioConfig(volume=50), blocker / "state")  # a file where the directory should be
    v.start()
    with caplog.at_level(logging.WARNING, "edged.audio.volume"):
        assert v.set(60) == 60
    assert v.gain == gain(60)
    assert "cannot keep the level" in caplog.text


class _FakeMixer:
    """Stands in for a card's mixer control (none can exist on this machine)."""

    def __init__(self) -> None:
        self.levels: list[int] = []
        self.fail = False

    def setvolume(self, volume: int) -> None:
        if self.fail:
            raise OSError("card removed")
        self.levels.append(volume)

    def getvolume(self) -> list[int]:
        return self.levels[-1:]


def test_mixer_takes_the_level_and_software_gain_stays_one(tmp_path):
    fake = _FakeMixer()
    opened: list[tuple[str, str]] = []

    def factory(control: str, device: str) -> _FakeMixer:
        opened.append((control, device))
        return fake

    v = Volume(AudioConfig(volume=40, mixer="PCM", mixer_device="hw:1"), tmp_path, mixer_factory=factory)
    v.start()
    assert opened == [("PCM", "hw:1")] and fake.levels == [40]
    assert v.gain == 1.0 and v.status() == {"level": 40, "backend": "mixer", "mixer": "PCM on hw:1"}
    v.set("up")
    assert fake.levels == [40, 50] and v.gain == 1.0
    fake.fail = True  # the card goes away: software volume takes over
    v.set(20)
    assert v.backend == "software" and v.gain == gain(20) and "card removed" in v.status()["error"]


def test_real_alsa_mixer_without_a_card_falls_back_to_software(tmp_path):
    # pyalsaaudio's Mixer needs a card's control device; this machine has none, so only the error path
    # of the real library can run here.
    with pytest.raises(DeviceError, match=r"mixer control 'PCM' on 'default': "):
        alsa_mixer("PCM", "default")
    v = Volume(AudioConfig(volume=50, mixer="PCM"), tmp_path)
    v.start()
    st = v.status()
    assert st["backend"] == "software" and v.gain == 0.125
    assert st["error"].startswith("mixer control 'PCM' on 'default': ") and "using software volume" in st["error"]


def test_mixer_error_prints_nothing_once_alsa_log_is_routed(tmp_path):
    """With edged.audio.alsalog installed, libasound's own lines go to the logger, not to fd 2."""
    code = (
        "import logging, sys\n"
        "from edged.audio import alsalog\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.DEBUG, format='%(name)s %(message)s')\n"
        "alsalog.install()\n"
        "from edged.audio.volume import alsa_mixer\n"
        "try:\n    alsa_mixer('PCM', 'default')\nexcept Exception as e:\n    print('error', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf"})
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert "error mixer control 'PCM' on 'default'" in out.stdout
    assert "edged.audio.alsalog " in out.stdout
