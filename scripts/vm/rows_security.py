"""The VM bench's rows on what the service exposes and leaves behind: its journal fields
(journal_fields), its systemd-analyze exposure (security), who may use edgectl (edgectl_roles), the
key by LoadCredential and nowhere else (credential), and scripts/uninstall (uninstall).  Each row is
a function of the run's Bench (harness.py); scripts/vm/runner.py lists them.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import breaks  # the deliberate faults: --break outsider adds the non-member to the group
from guestkit import (
    DROPIN,
    ETC,
    GPIO,
    LIGHT_LINE,
    OPERATOR,
    OUTSIDER,
    SIM_DIR,
    SRC,
    STATE,
    edgectl,
    journal,
    unit_props,
)
from waits import Fail, sh

if TYPE_CHECKING:
    from harness import Bench

# The uninstall row is bound by disk waits (the venv's thousands of files, a scan of the whole disk):
# 13-34 s of host time, but up to 761 s of the guest's clock, which jumps ahead while the guest
# waits (waits.py).  Its two steps get 300 s each, on both clocks (runner.py's LIMITS_S).
IO_BOUND_S = 300.0


def journal_fields(bench: Bench) -> str:
    entries = journal()
    want: dict[str, str | None] = {"EDGED_STATE": None, "LIVE_STATE": None, "SESSION_ID": None}
    if bench.realtime:  # a wake word was heard (wake_tool_reply ran)
        want.update({"WAKE_MODEL": "hey_jarvis", "WAKE_SCORE": None})
    seen: dict[str, set[str]] = {k: set() for k in want}
    for e in entries:
        for k in want:
            if k in e and e.get("_SYSTEMD_UNIT") == "edged.service":
                seen[k].add(str(e[k]))
    missing = [k for k, v in seen.items() if not v]
    if missing:
        raise Fail(f"no journal entry of edged.service carries {', '.join(missing)}")
    wrong = [k for k, v in want.items() if v is not None and v not in seen[k]]
    if wrong:
        raise Fail(f"unexpected values: { {k: sorted(seen[k]) for k in wrong} }")
    if "idle" not in seen["EDGED_STATE"] or "error" not in seen["EDGED_STATE"]:
        raise Fail(f"EDGED_STATE values {sorted(seen['EDGED_STATE'])}")
    return "; ".join(f"{k}={','.join(sorted(v)[:4])}" for k, v in seen.items())


def security(bench: Bench) -> str:
    out = sh("systemd-analyze security --no-pager edged.service", check=False).stdout
    m = re.search(r"Overall exposure level for edged\.service:\s*([\d.]+)", out)
    if not m:
        raise Fail(f"no exposure level in: {out[-400:]}")
    score = float(m.group(1))
    bench.figures["exposure_online"] = score
    if score > 1.5:
        raise Fail(f"exposure {score} > 1.5")
    return f"online exposure {score}"


def edgectl_roles(bench: Bench) -> str:
    for user in (OPERATOR, OUTSIDER):
        if sh(["id", "-u", user], check=False).returncode != 0:
            sh(["useradd", "--create-home", "--shell", "/bin/bash", user])
    # docs/CONTROL.md: members of the control group (default: the service's group edged) may
    # use edgectl: `usermod -aG edged USER`; anyone else is refused.
    sh(["usermod", "-aG", "edged", OPERATOR])
    breaks.users_made(bench)
    r = edgectl("--json", "status", user=OPERATOR, check=False)
    if r.returncode != 0:
        raise Fail(f"operator: edgectl status exited {r.returncode}: {r.stderr.strip()}")
    st = json.loads(r.stdout)
    if "state" not in st:
        raise Fail(f"operator: status has no state: {r.stdout[:200]}")
    r2 = edgectl("status", user=OUTSIDER, check=False)
    r3 = edgectl("gpio", "set", "kitchen_light", "on", user=OUTSIDER, check=False)
    for r_, what in ((r2, "status"), (r3, "gpio set")):
        if r_.returncode == 0:
            raise Fail(f"non-member: edgectl {what} succeeded: {r_.stdout[:200]}")
        if "permission" not in (r_.stderr + r_.stdout).lower():
            raise Fail(f"non-member: edgectl {what} exited {r_.returncode} without saying permission: "
                       f"{r_.stderr.strip()[:200]}")
    if GPIO.value(LIGHT_LINE) == 1 and st["gpio"].get("kitchen_light") in (False, 0):
        raise Fail("a non-member switched the light")
    return (f"operator: status ok (state {st['state']}); non-member: status exit {r2.returncode}, "
            f"gpio set exit {r3.returncode}, both refused with permission")


def credential(bench: Bench) -> str:
    pid = unit_props()["MainPID"]
    cred = Path("/run/credentials/edged.service/gemini-api-key")
    if not cred.is_file() or cred.read_text().strip() != bench.key:
        raise Fail(f"{cred} is missing or does not hold the key")
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    if not any(e.startswith(b"CREDENTIALS_DIRECTORY=") for e in environ):
        raise Fail("the daemon has no $CREDENTIALS_DIRECTORY")
    key = bench.key.encode()
    where: list[str] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        if key in (task / "environ").read_bytes():
            where.append(f"environment of thread {task.name}")
    for child in sh(f"pgrep -P {pid}", check=False).stdout.split():
        if key in Path(f"/proc/{child}/environ").read_bytes():
            where.append(f"environment of child {child}")
    exported = sh(["journalctl", "-b", "-o", "export", "--no-pager"], timeout=120, text=False).stdout
    if key in exported:
        where.append("the journal")
    for d in (STATE, Path("/run/edged"), SIM_DIR):
        for f in d.rglob("*"):
            if f.is_file() and key in f.read_bytes():
                where.append(str(f))
    for user in (None, OPERATOR):
        if key in edgectl("--json", "status", user=user).stdout.encode():
            where.append(f"edgectl status as {user or 'root'}")
    if key in edgectl("--json", "config", "show").stdout.encode():
        where.append("edgectl config show")
    if where:
        raise Fail(f"the key leaked into: {', '.join(where)}")
    mode = oct(cred.stat().st_mode & 0o777)
    return f"key in {cred} (mode {mode}), $CREDENTIALS_DIRECTORY set; not in environ, journal, state, status"


def uninstall(bench: Bench) -> str:
    bench.collect()
    bench.stop_sim()
    # the bench's own drop-ins (and those of --break), not the installer's
    shutil.rmtree(DROPIN.parent, ignore_errors=True)
    r = sh([str(SRC / "scripts/uninstall")], timeout=IO_BOUND_S, check=False)
    (bench.share / "uninstall.log").write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        raise Fail(f"scripts/uninstall exited {r.returncode}: {r.stderr[-400:]}")
    sh("systemctl daemon-reload")
    left = sh(r"find / -xdev \( -path /proc -o -path /sys -o -path /root/src -o -path /mnt \) -prune -o "
              r"\( -iname '*edged*' -o -iname '*edgectl*' \) -print", check=False,
              timeout=IO_BOUND_S).stdout.split()
    allowed = (str(ETC), str(STATE))
    stray = [p for p in left if not p.startswith(allowed)]
    units = sh("systemctl list-units --all --no-legend 'edged.*'", check=False).stdout.strip()
    if units:
        stray.append(f"unit still loaded: {units}")
    if sh("pgrep -u edged", check=False).stdout.strip():
        stray.append("processes of user edged")
    if stray:
        raise Fail(f"left behind: {stray[:10]}")
    kept = [p for p in (ETC / "edged.toml", ETC / "gemini-api-key", STATE / "models", STATE / "live_handle.json")
            if p.exists()]
    if len(kept) != 4:
        raise Fail(f"config or state not kept: only {kept}")
    return f"only {ETC} and {STATE} remain (config, key, models, handle kept)"
