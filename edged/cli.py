"""``edged``: the daemon and its helpers.

    edged run [--config FILE]          run the daemon in the foreground (as systemd does)
    edged sim [--port N] [--scenario F] run the local Live API emulator
    edged models fetch|check           install / verify the wake-word models
    edged precompile --into DIR        optimized byte code for the unit (scripts/install)
    edged demo                         the whole speaker against the emulator (scripts/demo)

Sub-commands import their parts lazily so that ``edged --help`` works on any machine.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import EX_USAGE, EdgedError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edged", description="Smart-speaker daemon for the Gemini Live API.")
    p.add_argument("--version", action="version", version=f"edged {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("--config", metavar="FILE", help="config file (default $EDGED_CONFIG or /etc/edged/edged.toml)")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="override log.level")
    run.set_defaults(entry="edged.daemon:main")

    sim = sub.add_parser("sim", help="run the local Live API emulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=0, help="0 = a free port (printed)")
    sim.add_argument("--scenario", metavar="FILE", help="scenario file (TOML or JSON)")
    sim.add_argument("--cert-dir", metavar="DIR", help="where the self-signed CA and certificate go")
    sim.add_argument("--record", metavar="FILE", help="write every received frame as JSON lines")
    sim.add_argument("--speed", type=float, default=1.0, help="reply audio pace: 1 = real time, 0 = at once")
    sim.add_argument("--pacing", choices=["realtime", "google", "instant"],
                     help="reply audio delivery (default: the scenario's, else realtime); google = bursts "
                          "faster than real time, as the service sends them")
    sim.add_argument("--models", metavar="NAMES", help="comma-separated models the key may use "
                     "(default: every Live model the Gemini API serves)")
    sim.set_defaults(entry="edged.sim.cli:main")

    models = sub.add_parser("models", help="install or check the wake-word models")
    msub = models.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (("fetch", "take the models from the openwakeword 0.5.1 package, checked by sha256"),
                       ("check", "check the models by sha256")):
        m = msub.add_parser(name, help=text)
        m.add_argument("--config", metavar="FILE", help="use wake.models_dir / state.dir from this config")
        m.add_argument("--dir", metavar="DIR", help="models directory (overrides the config)")
    models.set_defaults(entry="edged.audio.models_cli:cli")

    pre = sub.add_parser("precompile", help="write the daemon's optimized byte code (scripts/install runs it)")
    pre.add_argument("--into", metavar="DIR", required=True, help="the unit's PYTHONPYCACHEPREFIX")
    pre.set_defaults(entry="edged.cli:_precompile")
    demo = sub.add_parser("demo", help="the whole speaker against the local emulator")
    demo.add_argument("--out", metavar="DIR", default="out/demo", help="where the WAV, JPEGs and logs go")
    demo.add_argument("--live", action="store_true", help="against Google with a real key and microphone")
    demo.set_defaults(entry="edged.dev.demo:main")
    return p


def _precompile(args: argparse.Namespace) -> int:
    from .startup import precompile

    written, optional = precompile(args.into)
    print(f"edged: {written} modules compiled into {args.into} (the others were current)"
          + (f"; not importable here (optional): {', '.join(optional)}" if optional else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    from .startup import one_blas_thread

    one_blas_thread()  # before any sub-command loads numpy
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "entry", None):
        parser.print_help()
        return EX_USAGE
    module, func = args.entry.split(":")
    try:
        return int(getattr(importlib.import_module(module), func)(args) or 0)
    except EdgedError as exc:
        print(f"edged: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
