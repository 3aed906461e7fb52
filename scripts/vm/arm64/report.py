#!/usr/bin/env python3
"""scripts/vm-arm64's report (standard library only): the guest's results.json and the host's clip
scores -> a short table on stdout and the bench JSON.

    report.py RUN [--json OUT] [--boot-s S] [--wall-s S] [--image-s S] [--wheels-s S] [--image-key K] [--clock C]

Exit 0 when the probe ran to the end, the wake clip scored >= 0.5 and the non-wake clip < 0.5 in
the guest, and the ALSA card played; lgpio's result is reported, not judged (the guest may have no
gpiochip).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def rows(doc: dict[str, Any]) -> tuple[list[tuple[str, str, str]], bool]:
    """(what, result, detail) rows and whether the run is a success."""
    out: list[tuple[str, str, str]] = []
    ok = True
    g = doc.get("guest") or {}
    steps = g.get("steps", {})
    out.append(("boot", f"{doc.get('boot_s')} s host", f"guest uptime {g.get('uptime_at_probe_s')} s at the probe; "
                f"kernel {g.get('kernel')} {g.get('machine')}"))
    for name in ("venv", "pip_install"):
        s = steps.get(name)
        good = bool(s) and s["rc"] == 0
        ok &= good
        out.append((name, "PASS" if good else "FAIL", f"{s['seconds']} s" + ("" if good else f": {s['output'][-200:]}")
                    if s else "did not run"))
    wake = g.get("wake") or {}
    clips = wake.get("clips") or {}
    hw = (doc.get("host") or {}).get("clips") or {}
    host_wake = hw.get((doc.get("host") or {}).get("wake_clip"), {}).get("peak")
    w, n = clips.get("wake", {}).get("peak"), clips.get("nonwake", {}).get("peak")
    good = w is not None and n is not None and w >= 0.5 > n
    ok &= good
    mpf = wake.get("ms_per_frame") or {}
    out.append(("wake word (onnxruntime)", "PASS" if good else "FAIL",
                f"peak wake {w} (host {host_wake}), non-wake {n} (host {hw.get('nonwake', {}).get('peak')}); "
                f"{mpf.get('mean')} ms mean / {mpf.get('median')} ms median per 80 ms frame "
                f"(host median {(doc.get('host') or {}).get('ms_per_frame', {}).get('median')} ms); "
                f"onnxruntime {wake.get('onnxruntime')}, numpy {wake.get('numpy')}" if wake else
                (steps.get("wake") or steps.get("models") or {}).get("output", "did not run")[-300:]))
    gp = g.get("gpio")
    if gp:
        opened = [c for c in gp["chips"] if c.get("opened")]
        detail = f"lgpio {gp['lgpio']}; " + ("; ".join(
            f"{c['dev']} {c.get('label') or c.get('name')} {c.get('lines')} lines" if c.get("opened")
            else f"{c['dev']}: {c.get('error')}" for c in gp["chips"]) or "no /dev/gpiochip* in the guest")
        loop = gp.get("gpio_sim_loop")
        if loop:
            detail += (f"; gpio-sim loop: lgpio output seen {loop.get('output_seen_by_sim')}, pull-up/down read "
                       f"{loop.get('input_read_pull_up_down')}" if "error" not in loop else f"; gpio-sim loop: {loop['error']}")
        else:
            detail += f"; no gpio-sim chip: {(g.get('gpio_sim') or {}).get('modprobe', {}).get('output', 'not tried')[-150:]}"
        result = "PASS (gpio-sim loop)" if loop and loop.get("ok") else "FAIL (gpio-sim loop)" if loop else \
            "opens a chip" if opened else "no chip opened"
        out.append(("lgpio", result, detail))
    else:
        out.append(("lgpio", "FAIL", (steps.get("gpio") or {}).get("output", "did not run")[-300:]))
        ok = False
    alsa = g.get("alsa") or {}
    rec = alsa.get("arecord") or {}
    good = (alsa.get("modprobe") or {}).get("rc") == 0 and "Loopback" in (alsa.get("aplay_l") or {}).get("output", "") \
        and (alsa.get("aplay_clip") or {}).get("rc") == 0
    ok &= good
    out.append(("snd-aloop", "PASS" if good else "FAIL",
                f"aplay -l lists Loopback: {'Loopback' in (alsa.get('aplay_l') or {}).get('output', '')}; "
                f"clip played rc {(alsa.get('aplay_clip') or {}).get('rc')}, recorded back "
                f"{rec.get('nonzero_samples')} non-zero samples of {rec.get('bytes', 0) // 2}, "
                f"the clip's speech found bit-exact: {rec.get('clip_found_bit_exact')}"))
    return out, ok and "uptime_at_end_s" in g


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="report.py")
    ap.add_argument("run", type=Path)
    ap.add_argument("--json", type=Path)
    for k in ("boot-s", "wall-s", "image-s", "wheels-s"):
        ap.add_argument(f"--{k}", type=float)
    ap.add_argument("--image-key")
    ap.add_argument("--clock")
    args = ap.parse_args(argv)
    res = args.run / "results.json"
    if not res.exists():
        print(f"vm-arm64: the guest wrote no {res}; see {args.run}/console.log", file=sys.stderr)
        return 1
    host = args.run / "host.json"
    doc: dict[str, Any] = {
        "bench": "vm-arm64", "boot_s": args.boot_s, "wall_s": args.wall_s, "image_build_s": args.image_s,
        "wheels_s": args.wheels_s, "image_key": args.image_key, "clock": args.clock,
        "qemu": "qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 1 -accel tcg",
        "pins": (args.run / "pins.txt").read_text().split() if (args.run / "pins.txt").exists() else None,
        "host": json.loads(host.read_text()) if host.exists() else None,
        "guest": json.loads(res.read_text(encoding="utf-8")),
    }
    table, ok = rows(doc)
    doc["ok"] = ok
    print("| what | result | detail |\n|---|---|---|")
    for what, result, detail in table:
        print(f"| {what} | {result} | {' '.join(str(detail).split()).replace('|', '/')} |")
    print(f"\nwhole VM run {args.wall_s} s (host clock)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        print(f"results: {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
