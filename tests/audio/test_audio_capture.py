import time

import numpy as np
import pytest

from edged.audio.capture import Capture
from edged.audio.frames import FrameRing
from edged.dev.filedev import FifoFeeder


def _ramp(n):
    return (np.arange(n) % 2000 - 1000).astype("<i2").tobytes()


def _collect(ring, nbytes, timeout=20.0):
    out, deadline = bytearray(), time.monotonic() + timeout
    while len(out) < nbytes and time.monotonic() < deadline:
        f = ring.get(0.5)
        if f is not None:
            out += f.pcm
    return bytes(out)


def test_capture_from_infile_is_bit_exact(tmp_path, alsa):
    src = _ramp(16000 * 2)
    (tmp_path / "in.raw").write_bytes(src + bytes(16000 * 2 * 10))  # pad: past EOF ALSA reads junk
    alsa(captures={"mic": tmp_path / "in.raw"})
    ring, status = FrameRing(1000), []
    cap = Capture("mic", ring=ring, on_status=lambda s, e: status.append(s))
    cap.start()
    try:
        got = _collect(ring, len(src))
    finally:
        cap.stop()
    assert got[:len(src)] == src
    assert status[0] == "running" and status[-1] == "stopped"
    st = cap.stats()
    assert st["frames"] >= 25 and st["opens"] == 1 and st["failures"] == 0


def test_fifo_capture_is_paced_and_converted_from_48k_stereo(tmp_path, alsa):
    t = np.arange(48000 * 2) / 48000
    tone = (6000 * np.sin(2 * np.pi * 500 * t)).round().astype("<i2")
    stereo = np.repeat(tone[:, None], 2, axis=1).tobytes()
    fifo = tmp_path / "mic.fifo"
    alsa(captures={"mic48": fifo})
    ring = FrameRing(1000)
    feeder = FifoFeeder(fifo, stereo, rate=48000, channels=2).start()  # before the PCM opens
    cap = Capture("mic48", device_rate=48000, device_channels=2, ring=ring)
    t0 = time.monotonic()
    cap.start()
    try:
        got = _collect(ring, 16000 * 2 * 2)
        elapsed = time.monotonic() - t0
    finally:
        cap.stop()
        feeder.stop()
    assert elapsed >= 1.5 - feeder.lead_s  # real-time pacing, after the feeder's head start
    y = np.frombuffer(got, "<i2").astype(float)[800:-800]
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert abs(np.argmax(spec) * 16000 / len(y) - 500) < 2
    assert 5800 < np.abs(y).max() < 6200


def test_missing_device_is_reported_then_recovers(tmp_path, alsa):
    # a FIFO, paced: an infile would be read at once and then past its end (junk) faster than the
    # test thread can look, pushing the first frames out of any ring
    fifo = tmp_path / "mic.fifo"
    alsa(captures={"other": tmp_path / "unused.raw"})  # "mic" does not exist yet
    feeder = FifoFeeder(fifo, _ramp(16000)).start()  # waits in the pipe until the device appears
    ring, status = FrameRing(100), []
    cap = Capture("mic", ring=ring, on_status=lambda s, e: status.append((s, e)), backoff_initial_s=0.05,
                  backoff_max_s=0.2)
    cap.start()
    try:
        deadline = time.monotonic() + 10
        while cap.stats()["failures"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status and status[0][0] == "failed" and "'mic'" in status[0][1]
        assert ring.get(0.1) is None
        alsa(captures={"mic": fifo})  # the device appears
        frame = ring.get(10)
        assert frame is not None and frame.pcm == _ramp(16000)[:2560]
        assert ("running", None) in status
        assert time.monotonic() - cap.alive() < 5  # heartbeat moves
    finally:
        cap.stop()
        feeder.stop()


def test_mute_closes_the_pcm_and_reads_nothing(tmp_path, alsa):
    fifo = tmp_path / "mic.fifo"
    alsa(captures={"mic": fifo})
    feeder = FifoFeeder(fifo, _ramp(16000 * 30)).start()
    ring, status = FrameRing(1000), []
    cap = Capture("mic", ring=ring, on_status=lambda s, e: status.append(s))
    cap.start()
    try:
        assert ring.get(10) is not None
        cap.set_muted(True)
        assert cap.wait_closed(5)
        assert cap.stats()["state"] == "muted"
        ring.clear()
        n = cap.stats()["frames"]
        time.sleep(0.5)
        assert ring.get(0) is None and cap.stats()["frames"] == n
        cap.set_muted(False)
        assert ring.get(10) is not None
        assert status[:3] == ["running", "muted", "running"]
        assert cap.stats()["opens"] == 2
    finally:
        cap.stop()
        feeder.stop()


def test_bad_period_is_a_clear_error():
    with pytest.raises(ValueError, match="period_ms"):
        Capture("mic", period_ms=0, ring=FrameRing(1))


def test_a_device_that_opens_but_cannot_be_read_stays_failed_instead_of_flapping(monkeypatch):
    """A capture device whose open works and whose reads fail at once reported running, then failed,
    at every retry: two status changes (and their log, problem and state lines) per cycle for as
    long as the fault lasts.  It is "running" only once a read worked."""
    from edged.audio import capture as capture_mod

    opens = []

    class _Broken:
        def read(self):
            raise OSError("Input/output error")

        def close(self) -> None:
            pass

    def open_pcm(kind, device, rate, channels, period_frames):
        opens.append(device)
        return _Broken()

    monkeypatch.setattr(capture_mod, "open_pcm", open_pcm)
    status = []
    cap = Capture("hw:CARD=Broken", ring=FrameRing(10), on_status=lambda s, e: status.append(s),
                  backoff_initial_s=0.01, backoff_max_s=0.02)
    cap.start()
    try:
        deadline = time.monotonic() + 10
        while len(opens) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(opens) >= 10
        assert "running" not in status and status.count("failed") == 1, status
    finally:
        cap.stop()
