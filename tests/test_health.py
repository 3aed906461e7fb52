"""Problems (edged/health.py): the one registry of what is wrong, and the events it publishes."""

from __future__ import annotations

from edged.health import Problems


def test_a_problem_and_its_recovery_are_each_published_once() -> None:
    events: list[dict] = []
    changes: list[list[str]] = []
    problems = Problems(events.append, lambda: changes.append(problems.critical()))
    problems.report("playback", "device gone")
    problems.report("playback", "device gone")  # the same again: no news
    problems.report("capture", "no microphone")
    problems.report("camera", None)  # nothing to clear: nothing said
    problems.report("playback", None)
    problems.report("playback", None)
    assert events == [{"event": "error", "message": "playback: device gone"},
                      {"event": "error", "message": "capture: no microphone"},
                      {"event": "recovered", "part": "playback", "was": "device gone"}]
    assert changes == [[], ["capture"], ["capture"]]
    assert problems.items == {"capture": "no microphone"} and problems.last_error == "capture: no microphone"
