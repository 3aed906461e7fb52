"""Timers and alarms on the real daemon (``edged run``) with the emulator and ALSA file devices: a
timer set by voice rings (the ring cue in the playback WAV) and the model is told; `edgectl timers`
lists, cancels and stops (the ring cue stops with it); the wake word silences the ringing without
opening a turn; ring_max_s ends it; a timer survives kill -9 and rings, heard, while the assistant is
offline."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Awaitable

from edged import config
from edged.dev.rig import Rig
from edged.sim.scenario import Scenario
from edged.state import State
from edged.timers import FILE_NAME
from tests.waiting import status_until, until

from .conftest import speech, summary_rows
from .test_e2e_cues import _cue, _find, _record_replies
from .test_e2e_inproc import speaker
from .test_e2e_turns import _ear_went_past_the_mic

RING_MAX_S = 8.0
RING_ON = {"cues": {"ring": {"enabled": True}}}  # only the ring cue: the replies stay bit-exact in the WAV
PERIOD_BYTES = 24000 * 2 * 20 // 1000  # one player period (20 ms at 24 kHz mono S16)


def _played(rig: Rig) -> bytes:
    """What the player has written to the playback WAV so far (ALSA's file PCM writes as it goes)."""
    try:
        raw = rig.wavs[-1].read_bytes()
    except FileNotFoundError:
        return b""
    return raw[44:]  # the canonical 44-byte header ALSA's file plugin writes; the samples follow


def _found_at(played: bytes, needle: bytes, start: int) -> int | None:
    """Where ``needle`` starts in ``played`` at or after ``start`` (sample-aligned), or None."""
    at = _find(played, needle, max(0, start))
    return at if at >= 0 else None


def _set_timer(duration: str, label: str, reply: str) -> list[dict]:
    return [{"tool_call": {"name": "set_timer", "args": {"duration": duration, "label": label}}},
            {"say": reply}]


class Events:
    """Every event the daemon publishes, from subscription on (resubscribed after a restart)."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.seen: list[dict] = []
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            try:
                async for ev in self.rig.events():
                    self.seen.append(ev)
            except Exception:
                pass
            await asyncio.sleep(0.1)

    async def wait(self, pred, what: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.seen:
                if pred(ev):
                    return ev
            assert time.monotonic() < deadline, f"no {what} within {timeout} s; events: {self.seen[-15:]}"
            await asyncio.sleep(0.05)

    def timer(self, what: str, ident: str, timeout: float = 30.0, **match) -> Awaitable[dict]:
        return self.wait(lambda e: e.get("event") == "timer" and e.get("what") == what and e.get("id") == ident
                         and all(e.get(k) == v for k, v in match.items()), f"timer {what} of {ident} {match}",
                         timeout)

    def close(self) -> None:
        self._task.cancel()


async def edgectl(rig: Rig, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edged.ctl", "--socket", str(rig.socket), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def _status_until(rig: Rig, pred, what: str, timeout: float = 30.0) -> dict:
    """status_until, showing the status's timers on a failure."""
    return await status_until(rig, pred, what, timeout, detail=lambda st: f"timers: {st.get('timers')}")


async def test_timer_set_by_voice_rings_is_told_and_stopped_by_edgectl_the_wake_word_and_ring_max(tmp_path,
                                                                                                 models_dir):
    scenario = Scenario([
        [{"input_transcript": "set a pasta timer for two seconds"},
         *_set_timer("2s", "pasta", "Two seconds, starting now.")],
        _set_timer("2s", "tea", "Tea timer set."),
        _set_timer("2s", "eggs", "Eggs timer set."),
        _set_timer("10m", "roast", "Roast timer set."),
    ])
    rig = Rig(tmp_path / "rig", models_dir, scenario=scenario,
              overrides={"timers": {"ring_max_s": RING_MAX_S}, **RING_ON})
    await rig.start()
    events = Events(rig)
    sent = _record_replies(rig.emu)
    ring = _cue("ring")
    try:
        await rig.emu.wait_connections(1, timeout=15)
        await _status_until(rig, lambda st: st["live"].get("connected"), "the Live session connected")

        # 1. set by voice: the model's call reaches the Timers part, and the timer rings 2 s later
        rig.speak(speech("hey jarvis") + speech("set a pasta timer for two seconds"), pad_s=2.0)
        result = await events.wait(lambda e: e.get("event") == "tool_result" and e.get("name") == "set_timer",
                                   "the set_timer result", timeout=60)
        assert result["ok"] and result["response"]["timer"]["id"] == "timer-1"
        ringing = await events.timer("ringing", "timer-1", label="pasta", duration="2 seconds")
        # on time: the timer is made after the emulator sent the call and before the result event (which a
        # loaded machine may publish a few hundred ms later), so it rang no earlier than 2 s after the call
        # was sent, and within the check's second (plus slack) of the result
        call_t = next(f.t for f in rig.emu.sent if f.kind == "tool_call" and "set_timer" in json.dumps(f.data))
        assert ringing["mono"] - call_t >= 2 - 0.05, (ringing["mono"], call_t)
        assert ringing["mono"] - result["mono"] < 2 + 1.5
        st = await rig.status()
        assert [it["label"] for it in st["timers"]["ringing"]] == ["pasta"]
        assert st["timers"]["timers"][0]["state"] == "ringing"
        # ... and it is heard: the ring cue (at cues.volume, audio.volume 100) in the playback WAV
        await until(lambda: _find(_played(rig), ring) >= 0, "a whole ring cue in the playback WAV",
                    timeout=30, every=0.05)
        assert (await rig.status())["audio"]["playback"]["cue"] == "ring"
        rc, out, err = await edgectl(rig, "status")
        rows = summary_rows(out)
        assert rc == 0 and rows["Timers"] == "RINGING; timer 'pasta' (ringing)", (out, err)
        assert rows["Volume"] == "100%" and rows["Live"].startswith("connected, "), out

        # 2. the model is told as context what rang, without a reply being asked for
        told = await rig.emu.wait_for(lambda: [f for f in rig.emu.frames_of("client_content")
                                               if "pasta" in json.dumps(f.data)] or None, timeout=10)
        assert "is ringing now" in json.dumps(told[0].data)
        assert not (told[0].data.get("turn_complete") or told[0].data.get("turnComplete"))

        # 3. edgectl timers stop silences it
        rc, out, err = await edgectl(rig, "timers", "stop")
        assert rc == 0, err
        assert "timer-1" in out
        await events.timer("ended", "timer-1", reason="stopped")
        assert (await rig.status())["timers"]["ringing"] == []
        st = await _status_until(rig, lambda st: st["audio"]["playback"]["cue"] is None, "the ring cue stopped")
        stopped_at = st["audio"]["playback"]["frames_written"] * 2
        await rig.wait_state("idle", timeout=30)

        # 4. the wake word while it rings stops the ringing, and opens no turn
        assert (await rig.request("say", text="set a tea timer for two seconds"))["ok"]
        await events.timer("ringing", "timer-2", label="tea")
        # the ring stopped with `timers stop`: the next thing written is the tea reply, unmixed (at most
        # the one period in flight at the stop comes between)
        assert len(sent) == 2
        reply_head = sent[1][: 24000 * 2 * 3 // 10]  # its first 0.3 s, before timer-2 rings
        reply_at = await until(lambda: _found_at(_played(rig), reply_head, stopped_at - PERIOD_BYTES),
                               "the tea reply in the playback WAV", timeout=30, every=0.05)
        assert stopped_at <= reply_at <= stopped_at + PERIOD_BYTES, (stopped_at, reply_at)
        await rig.wait_state("idle", timeout=30)
        turns_before = len(rig.emu.frames_of("activity_start"))
        seen_before = len(events.seen)
        rig.speak(speech("hey jarvis"), pad_s=1.0)
        await events.timer("ended", "timer-2", reason="stopped", timeout=RING_MAX_S)
        await _ear_went_past_the_mic(rig)
        assert len(rig.emu.frames_of("activity_start")) == turns_before
        after = events.seen[seen_before:]
        assert any(e["event"] == "wake" and e.get("model") == "hey_jarvis" for e in after)  # it was heard
        assert not [e for e in after if e["event"] == "state" and e["state"] == "listening"]
        assert (await rig.status())["state"] == "idle"

        # 5. nobody stops it: it ends by itself after timers.ring_max_s
        assert (await rig.request("say", text="set an eggs timer for two seconds"))["ok"]
        rang = await events.timer("ringing", "timer-3", label="eggs")
        ended = await events.timer("ended", "timer-3", reason="timeout", timeout=RING_MAX_S + 10)
        assert RING_MAX_S - 0.5 <= ended["mono"] - rang["mono"] < RING_MAX_S + 2
        await rig.wait_state("idle", timeout=30)

        # 6. edgectl timers lists and cancels
        assert (await rig.request("say", text="set a roast timer for ten minutes"))["ok"]
        await _status_until(rig, lambda st: st["timers"]["timers"], "the roast timer set")
        rc, out, err = await edgectl(rig, "timers")
        assert rc == 0, err
        assert "timer-4" in out and "roast" in out
        rc, out, err = await edgectl(rig, "status")
        assert rc == 0 and summary_rows(out)["Timers"].startswith("timer 'roast' in 9m"), (out, err)
        rc, out, err = await edgectl(rig, "timers", "cancel", "nope")
        assert rc == 1 and "no timer or alarm 'nope'" in err and "timer-4 (roast)" in err
        rc, out, err = await edgectl(rig, "timers", "cancel", "timer-4")
        assert rc == 0 and "timer-4" in out, err
        rc, out, err = await edgectl(rig, "timers", "list")
        assert rc == 0 and out.strip() == "no timers or alarms", (out, err)
        assert json.loads((rig.state_dir / FILE_NAME).read_text())["items"] == []
    finally:
        events.close()
        await rig.close()


async def test_a_timer_survives_kill9_and_rings_while_offline(tmp_path, models_dir):
    rig = Rig(tmp_path / "rig", models_dir, scenario=Scenario([_set_timer("10s", "bread", "Bread timer set.")]),
              overrides=RING_ON)
    await rig.start()
    events = Events(rig)
    try:
        await rig.emu.wait_connections(1, timeout=15)
        await _status_until(rig, lambda st: st["live"].get("connected"), "the Live session connected")
        assert (await rig.request("say", text="set a bread timer for ten seconds"))["ok"]
        st = await _status_until(rig, lambda st: st["timers"]["timers"], "the bread timer set")
        assert st["timers"]["timers"][0]["state"] == "set" and st["timers"]["timers"][0]["label"] == "bread"
        kept = json.loads((rig.state_dir / FILE_NAME).read_text())["items"]
        assert [it["label"] for it in kept] == ["bread"]

        # kill -9, the assistant goes away, the daemon comes back without it
        await rig.stop_daemon(signal.SIGKILL)
        await rig.emu.stop()
        await rig.start_daemon()
        st = await _status_until(rig, lambda st: st["timers"]["timers"] or st["timers"]["rung"], "the timer back")
        assert not st["live"].get("connected")
        # it rings (on time, or at once if the restart took longer than what was left)
        st = await _status_until(rig, lambda st: st["timers"]["ringing"], "the bread timer ringing", timeout=30)
        assert [it["id"] for it in st["timers"]["ringing"]] == ["timer-1"]
        assert st["timers"]["ringing"][0]["label"] == "bread"
        assert not st["live"].get("connected") and st["live"]["state"] != "connected"
        # heard while offline: the ring cue in the restarted daemon's playback WAV
        await until(lambda: _find(_played(rig), _cue("ring")) >= 0, "the ring cue in the playback WAV (offline)",
                    timeout=30, every=0.05)
        assert not (await rig.status())["live"].get("connected")
        rc, out, err = await edgectl(rig, "timers", "stop")
        assert rc == 0 and "timer-1" in out, err
        await events.timer("ended", "timer-1", reason="stopped")
    finally:
        events.close()
        await rig.close()


async def test_the_talk_button_silences_the_ringing_and_opens_no_turn_muted_or_not(tmp_path, models_dir,
                                                                                  monkeypatch):
    scenario = Scenario([_set_timer("1s", "tea", "Tea timer set.")])
    async with speaker(tmp_path, models_dir, monkeypatch, scenario=scenario) as sp:
        def ringing() -> list:
            return sp.d.status()["timers"]["ringing"]

        async def ear_went_on() -> None:
            # a turn asked of the Ear opens at its next frame: let a few go by
            at = sp.d.status()["wake"]["ear"]["frames"]
            await sp.wait(lambda: sp.d.status()["wake"]["ear"]["frames"] >= at + 3, what="the Ear's next frames")

        def press(pin: int) -> None:
            sp.pin(pin).drive_low()
            sp.pin(pin).drive_high()

        sp.d.conv.say("set a tea timer for one second")
        await sp.wait(ringing, what="the first tea timer ringing")
        await sp.wait(lambda: sp.d.state == State.IDLE, what="idle after the reply")
        starts = len(sp.emu.frames_of("activity_start"))
        press(22)  # the talk button
        await sp.wait(lambda: not ringing(), timeout=5, what="the ringing stopped")
        await ear_went_on()
        assert sp.d.state == State.IDLE and len(sp.emu.frames_of("activity_start")) == starts

        # muted: the talk button still silences it, and the microphone stays muted
        sp.d.conv.say("another one")
        await sp.wait(ringing, what="the second tea timer ringing")
        press(23)  # the mute button
        await sp.wait(lambda: sp.d.capture.stats()["state"] == "muted", timeout=5, what="capture closed")
        press(22)
        await sp.wait(lambda: not ringing(), timeout=5, what="the ringing stopped while muted")
        assert sp.d.state == State.MUTED and sp.d.capture.stats()["state"] == "muted"
        assert len(sp.emu.frames_of("activity_start")) == starts


async def test_a_reload_keeps_the_timers_and_the_one_household_and_applies_ring_max_s(tmp_path, models_dir,
                                                                                      monkeypatch):
    scenario = Scenario([_set_timer("1s", "tea", "Tea timer set."), _set_timer("1h", "roast", "Roast timer set.")])
    async with speaker(tmp_path, models_dir, monkeypatch, scenario=scenario) as sp:
        p = sp.d.app.running_parts()
        timers, household = p.timers, p.household
        assert p.tools.household is household
        sub = sp.d.events.subscribe()
        await sp.d.reload(config.with_value(sp.d.cfg, "timers.ring_max_s", 1.0))
        assert p.timers is timers and timers.cfg.ring_max_s == 1.0
        sp.d.conv.say("set a tea timer for one second")
        while not ((ev := await asyncio.wait_for(sub.get(), 30))["event"] == "timer" and ev["what"] == "ended"):
            if ev["event"] == "timer":
                rang = ev
        assert ev["reason"] == "timeout" and 0.9 <= ev["mono"] - rang["mono"] < 3  # the new ring_max_s
        await sp.wait(lambda: sp.d.state == State.IDLE, what="idle after the reply")
        sp.d.conv.say("set a roast timer for an hour")
        await sp.wait(lambda: sp.d.status()["timers"]["timers"], what="the roast timer set")
        # a reload that rebuilds the tools (the devices group) gives them the same household and timers
        await sp.d.reload(config.with_value(sp.d.cfg, "camera.max_side", 320))
        p = sp.d.app.running_parts()
        assert p.tools.household is household and household.timers is timers
        assert {"set_timer", "set_alarm", "list_timers", "cancel_timer"} <= {d.name for d in p.tools.declarations()}
        assert [t["label"] for t in timers.list()] == ["roast"]
