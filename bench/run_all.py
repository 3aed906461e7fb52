#!/usr/bin/env python3
"""Every benchmark of edged in one run, as one Markdown table (``scripts/bench`` runs this).

    .venv/bin/python bench/run_all.py [--quick] [--models DIR] [--json FILE] [--out FILE]

Runs, one after the other (never two at once, so they do not steal each other's CPU):
bench_audio.py (the listening path's memory and CPU vs a bare openWakeWord process), bench_ort.py
(onnxruntime session options), bench_wake_quiet.py (the wake word's CPU in quiet rooms with and
without its quiet skip), bench_daemon.py (the real
``edged run`` process: idle CPU and memory, wake and reply latencies, start-up to READY) and
bench_live.py (fresh vs resumed session set-up, turns lost over scripted GoAways), bench_mqtt.py
(Home Assistant command -> GPIO pin change through a real mosquitto) and bench_endpoint.py (end of
speech -> end of turn per detector and room noise, cut-offs of paused commands, Smart Turn
inference time), bench_asynctools.py (gemini-3.8-live in Google-like pacing: the silence a
NON_BLOCKING call adds to the reply it interrupts, a non-answer's turnComplete -> idle) and
bench_player.py (wake -> cue start, first reply chunk -> first ALSA write and underruns per reply
under Google-like pacing).  Medians and
ratios come from this run; absolute times are labelled with the machine they were measured on.
The table goes to stdout and to bench/results/latest.md (or --out), the raw figures to
bench/results/latest.json (or --json); a run of some steps (``--only``) writes
bench/results/only-STEPS.md/.json instead, so it never replaces the full run's files.  bench/results/
is committed: the README's figures come from its latest.md, and the JSON names the commit measured.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import bench_daemon  # noqa: E402

IDLE_GOAL = 1.0  # issue 14: idle CPU <= bare openWakeWord


def _sub(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def run_audio(models: Path, seconds: float) -> dict[str, Any]:
    p = _sub([str(BENCH / "bench_audio.py"), "--seconds", str(seconds), "--models", str(models), "--json"], 900)
    if p.returncode != 0:
        raise RuntimeError(f"bench_audio.py exited {p.returncode}: {p.stderr.strip()[-500:]}")
    return json.loads(p.stdout)


def _child(script: str, timeout: float, *args: str) -> dict[str, Any]:
    """Run bench/``script`` with ``args`` and ``--json FILE``; its results, or why there are none."""
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as d:
        out = Path(d) / "result.json"
        p = _sub([str(BENCH / script), *args, "--json", str(out)], timeout)
        if not out.exists():
            raise RuntimeError(f"{script} exited {p.returncode}: {p.stderr.strip()[-500:]}")
        return json.loads(out.read_text())


def run_ort(models: Path, frames: int, runs: int) -> dict[str, Any]:
    return _child("bench_ort.py", 1800, "--frames", str(frames), "--runs", str(runs), "--models", str(models))


def run_quiet(models: Path, runs: int) -> dict[str, Any]:
    return _child("bench_wake_quiet.py", 900, "--runs", str(runs), "--models", str(models))


def run_live(samples: int, goaways: int) -> dict[str, Any]:
    return _child("bench_live.py", 900, "--samples", str(samples), "--goaways", str(goaways))


def run_mqtt(samples: int) -> dict[str, Any]:
    return _child("bench_mqtt.py", 600, "--samples", str(samples))


def run_player(models: Path, wakes: int, replies: int) -> dict[str, Any]:
    return _child("bench_player.py", 1800, "--wakes", str(wakes), "--replies", str(replies), "--models", str(models))


def player_rows(p: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    rows = []
    w = p.get("wake_cue")
    if w:
        s = w["wake_to_cue_sound_ms"]
        rows.append(("10a", "Wake → cue start: the daemon's `wake` event → the \"wake\" cue's first samples start to "
                     "sound (the Player's write, or later when the device still held audio)",
                     _ms(s) + f"; to the write: median {w['wake_to_cue_write_ms']['median']} ms"
                     + (f"; {w['misses']} of {w['wakes']} wakes missed" if w["misses"] else ""),
                     f"≤ {w['goal_ms']} ms", _verdict(s["p95"], w["goal_ms"])))
    g, r = p.get("google"), p.get("realtime")
    if g:
        rows.append(("10b", "First reply chunk → first ALSA write, Google-like pacing (1 s bursts, 3x real time; "
                     f"adaptive jitter buffer, hold {g['jitter']['hold_ms']} ms after the run)",
                     _ms(g["reply_to_write_ms"]) + (f"; real-time pacing: median {r['reply_to_write_ms']['median']} ms,"
                                                    f" p95 {r['reply_to_write_ms']['p95']} ms" if r else ""),
                     "p95 ≤ 20 ms", _verdict(g["reply_to_write_ms"]["p95"], 20)))
        rows.append(("10c", "Underruns per reply (the speaker ran dry mid-reply), Google-like pacing",
                     f"**{g['underruns_per_reply']}** ({g['underruns']} in {g['replies']} replies of 2.5 s)"
                     + (f"; real-time pacing: {r['underruns_per_reply']} per reply, hold {r['jitter']['hold_ms']} ms"
                        if r else ""), "0", _verdict(g["underruns_per_reply"], 0)))
    return rows


def run_asynctools(models: Path, runs: int) -> dict[str, Any]:
    return _child("bench_asynctools.py", 1800, "--runs", str(runs), "--models", str(models))


def asynctools_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    c, p, n = r["silence_added_ms"]["call"], r["silence_added_ms"]["plain"], r["no_answer_idle_ms"]
    worst = r["max_silence_added_ms_call"]
    return [
        ("9a", f"Silence a NON_BLOCKING tool call adds to the reply it lands in ({r['model']}, emulator pacing "
         f"\"{r['pacing']}\"; longest zero run in the played reply minus in the sent reply; {c['n']} replies with "
         "a call, the same replies without one as control)",
         f"call: **max {worst} ms** (median {c['median']}); control: max {p['max']} ms; replies complete and in "
         f"order: {r['replies_complete']}; flushes {r['flushes']}; underruns {r['underruns']['call']} vs "
         f"{r['underruns']['plain']}; state stayed speaking: {r['call_turns_stayed_speaking']}", "0 ms",
         "met" if worst == 0 and r["replies_complete"] else "**missed**"),
        ("9b", "A non-answer (turnComplete without audio): the emulator's turnComplete sent → the daemon's "
         "`state: idle` event", _ms(n), f"≤ {r['goal_idle_ms']:.0f} ms", _verdict(n["p95"], r["goal_idle_ms"])),
    ]


def run_endpoint(models: Path, quick: bool) -> dict[str, Any]:
    p = _sub([str(BENCH / "bench_endpoint.py"), "--models", str(models), "--json", *(["--quick"] if quick else [])],
             3600)
    if p.returncode != 0:
        raise RuntimeError(f"bench_endpoint.py exited {p.returncode}: {p.stderr.strip()[-500:]}")
    return json.loads(p.stdout)


SMART = "smart_turn 200 ms, cap 1200 (webrtc)"
SILENCE = "silence 700 ms (webrtc)"
REASK = "smart_turn 200 ms, re-asked every 300 ms, cap 1200 (webrtc)"


def endpoint_rows(e: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    c = e["configs"]
    rows = []
    for noise, label, goal in (("none", "digital silence", 300), ("white-50", "white noise at -50 dBFS", 350)):
        sm, si = c[SMART].get(noise), c[SILENCE].get(noise)
        if sm and si:
            rows.append(("7" + ("a" if noise == "none" else "b"),
                         f"End of speech → end of turn, {e['clips']['complete']} complete commands, {label}",
                         f"smart_turn: median **{sm['median_ms']:.0f} ms** (p90 {sm['p90_ms']:.0f}; "
                         f"{sm['ended_by_model']}/{sm['n']} ended by the model); silence 700 ms: median "
                         f"{si['median_ms']:.0f} ms", f"≤ {goal} ms", _verdict(sm["median_ms"], goal)))
    sm, si = c[SMART]["none"], c[SILENCE]["none"]
    tr = e.get("trained")
    if tr:  # the whole corpus: the espeak-ng voices and the festival voice with trained prosody
        ts, tsi, tre = tr["configs"][SMART]["none"], tr["configs"][SILENCE]["none"], tr["configs"][REASK]["none"]
        n = sm["pause_clips"] + ts["pause_clips"]
        rate = (sm["cut_offs"] + ts["cut_offs"]) / n
        rows.append(("7c", f"Commands with a 400-900 ms mid-sentence pause cut off ({n} clips, digital silence)",
                     f"smart_turn: **{100 * rate:.0f} %** (espeak-ng {100 * sm['cut_off_rate']:.0f} %, festival HTS "
                     f"{100 * ts['cut_off_rate']:.0f} %, or {100 * tre['cut_off_rate']:.0f} % if re-asked every 300 ms); "
                     f"silence 700 ms: {100 * (si['cut_offs'] + tsi['cut_offs']) / n:.0f} %", "≤ 5 %",
                     _verdict(rate, 0.05)))
    else:
        rows.append(("7c", f"Commands with a 400-900 ms mid-sentence pause cut off ({sm['pause_clips']} clips, "
                     "digital silence)", f"smart_turn: **{100 * sm['cut_off_rate']:.0f} %**; silence 700 ms: "
                     f"{100 * si['cut_off_rate']:.0f} %", "≤ 5 %", _verdict(sm["cut_off_rate"], 0.05)))
    i = e["inference"].get(SMART)
    if i:
        th = "; ".join(f"{t} thread{'s' if t != '1' else ''}, interleaved: p50 {v['wall_p50_ms']:.1f}, p95 "
                       f"{v['wall_p95_ms']:.1f} ms" for t, v in e.get("threads", {}).items())
        bl = e.get("blas", {})
        if bl:  # process CPU per decision, OpenBLAS left to itself vs edged's one thread (fresh processes)
            th += ("; " if th else "") + "process CPU p50, numpy's OpenBLAS left to itself vs one thread (edged): " + ", ".join(
                f"{t} thread{'s' if t != '1' else ''} {bl['default'][t]['process_cpu_p50_ms']:.0f} vs "
                f"{bl['one'][t]['process_cpu_p50_ms']:.0f} ms (wall p50 {bl['default'][t]['wall_p50_ms']:.0f} vs "
                f"{bl['one'][t]['wall_p50_ms']:.0f} ms)" for t in bl["one"])
        rows.append(("7d", "Smart Turn inference per decision (features + model, one thread)",
                     f"wall p50 {i['wall_p50_ms']:.1f} ms, **p95 {i['wall_p95_ms']:.1f} ms**; thread CPU p50 "
                     f"{i['cpu_p50_ms']:.1f} ms, p95 {i['cpu_p95_ms']:.1f} ms (n={i['n']})" + (f"; {th}" if th else ""),
                     "p95 ≤ 30 ms", _verdict(i["wall_p95_ms"], 30)))
    sep = e.get("separation")
    if sep:
        held = "; ".join(f"tuned on {'/'.join(h['tuned_on'])}: threshold {h['threshold']:.3f}, on "
                         f"{'/'.join(h['tested_on'])} {100 * h['complete_ended_at_200ms']:.0f} % of complete commands "
                         f"ended at 200 ms, {100 * h['paused_cut_off']:.0f} % of paused ones cut off" for h in sep["held_out"])
        rows.append(("7e", "Smart Turn on the espeak corpus: complete vs paused told apart (AUC, 0.5 = chance), and "
                     "a threshold held out by voice (cut-offs <= 5 % on two voices, applied to the other two)",
                     "AUC " + ", ".join(f"{v['auc']:.2f} at {ms} ms" for ms, v in sep["auc"].items()) + "; " + held,
                     "—", "reported"))
    return rows


DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def cold_page_cache(drop: Path = DROP_CACHES) -> str:
    """Empty the page cache before the memory steps, and say whether it was done.

    VmRSS counts a shared library's file pages the process has mapped, and the kernel maps the pages
    around each fault that are already in the page cache (fault-around).  So the same daemon measured
    4.6-5.8 MB more in a venv made minutes before (its files all cached) than in an older one
    (109.7 vs 114.3 MB at a07de4c, anonymous memory 66 MB in both); after emptying the cache the new
    venv measured 109.5 MB.  Emptying it first makes runs comparable (root only)."""
    try:
        os.sync()
        drop.write_text("1\n")
        return "emptied before the memory steps"
    except OSError as exc:
        return f"warm (could not empty it: {exc.strerror or exc})"


def commit() -> str:
    """The commit measured (with "+dirty" if the work tree had changes), so the figures can be traced."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT, timeout=10,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=ROOT, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _step(name: str, fn: Any, results: dict[str, Any], errors: dict[str, str]) -> None:
    t0 = time.monotonic()
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    try:
        results[name] = fn()
    except Exception as exc:
        errors[name] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    print(f"[bench] {name} done in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)


# ---- the table -----------------------------------------------------------------------------------------
def _ms(s: dict[str, Any] | None) -> str:
    if not s or not s.get("n"):
        return "no samples"
    return f"median {s['median']:.1f} ms, p95 {s['p95']:.1f} ms (n={s['n']}; min {s['min']:.1f}, max {s['max']:.1f})"


def _verdict(value: float | None, goal: float, le: bool = True) -> str:
    if value is None:
        return "?"
    return "met" if (value <= goal if le else value >= goal) else "**missed**"


def table(r: dict[str, Any], errors: dict[str, str], mode: str, elapsed: float) -> str:
    m = r.get("machine") or bench_daemon.machine()
    rows: list[tuple[str, str, str, str, str]] = []
    a = (r.get("audio") or {}).get("summary")
    if a:
        rows.append(("1a", "Idle RSS, listening path in its own process (capture + Ear, lean wake engine) / a bare "
                     "openWakeWord process over the same models and audio",
                     f"**{a['rss_ratio_listen_lean_vs_bare_oww']:.3f}** ({a['rss_listen_lean_mb']} vs "
                     f"{a['rss_bare_openwakeword_mb']} MB; anonymous {a['anon_listen_lean_mb']} vs "
                     f"{a['anon_bare_openwakeword_mb']} MB; the openwakeword engine in the same path "
                     f"{a['rss_listen_openwakeword_mb']} MB)", f"≤ {a['goals']['rss_ratio']}",
                     _verdict(a["rss_ratio_listen_lean_vs_bare_oww"], a["goals"]["rss_ratio"])))
        rows.append(("1b", "Idle RSS estimate of the daemon: the listening path plus the modules `edged run` imports "
                     "at start", f"**{a['rss_daemon_estimate_mb']} MB** (the imports add {a['rss_daemon_imports_add_mb']} MB)",
                     f"≤ {a['goals']['daemon_mb']:.0f} MB", _verdict(a["rss_daemon_estimate_mb"], a["goals"]["daemon_mb"])))
        rows.append(("1c", "Idle CPU, listening path (process CPU, lean) / bare openWakeWord paced to real time, same audio",
                     f"**{a['cpu_ratio_listen_lean_vs_bare_oww_paced']:.3f}** ({a['cpu_listen_lean_s_per_audio_s']:.4f} vs "
                     f"{a['cpu_bare_openwakeword_paced_s_per_audio_s']:.4f} CPU s per audio s, {a['audio_s']} s of audio; "
                     f"bare lean engine {a['cpu_bare_lean_paced_s_per_audio_s']:.4f})", f"≤ {a['goals']['cpu_ratio']}",
                     _verdict(a["cpu_ratio_listen_lean_vs_bare_oww_paced"], a["goals"]["cpu_ratio"])))
    o = r.get("ort")
    if o:
        base, lean = o["rows"][0], o["rows"][-1]
        best = min(o["rows"], key=lambda x: x["rss_mb"])
        rows.append(("1d", "onnxruntime session options (bench_ort.py; lean engine alone, fresh process each, "
                     f"{o['frames']} frames, median of {o['runs']})",
                     f"lean default {lean['rss_mb']:.1f} MB, {lean['cpu_ms_per_frame']:.2f} ms/frame vs openWakeWord's "
                     f"options {base['rss_mb']:.1f} MB, {base['cpu_ms_per_frame']:.2f} ms/frame; smallest: "
                     f"{best['config']} {best['rss_mb']:.1f} MB", "—", "reported"))
    wq = r.get("quiet")
    if wq:
        rooms = wq["rooms"]
        quiet = [k for k in rooms if not k.startswith("talk")]
        rows.append(("1g", "The wake word's quiet skip (wake.quiet_margin_db): lean engine CPU per minute of a room "
                     "with two phrases spoken, with / without it (bench_wake_quiet.py, median of "
                     f"{wq['runs']} interleaved runs)",
                     "; ".join(f"{k}: **{rooms[k]['ratio']:.2f}** ({rooms[k]['cpu_s_per_min_quiet']:.2f} vs "
                               f"{rooms[k]['cpu_s_per_min_plain']:.2f} s, {100 * rooms[k]['skipped_share']:.0f} % "
                               "skipped)" for k in quiet + [k for k in rooms if k not in quiet])
                     + f"; same wake words in every room: {all(v['same_wakes'] for v in rooms.values())}",
                     "—", "reported"))
    d = r.get("daemon") or {}
    i = d.get("idle")
    if i:
        rows.append(("1e", "Idle CPU, whole `edged run` process (utime+stime, all threads) / bare openWakeWord "
                     "(process CPU, fresh process), same audio (speech without the wake word)",
                     f"**{i['ratio']:.3f}** ({i['daemon_cpu_s_per_audio_s']:.4f} vs "
                     f"{i['bare_oww_cpu_s_per_audio_s']:.4f} CPU s per audio s; median of {i['windows']} windows of "
                     f"{i['window_s']:.0f} s, over all {i['audio_s']} s of audio "
                     f"{i['daemon_overall_cpu_s_per_audio_s']:.4f}; "
                     f"main (asyncio) thread {i['main_thread_cpu_s_per_audio_s']:.4f}; false wakes {i['false_wakes']}, "
                     f"ring drops {i['ring_drops']})",
                     f"≤ {IDLE_GOAL}", _verdict(i["ratio"], IDLE_GOAL)))
        rows.append(("1f", "Idle CPU, whole `edged run` process / bare openWakeWord paced to real time "
                     "(one 80 ms frame every 80 ms, like the microphone), same audio",
                     f"**{i['ratio_vs_paced']:.3f}** ({i['daemon_cpu_s_per_audio_s']:.4f} vs "
                     f"{i['bare_oww_paced_cpu_s_per_audio_s']:.4f} CPU s per audio s)",
                     f"≤ {IDLE_GOAL}", _verdict(i["ratio_vs_paced"], IDLE_GOAL)))
    t = d.get("turns")
    if t:
        rows.append(("2", "Wake → activityStart: the daemon's `wake` event → the emulator's activityStart frame",
                     _ms(t["wake_to_activity_start_ms"]) + (f"; {t['misses']} of {t['turns']} turns missed"
                                                             if t["misses"] else ""), "—", "reported"))
        rows.append(("2b", "Detection delay: end of the wake word in the fed audio (nominal real time) → `wake` "
                     "event", _ms(t["detection_delay_ms"]), "—", "reported"))
        rows.append(("3", "Reply → speaker: the emulator's first reply chunk sent → the Player's first ALSA write "
                     f"of that reply (jitter buffer {t['jitter_ms']} ms, 40 ms chunks in real time)",
                     _ms(t["reply_to_speaker_ms"]), "—", "reported"))
    lv = r.get("live")
    if lv:
        rows.append(("4a", "Live session set-up (LiveSession.run → connected), fresh",
                     f"median {lv['fresh_median_ms']:.1f} ms, p95 {lv['fresh_p95_ms']:.1f} ms (n={lv['samples']})",
                     "—", "reported"))
        rows.append(("4b", "Live session set-up, resumed with the persisted handle; ratio resumed / fresh",
                     f"median {lv['resumed_median_ms']:.1f} ms, p95 {lv['resumed_p95_ms']:.1f} ms; "
                     f"ratio **{lv['resumed_over_fresh']:.2f}**", "—", "reported"))
        rows.append(("4c", f"Turns lost over {lv['turns_sent']} scripted GoAways",
                     f"**{lv['turns_lost']}** ({lv['goaways']} GoAways, {lv['turns_completed']}/{lv['turns_sent']} "
                     f"turns completed, {lv['replays']} replays, {lv['rejected_resumes']} rejected resumes, "
                     f"all reply audio delivered: {lv['reply_audio_ok']})", "0",
                     _verdict(lv["turns_lost"], 0)))
    mq = r.get("mqtt")
    if mq:
        pin, back = mq["command_to_pin_ms"], mq["command_to_state_ms"]
        rows.append(("8", "Home Assistant command → GPIO pin change through mosquitto (an aiomqtt client publishes "
                     "to a light's command topic, QoS 1 → the mock pin changes); and → the new state back at "
                     "the client (includes the broker's Nagle delay: mosquitto set_tcp_nodelay is off by default)",
                     f"{_ms(pin)}; state back median {back['median']:.1f} ms, p95 {back['p95']:.1f} ms",
                     f"p95 ≤ {mq['goal_p95_ms']:g} ms", _verdict(pin["p95"], mq["goal_p95_ms"])))
    if i:
        extra = f"; listening path alone: {a['rss_listen_lean_mb']} MB" if a else ""
        bare = f"; / the bare openWakeWord process of 1a: {i['vmrss_mb'] / a['rss_bare_openwakeword_mb']:.3f}" if a else ""
        rows.append(("5", "Resident memory of the idle daemon, models loaded (VmRSS / peak VmHWM)",
                     f"**{i['vmrss_mb']:.1f} MB** / {i['vmhwm_mb']:.1f} MB (anonymous {i.get('rssanon_mb')} MB{bare}; "
                     f"native packages mapped: {', '.join(i.get('packages_mapped') or [])}){extra}", "≤ 110 MB",
                     _verdict(i["vmrss_mb"], 110.0)))
    s = d.get("startup")
    if s:
        rows.append(("6", "Start-up: spawn of `edged run` → READY=1 on the notify socket",
                     f"median {s['median_ms']:.0f} ms, p95 {s['p95_ms']:.0f} ms (n={s['starts']}; first "
                     f"{s['first_ms']:.0f} ms, min {s['min_ms']:.0f}, max {s['max_ms']:.0f})", "—", "reported"))
    if r.get("endpoint"):
        rows += endpoint_rows(r["endpoint"])
    if r.get("asynctools"):
        rows += asynctools_rows(r["asynctools"])
    if r.get("player"):
        rows += player_rows(r["player"])
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    out = [f"# edged benchmarks ({mode})", "",
           f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, Linux {m['kernel']}; {now}; "
           f"commit {str(r.get('commit', '?'))[:12]}; {elapsed:.0f} s in all; load average {m['loadavg']} at the start, {bench_daemon.loadavg()} at the end.  Absolute times are from this machine; ratios are measured in this run."
           + (f"  Page cache: {r['page_cache']}." if r.get("page_cache") else ""), "",
           "| # | figure | measured | goal | |", "|---|---|---|---|---|"]
    out += [f"| {n} | {f} | {v} | {g} | {ok} |" for n, f, v, g, ok in rows]
    if errors:
        out += ["", "Not measured in this run:", ""]
        out += [f"- {k}: {v}" for k, v in errors.items()]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer samples (about 2 minutes)")
    ap.add_argument("--models", default=os.environ.get("EDGED_TEST_MODELS") or str(ROOT / ".cache/models"))
    ap.add_argument("--json", metavar="FILE", help="every figure as JSON (default bench/results/latest.json, "
                    "or only-STEPS.json with --only)")
    ap.add_argument("--out", metavar="FILE", help="the table (default bench/results/latest.md, or only-STEPS.md)")
    ap.add_argument("--only", help="comma-separated steps (audio, ort, quiet, idle, turns, startup, live, mqtt, "
                    "endpoint, asynctools, player); default all")
    a = ap.parse_args(argv)
    stem = "only-" + "-".join(sorted(a.only.split(","))) if a.only else "latest"
    a.json = a.json or str(BENCH / "results" / f"{stem}.json")
    a.out = a.out or str(BENCH / "results" / f"{stem}.md")
    q = a.quick
    models = Path(a.models)
    n = {"audio_s": 8 if q else 30, "idle_s": 10 if q else 40, "window_s": 5.0 if q else 10.0, "turns": 6 if q else 30, "starts": 3 if q else 7,
         "live_samples": 5 if q else 30, "goaways": 20 if q else 100, "mqtt_samples": 50 if q else 200,
         "ort_frames": 200 if q else 600, "ort_runs": 1 if q else 3, "quiet_runs": 1 if q else 5, "async_runs": 4 if q else 12,
         "player_wakes": 5 if q else 20, "player_replies": 5 if q else 20}
    t0 = time.monotonic()
    results: dict[str, Any] = {"machine": bench_daemon.machine(), "mode": "quick" if q else "full", "params": n,
                               "commit": commit()}
    errors: dict[str, str] = {}
    daemon: dict[str, Any] = {}
    results["daemon"] = daemon

    steps = set(a.only.split(",")) if a.only else {"audio", "ort", "quiet", "idle", "turns", "startup", "live", "mqtt",
                                                        "endpoint", "asynctools", "player"}

    def part(name: str, **kw: Any) -> Any:
        async def go() -> Any:
            with tempfile.TemporaryDirectory(prefix="edged-bench-") as d:
                fn = getattr(bench_daemon, f"bench_{name}")
                return await fn(models, Path(d), **kw)
        return lambda: asyncio.run(go())

    if steps & {"audio", "ort", "idle"}:  # the steps that measure memory
        results["page_cache"] = cold_page_cache()
    if "audio" in steps:
        _step("audio", lambda: run_audio(models, n["audio_s"]), results, errors)
    if "ort" in steps:
        _step("ort", lambda: run_ort(models, n["ort_frames"], n["ort_runs"]), results, errors)
    if "quiet" in steps:
        _step("quiet", lambda: run_quiet(models, n["quiet_runs"]), results, errors)
    if "idle" in steps:
        _step("idle", part("idle", seconds=n["idle_s"], window_s=n["window_s"]), daemon, errors)
    if "turns" in steps:
        _step("turns", part("turns", n=n["turns"]), daemon, errors)
    if "startup" in steps:
        _step("startup", part("startup", n=n["starts"]), daemon, errors)
    if "live" in steps:
        _step("live", lambda: run_live(n["live_samples"], n["goaways"]), results, errors)
    if "mqtt" in steps:
        _step("mqtt", lambda: run_mqtt(n["mqtt_samples"]), results, errors)
    if "endpoint" in steps:
        _step("endpoint", lambda: run_endpoint(models, q), results, errors)
    if "asynctools" in steps:
        _step("asynctools", lambda: run_asynctools(models, n["async_runs"]), results, errors)
    if "player" in steps:
        _step("player", lambda: run_player(models, n["player_wakes"], n["player_replies"]), results, errors)
    elapsed = time.monotonic() - t0
    results["errors"] = errors
    results["elapsed_s"] = round(elapsed, 1)
    md = table(results, errors, results["mode"], elapsed)
    print(md)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    print(f"written to {out}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"JSON written to {a.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
