"""The VM bench's ``Bench``: the state of one run (the key, the timings, figures and rows), the set-up
of the Pi in a box (hardware(), install(), start_sim(); render_speech() for the clips), running one
scenario row under its limit (run()), and copying the journal and the emulator's record into the
host's share (collect()).  The rows themselves are in rows_*.py; scripts/vm/runner.py runs them.

Standard library only, as the rest of the guest side (guestkit.py).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import breaks  # the deliberate faults: --break NAME, see breaks.py
from guestconf import SIM_SCENARIO, edged_toml
from guestkit import (
    CPUINFO,
    DROPIN,
    ETC,
    GPIO,
    PI_REVISION,
    RECORD,
    SIM_DIR,
    SIM_PORT,
    SRC,
    Skip,
    log,
)
from waits import Fail, HostWatch, join, sh, sh_stamped, step_seconds, wait_for

SCENARIO_LIMIT_S = 240.0


def failed_at_start(install_log: str) -> bool:
    """Whether scripts/install's last traced command (``+ ...``) was its ``systemctl restart``: the
    install itself was done, only the daemon's start failed."""
    traced = [ln.partition("] ")[2] for ln in install_log.splitlines() if ln.partition("] ")[2].startswith("+ ")]
    return bool(traced) and traced[-1].startswith("+ systemctl restart edged.service")


def render_speech(out: Path) -> dict[str, Path]:
    """16 kHz mono WAVs: the wake word then a command, and the wake word alone."""
    out.mkdir(parents=True, exist_ok=True)
    clips = {"wake": "hey jarvis", "command": "turn on the kitchen light"}
    made: dict[str, Path] = {}
    for name, text in clips.items():
        sh(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(out / f"{name}-22k.wav"), text])
        sh(["sox", str(out / f"{name}-22k.wav"), "-r", "16000", "-c", "1", "-b", "16", str(out / f"{name}.wav")])
    # the wake word, a short pause, the command, then silence for the end of the turn
    sh(["sox", str(out / "wake.wav"), str(out / "command.wav"), str(out / "wake_command.wav"),
        "pad", "0.5", "2.0"])
    sh(["sox", str(out / "wake.wav"), str(out / "wake_only.wav"), "pad", "0.5", "1.0"])
    made["wake_command"] = out / "wake_command.wav"
    made["wake_only"] = out / "wake_only.wav"
    return made


class Bench:
    """One run in the guest: what the rows share (the key, the clips, the emulator) and what they
    report (results, timings, figures).  ``realtime`` turns False once the guest proved too slow for
    the wake word in real time (rows_devices.keeps_real_time); later rows then skip what needs it."""

    def __init__(self, share: Path, wheels: Path, breaks_wanted: list[str], fresh_venv: bool = False) -> None:
        self.share, self.wheels = share, wheels
        self.breaks = breaks_wanted
        self.fresh_venv = fresh_venv
        self.key = "vmkey-" + secrets.token_hex(16)
        self.results: list[dict[str, Any]] = []
        self.timings: dict[str, float] = {}
        self.figures: dict[str, Any] = {}
        self.clips: dict[str, Path] = {}
        self.sim: subprocess.Popen[str] | None = None
        self.realtime = True
        # who started the daemon the rows see: scripts/install's own `systemctl restart` (the Pi's
        # way; the emulator comes up after it, and the daemon's reconnect finds it), or start_ready,
        # when the installed code was changed after that start (lgpio added, a --break patch)
        self.daemon_from = "install"
        self.install_start_error: str | None = None

    # -- the Pi in a box --
    def hardware(self) -> None:
        sh("modprobe snd-aloop id=Loopback index=0 pcm_substreams=2")
        sh("getent group gpio >/dev/null || groupadd --system gpio")  # Raspberry Pi OS has it
        # Raspberry Pi OS gives the gpio group the GPIO chips (a udev rule in raspberrypi-sys-mods)
        Path("/etc/udev/rules.d/60-vm-bench-gpio.rules").write_text(
            'SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"\n')
        sh("udevadm control --reload")
        GPIO.create()
        wait_for(lambda: Path("/dev/gpiochip0").exists() and
                 sh("stat -c %G /dev/gpiochip0").stdout.strip() == "gpio", 20, "/dev/gpiochip0 in group gpio")
        wait_for(lambda: Path("/proc/asound/Loopback").exists(), 20, "the Loopback card")
        # gpiozero wants a Pi board revision; the unit sees this copy of /proc/cpuinfo (drop-in below)
        CPUINFO.parent.mkdir(parents=True, exist_ok=True)
        text = Path("/proc/cpuinfo").read_text()
        CPUINFO.write_text(text.rstrip("\n") + f"\n\nHardware\t: BCM2835\nRevision\t: {PI_REVISION}\n"
                           "Model\t\t: Raspberry Pi 4 Model B Rev 1.1 (VM bench)\n")
        # no network in the guest: pip takes everything from the host's wheelhouse
        Path("/etc/pip.conf").write_text(f"[global]\nno-index = true\nfind-links = {self.wheels}\n"
                                         "disable-pip-version-check = true\n")

    def install(self) -> None:
        SIM_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        ETC.mkdir(parents=True, exist_ok=True)
        (ETC / "edged.toml").write_text(edged_toml(SIM_DIR / "certs" / "ca.pem"))
        key_file = ETC / "gemini-api-key"
        key_file.touch(mode=0o600)
        key_file.write_text(self.key + "\n")
        DROPIN.parent.mkdir(parents=True, exist_ok=True)
        # The VM's stand-ins for the Pi, added by the bench only (never by the shipped unit)
        DROPIN.write_text(f"[Service]\nBindReadOnlyPaths={CPUINFO}:/proc/cpuinfo\n")
        if self.fresh_venv:  # the image carries a venv with the dependencies (build-image.sh)
            shutil.rmtree("/opt/edged", ignore_errors=True)
        breaks.before_install(self)
        t = time.monotonic()
        r = sh_stamped([str(SRC / "scripts/install")], timeout=900)  # each line with its host time
        (self.share / "install.log").write_text(r.stdout)
        self.timings["install_s"] = round(time.monotonic() - t, 1)
        steps = step_seconds(r.stdout)
        self.timings["install_steps_host_s"] = steps
        if r.returncode != 0:
            if not failed_at_start(r.stdout):
                raise Fail(f"scripts/install exited {r.returncode}: {r.stdout[-800:]}")
            # every step done but the start: start_ready is the row that reports it
            self.install_start_error = r.stdout[r.stdout.rfind("+ systemctl restart"):][:800]
        changed = False
        # lgpio: on the Pi (aarch64) pyproject's marker installs it; this x86-64 guest adds it (the
        # image's pre-seeded venv has it already)
        if sh(["/opt/edged/venv/bin/python", "-c", "import lgpio"], check=False).returncode != 0:
            t = time.monotonic()
            sh(["/opt/edged/venv/bin/python", "-m", "pip", "install", "-q", "lgpio"], timeout=300)
            self.timings["lgpio_install_s"] = round(time.monotonic() - t, 1)
            changed = True
        changed = breaks.after_install(self) or changed
        if changed:  # the running daemon has the code from before: start_ready starts it again
            sh("systemctl stop edged.service", timeout=60)
            self.daemon_from = "start_ready"

    def start_sim(self) -> None:
        (SIM_DIR / "scenario.toml").write_text(SIM_SCENARIO)
        RECORD.unlink(missing_ok=True)
        t = time.monotonic()
        self.sim = subprocess.Popen(
            ["/opt/edged/venv/bin/edged", "sim", "--host", "127.0.0.1", "--port", str(SIM_PORT),
             "--cert-dir", str(SIM_DIR / "certs"), "--record", str(RECORD),
             "--scenario", str(SIM_DIR / "scenario.toml")],
            stdout=subprocess.PIPE, stderr=open(self.share / "sim.log", "w"), text=True,  # noqa: SIM115
            env={**os.environ, "HOME": str(SIM_DIR)})
        assert self.sim.stdout is not None
        line = self.sim.stdout.readline()
        if "listening" not in line:
            raise Fail(f"edged sim did not start: {line!r}")
        self.timings["sim_start_s"] = round(time.monotonic() - t, 1)
        os.chmod(SIM_DIR / "certs", 0o755)
        log(line.strip())

    def stop_sim(self) -> None:
        if self.sim and self.sim.poll() is None:
            self.sim.terminate()
            try:
                self.sim.wait(10)
            except subprocess.TimeoutExpired:
                self.sim.kill()

    # -- running --
    def run(self, name: str, fn: Callable[[], str | None], limit: float = SCENARIO_LIMIT_S) -> None:
        """Run one scenario in a thread: a scenario that hangs (a blocked write to sysfs, say) fails
        after ``limit`` seconds and the next one runs."""
        log(f"scenario {name}")
        t, watch = time.monotonic(), HostWatch()
        box: dict[str, Any] = {}

        def body() -> None:
            try:
                box["detail"] = fn() or ""
                box["ok"] = True
            except Skip as exc:
                box["ok"], box["detail"], box["skipped"] = True, str(exc), True
            except Fail as exc:
                box["ok"], box["detail"] = False, str(exc)
            except Exception as exc:  # a bug in a scenario is a failure of that row, not of the bench
                box["ok"], box["detail"] = False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}"
        th = threading.Thread(target=body, name=name, daemon=True)
        th.start()
        join(th, limit)
        ok, detail = box.get("ok", False), box.get("detail", f"hung: not finished after {limit:.0f} s")
        took = round(time.monotonic() - t, 2)
        skipped = bool(box.get("skipped"))
        host_s = watch.seconds()
        self.results.append({"name": name, "ok": ok, "skipped": skipped, "seconds": took, "host_seconds": host_s,
                             "detail": detail})
        log(f"  {'SKIP' if skipped else 'PASS' if ok else 'FAIL'} {name} ({took} s, host {host_s} s): {detail}")
        self.collect(quick=True)

    def collect(self, quick: bool = False) -> None:
        sh(f"journalctl -b -u edged.service -o short-monotonic --no-pager > {self.share}/journal-edged.txt",
           check=False)
        if quick:
            return
        sh(f"journalctl -b -u edged.service -o json --no-pager > {self.share}/journal-edged.json", check=False)
        sh(f"journalctl -b -o short-monotonic --no-pager > {self.share}/journal-all.txt", check=False)
        if RECORD.exists():
            shutil.copy(RECORD, self.share / "sim-record.jsonl")
