"""What the VM bench's guest side shares (scripts/vm/runner.py and the modules it runs): where things
are in the guest, the log, and small tools over edged's public surfaces: systemctl, journalctl,
edgectl and the control socket, the emulator's record, the gpio-sim chip, the sound card.

Standard library only: this runs on the guest's python3 before edged is installed (scripts/vm is
first on sys.path, as for waits.py and breaks.py).
"""

from __future__ import annotations

import array
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from waits import Fail, sh, wait_for

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


def wait_idle(timeout: float = 30) -> dict[str, Any]:
    return wait_for(lambda: (s := status())["state"] == "idle" and s, timeout, "the daemon to be idle")


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


def play(wav: Path) -> None:
    sh(["aplay", "-q", "-D", f"plughw:CARD={CARD},DEV=0,SUBDEV=0", str(wav)], timeout=60)
