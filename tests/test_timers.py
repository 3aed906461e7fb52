"""Timers and alarms: restarts, offline ringing, DST (Europe/Berlin), clock jumps, cancel, limits."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time as clock
from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edged.config import TimersConfig
from edged.errors import ToolError
from edged.timers import FILE_NAME, Timers, local_zone, resolve_local

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


class FakeClock:
    """Monotonic and wall clocks the test moves; a new instance is a new boot (monotonic from 0)."""

    def __init__(self, wall: float, tz=BERLIN, synced: bool = True) -> None:
        self.mono = 1000.0
        self.wall = wall
        self.tz = tz
        self.is_synced = synced

    def synced(self) -> bool:
        return self.is_synced

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall

    def zone(self):
        return self.tz

    def advance(self, s: float) -> None:
        self.mono += s
        self.wall += s

    def jump_wall(self, s: float) -> None:
        self.wall += s


class Rig:
    def __init__(self, state: Path, clock: FakeClock, **cfg) -> None:
        self.rang: list[dict] = []
        self.ended: list[tuple[dict, str]] = []
        self.changes: list[int] = []  # how many there were at each on_change
        self.clock = clock
        self.t = Timers(TimersConfig(**cfg), state, clock=clock, on_ring=self.rang.append,
                        on_ring_end=lambda it, why: self.ended.append((it, why)),
                        on_change=lambda: self.changes.append(len(self.t.list())))
        self.t.load()

    def step(self, s: float) -> None:
        self.clock.advance(s)
        self.t.check()

    def ringing_ids(self) -> list[str]:
        return [it["id"] for it in self.t.ringing]


def _stored(state: Path) -> dict:
    return json.loads((state / FILE_NAME).read_text())


# -- timers ------------------------------------------------------------------------------------------
def test_timer_rings_on_time_then_stops_after_ring_max(tmp_path):
    r = Rig(tmp_path, FakeClock(utc(2026, 11, 20, 12)), ring_max_s=30)
    t = r.t.set_timer(300, "pasta")
    assert t["id"] == "timer-1" and t["label"] == "pasta" and t["duration"] == "5 minutes"
    assert t["rings_at"] == "2026-11-20 13:05:00 CET" and t["remaining_s"] == 300
    r.step(299.5)
    assert r.rang == []
    r.step(0.5)
    assert [it["label"] for it in r.rang] == ["pasta"] and r.ringing_ids() == ["timer-1"]
    r.step(10)
    assert len(r.rang) == 1  # rings once, keeps ringing
    r.step(20)
    assert [(it["id"], why) for it, why in r.ended] == [("timer-1", "timeout")]
    assert r.t.list() == [] and _stored(tmp_path)["items"] == []


def test_timer_survives_a_restart(tmp_path):
    clock = FakeClock(utc(2026, 11, 20, 12))
    a = Rig(tmp_path, clock)
    a.t.set_timer(600, "tea")
    a.step(100)
    # the daemon restarts: a new boot (monotonic restarts), the wall clock 20 s later
    clock2 = FakeClock(clock.wall + 20)
    clock2.mono = 5.0
    b = Rig(tmp_path, clock2)
    [item] = b.t.list()
    assert item["id"] == "timer-1" and item["label"] == "tea" and item["remaining_s"] == 480
    b.step(479)
    assert b.rang == []
    b.step(1)
    assert [it["id"] for it in b.rang] == ["timer-1"]
    assert b.t.set_timer(60)["id"] == "timer-2"  # ids keep counting across restarts


def test_timer_due_while_the_daemon_was_down_rings_at_start(tmp_path, caplog):
    clock = FakeClock(utc(2026, 11, 20, 12))
    a = Rig(tmp_path, clock, missed_max_s=3600)
    a.t.set_timer(60, "eggs")
    a.t.set_timer(120, "old")
    down = FakeClock(clock.wall + 300)  # 5 minutes later
    b = Rig(tmp_path, down, missed_max_s=3600)
    b.t.check()
    assert sorted(it["label"] for it in b.rang) == ["eggs", "old"]
    # much later than missed_max_s: dropped with a log line, reported, not rung
    c_clock = FakeClock(clock.wall)
    c = Rig(tmp_path / "c", c_clock, missed_max_s=600)
    c.t.set_timer(60, "forgotten")
    d = Rig(tmp_path / "c", FakeClock(clock.wall + 3 * 3600), missed_max_s=600)
    with caplog.at_level(logging.WARNING, "edged.timers"):
        d.t.check()
    assert d.rang == [] and d.t.list() == []
    assert d.t.status()["missed"][0]["label"] == "forgotten" and d.t.status()["missed"][0]["late_s"] == 3 * 3600 - 60
    assert "was due 2 hours 59 minutes ago" in caplog.text


async def test_timer_rings_through_the_real_loop(tmp_path):
    rang = asyncio.Event()
    t = Timers(TimersConfig(), tmp_path, on_ring=lambda it: rang.set())
    await t.start()
    try:
        t.set_timer(1, "quick")
        await asyncio.wait_for(rang.wait(), 10)
        assert [it["label"] for it in t.ringing] == ["quick"]
        assert [it["label"] for it in t.stop_ringing()] == ["quick"] and t.list() == []
    finally:
        await t.stop()


# -- alarms and DST ----------------------------------------------------------------------------------
def test_alarm_next_occurrence_across_a_dst_change(tmp_path):
    # Saturday 28 March 2026, 12:00 CET; the clocks go forward that night
    r = Rig(tmp_path, FakeClock(utc(2026, 3, 28, 11)))
    a = r.t.set_alarm(time(7, 0), "wake up")
    assert a["time"] == "2026-03-29T07:00:00" and a["rings_at"] == "2026-03-29 07:00:00 CEST"
    assert a["remaining_s"] == 18 * 3600  # 19 hours on the wall clock, one of them skipped
    b = r.t.set_alarm(time(11, 0))
    assert b["time"] == "2026-03-29T11:00:00"  # 11:00 has passed today: tomorrow
    c = r.t.set_alarm(time(13, 0))
    assert c["time"] == "2026-03-28T13:00:00"


def test_alarm_in_the_dst_gap_rings_when_the_clocks_jump(tmp_path):
    # 29 March 2026: 02:00 CET becomes 03:00 CEST, so 02:30 never happens
    assert resolve_local(datetime(2026, 3, 29, 2, 30), BERLIN) == (utc(2026, 3, 29, 1), "skipped")
    r = Rig(tmp_path, FakeClock(utc(2026, 3, 28, 21)))
    a = r.t.set_alarm(time(2, 30), "gap")
    assert a["note"] == "skipped" and a["rings_at"] == "2026-03-29 03:00:00 CEST"
    r.step(utc(2026, 3, 29, 1) - r.clock.wall - 1)  # 01:59:59 CET
    assert r.rang == []
    r.step(1)
    assert [it["label"] for it in r.rang] == ["gap"]


def test_alarm_in_the_dst_overlap_rings_once_at_the_first(tmp_path):
    # 25 October 2026: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice
    assert resolve_local(datetime(2026, 10, 25, 2, 30), BERLIN) == (utc(2026, 10, 25, 0, 30), "repeated")
    r = Rig(tmp_path, FakeClock(utc(2026, 10, 24, 20)), ring_max_s=60)
    a = r.t.set_alarm(time(2, 30), "overlap")
    assert a["note"] == "repeated" and a["rings_at"] == "2026-10-25 02:30:00 CEST"
    r.step(utc(2026, 10, 25, 0, 30) - r.clock.wall)
    assert len(r.rang) == 1
    r.t.stop_ringing()
    for _ in range(4 * 60):  # through the second 02:30 (CET) and beyond, a minute at a time
        r.step(60)
    assert len(r.rang) == 1


def test_normal_local_times_are_exact():
    assert resolve_local(datetime(2026, 7, 1, 7, 0), BERLIN) == (utc(2026, 7, 1, 5), "")
    assert resolve_local(datetime(2026, 1, 1, 7, 0), BERLIN) == (utc(2026, 1, 1, 6), "")


def test_alarm_with_a_date_and_in_the_past(tmp_path):
    r = Rig(tmp_path, FakeClock(utc(2026, 11, 20, 12)))
    a = r.t.set_alarm(datetime(2026, 12, 24, 18, 0), "presents")
    assert a["rings_at"] == "2026-12-24 18:00:00 CET"
    with pytest.raises(ToolError, match="2026-11-19 08:00:00 has passed .it is now 2026-11-20 13:00:00 CET"):
        r.t.set_alarm(datetime(2026, 11, 19, 8, 0))
    with pytest.raises(ToolError, match="at most a year ahead"):
        r.t.set_alarm(datetime(2028, 1, 1, 8, 0))


def test_alarm_follows_a_change_of_time_zone(tmp_path):
    clock = FakeClock(utc(2026, 11, 20, 12))
    r = Rig(tmp_path, clock)
    r.t.set_alarm(time(18, 0), "dinner")
    clock.tz = ZoneInfo("Europe/London")  # the speaker moved (or the zone was fixed)
    assert r.t.list()[0]["rings_at"] == "2026-11-20 18:00:00 GMT"
    r.step(utc(2026, 11, 20, 18) - clock.wall - 1)
    assert r.rang == []
    r.step(1)
    assert len(r.rang) == 1


# -- clock jumps -------------------------------------------------------------------------------------
def test_after_a_power_cut_kept_timers_count_to_their_due_time_when_ntp_sets_the_clock(tmp_path, caplog):
    """No RTC: the Pi boots at 18:01 (the time it stopped), NTP sets 18:31 later.  The 10-minute timer
    set at 18:00 fell due during the outage: it rings when the clock is set, not 9 minutes later."""
    caplog.set_level(logging.INFO, logger="edged.timers")
    clock = FakeClock(utc(2026, 11, 20, 18))
    a = Rig(tmp_path, clock)
    a.t.set_timer(600, "soup")
    a.step(60)
    boot = FakeClock(clock.wall, synced=False)  # the power comes back 30 min later; the clock says 18:01
    boot.mono = 8.0
    b = Rig(tmp_path, boot)
    b.t.check()
    assert b.rang == [] and b.t.list()[0]["remaining_s"] == 540
    b.step(20)
    boot.jump_wall(30 * 60)  # NTP: 18:31
    boot.is_synced = True
    b.t.check()
    assert [it["label"] for it in b.rang] == ["soup"]
    assert "before it was known to be set" in caplog.text
    # one due while the power was out for longer than timers.missed_max_s is dropped, not rung late
    c_dir = tmp_path / "c"
    c = Rig(c_dir, FakeClock(utc(2026, 11, 21, 18)), missed_max_s=600)
    c.t.set_timer(600, "bread")
    late = FakeClock(utc(2026, 11, 21, 18, 1), synced=False)
    d = Rig(c_dir, late, missed_max_s=600)
    late.jump_wall(3 * 3600)
    d.t.check()
    assert d.rang == [] and d.t.list() == [] and d.t.missed[0]["label"] == "bread"


def test_a_kept_timer_keeps_its_remaining_time_through_jumps_once_the_clock_was_set(tmp_path):
    """The clock synced at start (or later, without a jump): a person setting the date afterwards
    does not move the kept timer."""
    clock = FakeClock(utc(2026, 11, 20, 18))
    a = Rig(tmp_path, clock)
    a.t.set_timer(600, "tea")
    boot = FakeClock(clock.wall + 5, synced=False)
    b = Rig(tmp_path, boot)
    b.step(1)
    boot.is_synced = True  # timesyncd set it with a small step, under the jump tolerance
    b.step(1)
    boot.jump_wall(3600)  # then someone sets the clock an hour ahead
    b.step(1)
    assert b.rang == [] and b.t.list()[0]["remaining_s"] == 592


def test_wall_clock_jumps_do_not_move_timers_and_are_kept_for_restarts(tmp_path):
    clock = FakeClock(utc(2026, 11, 20, 12))
    r = Rig(tmp_path, clock)
    r.t.set_timer(600, "bread")
    r.step(60)
    clock.jump_wall(3600)  # NTP or a person sets the clock an hour ahead
    r.step(1)
    assert r.rang == [] and r.t.list()[0]["remaining_s"] == 539
    # the kept due time follows the new wall clock, so a restart now keeps the remaining time
    assert _stored(tmp_path)["items"][0]["due"] == clock.wall + 539
    clock.jump_wall(-7200)
    r.step(538)
    assert r.rang == []
    r.step(1)
    assert [it["label"] for it in r.rang] == ["bread"]


def test_alarms_follow_wall_clock_jumps(tmp_path):
    clock = FakeClock(utc(2026, 11, 20, 6))  # 07:00 CET
    r = Rig(tmp_path, clock)
    r.t.set_alarm(time(8, 0), "meeting")
    clock.jump_wall(-1800)  # back half an hour: the alarm is now 90 minutes away
    r.step(1)
    assert r.t.list()[0]["remaining_s"] == 90 * 60 - 1
    r.step(3600)
    assert r.rang == []
    clock.jump_wall(3600)  # forward past it: it rings at once
    r.step(1)
    assert [it["label"] for it in r.rang] == ["meeting"]


# -- cancel, stop, limits ----------------------------------------------------------------------------
def test_cancel_by_id_or_label(tmp_path):
    r = Rig(tmp_path, FakeClock(utc(2026, 11, 20, 12)))
    r.t.set_timer(60, "Eggs")
    r.t.set_timer(120, "tea")
    r.t.set_timer(180, "tea")
    assert [it["id"] for it in r.t.cancel("timer-1")] == ["timer-1"]
    assert [it["id"] for it in r.t.cancel("TEA")] == ["timer-2", "timer-3"]
    r.t.set_timer(60, "rice")
    with pytest.raises(ToolError, match=r"no timer or alarm 'pasta' \(set: timer-4 \(rice\)\)"):
        r.t.cancel("pasta")
    r.t.cancel_all()
    with pytest.raises(ToolError, match="none is set"):
        r.t.cancel("rice")
    assert _stored(tmp_path)["items"] == []


def test_cancelling_or_stopping_a_ringing_one_ends_the_ring(tmp_path):
    r = Rig(tmp_path, FakeClock(utc(2026, 11, 20, 12)))
    r.t.set_timer(10, "a")
    r.t.set_timer(10, "b")
    r.t.set_timer(100, "c")
    r.step(10)
    assert sorted(r.ringing_ids()) == ["timer-1", "timer-2"]
    r.t.cancel("a")
    assert [(it["id"], why) for it, why in r.ended] == [("timer-1", "cancelled")]
    assert [it["id"] for it in r.t.stop_ringing()] == ["timer-2"]
    assert r.ended[-1][1] == "stopped"
    assert [it["id"] for it in r.t.list()] == ["timer-3"]  # not ringing yet: untouched


def test_every_set_and_removal_is_told(tmp_path):
    r = Rig(tmp_path, FakeClock(utc(2026, 11, 20, 12)))
    r.t.set_timer(10, "a")
    r.t.set_alarm(time(13, 0), "lunch")
    assert r.changes == [1, 2]
    r.step(10)  # ringing is not a change of what is set (the Ringer tells that)
    assert r.changes == [1, 2] and r.ringing_ids() == ["timer-1"]
    r.t.stop_ringing()
    r.t.cancel("lunch")
    with pytest.raises(ToolError):
        r.t.cancel("nothing")
    assert r.changes == [1, 2, 1, 0]


def test_limits_and_bad_values(tmp_path):
    r = Rig(tmp_path, FakeClock(utc(2026, 11, 20, 12)), max=2)
    for bad, msg in [(0.5, "from 1 second to 24 hours"), (86401, "from 1 second to 24 hours"),
                     (float("inf"), "number of seconds"), ("10", "number of seconds"), (True, "number of seconds")]:
        with pytest.raises(ToolError, match=msg):
            r.t.set_timer(bad)
    with pytest.raises(ToolError, match="at most 60 characters"):
        r.t.set_timer(60, "x" * 61)
    with pytest.raises(ToolError, match="plain text"):
        r.t.set_timer(60, "a\x1b[31m")
    with pytest.raises(ToolError, match="label must be text"):
        r.t.set_timer(60, 5)
    assert r.t.set_timer(60, "  two   spaces ")["label"] == "two spaces"
    r.t.set_alarm(time(9, 0))
    with pytest.raises(ToolError, match=r"2 timers and alarms are set.*timers.max = 2"):
        r.t.set_timer(60)
    assert len(r.t.list()) == 2


# -- the file ----------------------------------------------------------------------------------------
def test_bad_file_is_kept_aside_and_bad_entries_skipped(tmp_path, caplog):
    (tmp_path / FILE_NAME).write_text("{ not json")
    with caplog.at_level(logging.ERROR, "edged.timers"):
        r = Rig(tmp_path, FakeClock(utc(2026, 11, 20, 12)))
    assert r.t.list() == [] and (tmp_path / (FILE_NAME + ".bad")).read_text() == "{ not json"
    assert "is not a timers file" in caplog.text
    wall = utc(2026, 11, 20, 12)
    (tmp_path / FILE_NAME).write_text(json.dumps({"version": 1, "next": 9, "items": [
        {"id": "timer-3", "kind": "timer", "label": "ok", "due": wall + 60, "created": wall, "duration_s": 60},
        {"id": "timer-4", "kind": "bomb", "due": wall},
        {"id": "alarm-5", "kind": "alarm", "due": wall, "local": "not a date"},
        "junk",
    ]}))
    r2 = Rig(tmp_path, FakeClock(wall))
    assert [it["id"] for it in r2.t.list()] == ["timer-3"]
    assert r2.t.set_timer(5)["id"] == "timer-9"
    # a stale temp file from a write killed midway is removed at load (a fresh one may be a save in flight)
    stale = tmp_path / f".{FILE_NAME}.abc123"
    stale.write_text("half")
    os.utime(stale, (clock.time() - 120, clock.time() - 120))
    Rig(tmp_path, FakeClock(wall))
    assert not stale.exists()


def test_file_is_private_and_atomic(tmp_path):
    r = Rig(tmp_path, FakeClock(utc(2026, 11, 20, 12)))
    r.t.set_timer(60, "x")
    assert (tmp_path / FILE_NAME).stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE_NAME]


# -- the local zone ----------------------------------------------------------------------------------
def test_local_zone_from_tz(monkeypatch, caplog):
    monkeypatch.setenv("TZ", "Europe/Berlin")
    assert local_zone() == BERLIN
    monkeypatch.setenv("TZ", ":America/New_York")
    assert str(local_zone()) == "America/New_York"
    monkeypatch.setenv("TZ", "Mars/Olympus_Mons")
    with caplog.at_level(logging.WARNING, "edged.timers"):
        assert str(local_zone()) == "UTC"
    assert "alarms use UTC" in caplog.text


def test_the_system_clock_is_synced_when_timesyncd_says_so(tmp_path, monkeypatch):
    from edged import timers

    flag = tmp_path / "synchronized"
    monkeypatch.setattr(timers, "TIMESYNC_FLAG", str(flag))
    assert timers.SystemClock().synced() is False
    flag.touch()  # systemd-timesyncd: the clock has been set
    assert timers.SystemClock().synced() is True
