"""Cues, volume and offline manners on the real daemon (``edged run``) with the emulator and ALSA file
devices: what lands in the speaker's WAV, bit for bit."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import tomli_w

from edged import config, ctl_status
from edged.audio.cues import CueBank
from edged.audio.gain import apply_gain, gain
from edged.dev.rig import Rig
from edged.sim.live_server import LiveEmulator
from edged.sim.scenario import Scenario
from tests.waiting import status_until, until

from .conftest import speech, summary_rows

TONE = {"tone": {"hz": 440, "ms": 400}}


def _wav(path: Path) -> bytes:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        return w.readframes(w.getnframes())


def _cue(name: str) -> bytes:
    """A cue as the daemon plays it with the default [cues] (volume 60) at audio.volume 100."""
    bank = CueBank(config.parse({}, "default.toml").cues, rate=24000)
    bank.load()
    return bank.get(name).astype("<i2").tobytes()


def _find(haystack: bytes, needle: bytes, start: int = 0) -> int:
    at = haystack.find(needle, start)
    while at != -1 and at % 2:
        at = haystack.find(needle, at + 1)
    return at


def _record_replies(emu: LiveEmulator) -> list[bytes]:
    """Every reply's audio as the emulator sent it (its own send, observed)."""
    sent: list[bytes] = []
    send = emu._send_audio

    async def recording(c, pcm: bytes) -> None:
        sent.append(pcm)
        await send(c, pcm)

    emu._send_audio = recording
    return sent


async def _follow(rig: Rig, sink: list[dict]) -> None:
    async for ev in rig.events():
        sink.append(ev)


def _of(events: list[dict], name: str, **match) -> list[dict]:
    return [e for e in events if e.get("event") == name and all(e.get(k) == v for k, v in match.items())]


async def _started(rig: Rig, events: list[dict]) -> asyncio.Task:
    await rig.start()
    follower = asyncio.create_task(_follow(rig, events))
    await rig.emu.wait_connections(1, timeout=30)
    await status_until(rig, lambda st: st["live"]["connected"], "the Live session connected")
    return follower


# ---- cues ------------------------------------------------------------------------------------------------
async def test_cues_land_in_the_playback_wav_in_order(tmp_path, models_dir):
    # the reply comes 0.6 s after the turn's end, so the end-of-listening cue sounds on its own
    rig = Rig(tmp_path / "rig", models_dir, cues=True, scenario=Scenario([[{"sleep": 0.6}, TONE]]))
    events: list[dict] = []
    try:
        follower = await _started(rig, events)
        sent = _record_replies(rig.emu)
        rig.speak(speech("hey jarvis") + speech("what time is it"), pad_s=2.0)
        await rig.wait_state("speaking", timeout=40)
        await rig.wait_state("idle", timeout=40)
        for on in (True, False):
            assert (await rig.request("mute", on=on))["ok"]
            await status_until(rig, lambda st: st["audio"]["playback"]["cue"] is None, "the mute cue played")
        st = await rig.status()
        wake = _of(events, "wake", source="wake_word")[0]
        cue_writes = {name: (t_write, t_sound) for name, t_write, t_sound in st["audio"]["playback"]["cue_writes"]}
        assert wake["mono"] <= cue_writes["wake"][0]  # the cue answers the wake word
        assert [e["name"] for e in _of(events, "cue")] == ["wake", "listen_end", "mute_on", "mute_off"]
        follower.cancel()
        await rig.stop_daemon()
        played = _wav(rig.wavs[-1])
        at = {name: _find(played, _cue(name)) for name in ("wake", "listen_end", "mute_on", "mute_off")}
        at["reply"] = _find(played, sent[0])
        assert all(v >= 0 for v in at.values()), at  # every one bit-exact in the WAV
        assert at["wake"] < at["listen_end"] < at["reply"] < at["mute_on"] < at["mute_off"], at
    finally:
        await rig.close()


async def test_volume_scales_the_played_samples_and_persists_across_a_restart(tmp_path, models_dir):
    # the model answers the function result without audio (then: no_answer), as 3.8 may
    scenario = Scenario([[{"tool_call": {"name": "set_volume", "args": {"level": 50}, "then": [{"no_answer": True}]}}],
                         [TONE]])
    rig = Rig(tmp_path / "rig", models_dir, scenario=scenario)
    events: list[dict] = []
    try:
        follower = await _started(rig, events)
        sent = _record_replies(rig.emu)
        # the model's set_volume: 100 -> 50
        assert (await rig.request("say", text="not so loud"))["ok"]
        await until(lambda: (rig.emu.connections[0].tool_responses), "the set_volume response", timeout=30)
        assert rig.emu.connections[0].tool_responses[0]["response"] == {"volume": 50, "was": 100}
        await rig.wait_state("idle", timeout=30)
        assert (await rig.status())["volume"]["level"] == 50
        # a reply at 50: every sample is rint(sample * 0.125), saturated
        assert (await rig.request("say", text="play a tone"))["ok"]
        st = await status_until(rig, lambda st: st["audio"]["playback"]["replies"] >= 1 and st["state"] == "idle",
                                "the reply played")
        assert st["audio"]["playback"]["replies"] == 1, (st["audio"]["playback"], st["conversation"])
        # edgectl volume down: 50 -> 40, kept in the state dir
        answer = await rig.request("volume", step="down")
        assert answer["ok"] and answer["result"]["level"] == 40 and answer["result"]["backend"] == "software"
        assert (await rig.request("volume", level=101))["kind"] == "usage"
        assert (await rig.request("volume"))["result"]["level"] == 40
        assert summary_rows(ctl_status.summary(await rig.status()))["Volume"] == "40%"  # edgectl status
        follower.cancel()
        await rig.restart()
        first_wav = rig.wavs[-2]
        assert (await rig.status())["volume"]["level"] == 40  # restored at start
        await rig.emu.wait_connections(2, timeout=30)
        await status_until(rig, lambda st: st["live"]["connected"], "connected again")
        assert (await rig.request("say", text="play a tone"))["ok"]
        await status_until(rig, lambda st: st["audio"]["playback"]["replies"] == 1 and st["state"] == "idle",
                           "the reply played after the restart")
        await rig.stop_daemon()
    finally:
        await rig.close()
    assert len(sent) == 2 and sent[0] == sent[1]
    tone = np.frombuffer(sent[0], "<i2")
    for wav, level in ((first_wav, 50), (rig.wavs[-1], 40)):
        played = np.frombuffer(_wav(wav), "<i2")
        expected = apply_gain(tone, gain(level))
        assert np.array_equal(played[: len(expected)], expected), level
        assert not played[len(expected):].any()


# ---- offline manners -----------------------------------------------------------------------------------
async def test_offline_a_wake_plays_the_offline_cue_within_300_ms_and_opens_no_turn(tmp_path, models_dir):
    rig = Rig(tmp_path / "rig", models_dir, cues=True, scenario=Scenario([[TONE]]))
    events: list[dict] = []
    try:
        follower = await _started(rig, events)
        await rig.emu.stop()  # the service is gone: the session's reconnect is refused by the OS
        st = await status_until(rig, lambda st: st["live"]["reach"] == "offline", "offline")
        assert st["state"] == "error" and st["status_led"] == "error" and "live" in st["problems"]
        live_row = summary_rows(ctl_status.summary(st))["Live"]  # edgectl status
        assert live_row.startswith(f"OFFLINE: {st['live']['reach_why']}"), live_row
        turns = st["conversation"]["turns"]
        rig.speak(speech("hey jarvis"), pad_s=1.5)
        await until(lambda: (_of(events, "offline_wake")), "the offline wake", timeout=40)
        st = await status_until(rig, lambda st: any(c[0] == "offline" for c in st["audio"]["playback"]["cue_writes"]),
                                "the offline cue written")
        wake = _of(events, "wake", source="wake_word")[0]
        t_sound = next(t for name, _, t in st["audio"]["playback"]["cue_writes"] if name == "offline")
        assert 0 <= t_sound - wake["mono"] <= 0.3, t_sound - wake["mono"]
        assert st["conversation"]["turns"] == turns and st["conversation"]["offline_wakes"] == 1
        assert st["state"] == "error" and not _of(events, "state", state="listening")
        await status_until(rig, lambda st: not st["wake"]["ear"]["in_turn"], "the Ear's turn called off")
        await status_until(rig, lambda st: st["audio"]["playback"]["cue"] is None, "the cue played out")
        follower.cancel()
        await rig.stop_daemon()
        assert _find(_wav(rig.wavs[-1]), _cue("offline")) >= 0
    finally:
        await rig.close()


async def test_reconnecting_keeps_the_turn_and_replays_it(tmp_path, models_dir):
    rig = Rig(tmp_path / "rig", models_dir, cues=True, scenario=Scenario([[TONE]]))
    events: list[dict] = []
    try:
        follower = await _started(rig, events)
        rig.emu.arm(setup_delay=4.0)  # the next connection takes 4 s to be set up
        await rig.emu.drop()
        st = await status_until(rig, lambda st: st["live"]["reach"] == "reconnecting" and not st["live"]["connected"],
                                "reconnecting")
        assert summary_rows(ctl_status.summary(st))["Live"].startswith("RECONNECTING: ")  # edgectl status
        rig.speak(speech("hey jarvis") + speech("what time is it"), pad_s=2.0)
        await rig.wait_state("listening", timeout=30)
        st = await rig.status()
        assert st["live"]["connected"] is False  # the turn opened while the connection was down
        await rig.wait_state("speaking", timeout=40)
        st = await rig.wait_state("idle", timeout=40)
        assert not _of(events, "offline_wake") and st["conversation"]["offline_wakes"] == 0
        starts = rig.emu.frames_of("activity_start")
        assert len(starts) == 1 and starts[0].conn == 2  # sent on the new connection
        assert st["conversation"]["turns_completed"] >= 1
        follower.cancel()
    finally:
        await rig.close()


async def test_no_key_connects_to_nothing_and_says_so(tmp_path, models_dir):
    rig = Rig(tmp_path / "rig", models_dir, cues=True, overrides={"live": {"base_url": ""}})
    events: list[dict] = []
    try:
        await rig.start()
        follower = asyncio.create_task(_follow(rig, events))
        st = await status_until(rig, lambda st: st["live"]["reach"] == "offline", "offline")
        assert st["live"]["state"] == "no_key" and st["live"]["fresh_starts"] == 0 and not st["live"]["connected"]
        assert "no API key" in st["problems"]["live"] and "edgectl reload" in st["problems"]["live"]
        assert st["state"] == "error"
        rig.speak(speech("hey jarvis"), pad_s=1.5)
        ev = (await until(lambda: (_of(events, "offline_wake")), "the offline wake", timeout=40))[0]
        assert "no API key" in ev["why"] and ev["retry"] is False
        st = await rig.status()
        assert st["live"]["fresh_starts"] == 0 and st["live"]["state"] == "no_key"
        assert rig.emu.connections == []
        follower.cancel()
    finally:
        await rig.close()


async def test_an_unusable_ca_file_is_said_and_retried_until_it_can_be_used(tmp_path, models_dir):
    """live.ca_file missing, then not PEM: the daemon stays up, says which key and file and why (state
    no_ca, a problem in status), logs each reason once and no crash; once the file holds the CA, the
    session connects without a restart.  (In the VM bench the daemon starts before the emulator has
    written its CA: the supervisor used to crash and be restarted with a traceback each time.)"""
    ca = tmp_path / "later" / "ca.pem"
    rig = Rig(tmp_path / "rig", models_dir, overrides={"live": {"ca_file": str(ca), "backoff_max_s": 0.5}})
    try:
        await rig.start()
        pid = rig.proc.pid
        st = await status_until(rig, lambda st: st["live"]["state"] == "no_ca", "the no_ca state")
        problem = st["problems"]["live"]
        assert f"live.ca_file {ca}" in problem and "No such file or directory" in problem, problem
        assert st["live"]["reach"] == "offline" and not st["live"]["connected"] and st["state"] == "error"
        assert "live.ca_file" in ctl_status.fix_for("live", problem)
        ca.parent.mkdir()
        ca.write_text("not a certificate\n")
        st = await status_until(rig, lambda st: "NO_CERTIFICATE" in str(st["problems"].get("live")).upper()
                                or "no certificate" in str(st["problems"].get("live")), "the not-PEM reason")
        assert rig.emu.connections == []
        ca.write_bytes(rig.emu.ca_file.read_bytes())
        st = await status_until(rig, lambda st: st["live"]["connected"], "connected once the CA is there")
        assert rig.proc.pid == pid and rig.proc.returncode is None and "live" not in st["problems"]
        log = rig.log_path.read_text()
        assert "crashed" not in log and "Traceback" not in log, log[-2000:]
        # said once per reason, though the session tried again every 0.5 s or less
        assert log.count("Live session not started: live.ca_file") == 2, log[-3000:]
    finally:
        await rig.close()


async def test_auth_failed_reload_retries_once_at_once_and_a_fixed_key_reconnects(tmp_path, models_dir):
    key_file = tmp_path / "key"
    key_file.write_text("the-wrong-key\n")
    key_file.chmod(0o600)
    rig = Rig(tmp_path / "rig", models_dir, cues=True, scenario=Scenario([[TONE]]),
              overrides={"live": {"api_key_file": str(key_file), "auth_retry_s": 300.0}})
    events: list[dict] = []
    try:
        rig.root.mkdir(parents=True)
        (rig.root / "run").mkdir()
        rig.emu = await LiveEmulator(rig.scenario, cert_dir=rig.root / "certs", api_key="the-right-key").start()
        rig.config_path.write_text(tomli_w.dumps(rig.config_dict()))
        await rig.start_daemon()
        follower = asyncio.create_task(_follow(rig, events))
        await status_until(rig, lambda st: st["live"]["reach"] == "offline" and st["live"]["auth_failures"] >= 1,
                           "auth failed")
        assert len(rig.emu.handshake_rejections) == 1
        # reload: one try at once (the session would wait live.auth_retry_s = 300 s)
        assert (await rig.request("reload"))["ok"]
        await until(lambda: (len(rig.emu.handshake_rejections) == 2), "the early try", timeout=30)
        assert _of(events, "live_retry", tried=True)
        await status_until(rig, lambda st: st["live"]["auth_failures"] >= 2, "the early try refused")
        # again within 30 s: refused by the rate limit, and a wake gets the offline cue without a try
        assert (await rig.request("reload"))["ok"]
        await until(lambda: (_of(events, "live_retry", tried=False)), "the rate-limited reload", timeout=30)
        rig.speak(speech("hey jarvis"), pad_s=1.5)
        ev = (await until(lambda: (_of(events, "offline_wake")), "the offline wake", timeout=40))[0]
        assert ev["retry"] is False and "auth_failed" in ev["why"]
        assert len(rig.emu.handshake_rejections) == 2
        # the key fixed in its file: reload reconnects at once
        key_file.write_text("the-right-key\n")
        assert (await rig.request("reload"))["ok"]
        st = await status_until(rig, lambda st: st["live"]["connected"], "connected with the fixed key", timeout=15)
        assert st["live"]["reach"] == "connected" and "live" not in st["problems"]
        await rig.wait_state("idle", timeout=10)
        follower.cancel()
    finally:
        await rig.close()
    log = rig.log_path.read_text()
    assert "the-wrong-key" not in log and "the-right-key" not in log


# ---- zero-gap replies ------------------------------------------------------------------------------------
async def test_google_paced_replies_play_without_an_underrun(tmp_path, models_dir):
    scenario = Scenario([[{"tone": {"hz": 440, "ms": 3000}}]], pacing="google")
    rig = Rig(tmp_path / "rig", models_dir, scenario=scenario)
    events: list[dict] = []
    try:
        follower = await _started(rig, events)
        for n in (1, 2, 3):
            assert (await rig.request("say", text="a long tone please"))["ok"]
            st = await status_until(rig, lambda st, n=n: st["audio"]["playback"]["replies"] == n
                                    and st["state"] == "idle", f"reply {n} played", timeout=40)
        pb = st["audio"]["playback"]
        assert pb["underruns"] == 0 and pb["jitter"]["hold_ms"] == 0, pb
        assert pb["jitter"]["last_arrival_rate"] > 1.5 and len(pb["first_writes"]) == 3
        follower.cancel()
    finally:
        await rig.close()
