"""Fixtures shared by every test directory: the wake-word models and one real daemon.

``daemon`` is the real ``edged run`` (through the harness, edged/dev/rig.py) against the Live
emulator, with ALSA file devices (a FIFO microphone fed in real time, a WAV speaker), gpiozero's
mock pins and the synthetic camera. One process serves the whole session: tests that change its
state (mute, a config key, a turn) put it back before they end. It writes the name of every module
it imports to ``daemon.import_log`` (tests/importlog/sitecustomize.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.audio import models

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def models_dir() -> Path:
    d = Path(os.environ.get("EDGED_TEST_MODELS") or ROOT / ".cache" / "models")
    models.fetch(d)  # a no-op when complete (scripts/test has fetched them)
    return d


@pytest.fixture(scope="session")
def daemon(tmp_path_factory, models_dir) -> Iterator:
    from edged.dev.rig import Rig, ThreadedRig
    from edged.sim.scenario import Scenario

    root = tmp_path_factory.mktemp("daemon")
    import_log = root / "imports.log"
    pythonpath = os.pathsep.join(filter(None, [str(ROOT / "tests" / "importlog"), os.environ.get("PYTHONPATH")]))
    rig = Rig(root / "rig", models_dir, speed=0,
              scenario=Scenario([[{"output_transcript": "ok"}, {"tone": {"hz": 440, "ms": 200}}]]),
              env={"PYTHONPATH": pythonpath, "EDGED_IMPORT_LOG": str(import_log)})
    with ThreadedRig(rig) as threaded:
        threaded.import_log = import_log
        threaded.call(rig.emu.wait_connections(1, timeout=30))
        threaded.call(rig.wait_state("idle", timeout=30))
        yield threaded
