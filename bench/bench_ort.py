#!/usr/bin/env python3
"""onnxruntime session options for the lean wake engine: each one's effect on memory and CPU per frame.

    .venv/bin/python bench/bench_ort.py [--frames 400] [--runs 3] [--models DIR] [--json FILE]

Every configuration runs in a fresh process (RSS is per process): import numpy + onnxruntime + the lean
engine, load hey_jarvis with the options, score ``--frames`` 80 ms frames of a quiet room with speech-like
bursts (after 25 warm-up frames), unpaced.  Reported per configuration, median over ``--runs`` processes:
VmRSS after the imports (numpy, onnxruntime) and after loading, VmRSS and VmHWM after scoring (MB), and process CPU (all threads, getrusage) per frame
in ms.  The baseline is openWakeWord's own choice (one intra- and one inter-op thread, everything else
onnxruntime's default); each other row changes one thing from it (one row two), and the last row is the lean default
(edged/audio/oww_lean.py SessionSettings).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from procstat import memory  # noqa: E402

BASE = {"cpu_mem_arena": True, "mem_pattern": True, "intra_op_threads": 1, "inter_op_threads": 1,
        "sequential": True, "graph_optimization": "all"}
CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("openWakeWord's options (1 intra, 1 inter; arena, patterns on)", {}),
    ("onnxruntime defaults (threads = cores)", {"intra_op_threads": 0, "inter_op_threads": 0}),
    ("cpu memory arena off", {"cpu_mem_arena": False}),
    ("memory patterns off", {"mem_pattern": False}),
    ("execution mode parallel", {"sequential": False}),
    ("graph optimisation: extended", {"graph_optimization": "extended"}),
    ("graph optimisation: basic", {"graph_optimization": "basic"}),
    ("graph optimisation: disabled", {"graph_optimization": "disable"}),
    ("arena off and patterns off", {"cpu_mem_arena": False, "mem_pattern": False}),
    ("lean default (patterns off; arena on, 1/1, sequential, all)", {"mem_pattern": False}),
]


def worker(models_dir: Path, settings: dict[str, Any], frames: int) -> dict[str, float]:
    import numpy as np

    from edged.audio import models as M
    from edged.audio.oww_lean import LeanWakeModel, SessionSettings

    rng = np.random.default_rng(0)
    n = (frames + 25) * 1280
    envelope = np.repeat(rng.random(n // 8000 + 1) > 0.6, 8000)[:n] * 3000 + 30
    x = (rng.normal(0, 1, n) * envelope).astype(np.int16)
    import onnxruntime  # noqa: F401  (imported by the engine anyway: its cost is not the options')

    rss_import = memory()["VmRSS"]
    m = LeanWakeModel({"hey_jarvis": M.resolve("hey_jarvis", models_dir)}, models_dir / M.MELSPEC,
                      models_dir / M.EMBEDDING, settings=SessionSettings(**settings))
    rss_loaded = memory()["VmRSS"]
    for i in range(25):
        m.predict(x[i * 1280:(i + 1) * 1280])
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(25, 25 + frames):
        m.predict(x[i * 1280:(i + 1) * 1280])
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    st = memory()
    return {"rss_import_mb": rss_import, "rss_loaded_mb": rss_loaded, "rss_mb": st["VmRSS"], "hwm_mb": st["VmHWM"],
            "anon_mb": st["RssAnon"],
            "cpu_ms_per_frame": cpu / frames * 1000, "threads": len(os.listdir("/proc/self/task"))}


def measure(models_dir: Path, frames: int = 400, runs: int = 3) -> dict[str, Any]:
    rows = []
    for name, change in CONFIGS:
        settings = {**BASE, **change}
        results = []
        for _ in range(runs):
            p = subprocess.run([sys.executable, __file__, "--worker", json.dumps(settings), "--models", str(models_dir),
                                "--frames", str(frames)], capture_output=True, text=True, timeout=600, check=True)
            results.append(json.loads(p.stdout.strip().splitlines()[-1]))
        row: dict[str, Any] = {"config": name, "settings": settings, "runs": runs}
        for k in results[0]:
            row[k] = round(statistics.median(r[k] for r in results), 3)
        rows.append(row)
        print(f"[bench_ort] {name}: {row['rss_mb']:.1f} MB, {row['cpu_ms_per_frame']:.3f} ms/frame", file=sys.stderr)
    base = rows[0]
    for r in rows:
        r["rss_delta_mb"] = round(r["rss_mb"] - base["rss_mb"], 2)
        r["anon_delta_mb"] = round(r["anon_mb"] - base["anon_mb"], 2)
        r["hwm_delta_mb"] = round(r["hwm_mb"] - base["hwm_mb"], 2)
        r["cpu_ratio"] = round(r["cpu_ms_per_frame"] / base["cpu_ms_per_frame"], 3)
    return {"frames": frames, "runs": runs, "rows": rows}


def table(res: dict[str, Any]) -> str:
    out = ["| options | RSS imports | RSS loaded | RSS after scoring | Δ RSS | RssAnon (Δ) | VmHWM | CPU per 80 ms frame | CPU ratio | threads |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        out.append(f"| {r['config']} | {r['rss_import_mb']:.1f} MB | {r['rss_loaded_mb']:.1f} MB | {r['rss_mb']:.1f} MB | {r['rss_delta_mb']:+.1f} MB | "
                   f"{r['anon_mb']:.1f} MB ({r['anon_delta_mb']:+.1f}) | "
                   f"{r['hwm_mb']:.1f} MB | {r['cpu_ms_per_frame']:.3f} ms | {r['cpu_ratio']:.2f} | {r['threads']:.0f} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=os.environ.get("EDGED_TEST_MODELS") or str(ROOT / ".cache/models"))
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(Path(a.models), json.loads(a.worker), a.frames)))
        return 0
    res = measure(Path(a.models), a.frames, a.runs)
    print(table(res))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
