#!/usr/bin/env python3
"""gemini-3.8-live's asynchronous function calls and non-answers through the real daemon (a script).

    .venv/bin/python bench/bench_asynctools.py [--runs N] [--models DIR] [--json FILE]

The real ``edged run`` (edged.dev.rig) on the default profile (gemini-3.8-live: declarations
NON_BLOCKING) against the emulator in Google-like pacing (bursts faster than real time).  Text turns
(``edgectl say``), alternating, N of each:

- "call": a 2.4 s reply (two tones) with a NON_BLOCKING ``set_device`` call between its halves,
  whose WHEN_IDLE response brings a 0.4 s follow-up;
- "plain": the same 2.4 s reply without the call (the control);
- "silent": the model chooses not to answer (turnComplete, no audio).

Figures:
- silence a call adds to its reply: the longest run of zero samples inside the played reply minus the
  same in the audio the emulator sent (the played WAV is compared against the emulator's record of what
  it sent, reply by reply), for "call" vs "plain"; whether every reply played complete and in order;
  the player's underruns during each reply (a gap in real time); the playback flushes.
- non-answer -> idle: the emulator's turnComplete (its send time) -> the daemon's ``state: idle``
  event (``mono``; CLOCK_MONOTONIC is one clock for the machine).  Goal: within 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edged.dev.rig import Rig  # noqa: E402
from edged.sim.scenario import Scenario  # noqa: E402

GOAL_IDLE_MS = 300.0
CALL = [
    {"tone": {"hz": 440, "ms": 1200}},
    {"tool_call": {"name": "set_device", "args": {"device": "kitchen_light", "state": "toggle"},
                   "then": [{"tone": {"hz": 660, "ms": 400}}]}},
    {"tone": {"hz": 550, "ms": 1200}},
]
PLAIN = [{"tone": {"hz": 440, "ms": 1200}}, {"tone": {"hz": 550, "ms": 1200}}]
SILENT = [{"no_answer": True}]


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]


def summary(xs: list[float]) -> dict[str, Any]:
    if not xs:
        return {"n": 0, "median": None, "p95": None, "min": None, "max": None}
    return {"n": len(xs), "median": round(statistics.median(xs), 1), "p95": round(p95(xs), 1),
            "min": round(min(xs), 1), "max": round(max(xs), 1)}


def zero_run_ms(pcm: bytes) -> float:
    """The longest run of zero samples (24 kHz S16), in ms."""
    x = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], "<i2")
    if not len(x):
        return 0.0
    z = np.concatenate(([0], (x == 0).astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(z))
    runs = edges[1::2] - edges[::2]
    return float(runs.max() if len(runs) else 0) * 1000 / 24000


def wav_pcm(path: Path) -> bytes:
    data = path.read_bytes()
    at = data.find(b"data")
    return data[at + 8:] if at != -1 else b""


async def _follow(rig: Rig, sink: list[dict[str, Any]]) -> None:
    with contextlib.suppress(Exception):
        async for ev in rig.events():
            sink.append(ev)


async def _until(pred: Any, timeout: float, what: str) -> Any:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.01)
    return value


async def bench(models_dir: Path, tmp: Path, runs: int) -> dict[str, Any]:
    kinds = ["call", "plain", "silent"] * runs
    turns = {"call": CALL, "plain": PLAIN, "silent": SILENT}
    scenario = Scenario([turns[k] for k in kinds], repeat_last=False, pacing="google")
    rig = Rig(tmp / "rig", models_dir, scenario=scenario, overrides={"turn": {"reply_timeout_s": 30.0}})
    await rig.start()
    events: list[dict[str, Any]] = []
    follower = asyncio.create_task(_follow(rig, events))
    emu = rig.emu
    assert emu is not None
    per: list[dict[str, Any]] = []
    try:
        await emu.wait_connections(1, timeout=30)
        await rig.wait_state("idle", timeout=30)
        await _until(lambda: events, 10, "the events subscription")  # a first event (state/connection)
        model = (await rig.status())["live"]["model"]
        for i, kind in enumerate(kinds):
            tc_before = len(emu.sent_of("turn_complete"))
            audio_before = len(emu.sent_of("audio"))
            ev_before = len(events)
            st0 = await rig.status()
            await rig.request("say", text=f"turn {i}")
            want_tc = tc_before + (2 if kind == "call" else 1)
            await _until(lambda n=want_tc: len(emu.sent_of("turn_complete")) >= n, 30, f"run {i}: turnComplete")
            last_tc = emu.sent_of("turn_complete")[-1]
            idle = await _until(lambda t=last_tc.t, b=ev_before: next(
                (e for e in events[b:] if e.get("event") == "state" and e["state"] == "idle" and e["mono"] >= t),
                None), 30, f"run {i}: idle")
            st1 = await rig.status()
            row: dict[str, Any] = {"kind": kind, "audio_chunks": (audio_before, len(emu.sent_of("audio"))),
                                   "underruns": st1["audio"]["playback"]["underruns"]
                                   - st0["audio"]["playback"]["underruns"],
                                   "states": [e["state"] for e in events[ev_before:] if e.get("event") == "state"],
                                   "call_states": [e.get("state") for e in events[ev_before:]
                                                   if e.get("event") == "tool_call"]}
            if kind == "silent":
                row["idle_after_turn_complete_ms"] = (idle["mono"] - last_tc.t) * 1000
                row["why"] = idle.get("reason")
            per.append(row)
        status = await rig.status()
        await rig.stop_daemon()  # ALSA's file PCM has written everything once closed
        played = wav_pcm(rig.wavs[-1])
        sent_chunks = emu.sent_of("audio")
    finally:
        follower.cancel()
        await rig.close()

    # the WAV is every played reply back to back; the emulator's record gives each reply's audio
    sent_all = b"".join(f.payload for f in sent_chunks)
    complete = played[: len(sent_all)] == sent_all
    added: dict[str, list[float]] = {"call": [], "plain": []}
    underruns: dict[str, list[int]] = {"call": [], "plain": []}
    off = 0
    for row in per:
        a, b = row.pop("audio_chunks")
        reply = b"".join(f.payload for f in sent_chunks[a:b])
        got = played[off: off + len(reply)]
        off += len(reply)
        if row["kind"] == "silent":
            row["audio_bytes"] = len(reply)
            continue
        row["complete"] = got == reply
        row["silence_added_ms"] = zero_run_ms(got) - zero_run_ms(reply) if len(got) == len(reply) else None
        if row["silence_added_ms"] is not None:
            added[row["kind"]].append(row["silence_added_ms"])
        underruns[row["kind"]].append(row["underruns"])
    idle_ms = [r["idle_after_turn_complete_ms"] for r in per if r["kind"] == "silent"]
    calls_speaking = all(r["states"] == ["thinking", "speaking", "idle"] and r["call_states"] == ["speaking"]
                         for r in per if r["kind"] == "call")
    return {
        "model": model, "pacing": "google", "runs_each": runs,
        "replies_complete": complete and all(r.get("complete", True) for r in per),
        "played_bytes": len(played), "sent_bytes": len(sent_all),
        "silence_added_ms": {k: summary(v) for k, v in added.items()},
        "max_silence_added_ms_call": max(added["call"]) if added["call"] else None,
        "underruns": {k: sum(v) for k, v in underruns.items()},
        "flushes": status["audio"]["playback"]["flushes"],
        "calls_during_speech": status["conversation"].get("tool_calls_during_speech"),
        "call_turns_stayed_speaking": calls_speaking,
        "no_answer_idle_ms": summary(idle_ms),
        "no_answers_counted": status["conversation"].get("no_answers"),
        "silent_why": next((r["why"] for r in per if r["kind"] == "silent"), None),
        "silent_audio_bytes": sum(r.get("audio_bytes", 0) for r in per if r["kind"] == "silent"),
        "goal_idle_ms": GOAL_IDLE_MS,
        "per_run": per,
    }


def table(r: dict[str, Any]) -> str:
    c, p, n = r["silence_added_ms"]["call"], r["silence_added_ms"]["plain"], r["no_answer_idle_ms"]
    return "\n".join([
        f"# asynchronous calls and non-answers ({r['model']}, pacing {r['pacing']}, {r['runs_each']} runs each)", "",
        "| figure | measured |", "|---|---|",
        f"| silence a NON_BLOCKING call adds to its reply (longest zero run played - sent) | call: median "
        f"{c['median']} ms, max {c['max']} ms; plain: median {p['median']} ms, max {p['max']} ms |",
        f"| replies played complete, in order (played WAV vs emulator's sent audio) | {r['replies_complete']} "
        f"({r['played_bytes']} / {r['sent_bytes']} bytes); flushes {r['flushes']}; underruns call {r['underruns']['call']}, "
        f"plain {r['underruns']['plain']}; call turns stayed speaking: {r['call_turns_stayed_speaking']} |",
        f"| non-answer: turnComplete -> idle | median {n['median']} ms, p95 {n['p95']} ms (n={n['n']}, max "
        f"{n['max']}); goal <= {r['goal_idle_ms']:.0f} ms |",
    ]) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10, help="runs of each kind (call, plain, silent)")
    ap.add_argument("--models", default=os.environ.get("EDGED_TEST_MODELS") or str(ROOT / ".cache/models"))
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edged-bench-async-") as d:
        r = asyncio.run(bench(Path(a.models), Path(d), a.runs))
    print(table(r))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
