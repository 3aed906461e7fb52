"""``edged models fetch|check``: the command line over edged.audio.models (which imports no config)."""

from __future__ import annotations

import sys
from pathlib import Path

from .models import FIX_HINT, check, fetch


def cli(args) -> int:
    """``edged models fetch|check [--config FILE] [--dir DIR]``."""
    if getattr(args, "dir", None):
        d = Path(args.dir)
        names = None
    else:
        from ..config import load  # a CLI entry: above both config and models

        cfg = load(getattr(args, "config", None))
        d = cfg.models_dir
        names = list(cfg.wake.models)
    if args.action == "fetch":
        installed = fetch(d)
        print(f"{d}: installed {', '.join(installed)}" if installed else f"{d}: models already complete")
    problems = check(d, None) if names is None else sorted(set(check(d, None) + check(d, names)))
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s); {FIX_HINT}", file=sys.stderr)
        return 1
    if args.action == "check":
        print(f"{d}: all models present and verified")
    return 0
