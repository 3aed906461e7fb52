"""The VM bench's rows on the service's life under systemd: start -> READY and the STATUS text
(start_ready), reload -> RELOADING=1 then READY=1 (reload), a stopped loop -> the watchdog's restart
-> resume with the persisted handle (watchdog_resume), and stop -> outputs driven to their safe
values (stop_safe).  Each row is a function of the run's Bench (harness.py) that returns its detail
or raises Fail; scripts/vm/runner.py lists them.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guestkit import (
    ETC,
    GPIO,
    GPIO_TRACE,
    LIGHT_LINE,
    REC,
    STATE,
    edgectl,
    journal,
    journal_cursor,
    pid1_messages,
    unit_props,
    wait_idle,
)
from waits import Fail, sh, wait_for

if TYPE_CHECKING:
    from harness import Bench


# systemd's catalog (/usr/lib/systemd/catalog/systemd.catalog): PID 1's messages on a start job
JOB_STARTING = "7d4958e842da4a758f6c1cdc7b36dcc5"  # "A start job for unit @UNIT@ has begun execution"
JOB_STARTED = "39f53479d3a045ac8e11786248231fbf"  # "... has finished successfully"
JOB_FAILED = "be02cf6855d2428ba40df7e9d022f03d"  # "... has failed"


def last_start_job(entries: list[dict[str, Any]]) -> tuple[float, str]:
    """(seconds, result) of the last start job in a unit's journal entries (journalctl -o json):
    from PID 1's "has begun execution" to its "finished successfully" ("done") or "has failed" (the
    entry's JOB_RESULT), on the guest's monotonic clock.  For a Type=notify unit that is start ->
    READY=1.  Fail when there is no start job, or it has not ended."""
    pid1 = [e for e in entries if e.get("_PID") == "1" and "__MONOTONIC_TIMESTAMP" in e]
    begun = [i for i, e in enumerate(pid1) if e.get("MESSAGE_ID") == JOB_STARTING]
    if not begun:
        raise Fail("no start job for the unit in the journal")
    t0 = int(pid1[begun[-1]]["__MONOTONIC_TIMESTAMP"])
    for e in pid1[begun[-1] + 1:]:
        if e.get("MESSAGE_ID") in (JOB_STARTED, JOB_FAILED):
            result = str(e.get("JOB_RESULT") or ("done" if e["MESSAGE_ID"] == JOB_STARTED else "failed"))
            return (int(e["__MONOTONIC_TIMESTAMP"]) - t0) / 1e6, result
    raise Fail("the unit's last start job has not ended")


def start_ready(bench: Bench) -> str:
    if bench.daemon_from == "install":
        # the daemon scripts/install started (its `systemctl restart`, as on a Pi): that start's
        # time to READY=1, from PID 1's journal
        if bench.install_start_error:
            raise Fail(f"scripts/install's systemctl restart failed: {bench.install_start_error}")
        took, result = last_start_job(journal())
        if result != "done":
            raise Fail(f"the installer's start of the unit ended {result!r} after {took:.1f} s")
        how = "scripts/install's start"
        # the same start on the host's clock (install.log's stamps): icount moves the guest's clock
        # ahead while the guest waits for its disk, and this first start reads the new venv cold
        host = [sec for step, sec in bench.timings.get("install_steps_host_s", [])
                if step.startswith("systemctl restart edged.service")]
        if host:
            bench.figures["start_to_ready_host_s"] = host[-1]
            how += f" ({host[-1]} s of host time)"
    else:
        t = time.monotonic()
        sh("systemctl start edged.service", timeout=180)  # Type=notify: returns once READY=1 arrives
        took, how = time.monotonic() - t, "systemctl start"
    bench.figures["start_to_ready_s"] = round(took, 2)
    p = unit_props()
    if (p["ActiveState"], p["SubState"]) != ("active", "running"):
        raise Fail(f"after start: {p['ActiveState']}/{p['SubState']}")
    text = wait_for(lambda: (s := unit_props()["StatusText"]) and "live connected" in s and s, 60,
                    "STATUS= text with the Live session connected")
    shown = sh("systemctl status --no-pager edged.service", check=False).stdout
    if f'Status: "{text}' not in shown and f"Status: \"{text[:40]}" not in shown:
        raise Fail(f"systemctl status does not show the STATUS text {text!r}:\n{shown[:800]}")
    wait_idle(60)
    pid = unit_props()["MainPID"]
    with open(f"/proc/{pid}/status") as f:
        vm = {k: int(v.split()[0]) / 1024 for k, v in (ln.split(":", 1) for ln in f) if k in ("VmRSS", "RssAnon")}
    bench.figures["idle_vmrss_mb"], bench.figures["idle_rssanon_mb"] = round(vm["VmRSS"], 1), round(vm["RssAnon"], 1)
    pycs = sum(1 for _ in Path("/opt/edged/pycache").rglob("*.opt-2.pyc"))
    return (f"{how}: READY after {bench.figures['start_to_ready_s']} s; Status: {text!r}; idle VmRSS "
            f"{vm['VmRSS']:.1f} MB; {pycs} opt-2 byte-code files from scripts/install")


def reload(bench: Bench) -> str:
    pid = unit_props()["MainPID"]
    cfg = ETC / "edged.toml"
    cfg.write_text(cfg.read_text().replace("threshold = 0.5", "threshold = 0.45"))
    cursor = journal_cursor()
    sh("systemd-analyze log-level debug")
    try:
        t = time.monotonic()
        sh("systemctl reload edged.service", timeout=180)  # the job ends when READY=1 comes back
        took = time.monotonic() - t
        msgs = wait_for(lambda: (m := pid1_messages(cursor)) and any("READY=1" in x for x in m) and m, 30,
                        "READY=1 after the reload in PID 1's log")
    finally:
        sh("systemd-analyze log-level info")
    seen: list[str] = []

    def applied() -> bool:
        out = edgectl("--json", "config", "get", "wake.threshold", check=False).stdout.strip()
        seen.append(" ".join(out.split()))
        value = json.loads(out)
        return (value.get("value") if isinstance(value, dict) else value) == 0.45
    try:
        wait_for(applied, 60, "wake.threshold 0.45 after the reload")
    except Fail as exc:
        raise Fail(f"{exc}; edgectl --json config get said {seen[-3:]}") from None
    bench.figures["reload_s"] = round(took, 1)
    notes = [m for m in msgs if "notification message" in m]
    i_rel = next((i for i, m in enumerate(notes) if "RELOADING=1" in m), None)
    if i_rel is None:
        raise Fail(f"systemd got no RELOADING=1: {notes[:5]}")
    if not any("READY=1" in m for m in notes[i_rel:]):
        raise Fail(f"no READY=1 after RELOADING=1: {notes[i_rel:i_rel + 5]}")
    p = unit_props()
    if p["MainPID"] != pid or p["ActiveState"] != "active":
        raise Fail(f"the reload restarted the daemon or left it {p['ActiveState']}")
    return (f"systemd got RELOADING=1 then READY=1 ({took:.1f} s); wake.threshold 0.45 applied; same PID")


def watchdog_resume(bench: Bench) -> str:
    p = unit_props()
    pid, restarts = p["MainPID"], int(p["NRestarts"])
    handle_file = STATE / "live_handle.json"
    handle = wait_for(lambda: json.loads(handle_file.read_text()).get("handle"), 20,
                      f"a persisted handle in {handle_file}")
    setups_before = REC.count("setup")
    cursor = journal_cursor()
    t = time.monotonic()
    os.kill(int(pid), 19)  # SIGSTOP: the loop stops, so do the watchdog pings
    try:
        wait_for(lambda: int(unit_props()["NRestarts"]) > restarts, 90, "systemd to restart the daemon")
    except Fail:
        os.kill(int(pid), 18)  # SIGCONT: not restarted; let the next scenarios find it running
        raise
    t_restart = time.monotonic()
    msgs = pid1_messages(cursor)
    if not any("result 'watchdog'" in m for m in msgs):
        raise Fail(f"the restart was not for the watchdog: {[m for m in msgs if 'edged' in m][:6]}")
    wait_for(lambda: unit_props()["ActiveState"] == "active", 120, "the daemon active again")

    def resumed_setup() -> dict[str, Any] | None:
        for f in REC.frames("setup")[setups_before:]:
            sr = f["data"].get("sessionResumption") or f["data"].get("session_resumption") or {}
            if sr.get("handle"):
                return f
        return None
    setup = wait_for(resumed_setup, 60, "a setup that presents a resumption handle")
    presented = (setup["data"].get("sessionResumption") or setup["data"].get("session_resumption"))["handle"]
    if presented != handle:
        raise Fail("the new session presented a handle other than the persisted one")
    t_resumed = time.monotonic()
    wait_for(lambda: any(e.get("LIVE_STATE") == "resumed" for e in journal(since_cursor=cursor)), 30,
             "LIVE_STATE=resumed in the daemon's journal")
    wait_idle(60)
    bench.figures["watchdog_stop_to_restart_s"] = round(t_restart - t, 1)
    bench.figures["watchdog_stop_to_resumed_s"] = round(t_resumed - t, 1)
    return (f"SIGSTOP -> Result=watchdog restart after {t_restart - t:.1f} s; resumed with the persisted "
            f"handle after {t_resumed - t:.1f} s")


def stop_safe(bench: Bench) -> str:
    edgectl("gpio", "set", "kitchen_light", "on")
    wait_for(lambda: GPIO.value(LIGHT_LINE) == 1, 10, f"line {LIGHT_LINE} high before the stop")
    # gpio-sim gives a released line its pull: with a pull-up, a daemon that only let go of the
    # line would leave it reading 1.  Watch for the low the daemon must drive before it exits.
    GPIO.pull(LIGHT_LINE, "pull-up")
    seen: list[tuple[float, int]] = []
    done = threading.Event()

    def watch() -> None:
        path = GPIO.base / f"sim_gpio{LIGHT_LINE}" / "value"
        last = None
        with open(path, "rb", buffering=0) as f:
            while not done.is_set():
                f.seek(0)
                v = f.read(4)[:1]
                if v != last:
                    seen.append((time.monotonic(), int(v)))
                    last = v
    th = threading.Thread(target=watch, daemon=True)
    no_trace = GPIO_TRACE.start()
    th.start()
    t = time.monotonic()
    try:
        sh("systemctl stop edged.service", timeout=60)
    finally:
        done.set()
        th.join(5)
        GPIO_TRACE.stop()
        GPIO.pull(LIGHT_LINE, "pull-down")
    values = [v for _, v in seen]
    p = unit_props()
    if p["ActiveState"] != "inactive":
        raise Fail(f"after stop: {p['ActiveState']}")
    if no_trace is None:  # gpiolib's record of the sets decides
        sets = GPIO_TRACE.sets(LIGHT_LINE)
        if sets[-1:] != [0]:
            raise Fail(f"line {LIGHT_LINE} was not driven low during the stop: the values set on it were "
                       f"{sets} (gpio:gpio_value; sysfs reads: {values})")
        return (f"line {LIGHT_LINE}: set {sets} during the stop (gpio:gpio_value), sysfs reads {values}; "
                "unit inactive")
    if 0 not in values:  # (no tracepoint here: a low the reader saw)
        raise Fail(f"line {LIGHT_LINE} was never seen low during the stop (sysfs reads: {values}; {no_trace})")
    t_low = next(ts for ts, v in seen if v == 0)
    return (f"line {LIGHT_LINE}: {values} (seen low {t_low - t:.2f} s into the stop; {no_trace}); "
            "unit inactive")
