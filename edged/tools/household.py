"""The model's timer, alarm and volume functions: declarations and argument checking.

``HouseholdTools(timers, volume)`` declares ``set_timer``, ``set_alarm``, ``list_timers``,
``cancel_timer`` (when there are timers) and ``set_volume`` (when there is a volume), and
``async call(fc)`` answers a ``FunctionCall`` with a ``FunctionResponse`` whose response is the result,
or ``{"error": "<what was wrong>"}``: it never raises.  The ToolRegistry includes these by adding
``declarations()`` to its own and sending calls whose ``fc.name`` is in ``names`` here.

Arguments are checked here, not trusted from the schema: 2.5 native-audio models may send ``{}``
(googleapis/python-genai#1147), any model may send a wrong type.  The schemas use no
``additionalProperties`` (3.x Live models refuse the setup with 1007 for it: livekit/agents#7302).
"""

from __future__ import annotations

import logging
import math
import re
from datetime import datetime, time
from typing import Any

from google.genai import types

from ..audio.volume import Volume
from ..errors import ToolError
from ..timers import MAX_TIMER_S, Timers, duration_text

log = logging.getLogger(__name__)

TIMER_FUNCTIONS = ("set_timer", "set_alarm", "list_timers", "cancel_timer")
VOLUME_FUNCTIONS = ("set_volume",)

_UNITS = {"h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
          "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
          "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{2})$")
_ISO = re.compile(r"^P(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)$", re.I)
_TIME = re.compile(r"^(?:(\d{4}-\d{2}-\d{2})[T ])?(\d{1,2})(?::(\d{2}))?(?::(\d{2}))?\s*([ap]\.?m\.?)?$", re.I)


def parse_duration(value: Any) -> float:
    """Seconds from 90, "90", "90s", "10m", "1h30m", "1 hour 30 minutes", "1:30:00", "5:00" or "PT10M"."""
    if isinstance(value, bool):
        raise ToolError(f"duration must be like 10m, 1h30m, 90s or a number of seconds (got {value!r})")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip().lower()
        seconds = _duration_text(text)
    else:
        raise ToolError(f"duration must be like 10m, 1h30m, 90s or a number of seconds (got {value!r})")
    if not math.isfinite(seconds):
        raise ToolError(f"duration must be a finite time (got {value!r})")
    return seconds


def _duration_text(text: str) -> float:
    bad = ToolError(f"duration must be like 10m, 1h30m, 90s or a number of seconds (got {text!r})")
    try:
        return float(text)
    except ValueError:
        pass
    if m := _CLOCK.match(text):
        h, mi, s = m.groups()
        return int(h or 0) * 3600 + int(mi) * 60 + int(s)
    if m := _ISO.match(text):
        h, mi, s = (float(x) if x else 0.0 for x in m.groups())
        if not any(m.groups()):
            raise bad
        return h * 3600 + mi * 60 + s
    text = text.replace(" and ", " ").replace(",", " ")
    pos, total = 0, 0.0
    for part in _PART.finditer(text):
        if text[pos: part.start()].strip():
            raise bad
        number, unit = part.groups()
        if unit not in _UNITS:
            raise bad
        total += float(number) * _UNITS[unit]
        pos = part.end()
    if pos == 0 or text[pos:].strip():
        raise bad
    return total


def parse_time(value: Any) -> time | datetime:
    """A time of day ("07:30", "7", "19:05:30", "7:30 pm") or a local date and time
    ("2026-12-24 18:00", "2026-12-24T18:00")."""
    if not isinstance(value, str) or not (m := _TIME.match(value.strip())):
        raise ToolError(f"time must be like 07:30, 7:30 pm or 2026-12-24 18:00 (got {value!r})")
    day, h, mi, s, ampm = m.groups()
    hour, minute, second = int(h), int(mi or 0), int(s or 0)
    if ampm:
        if not 1 <= hour <= 12:
            raise ToolError(f"time {value!r}: with am or pm the hour is 1 to 12")
        hour = hour % 12 + (12 if ampm.lower().startswith("p") else 0)
    try:
        t = time(hour, minute, second)
        return datetime.combine(datetime.strptime(day, "%Y-%m-%d").date(), t) if day else t
    except ValueError as exc:
        raise ToolError(f"time {value!r}: {exc}") from None


def _only(args: dict[str, Any], allowed: tuple[str, ...]) -> None:
    extra = [k for k in args if k not in allowed]
    if extra:
        takes = f"takes only {', '.join(allowed)}" if allowed else "takes no arguments"
        raise ToolError(f"unexpected argument {', '.join(map(repr, extra))}: this function {takes}")


class HouseholdTools:
    def __init__(self, timers: Timers | None, volume: Volume | None) -> None:
        self.timers = timers
        self.volume = volume

    @property
    def names(self) -> tuple[str, ...]:
        return (TIMER_FUNCTIONS if self.timers is not None else ()) + \
            (VOLUME_FUNCTIONS if self.volume is not None else ())

    def declarations(self) -> list[types.FunctionDeclaration]:
        out: list[types.FunctionDeclaration] = []
        label = {"type": "string", "description": "A short name for it, e.g. pasta (optional)."}
        if self.timers is not None:
            out += [
                types.FunctionDeclaration(
                    name="set_timer",
                    description=("Start a countdown timer. It rings on the speaker when it runs out, even "
                                 f"without a connection. At most {duration_text(MAX_TIMER_S)}."),
                    parameters_json_schema={"type": "object", "properties": {
                        "duration": {"type": "string",
                                     "description": "How long: e.g. 10m, 1h30m, 90s, or a number of seconds."},
                        "label": label}, "required": ["duration"]}),
                types.FunctionDeclaration(
                    name="set_alarm",
                    description=("Set an alarm at a local time of day (the next time that time comes) "
                                 "or at a local date and time."),
                    parameters_json_schema={"type": "object", "properties": {
                        "time": {"type": "string",
                                 "description": "e.g. 07:30, 7:30 pm, or 2026-12-24 18:00 (24-hour, local time)."},
                        "label": label}, "required": ["time"]}),
                types.FunctionDeclaration(
                    name="list_timers",
                    description="List the timers and alarms that are set or ringing, with the time left.",
                    parameters_json_schema={"type": "object", "properties": {}}),
                types.FunctionDeclaration(
                    name="cancel_timer",
                    description="Cancel a timer or alarm (also stops it if it is ringing), or all of them.",
                    parameters_json_schema={"type": "object", "properties": {
                        "id": {"type": "string", "description": "Its id (from list_timers) or its label."},
                        "all": {"type": "boolean", "description": "True to cancel every timer and alarm."}}}),
            ]
        if self.volume is not None:
            out.append(types.FunctionDeclaration(
                name="set_volume",
                description="Change the speaker's volume: a level from 0 to 100, or a step up or down.",
                parameters_json_schema={"type": "object", "properties": {
                    "level": {"type": "integer", "minimum": 0, "maximum": 100, "description": "0 to 100."},
                    "change": {"type": "string", "enum": ["up", "down"],
                               "description": "Instead of level: one step louder or quieter."}}}))
        return out

    async def call(self, fc: types.FunctionCall) -> types.FunctionResponse:
        try:
            response = self.handle(fc.name or "", fc.args)
        except ToolError as exc:
            response = {"error": str(exc)}
        except Exception as exc:
            log.exception("tools: %s failed", fc.name)
            response = {"error": f"internal error in {fc.name}: {type(exc).__name__}: {exc}"}
        return types.FunctionResponse(id=fc.id, name=fc.name, response=response)

    def handle(self, name: str, args: Any) -> dict[str, Any]:
        """The result of one call; ToolError for anything wrong with it."""
        args = {} if args is None else args
        if not isinstance(args, dict):
            raise ToolError(f"arguments must be an object (got {type(args).__name__})")
        if name not in self.names:
            raise ToolError(f"unknown function {name!r} (available: {', '.join(self.names) or 'none'})")
        if name == "set_volume":
            return self._set_volume(args)
        assert self.timers is not None
        if name == "set_timer":
            _only(args, ("duration", "label"))
            if "duration" not in args:
                raise ToolError("duration is required, e.g. 10m")
            return {"timer": self.timers.set_timer(parse_duration(args["duration"]), args.get("label") or "")}
        if name == "set_alarm":
            _only(args, ("time", "label"))
            if "time" not in args:
                raise ToolError("time is required, e.g. 07:30")
            return {"alarm": self.timers.set_alarm(parse_time(args["time"]), args.get("label") or "")}
        if name == "list_timers":
            _only(args, ())
            return {"timers": self.timers.list()}
        _only(args, ("id", "all"))
        everything = args.get("all")
        if everything is not None and not isinstance(everything, bool):
            raise ToolError(f"all must be true or false (got {everything!r})")
        if everything:
            return {"cancelled": self.timers.cancel_all()}
        if not args.get("id"):
            raise ToolError("give id (or the label), or all = true")
        return {"cancelled": self.timers.cancel(args["id"])}

    def _set_volume(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.volume is not None
        _only(args, ("level", "change"))
        level, change = args.get("level"), args.get("change")
        if (level is None) == (change is None):
            raise ToolError("give either level (0 to 100) or change (up or down)")
        if change is not None and change not in ("up", "down"):
            raise ToolError(f"change must be up or down (got {change!r})")
        if level is not None and isinstance(level, str):
            raise ToolError(f"level must be a whole number from 0 to 100 (got {level!r})")
        before = self.volume.level
        after = self.volume.set(change if change is not None else level, by="model")
        return {"volume": after, "was": before}
