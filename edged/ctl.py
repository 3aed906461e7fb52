"""``edgectl``: talk to the running daemon over its control socket (docs/CONTROL.md).

Global options (``--socket``, ``--config``, ``--json``, ``--verbose``, ``--timeout``) are accepted
anywhere on the line: ``edgectl status --json`` and ``edgectl --json status`` are the same.
Words of ``say`` that start with a dash go after ``--``.

Exit codes: 0 ok, 1 the daemon answered with an error, 2 usage, 69 the daemon is not running,
77 permission denied (``config set`` may not write the file), 78 the config is invalid.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

from . import ctl_status, paths
from .control_client import ControlClient, DaemonError, result
from .errors import EX_ERROR, EX_OK, EX_USAGE, ControlError, EdgedError

render = ctl_status.render  # the generic table, kept under its old name


def render_status(status: Any) -> str:
    return ctl_status.verbose(status)


# -- the command line -------------------------------------------------------------------------------
def _global_options(top: bool) -> argparse.ArgumentParser:
    """The options every (sub)command accepts.  Below the top level their default is SUPPRESS, so a
    subcommand that is not given one does not overwrite what was given before the command."""
    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    g = argparse.ArgumentParser(add_help=False)
    o = g.add_argument_group("global options (anywhere on the line)")
    o.add_argument("--socket", metavar="PATH", default=default(None),
                   help=f"control socket (default: control.socket of the config, else {paths.DEFAULT_SOCKET})")
    o.add_argument("--config", metavar="FILE", default=default(None),
                   help="config file (default $EDGED_CONFIG or /etc/edged/edged.toml)")
    o.add_argument("--json", action="store_true", default=default(False), help="print results as JSON")
    o.add_argument("-v", "--verbose", action="store_true", default=default(False),
                   help="status: every counter")
    o.add_argument("--timeout", type=float, metavar="S", default=default(30.0),
                   help="seconds to wait for an answer (default 30)")
    return g


def volume_arg(text: str) -> str | int:
    if text in ("up", "down"):
        return text
    try:
        level = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a level 0..100, up or down") from None
    if not 0 <= level <= 100:
        raise argparse.ArgumentTypeError(f"{level}: the level is 0..100")
    return level


def _parser() -> argparse.ArgumentParser:
    common = _global_options(top=False)
    p = argparse.ArgumentParser(prog="edgectl", description="Control the running edged daemon.",
                                parents=[_global_options(top=True)])

    def group(parent: Any, name: str, help: str, dest: str = "action", required: bool = True) -> Any:
        cmd = parent.add_parser(name, help=help, parents=[common])
        return cmd, cmd.add_subparsers(dest=dest, metavar="ACTION", required=required)

    def leaf(parent: Any, name: str, help: str) -> argparse.ArgumentParser:
        return parent.add_parser(name, help=help, parents=[common])

    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    leaf(sub, "status", "state, Live session, wake word, audio, volume, timers, GPIO, problems")
    _, csub = group(sub, "config", "show, get, set or validate the configuration")
    leaf(csub, "show", "the daemon's running configuration")
    leaf(csub, "get", "one key, e.g. wake.threshold").add_argument("key")
    s = leaf(csub, "set", "set a key (TOML value) in the daemon's config file, then reload it")
    s.add_argument("key")
    s.add_argument("value")
    v = leaf(csub, "validate", "check a config file as you (no daemon needed)")
    v.add_argument("file", nargs="?")
    v.add_argument("--portable", action="store_true",
                   help="skip checks of files the config names (for a file meant for another machine)")
    leaf(sub, "reload", "re-read the config file (like systemctl reload edged)")
    _, gsub = group(sub, "gpio", "list GPIO devices or set an output")
    leaf(gsub, "list", "devices (id, name, kind, value)")
    gs = leaf(gsub, "set", "set an output: on/off, true/false or 0..1")
    gs.add_argument("name", help="the device's id or name")
    gs.add_argument("value")
    vol = leaf(sub, "volume", "show the volume, or set it: a level 0..100, up or down")
    vol.add_argument("level", nargs="?", type=volume_arg, metavar="N|up|down")
    _, tsub = group(sub, "timers", "list timers and alarms, cancel one, stop the ringing", required=False)
    leaf(tsub, "list", "timers and alarms (the default)")
    leaf(tsub, "cancel", "cancel one timer or alarm").add_argument("id")
    leaf(tsub, "stop", "stop the ringing")
    leaf(sub, "wake", "open a turn as if the wake word was heard")
    leaf(sub, "say", "send a text turn to the model (words starting with - after --)").add_argument(
        "text", nargs="+")
    leaf(sub, "snapshot", "take a camera picture").add_argument(
        "file", nargs="?", help="JPEG file (default snapshot-<time>.jpg)")
    _, ssub = group(sub, "session", "Live session commands")
    leaf(ssub, "reset", "forget the resumption handle and start a fresh session")
    leaf(sub, "mute", "microphone mute: on, off, or toggle without argument").add_argument(
        "on", nargs="?", choices=["on", "off"])
    leaf(sub, "events", "print events as JSON lines until Ctrl-C")
    leaf(sub, "doctor", "check the installation (works without the daemon)").add_argument(
        "--live", action="store_true", help="also one short real Live session: set-up, a text turn, a tool call")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return _parser().parse_args(argv)


# -- helpers --------------------------------------------------------------------------------------
def gpio_value(text: str) -> bool | float | str:
    low = text.strip().lower()
    if low in ("on", "true", "yes", "high"):
        return True
    if low in ("off", "false", "no", "low"):
        return False
    try:
        return float(low) if any(c in low for c in ".e") else int(low)
    except ValueError:
        return text


def socket_path(args: argparse.Namespace) -> str:
    return args.socket or paths.control_socket(args.config)


def _print(result: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    elif isinstance(result, (dict, list)):
        print("\n".join(render(result)))
    elif result is not None:
        print(result)


NEWER = {"volume": "volume", "timers.list": "timers", "timers.cancel": "timers", "timers.stop": "timers"}


def request_newer(client: ControlClient, cmd: str, **args: Any) -> Any:
    """A command that older daemons do not have: "unknown command" becomes a clear message."""
    answer = client.call(cmd, **args)
    if not answer["ok"] and answer.get("kind") == "usage" and "unknown command" in str(answer.get("error")):
        raise ControlError(f"{NEWER[cmd]}: the running edged does not have `{cmd}` (it is older than this "
                           "edgectl): update edged and restart it")
    return result(answer)


def _timers_text(result: Any) -> str:
    items = result.get("timers", result.get("items")) if isinstance(result, dict) else result
    if not isinstance(items, list):
        return "\n".join(render(result))
    if not items:
        return "no timers or alarms"
    rows = [(str(x.get("id", "?")), ctl_status.timer_line(x)) if isinstance(x, dict) else ("?", str(x))
            for x in items]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{i:<{width}}  {text}" for i, text in rows)


# -- commands -------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    cmd, action = args.command, getattr(args, "action", None)
    if cmd == "config" and action == "validate":
        from . import ctl_config  # noqa: PLC0415

        return ctl_config.validate(args.file or args.config, portable=args.portable, as_json=args.json)
    if cmd == "doctor":
        from .service import doctor  # noqa: PLC0415

        return doctor.main(config_path=args.config, socket_path=args.socket, as_json=args.json,
                           live=getattr(args, "live", False))
    client = ControlClient(socket_path(args), timeout=args.timeout)
    if cmd == "status":
        result = client.request("status")
        if args.json:
            print(json.dumps(result, indent=2, default=str))
        else:
            print(ctl_status.verbose(result) if args.verbose
                  else ctl_status.summary(result, colour=ctl_status.use_colour(sys.stdout)))
        return EX_OK
    if cmd == "events":
        try:
            for event in client.events():
                print(json.dumps(event), flush=True)
        except KeyboardInterrupt:
            pass
        return EX_OK
    if cmd == "snapshot":
        return _snapshot(client, args)
    if cmd == "config" and action == "set":
        from . import config, ctl_config  # noqa: PLC0415

        return ctl_config.run_set(client, args.config or config.default_path(), args.key, args.value, args.json)
    if cmd == "gpio" and action == "list":
        result = client.request("gpio.list")
        print(json.dumps(result, indent=2, default=str) if args.json else "\n".join(ctl_status.gpio_table(result)))
        return EX_OK
    if cmd == "timers":
        which = action or "list"
        result = request_newer(client, f"timers.{which}", **({"id": args.id} if which == "cancel" else {}))
        print(json.dumps(result, indent=2, default=str) if args.json
              else _timers_text(result) if which == "list" else "\n".join(render(result)))
        return EX_OK
    if cmd == "config":
        request = {"show": {}, "get": {"key": getattr(args, "key", None)}}[action]
        result = client.request(f"config.{action}", **request)
    elif cmd == "gpio":
        result = client.request("gpio.set", name=_device_id(args.name), value=gpio_value(args.value))
    elif cmd == "volume":
        level = args.level
        result = request_newer(client, "volume", **({} if level is None else {"step": level}
                                                    if isinstance(level, str) else {"level": level}))
    elif cmd == "say":
        result = client.request("say", text=" ".join(args.text))
    elif cmd == "session":
        result = client.request("session.reset")
    elif cmd == "mute":
        result = client.request("mute", on=None if args.on is None else args.on == "on")
    else:  # reload, wake
        result = client.request(cmd)
    _print(result, args.json)
    return EX_OK


def _device_id(name: str) -> str:
    """``gpio set "kitchen light" on``: the daemon knows devices by id."""
    from .config import device_id  # noqa: PLC0415

    return device_id(name) or name


def _snapshot(client: ControlClient, args: argparse.Namespace) -> int:
    result = client.request("snapshot")
    try:
        jpeg = base64.b64decode(result["jpeg_b64"], validate=True)
    except (TypeError, KeyError, ValueError):
        raise ControlError("the daemon's snapshot answer has no valid jpeg_b64") from None
    path = Path(args.file or time.strftime("snapshot-%Y%m%d-%H%M%S.jpg"))
    try:
        path.write_bytes(jpeg)
    except OSError as exc:
        raise ControlError(f"cannot write {path}: {exc.strerror or exc}") from None
    if args.json:
        print(json.dumps({"file": str(path), "bytes": len(jpeg)}))
    else:
        print(f"{path} ({len(jpeg)} bytes)")
    return EX_OK


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0) if isinstance(exc.code, int) else EX_USAGE
    try:
        return run(args)
    except DaemonError as exc:
        print(f"edgectl: {args.command}: {exc} ({exc.kind})", file=sys.stderr)
        return EX_ERROR
    except EdgedError as exc:
        print(f"edgectl: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # edgectl events | head
        return EX_OK


if __name__ == "__main__":
    sys.exit(main())
