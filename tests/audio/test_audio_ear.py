import threading
import time

import numpy as np

from edged.audio.capture import Capture
from edged.audio.ear import Ear, EarCallbacks
from edged.audio.endpoint import Endpointer
from edged.audio.frames import AudioFrame, FrameRing
from edged.audio.wake import WakeDetector
from edged.dev.filedev import FifoFeeder

from .conftest import pad_frames


class Recorder:
    def __init__(self):
        self.audio, self.events, self.done = bytearray(), [], threading.Event()

    def callbacks(self):
        return EarCallbacks(on_wake=lambda d: self.events.append(("wake", d)),
                            on_turn_start=lambda s: self.events.append(("start", s)),
                            on_turn_audio=self.audio.extend,
                            on_turn_end=lambda r: (self.events.append(("end", r)), self.done.set()),
                            on_drops=lambda n: self.events.append(("drops", n)))


def test_turn_audio_is_an_exact_contiguous_slice_of_the_input(tmp_path, alsa, models_dir, clips):
    wake, cmd = clips["wake_en_us_175"], clips["cmd_light"]
    lead = bytes(32000)
    src = pad_frames(lead + wake + cmd + bytes(32000 * 3))
    fifo = tmp_path / "mic.fifo"
    alsa(captures={"mic": fifo})
    feeder = FifoFeeder(fifo, src).start()  # real-time pace, then silence
    ring = FrameRing(50)
    rec = Recorder()
    ear = Ear(ring, WakeDetector(["hey_jarvis"], models_dir), Endpointer("webrtc", 700, 15, 5), 400,
              rec.callbacks())
    cap = Capture("mic", ring=ring)
    ear.start()
    cap.start()
    try:
        assert rec.done.wait(60)
    finally:
        cap.stop()
        ear.stop()
        feeder.stop()
    kinds = [e[0] for e in rec.events]
    assert kinds == ["wake", "start", "end"] and rec.events[1][1] == "wake" and rec.events[2][1] == "silence"
    audio = bytes(rec.audio)
    start = src.find(audio)
    assert start >= 0 and start % 2 == 0  # one contiguous slice: nothing lost, nothing duplicated
    end = start + len(audio)
    wake_end = len(lead) + len(wake)
    det = rec.events[0][1]
    assert end - start >= 2 * 400 * 16 + (len(cmd) // 2560) * 2560 - 2560
    assert start <= wake_end and start == (det.seq + 1) * 2560 - 2 * 400 * 16  # pre-roll: 400 ms to frame end
    loud = np.flatnonzero(np.abs(np.frombuffer(cmd, "<i2")) > 300)
    cmd_speech_end = wake_end + 2 * (loud[-1] + 1)
    assert end >= cmd_speech_end  # the whole command is inside
    assert 0.4 <= (end - cmd_speech_end) / 32000 <= 1.4  # ended by ~700 ms of silence
    assert ear.stats()["turn_drops"] == 0 and ear.stats()["detections"] == 1


def _feed(ring, data, seq0=0, skip=()):
    data = pad_frames(data)
    for i in range(0, len(data), 2560):
        seq = seq0 + i // 2560
        if seq not in skip:
            ring.put(AudioFrame(data[i:i + 2560], 16000, time.monotonic(), seq))
    return seq0 + len(data) // 2560


def _wait(pred, timeout=30):
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.01)
    return pred()


def test_trigger_no_speech_cancel_and_drops(models_dir, clips):
    ring = FrameRing(1000)
    rec = Recorder()
    ear = Ear(ring, WakeDetector(["hey_jarvis"], models_dir), Endpointer("webrtc", 500, 15, 1.0), 400,
              rec.callbacks())
    ear.start()
    try:
        seq = _feed(ring, bytes(2560 * 5))
        assert _wait(lambda: ear.stats()["frames"] == 5)
        ear.trigger("button")
        seq = _feed(ring, bytes(32000 * 2), seq)  # silence: no speech within 1 s
        assert rec.done.wait(30)
        assert _wait(lambda: ear.stats()["frames"] == seq)
        assert rec.events == [("start", "button"), ("end", "no_speech")]
        assert len(rec.audio) == 2560 * round(1.0 / 0.08 + 0.5)  # from the next frame on, no pre-roll
        rec.events.clear()
        rec.done.clear()
        ear.trigger("edgectl")
        seq = _feed(ring, bytes(2560 * 3), seq, skip={seq + 1})  # one frame lost inside the turn
        assert _wait(lambda: ("drops", 1) in rec.events)
        ear.cancel_turn()
        _feed(ring, bytes(2560), seq)
        assert rec.done.wait(30)
        assert rec.events == [("start", "edgectl"), ("drops", 1), ("end", "cancelled")]
        assert ear.stats()["turn_drops"] == 1 and not ear.stats()["in_turn"]
        assert time.monotonic() - ear.alive() < 5
    finally:
        ear.stop()


def test_wake_during_a_turn_is_reported_and_max_length(models_dir, clips):
    ring = FrameRing(1000)
    rec = Recorder()
    ear = Ear(ring, WakeDetector(["hey_jarvis"], models_dir, refractory_s=0.5), Endpointer("webrtc", 5000, 3.0, 10),
              0, rec.callbacks())
    ear.start()
    try:
        ear.trigger("button")
        _feed(ring, bytes(2560) + clips["wake_en_gb_175"] + clips["cmd_see"] + bytes(32000 * 4))
        assert rec.done.wait(30)
        kinds = [e[0] for e in rec.events]
        assert kinds[0] == "start" and "wake" in kinds  # barge-in seen while the turn is open
        assert rec.events[-1] == ("end", "max_length")
        assert len(rec.audio) == 2560 * round(3.0 / 0.08 + 0.5)
    finally:
        ear.stop()


def test_wake_disabled_suppresses_detection(models_dir, clips):
    ring = FrameRing(1000)
    rec = Recorder()
    ear = Ear(ring, WakeDetector(["hey_jarvis"], models_dir), Endpointer("webrtc", 500, 3.0, 1.0), 0,
              rec.callbacks())
    ear.set_wake_enabled(False)
    ear.start()
    try:
        _feed(ring, bytes(16000) + clips["wake_en_us_140"] + bytes(32000))
        assert _wait(lambda: ear.stats()["frames"] >= 20 and len(ring) == 0)
        time.sleep(0.3)
        assert rec.events == []
    finally:
        ear.stop()


def test_lost_frames_are_one_line_then_at_most_one_a_minute_with_the_total(models_dir, caplog, monkeypatch):
    """An Ear slower than real time loses a frame every few frames: that was a warning each time,
    about 200 thousand a day.  Now the first loss is said, then the total at most every GAP_LINE_S."""
    import logging

    from edged.audio import ear as ear_mod

    caplog.set_level(logging.WARNING, logger="edged.audio.ear")
    monkeypatch.setattr(ear_mod, "GAP_LINE_S", 3600.0)
    ring = FrameRing(1000)
    ear = Ear(ring, WakeDetector(["hey_jarvis"], models_dir), Endpointer("webrtc", 500, 15, 1.0), 400,
              Recorder().callbacks())
    ear.start()
    try:
        seq = 0
        for _ in range(30):  # thirty gaps of one frame
            seq = _feed(ring, bytes(2560 * 3), seq, skip={seq + 1})
        assert _wait(lambda: ear.stats()["seq_gaps"] == 30)
        lines = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
        assert len(lines) == 1 and lines[0].startswith("ear: 1 frame(s) lost")
        ear._gap_lines.remind_s = 0.0  # the minute has passed: the next gap says the total since
        _feed(ring, bytes(2560 * 3), seq, skip={seq + 1})
        assert _wait(lambda: ear.stats()["seq_gaps"] == 31)
        lines = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
        assert len(lines) == 2 and lines[1].startswith("ear: 30 frame(s) lost") and "31 in all" in lines[1], lines
    finally:
        ear.stop()
