"""Timers and alarms: kept in the state dir, ringing on time even while the assistant is offline.

Timers count on the monotonic clock while the daemon runs, so a wall-clock jump (NTP, a person setting
the date) neither shortens nor lengthens them.  Their due time is also kept as wall-clock seconds in
``STATE_DIR/timers.json`` (rewritten when the wall clock is seen to jump), so after a restart the
remaining time is recomputed from it.  A Pi has no real-time clock: after a power cut it may start
with the time it stopped at, and NTP sets the clock later.  So until the clock is known to be set
(systemd-timesyncd's flag file), the timers read at start count to their kept due time through the
first jump, instead of keeping their remaining time: a timer that fell due during the outage rings
when the clock is set, not the outage's length late.

Alarms are wall-clock times in the system's local time zone (``TZ``, else ``/etc/localtime``), kept as
the local date and time and turned into an instant at every check, so they follow DST and a change of
zone.  The wall clock is re-read every ``recheck_s`` (1 s): after a jump forward an alarm that was
passed rings at once; after a jump back it waits for its time to come again.
- A local time that does not exist (skipped when clocks go forward: 02:30 on the last Sunday of March
  in Europe/Berlin) rings at the moment the clocks jump past it (03:00 CEST).
- A local time that exists twice (clocks go back: 02:30 on the last Sunday of October) rings at its
  first occurrence only.

Anything that fell due while the daemon was not running (or during a wall-clock jump forward) rings
at start if it is at most ``timers.missed_max_s`` late; older ones are dropped with a log line and
reported in ``status()["missed"]``.  ``on_change()`` is told whenever one is set or removed (the daemon
publishes a ``timers`` event).  A ringing item rings until ``stop_ringing()`` / ``cancel()``, or
for at most ``timers.ring_max_s``; ``on_ring(item)`` and ``on_ring_end(item, reason)`` tell the daemon
(on the event loop).  At most ``timers.max`` timers and alarms exist at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, tzinfo
from datetime import time as dtime
from pathlib import Path
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .config import TimersConfig, remove_stale_temps, write_atomic
from .errors import ToolError

log = logging.getLogger(__name__)

FILE_NAME = "timers.json"
MIN_TIMER_S = 1.0
MAX_TIMER_S = 24 * 3600.0
MAX_ALARM_AHEAD_S = 366 * 86400.0
MAX_LABEL = 60
JUMP_TOLERANCE_S = 2.0
_ZONEINFO_DIRS = ("/usr/share/zoneinfo/", "/usr/lib/zoneinfo/", "/usr/share/lib/zoneinfo/")


# -- clocks ------------------------------------------------------------------------------------------
class Clock(Protocol):
    def monotonic(self) -> float: ...
    def time(self) -> float: ...  # wall clock, seconds since the epoch
    def zone(self) -> tzinfo: ...  # the local time zone
    def synced(self) -> bool: ...  # whether the wall clock is known to be set (NTP)


# systemd-timesyncd creates this once it has set the clock (systemd-timesyncd.service(8)); the unit's
# sandbox can read /run.  Without it (another NTP client, or none) the clock counts as not synced.
TIMESYNC_FLAG = "/run/systemd/timesync/synchronized"


def local_zone() -> tzinfo:
    """The system's local time zone as a DST-aware tzinfo: ``$TZ``, else ``/etc/localtime``, else UTC."""
    tz = os.environ.get("TZ", "").lstrip(":")
    try:
        if tz:
            if tz.startswith("/"):
                with open(tz, "rb") as f:
                    return ZoneInfo.from_file(f, key=tz)
            return ZoneInfo(tz)
        link = os.path.realpath("/etc/localtime")
        for d in _ZONEINFO_DIRS:
            if link.startswith(d):
                return ZoneInfo(link[len(d):])
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError, ZoneInfoNotFoundError) as exc:
        log.warning("local time zone %r unknown (%s): alarms use UTC", tz or "/etc/localtime", exc)
        return ZoneInfo("UTC")


class SystemClock:
    """The real clocks; the zone is looked up again at most once a minute (it may be changed)."""

    def __init__(self) -> None:
        self._zone: tzinfo | None = None
        self._zone_at = -math.inf

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def zone(self) -> tzinfo:
        now = time.monotonic()
        if self._zone is None or now - self._zone_at > 60:
            self._zone, self._zone_at = local_zone(), now
        return self._zone

    def synced(self) -> bool:
        return os.path.exists(TIMESYNC_FLAG)


# -- local times ----------------------------------------------------------------------------------
def resolve_local(local: datetime, tz: tzinfo) -> tuple[float, str]:
    """The instant (epoch seconds) an alarm at naive local time ``local`` rings, and a note:
    "" (a normal time), "skipped" (in a DST gap: the moment the clocks jump past it) or
    "repeated" (in a DST overlap: its first occurrence)."""
    first = local.replace(tzinfo=tz, fold=0).timestamp()
    second = local.replace(tzinfo=tz, fold=1).timestamp()
    if first == second:
        return first, ""
    lo, hi = min(first, second), max(first, second)
    if datetime.fromtimestamp(lo, tz).replace(tzinfo=None) == local:
        return lo, "repeated"
    # a gap: the instant the offset changes lies in (lo, hi]; transitions fall on whole seconds
    after = datetime.fromtimestamp(hi, tz).utcoffset()
    a, b = math.floor(lo), math.ceil(hi)
    while b - a > 1:
        mid = (a + b) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == after:
            b = mid
        else:
            a = mid
    return float(b), "skipped"


def _local_text(t: float, tz: tzinfo) -> str:
    return datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def duration_text(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    parts = [f"{h} hour{'s' * (h != 1)}"] if h else []
    if m:
        parts.append(f"{m} minute{'s' * (m != 1)}")
    if sec or not parts:
        parts.append(f"{sec} second{'s' * (sec != 1)}")
    return " ".join(parts)


# -- the items ---------------------------------------------------------------------------------------
@dataclass
class Item:
    id: str
    kind: Literal["timer", "alarm"]
    label: str
    due: float  # wall clock, epoch seconds (alarms: recomputed from `local` at every check)
    created: float
    duration_s: float | None = None  # timers
    local: str | None = None  # alarms: local date and time, ISO "YYYY-MM-DDTHH:MM:SS"
    note: str = ""  # alarms: "", "skipped" or "repeated" (see resolve_local)
    due_mono: float | None = field(default=None, repr=False)  # timers while running
    ringing_since: float | None = field(default=None, repr=False)  # monotonic

    def stored(self) -> dict[str, Any]:
        d = asdict(self)
        del d["due_mono"], d["ringing_since"]
        return {k: v for k, v in d.items() if v is not None and v != ""}


def _item_from(d: Any) -> Item:
    if not isinstance(d, dict):
        raise ValueError("not an object")
    kind = d.get("kind")
    if kind not in ("timer", "alarm"):
        raise ValueError(f"kind {kind!r}")
    it = Item(id=str(d["id"]), kind=kind, label=str(d.get("label", ""))[:MAX_LABEL], due=float(d["due"]),
              created=float(d.get("created", d["due"])))
    if not all(math.isfinite(v) for v in (it.due, it.created)):
        raise ValueError("times must be finite")
    if kind == "timer":
        it.duration_s = float(d["duration_s"])
    else:
        it.local = datetime.fromisoformat(str(d["local"])).replace(tzinfo=None).isoformat()
    return it


OnRing = Callable[[dict[str, Any]], None]
OnRingEnd = Callable[[dict[str, Any], str], None]


class Timers:
    """Timers and alarms for one daemon.  Call every method on the event loop."""

    def __init__(self, cfg: TimersConfig, state_dir: str | Path, *, clock: Clock | None = None,
                 on_ring: OnRing | None = None, on_ring_end: OnRingEnd | None = None,
                 on_change: Callable[[], None] | None = None, recheck_s: float = 1.0) -> None:
        self.cfg = cfg
        self.path = Path(state_dir) / FILE_NAME
        self.clock: Clock = clock or SystemClock()
        self.on_ring, self.on_ring_end, self.on_change = on_ring, on_ring_end, on_change
        self.recheck_s = recheck_s
        self._items: dict[str, Item] = {}
        self._next_id = 1
        self._offset: float | None = None  # wall - monotonic at the last check
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self.missed: list[dict[str, Any]] = []  # dropped as too late, the last few
        self._wall_anchored: set[str] = set()  # kept timers counted from the wall clock until it is set
        self.rung = 0

    # lifecycle ---------------------------------------------------------------------------------
    def load(self) -> None:
        """Read the kept timers and alarms (done by start(); separate for tests)."""
        remove_stale_temps(self.path)
        self._items, self._next_id = {}, 1
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("timers: cannot read %s: %s; starting without timers", self.path, exc.strerror or exc)
            return
        try:
            data = json.loads(text)
            items = data["items"]
            self._next_id = max(1, int(data.get("next", 1)))
            if not isinstance(items, list):
                raise ValueError("items is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            aside = self.path.with_name(self.path.name + ".bad")
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            log.error("timers: %s is not a timers file (%s); kept as %s, starting without timers",
                      self.path, exc, aside)
            return
        mono, wall = self.clock.monotonic(), self.clock.time()
        for raw in items:
            try:
                it = _item_from(raw)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("timers: skipping an entry of %s (%s): %r", self.path, exc, raw)
                continue
            if it.kind == "timer":
                it.due_mono = mono + (it.due - wall)
            self._items[it.id] = it
            self._next_id = max(self._next_id, _number(it.id) + 1)
        self._offset = wall - mono
        # A Pi has no real-time clock: after a power cut it may start with the time it stopped at, and
        # NTP sets it later.  Until the clock is known to be right, the kept due times are the truth:
        # the first jump re-counts these timers from them (a timer due during the outage rings then).
        self._wall_anchored = set() if self._synced() else {i for i, it in self._items.items() if it.kind == "timer"}
        log.info("timers: %d kept timers and alarms loaded from %s", len(self._items), self.path)

    async def start(self, watch: Callable[[Callable[[], Any], str], asyncio.Task[Any]] | None = None) -> None:
        """Load and start checking.  ``watch(factory, "timers")``: the daemon's supervisor, which
        restarts the checking task if it crashes."""
        self.load()
        self.check()
        self._task = watch(self._run, "timers") if watch is not None else asyncio.create_task(self._run(),
                                                                                               name="timers")

    async def stop(self) -> None:
        """Stop checking.  Items stay in the file (one ringing now rings again at the next start)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # the model's and edgectl's operations ---------------------------------------------------------
    def set_timer(self, duration_s: float, label: str = "") -> dict[str, Any]:
        if isinstance(duration_s, bool) or not isinstance(duration_s, int | float) or not math.isfinite(duration_s):
            raise ToolError(f"duration must be a number of seconds (got {duration_s!r})")
        if not MIN_TIMER_S <= duration_s <= MAX_TIMER_S:
            raise ToolError(f"a timer lasts from {MIN_TIMER_S:g} second to 24 hours (got {duration_text(duration_s)})")
        label = self._label(label)
        self._room()
        mono, wall = self.clock.monotonic(), self.clock.time()
        it = Item(id=self._new_id("timer"), kind="timer", label=label, due=wall + duration_s, created=wall,
                  duration_s=float(duration_s), due_mono=mono + duration_s)
        self._add(it)
        log.info("timers: %s set for %s%s", it.id, duration_text(duration_s), f" ({label})" if label else "")
        return self.public(it)

    def set_alarm(self, at: dtime | datetime, label: str = "") -> dict[str, Any]:
        """An alarm at a local time of day (the next time it comes) or a local date and time."""
        label = self._label(label)
        tz, wall = self.clock.zone(), self.clock.time()
        if isinstance(at, datetime):
            local = at.replace(tzinfo=None, microsecond=0)
            due, note = resolve_local(local, tz)
            if due <= wall:
                raise ToolError(f"{local.isoformat(' ')} has passed (it is now {_local_text(wall, tz)})")
        elif isinstance(at, dtime):
            today = datetime.fromtimestamp(wall, tz).date()
            local = datetime.combine(today, at.replace(tzinfo=None, microsecond=0))
            due, note = resolve_local(local, tz)
            if due <= wall:
                local = datetime.combine(today + timedelta(days=1), local.time())
                due, note = resolve_local(local, tz)
        else:
            raise ToolError(f"an alarm needs a time of day or a date and time (got {at!r})")
        if due - wall > MAX_ALARM_AHEAD_S:
            raise ToolError("an alarm may be set at most a year ahead")
        self._room()
        it = Item(id=self._new_id("alarm"), kind="alarm", label=label, due=due, created=wall,
                  local=local.isoformat(), note=note)
        self._add(it)
        log.info("timers: %s set for %s%s%s", it.id, local.isoformat(" "), f" ({label})" if label else "",
                 f" [{note}: rings at {_local_text(due, tz)}]" if note else "")
        return self.public(it)

    def list(self) -> list[dict[str, Any]]:
        """Every timer and alarm, the soonest first."""
        return [self.public(it) for it in sorted(self._items.values(), key=self._due_wall)]

    def cancel(self, ref: str) -> list[dict[str, Any]]:
        """Cancel by id, or by label (all with that label); ToolError naming what exists when none match."""
        if not isinstance(ref, str) or not ref.strip():
            raise ToolError("give the id or the label of a timer or alarm")
        key = ref.strip().casefold()
        hits = [it for it in self._items.values() if it.id.casefold() == key]
        if not hits:
            hits = [it for it in self._items.values() if it.label and it.label.casefold() == key]
        if not hits:
            have = ", ".join(f"{it.id}{' (' + it.label + ')' if it.label else ''}" for it in self._items.values())
            raise ToolError(f"no timer or alarm {ref!r} ({'set: ' + have if have else 'none is set'})")
        return self._remove(hits, "cancelled")

    def cancel_all(self) -> list[dict[str, Any]]:
        return self._remove(list(self._items.values()), "cancelled")

    def stop_ringing(self) -> list[dict[str, Any]]:
        """Stop everything that is ringing (wake word, talk button, ``edgectl timers stop``)."""
        return self._remove([it for it in self._items.values() if it.ringing_since is not None], "stopped")

    @property
    def ringing(self) -> list[dict[str, Any]]:
        return [self.public(it) for it in self._items.values() if it.ringing_since is not None]

    def status(self) -> dict[str, Any]:
        return {"items": self.list(), "ringing": len(self.ringing), "rung": self.rung, "missed": list(self.missed)}

    def public(self, it: Item) -> dict[str, Any]:
        tz = self.clock.zone()
        due = self._due_wall(it)
        out: dict[str, Any] = {"id": it.id, "kind": it.kind, "label": it.label,
                               "state": "ringing" if it.ringing_since is not None else "set",
                               "rings_at": _local_text(due, tz),
                               "remaining_s": round(max(0.0, self._remaining(it)), 1)}
        if it.kind == "timer":
            out["duration"] = duration_text(it.duration_s or 0)
        else:
            out["time"] = it.local
            if it.note:
                out["note"] = it.note
        return out

    # the clock -----------------------------------------------------------------------------------
    def check(self) -> None:
        """One pass: notice wall-clock jumps, ring what is due, end rings that went on too long."""
        mono, wall = self.clock.monotonic(), self.clock.time()
        offset = wall - mono
        changed = False
        if self._offset is not None and abs(offset - self._offset) > JUMP_TOLERANCE_S:
            anchored = [it for it in self._items.values() if it.id in self._wall_anchored]
            if anchored:
                log.info("timers: the wall clock moved by %+.0f s before it was known to be set: the %d "
                         "timers kept from before the start count to their kept due time", offset - self._offset,
                         len(anchored))
            else:
                log.info("timers: the wall clock moved by %+.0f s; timers keep counting, alarms follow the clock",
                         offset - self._offset)
            for it in self._items.values():
                if it.id in self._wall_anchored:
                    it.due_mono = mono + (it.due - wall)
                elif it.kind == "timer" and it.due_mono is not None:
                    it.due = wall + (it.due_mono - mono)
            self._wall_anchored = set()
            changed = True
        elif self._wall_anchored and self._synced():  # set without a jump: the start's clock was right
            self._wall_anchored = set()
        self._offset = offset
        for it in list(self._items.values()):
            if it.ringing_since is not None:
                if mono - it.ringing_since >= self.cfg.ring_max_s:
                    self._remove([it], "timeout")
                continue
            late = -self._remaining(it, mono, wall)
            if late < 0:
                continue
            if late > self.cfg.missed_max_s:
                log.warning("timers: %s%s was due %s ago, more than timers.missed_max_s: not rung",
                            it.id, f" ({it.label})" if it.label else "", duration_text(late))
                self.missed = (self.missed + [{**self.public(it), "late_s": round(late)}])[-10:]
                del self._items[it.id]
                changed = True
                continue
            it.ringing_since = mono
            self.rung += 1
            changed = True
            log.info("timers: %s%s is ringing%s", it.id, f" ({it.label})" if it.label else "",
                     f", {duration_text(late)} late" if late >= 1 else "")
            self._call(self.on_ring, self.public(it))
        if changed:
            self._save()

    def next_check_in(self) -> float:
        """Seconds until check() has something to do, at most ``recheck_s``."""
        mono = self.clock.monotonic()
        wall = self.clock.time()
        waits = [self.recheck_s]
        for it in self._items.values():
            if it.ringing_since is not None:
                waits.append(it.ringing_since + self.cfg.ring_max_s - mono)
            else:
                waits.append(self._remaining(it, mono, wall))
        return max(0.01, min(waits))

    async def _run(self) -> None:
        while self._task is not None:
            try:
                async with asyncio.timeout(self.next_check_in()):  # (wait_for may swallow a cancel in 3.11)
                    await self._kick.wait()
            except TimeoutError:
                pass
            self._kick.clear()
            try:
                self.check()
            except Exception:
                log.exception("timers: check failed")

    # internals ----------------------------------------------------------------------------------
    def _remaining(self, it: Item, mono: float | None = None, wall: float | None = None) -> float:
        if it.kind == "timer" and it.due_mono is not None:
            return it.due_mono - (self.clock.monotonic() if mono is None else mono)
        return self._due_wall(it) - (self.clock.time() if wall is None else wall)

    def _synced(self) -> bool:
        try:
            return bool(self.clock.synced())
        except OSError:
            return False

    def _due_wall(self, it: Item) -> float:
        if it.kind == "alarm" and it.local:
            it.due, it.note = resolve_local(datetime.fromisoformat(it.local), self.clock.zone())
        return it.due

    def _label(self, label: Any) -> str:
        if label is None:
            return ""
        if not isinstance(label, str):
            raise ToolError(f"label must be text (got {label!r})")
        label = " ".join(label.split())
        if len(label) > MAX_LABEL:
            raise ToolError(f"label may be at most {MAX_LABEL} characters")
        if not label.isprintable():
            raise ToolError("label must be plain text")
        return label

    def _room(self) -> None:
        if len(self._items) >= self.cfg.max:
            raise ToolError(f"{len(self._items)} timers and alarms are set, the most there may be "
                            f"(timers.max = {self.cfg.max}); cancel one first")

    def _new_id(self, kind: str) -> str:
        n, self._next_id = self._next_id, self._next_id + 1
        return f"{kind}-{n}"

    def _add(self, it: Item) -> None:
        self._items[it.id] = it
        self._save()
        self._kick.set()
        self._call(self.on_change)

    def _remove(self, items: list[Item], reason: str) -> list[dict[str, Any]]:
        out = []
        for it in items:
            info = self.public(it)
            self._items.pop(it.id, None)
            out.append(info)
            log.info("timers: %s %s", it.id, reason)
            if it.ringing_since is not None:
                self._call(self.on_ring_end, info, reason)
        if items:
            self._save()
            self._kick.set()
            self._call(self.on_change)
        return out

    def _call(self, cb: Callable[..., None] | None, *args: Any) -> None:
        if cb is None:
            return
        try:
            cb(*args)
        except Exception:
            log.exception("timers: callback failed")

    def _save(self) -> None:
        data = {"version": 1, "next": self._next_id, "items": [it.stored() for it in self._items.values()]}
        try:
            write_atomic(self.path, json.dumps(data, indent=1) + "\n", 0o600)
        except OSError as exc:
            log.error("timers: cannot keep them in %s: %s (they are kept in memory)", self.path, exc.strerror or exc)


def _number(ident: str) -> int:
    try:
        return int(ident.rsplit("-", 1)[-1])
    except ValueError:
        return 0


__all__ = ["Clock", "Item", "SystemClock", "Timers", "duration_text", "local_zone", "resolve_local"]
