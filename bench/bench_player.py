#!/usr/bin/env python3
"""Player figures on the real ``edged run`` process against the Live emulator (edged.dev.rig).

    .venv/bin/python bench/bench_player.py [--quick] [--wakes N] [--replies N] [--json FILE]

- wake -> cue: the daemon's ``wake`` event (the Ear's detection, on the loop) -> the Player's ALSA
  write holding the first samples of the "wake" cue, and -> the time those samples start to sound
  (later than the write when the device still held audio); over ``wakes`` spoken wake-word turns.
- reply -> speaker under Google-like pacing (bursts of 1 s of audio, 3x real time on average): the
  emulator's first reply chunk sent -> the Player's first ALSA write of that reply; underruns per
  reply; the jitter buffer's hold after the run.  The same under real-time pacing, for comparison.

All times are CLOCK_MONOTONIC, one clock for the machine (the daemon's event ``mono``, its player
stats and the emulator's send times in this process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_daemon import BenchRig, TimedEmulator, poll, speech, summary  # noqa: E402

from edged.audio import models as M  # noqa: E402
from edged.sim.scenario import Scenario  # noqa: E402


async def _follow(rig: Any, sink: list[dict[str, Any]]) -> None:
    with contextlib.suppress(Exception):
        async for ev in rig.events():
            sink.append(ev)


async def bench_wake_cue(models_dir: Path, tmp: Path, n: int) -> dict[str, Any]:
    rig = BenchRig(tmp / "cue", models_dir, cues=True, scenario=Scenario([[{"tone": {"hz": 440, "ms": 300}}]]))
    await rig.start()
    events: list[dict[str, Any]] = []
    follower = asyncio.create_task(_follow(rig, events))
    to_write: list[float] = []
    to_sound: list[float] = []
    misses = 0
    try:
        assert rig.emu is not None
        await rig.emu.wait_connections(1, timeout=30)
        utterance = speech("hey jarvis") + speech("what time is it")
        for _ in range(n):
            await rig.wait_state("idle", timeout=60)
            await poll(rig.mic_idle, 0.05)
            n_wake = len([e for e in events if e.get("event") == "wake" and e.get("source") == "wake_word"])
            rig.speak(utterance, pad_s=1.5)
            try:
                await poll(lambda k=n_wake: len([e for e in events if e.get("event") == "wake"
                                                 and e.get("source") == "wake_word"]) > k, 0.02, timeout=20)
                await rig.wait_state("idle", timeout=60)
            except Exception as exc:
                misses += 1
                print(f"bench_player: a turn without a wake ({exc!r})", file=sys.stderr)
                continue
            wake = [e for e in events if e.get("event") == "wake" and e.get("source") == "wake_word"][n_wake]
            st = await rig.status()
            cues = [c for c in st["audio"]["playback"]["cue_writes"] if c[0] == "wake" and c[1] >= wake["mono"]]
            if cues:
                to_write.append(cues[0][1] - wake["mono"])
                to_sound.append(cues[0][2] - wake["mono"])
    finally:
        follower.cancel()
        await rig.close()
    return {"wakes": n, "misses": misses, "wake_to_cue_write_ms": summary(to_write),
            "wake_to_cue_sound_ms": summary(to_sound), "goal_ms": 150}


async def bench_replies(models_dir: Path, tmp: Path, n: int, pacing: str) -> dict[str, Any]:
    scenario = Scenario([[{"tone": {"hz": 440, "ms": 2500}}]], pacing=pacing)
    rig = BenchRig(tmp / f"replies-{pacing}", models_dir, scenario=scenario)
    await rig.start()
    lat: list[float] = []
    try:
        emu = rig.emu
        assert isinstance(emu, TimedEmulator)
        await emu.wait_connections(1, timeout=30)
        await rig.wait_state("idle", timeout=30)
        st0 = (await rig.status())["audio"]["playback"]
        for k in range(n):
            n_send = len(emu.reply_sends)
            await rig.request("say", text="a tone please")
            await emu.wait_for(lambda s=n_send: len(emu.reply_sends) > s, timeout=30)
            st: dict[str, Any] = {}

            async def played(k: int = k) -> bool:
                nonlocal st
                st = await rig.status()
                return st["audio"]["playback"]["replies"] - st0["replies"] == k + 1 and st["state"] == "idle"

            deadline = asyncio.get_running_loop().time() + 60
            while not await played():
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError("reply not played within 60 s")
                await asyncio.sleep(0.05)
            t_send = emu.reply_sends[n_send]
            writes = [t for _, t in st["audio"]["playback"]["first_writes"] if t >= t_send]
            if writes:
                lat.append(min(writes) - t_send)
        pb = st["audio"]["playback"]
    finally:
        await rig.close()
    replies = pb["replies"] - st0["replies"]
    return {"pacing": pacing, "replies": replies, "reply_to_write_ms": summary(lat),
            "underruns": pb["underruns"] - st0["underruns"],
            "underruns_per_reply": round((pb["underruns"] - st0["underruns"]) / max(1, replies), 3),
            "jitter": pb["jitter"]}


async def run(models_dir: Path, wakes: int, replies: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edged-bench-player-") as d:
        tmp = Path(d)
        out["wake_cue"] = await bench_wake_cue(models_dir, tmp, wakes)
        out["google"] = await bench_replies(models_dir, tmp, replies, "google")
        out["realtime"] = await bench_replies(models_dir, tmp, replies, "realtime")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=os.environ.get("EDGED_TEST_MODELS") or str(ROOT / ".cache/models"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--wakes", type=int)
    ap.add_argument("--replies", type=int)
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    models_dir = Path(a.models)
    M.fetch(models_dir)
    res = asyncio.run(run(models_dir, a.wakes or (5 if a.quick else 20), a.replies or (5 if a.quick else 20)))
    text = json.dumps(res, indent=2)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
