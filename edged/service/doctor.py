"""``edgectl doctor``: is this installation able to run?  Works with or without the daemon.

Each check gives ok / warn / fail and, when not ok, what to do.  Exit 0 when nothing failed.
Hardware probes run in a daemon thread with a timeout, so a device that hangs on open (a
FIFO-backed PCM, a wedged driver) cannot hang the doctor.
"""

from __future__ import annotations

import glob
import importlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..control_client import ControlClient
from ..errors import EdgedError

UNIT_PATHS = ("/etc/systemd/system/edged.service", "/lib/systemd/system/edged.service")
GOOGLE = ("generativelanguage.googleapis.com", 443)
CREDENTIAL_FILE = "/etc/edged/gemini-api-key"


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


def _timed(fn: Callable[[], Any], timeout: float) -> Any:
    """fn() in a daemon thread; TimeoutError if it does not return in time."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    t = threading.Thread(target=target, name="doctor-probe", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def check_config(path: str | None) -> tuple[Check, Any]:
    from .. import config  # noqa: PLC0415

    try:
        cfg = config.load(path)
    except EdgedError as exc:
        return Check("config", "fail", str(exc), "fix the file; `edgectl config validate FILE` re-checks it"), \
            config.Config()
    return Check("config", "ok", f"{cfg.path} is valid"), cfg


def check_alsa(cfg: Any, timeout: float) -> list[Check]:
    try:
        alsaaudio = importlib.import_module("alsaaudio")
    except ImportError:
        return [Check("audio", "fail", "pyalsaaudio is not installed", "pip install 'edged[audio]'")]
    out = []
    for name, kind, device in (("audio capture", alsaaudio.PCM_CAPTURE, cfg.audio.capture_device),
                               ("audio playback", alsaaudio.PCM_PLAYBACK, cfg.audio.playback_device)):
        def probe(kind: int = kind, device: str = device) -> None:
            pcm = alsaaudio.PCM(type=kind, mode=alsaaudio.PCM_NONBLOCK, device=device)
            pcm.close()

        try:
            _timed(probe, timeout)
            out.append(Check(name, "ok", f"{device!r} opens"))
        except TimeoutError as exc:
            out.append(Check(name, "warn", f"{device!r}: {exc}", "is another program holding it?"))
        except Exception as exc:
            out.append(Check(name, "fail", f"{device!r}: {exc}",
                             "list devices with `arecord -L` / `aplay -L` and set audio.capture_device / "
                             "audio.playback_device; the service user needs the audio group"))
    return out


def check_models(cfg: Any) -> Check:
    try:
        models = importlib.import_module("edged.audio.models")
        check = models.check
    except (ImportError, AttributeError):
        return Check("wake models", "warn", "edged.audio.models is not available: cannot check")
    try:
        problems = check(cfg.models_dir, list(cfg.wake.models))
    except Exception as exc:
        problems = [f"{type(exc).__name__}: {exc}"]
    if problems:
        return Check("wake models", "fail", "; ".join(str(p) for p in problems),
                     f"edged models fetch --dir {cfg.models_dir}")
    return Check("wake models", "ok", f"{', '.join(cfg.wake.models)} in {cfg.models_dir} (sha256 checked)")


def check_camera(cfg: Any) -> Check:
    backend = cfg.camera.backend
    if backend == "none":
        return Check("camera", "ok", "disabled (camera.backend = \"none\")")
    module = {"picamera2": "picamera2", "synthetic": "PIL"}[backend]
    try:
        importlib.import_module(module)
    except Exception as exc:
        fix = ("apt install python3-picamera2 and make the venv with --system-site-packages (scripts/install)"
               if backend == "picamera2" else "pip install 'edged[camera]'")
        return Check("camera", "fail", f"{backend}: cannot import {module}: {exc}", fix)
    return Check("camera", "ok", f"{backend} backend importable")


def check_gpio(cfg: Any) -> Check:
    if cfg.gpio.pin_factory == "mock":
        return Check("gpio", "ok", "mock pin factory (simulation)")
    if not cfg.gpio.devices:
        return Check("gpio", "ok", "no GPIO devices configured")
    chips = sorted(glob.glob("/dev/gpiochip*"))
    if not chips:
        return Check("gpio", "fail", "no /dev/gpiochip*: not a Raspberry Pi, or the GPIO driver is missing",
                     "on a Pi check the kernel; elsewhere set gpio.pin_factory = \"mock\"")
    bad = [c for c in chips if not os.access(c, os.R_OK | os.W_OK)]
    if bad and os.geteuid() != 0:
        return Check("gpio", "warn", f"{', '.join(bad)} not writable by this user",
                     "the service user needs the gpio group")
    return Check("gpio", "ok", ", ".join(chips))


def check_api_key(cfg: Any) -> Check:
    from ..secrets import load_api_key  # noqa: PLC0415

    try:
        key = load_api_key(cfg.live.api_key_file, cfg.path)
    except EdgedError as exc:
        return Check("api key", "fail", str(exc), "fix live.api_key_file")
    if key is not None:
        return Check("api key", "ok", f"found ({key.source}; not shown)")
    if Path(CREDENTIAL_FILE).exists():
        return Check("api key", "ok", f"{CREDENTIAL_FILE} exists (the unit loads it as a credential)")
    if cfg.live.base_url:
        return Check("api key", "warn", "no API key (fine for the local emulator at live.base_url)")
    return Check("api key", "fail", "no API key",
                 f"put it in {CREDENTIAL_FILE} (root, mode 0600), or set live.api_key_file or $GEMINI_API_KEY")


def check_endpoint(cfg: Any, timeout: float) -> Check:
    host, port = GOOGLE
    if cfg.live.base_url:
        u = urlparse(cfg.live.base_url)
        host, port = u.hostname or host, u.port or 443
    try:
        ctx = ssl.create_default_context(cafile=cfg.live.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        return Check("live endpoint", "fail", f"live.ca_file {cfg.live.ca_file}: {exc}", "fix live.ca_file")
    t0 = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=host):
            pass
    except (OSError, ssl.SSLError) as exc:
        return Check("live endpoint", "fail", f"{host}:{port}: {exc}",
                     "check the network, DNS, the clock (TLS) and live.base_url / live.ca_file")
    return Check("live endpoint", "ok", f"TLS to {host}:{port} in {(time.monotonic() - t0) * 1000:.0f} ms")


def check_unit(timeout: float) -> Check:
    unit = next((p for p in UNIT_PATHS if Path(p).is_file()), None)
    if unit is None:
        return Check("systemd unit", "warn", "edged.service is not installed", "run scripts/install as root")
    if not shutil.which("systemd-analyze"):
        return Check("systemd unit", "warn", f"{unit}: systemd-analyze not found: hardening not checked")
    try:
        proc = subprocess.run(["systemd-analyze", "security", "--offline=true", unit], capture_output=True,
                              text=True, timeout=timeout * 10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("systemd unit", "warn", f"{unit}: systemd-analyze failed: {exc}")
    score = exposure(proc.stdout)
    if score is None:
        return Check("systemd unit", "warn", f"{unit}: no exposure score in systemd-analyze's output")
    if score > 1.5:
        return Check("systemd unit", "warn", f"{unit}: exposure {score} (shipped unit: 1.5 or less)",
                     "reinstall the unit from systemd/edged.service")
    return Check("systemd unit", "ok", f"{unit}: exposure {score}")


def exposure(text: str) -> float | None:
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", text)
    return float(m.group(1)) if m else None


def check_daemon(cfg: Any, socket_path: str | None, timeout: float) -> Check:
    path = socket_path or cfg.control.socket
    try:
        status = ControlClient(path, timeout=timeout).request("status")
    except EdgedError as exc:
        why = str(exc).split(":")[0]
        return Check("daemon", "warn", why if path in why else f"{why} ({path})",
                     "systemctl start edged; journalctl -u edged for why it stopped")
    state = status.get("state", "?") if isinstance(status, dict) else "?"
    err = status.get("last_error") if isinstance(status, dict) else None
    if state == "error":
        return Check("daemon", "fail", f"running, state error: {err}", "journalctl -u edged")
    return Check("daemon", "ok", f"running, state {state}")


def check_mqtt(cfg: Any, socket_path: str | None, timeout: float) -> Check:
    """Home Assistant over MQTT: the daemon's bridge when it runs, else a probe of the broker."""
    from ..mqtt import doctor as mqtt_doctor  # noqa: PLC0415

    status = None
    if cfg.mqtt.enabled:
        try:
            answer = ControlClient(socket_path or cfg.control.socket, timeout=timeout).request("status")
            status = answer.get("mqtt") if isinstance(answer, dict) else None
        except EdgedError:
            status = None  # the daemon is not running: the broker is probed
        if isinstance(status, dict) and status.get("enabled") is False:
            status = None  # a daemon started before mqtt was enabled: reload it (check_daemon says it runs)
    result, detail, fix = mqtt_doctor.check(cfg.mqtt, status, timeout=timeout)
    return Check("mqtt", result, detail, fix)


def run(config_path: str | None = None, socket_path: str | None = None, *, timeout: float = 3.0,
        live: bool = False) -> list[Check]:
    from ..audio import alsalog  # noqa: PLC0415

    alsalog.install()  # before the first PCM opens: libasound's own lines go to a debug log, not the screen
    first, cfg = check_config(config_path)
    endpoint = check_endpoint(cfg, timeout)
    checks = [first, *check_alsa(cfg, timeout), check_models(cfg), check_camera(cfg), check_gpio(cfg),
              check_api_key(cfg), endpoint, *_live_checks(cfg, endpoint, timeout, live), check_unit(timeout),
              check_daemon(cfg, socket_path, timeout), check_mqtt(cfg, socket_path, timeout)]
    return checks


def _live_checks(cfg: Any, endpoint: Check, timeout: float, live: bool) -> list[Check]:
    """The service's own answers (edged/service/doctor_live.py), once the endpoint is reachable."""
    if endpoint.status != "ok" or first_failed(cfg):
        return []
    from . import doctor_live  # noqa: PLC0415 - the SDK is imported only when it is needed

    steps = doctor_live.check_models(cfg, max(timeout, 10.0))
    if live:
        steps += doctor_live.round_trip(cfg, max(timeout, 20.0))
    return [Check(s.name, s.status, s.detail, s.fix) for s in steps]


def first_failed(cfg: Any) -> bool:
    return not getattr(cfg, "path", "")  # no valid config was loaded: nothing to ask the service about


def main(config_path: str | None = None, socket_path: str | None = None, as_json: bool = False,
         live: bool = False) -> int:
    checks = run(config_path, socket_path, live=live)
    if as_json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        for c in checks:
            print(f"[{c.status:^4}] {c.name}: {c.detail}")
            if c.fix and c.status != "ok":
                print(f"       fix: {c.fix}")
    return 1 if any(c.status == "fail" for c in checks) else 0
