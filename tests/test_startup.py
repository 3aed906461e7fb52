"""edged/startup.py: the start-up trace and the imports the daemon leaves out."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edged import startup


def test_process_age_counts_from_the_process_start() -> None:
    age = startup.process_age()
    # this pytest process started before this test ran and less than a day ago
    assert 0.0 < age < 86400.0
    assert startup.process_age() >= age


def test_trace_names_each_step_with_its_duration() -> None:
    tr = startup.Trace()
    tr.stamp("build")
    tr.stamp("hearing")
    names = [n for n, _ in tr.steps]
    assert names == ["build", "hearing"]
    assert all(s >= 0.0 for _, s in tr.steps)
    text = tr.summary()
    assert text.startswith("start-up ") and "imports " in text and "build " in text and "hearing " in text


def test_without_makes_an_import_fail_inside_only() -> None:
    name = "colorsys"  # a stdlib module this test process has not needed
    sys.modules.pop(name, None)
    with startup.without(name), pytest.raises(ImportError):
        import colorsys  # noqa: F401
    import colorsys  # noqa: F401, F811 - importable again afterwards

    assert sys.modules[name] is not None


def test_without_leaves_an_imported_module_alone() -> None:
    with startup.without("json"):
        import json

        assert json.dumps([1]) == "[1]"


def test_the_live_sdk_is_imported_without_pil_and_trio() -> None:
    """In a fresh process (this one may have imported them already): the SDK works, PIL and trio are
    not loaded, and PIL can still be imported afterwards (the camera resizes with it)."""
    code = (
        "import sys\n"
        "from edged.startup import import_live_sdk\n"
        "import_live_sdk()\n"
        "assert 'google.genai.types' in sys.modules\n"
        "assert sys.modules.get('PIL') is None and sys.modules.get('trio') is None, "
        "[m for m in ('PIL', 'trio') if sys.modules.get(m)]\n"
        "from google import genai\n"
        "from google.genai import types\n"
        "c = genai.Client(api_key='x', http_options={'base_url': 'https://127.0.0.1:9'})\n"
        "assert types.Blob(data=b'ab', mime_type='audio/pcm').data == b'ab'\n"
        "assert sys.modules.get('trio') is None\n"
        "import PIL.Image\n"
        "print('ok')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "ok"


def test_settle_memory_freezes_the_start_up_objects_and_reports_rss() -> None:
    import gc

    try:
        before, after = startup.settle_memory()
        assert gc.get_freeze_count() > 0
        assert 0.0 < after and 0.0 < before
    finally:
        gc.unfreeze()


# ---- the unit's optimized byte code (PYTHONOPTIMIZE=2 under PYTHONPYCACHEPREFIX) -----------------------
NOT_DAEMON = ("sitecustomize", "usercustomize", "__main__", "edged.__main__")  # the import log's hook; `python -m`


@pytest.fixture(scope="module")
def pycache(tmp_path_factory):
    into = tmp_path_factory.mktemp("pycache")
    out = subprocess.run([sys.executable, "-m", "edged.cli", "precompile", "--into", str(into)],
                         capture_output=True, text=True, timeout=300, check=True)
    assert f"compiled into {into}" in out.stdout
    return into


def _cached(src: str, into) -> str:
    import importlib.util

    old, sys.pycache_prefix = sys.pycache_prefix, str(into)
    try:
        return importlib.util.cache_from_source(src, optimization=2)
    finally:
        sys.pycache_prefix = old


def test_precompile_covers_every_module_the_running_daemon_loaded(pycache, daemon) -> None:
    """What the session's real daemon imported (its import log, start-up and serving) has byte code
    under the prefix: a module missing from startup.LAZY_IMPORTS would be compiled at every start."""
    import importlib.util
    import os

    daemon.client.request("status")
    assert daemon.client.request("snapshot")["bytes"] > 0  # the camera's lazy imports (JPEG) too
    loaded = set(daemon.import_log.read_text().split()) - set(NOT_DAEMON)
    assert "simplejpeg" in loaded or "PIL.Image" in loaded
    missing, checked = [], 0
    for name in sorted(loaded):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue  # an import the daemon tried and that failed (an optional module absent here)
        if spec is None or not (spec.origin or "").endswith(".py"):
            continue  # built in, or a compiled extension: no byte code
        checked += 1
        if not os.path.exists(_cached(spec.origin, pycache)):
            missing.append(name)
    assert checked > 300 and missing == []


def test_the_daemon_loads_its_byte_code_from_the_prefix(pycache) -> None:
    """Run as the unit runs it: the big modules come from the prefix's opt-2 files, not compiled."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONOPTIMIZE="2", PYTHONPYCACHEPREFIX=str(pycache), PYTHONVERBOSE="1")
    out = subprocess.run([sys.executable, "-c", "import edged.app, edged.parts, edged.startup as s; "
                          "s.import_live_sdk(); assert s.__doc__ is None"],
                         capture_output=True, text=True, timeout=120, env=env, check=True)
    import google.genai.types

    import edged.app

    for mod in (edged.app, google.genai.types):
        assert f"# code object from '{_cached(mod.__file__, pycache)}'" in out.stderr, mod.__name__


def test_precompile_again_keeps_what_is_current(pycache) -> None:
    """An update (scripts/install run again) rewrites only the byte code whose source changed."""
    out = subprocess.run([sys.executable, "-m", "edged.cli", "precompile", "--into", str(pycache)],
                         capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.startswith(f"edged: 0 modules compiled into {pycache} "), out.stdout


def test_current_byte_code_is_told_by_its_header(tmp_path) -> None:
    import py_compile

    src = tmp_path / "m.py"
    src.write_text("X = 1\n")
    os.utime(src, (1_700_000_000, 1_700_000_000))
    cfile = str(tmp_path / "m.opt-2.pyc")
    assert not startup._current(str(src), cfile)  # none yet
    py_compile.compile(str(src), cfile=cfile, doraise=True, optimize=2)
    assert startup._current(str(src), cfile)
    os.utime(src, (1_700_000_100, 1_700_000_100))  # touched: the import system would recompile it
    assert not startup._current(str(src), cfile)
    os.utime(src, (1_700_000_000, 1_700_000_000))
    src.write_text("X = 22\n")  # same mtime, other size
    os.utime(src, (1_700_000_000, 1_700_000_000))
    assert not startup._current(str(src), cfile)


def test_precompile_that_cannot_write_says_where_and_fails(tmp_path) -> None:
    """scripts/install runs it under set -e: a prefix it cannot write must stop the install with the
    path, not pass as if the modules were optional (root ignores modes: a file stands where a folder must)."""
    blocker = tmp_path / "pycache"
    blocker.write_text("not a folder\n")
    out = subprocess.run([sys.executable, "-m", "edged.cli", "precompile", "--into", str(blocker)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout
    assert out.stderr.startswith(f"edged: precompile: cannot write {blocker}/") and "compiled into" not in out.stdout


BLAS_PROBE = """
import os, sys
{setup}
import numpy
a = numpy.ones((300, 300), dtype=numpy.float32)
for _ in range(3):
    a @ a
print(len(os.listdir("/proc/self/task")))
"""


def _threads_after_blas(setup: str, env_blas: str | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "GOTO_NUM_THREADS")}
    if env_blas is not None:
        env["OPENBLAS_NUM_THREADS"] = env_blas
    out = subprocess.run([sys.executable, "-c", BLAS_PROBE.format(setup=setup)], env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    return int(out.stdout.strip().splitlines()[-1])


needs_cores = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS starts one thread on one core")


@needs_cores
def test_the_entry_gives_numpy_one_blas_thread() -> None:
    # the premise: here, numpy's OpenBLAS starts threads of its own when left to itself
    assert _threads_after_blas("") > 1
    # every edged sub-command (the daemon is `edged run`) goes through cli.main, which settles it first
    entry = "from edged import cli\ntry:\n    cli.main(['--no-such-option'])\nexcept SystemExit:\n    pass"
    assert _threads_after_blas(entry) == 1


@needs_cores
def test_one_blas_thread_keeps_a_choice_made_in_the_environment() -> None:
    setup = "from edged.startup import one_blas_thread\none_blas_thread()"
    assert _threads_after_blas(setup, env_blas="2") == 2
    assert _threads_after_blas(setup) == 1
