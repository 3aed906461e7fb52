"""The player's adaptive jitter buffer: how much reply audio to hold before playing starts.

Google's Live service sends a reply in bursts faster than real time (about 3-4x on average:
livekit/agents#3604, torkiv-labs/txtCaster#209), so the audio of a reply is usually far ahead of
the speaker: waiting for a second chunk before starting only adds delay.  When audio arrives at real
time or later (a slow link, a model that pauses), starting on the first chunk would play at the edge
and the reply would stutter.  So the hold adapts:

- ``hold_ms`` starts at 0: playback starts on the first chunk (one period queued, or the reply's end);
- an underrun (the speaker ran dry mid-reply) adds ``step_ms`` to the hold, up to ``max_ms``
  (``audio.jitter_ms``), and the reply waits until that much is queued again before it goes on;
- at the end of each reply the arrival rate is measured (seconds of audio after the first chunk per
  second of wall time between the first and the last chunk): a reply that arrived at least
  ``FAST`` times faster than real time, without an underrun, halves the hold (to 0 once under half a
  step); one that
  arrived slower than ``LATE`` times real time raises it to at least ``LATE_HOLD_MS``.

Pure logic on the monotonic clock; the player calls it under its own lock.
"""

from __future__ import annotations

FAST = 1.5  # arrival rate (x real time) at which starting on the first chunk is safe
LATE = 1.1  # below this the audio arrives about as fast as it plays: hold some
LATE_HOLD_MS = 60  # the hold after a late reply: one 40 ms chunk plus delivery jitter
MIN_MEASURE_S = 0.1  # audio after the first chunk needed to judge a reply's arrival rate


class JitterBuffer:
    def __init__(self, max_ms: int, *, step_ms: int = 40) -> None:
        self.max_ms = max(0, int(max_ms))
        self.step_ms = step_ms
        self.hold_ms = 0
        self.last_rate: float | None = None  # arrival rate of the last measured reply (x real time)
        self._t0: float | None = None  # first chunk of the current reply
        self._t_last = 0.0
        self._first_s = 0.0
        self._audio_s = 0.0
        self._underruns = 0

    # -- a reply's audio arrives ------------------------------------------------------------------
    def begin(self, now: float) -> None:
        """A new reply (its first chunk arrives now)."""
        self._t0, self._t_last, self._first_s, self._audio_s, self._underruns = now, now, 0.0, 0.0, 0

    def arrived(self, seconds: float, now: float) -> None:
        if self._t0 is None:
            self.begin(now)
        if self._audio_s == 0.0:
            self._first_s = seconds
        self._audio_s += seconds
        self._t_last = now

    # -- decisions ----------------------------------------------------------------------------------
    def ready(self, queued_s: float, period_s: float, ended: bool) -> bool:
        """May playback (re)start with ``queued_s`` of audio queued?"""
        return ended or queued_s >= max(period_s, self.hold_ms / 1000)

    def underrun(self) -> None:
        """The speaker ran dry mid-reply: hold more from now on."""
        self._underruns += 1
        self.hold_ms = min(self.max_ms, self.hold_ms + self.step_ms)

    def end(self) -> float | None:
        """The reply is over (played out or flushed): adapt to its arrival rate, which is returned
        (None when too little arrived after the first chunk to judge)."""
        if self._t0 is None:
            return None
        after_first = self._audio_s - self._first_s
        elapsed = self._t_last - self._t0
        self._t0 = None
        if after_first < MIN_MEASURE_S:
            return None
        rate = after_first / max(elapsed, 1e-3)
        self.last_rate = rate
        if rate >= FAST and not self._underruns:
            half = self.hold_ms // 2
            self.hold_ms = half if half >= self.step_ms // 2 else 0
        elif rate < LATE:
            self.hold_ms = max(self.hold_ms, min(self.max_ms, LATE_HOLD_MS))
        return rate

    def stats(self) -> dict[str, object]:
        return {"hold_ms": self.hold_ms, "max_ms": self.max_ms,
                "last_arrival_rate": round(self.last_rate, 2) if self.last_rate is not None else None}
