"""Resumption across a kill -9, the handle store (atomic, 0600, age, corrupt) and the backoff."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
import time
from pathlib import Path

import pytest

from edged.live.backoff import Backoff
from edged.live.resumption import Handle, HandleStore

from .conftest import live_cfg, until

ROOT = str(Path(__file__).resolve().parents[2])

CHILD = """
import asyncio, sys
from pathlib import Path
from edged.config import LiveConfig
from edged.live.session import LiveSession

class H:
    def __getattr__(self, name):
        return lambda *a: print(name, *[x for x in a if isinstance(x, str)], flush=True)

async def main():
    cfg = LiveConfig(base_url=sys.argv[1], ca_file=sys.argv[2], backoff_initial_s=0.05, backoff_max_s=0.2,
                     ping_interval_s=0)
    s = LiveSession(cfg, None, Path(sys.argv[3]), H(), lambda: [])
    await s.run()

asyncio.run(main())
"""


async def _spawn(script: Path, emu, state: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(script), emu.base_url, str(emu.ca_file), str(state),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT)


async def test_resume_after_kill_9(emu, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    state = tmp_path / "state"
    handle_file = state / "live_handle.json"
    p = await _spawn(script, emu, state)
    try:
        await until(lambda: handle_file.exists(), timeout=30, what="handle file")
        saved = json.loads(handle_file.read_text())["handle"]
        os.kill(p.pid, signal.SIGKILL)
        await p.wait()
        first = emu.connections[0]
        await emu.wait_for(lambda: first.closed, 15)  # the dead process's socket is gone
        p = await _spawn(script, emu, state)
        conns = await emu.wait_connections(2, timeout=30)
        await emu.wait_for(lambda: conns[1].setup_complete_sent or conns[1].resume_rejected, 15)
        assert conns[1].handle == saved and conns[1].resumed and not conns[1].resume_rejected
        assert conns[1].session_id == first.session_id
    finally:
        if p.returncode is None:
            p.kill()
            await p.wait()


async def test_too_old_handle_is_not_used(emu, runner, tmp_path):
    store = HandleStore(tmp_path / "state" / "live_handle.json", 7200)
    store.save(Handle("ancient", time.time() - 3600))
    s, h = runner.start(live_cfg(emu, handle_max_age_s=600))
    assert await s.wait_connected(15)
    assert emu.connections[0].handle is None and len(emu.connections) == 1


async def test_fresh_enough_handle_is_used(emu, runner, tmp_path):
    store = HandleStore(tmp_path / "state" / "live_handle.json", 7200)
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    handle = emu.handles_issued[-1]
    await runner.close()
    store.save(handle)
    s2, _ = runner.start(live_cfg(emu))
    assert await s2.wait_connected(15)
    assert emu.connections[-1].handle == handle and emu.connections[-1].resumed


async def test_reset_handle_starts_fresh(emu, runner, tmp_path):
    s, h = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    f = tmp_path / "state" / "live_handle.json"
    await until(lambda: f.exists(), what="handle")
    s.reset_handle()
    assert not f.exists() and s.status()["handle_age_s"] is None
    await emu.close(1000, "")
    conns = await emu.wait_connections(2)
    assert conns[1].handle is None


def test_store_roundtrip_mode_and_atomic(tmp_path):
    store = HandleStore(tmp_path / "d" / "h.json", 100)
    assert store.load() is None
    store.save("abc", session_id="s1")
    st = os.stat(store.path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    h = store.load()
    assert h is not None and h.value == "abc" and h.session_id == "s1" and h.age() < 5
    store.save("def")
    assert store.load().value == "def"
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["h.json"]  # no temp files left
    assert os.stat(store.path).st_ino != st.st_ino  # replaced by rename, not rewritten in place
    store.clear()
    assert store.load() is None
    store.clear()  # twice is fine


def test_store_corrupt_or_old_is_no_handle(tmp_path, caplog):
    p = tmp_path / "h.json"
    store = HandleStore(p, 100)
    for text in ("{not json", "[]", '{"handle": ""}', '{"received_at": 1}', "\xff"):
        p.write_text(text, encoding="latin-1")
        assert store.load() is None
        assert not p.exists(), "a bad file is moved aside"
    assert "is bad" in caplog.text
    p.write_text(json.dumps({"handle": "x", "received_at": time.time() - 1000}))
    assert store.load() is None
    assert "old" in caplog.text
    assert p.exists(), "an expired handle is not a bad file: it stays"


@pytest.mark.parametrize(("content", "why"), [
    ('{"handle": "h", "received_at": NaN}', "received_at is not finite (nan)"),
    ('{"handle": "h", "received_at": Infinity}', "received_at is not finite (inf)"),
    ('{"handle": "h", "received_at": -Infinity}', "received_at is not finite (-inf)"),
    ('{"handle": "h", "received_at": FUTURE}', "s in the future"),
    ('{"handle": "h", "received_at": "123"}', "received_at is not a number (str)"),
    ('{"handle": "h", "received_at": true}', "received_at is not a number (bool)"),
    ('{"handle": "h", "received_at": null}', "received_at is not a number (NoneType)"),
    ('{"handle": 42, "received_at": NOW}', "handle is not a non-empty string"),
    ('{"handle": ["h"], "received_at": NOW}', "handle is not a non-empty string"),
    ('{"handle": "h", "received_at": NOW, "session_id": 7}', "session_id is not a string (int)"),
    ('"just a string"', "a JSON str, not an object"),
    ('{"handle": "HUGE", "received_at": NOW}', "characters long"),
    ("[" * 30000, "not JSON"),  # nested too deeply for the parser, under the size cap
], ids=lambda v: v[:40] if isinstance(v, str) else v)
def test_bad_handle_file_is_moved_aside_logged_and_no_handle(tmp_path, caplog, content, why):
    p = tmp_path / "live_handle.json"
    text = (content.replace("FUTURE", str(time.time() + 86400)).replace("NOW", str(time.time()))
            .replace("HUGE", "h" * 20000))
    p.write_text(text)
    assert HandleStore(p, 7200).load() is None
    assert not p.exists()
    [kept] = [f for f in tmp_path.iterdir() if f.name.startswith("live_handle.json.bad-")]
    assert kept.read_text() == text, "kept as it was, for inspection"
    assert why in caplog.text and f"kept as {kept.name}" in caplog.text and "fresh session" in caplog.text


def test_a_slightly_future_time_is_accepted(tmp_path):
    # a clock stepped back by a few seconds (NTP) must not throw away a handle saved just before
    p = tmp_path / "h.json"
    p.write_text(json.dumps({"handle": "h", "received_at": time.time() + 30}))
    assert HandleStore(p, 7200).load().value == "h"


def test_oversized_handle_file_is_not_read_whole(tmp_path, caplog):
    from edged.live import resumption

    p = tmp_path / "live_handle.json"
    with open(p, "wb") as f:  # sparse: 1 GiB that costs no disk
        f.truncate(1 << 30)
    assert HandleStore(p, 7200).load() is None
    assert f"{1 << 30} bytes, over the {resumption.MAX_FILE_BYTES}-byte cap" in caplog.text
    assert not p.exists() and len(list(tmp_path.glob("live_handle.json.bad-*"))) == 1


def test_fifo_or_symlink_in_place_of_the_file_is_bad_and_does_not_block(tmp_path, caplog):
    p = tmp_path / "live_handle.json"
    os.mkfifo(p)  # nobody writes it: a plain open() would block forever
    assert HandleStore(p, 7200).load() is None
    assert "not a regular file" in caplog.text and not p.exists()
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"handle": "h", "received_at": time.time()}))
    p.symlink_to(target)
    assert HandleStore(p, 7200).load() is None
    assert "Too many levels of symbolic links" in caplog.text or "symbolic" in caplog.text
    assert target.exists(), "the symlink's target is never touched"


def test_only_the_newest_bad_files_are_kept(tmp_path):
    from edged.live import resumption

    p = tmp_path / "live_handle.json"
    for i in range(resumption.KEEP_BAD + 3):
        p.write_text(f"bad {i}")
        assert HandleStore(p, 7200).load() is None
    kept = sorted(tmp_path.glob("live_handle.json.bad-*"))
    assert len(kept) == resumption.KEEP_BAD
    assert kept[-1].read_text() == f"bad {resumption.KEEP_BAD + 2}"


async def test_bad_handle_file_starts_a_fresh_session(emu, runner, tmp_path):
    f = tmp_path / "state" / "live_handle.json"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text('{"handle": "never-expires", "received_at": NaN}')
    s, _ = runner.start(live_cfg(emu))
    assert await s.wait_connected(15)
    assert emu.connections[0].handle is None, "the NaN handle was not offered to the server"
    assert list(f.parent.glob("live_handle.json.bad-*")), "kept aside"


def test_backoff_full_jitter_capped_and_reset():
    b = Backoff(0.5, 4.0, stable_after_s=0.0, rand=lambda: 1.0)
    assert [b.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.connected()
    b.disconnected()  # stable_after 0: a connection counts as stable
    assert b.next_delay() == 0.5
    b2 = Backoff(1.0, 10.0, stable_after_s=3600, rand=lambda: 0.25)
    b2.next_delay()
    b2.connected()
    b2.disconnected()  # too short to be stable: no reset
    assert b2.next_delay() == 0.5
    import random

    b3 = Backoff(1.0, 8.0, 60)
    ds = [b3.next_delay() for _ in range(200)]
    assert all(0 <= d <= 8.0 for d in ds) and len({round(d, 6) for d in ds}) > 150  # jittered
    random.seed()


async def test_stop_while_connecting_ends_run(emu, tmp_path):
    import asyncio as aio

    from edged.live.session import LiveSession

    from .conftest import RecordingHandler

    emu.arm(setup_delay=0.5)
    s = LiveSession(live_cfg(emu), None, tmp_path / "st", RecordingHandler(), lambda: [])
    task = aio.create_task(s.run())
    await emu.wait_connections(1)
    await s.stop()
    async with aio.timeout(10):
        await task
    assert s.status()["state"] == "stopped" and not s.connected


def test_temp_files_left_by_a_killed_save_are_removed_on_load(tmp_path):
    from edged.live.resumption import HandleStore

    store = HandleStore(tmp_path / "live_handle.json", max_age_s=3600)
    store.save("h-1")
    # a save killed between mkstemp and rename leaves its temp file behind
    left = tmp_path / ".live_handle.json.abc123"
    left.write_text('{"handle": "h-2", "rec')
    old = time.time() - 120
    os.utime(left, (old, old))
    # a save in flight right now (its temp file is fresh) is not taken from under it
    (tmp_path / ".live_handle.json.inflight").write_text('{"handle": "h-3"')
    (tmp_path / "unrelated.txt").write_text("kept")
    assert store.load().value == "h-1"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".live_handle.json.inflight", "live_handle.json",
                                                           "unrelated.txt"]
