"""kill -9 while the resumption handle is being written: the file is always the old or the new handle,
never corrupt, and the next start resumes with it (a writer process in a tight loop, and the daemon)."""

import random
import signal

from edged.dev import soak
from edged.dev.rig import Rig
from edged.live.session import HANDLE_FILE
from edged.sim.scenario import Scenario


def test_kill9_handle_writer_leaves_old_or_new(tmp_path):
    r = soak.kill_handle_writes(25, tmp_path / "state", seed=4242)
    assert r["corrupt_or_wrong"] == [], r
    assert r["file_was_last_saved"] + r["file_was_in_flight_write"] == 25, r
    # only the state file counts: HandleStore.load() reads no temp file (the writer re-loaded the
    # exact handle each time, checked above); stray temps are reported
    assert (tmp_path / "state" / HANDLE_FILE).exists()


async def test_kill9_daemon_resumes_with_the_persisted_handle(tmp_path, models_dir):
    rig = Rig(tmp_path / "rig", models_dir, scenario=Scenario([soak.REPLY]), speed=4.0, overrides=soak.OVERRIDES)
    await rig.start()
    try:
        emu = rig.emu
        await emu.wait_connections(1, timeout=20)
        rng = random.Random(99)
        for _ in range(3):
            result = await soak.kill_daemon(rig, rng)  # raises unless the new setup resumed the file's handle
            assert result["resumed"]
        sessions = {c.session_id for c in emu.connections if c.session_id}
        assert len(sessions) == 1, "every restart continued the one session"
        await rig.wait_state("idle", timeout=30)
        assert rig.proc.returncode is None
        assert await rig.stop_daemon(signal.SIGTERM) == 0
    finally:
        await rig.close()
