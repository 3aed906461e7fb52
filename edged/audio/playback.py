"""ALSA playback: the model's replies and the sound cues, one writer thread, flush for barge-in.

``write(pcm)`` queues reply audio (``source_rate``, default 24 kHz mono S16_LE) without blocking; the
queue is bounded (``max_queue_s``) and drops the oldest audio, counted.  When a reply starts playing is
decided by an adaptive jitter buffer (:mod:`edged.audio.jitter`): on the first chunk when replies
arrive faster than real time (as Google sends them), holding up to ``jitter_ms`` when they arrive late
or the speaker ran dry.  ``flush()`` empties the queue at once: the writer finishes at most the one
period in flight, then drops the device buffer.

Every period written is ``gain(mix(reply))``: ``play_cue(name, loop=False)`` starts a cue of the
:class:`edged.audio.cues.CueBank` (``stop_cue()`` ends it; a cue switched off is not played), which the
:class:`edged.audio.cues.CueMixer` adds to the reply while ducking it; with no reply queued the cue
is mixed into silence and written all the same.  ``gain`` is the volume's
:class:`edged.audio.gain.SoftGain`, applied per period (a change ramps over 10 ms; while nothing
sounds the new gain is taken at once).

An *underrun* is the speaker running dry in the middle of a reply: the next reply period is due
(the audio written so far has played) and none is queued.  No silence is inserted for it; the reply
waits for the jitter buffer to fill again.

The writer paces itself to real time (it stays at most ``lead_periods`` ahead of the clock), so it
behaves the same on a sound card (whose writes block) and on an ALSA file PCM (whose writes do not).
Callbacks run on the writer thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .convert import Converter
from .cues import CueMixer
from .device import DeviceThread, StatusCallback, close_pcm, open_pcm
from .jitter import JitterBuffer

if TYPE_CHECKING:
    from .cues import CueBank
    from .gain import SoftGain

log = logging.getLogger(__name__)

IDLE_CHECK_S = 1.0  # while idle, check this often that the device is still there


def _gone(pcm: Any) -> bool:
    """True when the PCM's card went away (unplugged, its driver unbound).  An idle writer must then
    close it: the kernel cannot release the card while it is open, and it comes back only on a reopen
    (found by the VM bench: unbinding snd-aloop blocked while the idle playback stream held it)."""
    try:
        import alsaaudio

        st = pcm.state()
    except AttributeError:
        return False
    except Exception:
        return True
    return st < 0 or st == alsaaudio.PCM_STATE_DISCONNECTED


class Player(DeviceThread):
    kind = "playback"

    def __init__(self, device: str, *, rate: int = 24000, channels: int = 1, jitter_ms: int = 120,
                 on_status: StatusCallback | None = None, on_drained: Callable[[], None] | None = None,
                 source_rate: int = 24000, period_ms: int = 20, max_queue_s: float = 120.0,
                 lead_periods: int = 2, backoff_initial_s: float = 0.2, backoff_max_s: float = 10.0,
                 gain: SoftGain | None = None, cues: CueBank | None = None, duck: float = 1.0) -> None:
        super().__init__(f"player:{device}", device, on_status=on_status, backoff_initial_s=backoff_initial_s,
                         backoff_max_s=backoff_max_s)
        self.rate, self.channels = rate, channels
        self.source_rate, self.period_ms, self.jitter_ms = source_rate, period_ms, jitter_ms
        self.period_frames = max(1, rate * period_ms // 1000)
        self._period_s = self.period_frames / rate
        self._frame_bytes = 2 * channels
        self._period_bytes = self.period_frames * self._frame_bytes
        self._silence = bytes(self._period_bytes)
        self._max_bytes = int(rate * max_queue_s) * self._frame_bytes
        self._lead = lead_periods * self._period_s
        self._on_drained = on_drained
        self._conv = Converter(source_rate, 1, rate) if source_rate != rate else None
        self._cond = threading.Condition()
        self._q = bytearray()
        self._active = False  # a reply is queued or playing
        self._started = False  # past the jitter buffer (again, after an underrun)
        self._ended = False  # end_of_reply() was called
        self._flush_gen = 0
        self.jitter = JitterBuffer(jitter_ms)
        self.gain = gain
        self._cues = cues
        self._mixer = CueMixer(duck, channels=channels, ramp=max(1, rate // 100))
        self._cue_pending: str | None = None  # started by play_cue, not yet written
        self._cue_name: str | None = None  # the cue sounding
        # the writer's model of the device clock (writer thread only)
        self._t_play = 0.0  # when the audio written so far will have been played
        self._reply_until = 0.0  # when the reply audio written so far will have been played
        self._run_written = 0  # reply periods written since playback (re)started
        self.frames_written = 0
        self.underruns = 0
        self.overflow_bytes = 0
        self.flushes = 0
        self.replies = 0
        self.failures = 0
        self.cues_played: Counter[str] = Counter()
        # for benchmarks and tests, the last few: (reply number, time.monotonic() of its first ALSA
        # write), and (cue name, time.monotonic() of the ALSA write holding its first samples, the time
        # those samples start to sound: the write's time, or later when the device still held audio)
        self._first_pending = False
        self.first_writes: deque[tuple[int, float]] = deque(maxlen=8)
        self.cue_writes: deque[tuple[str, float, float]] = deque(maxlen=16)

    # -- control (any thread; never blocks) -------------------------------------------------------
    def _interrupt(self) -> None:
        super()._interrupt()
        with self._cond:
            self._cond.notify_all()

    def write(self, pcm: bytes) -> None:
        """Queue reply audio (source format).  Never blocks; beyond ``max_queue_s`` the oldest is dropped."""
        if not pcm:
            return
        now = time.monotonic()
        with self._cond:
            data = self._device_format(pcm)
            if not self._active or self._ended:
                if self._ended:  # audio after end_of_reply: a new reply
                    self._started = False
                    self.jitter.end()
                self._active, self._ended = True, False
                self.replies += 1
                self._first_pending = True
                self.jitter.begin(now)
            self.jitter.arrived(len(data) / (self._frame_bytes * self.rate), now)
            self._q += data
            excess = len(self._q) - self._max_bytes
            if excess > 0:
                excess += (-excess) % self._frame_bytes
                del self._q[:excess]
                self.overflow_bytes += excess
            self._cond.notify_all()

    def end_of_reply(self) -> None:
        """Play out what is queued, then call ``on_drained()`` (at once if nothing is queued)."""
        with self._cond:
            if not self._active:
                self._active = True  # an empty reply still gets its on_drained
            self._ended = True
            self._cond.notify_all()

    def flush(self) -> int:
        """Drop the reply queued now; returns the bytes dropped.  No on_drained for a flushed reply.
        A cue that sounds goes on."""
        with self._cond:
            n = len(self._q)
            self._q.clear()
            if self._active:
                self.jitter.end()
            self._active = self._started = self._ended = False
            self._flush_gen += 1
            self.flushes += 1
            if self._conv is not None:
                self._conv.reset()
            self._cond.notify_all()
        log.debug("playback flushed (%d bytes dropped)", n)
        return n

    def play_cue(self, name: str, *, loop: bool = False) -> bool:
        """Start the cue ``name`` (replacing one that sounds), looped until ``stop_cue()`` if ``loop``.
        Returns False when it is not played: switched off in ``[cues]``, or no cues are loaded.
        Raises KeyError for a name that is not a cue."""
        samples = self._cues.get(name) if self._cues is not None else None
        if samples is None:
            log.debug("cue %s is off: not played", name)
            return False
        with self._cond:
            self._mixer.play(samples, loop=loop)
            self._cue_pending = self._cue_name = name
            self.cues_played[name] += 1
            self._cond.notify_all()
        log.debug("cue %s%s", name, " (looped)" if loop else "")
        return True

    def stop_cue(self) -> None:
        """End the cue that sounds (a looped one sounds until this is called)."""
        with self._cond:
            self._mixer.stop()
            self._cue_pending = self._cue_name = None
            self._cond.notify_all()

    def set_cues(self, cues: CueBank | None, duck: float | None = None) -> None:
        """Use another cue bank (a reload of ``[cues]``); the cue sounding, if any, goes on."""
        with self._cond:
            self._cues = cues
            if duck is not None:
                self._mixer.duck = float(duck)

    def set_volume(self, gain: float) -> None:
        """Set the software gain (0-1) directly; the daemon sets it through its Volume instead."""
        if self.gain is None:
            from .gain import SoftGain

            self.gain = SoftGain(gain, channels=self.channels, ramp=max(1, self.rate // 100))
        else:
            self.gain.set(gain)

    @property
    def playing(self) -> bool:
        return self._active

    @property
    def cue_active(self) -> bool:
        return self._mixer.active

    def stats(self) -> dict:
        with self._cond:
            queued = len(self._q)
            cues = dict(self.cues_played)
        return {"device": self.device, "state": self.state, "error": self.error, "playing": self._active,
                "queued_ms": queued * 1000 // (self._frame_bytes * self.rate), "frames_written": self.frames_written,
                "underruns": self.underruns, "overflow_ms": self.overflow_bytes * 1000 // (self._frame_bytes * self.rate),
                "flushes": self.flushes, "replies": self.replies, "failures": self.failures,
                "jitter": self.jitter.stats(), "cues": cues, "cue": self._cue_name,
                "gain": round(self.gain.gain, 6) if self.gain is not None else 1.0,
                "first_writes": [list(x) for x in list(self.first_writes)],  # list(): one C call, atomic
                "cue_writes": [list(x) for x in list(self.cue_writes)]}

    # -- internals --------------------------------------------------------------------------------
    def _device_format(self, pcm: bytes) -> bytes:
        data = self._conv.process(pcm) if self._conv is not None else pcm[: len(pcm) - len(pcm) % 2]
        if self.channels > 1:
            data = np.repeat(np.frombuffer(data, dtype="<i2"), self.channels).tobytes()
        return data

    def _next(self) -> tuple[bytes | None, bool, int, str | None, bool]:
        """Wait for work.  Returns (period to write, mixed and scaled; reply drained; flush generation;
        the cue whose first samples it holds; whether it holds reply audio).  While idle it also
        returns (None, ...) every ``IDLE_CHECK_S``, for the device check."""
        idle_since = time.monotonic()
        with self._cond:
            while not self.stopping:
                gen = self._flush_gen
                now = time.monotonic()
                if self._active and not self._started and self.jitter.ready(
                        len(self._q) / (self._frame_bytes * self.rate), self._period_s, self._ended):
                    self._started = True
                    self._run_written = 0
                reply: bytes | None = None
                if self._started and self._q and (len(self._q) >= self._period_bytes or self._ended):
                    reply = bytes(self._q[: self._period_bytes])
                    del self._q[: self._period_bytes]
                    reply += bytes(self._period_bytes - len(reply))
                elif self._active and self._ended and not self._q:
                    self._active = self._started = self._ended = False
                    self.jitter.end()
                    return None, True, gen, None, False
                elif self._started and not self._ended and self._run_written and now >= self._reply_until:
                    # the speaker has played every reply sample written and none is queued: a gap
                    self.underruns += 1
                    self.jitter.underrun()
                    self._started = False
                    log.debug("playback underrun (hold now %d ms)", self.jitter.hold_ms)
                    continue
                if reply is not None or self._mixer.active:
                    cue, self._cue_pending = self._cue_pending, None
                    out = self._mixer.mix(reply if reply is not None else self._silence)
                    if not self._mixer.active:
                        self._cue_name = None
                    return out, False, gen, cue, reply is not None
                if not self._active and now - idle_since >= IDLE_CHECK_S:
                    return None, False, gen, None, False  # idle: time to look at the device
                wait = 0.1
                if self._started and self._run_written:  # starving: look again when the device runs dry
                    wait = min(wait, max(0.001, self._reply_until - now))
                self._cond.wait(wait)
                self.beat()
            return None, False, self._flush_gen, None, False

    def _wait_for_room(self) -> None:
        """Pace to real time: wait while the device holds more than ``lead`` of unplayed audio
        (a flush or stop cuts the wait short).  A new cue does not: it sounds after what the device
        holds anyway."""
        ahead = self._t_play - time.monotonic()
        if ahead <= self._lead:
            return
        with self._cond:
            gen = self._flush_gen
            self._cond.wait_for(lambda: self._flush_gen != gen or self.stopping, ahead - self._lead)

    def _run(self) -> None:
        pcm = None
        wrote = False  # since the device was opened
        self._t_play = time.monotonic()
        gen_seen = self._flush_gen
        try:
            while not self.stopping:
                self.beat()
                if pcm is None:
                    try:
                        pcm = open_pcm("playback", self.device, self.rate, self.channels, self.period_frames)
                    except Exception as exc:
                        self.failures += 1
                        self._failed(f"cannot open playback device {self.device!r}: {exc}")
                        continue
                    self._opened()
                    wrote = False
                self._wait_for_room()
                chunk, drained, gen, cue, has_reply = self._next()
                if gen != gen_seen:  # flushed since the last write: drop what the device still holds
                    gen_seen = gen
                    self._t_play = time.monotonic()
                    try:
                        pcm.drop()
                    except Exception as exc:
                        log.debug("playback drop: %s", exc)
                if drained:
                    self._call_drained()
                    continue
                if chunk is None:
                    if not self.stopping and _gone(pcm):  # nothing to write would tell us: ask
                        self.failures += 1
                        pcm = close_pcm(pcm)
                        self._backoff.disconnected()
                        self._status("failed", f"playback device {self.device!r} disconnected")
                    continue
                now = time.monotonic()
                if self.gain is not None:
                    if self._t_play <= now:  # nothing sounds: a new volume needs no ramp
                        self.gain.settle()
                    chunk = self.gain.apply(chunk)
                try:
                    pcm.write(chunk)
                except Exception as exc:
                    self.failures += 1
                    pcm = close_pcm(pcm)
                    if not wrote:  # opens but cannot be written: wait out the backoff, not a hot loop
                        self._failed(f"playback device {self.device!r}: {exc}")
                        continue
                    self._backoff.disconnected()
                    self._status("failed", f"playback device {self.device!r}: {exc}")
                    continue  # it played before: reopen at once (a device that cannot be opened waits)
                wrote = True
                t = time.monotonic()
                if cue is not None:  # written now; sounds once what the device held before has played
                    self.cue_writes.append((cue, t, max(self._t_play, now)))
                if has_reply and self._first_pending:
                    self._first_pending = False
                    self.first_writes.append((self.replies, t))
                self.frames_written += len(chunk) // self._frame_bytes
                self._t_play = max(self._t_play, now) + self._period_s
                if has_reply:
                    self._run_written += 1
                    self._reply_until = self._t_play
        finally:
            if pcm is not None:
                close_pcm(pcm)
            self._status("stopped")

    def _call_drained(self) -> None:
        log.debug("playback drained")
        if self._on_drained is not None:
            try:
                self._on_drained()
            except Exception:
                log.exception("playback on_drained callback failed")
