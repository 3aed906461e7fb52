#!/usr/bin/python3
"""The VM bench's scenarios, run inside the guest as root at boot (scripts/vm/guest/vm-bench-boot).

It sets up the "Pi" (a loopback sound card, a gpio-sim chip, a Pi board revision for gpiozero, an
offline wheelhouse), installs edged with scripts/install, runs the Live emulator (`edged sim`) on
127.0.0.1, then runs every scenario in order, each a pass/fail row with its time, and writes
``results.json``, the journal and the emulator's record into the host's share.

edged is driven only through its public surfaces: scripts/install and scripts/uninstall, systemctl,
journalctl, edgectl, `edged sim`, the config file, the gpio-sim sysfs, aplay/arecord.
Standard library only: this runs on the guest's own python3 before edged is installed.

This file keeps main(), the table of rows (SCENARIOS) and the --hold loop; the rest is beside it in
scripts/vm, imported one way (no module imports this one or a module that imports it):
  waits.py        limits on both the guest's and the host's clocks (sh, wait_for, Fail)
  breaks.py       the deliberate faults (--break NAME)
  guestkit.py     paths, the log, systemctl/journal/edgectl/status tools, gpio-sim, the sound card
  guestconf.py    the emulator's script and edged's config for the Pi in a box
  harness.py      Bench: the run's state, the set-up (hardware, install, emulator), one row's run
  rows_service.py   start_ready, reload, watchdog_resume, stop_safe
  rows_devices.py   wake_tool_reply, talk_button, unbind_rebind
  rows_security.py  journal_fields, security, edgectl_roles, credential, uninstall
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import breaks  # noqa: E402  (the deliberate faults: --break NAME, see breaks.py)
import rows_devices  # noqa: E402
import rows_security  # noqa: E402
import rows_service  # noqa: E402
from guestkit import T0, log  # noqa: E402
from harness import SCENARIO_LIMIT_S, Bench, render_speech  # noqa: E402
from waits import HOST, Fail, HostWatch, sh  # noqa: E402

LIMITS_S = {"uninstall": 2 * rows_security.IO_BOUND_S + 60}

SCENARIOS = [
    ("start_ready", "the installer's systemctl restart -> READY; systemctl status shows the STATUS text",
     rows_service.start_ready),
    ("wake_tool_reply", "wake word on hw:Loopback -> activity_start -> tool call -> gpio-sim line high -> reply "
     "recorded", rows_devices.wake_tool_reply),
    ("talk_button", "gpio-sim pull on the talk-button line opens a turn", rows_devices.talk_button),
    ("reload", "systemctl reload -> RELOADING=1 then READY=1, config applied, same PID",
     rows_service.reload),
    ("watchdog_resume", "kill -STOP -> Result=watchdog restart -> resume with the persisted handle",
     rows_service.watchdog_resume),
    ("unbind_rebind", "sound card unbound mid-stream -> error; rebound -> capture recovers, no restart",
     rows_devices.unbind_rebind),
    ("journal_fields",
     "journalctl -o json carries EDGED_STATE, WAKE_MODEL, WAKE_SCORE, LIVE_STATE, SESSION_ID",
     rows_security.journal_fields),
    ("security", "systemd-analyze security edged (online) <= 1.5", rows_security.security),
    ("edgectl_roles", "edgectl: operator may, non-member is refused (docs/CONTROL.md)",
     rows_security.edgectl_roles),
    ("credential", "the key arrives by LoadCredential and appears nowhere else", rows_security.credential),
    ("stop_safe", "systemctl stop drives outputs to their safe values (line low)", rows_service.stop_safe),
    ("uninstall", "scripts/uninstall leaves nothing but config and state", rows_security.uninstall),
]


def chosen(only: set[str]) -> list[tuple[str, str, Any]]:
    """The rows to run, in the table's order: all, or those named and start_ready, which the others
    expect to have seen the daemon start (and to have started it, when the set-up stopped it to
    change its code).  Without it a `--break` run of one row failed for want of a daemon, not for
    its break."""
    if not only:
        return list(SCENARIOS)
    return [row for row in SCENARIOS if row[0] in only or row[0] == "start_ready"]


def hold(cmd_dir: Path) -> None:
    """A development aid (vm-test --hold): run each N.sh dropped into cmd_dir, output to N.out."""
    cmd_dir.mkdir(exist_ok=True)
    log(f"holding: drop N.sh into {cmd_dir} (N.out comes back); create {cmd_dir}/stop to finish")
    while not (cmd_dir / "stop").exists():
        for script in sorted(cmd_dir.glob("*.sh")):
            out = script.with_suffix(".out")
            if out.exists():
                continue
            try:
                r = sh(["bash", str(script)], check=False, timeout=600)
                out.write_text(f"rc={r.returncode}\n{r.stdout}{r.stderr}")
            except Fail as exc:
                out.write_text(f"rc=timeout\n{exc}\n")
        time.sleep(0.5)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--share", type=Path, required=True)
    ap.add_argument("--wheels", type=Path, required=True)
    a = ap.parse_args()
    HOST.attach(a.share)  # limits hold on the host's clock too (waits.py)
    opts = json.loads((a.share / "args.json").read_text()) if (a.share / "args.json").exists() else {}
    rows = chosen(set(opts.get("only") or []))
    bench = Bench(a.share, a.wheels, list(opts.get("breaks") or []), bool(opts.get("fresh_venv")))
    unknown = [b for b in bench.breaks if b not in breaks.BREAKS]
    out: dict[str, Any] = {"boot_uptime_s": float(Path("/proc/uptime").read_text().split()[0]),
                           "breaks": bench.breaks, "kernel": os.uname().release}
    setup_error = None
    try:
        if unknown:
            raise Fail(f"unknown --break {unknown} (known: {', '.join(breaks.BREAKS)})")
        t, watch = time.monotonic(), HostWatch()
        bench.hardware()
        bench.clips = render_speech(Path("/run/vm-bench"))
        bench.timings["hardware_s"] = round(time.monotonic() - t, 1)
        bench.timings["hardware_host_s"] = watch.seconds()
        watch = HostWatch()
        bench.install()
        bench.timings["install_host_s"] = watch.seconds()
        watch = HostWatch()
        bench.start_sim()
        bench.timings["sim_start_host_s"] = watch.seconds()
    except Exception as exc:
        setup_error = f"{type(exc).__name__}: {exc}"
        log(f"set-up failed: {setup_error}\n{traceback.format_exc()}")
    if setup_error is None:
        for name, _desc, fn in rows:
            bench.run(name, lambda fn=fn: fn(bench), LIMITS_S.get(name, SCENARIO_LIMIT_S))
    bench.collect()
    bench.stop_sim()
    out.update({"setup_error": setup_error, "timings": bench.timings, "figures": bench.figures,
                "scenarios": bench.results, "descriptions": {n: d for n, d, _ in SCENARIOS},
                "runner_s": round(time.monotonic() - T0, 1)})
    tmp = a.share / "results.json.tmp"
    tmp.write_text(json.dumps(out, indent=1))
    tmp.replace(a.share / "results.json")
    if opts.get("hold"):
        hold(a.share / "cmd")
    ok = setup_error is None and bench.results and all(r["ok"] for r in bench.results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
