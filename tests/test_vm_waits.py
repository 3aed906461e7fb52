"""The VM bench's guest-side limits (scripts/vm/waits.py): passed only when both the guest's clock
and the host's say so.  The guest's clock is made to race, as icount with sleep=off makes it race
while the guest waits for its disk (a CI run failed its set-up on that), or to stand still."""

from __future__ import annotations

import itertools
import json
import threading
import time

import pytest

from tests.test_vm_bench import _load

waits = _load("waits")


class FakeHost:
    def __init__(self, *values):
        self.values = itertools.chain(values, itertools.repeat(values[-1]))
        self.reads = 0

    def now(self):
        self.reads += 1
        return next(self.values)


def racing(factor=1000.0):
    """A guest clock running ``factor`` times faster than real time."""
    t0 = time.monotonic()
    return lambda: t0 + (time.monotonic() - t0) * factor


@pytest.fixture
def host_clock(tmp_path, monkeypatch):
    """The module's host clock read through a real file in a directory, as in the 9p share."""
    monkeypatch.setattr(waits.HOST, "path", tmp_path / ".host-clock")
    return waits.HOST


def test_the_host_clock_is_the_time_the_file_system_stamps_on_a_write(host_clock):
    before = time.time()
    seen = host_clock.now()
    assert seen is not None and before - 1 <= seen <= time.time() + 1
    assert waits.HostClock().now() is None  # no share: unknown, not zero


def test_a_limit_passes_only_when_both_clocks_say_so():
    guest = iter([0.0, 5.0, 11.0, 11.0, 12.0]).__next__
    host = FakeHost(100.0, 103.0, 111.0)
    d = waits.Deadline(10, host=host, guest=guest)
    assert not d.passed()  # guest 5 s: the host's clock is not even read
    assert host.reads == 1
    assert not d.passed()  # guest 11 s, host 3 s: a guest waiting on its disk
    assert "guest clock 11 s, host clock 3 s" in d.describe()
    assert d.passed()  # guest 12 s, host 11 s


def test_a_host_clock_past_the_limit_does_not_end_a_wait_the_guest_has_not_finished():
    guest = iter([0.0, 4.0]).__next__  # TCG: the guest's CPU work runs slower than real time
    d = waits.Deadline(10, host=FakeHost(0.0, 60.0), guest=guest)
    assert not d.passed()


def test_without_a_host_clock_the_guest_clock_decides():
    guest = iter([0.0, 9.0, 10.5]).__next__
    d = waits.Deadline(10, host=waits.HostClock(), guest=guest)
    assert not d.passed()
    assert d.passed()
    assert "host clock unknown" in d.describe()


def test_a_command_outlasting_a_racing_guest_clock_is_not_killed(host_clock, monkeypatch):
    """The CI failure: espeak-ng "timed out after 120 seconds" 16 s after boot."""
    monkeypatch.setattr(waits, "guest_now", racing())
    r = waits.sh("sleep 1; echo done", timeout=5, poll=0.05)
    assert r.returncode == 0 and r.stdout.strip() == "done"


def test_a_hung_command_is_killed_once_both_clocks_pass_its_limit(host_clock):
    t = time.monotonic()
    with pytest.raises(waits.Fail, match=r"`sleep 60` still running after 1 s \(guest clock 1 s, host clock 1 s\)"):
        waits.sh("sleep 60", timeout=1, poll=0.05)
    assert time.monotonic() - t < 20


def test_sh_names_a_failing_command_and_gives_bytes_when_asked(host_clock):
    with pytest.raises(waits.Fail, match=r"`echo oops >&2; exit 3` exited 3: oops"):
        waits.sh("echo oops >&2; exit 3")
    assert waits.sh(["printf", r"\xff"], text=False).stdout == b"\xff"


def test_wait_for_holds_while_only_the_guest_clock_has_run_out(host_clock, monkeypatch):
    monkeypatch.setattr(waits, "guest_now", racing())
    t_ready = time.monotonic() + 0.5
    assert waits.wait_for(lambda: time.monotonic() >= t_ready and "ready", 2, "ready", every=0.02) == "ready"
    with pytest.raises(waits.Fail, match=r"timed out after 1 s waiting for never \(guest clock \d+ s, host clock 1 s\)"):
        waits.wait_for(lambda: False, 1, "never", every=0.02)


def test_join_waits_for_a_thread_on_both_clocks(host_clock, monkeypatch):
    monkeypatch.setattr(waits, "guest_now", racing())
    done = threading.Event()
    slow = threading.Thread(target=done.wait, args=(0.5,))
    slow.start()
    assert waits.join(slow, 5, poll=0.02)  # the guest's clock passed 5 s; the host's did not
    hung = threading.Thread(target=threading.Event().wait, args=(30,), daemon=True)
    hung.start()
    assert not waits.join(hung, 0.3, poll=0.02)


def test_a_host_watch_gives_host_seconds_or_none_without_a_host_clock():
    assert waits.HostWatch(FakeHost(100.0, 112.34)).seconds() == 12.3
    assert waits.HostWatch(waits.HostClock()).seconds() is None


def test_the_report_shows_guest_and_host_seconds(tmp_path, capsys):
    from tests.test_vm_bench import host

    rows = [{"name": "uninstall", "ok": True, "seconds": 761.5, "host_seconds": 14.2, "detail": "d"}]
    results = {"scenarios": rows, "timings": {"install_s": 981.4, "install_host_s": 190.5, "install_steps_host_s": [
        ["venv/bin/python -m pip install /root/src[all]", 61.5], ["systemctl daemon-reload", 1.2]]}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert host.report(tmp_path, None, {"boot_s": 48.0, "wall_s": 621.3}) == 0
    out = capsys.readouterr().out
    assert "| PASS | 761.5 / 14.2 |" in out
    assert "install 981.4 / 190.5" in out and "scenarios 761.5 / 14.2" in out
    assert "slowest steps, host seconds: 61.5 venv/bin/python -m pip install /root/src[all]; 1.2 systemctl" in out


def test_sh_stamped_prefixes_each_line_with_the_host_seconds_as_it_arrives(host_clock):
    script = "echo '+ first'; sleep 0.6; echo '+ second' >&2; echo done"
    r = waits.sh_stamped(["bash", "-c", script], timeout=30, poll=0.05)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert [ln.split("] ", 1)[1] for ln in lines] == ["+ first", "+ second", "done"]
    steps = waits.step_seconds(r.stdout)
    assert [name for name, _ in steps] == ["first", "second"]
    assert 0.4 <= steps[0][1] <= 5 and steps[1][1] < 0.4  # the sleep is in the first step


def test_sh_stamped_gives_up_once_both_clocks_pass_and_without_a_host_clock_says_so(monkeypatch):
    monkeypatch.setattr(waits.HOST, "path", None)
    r = waits.sh_stamped(["bash", "-c", "echo hi; exit 4"], timeout=30, poll=0.05)
    assert r.returncode == 4 and r.stdout == "[      ?] hi\n"
    with pytest.raises(waits.Fail, match="still running after 1 s"):
        waits.sh_stamped(["sleep", "60"], timeout=1, poll=0.05)
