#!/usr/bin/env python3
"""Idle memory and CPU of the listening path vs a bare openWakeWord process, measured in one run.

    .venv/bin/python bench/bench_audio.py [--seconds 20] [--models DIR] [--json]

Every figure comes from its own fresh process (RSS and CPU are per process), one after the other, over the
same audio (a quiet room: Gaussian noise, sd 30):

- ``listen_lean`` / ``listen_openwakeword``: the daemon's listening path, ALSA capture (a file PCM fed in
  real time through a FIFO by THIS process, so feeding is not counted) -> FrameRing -> Ear (wake detector
  with that engine + webrtc endpointer).  After listening, the lean process also imports the modules the
  daemon imports at start (google-genai, the Live session, tools, control server, ...) and reports the RSS
  again: the listening path plus the daemon's code, an estimate of the idle daemon's RSS without its
  runtime objects (bench_daemon.py measures the real ``edged run``).
- ``bare_openwakeword``: ``openwakeword.model.Model.predict`` over the same models, paced to real time (one
  80 ms frame every 80 ms, like a microphone).  ``bare_lean``: the lean engine alone, paced the same way.

CPU is the process's utime+stime (getrusage, all threads) per second of audio, after one second of warm-up.
RSS is VmRSS at the end (models loaded, listening), its anonymous part (RssAnon: heap, the process's own;
the rest is mapped library pages, shareable and evictable) and VmHWM (peak).  Goals (issue 14): listening RSS
<= 0.6 x the bare openWakeWord process and the daemon <= 110 MB; idle CPU <= 1.0 x bare (paced).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from procstat import memory  # noqa: E402

from edged.audio import models as M  # noqa: E402

WARM_FRAMES = 12  # ~1 s: models warm, buffers allocated
WAKE_MODELS = ["hey_jarvis"]  # the daemon's default
# What `edged run` imports at start besides the listening path (edged/daemon.py and the lazy imports in
# edged/parts.py); missing optional ones are skipped and named.
DAEMON_MODULES = ["edged.cli", "edged.daemon", "edged.parts", "edged.conversation", "edged.control_api",
                  "edged.service.control", "edged.service.notify", "edged.service.logs", "edged.status_leds",
                  "edged.tools.gpio", "edged.tools.camera", "edged.tools.registry", "edged.audio.playback",
                  "edged.live.session"]
HEAVY = ["openwakeword", "scipy", "sklearn", "requests", "tqdm", "cryptography", "hypothesis", "PIL", "simplejpeg",
         "picamera2", "edged.sim", "edged.dev"]
RSS_RATIO_GOAL, DAEMON_MB_GOAL, CPU_RATIO_GOAL = 0.6, 110.0, 1.0


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def heavy_loaded() -> list[str]:
    return sorted(h for h in HEAVY if any(m == h or m.startswith(h + ".") for m in sys.modules))


# ---- children --------------------------------------------------------------------------------------------
def listen_worker(models_dir: Path, engine: str, n_frames: int, daemon_imports: bool) -> dict[str, Any]:
    from edged.audio.capture import Capture
    from edged.audio.ear import Ear
    from edged.audio.endpoint import Endpointer
    from edged.audio.frames import FrameRing
    from edged.audio.wake import WakeDetector

    ring = FrameRing(64)
    ear = Ear(ring, WakeDetector(WAKE_MODELS, models_dir, engine=engine), Endpointer("webrtc"), 400)
    cap = Capture("mic", ring=ring)
    ear.start()  # loads the models
    rss_loaded = memory()["VmRSS"]
    cap.start()
    deadline = time.monotonic() + n_frames * 0.08 * 3 + 60
    while ear.frames < WARM_FRAMES and time.monotonic() < deadline:
        time.sleep(0.02)
    f0, c0 = ear.frames, cpu()
    while ear.frames < WARM_FRAMES + n_frames and time.monotonic() < deadline:
        time.sleep(0.02)
    f1, c1 = ear.frames, cpu()
    m = memory()
    cap.stop()
    ear.stop()
    res: dict[str, Any] = {"engine": engine, "audio_s": round((f1 - f0) * 0.08, 2),
                           "cpu_s_per_audio_s": (c1 - c0) / max(1e-9, (f1 - f0) * 0.08),
                           "rss_loaded_mb": rss_loaded, "rss_mb": m["VmRSS"], "hwm_mb": m["VmHWM"],
                           "anon_mb": m["RssAnon"], "file_mb": m["RssFile"], "ring_drops": ring.drops, "heavy_modules": heavy_loaded()}
    if daemon_imports:
        missing = []
        for name in DAEMON_MODULES:
            try:
                importlib.import_module(name)
            except ImportError as exc:
                missing.append(f"{name}: {exc}")
        m = memory()
        res["rss_with_daemon_imports_mb"], res["anon_with_daemon_imports_mb"] = m["VmRSS"], m["RssAnon"]
        res["daemon_imports_missing"] = missing
        res["heavy_modules_with_daemon_imports"] = heavy_loaded()
    return res


def bare_worker(models_dir: Path, engine: str, audio_file: Path) -> dict[str, Any]:
    x = np.frombuffer(audio_file.read_bytes(), "<i2")
    paths = [str(M.resolve(n, models_dir)) for n in WAKE_MODELS]
    if engine == "openwakeword":
        from openwakeword.model import Model

        model: Any = Model(wakeword_models=paths, inference_framework="onnx",
                           melspec_model_path=str(models_dir / M.MELSPEC),
                           embedding_model_path=str(models_dir / M.EMBEDDING))
    else:
        from edged.audio.oww_lean import LeanWakeModel

        model = LeanWakeModel(dict(zip(WAKE_MODELS, paths, strict=True)), models_dir / M.MELSPEC,
                              models_dir / M.EMBEDDING)
    rss_loaded = memory()["VmRSS"]
    frames = len(x) // 1280
    start = time.monotonic()
    c0 = 0.0
    for k in range(frames):
        if k == WARM_FRAMES:
            c0 = cpu()
        delay = start + k * 0.08 - time.monotonic()  # one 80 ms frame when a microphone would deliver it
        if delay > 0:
            time.sleep(delay)
        model.predict(x[k * 1280:(k + 1) * 1280])
    c1 = cpu()
    m = memory()
    audio_s = (frames - WARM_FRAMES) * 0.08
    return {"engine": engine, "audio_s": round(audio_s, 2), "cpu_s_per_audio_s": (c1 - c0) / audio_s,
            "rss_loaded_mb": rss_loaded, "rss_mb": m["VmRSS"], "hwm_mb": m["VmHWM"], "anon_mb": m["RssAnon"],
            "file_mb": m["RssFile"], "heavy_modules": heavy_loaded()}


# ---- the parent ------------------------------------------------------------------------------------------
def _child(args: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> dict[str, Any]:
    p = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})}, cwd=ROOT)
    if p.returncode != 0:
        raise RuntimeError(f"bench_audio child {args[:3]} exited {p.returncode}: {p.stderr.strip()[-800:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_listen(models_dir: Path, engine: str, audio: bytes, tmp: Path, daemon_imports: bool) -> dict[str, Any]:
    from edged.dev.filedev import FifoFeeder, write_alsa_config

    d = tmp / f"listen-{engine}"
    d.mkdir()
    fifo = d / "mic.fifo"
    env = write_alsa_config(d / "asound.conf", captures={"mic": fifo})
    n_frames = len(audio) // 2560 - WARM_FRAMES - 4
    feeder = FifoFeeder(fifo, audio).start()  # here, so the child's CPU is the listening path's alone
    try:
        return _child(["--listen-worker", engine, "--frames", str(n_frames), "--models", str(models_dir)]
                      + (["--daemon-imports"] if daemon_imports else []), env)
    finally:
        feeder.stop()


def measure(models_dir: Path, seconds: float) -> dict[str, Any]:
    M.fetch(models_dir)
    rng = np.random.default_rng(0)
    n = int((seconds + (WARM_FRAMES + 6) * 0.08) / 0.08) * 1280
    audio = rng.normal(0, 30, n).round().astype("<i2").tobytes()  # a quiet room
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edged-bench-audio-") as t:
        tmp = Path(t)
        raw = tmp / "audio.raw"
        raw.write_bytes(audio)
        res["listen_lean"] = run_listen(models_dir, "lean", audio, tmp, daemon_imports=True)
        res["listen_openwakeword"] = run_listen(models_dir, "openwakeword", audio, tmp, daemon_imports=False)
        for engine in ("openwakeword", "lean"):
            res[f"bare_{engine}"] = _child(["--bare-worker", engine, "--audio", str(raw), "--models", str(models_dir)])
    ll, lo, bo, bl = res["listen_lean"], res["listen_openwakeword"], res["bare_openwakeword"], res["bare_lean"]
    daemon_add = ll["rss_with_daemon_imports_mb"] - ll["rss_mb"]
    res["summary"] = {
        "rss_listen_lean_mb": round(ll["rss_mb"], 1), "rss_listen_openwakeword_mb": round(lo["rss_mb"], 1),
        "rss_bare_openwakeword_mb": round(bo["rss_mb"], 1), "rss_bare_lean_mb": round(bl["rss_mb"], 1),
        "rss_ratio_listen_lean_vs_bare_oww": round(ll["rss_mb"] / bo["rss_mb"], 3),
        "anon_listen_lean_mb": round(ll["anon_mb"], 1), "anon_bare_openwakeword_mb": round(bo["anon_mb"], 1),
        "anon_ratio_listen_lean_vs_bare_oww": round(ll["anon_mb"] / bo["anon_mb"], 3),
        "rss_daemon_imports_add_mb": round(daemon_add, 1),
        "rss_daemon_estimate_mb": round(ll["rss_with_daemon_imports_mb"], 1),
        "cpu_listen_lean_s_per_audio_s": round(ll["cpu_s_per_audio_s"], 5),
        "cpu_listen_openwakeword_s_per_audio_s": round(lo["cpu_s_per_audio_s"], 5),
        "cpu_bare_openwakeword_paced_s_per_audio_s": round(bo["cpu_s_per_audio_s"], 5),
        "cpu_bare_lean_paced_s_per_audio_s": round(bl["cpu_s_per_audio_s"], 5),
        "cpu_ratio_listen_lean_vs_bare_oww_paced": round(ll["cpu_s_per_audio_s"] / bo["cpu_s_per_audio_s"], 3),
        "cpu_ratio_bare_lean_vs_bare_oww_paced": round(bl["cpu_s_per_audio_s"] / bo["cpu_s_per_audio_s"], 3),
        "audio_s": ll["audio_s"], "ring_drops": ll["ring_drops"] + lo["ring_drops"],
        "goals": {"rss_ratio": RSS_RATIO_GOAL, "daemon_mb": DAEMON_MB_GOAL, "cpu_ratio": CPU_RATIO_GOAL},
    }
    return res


def table(res: dict[str, Any]) -> str:
    s = res["summary"]
    rows = [
        ("Idle RSS, listening path, lean engine / bare openWakeWord process",
         f"**{s['rss_ratio_listen_lean_vs_bare_oww']:.3f}** ({s['rss_listen_lean_mb']} vs {s['rss_bare_openwakeword_mb']} MB)",
         f"≤ {RSS_RATIO_GOAL}"),
        ("Idle anonymous RSS (RssAnon), the same processes",
         f"{s['anon_ratio_listen_lean_vs_bare_oww']:.3f} ({s['anon_listen_lean_mb']} vs {s['anon_bare_openwakeword_mb']} MB)",
         "—"),
        ("Idle RSS, listening path with the openwakeword engine", f"{s['rss_listen_openwakeword_mb']} MB", "—"),
        ("Idle RSS, listening path + the daemon's start-up imports (estimate of the daemon)",
         f"**{s['rss_daemon_estimate_mb']} MB** (imports add {s['rss_daemon_imports_add_mb']} MB)", f"≤ {DAEMON_MB_GOAL:.0f} MB"),
        ("Idle CPU, listening path (lean) / bare openWakeWord paced",
         f"**{s['cpu_ratio_listen_lean_vs_bare_oww_paced']:.3f}** ({s['cpu_listen_lean_s_per_audio_s']:.4f} vs "
         f"{s['cpu_bare_openwakeword_paced_s_per_audio_s']:.4f} CPU s per audio s)", f"≤ {CPU_RATIO_GOAL}"),
        ("Idle CPU, bare lean engine / bare openWakeWord, both paced",
         f"{s['cpu_ratio_bare_lean_vs_bare_oww_paced']:.3f} ({s['cpu_bare_lean_paced_s_per_audio_s']:.4f} CPU s per audio s)",
         "—"),
    ]
    out = ["| figure | measured | goal |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--models", default=os.environ.get("EDGED_TEST_MODELS") or str(ROOT / ".cache/models"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--listen-worker", choices=["lean", "openwakeword"], help=argparse.SUPPRESS)
    ap.add_argument("--bare-worker", choices=["lean", "openwakeword"], help=argparse.SUPPRESS)
    ap.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--audio", help=argparse.SUPPRESS)
    ap.add_argument("--daemon-imports", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    models_dir = Path(a.models)
    if a.listen_worker:
        print(json.dumps(listen_worker(models_dir, a.listen_worker, a.frames, a.daemon_imports)))
        return 0
    if a.bare_worker:
        print(json.dumps(bare_worker(models_dir, a.bare_worker, Path(a.audio))))
        return 0
    res = measure(models_dir, a.seconds)
    print(json.dumps(res, indent=2) if a.json else table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
