"""The model's timer, alarm and volume functions: declarations, argument checking, answers."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
from google.genai import types

from edged.audio.volume import Volume
from edged.config import AudioConfig, TimersConfig
from edged.errors import ToolError
from edged.timers import Timers
from edged.tools.household import HouseholdTools, parse_duration, parse_time
from tests.test_timers import FakeClock


@pytest.fixture
def tools(tmp_path):
    clock = FakeClock(datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp())  # 13:00 in Berlin
    timers = Timers(TimersConfig(max=3), tmp_path, clock=clock)
    timers.load()
    volume = Volume(AudioConfig(volume=50, volume_step=10), tmp_path)
    volume.start()
    return HouseholdTools(timers, volume)


async def call(tools, name, args):
    r = await tools.call(types.FunctionCall(id="c1", name=name, args=args))
    assert isinstance(r, types.FunctionResponse) and r.id == "c1" and r.name == name
    return r.response


def test_declarations_are_valid_and_have_no_additional_properties(tools):
    decls = tools.declarations()
    assert [d.name for d in decls] == ["set_timer", "set_alarm", "list_timers", "cancel_timer", "set_volume"]
    for d in decls:
        assert "additionalProperties" not in str(d.parameters_json_schema)
        types.Tool(function_declarations=[d])  # the SDK accepts it
    assert HouseholdTools(None, None).declarations() == []
    assert [d.name for d in HouseholdTools(None, tools.volume).declarations()] == ["set_volume"]


@pytest.mark.parametrize(("text", "seconds"), [
    (90, 90), (2.5, 2.5), ("90", 90), ("90s", 90), ("10m", 600), ("10 min", 600), ("1h30m", 5400),
    ("1 hour 30 minutes", 5400), ("1 hour and 5 seconds", 3605), ("1:30:00", 5400), ("5:00", 300),
    ("PT10M", 600), ("pt1h2m3s", 3723), ("1.5 hours", 5400),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "soon", "10 parsecs", "m10", "10m ago", "P", True, None, [10], "nan"])
def test_bad_durations(bad):
    with pytest.raises(ToolError, match="duration must be"):
        parse_duration(bad)


def test_times():
    assert parse_time("07:30") == time(7, 30)
    assert parse_time("7") == time(7, 0)
    assert parse_time("19:05:30") == time(19, 5, 30)
    assert parse_time("7:30 pm") == time(19, 30) and parse_time("12 am") == time(0, 0)
    assert parse_time("12:15 P.M.") == time(12, 15)
    assert parse_time("2026-12-24 18:00") == datetime(2026, 12, 24, 18, 0)
    assert parse_time("2026-12-24T18:00") == datetime(2026, 12, 24, 18, 0)
    for bad in ("25:00", "7:61", "13 pm", "tomorrow", "2026-02-30 07:00", 730, None):
        with pytest.raises(ToolError, match="time"):
            parse_time(bad)


async def test_timer_calls(tools):
    r = await call(tools, "set_timer", {"duration": "10m", "label": "pasta"})
    assert r["timer"]["id"] == "timer-1" and r["timer"]["duration"] == "10 minutes"
    assert r["timer"]["rings_at"] == "2026-11-20 13:10:00 CET"
    r = await call(tools, "set_alarm", {"time": "7:00"})
    assert r["alarm"]["time"] == "2026-11-21T07:00:00"
    r = await call(tools, "list_timers", {})
    assert [t["id"] for t in r["timers"]] == ["timer-1", "alarm-2"]
    r = await call(tools, "cancel_timer", {"id": "pasta"})
    assert [t["id"] for t in r["cancelled"]] == ["timer-1"]
    r = await call(tools, "cancel_timer", {"all": True})
    assert [t["id"] for t in r["cancelled"]] == ["alarm-2"]
    assert (await call(tools, "list_timers", None)) == {"timers": []}


@pytest.mark.parametrize(("name", "args", "message"), [
    ("set_timer", {}, "duration is required"),
    ("set_timer", {"duration": "soon"}, "duration must be like"),
    ("set_timer", {"duration": "0s"}, "from 1 second to 24 hours"),
    ("set_timer", {"duration": "25h"}, "from 1 second to 24 hours"),
    ("set_timer", {"duration": "5m", "label": ["x"]}, "label must be text"),
    ("set_timer", {"duration": "5m", "volume": 3}, "unexpected argument 'volume'"),
    ("set_alarm", {}, "time is required"),
    ("set_alarm", {"time": "noonish"}, "time must be like"),
    ("set_alarm", {"time": "2020-01-01 07:00"}, "has passed"),
    ("list_timers", {"x": 1}, "takes no arguments"),
    ("cancel_timer", {}, "give id"),
    ("cancel_timer", {"all": "yes"}, "all must be true or false"),
    ("cancel_timer", {"id": "timer-99"}, "no timer or alarm 'timer-99'"),
    ("set_volume", {}, "either level"),
    ("set_volume", {"level": 50, "change": "up"}, "either level"),
    ("set_volume", {"level": 101}, "0 to 100"),
    ("set_volume", {"level": "50"}, "whole number"),
    ("set_volume", {"level": 0.5}, "whole number"),
    ("set_volume", {"change": "louder"}, "up or down"),
    ("launch_rocket", {}, "unknown function"),
])
async def test_bad_arguments_answer_with_an_error(tools, name, args, message):
    r = await call(tools, name, args)
    assert list(r) == ["error"] and message in r["error"], r
    assert tools.timers.list() == [] and tools.volume.level == 50  # nothing changed


async def test_arguments_not_an_object(tools):
    r = await tools.call(types.FunctionCall(id="c2", name="set_timer", args=None))
    assert "duration is required" in r.response["error"]  # no arguments at all (2.5 models may send none)
    with pytest.raises(ToolError, match="must be an object"):
        tools.handle("set_timer", ["10m"])


async def test_limit_reached_is_an_error_answer(tools):
    for _ in range(3):
        await call(tools, "set_timer", {"duration": 60})
    r = await call(tools, "set_timer", {"duration": 60})
    assert "timers.max = 3" in r["error"]


async def test_set_volume(tools):
    assert await call(tools, "set_volume", {"level": 30}) == {"volume": 30, "was": 50}
    assert await call(tools, "set_volume", {"change": "up"}) == {"volume": 40, "was": 30}
    assert await call(tools, "set_volume", {"change": "down"}) == {"volume": 30, "was": 40}
    assert await call(tools, "set_volume", {"level": 100.0}) == {"volume": 100, "was": 30}
    assert tools.volume.gain == 1.0


async def test_an_unexpected_failure_is_an_error_answer_too(tools, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(tools.timers, "list", boom)
    r = await call(tools, "list_timers", {})
    assert r == {"error": "internal error in list_timers: RuntimeError: disk on fire"}
