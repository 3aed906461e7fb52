#!/usr/bin/python3
"""The VM bench's scenarios, run inside the guest as root at boot (scripts/vm/guest/vm-bench-boot).

It sets up the "Pi" (a loopback sound card, a gpio-sim chip, a Pi board revision for gpiozero, an
offline wheelhouse), installs edged with scripts/install, runs the Live emulator (`edged sim`) on
127.0.0.1, then runs every scenario in order, each a pass/fail row with its time, and writes
``results.json``, the journal and the emulator's record into the host's share.

edged is driven only through its public surfaces: scripts/install and scripts/uninstall, systemctl,
journalctl, edgectl, `edged sim`, the config file, the gpio-sim sysfs, aplay/arecord.
Standard library only: this runs on the guest's own python3 before edged is installed.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import breaks  # noqa: E402  (the deliberate faults: --break NAME, see breaks.py)
from waits import HOST, Fail, HostWatch, join, sh, sh_stamped, step_seconds, wait_for  # noqa: E402

SRC = Path(__file__).resolve().parents[2]
sys.path.insert(1, str(SRC))  # edged.control_client (standard library only) for status()
ETC = Path("/etc/edged")
STATE = Path("/var/lib/edged")
SIM_DIR = Path("/var/lib/vm-sim")  # not "edged": the uninstall check looks for anything named edged
RECORD = SIM_DIR / "record.jsonl"
SIM_PORT = 8443
DROPIN = Path("/etc/systemd/system/edged.service.d/50-vm-bench.conf")
CPUINFO = Path("/etc/vm-bench/cpuinfo")
PI_REVISION = "c03111"  # a Raspberry Pi 4 B: gpiozero's LGPIOFactory then uses /dev/gpiochip0
CARD = "Loopback"
CAPTURE_DEV = f"hw:CARD={CARD},DEV=1,SUBDEV=0"  # what is played into DEV=0,SUBDEV=0
PLAYBACK_DEV = f"hw:CARD={CARD},DEV=0,SUBDEV=1"  # recorded back from DEV=1,SUBDEV=1
LIGHT_LINE, BUTTON_LINE = 17, 27
OPERATOR, OUTSIDER = "vmoperator", "vmoutsider"
SCENARIO_LIMIT_S = 240.0
# The uninstall row is bound by disk waits (the venv's thousands of files, a scan of the whole disk):
# 13-34 s of host time, but up to 761 s of the guest's clock, which jumps ahead while the guest
# waits (waits.py).  Its two steps get 300 s each, on both clocks.
IO_BOUND_S = 300.0
LIMITS_S = {"uninstall": 2 * IO_BOUND_S + 60}

T0 = time.monotonic()


def log(msg: str) -> None:
    line = f"[{time.monotonic() - T0:7.1f}] {msg}"
    print(line, flush=True)
    try:  # the serial console reaches the host even if the 9p share does not
        with open("/dev/console", "w") as con:
            con.write(f"vm-bench: {line[:400]}\n")
    except OSError:
        pass


class Skip(Exception):
    """A scenario that cannot run on this guest (the message says why, with the measured figure)."""


# ---- small tools (sh, wait_for and Fail: waits.py, limits on both the guest's and the host's clocks) --
def unit_props(unit: str = "edged.service", *names: str) -> dict[str, str]:
    names = names or ("ActiveState", "SubState", "MainPID", "NRestarts", "StatusText", "Result")
    out = sh(["systemctl", "show", unit, "-p", ",".join(names)]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def edgectl(*args: str, user: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh(["edgectl", *args], user=user, check=check, timeout=30)


def status() -> dict[str, Any]:
    """The daemon's status over its control socket, from this process: every poll through `edgectl`
    started a Python under TCG, about a second of guest time each (edgectl itself is the subject of
    the edgectl_roles row)."""
    from edged.control_client import DEFAULT_SOCKET, ControlClient  # the source tree, on sys.path

    return ControlClient(DEFAULT_SOCKET, timeout=30).request("status")


def journal(unit: str | None = "edged.service", since_cursor: str | None = None) -> list[dict[str, Any]]:
    cmd = ["journalctl", "-o", "json", "--no-pager"]
    if unit:
        cmd += ["-u", unit]
    if since_cursor:
        cmd += ["--after-cursor", since_cursor]
    out = sh(cmd, timeout=60).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def journal_cursor() -> str:
    out = sh(["journalctl", "-n", "0", "--show-cursor", "--no-pager"]).stdout
    m = re.search(r"-- cursor: (\S+)", out)
    return m.group(1) if m else ""


def pid1_messages(since_cursor: str) -> list[str]:
    return [str(e.get("MESSAGE", "")) for e in journal(None, since_cursor) if e.get("_PID") == "1"]


class Record:
    """The emulator's record: one JSON object per frame it received."""

    def frames(self, kind: str | None = None) -> list[dict[str, Any]]:
        if not RECORD.exists():
            return []
        out = []
        for line in RECORD.read_text(encoding="utf-8").splitlines():
            try:
                f = json.loads(line)
            except ValueError:
                continue  # a line being written
            if kind is None or f.get("kind") == kind:
                out.append(f)
        return out

    def count(self, kind: str) -> int:
        return len(self.frames(kind))


REC = Record()


class GpioSim:
    """The gpio-sim chip made through configfs; lines read and pulled through its sysfs."""

    CFG = Path("/sys/kernel/config/gpio-sim/vmbench")

    def create(self, lines: int = 32) -> None:
        sh("modprobe gpio-sim-oot")
        if not self.CFG.exists():
            bank = self.CFG / "bank0"
            bank.mkdir(parents=True)
            (bank / "num_lines").write_text(str(lines))
            (self.CFG / "live").write_text("1")
        sh("udevadm settle -t 10", check=False)

    @property
    def base(self) -> Path:
        dev = (self.CFG / "dev_name").read_text().strip()
        chip = (self.CFG / "bank0" / "chip_name").read_text().strip()
        return Path("/sys/devices/platform") / dev / chip

    @property
    def chip_name(self) -> str:
        return (self.CFG / "bank0" / "chip_name").read_text().strip()

    def value(self, line: int) -> int:
        return int((self.base / f"sim_gpio{line}" / "value").read_text().strip())

    def pull(self, line: int, how: str) -> None:
        (self.base / f"sim_gpio{line}" / "pull").write_text(how)


GPIO = GpioSim()


class GpioTrace:
    """Every value the kernel sets on the gpio-sim chip's lines, from gpiolib's own tracepoint
    (``gpio:gpio_value``, in tracefs).

    A line's sysfs value cannot show a write that is undone at once: when the daemon drives an
    output low and then releases the line, gpio-sim gives it its pull again, and a reader polling
    sysfs on the guest's one vCPU sees the low only if it happens to run in between (a CI run missed
    it).  The tracepoint records each set as gpiolib makes it."""

    TRACE = Path("/sys/kernel/tracing")
    EVENT = TRACE / "events" / "gpio" / "gpio_value" / "enable"

    def start(self) -> str | None:
        """Start recording; returns why it cannot (no tracefs, no gpio events), or None."""
        if not self.EVENT.exists():
            sh("mount -t tracefs nodev /sys/kernel/tracing", check=False)
        if not self.EVENT.exists():
            return "no gpio:gpio_value tracepoint in tracefs"
        self.EVENT.write_text("0")
        (self.TRACE / "trace").write_text("")
        self.EVENT.write_text("1")
        return None

    def stop(self) -> None:
        if self.EVENT.exists():
            self.EVENT.write_text("0")

    @staticmethod
    def number(line: int) -> int:
        """The kernel's global number of the chip's ``line`` (what the tracepoint prints)."""
        dev = str(GPIO.base.parent.resolve()) + "/"
        for chip in Path("/sys/class/gpio").glob("gpiochip*"):
            if str(chip.resolve()).startswith(dev):
                return int((chip / "base").read_text()) + line
        raise Fail(f"no /sys/class/gpio chip under {dev}")

    def sets(self, line: int) -> list[int]:
        """The values set on ``line`` since start(), in order."""
        n = self.number(line)
        text = (self.TRACE / "trace").read_text()
        return [int(v) for g, v in re.findall(r"gpio_value: (\d+) set (-?\d+)", text) if int(g) == n]


GPIO_TRACE = GpioTrace()


def rms(raw: bytes) -> float:
    a = array.array("h")
    a.frombytes(raw[: len(raw) // 2 * 2])
    if not a:
        return 0.0
    return (sum(x * x for x in a) / len(a)) ** 0.5


def loud_ms(raw: bytes, rate: int, threshold: float = 300.0) -> int:
    """Milliseconds of 20 ms blocks whose RMS is over ``threshold`` (16-bit mono)."""
    block = rate // 50 * 2
    return sum(20 for i in range(0, len(raw) - block + 1, block) if rms(raw[i:i + block]) > threshold)


# ---- set-up ------------------------------------------------------------------------------------
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


def play(wav: Path) -> None:
    sh(["aplay", "-q", "-D", f"plughw:CARD={CARD},DEV=0,SUBDEV=0", str(wav)], timeout=60)


SIM_SCENARIO = """\
# The emulator's script for the VM bench: the first turn asks for the kitchen light.
repeat_last = false
default = [{say = "Okay."}]

[[turns]]
steps = [
  {input_transcript = "turn on the kitchen light"},
  {tool_call = {name = "set_device", args = {device = "kitchen_light", state = "on"}}},
  {say = "The kitchen light is on."},
  {output_transcript = "The kitchen light is on."},
]
"""


def edged_toml(ca_file: Path) -> str:
    return f"""\
# Written by the VM bench (scripts/vm/runner.py) before scripts/install, which keeps it.
[live]
base_url = "https://127.0.0.1:{SIM_PORT}"
ca_file = "{ca_file}"
backoff_max_s = 2.0

[audio]
capture_device = "{CAPTURE_DEV}"
playback_device = "{PLAYBACK_DEV}"
capture_rate = 16000
capture_channels = 1
playback_rate = 24000
playback_channels = 1
reopen_backoff_max_s = 2.0

[wake]
models = ["hey_jarvis"]
threshold = 0.5

[gpio]
pin_factory = "lgpio"
talk_button = "talk_button"

[[gpio.devices]]
name = "kitchen_light"
kind = "led"
pin = {LIGHT_LINE}
room = "kitchen"
description = "the light over the kitchen counter"

[[gpio.devices]]
name = "talk_button"
kind = "button"
pin = {BUTTON_LINE}
pull_up = true

[cues.wake]
enabled = false

[cues.listen_end]
enabled = false

[cues.offline]
enabled = false
"""


class Bench:
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
        self.timings["install_steps_host_s"] = step_seconds(r.stdout)
        if r.returncode != 0:
            raise Fail(f"scripts/install exited {r.returncode}: {r.stdout[-800:]}")
        # lgpio: on the Pi (aarch64) pyproject's marker installs it; this x86-64 guest adds it (the
        # image's pre-seeded venv has it already)
        if sh(["/opt/edged/venv/bin/python", "-c", "import lgpio"], check=False).returncode != 0:
            t = time.monotonic()
            sh(["/opt/edged/venv/bin/python", "-m", "pip", "install", "-q", "lgpio"], timeout=300)
            self.timings["lgpio_install_s"] = round(time.monotonic() - t, 1)
        breaks.after_install(self)
        sh("systemctl stop edged.service", timeout=60)

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

    def wait_idle(self, timeout: float = 30) -> dict[str, Any]:
        return wait_for(lambda: (s := status())["state"] == "idle" and s, timeout, "the daemon to be idle")

    # ---- scenarios -----------------------------------------------------------------------------
    def s_start_ready(self) -> str:
        t = time.monotonic()
        sh("systemctl start edged.service", timeout=180)  # Type=notify: returns once READY=1 arrives
        self.figures["start_to_ready_s"] = round(time.monotonic() - t, 2)
        p = unit_props()
        if (p["ActiveState"], p["SubState"]) != ("active", "running"):
            raise Fail(f"after start: {p['ActiveState']}/{p['SubState']}")
        text = wait_for(lambda: (s := unit_props()["StatusText"]) and "live connected" in s and s, 60,
                        "STATUS= text with the Live session connected")
        shown = sh("systemctl status --no-pager edged.service", check=False).stdout
        if f'Status: "{text}' not in shown and f"Status: \"{text[:40]}" not in shown:
            raise Fail(f"systemctl status does not show the STATUS text {text!r}:\n{shown[:800]}")
        self.wait_idle(60)
        pid = unit_props()["MainPID"]
        with open(f"/proc/{pid}/status") as f:
            vm = {k: int(v.split()[0]) / 1024 for k, v in (ln.split(":", 1) for ln in f) if k in ("VmRSS", "RssAnon")}
        self.figures["idle_vmrss_mb"], self.figures["idle_rssanon_mb"] = round(vm["VmRSS"], 1), round(vm["RssAnon"], 1)
        pycs = sum(1 for _ in Path("/opt/edged/pycache").rglob("*.opt-2.pyc"))
        return (f"READY after {self.figures['start_to_ready_s']} s; Status: {text!r}; idle VmRSS "
                f"{vm['VmRSS']:.1f} MB; {pycs} opt-2 byte-code files from scripts/install")

    def keeps_real_time(self, during: Callable[[], None]) -> None:
        """Skip when the guest cannot run the wake-word model at the pace of the microphone: the
        daemon's own counters then show its capture ring dropping frames (under TCG on a shared
        2-core host, openWakeWord's embedding model takes ~300-400 ms per 80 ms frame).  Measured
        over ``during`` (the clip being played: several seconds of audio through the Ear)."""
        cap = status()["audio"]["capture"]
        if cap.get("state") != "running":
            raise Fail(f"capture is not running: {cap.get('state')}: {cap.get('error')}")
        a = status()["wake"].get("ear") or {}
        t = time.monotonic()
        during()
        b = status()["wake"].get("ear") or {}
        dt = time.monotonic() - t
        frames = (b.get("frames", 0) - a.get("frames", 0)) / dt
        drops = (b.get("ring_drops", 0) - a.get("ring_drops", 0)) / dt
        self.figures["ear_frames_per_s"] = round(frames, 2)
        self.figures["ear_ring_drops_per_s"] = round(drops, 2)
        if frames < 12.5 * 0.9:  # 80 ms frames: 12.5 a second in real time
            self.realtime = False
            raise Skip(f"the guest is too slow for the wake word in real time: the Ear handled {frames:.1f} "
                       f"frames/s of the 12.5 the card delivers ({drops:.1f} dropped/s)")

    def s_wake_tool_reply(self) -> str:
        before_starts, before_tools = REC.count("activity_start"), REC.count("tool_response")
        if GPIO.value(LIGHT_LINE) != 0:
            raise Fail("the kitchen light line is already high")
        out = Path("/run/vm-bench/reply.raw")
        out.parent.mkdir(parents=True, exist_ok=True)
        rec = subprocess.Popen(["arecord", "-q", "-D", f"hw:CARD={CARD},DEV=1,SUBDEV=1", "-f", "S16_LE",
                                "-r", "24000", "-c", "1", "-t", "raw", str(out)], stderr=subprocess.PIPE)
        try:
            t = time.monotonic()
            self.keeps_real_time(during=lambda: play(self.clips["wake_command"]))
            wait_for(lambda: REC.count("activity_start") > before_starts, 20, "activity_start at the emulator")
            t_start = time.monotonic()
            wait_for(lambda: REC.count("tool_response") > before_tools, 30, "the set_device tool response")
            wait_for(lambda: GPIO.value(LIGHT_LINE) == 1, 10, f"gpio-sim line {LIGHT_LINE} high")
            t_line = time.monotonic()

            def reply_heard() -> int:
                ms = loud_ms(out.read_bytes(), 24000)
                return ms if ms >= 500 else 0
            heard = wait_for(reply_heard, 30, "at least 500 ms of reply audio recorded from the loopback")
            self.wait_idle(30)
        finally:
            rec.terminate()
            rec.wait(10)
        self.figures["wake_audio_to_line_high_s"] = round(t_line - t, 2)
        resp = REC.frames("tool_response")[-1]
        return (f"activity_start {t_start - t:.1f} s after aplay began, line {LIGHT_LINE} high at "
                f"{t_line - t:.1f} s, {heard} ms of reply recorded; tool response {json.dumps(resp['data'])[:160]}")

    def s_talk_button(self) -> str:
        before = REC.count("activity_start")
        wake_before = status()["wake"].get("detections", 0)
        if GPIO.value(BUTTON_LINE) != 1:
            raise Fail(f"talk button line {BUTTON_LINE} should read 1 (pull-up, not pressed)")
        audio_before = REC.count("audio")
        t = time.monotonic()
        GPIO.pull(BUTTON_LINE, "pull-down")  # pressed: the button shorts the line to ground
        try:
            wait_for(lambda: REC.count("activity_start") > before, 30, "activity_start after the button press")
        finally:
            GPIO.pull(BUTTON_LINE, "pull-up")
        t_start = time.monotonic()
        # the turn carries the card's audio to the emulator
        n_audio = wait_for(lambda: (n := REC.count("audio") - audio_before) > 0 and n, 30,
                           "audio frames from the card at the emulator")
        if status()["wake"].get("detections", 0) != wake_before:
            raise Fail("a wake-word detection happened: the turn was not opened by the button")
        self.wait_idle(120)
        self.figures["button_to_activity_start_s"] = round(t_start - t, 2)
        return (f"gpio-sim pull-down on line {BUTTON_LINE} -> activity_start after {t_start - t:.1f} s, "
                f"{n_audio}+ audio messages from the card")

    def s_reload(self) -> str:
        pid = unit_props()["MainPID"]
        cfg = ETC / "edged.toml"
        cfg.write_text(cfg.read_text().replace("threshold = 0.5", "threshold = 0.45"))
        cursor = journal_cursor()
        sh("systemd-analyze log-level debug")
        try:
            t = time.monotonic()
            sh("systemctl reload edged.service", timeout=180)  # the job ends when READY=1 comes back
            took = time.monotonic() - t
            msgs = wait_for(lambda: (m := pid1_messages(cursor)) and any("READY=1" in x for x in m) and m, 30,
                            "READY=1 after the reload in PID 1's log")
        finally:
            sh("systemd-analyze log-level info")
        seen: list[str] = []

        def applied() -> bool:
            out = edgectl("--json", "config", "get", "wake.threshold", check=False).stdout.strip()
            seen.append(" ".join(out.split()))
            value = json.loads(out)
            return (value.get("value") if isinstance(value, dict) else value) == 0.45
        try:
            wait_for(applied, 60, "wake.threshold 0.45 after the reload")
        except Fail as exc:
            raise Fail(f"{exc}; edgectl --json config get said {seen[-3:]}") from None
        self.figures["reload_s"] = round(took, 1)
        notes = [m for m in msgs if "notification message" in m]
        i_rel = next((i for i, m in enumerate(notes) if "RELOADING=1" in m), None)
        if i_rel is None:
            raise Fail(f"systemd got no RELOADING=1: {notes[:5]}")
        if not any("READY=1" in m for m in notes[i_rel:]):
            raise Fail(f"no READY=1 after RELOADING=1: {notes[i_rel:i_rel + 5]}")
        p = unit_props()
        if p["MainPID"] != pid or p["ActiveState"] != "active":
            raise Fail(f"the reload restarted the daemon or left it {p['ActiveState']}")
        return (f"systemd got RELOADING=1 then READY=1 ({took:.1f} s); wake.threshold 0.45 applied; same PID")

    def s_watchdog(self) -> str:
        p = unit_props()
        pid, restarts = p["MainPID"], int(p["NRestarts"])
        handle_file = STATE / "live_handle.json"
        handle = wait_for(lambda: json.loads(handle_file.read_text()).get("handle"), 20,
                          f"a persisted handle in {handle_file}")
        setups_before = REC.count("setup")
        cursor = journal_cursor()
        t = time.monotonic()
        os.kill(int(pid), 19)  # SIGSTOP: the loop stops, so do the watchdog pings
        try:
            wait_for(lambda: int(unit_props()["NRestarts"]) > restarts, 90, "systemd to restart the daemon")
        except Fail:
            os.kill(int(pid), 18)  # SIGCONT: not restarted; let the next scenarios find it running
            raise
        t_restart = time.monotonic()
        msgs = pid1_messages(cursor)
        if not any("result 'watchdog'" in m for m in msgs):
            raise Fail(f"the restart was not for the watchdog: {[m for m in msgs if 'edged' in m][:6]}")
        wait_for(lambda: unit_props()["ActiveState"] == "active", 120, "the daemon active again")

        def resumed_setup() -> dict[str, Any] | None:
            for f in REC.frames("setup")[setups_before:]:
                sr = f["data"].get("sessionResumption") or f["data"].get("session_resumption") or {}
                if sr.get("handle"):
                    return f
            return None
        setup = wait_for(resumed_setup, 60, "a setup that presents a resumption handle")
        presented = (setup["data"].get("sessionResumption") or setup["data"].get("session_resumption"))["handle"]
        if presented != handle:
            raise Fail("the new session presented a handle other than the persisted one")
        t_resumed = time.monotonic()
        wait_for(lambda: any(e.get("LIVE_STATE") == "resumed" for e in journal(since_cursor=cursor)), 30,
                 "LIVE_STATE=resumed in the daemon's journal")
        self.wait_idle(60)
        self.figures["watchdog_stop_to_restart_s"] = round(t_restart - t, 1)
        self.figures["watchdog_stop_to_resumed_s"] = round(t_resumed - t, 1)
        return (f"SIGSTOP -> Result=watchdog restart after {t_restart - t:.1f} s; resumed with the persisted "
                f"handle after {t_resumed - t:.1f} s")

    def s_unbind(self) -> str:
        p = unit_props()
        pid, restarts = p["MainPID"], p["NRestarts"]
        drv = Path("/sys/bus/platform/drivers/snd_aloop")
        dev = next(x.name for x in drv.iterdir() if x.name.startswith("snd_aloop."))
        if status()["audio"]["capture"]["state"] != "running":
            raise Fail(f"capture not running before the unbind: {status()['audio']['capture']}")
        t = time.monotonic()
        # the kernel's remove waits for every open PCM of the card to be closed: a daemon that keeps
        # a stream open on a dead card blocks it, so the write runs in a thread with a deadline
        unbound = threading.Event()
        threading.Thread(target=lambda: ((drv / "unbind").write_text(dev), unbound.set()), daemon=True).start()
        try:
            st = wait_for(lambda: (s := status())["state"] == "error" and s, 30, "state error after the unbind")
            if not unbound.wait(30):
                fds = sh(f"ls -l /proc/{pid}/fd | grep /dev/snd", check=False).stdout.split("\n")
                held = sorted({line.rsplit("/", 1)[-1] for line in fds if "/dev/snd" in line})
                raise Fail("the unbind did not complete within 30 s: the kernel waits for the card's files "
                           f"to be closed and the daemon still holds {held}")
        finally:
            if unbound.is_set():
                (drv / "bind").write_text(dev)
        err = st["audio"]["capture"].get("error") or st.get("last_error")
        t_bind = time.monotonic()
        wait_for(lambda: status()["audio"]["capture"]["state"] == "running", 60, "capture running again")
        t_back = time.monotonic()
        f0 = status()["audio"]["capture"]["frames"]
        wait_for(lambda: status()["audio"]["capture"]["frames"] > f0 + 12, 30, "frames from the rebound card")
        self.wait_idle(60)
        heard = ""
        if self.realtime:
            det = status()["wake"].get("detections", 0)
            play(self.clips["wake_only"])
            wait_for(lambda: status()["wake"].get("detections", 0) > det, 20,
                     "a wake-word detection from the rebound card")
            self.wait_idle(40)
            heard = " and hears the wake word"
        p = unit_props()
        if (p["MainPID"], p["NRestarts"]) != (pid, restarts):
            raise Fail(f"the daemon was restarted (pid {pid} -> {p['MainPID']})")
        self.figures["rebind_to_capture_s"] = round(t_back - t_bind, 1)
        return (f"error state {t_bind - t:.1f} s after the unbind ({err}); capture back {t_back - t_bind:.1f} s "
                f"after the rebind, frames flowing{heard}; same PID")

    def s_journal_fields(self) -> str:
        entries = journal()
        want: dict[str, str | None] = {"EDGED_STATE": None, "LIVE_STATE": None, "SESSION_ID": None}
        if self.realtime:  # a wake word was heard (wake_tool_reply ran)
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

    def s_security(self) -> str:
        out = sh("systemd-analyze security --no-pager edged.service", check=False).stdout
        m = re.search(r"Overall exposure level for edged\.service:\s*([\d.]+)", out)
        if not m:
            raise Fail(f"no exposure level in: {out[-400:]}")
        score = float(m.group(1))
        self.figures["exposure_online"] = score
        if score > 1.5:
            raise Fail(f"exposure {score} > 1.5")
        return f"online exposure {score}"

    def s_edgectl_roles(self) -> str:
        for user in (OPERATOR, OUTSIDER):
            if sh(["id", "-u", user], check=False).returncode != 0:
                sh(["useradd", "--create-home", "--shell", "/bin/bash", user])
        # docs/CONTROL.md: members of the control group (default: the service's group edged) may
        # use edgectl: `usermod -aG edged USER`; anyone else is refused.
        sh(["usermod", "-aG", "edged", OPERATOR])
        breaks.users_made(self)
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

    def s_credential(self) -> str:
        pid = unit_props()["MainPID"]
        cred = Path("/run/credentials/edged.service/gemini-api-key")
        if not cred.is_file() or cred.read_text().strip() != self.key:
            raise Fail(f"{cred} is missing or does not hold the key")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if not any(e.startswith(b"CREDENTIALS_DIRECTORY=") for e in environ):
            raise Fail("the daemon has no $CREDENTIALS_DIRECTORY")
        key = self.key.encode()
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

    def s_stop_safe(self) -> str:
        edgectl("gpio", "set", "kitchen_light", "on")
        wait_for(lambda: GPIO.value(LIGHT_LINE) == 1, 10, f"line {LIGHT_LINE} high before the stop")
        # gpio-sim gives a released line its pull: with a pull-up, a daemon that only let go of the
        # line would leave it reading 1.  Watch for the low the daemon must drive before it exits.
        GPIO.pull(LIGHT_LINE, "pull-up")
        seen: list[tuple[float, int]] = []
        done = threading.Event()

        def watch() -> None:
            path = GPIO.base / f"sim_gpio{LIGHT_LINE}" / "value"
            last = None
            with open(path, "rb", buffering=0) as f:
                while not done.is_set():
                    f.seek(0)
                    v = f.read(4)[:1]
                    if v != last:
                        seen.append((time.monotonic(), int(v)))
                        last = v
        th = threading.Thread(target=watch, daemon=True)
        no_trace = GPIO_TRACE.start()
        th.start()
        t = time.monotonic()
        try:
            sh("systemctl stop edged.service", timeout=60)
        finally:
            done.set()
            th.join(5)
            GPIO_TRACE.stop()
            GPIO.pull(LIGHT_LINE, "pull-down")
        values = [v for _, v in seen]
        p = unit_props()
        if p["ActiveState"] != "inactive":
            raise Fail(f"after stop: {p['ActiveState']}")
        if no_trace is None:  # gpiolib's record of the sets decides
            sets = GPIO_TRACE.sets(LIGHT_LINE)
            if sets[-1:] != [0]:
                raise Fail(f"line {LIGHT_LINE} was not driven low during the stop: the values set on it were "
                           f"{sets} (gpio:gpio_value; sysfs reads: {values})")
            return (f"line {LIGHT_LINE}: set {sets} during the stop (gpio:gpio_value), sysfs reads {values}; "
                    "unit inactive")
        if 0 not in values:  # (no tracepoint here: a low the reader saw)
            raise Fail(f"line {LIGHT_LINE} was never seen low during the stop (sysfs reads: {values}; {no_trace})")
        t_low = next(ts for ts, v in seen if v == 0)
        return (f"line {LIGHT_LINE}: {values} (seen low {t_low - t:.2f} s into the stop; {no_trace}); "
                "unit inactive")

    def s_uninstall(self) -> str:
        self.collect()
        self.stop_sim()
        # the bench's own drop-ins (and those of --break), not the installer's
        shutil.rmtree(DROPIN.parent, ignore_errors=True)
        r = sh([str(SRC / "scripts/uninstall")], timeout=IO_BOUND_S, check=False)
        (self.share / "uninstall.log").write_text(r.stdout + r.stderr)
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

    def collect(self, quick: bool = False) -> None:
        sh(f"journalctl -b -u edged.service -o short-monotonic --no-pager > {self.share}/journal-edged.txt",
           check=False)
        if quick:
            return
        sh(f"journalctl -b -u edged.service -o json --no-pager > {self.share}/journal-edged.json", check=False)
        sh(f"journalctl -b -o short-monotonic --no-pager > {self.share}/journal-all.txt", check=False)
        if RECORD.exists():
            shutil.copy(RECORD, self.share / "sim-record.jsonl")


SCENARIOS = [
    ("start_ready", "systemctl start -> READY; systemctl status shows the STATUS text", Bench.s_start_ready),
    ("wake_tool_reply", "wake word on hw:Loopback -> activity_start -> tool call -> gpio-sim line high -> reply "
     "recorded", Bench.s_wake_tool_reply),
    ("talk_button", "gpio-sim pull on the talk-button line opens a turn", Bench.s_talk_button),
    ("reload", "systemctl reload -> RELOADING=1 then READY=1, config applied, same PID", Bench.s_reload),
    ("watchdog_resume", "kill -STOP -> Result=watchdog restart -> resume with the persisted handle",
     Bench.s_watchdog),
    ("unbind_rebind", "sound card unbound mid-stream -> error; rebound -> capture recovers, no restart",
     Bench.s_unbind),
    ("journal_fields", "journalctl -o json carries EDGED_STATE, WAKE_MODEL, WAKE_SCORE, LIVE_STATE, SESSION_ID",
     Bench.s_journal_fields),
    ("security", "systemd-analyze security edged (online) <= 1.5", Bench.s_security),
    ("edgectl_roles", "edgectl: operator may, non-member is refused (docs/CONTROL.md)", Bench.s_edgectl_roles),
    ("credential", "the key arrives by LoadCredential and appears nowhere else", Bench.s_credential),
    ("stop_safe", "systemctl stop drives outputs to their safe values (line low)", Bench.s_stop_safe),
    ("uninstall", "scripts/uninstall leaves nothing but config and state", Bench.s_uninstall),
]


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
    only = set(opts.get("only") or [])
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
        for name, _desc, fn in SCENARIOS:
            if only and name not in only:
                continue
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
