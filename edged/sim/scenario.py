"""Scripted replies for the emulator.

File format (TOML or JSON, chosen by the suffix ``.json``; anything else is TOML)::

    repeat_last = true            # after the last turn: repeat it (default) or use `default`
    pacing = "google"             # optional: realtime (default) | google (bursts) | instant
    default = [{tone = {hz = 440, ms = 300}}]   # optional; the reply when no turn is left

    [[turns]]
    steps = [
      {input_transcript = "turn on the lamp"},
      {tool_call = {name = "set_device", args = {name = "lamp", value = true}}},
      {say = "The lamp is on."},
      {output_transcript = "The lamp is on."},
    ]

Each step is a table with exactly one key, the step kind:

=====================  ===================================================================
``say``                text, or ``{text, voice}``: espeak-ng speech (tone if unavailable)
``tone``               ``{hz=440, ms=300}``
``input_transcript``   text: ``serverContent.inputTranscription``
``output_transcript``  text: ``serverContent.outputTranscription``
``tool_call``          ``{name, args={}, timeout=30, behavior, then=[steps]}``: send it; BLOCKING
                       (its declared behavior, else the model's default; ``behavior`` for
                       undeclared functions, default BLOCKING) waits for the toolResponse,
                       NON_BLOCKING goes on at once and plays ``then`` as the response's
                       scheduling says (see :mod:`edged.sim.tool_calls`)
``no_answer``          anything: the model chooses not to answer: ``turnComplete`` only, no audio
``resumption_update``  ``{resumable=false, new_handle=""}``: a sessionResumptionUpdate now
``await_video``        ``{frames=1, timeout=10}``: wait until that many video frames arrived this turn
``goaway``             ``{time_left=10}`` seconds (the socket closes with 1011 when it runs out)
``close``              ``{code=1000, reason=""}``
``drop``               anything: abrupt TCP close (the SDK sees 1006)
``malformed``          ``"text"`` (non-JSON, the default) or ``"unknown_keys"`` (JSON of unknown keys)
``sleep``              seconds, or ``{s}``: a slow reply
``interrupted``        anything: ``serverContent.interrupted``
=====================  ===================================================================

Every reply ends with ``generationComplete`` and ``turnComplete`` (unless the connection ended).
In Python: ``Scenario([[{"say": "hi"}], [{"tone": {"hz": 500}}]])`` or ``Scenario.load(path)``.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("say", "tone", "input_transcript", "output_transcript", "tool_call", "await_video", "goaway",
         "close", "drop", "malformed", "sleep", "interrupted", "no_answer", "resumption_update")
PACINGS = ("realtime", "google", "instant")


class ScenarioError(ValueError):
    """A scenario file or object is invalid: the message names the place and the reason."""


@dataclass(frozen=True)
class Step:
    kind: str
    args: dict[str, Any] = field(default_factory=dict)


def _num(where: str, args: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    v = args.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise ScenarioError(f"{where}: {key} must be a number in {lo}..{hi} (got {v!r})")
    return float(v)


def parse_step(obj: Any, where: str) -> Step:
    if not isinstance(obj, dict) or len(obj) != 1:
        raise ScenarioError(f"{where}: a step is a table with exactly one key, one of {', '.join(KINDS)}")
    ((kind, value),) = obj.items()
    if kind not in KINDS:
        raise ScenarioError(f"{where}: unknown step {kind!r} (known: {', '.join(KINDS)})")
    w = f"{where}.{kind}"
    if kind in ("say", "input_transcript", "output_transcript"):
        if isinstance(value, str):
            value = {"text": value}
        if not isinstance(value, dict) or not isinstance(value.get("text"), str):
            raise ScenarioError(f"{w}: needs text")
        return Step(kind, dict(value))
    if kind == "sleep":
        value = {"s": value} if not isinstance(value, dict) else value
        return Step(kind, {"s": _num(w, value, "s", 0, 0, 3600)})
    if kind == "malformed":
        value = value if value in ("text", "unknown_keys") else "text"
        return Step(kind, {"form": value})
    if kind in ("drop", "interrupted", "no_answer"):
        return Step(kind, {})
    if kind == "resumption_update":
        value = value if isinstance(value, dict) else {}
        if not isinstance(value.get("resumable", False), bool) or not isinstance(value.get("new_handle", ""), str):
            raise ScenarioError(f"{w}: resumable must be true or false, new_handle text")
        return Step(kind, {"resumable": value.get("resumable", False), "new_handle": value.get("new_handle", "")})
    if kind == "goaway" and not isinstance(value, dict):
        value = {"time_left": value}
    if not isinstance(value, dict):
        raise ScenarioError(f"{w}: must be a table")
    if kind == "tone":
        return Step(kind, {"hz": _num(w, value, "hz", 440, 20, 12000), "ms": _num(w, value, "ms", 300, 0, 60000)})
    if kind == "tool_call":
        if not isinstance(value.get("name"), str) or not value["name"]:
            raise ScenarioError(f"{w}: needs a name")
        args = value.get("args", {})
        if not isinstance(args, dict):
            raise ScenarioError(f"{w}: args must be a table")
        behavior = value.get("behavior")
        if behavior not in (None, "BLOCKING", "NON_BLOCKING"):
            raise ScenarioError(f"{w}: behavior must be BLOCKING or NON_BLOCKING")
        then = value.get("then", [])
        if not isinstance(then, list):
            raise ScenarioError(f"{w}: then must be a list of steps")
        steps = tuple(parse_step(t, f"{w}.then[{j}]") for j, t in enumerate(then))
        out: dict[str, Any] = {"name": value["name"], "args": args, "then": steps,
                               "timeout": _num(w, value, "timeout", 30, 0, 3600)}
        if behavior:
            out["behavior"] = behavior
        return Step(kind, out)
    if kind == "await_video":
        return Step(kind, {"frames": int(_num(w, value, "frames", 1, 1, 10000)),
                           "timeout": _num(w, value, "timeout", 10, 0, 3600)})
    if kind == "goaway":
        return Step(kind, {"time_left": _num(w, value, "time_left", 10, 0, 3600)})
    # close
    code = int(_num(w, value, "code", 1000, 1000, 4999))
    reason = value.get("reason", "")
    if not isinstance(reason, str):
        raise ScenarioError(f"{w}: reason must be text")
    return Step(kind, {"code": code, "reason": reason})


DEFAULT_REPLY = (Step("tone", {"hz": 440.0, "ms": 300.0}),)


class Scenario:
    """Turns answered in order; after the last, the last repeats (or ``default`` is used)."""

    def __init__(self, turns: list[list[Any]] | None = None, *, default: list[Any] | None = None,
                 repeat_last: bool = True, source: str = "<scenario>", pacing: str | None = None) -> None:
        self.source = source
        if pacing is not None and pacing not in PACINGS:
            raise ScenarioError(f"{source}: pacing must be one of {', '.join(PACINGS)} (got {pacing!r})")
        self.pacing = pacing
        if turns is not None and not isinstance(turns, list):
            raise ScenarioError(f"{source}: turns must be a list")
        self.turns: list[tuple[Step, ...]] = []
        for i, turn in enumerate(turns or []):
            steps = turn.get("steps") if isinstance(turn, dict) else turn
            if not isinstance(steps, list):
                raise ScenarioError(f"{source}: turns[{i}]: needs a list of steps")
            self.turns.append(tuple(parse_step(s, f"{source}: turns[{i}].steps[{j}]") for j, s in enumerate(steps)))
        if default is not None and not isinstance(default, list):
            raise ScenarioError(f"{source}: default must be a list of steps")
        self.default = (tuple(parse_step(s, f"{source}: default[{j}]") for j, s in enumerate(default))
                        if default is not None else DEFAULT_REPLY)
        self.repeat_last = bool(repeat_last)

    def reply(self, turn_index: int) -> tuple[Step, ...]:
        """The steps answering the session's turn number ``turn_index`` (0-based)."""
        if turn_index < len(self.turns):
            return self.turns[turn_index]
        if self.repeat_last and self.turns:
            return self.turns[-1]
        return self.default

    @classmethod
    def from_obj(cls, obj: Any, source: str = "<scenario>") -> Scenario:
        if not isinstance(obj, dict):
            raise ScenarioError(f"{source}: must be a table with `turns`")
        unknown = set(obj) - {"turns", "default", "repeat_last", "pacing"}
        if unknown:
            raise ScenarioError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
        return cls(obj.get("turns", []), default=obj.get("default"), repeat_last=obj.get("repeat_last", True),
                   source=source, pacing=obj.get("pacing"))

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError(f"{p}: cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ScenarioError(f"{p}: not UTF-8 text") from None
        try:
            obj = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ScenarioError(f"{p}: syntax: {exc}") from None
        return cls.from_obj(obj, str(p))
