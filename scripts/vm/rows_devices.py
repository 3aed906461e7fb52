"""The VM bench's rows on the Pi's devices: the wake word played into the loopback card -> a turn ->
the tool call -> the gpio-sim line high -> the reply recorded (wake_tool_reply), the talk button
pulled through gpio-sim (talk_button), and the card unbound and rebound mid-stream (unbind_rebind).
Each row is a function of the run's Bench (harness.py); scripts/vm/runner.py lists them.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from guestkit import (
    BUTTON_LINE,
    CARD,
    GPIO,
    LIGHT_LINE,
    REC,
    Skip,
    loud_ms,
    play,
    status,
    unit_props,
    wait_idle,
)
from waits import Fail, sh, wait_for

if TYPE_CHECKING:
    from harness import Bench


def keeps_real_time(bench: Bench, during: Callable[[], None]) -> None:
    """Skip when the guest cannot run the wake-word model at the pace of the microphone: the
    daemon's own counters then show its capture ring dropping frames (under TCG on a shared
    2-core host, openWakeWord's embedding model takes ~300-400 ms per 80 ms frame).  Measured
    over ``during`` (the clip being played: several seconds of audio through the Ear)."""
    cap = status()["audio"]["capture"]
    if cap.get("state") != "running":
        raise Fail(f"capture is not running: {cap.get('state')}: {cap.get('error')}")
    a = status()["wake"].get("ear") or {}
    t = time.monotonic()
    during()
    b = status()["wake"].get("ear") or {}
    dt = time.monotonic() - t
    frames = (b.get("frames", 0) - a.get("frames", 0)) / dt
    drops = (b.get("ring_drops", 0) - a.get("ring_drops", 0)) / dt
    bench.figures["ear_frames_per_s"] = round(frames, 2)
    bench.figures["ear_ring_drops_per_s"] = round(drops, 2)
    if frames < 12.5 * 0.9:  # 80 ms frames: 12.5 a second in real time
        bench.realtime = False
        raise Skip(f"the guest is too slow for the wake word in real time: the Ear handled {frames:.1f} "
                   f"frames/s of the 12.5 the card delivers ({drops:.1f} dropped/s)")


def wake_tool_reply(bench: Bench) -> str:
    before_starts, before_tools = REC.count("activity_start"), REC.count("tool_response")
    if GPIO.value(LIGHT_LINE) != 0:
        raise Fail("the kitchen light line is already high")
    out = Path("/run/vm-bench/reply.raw")
    out.parent.mkdir(parents=True, exist_ok=True)
    rec = subprocess.Popen(["arecord", "-q", "-D", f"hw:CARD={CARD},DEV=1,SUBDEV=1", "-f", "S16_LE",
                            "-r", "24000", "-c", "1", "-t", "raw", str(out)], stderr=subprocess.PIPE)
    try:
        t = time.monotonic()
        keeps_real_time(bench, during=lambda: play(bench.clips["wake_command"]))
        wait_for(lambda: REC.count("activity_start") > before_starts, 20, "activity_start at the emulator")
        t_start = time.monotonic()
        wait_for(lambda: REC.count("tool_response") > before_tools, 30, "the set_device tool response")
        wait_for(lambda: GPIO.value(LIGHT_LINE) == 1, 10, f"gpio-sim line {LIGHT_LINE} high")
        t_line = time.monotonic()

        def reply_heard() -> int:
            ms = loud_ms(out.read_bytes(), 24000)
            return ms if ms >= 500 else 0
        heard = wait_for(reply_heard, 30, "at least 500 ms of reply audio recorded from the loopback")
        wait_idle(30)
    finally:
        rec.terminate()
        rec.wait(10)
    bench.figures["wake_audio_to_line_high_s"] = round(t_line - t, 2)
    resp = REC.frames("tool_response")[-1]
    return (f"activity_start {t_start - t:.1f} s after aplay began, line {LIGHT_LINE} high at "
            f"{t_line - t:.1f} s, {heard} ms of reply recorded; tool response {json.dumps(resp['data'])[:160]}")


def talk_button(bench: Bench) -> str:
    before = REC.count("activity_start")
    wake_before = status()["wake"].get("detections", 0)
    if GPIO.value(BUTTON_LINE) != 1:
        raise Fail(f"talk button line {BUTTON_LINE} should read 1 (pull-up, not pressed)")
    audio_before = REC.count("audio")
    t = time.monotonic()
    GPIO.pull(BUTTON_LINE, "pull-down")  # pressed: the button shorts the line to ground
    try:
        wait_for(lambda: REC.count("activity_start") > before, 30, "activity_start after the button press")
    finally:
        GPIO.pull(BUTTON_LINE, "pull-up")
    t_start = time.monotonic()
    # the turn carries the card's audio to the emulator
    n_audio = wait_for(lambda: (n := REC.count("audio") - audio_before) > 0 and n, 30,
                       "audio frames from the card at the emulator")
    if status()["wake"].get("detections", 0) != wake_before:
        raise Fail("a wake-word detection happened: the turn was not opened by the button")
    wait_idle(120)
    bench.figures["button_to_activity_start_s"] = round(t_start - t, 2)
    return (f"gpio-sim pull-down on line {BUTTON_LINE} -> activity_start after {t_start - t:.1f} s, "
            f"{n_audio}+ audio messages from the card")


def unbind_rebind(bench: Bench) -> str:
    p = unit_props()
    pid, restarts = p["MainPID"], p["NRestarts"]
    drv = Path("/sys/bus/platform/drivers/snd_aloop")
    dev = next(x.name for x in drv.iterdir() if x.name.startswith("snd_aloop."))
    if status()["audio"]["capture"]["state"] != "running":
        raise Fail(f"capture not running before the unbind: {status()['audio']['capture']}")
    t = time.monotonic()
    # the kernel's remove waits for every open PCM of the card to be closed: a daemon that keeps
    # a stream open on a dead card blocks it, so the write runs in a thread with a deadline
    unbound = threading.Event()
    threading.Thread(target=lambda: ((drv / "unbind").write_text(dev), unbound.set()), daemon=True).start()
    try:
        st = wait_for(lambda: (s := status())["state"] == "error" and s, 30, "state error after the unbind")
        if not unbound.wait(30):
            fds = sh(f"ls -l /proc/{pid}/fd | grep /dev/snd", check=False).stdout.split("\n")
            held = sorted({line.rsplit("/", 1)[-1] for line in fds if "/dev/snd" in line})
            raise Fail("the unbind did not complete within 30 s: the kernel waits for the card's files "
                       f"to be closed and the daemon still holds {held}")
    finally:
        if unbound.is_set():
            (drv / "bind").write_text(dev)
    err = st["audio"]["capture"].get("error") or st.get("last_error")
    t_bind = time.monotonic()
    wait_for(lambda: status()["audio"]["capture"]["state"] == "running", 60, "capture running again")
    t_back = time.monotonic()
    f0 = status()["audio"]["capture"]["frames"]
    wait_for(lambda: status()["audio"]["capture"]["frames"] > f0 + 12, 30, "frames from the rebound card")
    wait_idle(60)
    heard = ""
    if bench.realtime:
        det = status()["wake"].get("detections", 0)
        play(bench.clips["wake_only"])
        wait_for(lambda: status()["wake"].get("detections", 0) > det, 20,
                 "a wake-word detection from the rebound card")
        wait_idle(40)
        heard = " and hears the wake word"
    p = unit_props()
    if (p["MainPID"], p["NRestarts"]) != (pid, restarts):
        raise Fail(f"the daemon was restarted (pid {pid} -> {p['MainPID']})")
    bench.figures["rebind_to_capture_s"] = round(t_back - t_bind, 1)
    return (f"error state {t_bind - t:.1f} s after the unbind ({err}); capture back {t_back - t_bind:.1f} s "
            f"after the rebind, frames flowing{heard}; same PID")
