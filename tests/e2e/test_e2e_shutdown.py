"""Shutdown stays under 5 s even when device threads hang in the kernel.

The daemon runs in the test's loop against the Live emulator, with ALSA file PCMs on FIFOs:
- the microphone's FIFO has a writer that never writes: the capture thread blocks in its read;
- the speaker's FIFO has a reader that never reads: once the pipe is full, the player thread blocks
  in its write (a reply is playing).
Both are real hangs in ALSA calls, proven by their heartbeats standing still.  The daemon must set
every thread's stop event first, join them in parallel, and give up on the hung ones at its one
deadline (edged.app.SHUTDOWN_S), instead of joining 5 s per thread one after another.
"""

import asyncio
import contextlib
import os
import threading
import time

from edged import config
from edged.app import SHUTDOWN_S
from edged.daemon import Daemon
from edged.sim.live_server import LiveEmulator
from edged.sim.scenario import Scenario
from edged.state import State
from tests.waiting import until


def _alsa_config(path, mic_fifo, speaker_fifo) -> dict[str, str]:
    path.write_text(
        f'pcm.mic {{\n  type file\n  slave.pcm "null"\n  file "/dev/null"\n  infile "{mic_fifo}"\n  format "raw"\n}}\n'
        f'pcm.speaker {{\n  type file\n  slave.pcm "null"\n  file "{speaker_fifo}"\n  format "raw"\n}}\n',
        encoding="utf-8")
    return {"ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{path}"}


async def test_shutdown_with_hung_capture_and_player_threads_is_under_5_s(tmp_path, models_dir, monkeypatch):
    mic, speaker = tmp_path / "mic.fifo", tmp_path / "speaker.fifo"
    os.mkfifo(mic)
    os.mkfifo(speaker)
    for k, v in _alsa_config(tmp_path / "asound.conf", mic, speaker).items():
        monkeypatch.setenv(k, v)
    mic_writer = os.open(mic, os.O_RDWR)  # holds the FIFO open and never writes: reads block
    speaker_reader = os.open(speaker, os.O_RDONLY | os.O_NONBLOCK)  # never reads: writes block when full
    emu = await LiveEmulator(Scenario([[{"tone": {"hz": 440, "ms": 20000}}]]), cert_dir=tmp_path / "certs").start()
    cfg = config.parse({
        "live": {"base_url": emu.base_url, "ca_file": str(emu.ca_file), "backoff_initial_s": 0.1},
        "audio": {"capture_device": "mic", "playback_device": "speaker"},
        "wake": {"models_dir": str(models_dir)},
        "state": {"dir": str(tmp_path / "state")}, "control": {"socket": str(tmp_path / "c.sock")},
    }, str(tmp_path / "edged.toml"))
    d = Daemon(cfg, None)
    hung = []
    try:
        await d.start()
        await until(lambda: d.status()["live"]["connected"], "the Live session connected", 15)
        d.conv.say("play a long tone")  # the reply fills the speaker's pipe, then the player blocks
        await until(lambda: d.state == State.SPEAKING, "speaking", 30)
        capture, player = d.capture, d.player
        await until(lambda: player.stats()["frames_written"] > 0, "the player writing", 15)
        # hung: neither loop has beaten for a second (both beat several times a second when they run)
        await until(lambda: time.monotonic() - player.alive() > 1.0, "the player blocked in its write", 20)
        await until(lambda: time.monotonic() - capture.alive() > 1.0, "the capture blocked in its read", 5)
        hung = [capture.thread, player.thread]
        assert all(t is not None and t.is_alive() for t in hung)

        t0 = time.monotonic()
        await d.stop()
        elapsed = time.monotonic() - t0

        assert elapsed < 5.0, f"shutdown took {elapsed:.2f} s"
        assert elapsed >= SHUTDOWN_S - 0.5  # it did wait for the hung threads, up to the deadline
        assert all(t.is_alive() for t in hung), "the threads were not hung: the test proves nothing"
        assert d.state == State.STOPPING
        assert d.status()["audio"]["capture"]["heartbeat_age_s"] > 1.0
    finally:
        await d.stop()
        # release the hung threads: end of file for the read, a broken pipe for the write
        os.close(mic_writer)
        with contextlib.suppress(OSError):
            while os.read(speaker_reader, 1 << 16):
                pass
        os.close(speaker_reader)
        for t in hung:
            await asyncio.to_thread(t.join, 10)
        await emu.stop()
    assert not any(t.is_alive() for t in hung)


@contextlib.asynccontextmanager
async def _daemon_with_a_quiet_microphone(tmp_path, models_dir, monkeypatch):
    mic = tmp_path / "mic.fifo"
    os.mkfifo(mic)
    for k, v in _alsa_config(tmp_path / "asound.conf", mic, tmp_path / "played.raw").items():
        monkeypatch.setenv(k, v)
    mic_writer = os.open(mic, os.O_RDWR)
    done = threading.Event()

    def microphone() -> None:  # 80 ms of silence every 80 ms, like a sound card
        while not done.wait(0.08):
            os.write(mic_writer, bytes(2560))

    feeder = threading.Thread(target=microphone, daemon=True)
    feeder.start()
    emu = await LiveEmulator(Scenario([[{"tone": {"hz": 440, "ms": 300}}]]), cert_dir=tmp_path / "certs").start()
    cfg = config.parse({
        "live": {"base_url": emu.base_url, "ca_file": str(emu.ca_file)},
        "audio": {"capture_device": "mic", "playback_device": "speaker"},
        "wake": {"models_dir": str(models_dir)},
        "state": {"dir": str(tmp_path / "state")}, "control": {"socket": str(tmp_path / "c.sock")},
    }, str(tmp_path / "edged.toml"))
    d = Daemon(cfg, None)
    try:
        await d.start()
        await until(lambda: d.capture.stats()["state"] == "running", "capture running", 15)
        yield d
    finally:
        await d.stop()
        done.set()
        feeder.join(5)
        os.close(mic_writer)
        await emu.stop()


async def test_clean_shutdown_joins_every_thread_quickly(tmp_path, models_dir, monkeypatch):
    """Without a hang every thread ends: none is left behind, and stopping takes well under the deadline."""
    async with _daemon_with_a_quiet_microphone(tmp_path, models_dir, monkeypatch) as d:
        threads = [d.capture.thread, d.player.thread, d.app.running_parts().ear.thread]
        assert all(t is not None and t.is_alive() for t in threads)
        t0 = time.monotonic()
        await d.stop()
        elapsed = time.monotonic() - t0
        assert not any(t.is_alive() for t in threads)
        assert elapsed < SHUTDOWN_S
        assert not (tmp_path / "c.sock").exists()  # the control socket was closed and removed


async def test_a_part_whose_stop_loses_its_cancel_does_not_hang_the_shutdown(tmp_path, models_dir, monkeypatch):
    """A part's stop() that swallows the cancel sent at its deadline (as 3.11's wait_for can, CPython
    gh-86296) and then waits for ever: the shutdown still ends under 5 s, and the later groups
    (capture, player) are still stopped."""
    from edged.conversation import Conversation

    real_stop = Conversation.stop
    lost = []

    async def stop_that_loses_a_cancel(self):
        await real_stop(self)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            lost.append(True)
        await asyncio.Event().wait()  # deaf: only a second cancel ends it

    monkeypatch.setattr(Conversation, "stop", stop_that_loses_a_cancel)
    async with _daemon_with_a_quiet_microphone(tmp_path, models_dir, monkeypatch) as d:
        threads = [d.capture.thread, d.player.thread]
        t0 = time.monotonic()
        await asyncio.wait_for(asyncio.shield(d.stop()), 30)  # (the old code: never returns)
        elapsed = time.monotonic() - t0
        assert lost == [True]
        assert elapsed < 5.0, f"shutdown took {elapsed:.2f} s"
        assert not any(t.is_alive() for t in threads)
