"""The bench empties the page cache before its memory steps (bench/run_all.py): VmRSS counts the
file pages fault-around maps from the cache, so a venv made minutes before measured 5 MB more."""

from pathlib import Path

from tests.test_vm_bench import _load

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _run_all():
    return _load("run_all", BENCH)


def test_the_cache_is_emptied_through_drop_caches_or_the_run_says_it_was_not(tmp_path):
    run_all = _run_all()
    assert run_all.DROP_CACHES == Path("/proc/sys/vm/drop_caches")
    knob = tmp_path / "drop_caches"
    knob.write_text("0\n")
    assert run_all.cold_page_cache(knob) == "emptied before the memory steps"
    assert knob.read_text() == "1\n"  # 1: the page cache only (not dentries and inodes)
    said = run_all.cold_page_cache(tmp_path / "no" / "such" / "knob")
    assert said.startswith("warm (could not empty it: ")
