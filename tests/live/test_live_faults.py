"""Faults: server closes, drops, malformed frames, missing setupComplete, refused handles, auth."""

from __future__ import annotations

import logging

import pytest

from edged.secrets import Secret, register
from edged.sim import Scenario

from .conftest import live_cfg, until


async def _turn(s, h, n_before: int, audio: bytes = b"\x02\x01" * 1600) -> None:
    await s.activity_start()
    await s.send_audio(audio)
    await s.activity_end()
    await until(lambda: h.count("turn_complete") > n_before, what="turn complete")


@pytest.mark.parametrize("code", [1000, 1011, 1001])
async def test_server_close_resumes_with_newest_handle(emu, runner, code):
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    await _turn(s, h, 0)
    newest = emu.handles_issued[-1]
    await emu.close(code, "bye")
    conns = await emu.wait_connections(2)
    assert conns[1].handle == newest and conns[1].resumed
    await until(lambda: s.status()["resumes"] == 1 and s.connected, what="resumed")
    st = s.status()
    assert st["last_close_code"] == code and st["last_close_reason"] == "bye" and st["reconnects"] == 1
    assert "disconnected" in h.states() and h.states()[-1] == "resumed"
    await _turn(s, h, 1)
    assert emu.sessions[conns[0].session_id].turns == 2  # the same session continued


async def test_a_close_reason_longer_than_a_close_frame_is_cut_as_googles_are(emu, runner):
    """RFC 6455 5.5: a close frame's reason holds 123 bytes; the close control cuts a longer one
    (google/adk-samples#23 shows Google's cut mid-word) instead of failing inside websockets."""
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    long = "the session was closed for a reason that takes more words to say than a close frame can hold, " * 2
    await emu.close(1011, long)
    await emu.wait_connections(2)
    await until(lambda: s.status()["reconnects"] == 1, what="reconnected")
    reason = s.status()["last_close_reason"]
    assert len(reason.encode()) == 123 and long.startswith(reason)


async def test_a_reader_that_swallows_its_cancel_does_not_hang_the_reconnect(emu, runner, monkeypatch):
    """A cancel can be lost inside a library (3.11's wait_for, gh-86296; see edged.supervise).  The
    link's reader is stopped with cancel_and_wait, so a reader that ignores its cancels for a minute
    holds the reconnect up for READER_STOP_S, not for that minute."""
    import asyncio

    from edged.live import receive, supervisor

    read = receive.Receiver.read
    release = asyncio.Event()  # set at the end, so the readers held up do not outlive the test

    async def stubborn(self, link):
        try:
            await read(self, link)
        finally:
            while not release.is_set():
                try:
                    await release.wait()
                except asyncio.CancelledError:
                    continue

    monkeypatch.setattr(receive.Receiver, "read", stubborn)
    monkeypatch.setattr(supervisor, "READER_STOP_S", 0.5)
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    await emu.drop()
    await emu.wait_connections(2)
    try:
        await until(lambda: s.status()["reconnects"] == 1 and s.connected, what="reconnected", timeout=15)
    finally:
        release.set()


async def test_tcp_drop_1006_resumes(emu, runner):
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    await emu.drop()
    conns = await emu.wait_connections(2)
    assert conns[1].resumed
    await until(lambda: s.status()["last_close_code"] == 1006, what="1006 seen")


async def test_1007_drops_handle_and_starts_fresh(emu, runner, tmp_path):
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    await until(lambda: (tmp_path / "state" / "live_handle.json").exists(), what="handle")
    await emu.close(1007, "context exhausted")
    conns = await emu.wait_connections(2)
    assert conns[1].handle is None and not conns[1].resumed
    assert conns[1].session_id != conns[0].session_id
    await until(lambda: s.status()["fresh_starts"] == 2, what="second fresh start")


async def test_1008_auth_failure_retries_slowly(emu, runner):
    s, h = runner.start(live_cfg(emu, auth_retry_s=1.5))
    assert await s.wait_connected(15)
    emu.arm(close_on_setup=(1008, "API key not valid"))
    await emu.close(1008, "API key not valid")
    await until(lambda: "auth_failed" in h.states(), what="auth_failed reported")
    n = len(emu.connections)
    await until(lambda: s.connected and len(emu.connections) > n, timeout=20, what="retry after auth_retry_s")
    # after the 1008 close: one immediate resume attempt refused at setup (1008), then one retry
    # 1.5 s later (not a hot loop of backoff_initial_s = 0.05 s)
    assert s.status()["auth_failures"] >= 1
    assert len(emu.connections) <= 3
    gap = emu.connections[-1].t_open - emu.connections[-2].t_open
    assert gap >= 1.0


async def test_http_403_is_auth_failure_and_key_never_logged(cert_dir, runner, caplog, capsys):
    from edged.sim import LiveEmulator

    key = "AIzaTEST-secret-key-0123456789"
    secret = Secret(key, "test")
    register(secret)
    caplog.set_level(logging.DEBUG)
    async with LiveEmulator(Scenario(), cert_dir=cert_dir, api_key="the-right-key", speed=20) as emu:
        s, h = runner.start(live_cfg(emu, auth_retry_s=0.5), api_key=secret)
        await until(lambda: h.states().count("auth_failed") >= 2, timeout=20, what="two auth failures")
        assert not s.connected
        assert [r[1] for r in emu.handshake_rejections][:2] == [403, 403]
        t = [r[0] for r in emu.handshake_rejections]
        assert all(b - a >= 0.4 for a, b in zip(t, t[1:], strict=False))  # slow, not a hot loop
        assert "403" in s.status()["last_error"]
        await s.stop()
    out = capsys.readouterr()
    text = caplog.text + out.out + out.err + repr(s.status()) + repr(h.events)
    assert key not in text


async def test_a_refusal_is_logged_once_but_again_after_an_early_retry(cert_dir, runner, caplog):
    """A refused key is one line, not one every auth_retry_s; but the try someone asked for (a wake,
    `edgectl reload`: retry_now) gets its line even when the reason is the same."""
    from edged.sim import LiveEmulator

    caplog.set_level(logging.INFO, logger="edged.live.session")

    def refused() -> int:
        return sum(1 for r in caplog.records if "refused the credentials" in r.getMessage())

    async with LiveEmulator(Scenario(), cert_dir=cert_dir, api_key="the-right-key", speed=20) as emu:
        s, h = runner.start(live_cfg(emu, auth_retry_s=0.1), api_key=Secret("not-the-key", "test"))
        await until(lambda: h.states().count("auth_failed") >= 4, timeout=20, what="four auth failures")
        assert refused() == 1
        tries = h.states().count("auth_failed")
        assert s.retry_now()
        await until(lambda: h.states().count("auth_failed") > tries, what="the early try")
        assert refused() == 2
        await s.stop()


async def test_correct_key_is_accepted(cert_dir, runner):
    from edged.sim import LiveEmulator

    async with LiveEmulator(Scenario(), cert_dir=cert_dir, api_key="k-123", speed=20) as emu:
        s, h = runner.start(live_cfg(emu), api_key=Secret("k-123", "test"))
        assert await s.wait_connected(15)
        assert emu.handshake_rejections == []
        await s.stop()


async def test_no_setup_complete_times_out_and_retries(emu, runner):
    emu.arm(no_setup_complete=True)
    s, h = runner.start(live_cfg(emu, connect_timeout_s=0.5))
    assert await s.wait_connected(15)
    assert len(emu.connections) == 2 and not emu.connections[0].setup_complete_sent
    assert "setupComplete" in s.status()["last_error"]


async def test_slow_setup_within_timeout_is_fine(emu, runner):
    emu.arm(setup_delay=0.5)
    s, h = runner.start(live_cfg(emu, connect_timeout_s=5))
    assert await s.wait_connected(15)
    assert len(emu.connections) == 1


async def test_rejected_handle_falls_back_once_to_fresh(emu, runner, tmp_path):
    from edged.live.resumption import HandleStore

    HandleStore(tmp_path / "state" / "live_handle.json", 7200).save("no-such-handle")
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    c = emu.connections
    assert c[0].handle == "no-such-handle" and c[0].resume_rejected and c[0].close_code == 1008
    assert c[1].handle is None and c[1].setup_complete_sent
    assert s.status()["resume_fallbacks"] == 1 and s.status()["fresh_starts"] == 1


async def test_refused_resume_then_fresh_fails_too_uses_backoff_not_loop(emu, runner, tmp_path):
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    await until(lambda: (tmp_path / "state" / "live_handle.json").exists(), what="handle")
    emu.arm(reject_resume=True)
    await emu.close(1011, "internal")
    await until(lambda: s.status()["resume_fallbacks"] == 1 and s.connected, what="fallback")
    assert [c.resumed for c in emu.connections] == [False, False, False]
    assert emu.connections[1].resume_rejected and emu.connections[2].handle is None


@pytest.mark.parametrize("form", ["text", "unknown_keys"])
async def test_malformed_frame_reconnects_and_replays_turn(emu, runner, form):
    emu.scenario = Scenario([[{"tone": {"ms": 80}}, {"malformed": form}], [{"tone": {"ms": 200}}]])
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    await s.activity_start()
    await s.send_audio(b"\x05\x00" * 3200)
    await s.activity_end()
    conns = await emu.wait_connections(2)
    assert conns[1].resumed
    await until(lambda: h.count("turn_complete") >= 1, what="the replayed turn answered")
    # the turn was replayed whole on the new connection; the partial reply was flushed first
    replay = emu.frames_of("audio", conn=conns[1].n)
    assert b"".join(f.payload for f in replay) == b"\x05\x00" * 3200
    assert len(emu.frames_of("activity_end", conn=conns[1].n)) == 1
    assert h.count("interrupted") == 1 and s.status()["turns_replayed"] == 1


async def test_slow_reply_is_waited_for(emu, runner):
    emu.scenario = Scenario([[{"sleep": 1.0}, {"tone": {"ms": 100}}]])
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    await s.send_text("slow")
    await until(lambda: h.count("turn_complete") >= 1, what="slow reply")
    assert len(emu.connections) == 1 and len(h.audio) == 4800


async def test_drop_mid_turn_while_speaking_replays_after_reconnect(emu, runner):
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    await s.activity_start()
    await s.send_audio(b"\x01\x02" * 1000)
    emu.arm(setup_delay=1.0)  # keeps the session disconnected for a while
    await emu.drop()
    await until(lambda: s.status()["last_close_code"] == 1006, what="disconnected")
    assert not s.connected
    await s.send_audio(b"\x03\x04" * 1000)  # buffered while disconnected
    await s.activity_end()
    conns = await emu.wait_connections(2)
    await until(lambda: h.count("turn_complete") >= 1, what="turn answered after reconnect")
    got = b"".join(f.payload for f in emu.frames_of("audio", conn=conns[1].n))
    assert got == b"\x01\x02" * 1000 + b"\x03\x04" * 1000
    assert emu.connections[1].violations == []


async def test_a_reply_message_over_1_mib_is_received_not_a_disconnect(emu, runner):
    """websockets closes on messages over its max_size (1 MiB by default): the client raises it."""
    import base64

    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    big = bytes(range(256)) * (3 * 1024 * 1024 // 256)  # 3 MiB of audio in one message (4 MiB as base64)
    await emu.send_raw({"serverContent": {"modelTurn": {"parts": [{"inlineData": {
        "mimeType": "audio/pcm;rate=24000", "data": base64.b64encode(big).decode()}}]}}})
    await until(lambda: len(h.audio) >= len(big), what="the big message")
    assert bytes(h.audio[: len(big)]) == big
    assert s.status()["reconnects"] == 0 and s.connected


async def test_an_outage_is_one_line_then_a_reminder_and_news_again_after_it_ends(emu, runner, caplog, monkeypatch):
    """The service gone for a long time: "Live connection failed" once, not on every retry; after a
    connection that lasted ``stable_after_s`` the next outage is logged again; a reminder with the
    count at most every REMIND_S."""
    import time

    from edged import repeats

    caplog.set_level(logging.INFO, logger="edged.live.session")
    fast = dict(backoff_initial_s=0.01, backoff_max_s=0.02, stable_after_s=0.5)
    s, h = runner.start(live_cfg(emu, **fast))
    assert await s.wait_connected(15)

    def failed() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Live connection failed")]

    await emu.stop()  # refused from now on
    await until(lambda: h.states().count("offline") >= 20, what="20 refused tries")
    assert len(failed()) == 1, failed()
    await emu.start()  # on the same port
    await until(lambda: s.connected, what="connected again")
    up = time.monotonic()
    # the connection has to last stable_after_s to count as working: that time is under test
    await until(lambda: time.monotonic() - up >= 0.6, what="the connection to last")
    await emu.stop()
    await until(lambda: h.states().count("offline") >= 40, what="20 more refused tries")
    assert len(failed()) == 2, failed()  # the second outage is news
    await s.stop()

    monkeypatch.setattr(repeats, "REMIND_S", 0.3)  # read by the next Repeats made: the next session's
    await emu.start()
    s2, h2 = runner.start(live_cfg(emu, **fast))
    assert await s2.wait_connected(15)
    await emu.stop()
    await until(lambda: any("more like it since the last line" in m for m in failed()[2:]),
                what="a reminder with the count", timeout=10)
    tries = h2.states().count("offline")
    assert 2 <= len(failed()) - 2 < tries / 2, (failed()[2:], tries)  # far fewer lines than tries


async def test_a_link_that_keeps_dropping_is_one_line_of_each_until_one_lasts(emu, runner, caplog):
    """Connections that come up and are cut again within seconds, every retry (a quota that runs out
    after set-up, a middlebox that cuts WebSockets): "Live session resumed" and "Live connection lost"
    once each, not every cycle; a connection that lasted ``stable_after_s`` makes its end news again."""
    import time

    caplog.set_level(logging.DEBUG, logger="edged.live.session")
    stable = 1.0
    s, h = runner.start(live_cfg(emu, stable_after_s=stable))
    assert await s.wait_connected(15)

    def said(prefix: str) -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.levelno >= logging.INFO and r.getMessage().startswith(prefix)]

    cycles = 12
    for i in range(cycles):
        await emu.drop()
        await emu.wait_connections(i + 2)
        await until(lambda: s.connected, what=f"connected again ({i + 1})")
    assert s.status()["reconnects"] == cycles  # every cycle happened, and the status counted it
    assert len(said("Live session ")) == 1, said("Live session ")  # the first start only
    assert len(said("Live connection lost")) == 1, said("Live connection lost")
    up = time.monotonic()
    # the last connection is left up for stable_after_s: that is the behaviour under test, not a wait
    await until(lambda: time.monotonic() - up >= stable * 1.2, what="the link to last", timeout=10)
    await emu.drop()
    await emu.wait_connections(cycles + 2)
    await until(lambda: s.connected, what="connected after a lasting link")
    assert len(said("Live connection lost")) == 2 and len(said("Live session ")) == 2, said("Live ")
