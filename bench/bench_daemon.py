#!/usr/bin/env python3
"""Daemon-level figures: the real ``edged run`` process against the Live emulator (edged.dev.rig).

    .venv/bin/python bench/bench_daemon.py [--quick] [--idle-s S] [--turns N] [--starts N] [--json FILE]

- idle: CPU seconds (utime+stime of /proc/PID/stat) of the whole idle daemon per second of audio
  fed in real time (negative speech, no wake word), vs a bare openWakeWord loop over the same audio
  in a fresh process (process CPU, all threads; median of 3 back-to-back runs, and one run paced to
  real time like a microphone), and the daemon's VmRSS / VmHWM.
- turns: per wake turn, the daemon's ``wake`` event -> the emulator's activityStart frame; the
  wake word's end in the fed audio (known from the feeder's pacing) -> the ``wake`` event; and the
  emulator's first reply chunk sent -> the Player's first ALSA write of that reply.
- starts: spawn of ``edged run`` -> READY=1 on a notify socket (a receiver in another process).

All times are CLOCK_MONOTONIC (one clock for the machine: the daemon's event ``mono``, the emulator's
Frame.t and this process), except start-up, which uses the notify receiver's kernel receive stamp
(wall clock) against the wall clock at spawn.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edged.audio import models as M  # noqa: E402
from edged.dev.filedev import silence  # noqa: E402
from edged.dev.rig import Rig  # noqa: E402
from edged.dev.tts import render  # noqa: E402
from edged.sim.live_server import LiveEmulator  # noqa: E402
from edged.sim.scenario import Scenario  # noqa: E402

TTS_CACHE = ROOT / ".cache" / "tts"
RATE = 16000
NEGATIVES = ["what a lovely day it is today", "good morning", "play some music please",
             "the weather tomorrow will be sunny", "hello there, how are you", "turn off the radio"]
WAKE_TEXT = "hey jarvis"
COMMAND_TEXT = "hey jarvis, what time is it"


# ---- helpers ---------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") or line.startswith("Model"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(), "loadavg": loadavg()}


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages: other work on a shared machine skews CPU figures."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def proc_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    return proc_cpu_path(Path(f"/proc/{pid}/stat"))


def thread_cpu(pid: int) -> dict[int, float]:
    """utime + stime of each thread of a process, by thread id."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            out[int(task.name)] = proc_cpu_path(task / "stat")
    return out


def proc_cpu_path(path: Path) -> float:
    stat = path.read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_mem(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("VmRSS", "VmHWM", "RssAnon"):
            out[key] = int(line.split()[1]) / 1024
    return out


def mapped_packages(pid: int) -> list[str]:
    """Python packages with a native library mapped into the process (/proc/PID/maps): what it imported."""
    found = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        path = line.split()[-1] if len(line.split()) >= 6 else ""
        if "/site-packages/" in path:
            found.add(path.split("/site-packages/", 1)[1].split("/", 1)[0].split(".", 1)[0])
    return sorted(found)


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]


def summary(xs: list[float], scale: float = 1000.0) -> dict[str, Any]:
    if not xs:
        return {"n": 0, "median": None, "p95": None, "min": None, "max": None}
    return {"n": len(xs), "median": round(statistics.median(xs) * scale, 1), "p95": round(p95(xs) * scale, 1),
            "min": round(min(xs) * scale, 1), "max": round(max(xs) * scale, 1)}


async def poll(predicate: Any, interval: float, timeout: float = 300.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def speech(text: str) -> bytes:
    return render(text, cache_dir=TTS_CACHE).read_bytes()


def voiced_end(pcm: bytes, threshold: int = 300) -> int:
    """Byte offset just past the last sample louder than ``threshold`` (the end of the spoken words)."""
    x = np.abs(np.frombuffer(pcm, "<i2").astype(np.int32))
    loud = np.nonzero(x > threshold)[0]
    return 2 * (int(loud[-1]) + 1) if len(loud) else 0


def negative_audio(seconds: float) -> bytes:
    """``seconds`` of speech without the wake word, with short pauses, repeated to length."""
    parts = [speech(t) + silence(0.6) for t in NEGATIVES]
    block = b"".join(parts)
    n = 2 * round(seconds * RATE)
    return (block * (n // len(block) + 1))[:n]


# ---- the rig with a timed emulator ------------------------------------------------------------------
class TimedEmulator(LiveEmulator):
    """The emulator, unmodified, plus the monotonic time just before each reply's first audio chunk."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.reply_sends: list[float] = []

    async def _send_audio(self, c: Any, pcm: bytes) -> None:
        self.reply_sends.append(time.monotonic())
        await super()._send_audio(c, pcm)


def unit_env() -> dict[str, str]:
    """The memory settings the systemd unit gives the daemon: its Environment= MALLOC_* values and
    PYTHONOPTIMIZE (the unit's PYTHONPYCACHEPREFIX is /opt/edged's: BenchRig makes its own)."""
    out = {}
    with contextlib.suppress(OSError):
        for line in (ROOT / "systemd" / "edged.service").read_text().splitlines():
            if line.startswith("Environment="):
                for kv in line.split("=", 1)[1].split():
                    if kv.startswith(("MALLOC_", "PYTHONOPTIMIZE=")) and "=" in kv:
                        k, v = kv.split("=", 1)
                        out[k] = v
    return out


def precompiled(into: Path) -> Path:
    """The unit's optimized byte code, written as scripts/install writes it (once per bench run)."""
    if not into.exists():
        atexit.register(shutil.rmtree, into, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "edged.cli", "precompile", "--into", str(into)], check=True,
                       capture_output=True, timeout=600)
    return into


class BenchRig(Rig):
    def __init__(self, *a: Any, env: dict[str, str] | None = None, **kw: Any) -> None:
        unit = unit_env()
        if "PYTHONOPTIMIZE" in unit:
            unit["PYTHONPYCACHEPREFIX"] = str(precompiled(Path(tempfile.gettempdir()) / f"edged-bench-pyc-{os.getpid()}"))
        super().__init__(*a, env={**unit, **(env or {})}, **kw)

    async def start_emulator(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "run").mkdir(exist_ok=True)
        self.emu = TimedEmulator(self.scenario, cert_dir=self.root / "certs", speed=self.speed)
        await self.emu.start()
        self.config_path.write_text(_toml(self.config_dict()))

    async def start(self) -> BenchRig:
        await self.start_emulator()
        await self.start_daemon()
        return self


def _toml(cfg: dict[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps(cfg)


# ---- bare openWakeWord (in a fresh process, so every thread it uses is counted) -----------------------
def bare_worker(audio_file: Path, models_dir: Path, paced: bool = False) -> dict[str, float]:
    from openwakeword.model import Model

    m = Model(wakeword_models=[str(M.resolve("hey_jarvis", models_dir))], inference_framework="onnx",
              melspec_model_path=str(models_dir / M.MELSPEC), embedding_model_path=str(models_dir / M.EMBEDDING))
    x = np.frombuffer(audio_file.read_bytes(), "<i2")
    warm = np.zeros(RATE * 2, "<i2")
    for i in range(0, len(warm), 1280):
        m.predict(warm[i:i + 1280])
    m.reset()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.thread_time()
    start = time.monotonic()
    for k, i in enumerate(range(0, len(x) - len(x) % 1280, 1280)):
        if paced:  # one 80 ms frame when a microphone would deliver it
            delay = start + k * 0.08 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        m.predict(x[i:i + 1280])
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.thread_time()
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    audio_s = (len(x) // 1280) * 0.08
    mem = proc_mem(os.getpid())
    return {"process_cpu_s": cpu, "thread_cpu_s": t1 - t0, "audio_s": audio_s, "vmrss_mb": mem.get("VmRSS", 0.0),
            "rssanon_mb": mem.get("RssAnon", 0.0)}


def bare_cpu_per_s(audio: bytes, models_dir: Path, tmp: Path, runs: int = 3, paced: bool = False) -> dict[str, float]:
    f = tmp / "bare.raw"
    f.write_bytes(audio)
    results = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, __file__, "--bare-worker", str(f), "--models", str(models_dir)]
                             + (["--paced"] if paced else []), check=True, capture_output=True, text=True,
                             timeout=900)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    per_s = [r["process_cpu_s"] / r["audio_s"] for r in results]
    per_s_thread = [r["thread_cpu_s"] / r["audio_s"] for r in results]
    return {"cpu_s_per_audio_s": statistics.median(per_s), "thread_cpu_s_per_audio_s": statistics.median(per_s_thread),
            "runs": runs, "audio_s": results[0]["audio_s"],
            "vmrss_mb": statistics.median(r["vmrss_mb"] for r in results),
            "rssanon_mb": statistics.median(r["rssanon_mb"] for r in results)}


# ---- 1 + 5: the idle daemon --------------------------------------------------------------------------
async def bench_idle(models_dir: Path, tmp: Path, seconds: float, window_s: float = 10.0) -> dict[str, Any]:
    audio = negative_audio(seconds)
    rig = BenchRig(tmp / "idle", models_dir, scenario=Scenario([[{"tone": {"hz": 440, "ms": 300}}]]))
    await rig.start()
    try:
        assert rig.emu is not None
        await rig.emu.wait_connections(1, timeout=30)
        await asyncio.sleep(3.0)  # settle: the session set up, the first frames through the models
        st0 = await rig.status()
        pid = st0["pid"]
        rig.speak(audio)
        c0, t0, th0 = proc_cpu(pid), time.monotonic(), thread_cpu(pid)
        samples = [(t0, c0)]  # (wall, cpu) every window_s: the median window resists a noisy neighbour
        while not rig.mic_idle():
            await asyncio.sleep(min(0.1, max(0.0, samples[-1][0] + window_s - time.monotonic())))
            if time.monotonic() >= samples[-1][0] + window_s:
                samples.append((time.monotonic(), proc_cpu(pid)))
        await asyncio.sleep(0.4)  # the last chunk read and through the Ear
        c1, t1, th1 = proc_cpu(pid), time.monotonic(), thread_cpu(pid)
        st1 = await rig.status()
        mem = proc_mem(pid)
        packages = mapped_packages(pid)
    finally:
        await rig.close()
    frames = st1["wake"]["ear"]["frames"] - st0["wake"]["ear"]["frames"]
    audio_s = frames * 0.08 if frames > 0 else t1 - t0
    bare = bare_cpu_per_s(audio, models_dir, tmp)
    paced = bare_cpu_per_s(audio, models_dir, tmp, runs=1, paced=True)
    overall = (c1 - c0) / audio_s
    windows = [(cb - ca) / (tb - ta) for (ta, ca), (tb, cb) in zip(samples, samples[1:], strict=False)]
    daemon_per_s = statistics.median(windows) if windows else overall
    # per thread (the OS does not know the Python thread names; the main thread runs the asyncio loop)
    per_thread = sorted(((th1[k] - th0.get(k, 0.0)) / audio_s, k) for k in th1)
    threads = [{"tid": k, "main": k == pid, "cpu_s_per_audio_s": round(v, 5)} for v, k in reversed(per_thread) if v > 0]
    return {"audio_s": round(audio_s, 2), "wall_s": round(t1 - t0, 2),
            "daemon_cpu_s_per_audio_s": round(daemon_per_s, 5), "daemon_overall_cpu_s_per_audio_s": round(overall, 5),
            "windows": len(windows), "window_s": window_s, "window_rates": [round(w, 5) for w in windows],
            "bare_oww_cpu_s_per_audio_s": round(bare["cpu_s_per_audio_s"], 5),
            "bare_oww_thread_cpu_s_per_audio_s": round(bare["thread_cpu_s_per_audio_s"], 5),
            "ratio": round(daemon_per_s / bare["cpu_s_per_audio_s"], 3),
            "bare_oww_paced_cpu_s_per_audio_s": round(paced["cpu_s_per_audio_s"], 5),
            "ratio_vs_paced": round(daemon_per_s / paced["cpu_s_per_audio_s"], 3),
            "false_wakes": st1["wake"]["detections"] - st0["wake"]["detections"],
            "ring_drops": st1["wake"]["ear"].get("ring_drops", 0) - st0["wake"]["ear"].get("ring_drops", 0),
            "clk_tck": os.sysconf("SC_CLK_TCK"), "threads": threads,
            "main_thread_cpu_s_per_audio_s": round(sum(t["cpu_s_per_audio_s"] for t in threads if t["main"]), 5),
            "vmrss_mb": round(mem.get("VmRSS", float("nan")), 1),
            "vmhwm_mb": round(mem.get("VmHWM", float("nan")), 1),
            "rssanon_mb": round(mem.get("RssAnon", float("nan")), 1),
            "packages_mapped": packages,
            # not a bare process: it imported this file and so the rig, the emulator and the TTS helpers;
            # bench_audio.py measures a bare openWakeWord process's memory
            "bare_worker_vmrss_mb": round(bare["vmrss_mb"], 1)}


# ---- 2 + 3: wake and reply latencies over real turns ----------------------------------------------------
async def _follow(rig: Rig, sink: list[dict[str, Any]]) -> None:
    with contextlib.suppress(Exception):
        async for ev in rig.events():
            sink.append(ev)


async def bench_turns(models_dir: Path, tmp: Path, n: int) -> dict[str, Any]:
    utterance = speech(COMMAND_TEXT)
    wake_end = voiced_end(speech(WAKE_TEXT))  # the words' end inside the utterance (same voice, speed)
    rig = BenchRig(tmp / "turns", models_dir, scenario=Scenario([[{"tone": {"hz": 440, "ms": 400}}]]))
    await rig.start()
    events: list[dict[str, Any]] = []
    follower = asyncio.create_task(_follow(rig, events))
    wake_to_start: list[float] = []
    detection: list[float] = []
    detection_avail: list[float] = []
    reply_to_speaker: list[float] = []
    misses = 0
    try:
        emu = rig.emu
        assert isinstance(emu, TimedEmulator) and rig.feeder is not None
        await emu.wait_connections(1, timeout=30)
        await asyncio.sleep(1.0)
        for _ in range(n):
            await rig.wait_state("idle", timeout=60)
            await poll(rig.mic_idle, 0.05)
            await asyncio.sleep(0.5)
            base = rig.feeder.audio_bytes_written
            n_start = len(emu.frames_of("activity_start"))
            n_wake = sum(1 for e in events if e.get("event") == "wake" and e.get("source") == "wake_word")
            n_send = len(emu.reply_sends)
            rig.speak(utterance, pad_s=1.5)
            # the chunk holding our first sample was written: its nominal time is now
            await poll(lambda b=base: rig.feeder.audio_bytes_written > b, 0.001)
            w0 = time.monotonic()
            try:
                starts = await emu.wait_frames("activity_start", n=n_start + 1, timeout=20)
                await emu.wait_for(lambda s=n_send: len(emu.reply_sends) > s, timeout=20)
                st = await rig.wait_state("idle", timeout=60)
            except Exception as exc:  # a missed wake word: counted, not measured
                misses += 1
                print(f"bench_daemon: turn without wake/reply ({exc!r})", file=sys.stderr)
                continue
            wakes = [e for e in events if e.get("event") == "wake" and e.get("source") == "wake_word"][n_wake:]
            t_start = starts[n_start].t
            if wakes:
                t_wake = float(wakes[0]["mono"])
                wake_to_start.append(t_start - t_wake)
                detection.append(t_wake - (w0 + wake_end / (2 * RATE)))
                # the feeder writes whole chunks at the start of their span: the wake word's end
                # was readable from the write of the chunk holding it
                chunk = rig.feeder.chunk_bytes
                detection_avail.append(t_wake - (w0 + (wake_end // chunk) * chunk / (2 * RATE)))
            t_send = emu.reply_sends[n_send]
            writes = [t for _, t in st["audio"]["playback"].get("first_writes", []) if t >= t_send]
            if writes:
                reply_to_speaker.append(min(writes) - t_send)
    finally:
        follower.cancel()
        await rig.close()
    cfg = rig.config_dict() if rig.emu else {}
    return {"turns": n, "misses": misses, "wake_to_activity_start_ms": summary(wake_to_start),
            "detection_delay_ms": summary(detection), "detection_from_write_ms": summary(detection_avail),
            "feeder_chunk_ms": rig.feeder.chunk_ms if rig.feeder else None, "reply_to_speaker_ms": summary(reply_to_speaker),
            "jitter_ms": cfg.get("audio", {}).get("jitter_ms"), "wake_word_end_s": round(wake_end / (2 * RATE), 3)}


# ---- 6: start-up to READY ---------------------------------------------------------------------------------
async def bench_startup(models_dir: Path, tmp: Path, n: int) -> dict[str, Any]:
    from tests.service.notify_receiver import NotifyReceiver

    rx = NotifyReceiver(tmp / "notify.sock").start()
    rig = BenchRig(tmp / "start", models_dir, env={"NOTIFY_SOCKET": rx.address})
    times: list[float] = []
    try:
        await rig.start_emulator()
        for _ in range(n):
            k = rx.count()
            t0 = time.time()
            await rig.start_daemon(wait=False)
            msg = await asyncio.to_thread(rx.wait_for, "READY", 120.0, after=k)
            times.append(msg.t - t0)
            await rig.wait_ready()
            await rig.stop_daemon()
    finally:
        await rig.close()
        rx.stop()
    return {"starts": n, "first_ms": round(times[0] * 1000, 1), **{f"{k}_ms": v for k, v in summary(times).items()
                                                                   if k != "n"}}


async def run(models_dir: Path, idle_s: float, turns: int, starts: int, only: set[str] | None = None,
              window_s: float = 10.0) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as d:
        tmp = Path(d)
        if not only or "idle" in only:
            out["idle"] = await bench_idle(models_dir, tmp, idle_s, window_s)
        if not only or "turns" in only:
            out["turns"] = await bench_turns(models_dir, tmp, turns)
        if not only or "startup" in only:
            out["startup"] = await bench_startup(models_dir, tmp, starts)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=os.environ.get("EDGED_TEST_MODELS") or str(ROOT / ".cache/models"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--idle-s", type=float)
    ap.add_argument("--turns", type=int)
    ap.add_argument("--starts", type=int)
    ap.add_argument("--only", action="append", choices=["idle", "turns", "startup"])
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--bare-worker", metavar="RAW", help=argparse.SUPPRESS)
    ap.add_argument("--paced", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    models_dir = Path(a.models)
    if a.bare_worker:
        print(json.dumps(bare_worker(Path(a.bare_worker), models_dir, a.paced)))
        return 0
    M.fetch(models_dir)
    idle_s = a.idle_s or (10.0 if a.quick else 30.0)
    turns = a.turns or (5 if a.quick else 20)
    starts = a.starts or (3 if a.quick else 7)
    res = asyncio.run(run(models_dir, idle_s, turns, starts, set(a.only) if a.only else None,
                          5.0 if a.quick else 10.0))
    text = json.dumps(res, indent=2)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
