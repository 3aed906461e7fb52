#!/usr/bin/env python3
"""Idle cost of the listening path vs a bare openWakeWord loop, measured in one run.

    .venv/bin/python bench/bench_audio.py [--seconds 20] [--models DIR] [--json]

Path: ALSA capture (a file PCM fed in real time through a FIFO) -> FrameRing -> Ear (wake detector +
endpointer).  CPU is the capture and Ear threads' own CPU clocks (the feeder thread is excluded),
per second of audio; the reference is Model.predict over the same frames on one thread
(time.thread_time), median of 3 passes.  RSS is the process's resident memory with models loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edged.audio import models as M  # noqa: E402
from edged.audio.capture import Capture  # noqa: E402
from edged.audio.ear import Ear  # noqa: E402
from edged.audio.endpoint import Endpointer  # noqa: E402
from edged.audio.frames import FRAME_BYTES, FrameRing  # noqa: E402
from edged.audio.wake import WakeDetector  # noqa: E402
from edged.dev.filedev import FifoFeeder, write_alsa_config  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def thread_cpu(t: threading.Thread) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(t.ident))


def bare(audio: bytes, models_dir: Path) -> float:
    from openwakeword.model import Model

    m = Model(wakeword_models=[str(M.resolve("hey_jarvis", models_dir))], inference_framework="onnx",
              melspec_model_path=str(models_dir / M.MELSPEC), embedding_model_path=str(models_dir / M.EMBEDDING))
    x = np.frombuffer(audio, "<i2")
    t0 = time.thread_time()
    for i in range(0, len(x), 1280):
        m.predict(x[i:i + 1280])
    return time.thread_time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--models", default=os.environ.get("EDGED_TEST_MODELS") or str(ROOT / ".cache/models"))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    models_dir = Path(a.models)
    M.fetch(models_dir)
    rng = np.random.default_rng(0)
    n_frames = int(a.seconds / 0.08)
    audio = (rng.normal(0, 30, n_frames * 1280)).round().astype("<i2").tobytes()  # a quiet room
    audio_s = n_frames * 0.08
    np.random.seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        fifo = Path(tmp) / "mic.fifo"
        os.environ.update(write_alsa_config(Path(tmp) / "asound.conf", captures={"mic": fifo}))
        ring = FrameRing(64)
        ear = Ear(ring, WakeDetector(["hey_jarvis"], models_dir), Endpointer("webrtc"), 400)
        feeder = FifoFeeder(fifo, audio).start()
        cap = Capture("mic", ring=ring)
        ear.start()
        rss_loaded = rss_mb()
        cap.start()
        deadline = time.monotonic() + audio_s * 3 + 30
        while ear.frames < n_frames and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu_path = thread_cpu(cap._thread) + thread_cpu(ear._thread)
        frames_done = ear.frames
        rss_running = rss_mb()
        cap.stop()
        ear.stop()
        feeder.stop()
    path_per_s = cpu_path / (frames_done * 0.08)
    bare_runs = [bare(audio[: frames_done * FRAME_BYTES], models_dir) for _ in range(3)]
    bare_per_s = statistics.median(bare_runs) / (frames_done * 0.08)
    res = {"audio_s": round(frames_done * 0.08, 2), "path_cpu_s_per_audio_s": round(path_per_s, 5),
           "bare_oww_cpu_s_per_audio_s": round(bare_per_s, 5), "ratio": round(path_per_s / bare_per_s, 3),
           "goal_ratio": 1.10, "rss_models_loaded_mb": round(rss_loaded, 1),
           "rss_listening_mb": round(rss_running, 1), "ring_drops": ring.drops}
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        print("| measure | value |\n|---|---|")
        for k, v in res.items():
            print(f"| {k} | {v} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
