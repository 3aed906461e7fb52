"""Deliberate faults for the VM bench (`scripts/vm-test --break NAME[,NAME...]`).

Each one breaks the behaviour one scenario checks, in the guest only (a unit drop-in, the config,
a user's groups, or the installed copy of a file), so that scenario can be seen to fail.  The
repository is never changed.  ``expect`` names the rows that must fail with it.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

DROPIN_DIR = Path("/etc/systemd/system/edged.service.d")
SITE = "/opt/edged/venv/lib/python3*/site-packages/edged"

# name: (what it breaks, the scenario rows that must fail)
BREAKS: dict[str, tuple[str, tuple[str, ...]]] = {
    # (not NotifyAccess=none: for Type=notify systemd then forcibly uses main, systemd.service(5),
    # and the daemon started as usual: this break did not break its row until the VM bench said so)
    "start": ("UnsetEnvironment=NOTIFY_SOCKET: READY=1 never reaches systemd", ("start_ready",)),
    "deviceallow": ("the unit's DeviceAllow list without char-alsa (the sound card)",
                    ("wake_tool_reply", "unbind_rebind")),
    "talk_button": ("gpio.talk_button left empty in the config", ("talk_button",)),
    "reload": ("ExecReload=/bin/true: the daemon is never asked to reload", ("reload",)),
    "watchdog": ("WatchdogSec=0: no watchdog", ("watchdog_resume",)),
    "resume": ("the persisted handle is removed by ExecStartPre: a restart starts a fresh session",
               ("watchdog_resume",)),
    "recover": ("the installed capture thread exits on a read error instead of reopening the device",
                ("unbind_rebind",)),
    "journal": ("UnsetEnvironment=JOURNAL_STREAM: plain stderr lines, no journal fields", ("journal_fields",)),
    "hardening": ("ProtectSystem=no, NoNewPrivileges=no, no capability bounding, PrivateTmp=no",
                  ("security",)),
    "outsider": ("the non-member is put into the edged group", ("edgectl_roles",)),
    "credential": ("the key given by Environment=GEMINI_API_KEY instead of LoadCredential", ("credential",)),
    "safe_stop": ("the installed gpio code releases outputs without driving them to their safe value",
                  ("stop_safe",)),
    "uninstall": ("scripts/uninstall (the guest's copy) leaves the /usr/local/bin links", ("uninstall",)),
}


class BreakError(RuntimeError):
    pass


def _dropin(name: str, text: str) -> None:
    DROPIN_DIR.mkdir(parents=True, exist_ok=True)
    (DROPIN_DIR / f"90-break-{name}.conf").write_text("[Service]\n" + text)


def _patch(pattern: str, old: str, new: str) -> None:
    files = [Path(p) for p in glob.glob(pattern)]
    if not files:
        raise BreakError(f"no file matches {pattern}")
    for f in files:
        text = f.read_text()
        if old not in text:
            raise BreakError(f"{f}: the text to break is not there any more: {old!r}")
        f.write_text(text.replace(old, new))
        for pyc in f.parent.glob(f"__pycache__/{f.stem}.*.pyc"):
            pyc.unlink()


def before_install(bench: Any) -> None:
    """Faults that must be in place when scripts/install first starts the unit."""
    b = set(bench.breaks)
    if "start" in b:
        _dropin("start", "UnsetEnvironment=NOTIFY_SOCKET\nTimeoutStartSec=40\n")
    if "deviceallow" in b:
        _dropin("deviceallow", "DeviceAllow=\n" + "".join(
            f"DeviceAllow={d} rw\n" for d in ("char-gpiochip", "/dev/gpiomem", "char-video4linux", "char-media")))
    if "reload" in b:
        _dropin("reload", "ExecReload=\nExecReload=/bin/true\n")
    if "watchdog" in b:
        _dropin("watchdog", "WatchdogSec=0\n")
    if "resume" in b:
        _dropin("resume", "ExecStartPre=+/bin/rm -f /var/lib/edged/live_handle.json\n")
    if "journal" in b:
        _dropin("journal", "UnsetEnvironment=JOURNAL_STREAM\n")
    if "hardening" in b:
        _dropin("hardening", "ProtectSystem=no\nNoNewPrivileges=no\nCapabilityBoundingSet=~\nPrivateTmp=no\n"
                "ProtectKernelModules=no\nSystemCallFilter=\n")
    if "credential" in b:
        _dropin("credential", f"LoadCredential=\nEnvironment=GEMINI_API_KEY={bench.key}\n")
    if "talk_button" in b:
        cfg = Path("/etc/edged/edged.toml")
        cfg.write_text(cfg.read_text().replace('talk_button = "talk_button"', 'talk_button = ""'))
    if "uninstall" in b:
        _patch("/root/src/scripts/uninstall", 'run rm -f "/usr/local/bin/$tool"', ': leave "/usr/local/bin/$tool"')


def after_install(bench: Any) -> bool:
    """Faults in the installed code (the venv exists only now); True when the code was changed (the
    daemon the installer started runs the code from before)."""
    b = set(bench.breaks)
    if "recover" in b:
        _patch(f"{SITE}/audio/capture.py", 'self._status("failed", f"capture device {self.device!r}: {exc}")',
               'self._status("failed", f"capture device {self.device!r}: {exc}"); return')
    if "safe_stop" in b:
        _patch(f"{SITE}/tools/gpio.py", "self._write(slot, self._safe_value(slot.cfg))", "pass")
    return bool(b & {"recover", "safe_stop"})


def users_made(bench: Any) -> None:
    if "outsider" in set(bench.breaks):
        import subprocess

        subprocess.run(["usermod", "-aG", "edged", "vmoutsider"], check=True)
