"""Live session benchmark against the local emulator (a script, not a test).

    python bench/bench_live.py [--samples N] [--goaways N] [--json FILE]

Measures, in the same run: the time from LiveSession.run() to a connected session when resuming
with a persisted handle vs starting fresh (median, p95, ratio), and the turns lost over N scripted
GoAways (each reply carries a GoAway; goal: 0 lost).  Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edged.config import LiveConfig  # noqa: E402
from edged.live.resumption import HandleStore  # noqa: E402
from edged.live.session import LiveSession  # noqa: E402
from edged.sim import LiveEmulator, Scenario  # noqa: E402


class Handler:
    def __init__(self) -> None:
        self.turns = 0
        self.audio = 0
        self.interrupted = 0
        self.turn_done = asyncio.Event()

    def on_audio(self, pcm: bytes) -> None:
        self.audio += len(pcm)

    def on_turn_complete(self) -> None:
        self.turns += 1
        self.turn_done.set()

    def on_interrupted(self) -> None:
        self.interrupted += 1

    def __getattr__(self, name: str):
        return lambda *a: None


def _cfg(emu: LiveEmulator) -> LiveConfig:
    return LiveConfig(base_url=emu.base_url, ca_file=str(emu.ca_file), backoff_initial_s=0.05,
                      backoff_max_s=0.2, ping_interval_s=0)


async def _time_to_connected(emu: LiveEmulator, state: Path) -> float:
    s = LiveSession(_cfg(emu), None, state, Handler(), lambda: [])
    t0 = time.perf_counter()
    task = asyncio.create_task(s.run())
    ok = await s.wait_connected(30)
    dt = time.perf_counter() - t0
    store = HandleStore(state / "live_handle.json", 7200)
    for _ in range(3000):  # the handle sent after setupComplete gets persisted
        if await asyncio.to_thread(store.load) is not None:
            break
        await asyncio.sleep(0.01)
    await s.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if not ok:
        raise RuntimeError("no connection within 30 s")
    return dt


def _p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]


async def bench_connect(emu: LiveEmulator, tmp: Path, samples: int) -> dict[str, float]:
    fresh: list[float] = []
    resumed: list[float] = []
    for i in range(samples + 2):  # 2 warm-up rounds
        d = tmp / f"s{i}"
        f = await _time_to_connected(emu, d)  # fresh: no handle yet
        handle = HandleStore(d / "live_handle.json", 7200).load()
        assert handle is not None
        await emu.wait_for(lambda: all(c.closed for c in emu.connections), 10)
        r = await _time_to_connected(emu, d)  # resumes with the persisted handle
        if i >= 2:
            fresh.append(f)
            resumed.append(r)
    assert emu.connections[-1].resumed
    return {"fresh_median_ms": statistics.median(fresh) * 1000, "fresh_p95_ms": _p95(fresh) * 1000,
            "resumed_median_ms": statistics.median(resumed) * 1000, "resumed_p95_ms": _p95(resumed) * 1000,
            "resumed_over_fresh": statistics.median(resumed) / statistics.median(fresh)}


async def bench_goaways(emu: LiveEmulator, tmp: Path, n: int) -> dict[str, float]:
    emu.scenario = Scenario([[{"goaway": {"time_left": 10}}, {"tone": {"ms": 200}}]])
    h = Handler()
    s = LiveSession(_cfg(emu), None, tmp / "goaway", h, lambda: [])
    task = asyncio.create_task(s.run())
    conns_before = len(emu.connections)
    t0 = time.perf_counter()
    for i in range(n):
        await s.wait_connected(30)
        await s.activity_start()
        await s.send_audio(b"\x01\x00" * 3200)
        await s.activity_end()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                while h.turns <= i:
                    h.turn_done.clear()
                    await h.turn_done.wait()
    elapsed = time.perf_counter() - t0
    await emu.wait_for(lambda: len(emu.connections) - conns_before >= n + 1, 30)
    st = s.status()
    await s.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    conns = emu.connections[conns_before:]
    return {"goaways": st["goaways"], "turns_sent": n, "turns_completed": h.turns, "turns_lost": n - h.turns,
            "emulator_turns": sum(c.turns for c in conns), "replays": st["turns_replayed"],
            "rejected_resumes": sum(c.resume_rejected for c in conns), "interrupted": h.interrupted,
            "reply_audio_ok": h.audio == n * 9600, "seconds": elapsed}


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--goaways", type=int, default=100)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        async with LiveEmulator(cert_dir=tmp / "certs", speed=0) as emu:
            conn = await bench_connect(emu, tmp, args.samples)
            ga = await bench_goaways(emu, tmp, args.goaways)
    print("| metric | value |\n|---|---|")
    print(f"| fresh session: median / p95 | {conn['fresh_median_ms']:.1f} ms / {conn['fresh_p95_ms']:.1f} ms |")
    print(f"| resumed session: median / p95 | {conn['resumed_median_ms']:.1f} ms / {conn['resumed_p95_ms']:.1f} ms |")
    print(f"| resumed / fresh (medians) | {conn['resumed_over_fresh']:.2f} |")
    print(f"| GoAways / turns sent / completed | {ga['goaways']} / {ga['turns_sent']} / {ga['turns_completed']} |")
    print(f"| turns lost (goal 0) | {ga['turns_lost']} |")
    print(f"| replays, rejected resumes, interruptions | {ga['replays']}, {ga['rejected_resumes']}, "
          f"{ga['interrupted']} |")
    print(f"| all reply audio delivered | {ga['reply_audio_ok']} |")
    if args.json:
        text = json.dumps({"samples": args.samples, **conn, **ga}, indent=2) + "\n"
        await asyncio.to_thread(Path(args.json).write_text, text)
    return 0 if ga["turns_lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
