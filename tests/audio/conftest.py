import os
from pathlib import Path

import numpy as np
import pytest

from edged.dev.filedev import write_alsa_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, bytes]:
    from edged.dev.tts import render_set

    out = Path(os.environ.get("EDGED_AUDIO_CACHE") or ROOT / ".cache" / "tts-clips")
    return {name: p.read_bytes() for name, p in render_set(out).items()}


@pytest.fixture
def alsa(tmp_path, monkeypatch):
    """alsa(captures={...}, playbacks={...}): writes an ALSA config in tmp_path and points
    ALSA_CONFIG_PATH at it (alsa-lib re-reads its config when that changes, checked per open)."""

    def make(captures=None, playbacks=None, path=None):
        env = write_alsa_config(path or tmp_path / "asound.conf", captures, playbacks)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        return env

    return make


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(1234)  # openWakeWord pads its buffer with random noise


def pad_frames(data: bytes, frame_bytes: int = 2560) -> bytes:
    return data + bytes((-len(data)) % frame_bytes)
