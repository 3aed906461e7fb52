"""Soak: many wake-word turns through the real daemon against the emulator, with faults injected.

    python -m edged.dev.soak --cycles 1000 [--seed S] [--fault-rate 0.35] [--json FILE]
    python -m edged.dev.soak --kill 200 [--daemon-kills 5]      # kill -9 while the handle is written

Each cycle speaks "hey jarvis, lights on" into the FIFO microphone in real time and waits for the
reply (a 200 ms tone) to be played.  A fault may be injected before the turn ("between") or while it
is open ("during"): Live closes (1006 drop, 1011, 1008, 1007), GoAway, a refused resumption handle,
a slow reply, malformed frames, the microphone vanishing and coming back, the camera failing under a
``look`` tool call.  The session replays an open turn after a reconnect, so every turn is expected to
complete; a lost turn is counted "with a fault during it" or "without an excuse" (which must be 0).

Figures: turns attempted/completed/lost (classified), recoveries (status counters of the daemon),
the daemon's VmRSS and open fds after warm-up and at the end, and whether it ever exited.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..sim.scenario import Scenario
from .rig import Rig
from .tts import render

UTTERANCE = "hey jarvis, lights on"
REPLY = [{"tone": {"hz": 440, "ms": 200}}]
LINK_FAULTS = ("drop", "close_1011", "close_1008", "close_1007", "goaway", "reject_resume",
               "malformed_text", "malformed_keys")
FAULTS = (*LINK_FAULTS, "slow", "capture_vanish", "camera")
DURING_OK = (*LINK_FAULTS, "slow")  # faults that make sense while a turn is open
TURN_TIMEOUT_S = 40.0
RECOVER_TIMEOUT_S = 30.0
OVERRIDES = {"live": {"auth_retry_s": 1.0, "backoff_max_s": 1.0},
             "audio": {"reopen_backoff_max_s": 1.0}, "log": {"level": "info"}}
RECOVERY_KEYS = ("reconnects", "resumes", "fresh_starts", "resume_fallbacks", "goaways", "turns_replayed",
                 "auth_failures")


class SoakError(RuntimeError):
    pass


def default_plan(n: int, rng: random.Random, fault_rate: float) -> list[tuple[str | None, str | None]]:
    """Random faults for n cycles: (fault, "between" | "during") or (None, None)."""
    plan: list[tuple[str | None, str | None]] = []
    for _ in range(n):
        if rng.random() >= fault_rate:
            plan.append((None, None))
            continue
        fault = rng.choice(FAULTS)
        when = "during" if fault in DURING_OK and (fault == "slow" or rng.random() < 0.5) else "between"
        plan.append((fault, when))
    return plan


def every_fault_plan(only: tuple[str, ...] = FAULTS) -> list[tuple[str | None, str | None]]:
    """Every fault at least once, deterministic: each link fault between and during turns."""
    plan: list[tuple[str | None, str | None]] = [(None, None)]
    if only != FAULTS:
        return [p for f in only for p in ((f, "during" if f == "slow" else "between"), (None, None))]
    for k, f in enumerate(LINK_FAULTS):
        plan += [(f, "between"), (f, "during")] + ([(None, None)] if k % 3 == 2 else [])
    plan += [("slow", "during"), ("capture_vanish", "between"), (None, None), ("camera", "between"), (None, None)]
    return plan


class Soak:
    def __init__(self, rig: Rig, rng: random.Random, log: Any = print) -> None:
        self.rig = rig
        self.rng = rng
        self.log = log
        self.utterance = render(UTTERANCE).read_bytes()
        self.attempted = 0
        self.completed = 0
        self.lost_fault: Counter[str] = Counter()
        self.lost_no_excuse: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.recovered: Counter[str] = Counter()
        self.unrecovered: list[str] = []
        self.recovery_s: list[float] = []
        self.exited: int | None = None
        self.failures: list[str] = []
        self.vanish_seen = 0
        self._prev: dict[str, int] = {}
        self._acc: Counter[str] = Counter()

    # ---- observation ---------------------------------------------------------------------------
    def _alive(self) -> None:
        proc = self.rig.proc
        if proc is None or proc.returncode is not None:
            self.exited = proc.returncode if proc else -1
            raise SoakError(f"the daemon exited with {self.exited}; see {self.rig.log_path}")

    async def status(self) -> dict[str, Any]:
        self._alive()
        st = await self.rig.status()
        # counters restart when the session (reload) or the process (kill -9) is replaced: keep totals
        now = {k: int(st["live"].get(k) or 0) for k in RECOVERY_KEYS}
        now["capture_reopens"] = int((st["audio"]["capture"] or {}).get("opens", 0))
        for k, v in now.items():
            if v < self._prev.get(k, 0):
                self._acc[k] += self._prev[k]
            self._prev[k] = v
        st["_totals"] = {k: self._acc[k] + v for k, v in now.items()}
        return st

    async def wait(self, pred: Any, timeout: float, what: str) -> dict[str, Any]:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            st = await self.status()
            if pred(st):
                return st
            await asyncio.sleep(0.05)
        raise SoakError(f"{what}: not within {timeout:g} s (state {st.get('state')} {st.get('why')!r}, "
                        f"live {st.get('live', {}).get('state')}, problems {st.get('problems')})")

    @staticmethod
    def healthy(st: dict[str, Any]) -> bool:
        return st["state"] == "idle" and bool(st["live"].get("connected")) and not st["problems"]

    # ---- faults --------------------------------------------------------------------------------
    async def _link_fault(self, fault: str) -> None:
        emu = self.rig.emu
        assert emu is not None
        if fault == "drop":
            await emu.drop()
        elif fault.startswith("close_"):
            code = int(fault[6:])
            reason = {1011: "internal error", 1008: "policy violation", 1007: "invalid frame payload data"}[code]
            await emu.close(code, reason)
        elif fault == "goaway":
            await emu.goaway(time_left=round(self.rng.uniform(1.0, 5.0), 1))
        elif fault == "reject_resume":
            emu.arm(reject_resume=True)
            await emu.close(1011, "internal error")
        elif fault == "malformed_text":
            await emu.send_raw("this is not JSON {")
        elif fault == "malformed_keys":
            await emu.send_raw({"bogusKey": {"x": 1}})

    async def _capture_vanish(self) -> None:
        """Unplug the microphone: the file PCM cannot fail mid-stream, so the capture is closed by a mute
        while its ALSA definition is removed; on unmute the daemon cannot open it (problem + error
        state), then it is plugged back and the daemon's reopen with backoff must find it."""
        rig = self.rig
        await rig.request("mute", on=True)
        await self.wait(lambda s: (s["audio"]["capture"] or {}).get("state") == "muted", 10, "capture closed")
        rig.set_mic_present(False)
        await rig.request("mute", on=False)
        await self.wait(lambda s: "capture" in s["problems"] and s["state"] == "error", 15, "capture problem shown")
        self.vanish_seen += 1
        rig.set_mic_present(True)
        await self.wait(lambda s: "capture" not in s["problems"] and s["state"] == "idle", RECOVER_TIMEOUT_S,
                        "capture reopened")

    async def inject(self, fault: str) -> None:
        self.faults[fault] += 1
        if fault in LINK_FAULTS:
            await self._link_fault(fault)
        elif fault == "capture_vanish":
            await self._capture_vanish()
        elif fault == "camera":  # the camera absent (picamera2 on a machine without one), by config
            answer = await self.rig.config_set("camera.backend", "picamera2")
            if not answer.get("reloaded"):
                raise SoakError(f"breaking the camera failed: {answer}")
            await self.wait(lambda s: "camera" in s["problems"], 15, "camera problem shown")

    async def recover(self, fault: str, before: dict[str, Any]) -> None:
        """Wait until the daemon is back to idle and connected; counts the recovery."""
        t0 = time.monotonic()
        live0 = before["live"]
        try:
            if fault in ("drop", "close_1011", "close_1008", "close_1007", "goaway", "reject_resume"):
                await self.wait(lambda s: s["live"]["reconnects"] > live0["reconnects"], RECOVER_TIMEOUT_S,
                                f"reconnect after {fault}")
            if fault == "reject_resume":
                await self.wait(lambda s: s["live"]["resume_fallbacks"] > live0["resume_fallbacks"],
                                RECOVER_TIMEOUT_S, "fresh fallback after a refused handle")
            camera_only = fault == "camera"  # the camera stays broken until the look turn is over
            await self.wait(lambda s: self.healthy(s) or (camera_only and s["state"] == "idle"
                                                          and set(s["problems"]) == {"camera"}), RECOVER_TIMEOUT_S, f"idle and connected after {fault}")
        except SoakError as exc:
            self.unrecovered.append(f"{fault}: {exc}")
            self.log(f"  NOT RECOVERED: {exc}")
            return
        self.recovered[fault] += 1
        self.recovery_s.append(time.monotonic() - t0)

    # ---- one cycle -----------------------------------------------------------------------------
    async def cycle(self, i: int, fault: str | None, when: str | None) -> bool:
        rig, emu = self.rig, self.rig.emu
        assert emu is not None
        await self.wait(lambda s: s["state"] == "idle" and rig.mic_idle(), RECOVER_TIMEOUT_S, "idle before a turn")
        if fault and when == "between":
            before = await self.status()
            await self.inject(fault)
            await self.recover(fault, before)
        steps: list[dict[str, Any]] = list(REPLY)
        if fault == "slow":
            steps = [{"sleep": {"s": round(self.rng.uniform(0.5, 3.0), 2)}}, *REPLY]
        elif fault == "camera":
            steps = [{"tool_call": {"name": "look", "args": {}, "timeout": 10}}, *REPLY]
        emu.scenario = Scenario([steps])
        base = await self.status()
        base["_emu_turns"] = emu.turns_received
        looks = _look_responses(emu)
        self.attempted += 1
        rig.speak(self.utterance)
        injector = None
        if fault and when == "during" and fault != "slow":
            injector = asyncio.ensure_future(self._inject_during(fault, base))
        elif fault == "slow":
            self.faults["slow"] += 1
        ok, why = await self._wait_turn(base)
        if injector is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(injector, RECOVER_TIMEOUT_S)
            if not injector.done() or injector.exception():
                self.failures.append(f"cycle {i}: injecting {fault} during the turn failed")
            else:
                await self.recover(fault or "", base)
        if fault == "camera":
            new = _look_responses(emu)[len(looks):]
            if not new or "error" not in new[-1].get("response", {}):
                self.failures.append(f"cycle {i}: look with a broken camera did not answer an error: {new}")
            answer = await rig.config_set("camera.backend", "synthetic")
            if not answer.get("reloaded"):
                raise SoakError(f"repairing the camera failed: {answer}")
            await self.recover("camera-repair", base)
        if ok:
            self.completed += 1
        elif fault and when == "during":
            self.lost_fault[f"{fault}: {why}"] += 1
        else:
            self.lost_no_excuse[f"{fault or 'no fault'}: {why}"] += 1
        tag = f"{fault} ({when})" if fault else "-"
        self.log(f"cycle {i + 1}: {'ok' if ok else 'LOST ' + why} fault {tag}")
        return ok

    async def _inject_during(self, fault: str, base: dict[str, Any]) -> None:
        turns = base["conversation"]["turns"]
        await self.wait(lambda s: s["conversation"]["turns"] > turns, TURN_TIMEOUT_S, "the turn opening")
        await asyncio.sleep(self.rng.uniform(0.0, 1.5))  # while listening, thinking or speaking
        await self.inject(fault)

    async def _wait_turn(self, base: dict[str, Any]) -> tuple[bool, str]:
        done = base["conversation"]["turns_completed"]
        try:
            await self.wait(lambda s: s["conversation"]["turns_completed"] > done and s["state"] in ("idle", "error")
                            and self.rig.mic_idle(), TURN_TIMEOUT_S, "reply")
            return True, ""
        except SoakError:
            pass
        st = await self.status()
        if st["wake"]["detections"] <= base["wake"]["detections"]:
            return False, "wake word not detected"
        if st["conversation"]["turns"] <= base["conversation"]["turns"]:
            return False, "no turn opened"
        if self.rig.emu and self.rig.emu.turns_received <= self._turns0(base):
            return False, "the emulator got no complete turn"
        return False, "no reply completed"

    def _turns0(self, base: dict[str, Any]) -> int:
        return int(base.get("_emu_turns", 0))

    # ---- the run -------------------------------------------------------------------------------
    @staticmethod
    def recoveries(first: dict[str, Any], last: dict[str, Any]) -> dict[str, int]:
        return {k: v - first["_totals"][k] for k, v in last["_totals"].items()}


def _look_responses(emu: Any) -> list[dict[str, Any]]:
    return [r for c in emu.connections for r in c.tool_responses if r.get("name") == "look"]


async def run_soak(n: int, seed: int, root: Path, models_dir: Path, *, fault_rate: float = 0.35,
                   plan: list[tuple[str | None, str | None]] | None = None, warmup: int = 2,
                   daemon_kills: int = 0, log: Any = print) -> dict[str, Any]:
    rng = random.Random(seed)
    plan = plan if plan is not None else default_plan(n, rng, fault_rate)
    kill_at = set(rng.sample(range(1, len(plan)), min(daemon_kills, max(0, len(plan) - 1))))
    rig = Rig(root, models_dir, scenario=Scenario([REPLY]), speed=4.0, overrides=OVERRIDES)
    soak = Soak(rig, rng, log)
    t0 = time.monotonic()
    report: dict[str, Any] = {"seed": seed, "cycles": len(plan)}
    await rig.start()
    try:
        assert rig.emu is not None
        await rig.emu.wait_connections(1, timeout=20)
        for _ in range(warmup):
            await soak.cycle(-1, None, None)
        soak.attempted = soak.completed = 0
        first = await soak.status()
        mem0 = rig.proc_stats()
        kills: list[dict[str, Any]] = []
        rss_samples: list[int] = []  # every 50 cycles: growth that levels off is not a leak
        for i, (fault, when) in enumerate(plan):
            if i in kill_at:
                kills.append(await kill_daemon(rig, rng))
                log(f"kill -9 #{len(kills)}: {kills[-1]}")
                mem0 = rig.proc_stats()  # memory: of the last process, from its start
            await soak.cycle(i, fault, when)
            if (i + 1) % 50 == 0:
                rss_samples.append(rig.proc_stats()["rss_kb"])
        await soak.wait(lambda s: s["state"] == "idle", RECOVER_TIMEOUT_S, "idle at the end")
        last = await soak.status()
        mem1 = rig.proc_stats()
        report.update({
            "attempted": soak.attempted, "completed": soak.completed,
            "lost_with_fault_during": dict(soak.lost_fault), "lost_without_excuse": dict(soak.lost_no_excuse),
            "faults_injected": dict(soak.faults), "faults_recovered": dict(soak.recovered),
            "capture_vanish_shown": soak.vanish_seen,
            "unrecovered": soak.unrecovered, "failures": soak.failures,
            "recovery_s_median": _median(soak.recovery_s), "recovery_s_max": round(max(soak.recovery_s, default=0.0), 2),
            "recoveries": soak.recoveries(first, last),
            "emulator_turns_received": rig.emu.turns_received, "player_replies": last["audio"]["playback"]["replies"],
            "conversation": {k: last["conversation"][k] for k in ("turns", "turns_completed", "barge_ins",
                                                                   "interruptions", "no_speech", "send_drops")},
            "rss_kb_start": mem0["rss_kb"], "rss_kb_end": mem1["rss_kb"], "fds_start": mem0["fds"],
            "fds_end": mem1["fds"], "rss_kb_every_50": rss_samples, "daemon_exited": soak.exited, "daemon_kills": kills,
            "violations": [v for c in rig.emu.connections for v in c.violations],
        })
    except SoakError as exc:
        report["aborted"] = str(exc)
        report["daemon_exited"] = soak.exited
    finally:
        report["elapsed_s"] = round(time.monotonic() - t0, 1)
        await rig.close()
    return report


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    return round(s[len(s) // 2], 2) if s else 0.0


# ---- kill -9 while the handle is written ---------------------------------------------------------
async def kill_daemon(rig: Rig, rng: random.Random) -> dict[str, Any]:
    """kill -9 the daemon at a random moment (sometimes mid-turn), restart it, check the resume."""
    from ..live.session import HANDLE_FILE

    emu = rig.emu
    assert emu is not None and rig.proc is not None
    rig.speak(render(UTTERANCE).read_bytes())
    await asyncio.sleep(rng.uniform(0.0, 3.0))
    await rig.stop_daemon(signal.SIGKILL)
    path = rig.state_dir / HANDLE_FILE
    persisted = json.loads(path.read_text())["handle"] if path.exists() else None
    n = len(emu.connections)
    await rig.start_daemon()
    await emu.wait_for(lambda: len([c for c in emu.connections[n:] if c.setup is not None]) > 0, 20)
    conn = next(c for c in emu.connections[n:] if c.setup is not None)
    ok = persisted is not None and conn.handle == persisted and conn.resumed
    if not ok:
        raise SoakError(f"after kill -9 the daemon presented {conn.handle and conn.handle[:6]!r} "
                        f"(persisted {persisted and persisted[:6]!r}), resumed={conn.resumed}")
    return {"persisted_is_newest": persisted == emu.handles_issued[-1], "resumed": conn.resumed}


def handle_writer(directory: str) -> None:
    """The light process: load the handle (print it), then save numbered handles as fast as it can."""
    from ..live.resumption import HandleStore

    store = HandleStore(Path(directory) / "live_handle.json", 86400)
    h = store.load()
    n = int(h.value[1:]) if h else 0
    print(f"loaded {h.value if h else '-'}", flush=True)
    while True:
        n += 1
        store.save(f"h{n:09d}", "sess")
        print(n, flush=True)


def kill_handle_writes(kills: int, directory: Path, seed: int) -> dict[str, Any]:
    """kill -9 the writer ``kills`` times; after each the file holds the last saved or the in-flight
    handle, parses, and the next start loads exactly it."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "live_handle.json"
    bad: list[str] = []
    new_count = old_count = 0
    expected_load = "-"
    for k in range(kills):
        proc = subprocess.Popen([sys.executable, "-m", "edged.dev.soak", "--handle-writer", str(directory)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        if first != f"loaded {expected_load}":
            bad.append(f"kill {k}: the restart loaded {first!r}, expected {expected_load!r}")
        time.sleep(rng.uniform(0.005, 0.08))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        saved = [int(x) for x in out.split()]
        last = saved[-1] if saved else (int(expected_load[1:]) if expected_load != "-" else 0)
        try:
            data = json.loads(path.read_text())
            value = int(str(data["handle"])[1:])
            float(data["received_at"])
        except (OSError, ValueError, KeyError) as exc:
            bad.append(f"kill {k}: the handle file is unreadable or corrupt: {exc}")
            continue
        if value == last:
            old_count += 1
        elif value == last + 1:
            new_count += 1
        else:
            bad.append(f"kill {k}: the file holds h{value}, the last saved was h{last}")
        expected_load = str(data["handle"])
    leftovers = [p.name for p in directory.iterdir() if p.name != path.name]
    return {"kills": kills, "file_was_last_saved": old_count, "file_was_in_flight_write": new_count,
            "corrupt_or_wrong": bad, "leftover_temp_files": len(leftovers), "seed": seed}


# ---- the report ----------------------------------------------------------------------------------
def markdown(report: dict[str, Any]) -> str:
    lines = ["# edged soak", ""]
    if "cycles" in report:
        lines += [f"- seed {report['seed']}, {report['cycles']} cycles, {report.get('elapsed_s')} s"]
        if "aborted" in report:
            lines += [f"- **ABORTED**: {report['aborted']}"]
        for key in ("attempted", "completed", "lost_with_fault_during", "lost_without_excuse", "faults_injected",
                    "faults_recovered", "unrecovered", "failures", "recoveries", "recovery_s_median",
                    "recovery_s_max", "rss_kb_every_50", "emulator_turns_received", "player_replies", "conversation",
                    "daemon_exited", "daemon_kills", "violations"):
            if key in report:
                lines.append(f"- {key.replace('_', ' ')}: {report[key]}")
        if "rss_kb_start" in report:
            lines += [f"- RSS (VmRSS) after warm-up {report['rss_kb_start'] / 1024:.1f} MB, at the end "
                      f"{report['rss_kb_end'] / 1024:.1f} MB ({(report['rss_kb_end'] - report['rss_kb_start']) / 1024:+.1f})",
                      f"- open fds after warm-up {report['fds_start']}, at the end {report['fds_end']}"]
    if "handle_kills" in report:
        lines += ["", "## kill -9 during handle writes", ""]
        lines += [f"- {k.replace('_', ' ')}: {v}" for k, v in report["handle_kills"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edged.dev.soak", description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--fault-rate", type=float, default=0.35)
    ap.add_argument("--kill", type=int, default=0, help="kill -9 a handle writer this many times (no turns)")
    ap.add_argument("--daemon-kills", type=int, default=None, help="kill -9 the daemon at random cycles")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--root", type=Path, default=None, help="working directory (default: a temporary one)")
    ap.add_argument("--models", type=Path, default=Path(os.environ.get("EDGED_TEST_MODELS", ".cache/models")))
    ap.add_argument("--handle-writer", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.handle_writer:
        handle_writer(args.handle_writer)
        return 0
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    print(f"soak seed {seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="edged-soak-") as tmp:
        root = args.root or Path(tmp)
        if args.kill:
            report: dict[str, Any] = {"handle_kills": kill_handle_writes(args.kill, root / "handles", seed)}
            kills = 5 if args.daemon_kills is None else args.daemon_kills
            if kills:
                report.update(asyncio.run(run_soak(max(kills * 3, 10), seed, root / "rig", args.models,
                                                   daemon_kills=kills)))
        else:
            report = asyncio.run(run_soak(args.cycles, seed, root / "rig", args.models,
                                          fault_rate=args.fault_rate, daemon_kills=args.daemon_kills or 0))
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    hk = report.get("handle_kills", {})
    bad = (report.get("aborted") or report.get("lost_without_excuse") or report.get("unrecovered")
           or report.get("failures") or hk.get("corrupt_or_wrong"))
    return 1 if bad else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
