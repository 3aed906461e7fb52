"""``edged demo``: the whole speaker against the local emulator, as a readable timeline.

The real daemon (``edged run``) with only the edges swapped (see :mod:`edged.dev.rig`), driven by a
scripted conversation rendered with espeak-ng: a wake word and "turn on the kitchen light"
(a function call switches the LED), "set a timer for three seconds" (it rings, and the wake word
silences it without opening a turn), "what do you see" (a camera frame reaches the model), a
GoAway ridden through with the resumption handle, a volume change (``edgectl volume``), a restart
that resumes with the persisted handle and keeps the volume, a barge-in during a long reply, and
the emulator stopped: the wake word then gets the "can't reach" cue at once.  Sound cues are on.
The daemon runs the default model's profile (gemini-3.8-live: function calls NON_BLOCKING, so the
reply goes on while the light switches) and the emulator sends replies the way Google does (pacing
"google": bursts faster than real time).  When mosquitto is installed, a Home Assistant part follows
(edged/dev/demo_mqtt.py): the light switched and an announcement sent over MQTT.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..sim.scenario import Scenario
from . import demo_mqtt
from .rig import Rig

WAKE = "hey jarvis"

SCENARIO = [
    [  # 1: the call comes in the middle of the reply (NON_BLOCKING): the reply plays on, the light
        # switches, and the result (WHEN_IDLE) brings the confirmation once the reply is over
        {"input_transcript": "turn on the kitchen light"},
        {"say": "Sure, turning on the kitchen light."},
        {"tool_call": {"name": "set_device", "args": {"device": "kitchen_light", "state": "on"},
                       "then": [{"say": "The kitchen light is on."},
                                {"output_transcript": "The kitchen light is on."}]}},
        {"say": "One moment."},
    ],
    [  # 2
        {"input_transcript": "set a timer for three seconds"},
        {"tool_call": {"name": "set_timer", "args": {"duration": "3s", "label": "tea"}}},
        {"say": "Three seconds, starting now."},
        {"output_transcript": "Three seconds, starting now."},
    ],
    [  # 3
        {"input_transcript": "what do you see"},
        {"tool_call": {"name": "look", "args": {}}},
        {"await_video": {"frames": 1, "timeout": 10}},
        {"say": "I see a bright square on a dark background."},
        {"output_transcript": "I see a bright square on a dark background."},
    ],
    [  # 4: after a GoAway
        {"input_transcript": "are you still there"},
        {"say": "Yes, I am still here."},
    ],
    [  # 5: after a restart; long enough to be interrupted
        {"input_transcript": "tell me a story"},
        {"say": "Once upon a time, in a small kitchen, there lived a speaker that listened all day long, "
                "and every evening it told the family a long and winding story about the stars."},
    ],
    [  # 6: the barge-in's own turn
        {"input_transcript": "turn off the kitchen light"},
        {"tool_call": {"name": "set_device", "args": {"device": "kitchen_light", "state": "off"}}},
        {"say": "Done, the light is off."},
    ],
    [  # 7: Home Assistant's announcement (the MQTT part)
        {"say": demo_mqtt.ANNOUNCEMENT},
        {"output_transcript": demo_mqtt.ANNOUNCEMENT},
    ],
]

# each said right after the wake word, without a pause
UTTERANCES = {
    1: "turn on the kitchen light",
    2: "set a timer for three seconds",
    3: "what do you see",
    4: "are you still there",
    5: "tell me a story",
    6: "turn off the kitchen light",
}


class Timeline:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def say(self, who: str, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.2f}s] {who:<8} {text}", flush=True)

    def event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "state":
            self.say("state", f"{ev['state']:<9} {ev.get('reason', '')}")
        elif kind == "wake":
            score = f" score {ev['score']:.2f}" if ev.get("score") is not None else ""
            self.say("wake", f"{ev.get('model') or ev.get('source')}{score}")
        elif kind == "tool_call":
            args = ", ".join(f"{k}={v!r}" for k, v in (ev.get("args") or {}).items())
            self.say("call", f"{ev['name']}({args}) id={ev.get('id')} while {ev.get('state')}")
        elif kind == "tool_result":
            self.say("result", f"{ev['name']} -> {ev.get('response')}")
        elif kind == "transcript":
            self.say(ev.get("role", "?"), repr(ev.get("text")))
        elif kind == "timer":
            what = f"{ev['id']} {ev.get('label', '')!r} {ev['what']}"
            self.say("timer", what + (f" ({ev['reason']})" if ev.get("reason") else ""))
        elif kind in ("connection", "barge_in", "interrupted", "video_frame", "turn_end", "gpio", "error", "mute",
                      "no_answer", "tool_cancel", "announce", "cue", "offline_wake", "volume", "live_retry"):
            detail = {k: v for k, v in ev.items() if k not in ("event", "time")}
            self.say(kind, " ".join(f"{k}={v}" for k, v in detail.items()))


def _pcm(text: str, cache: Path) -> bytes:
    from .tts import render

    return render(text, cache_dir=cache).read_bytes()


async def _follow(rig: Rig, tl: Timeline) -> None:
    while True:
        with contextlib.suppress(Exception):
            async for ev in rig.events():
                tl.event(ev)
        await asyncio.sleep(0.2)  # the daemon restarted: subscribe again


async def _turn(rig: Rig, tl: Timeline, n: int, cache: Path, *, wait_idle: bool = True) -> None:
    tl.say("user", f"says {WAKE + ', ' + UTTERANCES[n]!r}")
    # espeak-ng hurries the wake word inside a longer sentence (scores near 0.5): render it alone
    rig.speak(_pcm(WAKE, cache) + _pcm(UTTERANCES[n], cache), pad_s=1.5)
    if wait_idle:
        await rig.wait_state("thinking", "speaking", timeout=30)
        await rig.wait_state("idle", timeout=60)


async def _until(rig: Rig, pred: Any, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not pred(st := await rig.status()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"demo: condition not met within {timeout:.0f} s (state {st['state']})")
        await asyncio.sleep(0.05)
    return st


async def _gpio(rig: Rig, tl: Timeline) -> None:
    states = (await rig.request("gpio.list"))["result"]
    shown = {n: s.get("value") for n, s in states.items() if s.get("kind") in ("led", "relay", "rgb_led")}
    tl.say("gpio", " ".join(f"{k}={v}" for k, v in shown.items()))


async def _status_until(rig: Rig, pred: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not pred(st := await rig.status()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"demo: not within {timeout:.0f} s; timers: {st.get('timers')}")
        await asyncio.sleep(0.05)
    return st


async def _timer(rig: Rig, tl: Timeline, cache: Path) -> None:
    """A timer set by voice rings; the wake word silences it (and opens no turn)."""
    await _turn(rig, tl, 2, cache)
    await _status_until(rig, lambda st: (st.get("timers") or {}).get("ringing"), 30)
    tl.say("user", f"says {WAKE!r} to stop the ringing")
    rig.speak(_pcm(WAKE, cache), pad_s=1.0)
    await _status_until(rig, lambda st: not st["timers"]["ringing"], 30)


async def run_demo(out: Path, models_dir: Path) -> Rig:
    cache = out.parent / ".audio-cache"
    tl = Timeline()
    broker = demo_mqtt.start_broker(out)
    overrides = {"mqtt": demo_mqtt.mqtt_section(broker)} if broker else {}
    rig = Rig(out / "rig", models_dir, scenario=Scenario(SCENARIO, repeat_last=True, pacing="google"),
              overrides=overrides, cues=True)
    if broker is None:
        tl.say("demo", "mosquitto is not installed: no Home Assistant part (apt-get install mosquitto)")
    tl.say("demo", f"starting the emulator and `edged run` (log: {rig.log_path})")
    try:
        await rig.start()
    except BaseException:
        if broker:
            broker.stop()
        raise
    follower = asyncio.create_task(_follow(rig, tl))
    try:
        st = await rig.status()
        tl.say("demo", f"edged is {st['state']}; live {st['live']['state']}, model {st['live']['model']}")
        await asyncio.sleep(1.0)
        await _turn(rig, tl, 1, cache)
        await _gpio(rig, tl)
        await _timer(rig, tl, cache)
        await _turn(rig, tl, 3, cache)
        assert rig.emu is not None
        frames = rig.emu.frames_of("video")
        for i, f in enumerate(frames, 1):
            (out / f"frame-{i}.jpg").write_bytes(f.payload)

        tl.say("demo", "the emulator sends a GoAway (time left 5 s)")
        await rig.emu.goaway(time_left=5.0)
        await rig.emu.wait_connections(len(rig.emu.connections) + 1, timeout=10)
        conn = rig.emu.connections[-1]
        tl.say("demo", f"reconnected: resumed={conn.resumed} with the newest handle")
        await _turn(rig, tl, 4, cache)

        tl.say("demo", "edgectl volume 50 (then the replies play at (50/100)^3 of full scale)")
        answer = (await rig.request("volume", level=50))["result"]
        tl.say("volume", f"level {answer['level']} ({answer['backend']})")

        tl.say("demo", "restarting the daemon (SIGTERM, then edged run again)")
        before = len(rig.emu.connections)
        await rig.restart(signal.SIGTERM)
        await rig.emu.wait_connections(before + 1, timeout=15)
        conn = rig.emu.connections[-1]
        tl.say("demo", f"after the restart: resumed={conn.resumed} with the persisted handle")
        tl.say("volume", f"level {(await rig.status())['volume']['level']} (kept in the state dir)")

        tl.say("demo", "a long reply, then the wake word again in the middle of it (barge-in)")
        await _turn(rig, tl, 5, cache, wait_idle=False)
        await rig.wait_state("speaking", timeout=30)
        await asyncio.sleep(1.5)
        await _turn(rig, tl, 6, cache)
        await _gpio(rig, tl)
        if broker is not None:
            await demo_mqtt.home_assistant_part(rig, broker, tl)

        tl.say("demo", "the assistant goes away (the emulator stops); then the wake word")
        await rig.emu.stop()
        await _until(rig, lambda st: st["live"].get("reach") == "offline")
        tl.say("user", f"says {WAKE!r}")
        rig.speak(_pcm(WAKE, cache), pad_s=1.0)
        st = await _until(rig, lambda st: st["conversation"].get("offline_wakes", 0) >= 1
                          and st["audio"]["playback"].get("cue") is None)
        tl.say("demo", f"the \"can't reach\" cue played; {st['state']}: {st['why']}")

        tl.say("demo", "edgectl status against the running daemon:")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edged.ctl", "--socket", str(rig.socket), "status")
        await proc.wait()
    finally:
        follower.cancel()
        await rig.close()
        if broker is not None:
            broker.stop()
    return rig


def _report(out: Path, rig: Rig) -> None:
    wavs = [w for w in rig.wavs if w.exists()]
    for w in wavs:
        shutil.copy(w, out / w.name)
    print("\nWhat was played:", *(str(out / w.name) for w in wavs), sep="\n  ")
    print("What the camera sent:", *(str(p) for p in sorted(out.glob("frame-*.jpg"))), sep="\n  ")
    print(f"The daemon's log: {rig.log_path}")


def main(args: Any) -> int:
    if args.live:
        return _live(args)
    models = Path(os.environ.get("EDGED_MODELS", ".cache/models")).resolve()
    out = Path(args.out).resolve()
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rig = asyncio.run(run_demo(out, models))
    _report(out, rig)
    return 0


def _live(args: Any) -> int:
    """Against Google with a real key, on a machine with a microphone and a speaker."""
    if not (os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")):
        print("edged demo --live needs GEMINI_API_KEY (or GOOGLE_API_KEY) in the environment", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    models = Path(os.environ.get("EDGED_MODELS", ".cache/models")).resolve()
    cfg = out / "edged-live.toml"
    cfg.write_text(
        f'[wake]\nmodels_dir = "{models}"\n[state]\ndir = "{out / "state"}"\n'
        f'[control]\nsocket = "{out / "control.sock"}"\n[gpio]\npin_factory = "mock"\n'
        '[[gpio.devices]]\nname = "kitchen_light"\nkind = "led"\npin = 17\nroom = "kitchen"\n'
        '[camera]\nbackend = "synthetic"\n')
    print(f"Say '{WAKE}' and talk; Ctrl-C stops. Config: {cfg}", flush=True)
    return subprocess.call([sys.executable, "-m", "edged", "run", "--config", str(cfg)])
