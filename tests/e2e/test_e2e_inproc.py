"""The daemon in the test's own event loop, so the test can reach gpiozero's mock pins:
talk and mute buttons, the status LED following the state, follow-up listening, a capture
device that fails and comes back, and wake suppression while playing."""

import asyncio
import contextlib

import numpy as np
import pytest

from edged import config
from edged.daemon import Daemon
from edged.dev.filedev import FifoFeeder, silence, write_alsa_config
from edged.dev.rig import DEMO_DEVICES
from edged.sim.live_server import LiveEmulator
from edged.sim.scenario import Scenario
from edged.state import State

from .conftest import speech

CYAN, DIM_BLUE, RED = (0.0, 1.0, 1.0), (0.0, 0.0, 0.08), (1.0, 0.0, 0.0)


class Speaker:
    def __init__(self, d: Daemon, emu: LiveEmulator, feeder: FifoFeeder, alsa) -> None:
        self.d, self.emu, self.feeder, self.alsa = d, emu, feeder, alsa

    def pin(self, n: int):
        return self.d.gpio.factory.pin(n)

    def rgb(self):
        return tuple(round(self.pin(p).state, 2) for p in (5, 6, 13))

    async def wait(self, pred, timeout=30.0, what=""):
        deadline = asyncio.get_running_loop().time() + timeout
        while not pred():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}: state {self.d.state} ({self.d.state_why})")
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def speaker(tmp_path, models_dir, monkeypatch, *, scenario=None, mic=True, **sections):
    fifo, wav = tmp_path / "mic.fifo", tmp_path / "played.wav"
    alsa_conf = tmp_path / "asound.conf"

    def alsa(with_mic=True):
        env = write_alsa_config(alsa_conf, captures={"mic": fifo} if with_mic else {}, playbacks={"speaker": wav})
        for k, v in env.items():
            monkeypatch.setenv(k, v)

    alsa(mic)
    emu = await LiveEmulator(scenario or Scenario([[{"tone": {"hz": 440, "ms": 1500}}]]),
                             cert_dir=tmp_path / "certs").start()
    data = {
        "live": {"base_url": emu.base_url, "ca_file": str(emu.ca_file), "backoff_initial_s": 0.1},
        "audio": {"capture_device": "mic", "playback_device": "speaker", "reopen_backoff_max_s": 0.5},
        "wake": {"models_dir": str(models_dir)},
        "state": {"dir": str(tmp_path / "state")}, "control": {"socket": str(tmp_path / "c.sock")},
        "gpio": {"pin_factory": "mock", "devices": DEMO_DEVICES, "status_led": "status",
                 "camera_led": "camera_light", "talk_button": "talk", "mute_button": "mute"},
        "camera": {"backend": "synthetic"},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    cfg = config.parse(data, str(tmp_path / "edged.toml"))
    feeder = FifoFeeder(fifo)
    if mic:
        feeder.start()
    d = Daemon(cfg, None)
    await d.start()
    try:
        sp = Speaker(d, emu, feeder, alsa)
        await emu.wait_connections(1, timeout=15)
        yield sp
    finally:
        await d.stop()
        feeder.stop()
        await emu.stop()


async def test_buttons_and_status_led(tmp_path, models_dir, monkeypatch):
    async with speaker(tmp_path, models_dir, monkeypatch) as sp:
        assert sp.d.state == State.IDLE and sp.rgb() == DIM_BLUE
        # the talk button (active low, pulled up) opens a turn like the wake word
        sp.pin(22).drive_low()
        await sp.wait(lambda: sp.d.state == State.LISTENING, what="listening")
        sp.pin(22).drive_high()
        assert sp.rgb() == CYAN
        await sp.emu.wait_frames("activity_start", timeout=10)
        # nobody speaks: the no-speech timeout ends it; the reply to silence is not played
        await sp.wait(lambda: sp.d.state == State.IDLE, timeout=20, what="idle after no speech")
        assert sp.d.conv.stats["no_speech"] == 1
        assert sp.rgb() == DIM_BLUE
        # the mute button: capture closes at once, state and LED say muted; the talk button is refused
        sp.pin(23).drive_low()
        sp.pin(23).drive_high()
        await sp.wait(lambda: sp.d.state == State.MUTED, what="muted")
        assert sp.rgb() == RED
        await sp.wait(lambda: sp.d.capture.stats()["state"] == "muted", timeout=5, what="capture closed")
        starts = len(sp.emu.frames_of("activity_start"))
        sp.pin(22).drive_low()
        sp.pin(22).drive_high()
        await asyncio.sleep(0.5)
        assert len(sp.emu.frames_of("activity_start")) == starts
        sp.pin(23).drive_low()
        sp.pin(23).drive_high()
        await sp.wait(lambda: sp.d.state == State.IDLE, what="unmuted")
        assert sp.rgb() == DIM_BLUE


async def test_follow_up_listens_without_the_wake_word(tmp_path, models_dir, monkeypatch):
    scenario = Scenario([[{"tone": {"hz": 440, "ms": 300}}]])
    async with speaker(tmp_path, models_dir, monkeypatch, scenario=scenario,
                       turn={"follow_up_s": 3.0, "no_speech_timeout_s": 3.0}) as sp:
        sp.feeder.feed(speech("hey jarvis") + speech("what time is it") + silence(1.0))
        await sp.emu.wait_frames("activity_end", timeout=30)
        # after the reply a second turn opens by itself...
        await sp.emu.wait_frames("activity_start", n=2, timeout=30)
        sp.feeder.feed(speech("and tomorrow") + silence(1.0))
        await sp.emu.wait_frames("activity_end", n=2, timeout=30)
        assert sp.d.conv.stats["turns"] >= 2
        # ...and the follow-up turn carried the follow-up speech (not silence)
        ends = sp.emu.frames_of("activity_end")
        starts = sp.emu.frames_of("activity_start")
        audio = b"".join(f.payload for f in sp.emu.frames_of("audio") if starts[1].t <= f.t <= ends[1].t)
        assert np.abs(np.frombuffer(audio, "<i2")).max() > 1000


async def test_missing_capture_device_is_reported_and_reopened(tmp_path, models_dir, monkeypatch):
    """A microphone that is not there (an unplugged USB mic): the daemon stays up, says what is wrong,
    and reopens it with backoff once it appears.  (ALSA's file PCM cannot fail in the middle of a
    stream, so the failure is shown at open, which is the same reopen path.)"""
    async with speaker(tmp_path, models_dir, monkeypatch, mic=False) as sp:
        await sp.wait(lambda: "capture" in sp.d.problems, timeout=20, what="capture problem")
        assert sp.d.state == State.ERROR
        status = sp.d.status()
        assert "mic" in status["problems"]["capture"] and status["state"] == "error"
        assert status["audio"]["capture"]["failures"] >= 1
        # edgectl still works meanwhile: GPIO through the control API
        sp.d.gpio.set("kitchen_light", True)
        assert sp.pin(17).state == 1
        # plugged in: the daemon reopens it, clears the problem, and hears again
        sp.feeder.start()
        sp.alsa(True)
        await sp.wait(lambda: "capture" not in sp.d.problems, timeout=30, what="capture recovered")
        await sp.wait(lambda: sp.d.state == State.IDLE, timeout=5, what="idle")
        assert sp.rgb() == DIM_BLUE
        sp.feeder.feed(speech("hey jarvis") + speech("hello") + silence(1.0))
        await sp.emu.wait_frames("activity_start", timeout=30)


@pytest.mark.parametrize("suppress", [True, False])
async def test_wake_suppressed_while_playing_when_configured(tmp_path, models_dir, monkeypatch, suppress):
    scenario = Scenario([[{"tone": {"hz": 440, "ms": 6000}}], [{"tone": {"hz": 300, "ms": 300}}]])
    async with speaker(tmp_path, models_dir, monkeypatch, scenario=scenario,
                       wake={"suppress_while_playing": suppress}) as sp:
        sp.feeder.feed(speech("hey jarvis") + speech("play a tone") + silence(1.0))
        await sp.wait(lambda: sp.d.state == State.SPEAKING, timeout=30, what="speaking")
        clip = speech("hey jarvis") + silence(1.0)

        def heard() -> int:  # capture frames the Ear has gone past (lost ones included)
            st = sp.d.ear.stats()
            return st["frames"] + st["seq_gaps"]

        sp.feeder.feed(clip)
        await sp.wait(lambda: sp.feeder.pending_bytes() == 0, timeout=30, what="the clip is in the FIFO")
        # all of the clip is now in the FIFO, which holds at most the feeder's lead: the Ear has gone
        # past the clip once it has taken that much more
        past = heard() + int(sp.feeder.lead_s * 16000 * 2) // 2560 + 2
        if suppress:
            await sp.wait(lambda: heard() >= past, timeout=30, what="the Ear went past the wake word")
            assert sp.d.state == State.SPEAKING  # still the long reply: it was playing all along
        else:
            await sp.wait(lambda: sp.d.conv.stats["barge_ins"] >= 1, timeout=30, what="barge-in")
        assert sp.d.conv.stats["barge_ins"] == (0 if suppress else 1)


async def test_mute_during_a_reply_stops_it_and_unmute_is_idle(tmp_path, models_dir, monkeypatch):
    scenario = Scenario([[{"tone": {"hz": 440, "ms": 6000}}]])
    async with speaker(tmp_path, models_dir, monkeypatch, scenario=scenario) as sp:
        sp.feeder.feed(speech("hey jarvis") + speech("play a tone") + silence(1.0))
        await sp.wait(lambda: sp.d.state == State.SPEAKING, timeout=30, what="speaking")
        sp.d.set_muted(True)
        assert sp.d.state == State.MUTED
        assert sp.d.player.stats()["flushes"] >= 1 and not sp.d.player.playing
        await asyncio.sleep(1.0)  # the rest of the reply keeps arriving: it is not played
        assert not sp.d.player.playing
        sp.d.set_muted(False)
        assert sp.d.state == State.IDLE and sp.d.conv.state == State.IDLE
        assert sp.rgb() == DIM_BLUE


async def test_input_changes_are_told_to_the_model_and_published(tmp_path, models_dir, monkeypatch):
    motion = {"name": "hall_motion", "kind": "motion_sensor", "pin": 24, "description": "motion in the hall",
              "room": "hall", "tell_model": True}
    async with speaker(tmp_path, models_dir, monkeypatch, gpio={"devices": [*DEMO_DEVICES, motion]}) as sp:
        sub = sp.d.events.subscribe()
        sp.pin(24).drive_high()  # motion
        frames = await sp.emu.wait_frames("client_content", timeout=10)
        content = frames[0].data
        assert "hall_motion" in str(content) and "motion in the hall" in str(content)
        assert not (content.get("turn_complete") or content.get("turnComplete"))  # context: no reply asked
        await asyncio.sleep(0.5)
        assert sp.emu.frames_of("activity_start") == [] and sp.emu.turns_received == 0
        # and home-automation scripts following the events saw it
        while True:
            ev = await asyncio.wait_for(sub.get(), 5)
            if ev.get("event") == "gpio":
                assert ev["name"] == "hall_motion" and ev["value"] in (True, 1)
                break


async def test_watchdog_pings_only_while_the_threads_live_and_stop_releases_gpio(tmp_path, models_dir,
                                                                                   monkeypatch):
    from tests.service.notify_receiver import NotifyReceiver

    rx = NotifyReceiver(tmp_path / "notify.sock")
    rx.start()
    monkeypatch.setenv("NOTIFY_SOCKET", rx.address)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # a ping every 0.5 s
    try:
        async with speaker(tmp_path, models_dir, monkeypatch) as sp:
            await asyncio.to_thread(rx.wait_for, "READY", 20)
            await asyncio.sleep(2.0)
            before = len([m for m in rx.messages() if "WATCHDOG" in m])
            assert before >= 2
            # the capture thread hangs (its heartbeat stops): the pings stop, so systemd restarts us
            monkeypatch.setattr(sp.d.capture, "alive", lambda: 0.0)
            await asyncio.sleep(1.0)
            n1 = len([m for m in rx.messages() if "WATCHDOG" in m])
            await asyncio.sleep(2.0)
            n2 = len([m for m in rx.messages() if "WATCHDOG" in m])
            assert n2 == n1, "pings went on while the capture thread was hung"
            monkeypatch.undo()
            monkeypatch.setenv("NOTIFY_SOCKET", rx.address)
            await asyncio.sleep(2.0)
            assert len([m for m in rx.messages() if "WATCHDOG" in m]) > n2, "pings did not resume"
            sp.d.gpio.set("kitchen_light", True)
            sp.d.gpio.set("fan", True)
            assert sp.pin(17).state == 1 and sp.pin(27).state == 0  # the fan's relay is active low
            pins = (sp.pin(17), sp.pin(27))
        # stopped: outputs driven to their safe values (off: low for the LED, high for the active-low
        # relay) before the pins are released (an input reads 0 on a mock pin)
        light, fan = ([s.state for s in p.states] for p in pins)
        assert light[-2:] == [1, 0]
        assert fan[-3:] == [0, 1, 0] and pins[1].function == "input"
        assert any("STOPPING" in m for m in rx.messages())
    finally:
        rx.stop()


async def test_journal_fields_carry_state_wake_session_and_close_code(tmp_path, models_dir, monkeypatch, caplog):
    from edged.service.logs import record_fields

    caplog.set_level("INFO", logger="edged")
    async with speaker(tmp_path, models_dir, monkeypatch) as sp:
        sp.feeder.feed(speech("hey jarvis") + speech("hello") + silence(1.0))
        await sp.emu.wait_frames("activity_end", timeout=30)
        await sp.emu.close(code=1011, reason="internal error")
        await sp.emu.wait_connections(2, timeout=15)
        await sp.wait(lambda: any(record_fields(r).get("CLOSE_CODE") for r in caplog.records), timeout=10,
                      what="a record with the close code")
    fields = [record_fields(r) for r in caplog.records]
    assert any(f.get("EDGED_STATE") == "listening" for f in fields)
    assert any(f.get("WAKE_MODEL") == "hey_jarvis" and float(f["WAKE_SCORE"]) > 0.5 for f in fields)
    assert any(f.get("SESSION_ID", "").startswith("sim-") for f in fields)
    assert any(str(f.get("CLOSE_CODE")) == "1011" for f in fields)
