"""Who is on the other end of the control socket, and what they may do.

The kernel says who the peer is (``SO_PEERCRED``: pid, uid, gid; ``SO_PEERGROUPS``: the
supplementary groups the process really has).  From that, one of two roles:

- ``operator``: members of the control group (``control.group``, default the service's own
  group) and the service user: read status and configuration, follow events, switch GPIO
  outputs, wake, say, mute, set the volume, take snapshots, list, cancel and silence timers.
- ``admin``: root, and members of ``control.admin_group``: also configure (``config set``,
  ``reload``, ``session reset``).  Admin membership is taken only from the groups the kernel
  reports for the process, never from /etc/group alone.

``COMMAND_ROLES`` is the whole policy, as data.  A command that is not listed needs ``admin``
(fail closed: a command added to the daemon is not open to operators until it is listed).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

OPERATOR = "operator"
ADMIN = "admin"
RANK = {OPERATOR: 1, ADMIN: 2}

COMMAND_ROLES: dict[str, str] = {
    "status": OPERATOR,
    "events": OPERATOR,
    "config.show": OPERATOR,
    "config.get": OPERATOR,
    "gpio.list": OPERATOR,
    "gpio.set": OPERATOR,
    "wake": OPERATOR,
    "say": OPERATOR,
    "mute": OPERATOR,
    "volume": OPERATOR,
    "snapshot": OPERATOR,
    "timers.list": OPERATOR,
    "timers.cancel": OPERATOR,
    "timers.stop": OPERATOR,
    "config.set": ADMIN,
    "config.validate": ADMIN,
    "reload": ADMIN,
    "session.reset": ADMIN,
}

SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13


def role_needed(cmd: str) -> str:
    return COMMAND_ROLES.get(cmd, ADMIN)


@dataclass(frozen=True)
class Peer:
    """The process at the other end of one connection, as the kernel reported it at connect."""

    pid: int
    uid: int
    gid: int
    groups: frozenset[int]
    role: str
    name: str  # user name, or the uid when it has none

    def may(self, cmd: str) -> bool:
        return RANK[self.role] >= RANK[role_needed(cmd)]

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def describe(self) -> str:
        return f"uid {self.uid} ({self.name})" if self.name != str(self.uid) else f"uid {self.uid}"


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the peer, from SO_PEERCRED."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)


def peer_groups(sock: socket.socket, pid: int) -> set[int]:
    """The peer's supplementary groups: SO_PEERGROUPS, else /proc/<pid>/status (may be hidden)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * 1024)
        return set(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))
    except OSError:
        pass
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Groups:"):
                return {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()


def group_name(gid: int | None) -> str:
    if gid is None:
        return ""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def identify(sock: socket.socket, control_gid: int, admin_gid: int | None) -> tuple[Peer | None, str]:
    """(Peer, "") for an allowed peer, or (None, why it is refused)."""
    pid, uid, gid = peer_credentials(sock)
    groups = frozenset(peer_groups(sock, pid))
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    kernel_groups = groups | {gid}
    if uid == 0 or (admin_gid is not None and admin_gid in kernel_groups):
        return Peer(pid, uid, gid, groups, ADMIN, name), ""
    if uid == os.geteuid() or control_gid in kernel_groups:
        return Peer(pid, uid, gid, groups, OPERATOR, name), ""
    if not groups:  # the kernel did not say (old kernel, /proc hidden): /etc/group as a last resort
        with contextlib.suppress(KeyError):
            if name in grp.getgrgid(control_gid).gr_mem:
                return Peer(pid, uid, gid, groups, OPERATOR, name), ""
    group = group_name(control_gid)
    return None, (f"permission denied: uid {uid} is not root, the service user or a member of group "
                  f"{group!r} (add the user to it: usermod -aG {group} USER)")


def refusal(peer: Peer, cmd: str, admin_gid: int | None) -> str:
    """The message for a command ``peer`` may not run: names the role it needs."""
    needed = role_needed(cmd)
    if needed == ADMIN:
        who = (f"root or a member of group {group_name(admin_gid)!r}" if admin_gid is not None
               else "root (control.admin_group names a group whose members may too)")
    else:
        who = "a member of the control group"
    return f"permission denied: {cmd} needs the {needed} role ({who}); {peer.describe()} is an {peer.role}"
