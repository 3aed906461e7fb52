#!/usr/bin/env python3
"""End of turn over the labelled corpus (edged.dev.turn_corpus), per detector, VAD and room noise.

    .venv/bin/python bench/bench_endpoint.py [--quick] [--models DIR] [--json]

For each configuration: the median (and p90) from the end of speech to the end decision on the
complete commands, counted in audio (the end of the 80 ms frame at which ``process`` returned); the
share of commands with a 400-900 ms mid-sentence pause that were cut off (ended before their last
word); and Smart Turn's inference time per decision (wall and thread CPU, features + model).  A
Smart Turn request gets at most one frame of wall time before the next frame is fed, as a live
microphone allows, so a slow inference shows up in the latency.

``separation``: can any threshold on the model's probability (or a higher one for a later re-ask)
keep paused commands open and still end complete ones early?  The model is asked about each clip's
audio up to the pause (paused commands) or the end (complete ones) plus 200-800 ms of silence; the
AUC says how well "complete" is told from "paused" at each silence; and, held out by voice, the
threshold that keeps cut-offs <= 5 % on two voices is applied to the other two (and the other way
round): how many complete commands it still ends at 200 ms, and how many paused ones it cuts off.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edged.startup import BLAS_THREADS, one_blas_thread  # noqa: E402

if "--blas-worker=default" not in sys.argv:  # the one run that measures OpenBLAS left to itself
    one_blas_thread()  # as the daemon's entry does, before numpy loads: Smart Turn's CPU is measured as it runs there

import numpy as np  # noqa: E402

from edged.audio.endpoint import Endpointer  # noqa: E402
from edged.dev import turn_corpus as tc  # noqa: E402

CONFIGS = [  # (name, vad, detector, silence_ms, smart_reask_ms); smart_turn asks once per silence unless re-asking
    ("silence 700 ms (webrtc)", "webrtc", "silence", 700, 0),
    ("silence 700 ms (silero)", "silero", "silence", 700, 0),
    ("smart_turn 200 ms, cap 700 (webrtc)", "webrtc", "smart_turn", 700, 0),
    ("smart_turn 200 ms, cap 1200 (webrtc)", "webrtc", "smart_turn", 1200, 0),
    ("smart_turn 200 ms, re-asked every 300 ms, cap 1200 (webrtc)", "webrtc", "smart_turn", 1200, 300),
    ("smart_turn 200 ms, cap 1200 (silero)", "silero", "smart_turn", 1200, 0),
    ("silence 1200 ms (webrtc)", "webrtc", "silence", 1200, 0),
]
NOISES = ["none", "white-60", "white-50", "white-40", "pink-60", "pink-50", "pink-40", "hum-50"]
TRAINED_NOISES = ["none", "white-50"]  # the festival voice: one voice, so two conditions


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


SILENCES_MS = [200, 500, 800]  # the first ask (turn.smart_silence_ms) and the re-asks (every 300 ms)


def auc(pos: list[float], neg: list[float]) -> float:
    """P(a complete command scores above a paused one); 0.5 = no better than chance."""
    if not pos or not neg:
        return float("nan")
    a, b = np.asarray(pos), np.asarray(neg)
    return float(np.mean([(x > b).mean() + 0.5 * (x == b).mean() for x in a]))


def separation(models: Path, clips: list[tc.Clip]) -> dict[str, Any]:
    from edged.audio import models as M
    from edged.audio.smart_turn import SmartTurnModel

    model = SmartTurnModel(models / M.SMART_TURN)
    lead = np.zeros(tc.RATE // 2, np.float32)  # the endpointer keeps 0.5 s before the first onset
    rows = []
    for c in clips:
        x = c.pcm.astype(np.float32) / 32768.0
        cut = c.pause_at if c.label == "pause" else c.speech_end
        p = {}
        for ms in SILENCES_MS:
            if c.label == "pause" and ms >= c.pause_ms:
                break
            p[ms] = model.predict(np.concatenate([lead, x[:cut], np.zeros(ms * tc.RATE // 1000, np.float32)]))
        rows.append((c, p))
    out: dict[str, Any] = {"auc": {}, "held_out": []}
    for ms in SILENCES_MS:
        pos = [p[ms] for c, p in rows if c.label == "complete"]
        neg = [p[ms] for c, p in rows if c.label == "pause" and ms in p]
        out["auc"][str(ms)] = {"auc": round(auc(pos, neg), 3), "complete_mean_p": round(float(np.mean(pos)), 3),
                               "paused_mean_p": round(float(np.mean(neg)), 3) if neg else None, "paused_n": len(neg)}
    voices = sorted({c.voice for c in clips})
    half = len(voices) // 2
    for tune, test in ((voices[:half], voices[half:]), (voices[half:], voices[:half])) if half else ():
        def first(vs: list[str], label: str) -> list[float]:
            return [p[200] for c, p in rows if c.voice in vs and c.label == label]

        tune_paused = first(tune, "pause")
        # the lowest threshold that cuts off at most 5 % of the tuning voices' paused commands at 200 ms
        threshold = next(t for t in sorted(set(tune_paused)) + [1.0]
                         if np.mean(np.asarray(tune_paused) >= t) <= 0.05) if tune_paused else 0.5
        test_complete, test_paused = first(test, "complete"), first(test, "pause")
        out["held_out"].append({
            "tuned_on": tune, "tested_on": test, "threshold": round(float(threshold), 4),
            "complete_ended_at_200ms": round(float(np.mean(np.asarray(test_complete) >= threshold)), 3),
            "paused_cut_off": round(float(np.mean(np.asarray(test_paused) >= threshold)), 3),
            "default_0_5_complete_ended": round(float(np.mean(np.asarray(test_complete) >= 0.5)), 3),
            "default_0_5_paused_cut_off": round(float(np.mean(np.asarray(test_paused) >= 0.5)), 3)})
    return out


THREADS = (1, 2)  # turn.smart_threads compared


def threads(models: Path, clips: list[tc.Clip], rounds: int) -> dict[str, Any]:
    """Inference wall time per ``turn.smart_threads``, the counts interleaved call by call (the
    machine's load falls on both), each call after 100 ms idle as between a turn's decisions."""
    from edged.audio import models as M
    from edged.audio.smart_turn import SmartTurnModel

    ms = {t: SmartTurnModel(models / M.SMART_TURN, threads=t) for t in THREADS}
    audio = [np.concatenate([np.zeros(tc.RATE // 2, np.float32), c.pcm.astype(np.float32) / 32768.0,
                             np.zeros(tc.RATE // 5, np.float32)]) for c in clips if c.label == "complete"]
    wall: dict[int, list[float]] = {t: [] for t in THREADS}
    cpu: dict[int, list[float]] = {t: [] for t in THREADS}
    for i in range(rounds):
        for t, m in ms.items():
            time.sleep(0.1)
            t0, c0 = time.perf_counter(), time.process_time()
            m.predict(audio[i % len(audio)])
            wall[t].append((time.perf_counter() - t0) * 1000)
            cpu[t].append((time.process_time() - c0) * 1000)  # every thread of the process, OpenBLAS's too
    return {str(t): {"n": len(wall[t]), "wall_p50_ms": pct(wall[t], 50), "wall_p95_ms": pct(wall[t], 95),
                     "process_cpu_p50_ms": pct(cpu[t], 50)} for t in THREADS}


BLAS_MODES = ("default", "one")  # OpenBLAS left to start a thread per core, or edged's one thread


def blas(models: Path, rounds: int, pairs: int = 3) -> dict[str, Any]:
    """Smart Turn per decision with numpy's OpenBLAS left to itself and with one thread
    (edged.startup.one_blas_thread): the setting takes effect when numpy loads, so each is a fresh
    process; ``pairs`` alternations, so the host's drift falls on both."""
    runs: dict[str, dict[str, dict[str, list[float]]]] = {
        m: {str(t): {"wall": [], "cpu": []} for t in THREADS} for m in BLAS_MODES}
    for _ in range(pairs):
        for mode in BLAS_MODES:
            env = {k: v for k, v in os.environ.items() if k not in (BLAS_THREADS, "OMP_NUM_THREADS", "GOTO_NUM_THREADS")}
            out = subprocess.run([sys.executable, __file__, f"--blas-worker={mode}", "--models", str(models),
                                  "--rounds", str(rounds)], env=env, capture_output=True, text=True, check=True,
                                 timeout=600)
            for t, v in json.loads(out.stdout).items():
                runs[mode][t]["wall"] += v["wall"]
                runs[mode][t]["cpu"] += v["cpu"]
    return {m: {t: {"n": len(v["wall"]), "wall_p50_ms": pct(v["wall"], 50), "wall_p95_ms": pct(v["wall"], 95),
                    "process_cpu_p50_ms": pct(v["cpu"], 50)} for t, v in per.items()} for m, per in runs.items()}


def blas_worker(models: Path, rounds: int) -> dict[str, Any]:
    clips = tc.build(ROOT / ".cache" / "turn-corpus")
    from edged.audio import models as M
    from edged.audio.smart_turn import SmartTurnModel

    ms = {t: SmartTurnModel(models / M.SMART_TURN, threads=t) for t in THREADS}
    audio = [np.concatenate([np.zeros(tc.RATE // 2, np.float32), c.pcm.astype(np.float32) / 32768.0,
                             np.zeros(tc.RATE // 5, np.float32)]) for c in clips if c.label == "complete"]
    out: dict[str, Any] = {str(t): {"wall": [], "cpu": []} for t in THREADS}
    for i in range(rounds + 2):  # the first two warm up
        for t, m in ms.items():
            time.sleep(0.1)
            t0, c0 = time.perf_counter(), time.process_time()
            m.predict(audio[i % len(audio)])
            if i >= 2:
                out[str(t)]["wall"].append((time.perf_counter() - t0) * 1000)
                out[str(t)]["cpu"].append((time.process_time() - c0) * 1000)
    return out


def sweep(models: Path, clips: list[tc.Clip], noises: list[str], tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every configuration over ``clips`` under each noise: ({config: {noise: figures}}, inference times)."""
    configs: dict[str, Any] = {}
    inference: dict[str, Any] = {}
    for name, vad, det, cap, reask in CONFIGS:
        ep = Endpointer(vad, silence_ms=cap, max_utterance_s=15, no_speech_timeout_s=5, models_dir=models,
                        detector=det, smart_reask_ms=reask)
        ep.load()
        if ep.problem:
            raise RuntimeError(ep.problem)
        rows = {}
        for noise in noises:
            t0 = time.monotonic()
            rows[noise] = measure(ep, clips, noise)
            print(f"[bench_endpoint] {tag} {name} {noise}: {rows[noise]} ({time.monotonic() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
        configs[name] = rows
        if ep.worker is not None:
            ms = [v.ms for v in ep.worker.timings]
            cpu = [v.cpu_ms for v in ep.worker.timings]
            inference[name] = {"n": len(ms), "wall_p50_ms": pct(ms, 50), "wall_p95_ms": pct(ms, 95),
                               "cpu_p50_ms": pct(cpu, 50), "cpu_p95_ms": pct(cpu, 95)}
            ep.close()
    return configs, inference


def counts(clips: list[tc.Clip]) -> dict[str, int]:
    return {"complete": sum(c.label == "complete" for c in clips), "pause": sum(c.label == "pause" for c in clips)}


def run(models: Path, quick: bool) -> dict[str, Any]:
    """The espeak-ng corpus (4 voices) under every noise, and the festival voice with trained prosody
    (``trained``) in digital silence and white noise: reported apart, since the model judges them apart."""
    corpus = tc.build(ROOT / ".cache" / "turn-corpus", voices=tc.VOICES + tc.TRAINED_VOICES)
    clips = [c for c in corpus if c.family == "espeak"]
    trained = [c for c in corpus if c.family == "festival"]
    if quick:
        clips = [c for c in clips if c.voice in ("en-us", "en+f3")]
    noises = ["none", "white-50", "pink-40", "hum-50"] if quick else NOISES
    out: dict[str, Any] = {"clips": counts(clips)}
    out["configs"], out["inference"] = sweep(models, clips, noises, "espeak")
    out["separation"] = separation(models, clips)
    t_configs, _ = sweep(models, trained, TRAINED_NOISES, "festival")
    out["trained"] = {"voices": [v for v, _ in tc.TRAINED_VOICES], "clips": counts(trained), "configs": t_configs,
                      "separation": separation(models, trained)}
    out["threads"] = threads(models, clips, 20 if quick else 60)
    out["blas"] = blas(models, 10 if quick else 20)
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
    for t, v in r.get("threads", {}).items():
        lines.append(f"- Smart Turn inference with turn.smart_threads = {t} (interleaved): wall p50 "
                     f"{v['wall_p50_ms']:.1f} ms, p95 {v['wall_p95_ms']:.1f} ms, process CPU p50 "
                     f"{v.get('process_cpu_p50_ms', float('nan')):.1f} ms (n={v['n']})")
    for mode, per in r.get("blas", {}).items():
        lines.append(f"- numpy's OpenBLAS {'left to itself' if mode == 'default' else 'with one thread (edged)'}: "
                     + "; ".join(f"turn.smart_threads = {t}: wall p50 {v['wall_p50_ms']:.1f} ms, p95 "
                                 f"{v['wall_p95_ms']:.1f} ms, process CPU p50 {v['process_cpu_p50_ms']:.1f} ms"
                                 for t, v in per.items()) + f" (n={next(iter(per.values()))['n']} each)")
    tr = r.get("trained")
    if tr:
        lines += ["", f"Festival voice with trained prosody ({', '.join(tr['voices'])}): {tr['clips']['complete']} "
                  f"complete commands, {tr['clips']['pause']} paused.", "",
                  "| detector | " + " | ".join(TRAINED_NOISES) + " |", "|---|" + "---|" * len(TRAINED_NOISES)]
        for name, rows in tr["configs"].items():
            cells = [f"{v['median_ms']:.0f} / {v['p90_ms']:.0f}; cut {100 * v['cut_off_rate']:.0f} %" for v in rows.values()]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("- Smart Turn on it, complete vs paused (AUC): " + ", ".join(
            f"{ms} ms of silence {v['auc']:.2f} (mean P(complete) {v['complete_mean_p']:.2f} vs "
            f"{v['paused_mean_p'] if v['paused_mean_p'] is not None else float('nan'):.2f})"
            for ms, v in tr["separation"]["auc"].items()))
        lines.append("")
    sep = r.get("separation")
    if sep:
        lines.append("- Smart Turn, complete vs paused (AUC, 0.5 = chance): " + ", ".join(
            f"{ms} ms of silence {v['auc']:.2f}" for ms, v in sep["auc"].items()))
        for h in sep["held_out"]:
            lines.append(f"- threshold {h['threshold']:.3f} tuned on {'/'.join(h['tuned_on'])} (cut-offs <= 5 %), on "
                         f"{'/'.join(h['tested_on'])}: {100 * h['complete_ended_at_200ms']:.0f} % of complete commands "
                         f"ended at 200 ms, {100 * h['paused_cut_off']:.0f} % of paused ones cut off (threshold 0.5: "
                         f"{100 * h['default_0_5_complete_ended']:.0f} % / {100 * h['default_0_5_paused_cut_off']:.0f} %)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 voices and 4 noise conditions")
    ap.add_argument("--models", default=os.environ.get("EDGED_TEST_MODELS") or str(ROOT / ".cache/models"))
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--blas-worker", choices=BLAS_MODES, help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=20, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.blas_worker:
        print(json.dumps(blas_worker(Path(a.models), a.rounds)))
        return 0
    r = run(Path(a.models), a.quick)
    print(json.dumps(r, indent=2) if a.json else table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
