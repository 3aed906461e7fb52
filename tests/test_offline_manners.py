"""Cues from the conversation and its offline manners: the reachability rule (edged.live.reach) and
what a wake does when the assistant is offline, reconnecting or refusing us (fakes of
tests/test_state_machine.py; the real daemon: tests/e2e/test_e2e_cues.py)."""

from __future__ import annotations

import pytest

from edged.live.reach import Reach
from edged.state import State

from .test_state_machine import reach


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


# ---- the rule -----------------------------------------------------------------------------------
def test_reach_connected_reconnecting_offline():
    clock = Clock()
    r = Reach(grace_s=10.0, clock=clock)
    assert r.verdict()[0] == "reconnecting"  # starting: the first connection is on its way
    r.update("connected", "s1")
    assert r.verdict() == ("connected", "")
    # a GoAway or a drop: reconnecting for up to grace_s, then offline
    r.update("disconnected", "1006 abnormal closure")
    clock.t += 2
    r.update("connecting", "resuming")
    assert r.verdict() == ("reconnecting", "connecting: resuming")
    clock.t += 9
    verdict, why = r.verdict()
    assert verdict == "offline" and "no connection for 11 s" in why
    r.update("resumed", "s1")
    assert r.verdict()[0] == "connected"


@pytest.mark.parametrize("state", ["offline", "auth_failed", "model_unavailable", "setup_refused", "no_key", "no_ca"])
def test_reach_down_states_are_offline_at_once_and_through_retries(state):
    clock = Clock()
    r = Reach(grace_s=10.0, clock=clock)
    r.update("connected")
    r.update(state, "why")
    assert r.verdict() == ("offline", f"{state}: why")
    r.update("connecting", "fresh session")  # the session's retry is not a reconnect in progress
    assert r.verdict() == ("offline", f"{state}: why")
    assert r.refused == (state in ("auth_failed", "model_unavailable", "setup_refused"))
    r.update("connected")
    assert r.verdict()[0] == "connected" and not r.refused


# ---- the conversation -------------------------------------------------------------------------------
def _cues(h) -> list[str]:
    return [c[2] for c in h.rec.calls if c[:2] == ("player", "play_cue")]


async def test_a_wake_while_offline_plays_the_offline_cue_and_opens_nothing():
    h = await reach(State.IDLE)
    try:
        h.conv.on_connection("offline", "[Errno 111] Connection refused")
        h.rec.calls.clear()
        h.conv.on_turn_start("wake")
        assert _cues(h) == ["offline"] and h.rec.has("ear", "cancel_turn")
        assert h.conv.state == State.IDLE  # the fake registry keeps no problem: rest is idle
        assert h.conv.stats["turns"] == 0 and h.conv.stats["offline_wakes"] == 1
        assert not h.rec.has("live", "retry_now")  # the network is down: nothing to hurry
        ev = h.published("offline_wake")[0]
        assert ev["source"] == "wake" and "Connection refused" in ev["why"]
        h.conv.say("hello")  # the sender is running: what it sends comes after anything queued before
        await h.until(lambda: h.rec.has("live", "send_text"), "the text turn")
        assert not h.rec.has("live", "activity_start")
    finally:
        await h.close()


async def test_a_wake_while_refused_retries_once_at_once():
    h = await reach(State.IDLE)
    try:
        h.conv.on_connection("auth_failed", "403 API key not valid")
        h.rec.calls.clear()
        h.conv.on_turn_start("button")
        assert _cues(h) == ["offline"] and h.rec.has("live", "retry_now")
        assert h.published("offline_wake")[0]["retry"] is True
    finally:
        await h.close()


async def test_a_wake_while_reconnecting_opens_the_turn_for_replay():
    h = await reach(State.IDLE)
    try:
        h.conv.on_connection("connected", "s1")
        h.conv.on_connection("disconnected", "1006 abnormal closure")
        h.rec.calls.clear()
        h.conv.on_turn_start("wake")
        assert h.conv.state == State.LISTENING and _cues(h) == ["wake"]
        await h.until(lambda: h.rec.has("live", "activity_start"), "the turn's start (kept by the session)")
    finally:
        await h.close()


async def test_a_turn_waiting_when_the_session_goes_offline_is_given_up_with_the_cue():
    h = await reach(State.THINKING)
    try:
        h.conv.on_connection("offline", "[Errno 101] Network is unreachable")
        assert h.conv.state == State.IDLE and _cues(h) == ["offline"] and h.conv._stale
        assert h.published("turn_end")[-1]["reason"] == "offline"
    finally:
        await h.close()


@pytest.mark.parametrize("source,cue", [("wake", "wake"), ("button", "wake"), ("edgectl", "wake"),
                                        ("follow-up", None)])
async def test_the_wake_cue_acknowledges_turns_a_person_started(source, cue):
    h = await reach(State.IDLE)
    try:
        h.conv.on_turn_start(source)
        assert _cues(h) == ([cue] if cue else [])
    finally:
        await h.close()


async def test_end_of_listening_and_mute_cues():
    h = await reach(State.LISTENING)
    try:
        h.conv.on_turn_end("silence")
        assert _cues(h) == ["listen_end"]
        h.rec.calls.clear()
        h.conv.on_turn_start("wake")  # barge-in on the thinking: flush first, then the wake cue
        calls = [c[1] for c in h.rec.calls if c[0] == "player"]
        assert calls.index("flush") < calls.index("play_cue")
        h.rec.calls.clear()
        h.conv.on_turn_end("no_speech")
        assert _cues(h) == []  # nothing was said: no end-of-listening cue
        h.conv.set_muted(True)
        h.conv.set_muted(False)
        assert _cues(h) == ["mute_on", "mute_off"]
        assert [e["name"] for e in h.published("cue")] == ["listen_end", "wake", "mute_on", "mute_off"]
    finally:
        await h.close()
