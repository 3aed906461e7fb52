"""``edgectl``: talk to the running daemon over its control socket (docs/CONTROL.md).

Exit codes: 0 ok, 1 the daemon answered with an error, 2 usage, 69 the daemon is not
running, 78 the config is invalid (``config validate``).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

from .control_client import DEFAULT_SOCKET, ControlClient, DaemonError
from .errors import EX_CONFIG, EX_ERROR, EX_OK, EX_USAGE, ConfigError, ControlError, EdgedError


# -- rendering ----------------------------------------------------------------------------
def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    return (f"{d}d{h:02d}h{m:02d}m" if d else f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s")


def _scalar(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) and key.endswith(("_s", "uptime", "age")):
        return _duration(float(value))
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _label(key: str) -> str:
    for suffix in ("_s",):
        key = key.removesuffix(suffix)
    return key.replace("_", " ")


def render(value: Any, indent: int = 0, key: str = "") -> list[str]:
    """Nested dicts/lists as an indented two-column table."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return [pad + "-"]
        width = max(len(_label(str(k))) for k in value)
        lines: list[str] = []
        for k, v in value.items():
            k = str(k)
            if isinstance(v, dict) or (isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v)):
                lines.append(f"{pad}{_label(k)}:")
                lines += render(v, indent + 1, k)
            else:
                lines.append(f"{pad}{_label(k):<{width}}  {_flat(k, v)}")
        return lines
    if isinstance(value, list):
        out: list[str] = []
        for item in value:
            sub = render(item, indent + 1, key)
            out.append(f"{pad}- {sub[0].strip()}")
            out += sub[1:]
        return out or [pad + "-"]
    return [pad + _scalar(key, value)]


def _flat(key: str, value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_scalar(key, x) for x in value) if value else "-"
    return _scalar(key, value)


def render_status(status: Any) -> str:
    if not isinstance(status, dict):
        return "\n".join(render(status))
    first = {k: status[k] for k in ("state", "uptime_s", "uptime") if k in status}
    rest = {k: v for k, v in status.items() if k not in first and k != "gpio"}
    lines = render(first) + render(rest)
    gpio = status.get("gpio")
    if isinstance(gpio, dict):  # device names are identifiers: a table, names as they are
        lines.append("gpio:" if gpio else "gpio: -")
        for name, dev in gpio.items():
            dev = dev if isinstance(dev, dict) else {"value": dev}
            value = dev.get("value")
            shown = {True: "on", False: "off", None: "-"}.get(value, value) if not isinstance(value, list) else value
            health = "ok" if dev.get("ok", True) else f"FAILED: {dev.get('error')}"
            lines.append(f"  {name:<16} {dev.get('kind', ''):<14} {shown!s:<8} {dev.get('room') or '':<12} {health}")
    return "\n".join(lines)


# -- commands -----------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgectl", description="Control the running edged daemon.")
    p.add_argument("--socket", metavar="PATH", help=f"control socket (default: control.socket of the config, "
                                                     f"else {DEFAULT_SOCKET})")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--config", metavar="FILE", help="config file (default $EDGED_CONFIG or /etc/edged/edged.toml)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer (default 30)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("status", help="state, Live session, wake word, audio, GPIO, camera, last error")
    cfg = sub.add_parser("config", help="show, get, set or validate the configuration")
    csub = cfg.add_subparsers(dest="action", metavar="ACTION", required=True)
    csub.add_parser("show", help="the daemon's running configuration")
    g = csub.add_parser("get", help="one key, e.g. wake.threshold")
    g.add_argument("key")
    s = csub.add_parser("set", help="set a key (TOML value), validate, save and reload")
    s.add_argument("key")
    s.add_argument("value")
    v = csub.add_parser("validate", help="check a config file (works without the daemon)")
    v.add_argument("file", nargs="?")
    sub.add_parser("reload", help="re-read the config file (like systemctl reload edged)")
    gp = sub.add_parser("gpio", help="list GPIO devices or set an output")
    gsub = gp.add_subparsers(dest="action", metavar="ACTION", required=True)
    gsub.add_parser("list", help="devices and their states")
    gs = gsub.add_parser("set", help="set an output: on/off, true/false or 0..1")
    gs.add_argument("name")
    gs.add_argument("value")
    sub.add_parser("wake", help="open a turn as if the wake word was heard")
    say = sub.add_parser("say", help="send a text turn to the model")
    say.add_argument("text", nargs="+")
    snap = sub.add_parser("snapshot", help="take a camera picture")
    snap.add_argument("file", nargs="?", help="JPEG file (default snapshot-<time>.jpg)")
    sess = sub.add_parser("session", help="Live session commands")
    ssub = sess.add_subparsers(dest="action", metavar="ACTION", required=True)
    ssub.add_parser("reset", help="forget the resumption handle and start a fresh session")
    mute = sub.add_parser("mute", help="microphone mute: on, off, or toggle without argument")
    mute.add_argument("on", nargs="?", choices=["on", "off"])
    sub.add_parser("events", help="print events as JSON lines until Ctrl-C")
    doc = sub.add_parser("doctor", help="check the installation (works without the daemon)")
    doc.add_argument("--live", action="store_true",
                     help="also one short real Live session: set-up, a text turn, a read-only tool call")
    return p


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
    if args.socket:
        return args.socket
    from . import config  # noqa: PLC0415 - pydantic import only when needed

    try:
        return config.load(args.config).control.socket
    except EdgedError:
        return DEFAULT_SOCKET


def _print(result: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    elif isinstance(result, (dict, list)):
        print("\n".join(render(result)))
    elif result is not None:
        print(result)


def _validate(args: argparse.Namespace) -> int:
    from . import config  # noqa: PLC0415

    try:
        cfg = config.load(args.file or args.config)
    except ConfigError as exc:
        if args.json:
            errors = getattr(exc, "errors", [exc])
            print(json.dumps({"valid": False, "errors": [str(e) for e in errors]}, indent=2))
        else:
            print(str(exc), file=sys.stderr)
        return EX_CONFIG
    if args.json:
        print(json.dumps({"valid": True, "file": cfg.path}))
    else:
        print(f"{cfg.path}: ok")
    return EX_OK


def run(args: argparse.Namespace) -> int:
    if args.command == "config" and args.action == "validate":
        return _validate(args)
    if args.command == "doctor":
        from .service import doctor  # noqa: PLC0415

        return doctor.main(config_path=args.config, socket_path=args.socket, as_json=args.json,
                           live=getattr(args, "live", False))
    client = ControlClient(socket_path(args), timeout=args.timeout)
    cmd = args.command
    if cmd == "status":
        result = client.request("status")
        print(json.dumps(result, indent=2, default=str) if args.json else render_status(result))
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
    if cmd == "config":
        request: dict[str, Any] = {"show": {}, "get": {"key": getattr(args, "key", None)},
                                   "set": {"key": getattr(args, "key", None), "value": getattr(args, "value", None)}
                                   }[args.action]
        result = client.request(f"config.{args.action}", **request)
    elif cmd == "gpio":
        result = (client.request("gpio.list") if args.action == "list"
                  else client.request("gpio.set", name=args.name, value=gpio_value(args.value)))
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
        args = _parser().parse_args(argv)
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
