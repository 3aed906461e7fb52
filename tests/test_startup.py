"""edged/startup.py: the start-up trace and the imports the daemon leaves out."""

from __future__ import annotations

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
