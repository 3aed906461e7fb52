#!/usr/bin/env python3
"""End of turn over the labelled corpus (edged.dev.turn_corpus), per detector, VAD and room noise.

    .venv/bin/python bench/bench_endpoint.py [--quick] [--models DIR] [--json]

For each configuration: the median (and p90) from the end of speech to the end decision on the
complete commands, counted in audio (the end of the 80 ms frame at which ``process`` returned); the
share of commands with a 400-900 ms mid-sentence pause that were cut off (ended before their last
word); and Smart Turn's inference time per decision (wall and thread CPU, features + model).  A
Smart Turn request gets at most one frame of wall time before the next frame is fed, as a live
microphone allows, so a slow inference shows up in the latency.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edged.audio.endpoint import Endpointer  # noqa: E402
from edged.dev import turn_corpus as tc  # noqa: E402

CONFIGS = [  # (name, vad, detector, silence_ms)
    ("silence 700 ms (webrtc)", "webrtc", "silence", 700),
    ("silence 700 ms (silero)", "silero", "silence", 700),
    ("smart_turn 200 ms, cap 700 (webrtc)", "webrtc", "smart_turn", 700),
    ("smart_turn 200 ms, cap 1200 (webrtc)", "webrtc", "smart_turn", 1200),
    ("smart_turn 200 ms, cap 1200 (silero)", "silero", "smart_turn", 1200),
    ("silence 1200 ms (webrtc)", "webrtc", "silence", 1200),
]
NOISES = ["none", "white-60", "white-50", "white-40", "pink-60", "pink-50", "pink-40", "hum-50"]


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def measure(ep: Endpointer, clips: list[tc.Clip], noise: str) -> dict[str, Any]:
    lat: list[float] = []
    by_model = 0
    cut = 0
    n_pause = 0
    for i, c in enumerate(clips):
        pcm, end = tc.scene(c, noise, seed=i)
        reason, at = tc.run(ep, pcm)
        if ep.worker is not None:
            ep.worker.wait_idle(10)
        if c.label == "complete":
            lat.append((at - end) * 1000 / tc.RATE if reason == "silence" else float("inf"))
            by_model += ep.last_end.get("detector") == "smart_turn"
        else:
            n_pause += 1
            cut += reason is None or at < end
    return {"median_ms": pct(lat, 50), "p90_ms": pct(lat, 90), "n": len(lat), "ended_by_model": by_model,
            "cut_offs": cut, "pause_clips": n_pause, "cut_off_rate": cut / n_pause if n_pause else 0.0}


def run(models: Path, quick: bool) -> dict[str, Any]:
    clips = tc.build(ROOT / ".cache" / "turn-corpus")
    if quick:
        clips = [c for c in clips if c.voice in ("en-us", "en+f3")]
    noises = ["none", "white-50", "pink-40", "hum-50"] if quick else NOISES
    out: dict[str, Any] = {"clips": {"complete": sum(c.label == "complete" for c in clips),
                                     "pause": sum(c.label == "pause" for c in clips)},
                           "configs": {}, "inference": {}}
    for name, vad, det, cap in CONFIGS:
        ep = Endpointer(vad, silence_ms=cap, max_utterance_s=15, no_speech_timeout_s=5, models_dir=models,
                        detector=det)
        ep.load()
        if ep.problem:
            raise RuntimeError(ep.problem)
        rows = {}
        for noise in noises:
            t0 = time.monotonic()
            rows[noise] = measure(ep, clips, noise)
            print(f"[bench_endpoint] {name} {noise}: {rows[noise]} ({time.monotonic() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
        out["configs"][name] = rows
        if ep.worker is not None:
            ms = [v.ms for v in ep.worker.timings]
            cpu = [v.cpu_ms for v in ep.worker.timings]
            out["inference"][name] = {"n": len(ms), "wall_p50_ms": pct(ms, 50), "wall_p95_ms": pct(ms, 95),
                                      "cpu_p50_ms": pct(cpu, 50), "cpu_p95_ms": pct(cpu, 95)}
            ep.close()
    return out


def table(r: dict[str, Any]) -> str:
    noises = list(next(iter(r["configs"].values())))
    lines = [f"Corpus: {r['clips']['complete']} complete commands, {r['clips']['pause']} with a 400-900 ms pause "
             "(espeak-ng, 4 voices and speeds).  Cells: median / p90 ms from end of speech to the end decision; "
             "cut-offs of paused commands.", "",
             "| detector | " + " | ".join(noises) + " |", "|---|" + "---|" * len(noises)]
    for name, rows in r["configs"].items():
        cells = [f"{v['median_ms']:.0f} / {v['p90_ms']:.0f}; cut {100 * v['cut_off_rate']:.0f} %" for v in rows.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    for name, v in r["inference"].items():
        lines.append(f"- Smart Turn inference, {name}: wall p50 {v['wall_p50_ms']:.1f} ms, p95 {v['wall_p95_ms']:.1f} "
                     f"ms; thread CPU p50 {v['cpu_p50_ms']:.1f} ms, p95 {v['cpu_p95_ms']:.1f} ms (last {v['n']})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 voices and 4 noise conditions")
    ap.add_argument("--models", default=os.environ.get("EDGED_TEST_MODELS") or str(ROOT / ".cache/models"))
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    a = ap.parse_args(argv)
    r = run(Path(a.models), a.quick)
    print(json.dumps(r, indent=2) if a.json else table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
