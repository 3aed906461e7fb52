"""Announcements against the real Conversation (its parts are the recording fakes of
tests/test_state_machine.py; the real daemon is in tests/mqtt/test_mqtt_daemon.py): said at once at
rest, kept while a turn is open or a reply plays (never cutting into it), refused while muted, bounded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from edged import config
from edged.announce import Announcer
from edged.conversation import Conversation
from edged.errors import EdgedError
from edged.ports import Ports
from edged.service.control import EventHub
from edged.state import State
from tests import waiting

from .test_state_machine import PCM, FakeEar, FakeLive, FakeMic, FakeParts, FakePlayer, FakeTools, Rec


@dataclass
class Speaker:
    conv: Conversation
    ann: Announcer
    rec: Rec
    seen: list[dict]

    def texts(self) -> list[str]:
        return [str(arg) for part, call, arg in self.rec.calls if (part, call) == ("live", "send_text")]

    def results(self) -> list[str]:
        return [e["result"] for e in self.seen if e["event"] == "announce"]

    async def until(self, pred, what: str, timeout: float = 3.0) -> None:
        """tests.waiting.until at the fakes' pace, showing the parts' calls on a failure."""
        await waiting.until(pred, what, timeout, every=0.005, detail=lambda: f"calls {self.rec.calls}")


async def _make(max_wait_s: float = 60.0, max_pending: int = 2) -> tuple[Speaker, asyncio.Task, asyncio.Task]:
    hub = EventHub()
    seen: list[dict] = []
    watcher = hub.subscribe()

    async def watch() -> None:
        while (ev := await watcher.get()) is not None:
            seen.append(ev)

    ports = Ports(publish=hub.publish, problem=lambda part, msg: None, post=lambda fn, *a: fn(*a),
                  spawn=lambda coro, name: asyncio.get_running_loop().create_task(coro))
    conv = Conversation(config.parse({}, "test.toml"), ports)
    rec = Rec()
    conv.attach(FakeParts(FakePlayer(rec), FakeEar(rec), FakeMic(rec), FakeLive(rec), FakeTools(rec)))
    conv.start()
    conv.ready()
    ann = Announcer(state=lambda: conv.state.value, say=conv.say, publish=hub.publish, subscribe=hub.subscribe,
                    unsubscribe=hub.unsubscribe, max_wait_s=max_wait_s, max_pending=max_pending)
    return Speaker(conv, ann, rec, seen), asyncio.create_task(ann.run()), asyncio.create_task(watch())


@pytest.fixture
async def sp() -> AsyncIterator[Speaker]:
    s, *tasks = await _make()
    yield s
    for t in tasks:
        t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await t
    s.conv.stop_now()
    await s.conv.stop()


async def test_at_rest_it_is_said_at_once_as_a_text_turn(sp: Speaker) -> None:
    sp.ann.submit("the laundry is done")
    assert sp.conv.state == State.THINKING
    await sp.until(lambda: sp.texts() == ["the laundry is done"], "the text turn")
    assert sp.ann.stats["said"] == 1 and sp.ann.pending == 0


async def test_it_waits_for_an_open_turn_to_end(sp: Speaker) -> None:
    sp.conv.on_turn_start("wake")
    sp.ann.submit("the post has arrived")
    assert sp.ann.pending == 1 and sp.conv.state == State.LISTENING
    await asyncio.sleep(0)
    assert sp.texts() == []  # conv.say would have been refused: a spoken turn is open
    sp.conv.on_turn_end("no_speech")
    await sp.until(lambda: sp.texts() == ["the post has arrived"], "the announcement after the turn")
    calls = [c[1] for c in sp.rec.calls if c[0] == "live"]
    assert calls.index("activity_end") < calls.index("send_text")
    assert sp.results() == ["waiting", "said"]


async def test_it_never_cuts_a_reply_off(sp: Speaker) -> None:
    sp.conv.on_turn_start("wake")
    sp.conv.on_turn_end("silence")
    sp.conv.on_audio(PCM)
    assert sp.conv.state == State.SPEAKING
    sp.ann.submit("dinner is ready")
    await asyncio.sleep(0.05)
    assert sp.texts() == [] and not any(c[:2] == ("player", "flush") for c in sp.rec.calls)
    sp.conv.on_turn_complete()
    sp.conv.on_drained()  # the reply has played out
    await sp.until(lambda: sp.texts() == ["dinner is ready"], "the announcement after the reply")


async def test_muted_refuses_and_drops_what_waits(sp: Speaker) -> None:
    sp.conv.set_muted(True)
    with pytest.raises(EdgedError, match="muted"):
        sp.ann.submit("nobody hears this")
    sp.conv.set_muted(False)
    sp.conv.on_turn_start("wake")
    sp.ann.submit("waiting when the mute came")
    sp.conv.set_muted(True)
    await sp.until(lambda: sp.ann.pending == 0, "the waiting one dropped")
    sp.conv.set_muted(False)
    await asyncio.sleep(0.05)
    assert sp.texts() == [] and sp.ann.stats["dropped"] == 1 and sp.ann.stats["refused"] == 1


async def test_bounded_one_per_rest_oldest_first(sp: Speaker) -> None:
    sp.conv.on_turn_start("wake")
    sp.ann.submit("first")
    sp.ann.submit("second")
    with pytest.raises(EdgedError, match="waiting already"):
        sp.ann.submit("third")
    sp.conv.on_turn_end("no_speech")
    await sp.until(lambda: sp.texts() == ["first"], "the first")
    await asyncio.sleep(0.05)
    assert sp.texts() == ["first"] and sp.conv.state == State.THINKING  # the second waits for the next rest
    sp.conv.on_turn_complete()  # the model's end of the unheard turn (stale), then the reply to "first"
    sp.conv.on_audio(PCM)
    sp.conv.on_turn_complete()
    sp.conv.on_drained()
    await sp.until(lambda: sp.texts() == ["first", "second"], "the second")


async def test_an_old_announcement_is_dropped() -> None:
    s, *tasks = await _make(max_wait_s=0.2)
    try:
        s.conv.on_turn_start("wake")
        s.ann.submit("too late")
        await s.until(lambda: s.ann.stats["dropped"] == 1, "the deadline")
        s.conv.on_turn_end("no_speech")
        await asyncio.sleep(0.05)
        assert s.texts() == [] and s.results()[-1] == "dropped"
    finally:
        for t in tasks:
            t.cancel()
        s.conv.stop_now()
        await s.conv.stop()
