"""The daemon's status: the answer to ``edgectl status`` and the line systemd shows (sd_notify STATUS).

:class:`StatusReport` only reads: the conversation, the problem registry, the supervisor, the
ringer and the root's current parts and config (both read at each call: a reload replaces them).
Status must never fail: a part whose report raises shows ``{"error": ...}`` in its place.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import __version__

if TYPE_CHECKING:
    from .config import Config
    from .conversation import Conversation
    from .health import Problems
    from .parts import Parts
    from .ringing import Ringer
    from .supervise import Supervisor


def _part(obj: Any, method: str = "stats") -> Any:
    """``obj.method()``, None without the part, ``{"error": ...}`` when it raises."""
    if obj is None:
        return None
    try:
        return getattr(obj, method)()
    except Exception as exc:  # status must never fail
        return {"error": str(exc)}


class StatusReport:
    def __init__(self, *, conv: Conversation, problems: Problems, supervisor: Supervisor, ringer: Ringer,
                 parts: Callable[[], Parts | None], cfg: Callable[[], Config], started_at: float) -> None:
        self._conv = conv
        self._problems = problems
        self._supervisor = supervisor
        self._ringer = ringer
        self._parts = parts
        self._cfg = cfg
        self._started_at = started_at

    def line(self) -> str:
        """The one-line status for the service manager (at most 300 characters)."""
        conv = self._conv
        line = f"{conv.state.value}: {conv.why}; live {conv.live_state}"
        if self._problems.items:
            line += "; " + self._problems.summary()
        return line[:300]

    def status(self) -> dict[str, Any]:
        p, conv, cfg = self._parts(), self._conv, self._cfg()
        return {
            "version": __version__,
            "pid": os.getpid(),
            "state": conv.state.value,
            "why": conv.why,
            "state_for_s": round(time.monotonic() - conv.since, 1),
            "uptime_s": round(time.monotonic() - self._started_at, 1),
            "muted": conv.muted,
            "config": cfg.path,
            "live": {"state": conv.live_state, **(_part(p and p.live, "status") or {}), **conv.reach.status()},
            "wake": {**conv.wake_stats, "models": list(cfg.wake.models), "threshold": cfg.wake.threshold,
                     **({"ear": _part(p.ear)} if p else {})},
            "audio": {"capture_device": cfg.audio.capture_device, "playback_device": cfg.audio.playback_device,
                      "capture": _part(p and p.capture), "playback": _part(p and p.player)},
            "volume": _part(p and p.volume, "status"),
            "tools_running": conv.tools_running,  # calls running now; during speech they run beside the reply
            "conversation": dict(conv.stats),
            "gpio": _part(p and p.gpio, "states"),
            "status_led": p.lights.current and str(p.lights.current) if p else None,
            "camera": _part(p and p.camera, "status"),
            "timers": _part(self, "_timers_status"),
            "mqtt": self._mqtt_status(),  # never a credential
            "tasks": self._supervisor.status(),
            "control": _part(p and p.control),
            "problems": dict(self._problems.items),
            "last_error": self._problems.last_error,
        }

    def _mqtt_status(self) -> dict[str, Any]:
        p = self._parts()
        if p is None or p.mqtt is None:
            return {"enabled": False}
        try:
            out = p.mqtt.status()
        except Exception as exc:  # status must never fail
            return {"error": str(exc)}
        if p.announcer is not None:
            out["announcements"] = {**p.announcer.stats, "pending": p.announcer.pending}
        return out

    def _timers_status(self) -> dict[str, Any] | None:
        p = self._parts()
        if p is None:
            return None
        st = p.timers.status()
        return {"timers": st["items"], "ringing": p.timers.ringing, "rung": st["rung"],
                "missed": st["missed"], **self._ringer.status()}
