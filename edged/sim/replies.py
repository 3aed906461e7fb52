"""The emulator's replies: a turn's scripted steps played to the client, the reply audio paced as
the service sends it, the end of a reply (generationComplete, a new handle, turnComplete with
usageMetadata), and the interruption of a reply.

Pacing of reply audio: ``realtime`` (``speed`` times real time), ``instant``, or ``google``: bursts of
``GOOGLE_BURST_S`` of audio sent back to back, ``GOOGLE_RATE`` times faster than real time on average,
as the service sends them (livekit/agents#3604 "sends audio in bursts"; torkiv-labs/txtCaster#209: a
25-35 s reply delivered in 8.1 s; umeranjum17/muxr#163 "multi-second PCM bursts faster than" playback).
Chosen by ``pacing=`` (the CLI's ``--pacing``), else the scenario's ``pacing``, else ``realtime``.

:class:`Replies` is a part of :class:`edged.sim.live_server.LiveEmulator`, which makes the state below.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from pathlib import Path

from websockets.exceptions import ConnectionClosed

from . import speech
from .records import Conn
from .scenario import Scenario, Step

CHUNK_MS = 40
GOOGLE_BURST_S = 1.0  # audio per burst in pacing "google"
GOOGLE_RATE = 3.0  # average delivery rate in pacing "google", times real time (txtCaster#209: 3-4x)


def _usage(c: Conn) -> dict[str, int]:
    """usageMetadata of a turn, counted from its audio. "Gemini represents each second of audio as
    32 tokens" (ai.google.dev/gemini-api/docs/audio, "Technical details"): 16 kHz S16 input is
    32,000 bytes a second, 24 kHz S16 output 48,000; a text-only turn counts 0 audio tokens."""
    prompt = c.turn_audio_in * 32 // 32000
    response = c.reply_audio_out * 32 // 48000
    return {"promptTokenCount": prompt, "responseTokenCount": response, "totalTokenCount": prompt + response}


class Replies:
    scenario: Scenario
    pacing: str | None
    speed: float
    cert_dir: Path | None

    def pacing_mode(self) -> str:
        return self.pacing or self.scenario.pacing or "realtime"

    async def _send_audio(self, c: Conn, pcm: bytes) -> None:
        step = 24000 * 2 * CHUNK_MS // 1000
        start = time.monotonic()
        mode = self.pacing_mode()
        speed = self.speed if self.speed > 0 else 0.0
        for i in range(0, len(pcm), step):
            chunk = pcm[i:i + step]
            await self._send(c, {"serverContent": {"modelTurn": {"parts": [{"inlineData": {
                "mimeType": "audio/pcm;rate=24000", "data": base64.b64encode(chunk).decode()}}]}}}, chunk)
            c.reply_audio_out += len(chunk)
            if mode == "instant" or speed == 0:
                continue
            sent = i + len(chunk)  # bytes of 24 kHz S16 audio sent so far (48000 a second)
            if mode == "google":  # a burst goes out back to back; the next starts when the average allows
                per_burst = max(1, round(GOOGLE_BURST_S * 1000 / CHUNK_MS))  # whole chunks
                n = i // step + 1
                if n % per_burst:
                    continue
                due = start + n * CHUNK_MS / 1000 / (GOOGLE_RATE * speed)
            else:
                due = start + sent / 48000 / speed
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def _reply(self, c: Conn, steps: tuple[Step, ...]) -> None:
        c.reply_audio_out = 0
        try:
            for s in steps:
                if s.kind == "no_answer":
                    # the model chose not to answer (proactive audio, always on for gemini-3.8-live:
                    # ai.google.dev/gemini-api/docs/models/gemini-3.8-live): turnComplete, no audio
                    await self._send(c, {"serverContent": {"turnComplete": True}})
                    return self._next_when_idle(c)
                if not await self._step(c, s):
                    return
            await self._send(c, {"serverContent": {"generationComplete": True}})
            await self._send_handle(c)
            await self._send(c, {"serverContent": {"turnComplete": True}, "usageMetadata": _usage(c)})
            self._next_when_idle(c)
        except ConnectionClosed:
            pass

    def _next_when_idle(self, c: Conn) -> None:
        if c.when_idle and c.open:
            then = c.when_idle.popleft()
            c.reply = c.spawn(self._reply(c, then))

    async def _step(self, c: Conn, s: Step) -> bool:
        """Run one step; False when the connection ended."""
        a = s.args
        if s.kind == "say":
            cache = self.cert_dir / "tts" if self.cert_dir else None
            await self._send_audio(c, await speech.say(a["text"], a.get("voice", "en-us"), cache))
        elif s.kind == "tone":
            await self._send_audio(c, speech.tone(a["hz"], a["ms"]))
        elif s.kind in ("input_transcript", "output_transcript"):
            key = "inputTranscription" if s.kind == "input_transcript" else "outputTranscription"
            await self._send(c, {"serverContent": {key: {"text": a["text"]}}})
        elif s.kind == "tool_call":
            await self._call_tool(c, a)
        elif s.kind == "await_video":
            with contextlib.suppress(TimeoutError):
                await self.wait_for(lambda: c.video_since_reply >= a["frames"], a["timeout"])
        elif s.kind == "goaway":
            await self._goaway(c, a["time_left"])
        elif s.kind == "close":
            await self._server_close(c, a["code"], a["reason"])
            return False
        elif s.kind == "drop":
            c.rec.closed_by = "drop"
            c.ws.transport.abort()
            return False
        elif s.kind == "malformed":
            await self._send(c, "this is not JSON {" if a["form"] == "text" else {"bogusKey": {"x": 1}})
        elif s.kind == "sleep":
            await asyncio.sleep(a["s"])
        elif s.kind == "interrupted":
            await self._send(c, {"serverContent": {"interrupted": True}})
        elif s.kind == "resumption_update":
            # resumable false while the model generates or runs tools, with an empty handle
            # (ai.google.dev/api/live#SessionResumptionUpdate); `new_handle` lets a test send a stale one
            await self._send(c, {"sessionResumptionUpdate": {"newHandle": a["new_handle"],
                                                             "resumable": a["resumable"]}})
        return c.open

    async def _interrupt(self, c: Conn) -> None:
        if c.reply is not None and not c.reply.done():
            c.reply.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await c.reply
        if c.open:
            await self._send(c, {"serverContent": {"interrupted": True}})
            await self._send(c, {"serverContent": {"turnComplete": True}})
