"""GoAway: resume with the newest handle, old socket closed first, no turn or reply audio lost."""

from __future__ import annotations

from edged.sim import Scenario

from .conftest import live_cfg, until


async def test_goaway_idle_resumes_with_newest_handle_old_socket_closed_first(emu, runner):
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    await s.send_text("hi")
    await until(lambda: h.count("turn_complete") >= 1, what="first turn")
    newest = emu.handles_issued[-1]
    await emu.goaway(5)
    conns = await emu.wait_connections(2)
    await until(lambda: s.connected and s.status()["resumes"] == 1, what="resumed")
    old, new = conns
    # the emulator refuses a resume while the old socket is open: acceptance proves the order
    assert new.handle == newest and new.resumed and not new.resume_rejected
    assert old.closed and old.closed_by == "client" and old.close_code == 1000
    assert new.session_id == old.session_id
    assert s.status()["goaways"] == 1 and h.states()[-1] == "resumed"
    assert "auth_failed" not in h.states() and h.count("interrupted") == 0


async def test_goaway_during_reply_waits_for_turn_complete(emu, runner):
    emu.scenario = Scenario([[{"goaway": {"time_left": 8}}, {"tone": {"hz": 600, "ms": 600}}],
                             [{"tone": {"hz": 300, "ms": 200}}]])
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    await s.activity_start()
    await s.send_audio(b"\x11\x22" * 1600)
    await s.activity_end()
    conns = await emu.wait_connections(2)
    # the reply was played in full before the reconnect
    assert h.count("turn_complete") == 1 and len(h.audio) == 24000 * 2 * 600 // 1000
    assert h.count("interrupted") == 0
    assert conns[1].resumed and conns[0].turns == 1 and conns[1].t_open > emu.frames_of("activity_end")[0].t
    # the next turn goes to the new connection and is answered with the session's second reply
    await until(lambda: s.connected, what="reconnected")
    await s.send_text("again")
    await until(lambda: h.count("turn_complete") == 2, what="second turn")
    assert len(h.audio) == 24000 * 2 * 800 // 1000
    assert emu.turns_received == 2 and s.status()["turns_replayed"] == 0


async def test_goaway_while_user_is_speaking_keeps_the_turn(emu, runner):
    emu.scenario = Scenario([[{"tone": {"ms": 200}}]])
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    await s.activity_start()
    await s.send_audio(b"\x01\x00" * 800)
    await emu.goaway(10)
    await until(lambda: s.status()["goaways"] == 1, what="goaway seen")
    await s.send_audio(b"\x02\x00" * 800)
    await s.activity_end()
    await until(lambda: h.count("turn_complete") == 1, what="turn answered")
    conns = await emu.wait_connections(2)
    # everything of the turn went to the first connection, which answered it; then the resume
    assert b"".join(f.payload for f in emu.frames_of("audio", conn=conns[0].n)) == b"\x01\x00" * 800 + b"\x02\x00" * 800
    assert conns[0].turns == 1 and conns[1].resumed and emu.turns_received == 1
    assert not emu.frames_of("audio", conn=conns[1].n)


async def test_goaway_deadline_with_endless_turn_reconnects_and_replays(emu, runner):
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    await s.activity_start()
    await s.send_audio(b"\x07\x00" * 800)
    await emu.goaway(1.5)  # the user keeps talking past the deadline
    conns = await emu.wait_connections(2, timeout=15)
    assert conns[1].resumed and conns[0].close_code != 1011  # left before the server's deadline
    await s.activity_end()
    await until(lambda: h.count("turn_complete") == 1, what="replayed turn answered")
    assert b"".join(f.payload for f in emu.frames_of("audio", conn=conns[1].n)) == b"\x07\x00" * 800


async def test_many_goaways_lose_no_turn(emu, runner):
    emu.scenario = Scenario([[{"goaway": {"time_left": 5}}, {"tone": {"ms": 80}}]])
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    n = 8
    for i in range(n):
        await until(lambda: s.connected, what="connected")
        await s.send_text(f"turn {i}")
        await until(lambda i=i: h.count("turn_complete") == i + 1, what=f"turn {i}")
    await emu.wait_connections(n + 1)
    assert emu.turns_received == n and h.count("turn_complete") == n
    assert all(c.resumed for c in emu.connections[1:]) and not any(c.resume_rejected for c in emu.connections)
    assert len(emu.sessions) == 1 and next(iter(emu.sessions.values())).turns == n
