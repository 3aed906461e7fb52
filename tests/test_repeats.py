"""edged.repeats: a failure that repeats on every retry is logged once, then as a reminder."""

from __future__ import annotations

from edged import repeats
from edged.repeats import Repeats


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_new_key_is_said_then_held_back_then_reminded_with_the_count():
    clock = Clock()
    r = Repeats(remind_s=600, clock=clock)
    assert r.seen("refused") == (True, 0)
    for _ in range(40):
        clock.t += 10
        assert r.seen("refused") == (False, 0)
    clock.t += 200  # 600 s after it was said
    assert r.seen("refused") == (True, 40)
    assert r.seen("refused") == (False, 0)  # the count starts again
    assert Repeats.more(40) == " (40 more like it since the last line)" and Repeats.more(0) == ""


def test_another_reason_is_said_at_once_and_clear_makes_the_next_failure_news():
    clock = Clock()
    r = Repeats(remind_s=600, clock=clock)
    assert r.seen("refused")[0] and not r.seen("refused")[0]
    assert r.seen("dns") == (True, 0)
    r.clear()  # connected again
    assert r.seen("refused") == (True, 0)


def test_the_default_reminder_is_read_when_made_and_keys_are_bounded(monkeypatch):
    monkeypatch.setattr(repeats, "REMIND_S", 5.0)
    assert Repeats().remind_s == 5.0
    clock = Clock()
    r = Repeats(remind_s=600, clock=clock)
    for i in range(repeats.MAX_KEYS * 3):  # a reason that changes every try (a counter in it)
        assert r.seen(f"try {i}") == (True, 0)
    assert len(r._said) == repeats.MAX_KEYS
