"""Real users and groups for permission tests: created with groupadd/useradd, removed afterwards
(even when the test fails), and a stdlib-only client run as one of them with runuser.

The client is a ``python3 -c`` snippet that imports nothing from this repository: the clone may
live in a directory those users cannot read.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PYTHON = "/usr/bin/python3"

CLIENT = r"""
import json, socket, sys
path, requests = sys.argv[1], json.loads(sys.argv[2])
out = []
try:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(path)
except OSError as exc:
    print(json.dumps({"connect_error": exc.__class__.__name__}))
    sys.exit(0)
f = s.makefile("rb")
for req in requests:
    try:
        s.sendall(json.dumps(req).encode() + b"\n")
    except BrokenPipeError:
        pass
    line = f.readline()
    if not line:
        break
    out.append(json.loads(line))
print(json.dumps({"answers": out}))
"""


def run_admin(cmd: list[str], deadline_s: float = 60) -> None:
    """useradd & co. fail while another process holds /etc/passwd's lock: retry until a deadline."""
    end = time.monotonic() + deadline_s
    while True:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if out.returncode == 0:
            return
        if "lock" not in out.stderr or time.monotonic() > end:
            raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
        time.sleep(0.2)  # another process holds the lock: retry (bounded by the deadline)


@dataclass
class Users:
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    groups: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)

    def group(self, role: str) -> str:
        name = f"edt{role}{self.tag}"
        run_admin(["groupadd", name])
        self.groups.append(name)
        return name

    def user(self, role: str, *groups: str) -> str:
        name = f"edt{role}{self.tag}"
        cmd = ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--home-dir", "/nonexistent"]
        if groups:
            cmd += ["--groups", ",".join(groups)]
        run_admin([*cmd, name])
        self.users.append(name)
        return name

    def cleanup(self) -> list[str]:
        problems = []
        for name in reversed(self.users):
            with contextlib.suppress(RuntimeError):
                run_admin(["userdel", name])
            if subprocess.run(["id", "-u", name], capture_output=True).returncode == 0:
                problems.append(f"user {name} still exists")
        for name in reversed(self.groups):
            if subprocess.run(["getent", "group", name], capture_output=True).returncode == 0:
                with contextlib.suppress(RuntimeError):
                    run_admin(["groupdel", name])
            if subprocess.run(["getent", "group", name], capture_output=True).returncode == 0:
                problems.append(f"group {name} still exists")
        return problems


@contextlib.contextmanager
def real_users() -> Iterator[Users]:
    users = Users()
    try:
        yield users
    finally:
        problems = users.cleanup()
        assert not problems, problems


@contextlib.contextmanager
def public_dir(prefix: str = "edged-roles-") -> Iterator[Path]:
    """A temp directory every user may traverse (pytest's tmp_path is 0700 under root)."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        os.chmod(d, 0o755)
        yield d
    finally:
        for p in sorted(d.rglob("*"), reverse=True):
            p.unlink() if not p.is_dir() else p.rmdir()
        d.rmdir()


def ask_as(user: str, path: Path, *requests: dict[str, Any]) -> dict[str, Any]:
    """Run the stdlib client as ``user`` (runuser sets their groups from /etc/group) and return
    ``{"answers": [...]}`` or ``{"connect_error": "PermissionError"}``."""
    out = subprocess.run(["runuser", "-u", user, "--", PYTHON, "-c", CLIENT, str(path), json.dumps(list(requests))],
                         capture_output=True, text=True, timeout=90, cwd="/")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def uid_of(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid
