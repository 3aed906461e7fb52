#!/usr/bin/env python3
"""The wake word's quiet skip (wake.quiet_margin_db): CPU per minute of listening, with and without it.

    .venv/bin/python bench/bench_wake_quiet.py [--minutes 1] [--runs 5] [--models DIR] [--json FILE]

A minute of a room: its noise under everything, and "hey jarvis" and another phrase (espeak-ng) spoken
once each.  Rooms: digital silence (a muted or idle card), white noise at -60 dBFS, pink noise at
-50 dBFS, a 50 Hz hum with harmonics at -50 dBFS (a fridge), and a room with speech every few seconds
(neither rests much there).  The lean engine scores the minute frame by frame (80 ms) unpaced, the two
settings interleaved run by run on the same detector models; reported per room: the median CPU time
(thread time) per minute of audio for each, their ratio, the share of frames the models skipped, and
whether both found the same wake words (they must: the skip changes no score).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_daemon import machine  # noqa: E402

from edged.audio.frames import AudioFrame  # noqa: E402
from edged.audio.wake import WakeDetector  # noqa: E402
from edged.dev.tts import render  # noqa: E402
from edged.dev.turn_corpus import noise  # noqa: E402

RATE = 16000
FRAME = 1280
ROOMS = ["none", "white-60", "pink-50", "hum-50", "talk-60"]
MARGIN_DB = 3.0  # the config's default


def room(kind: str, seconds: float, wake: np.ndarray, other: np.ndarray) -> np.ndarray:
    n = int(seconds * RATE)
    x = np.zeros(n)
    spoken = [(0.3, wake), (0.7, other)]
    if kind.startswith("talk"):  # speech every few seconds
        spoken += [(t, other) for t in np.arange(0.05, 0.95, 0.1)]
    for at, clip in spoken:
        i = int(at * n)
        x[i:i + clip.size] += clip[: n - i]
    x += noise("white-" + kind.split("-")[1] if kind.startswith("talk") else kind, n, seed=5)
    x = np.concatenate([x, np.zeros((-n) % FRAME)])
    return np.clip(np.round(x), -32768, 32767).astype("<i2")


def score(det: WakeDetector, x: np.ndarray) -> tuple[float, list[int]]:
    det.reset()
    det._quiet_until = float("-inf")
    hits = []
    c0 = time.thread_time()
    for i in range(0, x.size, FRAME):
        d = det.process(AudioFrame(x[i:i + FRAME].tobytes(), RATE, (i + FRAME) / RATE, i // FRAME))
        if d is not None:
            hits.append(d.seq)
    return time.thread_time() - c0, hits


def run(models_dir: Path, minutes: float, runs: int) -> dict[str, Any]:
    wake = np.fromfile(render("hey jarvis"), dtype="<i2").astype(np.float64)
    other = np.fromfile(render("what is the weather like today"), dtype="<i2").astype(np.float64)
    plain = WakeDetector(["hey_jarvis"], models_dir)
    quiet = WakeDetector(["hey_jarvis"], models_dir, quiet_margin_db=MARGIN_DB)
    plain.load()
    quiet.load()
    out: dict[str, Any] = {"machine": machine(), "minutes": minutes, "runs": runs, "margin_db": MARGIN_DB, "rooms": {}}
    for kind in ROOMS:
        x = room(kind, 60 * minutes, wake, other)
        cpu: dict[str, list[float]] = {"plain": [], "quiet": []}
        hits: dict[str, list[int]] = {}
        skipped = 0.0
        for _ in range(runs):  # interleaved: the two settings see the same load
            for name, det in (("plain", plain), ("quiet", quiet)):
                s0 = det.gate.skipped if det.gate else 0
                t, h = score(det, x)
                cpu[name].append(t / minutes)
                hits[name] = h
                if det.gate:
                    skipped = (det.gate.skipped - s0) / (x.size // FRAME)
        med = {k: statistics.median(v) for k, v in cpu.items()}
        out["rooms"][kind] = {"cpu_s_per_min_plain": round(med["plain"], 3), "cpu_s_per_min_quiet": round(med["quiet"], 3),
                              "ratio": round(med["quiet"] / med["plain"], 3), "skipped_share": round(skipped, 3),
                              "wakes_plain": hits["plain"], "wakes_quiet": hits["quiet"],
                              "same_wakes": hits["plain"] == hits["quiet"]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=str(ROOT / ".cache/models"))
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    res = run(Path(a.models), a.minutes, a.runs)
    print(f"load {res['machine']['loadavg']}; CPU s per minute of audio, median of {a.runs} interleaved runs")
    print("| room | without quiet skip | with it | ratio | frames skipped | same wake words |")
    print("|---|---|---|---|---|---|")
    for kind, r in res["rooms"].items():
        print(f"| {kind} | {r['cpu_s_per_min_plain']:.3f} | {r['cpu_s_per_min_quiet']:.3f} | {r['ratio']:.2f} | "
              f"{100 * r['skipped_share']:.0f} % | {'yes' if r['same_wakes'] else 'NO'} ({len(r['wakes_plain'])}) |")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0 if all(r["same_wakes"] and r["wakes_plain"] for r in res["rooms"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
