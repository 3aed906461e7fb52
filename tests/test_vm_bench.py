"""The VM bench's host-side logic (scripts/vm-test, scripts/vm/host.py): requirement list, options,
the result table's verdicts.  The bench itself runs in qemu (scripts/vm-test), not here."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VM = ROOT / "scripts" / "vm"


def _load(name: str, folder: Path = VM):
    """A script's module from ``folder`` (not a package), its folder on sys.path while it loads."""
    spec = importlib.util.spec_from_file_location(f"{folder.name}_{name}", folder / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(folder))
    return mod


host = _load("host")


def test_requirements_expand_the_all_extra_without_self_references():
    reqs = host.requirements(ROOT / "pyproject.toml")
    names = {r.split(";")[0].split("=")[0].split(">")[0].strip().lower() for r in reqs}
    assert not any(r.startswith("edged") for r in reqs)
    # every extra scripts/install's `edged[all]` pulls in
    for want in ("google-genai", "pyalsaaudio", "openwakeword", "onnxruntime", "gpiozero", "systemd-python",
                 "cryptography", "simplejpeg"):
        assert want in names, want
    assert len(reqs) == len(set(reqs))


def test_the_wheelhouse_holds_edgeds_build_backend():
    """The guest builds edged offline, in pip's isolated build environment: whatever pyproject's
    [build-system] requires must be in the wheelhouse (read from pyproject, its one owner)."""
    out = subprocess.run([sys.executable, str(VM / "host.py"), "requirements", str(ROOT / "pyproject.toml")],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    backend = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert backend and set(backend) <= set(out)
    assert "lgpio" in out


def test_the_wheelhouse_holds_the_pip_the_installer_upgrades_to():
    """scripts/install upgrades pip when it makes the venv, and the image's venv is made the same way:
    offline, that upgrade finds only the wheelhouse.  Without a pip wheel there the guest keeps
    Debian's pip 23.0.1, whose resolver spent 47 s of a VM install where pip 26 spends 18 s."""
    out = subprocess.run([sys.executable, str(VM / "host.py"), "requirements", str(ROOT / "pyproject.toml")],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert "pip" in out
    install = (ROOT / "scripts" / "install").read_text()
    image = (VM / "build-image.sh").read_text()
    assert "--upgrade pip" in install and "--upgrade pip" in image


def test_the_wheelhouse_holds_every_wheel_models_fetch_downloads():
    """The guest has no network: `edged models fetch` in it finds its wheels only in the wheelhouse.
    (The Smart Turn wheel was missing once and the guest's install failed.)"""
    from edged.audio import models as M

    got = host.model_wheels()
    assert got == [(M.PACKAGE, M.WHEEL), (M.SMART_PACKAGE, M.SMART_WHEEL)]
    assert {(pkg, wheel) for pkg, wheel, *_ in M.SOURCE_OF.values()} == set(got)


def test_requirements_name_an_unknown_extra(tmp_path):
    p = tmp_path / "pyproject.toml"
    p.write_text('[project]\nname = "x"\ndependencies = []\n[project.optional-dependencies]\nall = ["x[nope]"]\n')
    with pytest.raises(KeyError, match="nope"):
        host.requirements(p)


def test_args_refuse_an_unknown_break():
    with pytest.raises(ValueError, match="unknown --break nonsense"):
        host.make_args("watchdog,nonsense", "")
    assert host.make_args("watchdog", "reload,security") == {
        "breaks": ["watchdog"], "only": ["reload", "security"], "fresh_venv": False, "hold": False}


def test_every_break_names_rows_the_runner_has():
    runner = _load("runner")
    rows = {name for name, _d, _f in runner.SCENARIOS}
    for name, (_what, breaks_rows) in host.load_breaks().items():
        assert breaks_rows and set(breaks_rows) <= rows, name


def _imported(path: Path) -> set[str]:
    """The modules a file imports anywhere in it (functions and ``if TYPE_CHECKING:`` included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            out.add(node.module or "")
    return out


def test_only_runs_the_rows_named_after_start_ready_which_starts_the_daemon():
    runner = _load("runner")
    names = [n for n, _d, _f in runner.SCENARIOS]
    assert [n for n, _d, _f in runner.chosen(set())] == names
    assert [n for n, _d, _f in runner.chosen({"watchdog_resume"})] == ["start_ready", "watchdog_resume"]
    assert [n for n, _d, _f in runner.chosen({"uninstall", "reload"})] == ["start_ready", "reload", "uninstall"]
    assert [n for n, _d, _f in runner.chosen({"start_ready"})] == ["start_ready"]


def test_the_guest_runner_modules_import_one_way_and_only_the_standard_library():
    """runner.py runs on the guest's Debian python3 before edged is installed, with scripts/vm first on
    sys.path: it and the modules beside it that it loads may import each other (without a circle),
    the standard library, and edged.control_client from the source tree (for status())."""
    from tests.test_imports import cycles

    siblings = {p.stem for p in VM.glob("*.py")}
    graph = {name: _imported(VM / f"{name}.py") for name in siblings}
    loaded, todo = set(), ["runner"]
    while todo:
        name = todo.pop()
        if name not in loaded:
            loaded.add(name)
            todo.extend(m for m in graph[name] if m in siblings)
    assert {"waits", "breaks", "harness", "rows_service", "rows_devices", "rows_security"} <= loaded
    assert "host" not in loaded  # the host's side stays on the host
    found = cycles({n: {m for m in graph[n] if m in loaded} for n in loaded})
    assert found == [], f"import circles among scripts/vm's guest modules: {found}"
    outside = {m for n in loaded for m in graph[n] if m not in siblings}
    foreign = sorted(m for m in outside if m.split(".")[0] not in sys.stdlib_module_names
                     and m not in ("__future__", "edged.control_client"))
    assert foreign == [], f"the guest's runner imports what Debian's python3 does not have: {foreign}"


def _results(*rows, **extra):
    return {"scenarios": [{"name": n, "ok": ok, "seconds": 1.0, "detail": "d", **kw} for n, ok, kw in rows],
            **extra}


def test_table_passes_only_when_every_row_passes():
    _, ok = host.table(_results(("a", True, {}), ("b", True, {})))
    assert ok
    text, ok = host.table(_results(("a", True, {}), ("b", False, {})))
    assert not ok and "| FAIL |" in text


def test_a_skipped_row_is_shown_as_skip():
    text, ok = host.table(_results(("a", True, {}), ("w", True, {"skipped": True})))
    assert ok and "| SKIP |" in text


def test_no_rows_or_a_set_up_error_is_a_failure():
    assert not host.table(_results())[1]
    text, ok = host.table(_results(("a", True, {}), setup_error="install failed"))
    assert not ok and "install failed" in text


def test_with_breaks_exactly_the_broken_rows_must_fail():
    expect = {"b"}
    assert host.table(_results(("a", True, {}), ("b", False, {})), expect)[1]
    # the break did not break its row: the scenario cannot fail, the run says so
    text, ok = host.table(_results(("a", True, {}), ("b", True, {})), expect)
    assert not ok and "UNEXPECTED" in text
    # a break may stop other rows too: shown, not a verdict
    text, ok = host.table(_results(("a", False, {}), ("b", False, {})), expect)
    assert ok and "(collateral)" in text
    # a skipped row was not broken by the break
    assert not host.table(_results(("a", True, {}), ("b", True, {"skipped": True})), expect)[1]
    # the row it breaks did not run
    assert not host.table(_results(("a", True, {})), expect)[1]


def test_report_writes_the_bench_json_and_fails_without_results(tmp_path, capsys):
    share = tmp_path / "run"
    share.mkdir()
    assert host.report(share, tmp_path / "r.json", {}) == 1
    assert "wrote no" in capsys.readouterr().err
    (share / "results.json").write_text(json.dumps(_results(("a", True, {}), timings={"install_s": 3})))
    assert host.report(share, tmp_path / "r.json", {"boot_s": 20.5}) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["ok"] is True and doc["boot_s"] == 20.5 and doc["scenarios"][0]["name"] == "a"


def test_vm_test_skips_with_edged_skip_vm():
    r = subprocess.run([str(ROOT / "scripts" / "vm-test")], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "EDGED_SKIP_VM": "1"})
    assert r.returncode == 0 and "skipped (EDGED_SKIP_VM=1)" in r.stderr


def test_vm_test_refuses_an_unknown_option():
    r = subprocess.run([str(ROOT / "scripts" / "vm-test"), "--bogus"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "unknown argument: --bogus" in r.stderr


# ---- scripts/vm-arm64 (the arm64 guest under qemu-system-aarch64): no VM is booted here ----------------
VM_ARM64 = ROOT / "scripts" / "vm-arm64"


def test_vm_arm64_scripts_parse_and_document_themselves():
    for script in (VM_ARM64, VM / "arm64" / "build-image.sh"):
        assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0, script
    assert subprocess.run(["sh", "-n", str(VM / "arm64" / "vm-arm64-boot")], capture_output=True).returncode == 0
    r = subprocess.run([str(VM_ARM64), "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "qemu-system-aarch64" in r.stdout and "--check" in r.stdout
    r = subprocess.run([str(VM_ARM64), "--bogus"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "unknown argument: --bogus" in r.stderr
    r = subprocess.run([str(VM_ARM64)], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "EDGED_SKIP_VM": "1"})
    assert r.returncode == 0 and "skipped" in r.stderr


@pytest.mark.parametrize("args", [[], ["--check"]])
def test_vm_arm64_exits_77_with_the_reason_when_the_host_cannot_run_it(tmp_path, args):
    """No qemu-system-aarch64 (a name that does not exist) and installing forbidden: 77 and what is missing
    (as a non-root user the reason is the image that only root can build).  Nothing is built or booted."""
    env = {**os.environ, "EDGED_VM_CACHE": str(tmp_path), "EDGED_VM_NO_INSTALL": "1",
           "EDGED_VM_QEMU_AARCH64": str(tmp_path / "no-such-qemu-system-aarch64")}
    env.pop("EDGED_SKIP_VM", None)
    r = subprocess.run([str(VM_ARM64), *args], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 77, r.stderr
    assert "cannot run here" in r.stderr
    assert ("qemu-system-arm" if os.geteuid() == 0 else "needs root") in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_vm_arm64_pins_satisfy_what_edged_requires():
    """The aarch64 wheels the guest runs are versions edged's pyproject accepts (the x86-64 venv, resolved
    afresh by pip, may be newer: the pins are the versions measured, not a lock)."""
    from packaging.requirements import Requirement

    pins = dict(p.split("==") for p in (VM / "arm64" / "pins.txt").read_text().split())
    assert set(pins) == {"onnxruntime", "numpy", "lgpio"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in [*project["dependencies"], *sum(project["optional-dependencies"].values(), [])]]
    for name in ("onnxruntime", "numpy"):
        specs = [r.specifier for r in reqs if r.name == name]
        assert specs and all(spec.contains(pins[name]) for spec in specs), (name, pins[name], specs)
    assert not Requirement("onnxruntime>=99").specifier.contains(pins["onnxruntime"])  # the check can fail


def test_vm_arm64_report_judges_the_guest_results(tmp_path):
    report = _load("arm64/report")
    step = {"rc": 0, "seconds": 1.0, "output": ""}
    guest = {"uptime_at_probe_s": 30.1, "kernel": "6.1", "machine": "aarch64",
             "steps": {"venv": step, "pip_install": step},
             "wake": {"clips": {"wake": {"peak": 0.97}, "nonwake": {"peak": 0.01}},
                      "ms_per_frame": {"mean": 300, "median": 290}},
             "gpio": {"lgpio": "0.2.2.0", "chips": []},
             "alsa": {"modprobe": step, "aplay_l": {**step, "output": "card 0: Loopback [Loopback]"},
                      "aplay_clip": step, "arecord": {"bytes": 100, "nonzero_samples": 40}},
             "uptime_at_end_s": 200.0}
    rows, ok = report.rows({"boot_s": 50.0, "guest": guest})
    assert ok and rows[0][1] == "50.0 s host"
    assert any(r[0] == "lgpio" and "no /dev/gpiochip*" in r[2] for r in rows)
    guest["wake"]["clips"]["nonwake"]["peak"] = 0.6  # a false accept in the guest fails the run
    assert not report.rows({"guest": guest})[1]
    guest["wake"]["clips"]["nonwake"]["peak"] = 0.01
    del guest["uptime_at_end_s"]  # the probe did not finish
    assert not report.rows({"guest": guest})[1]
    (tmp_path / "results.json").write_text(json.dumps({**guest, "uptime_at_end_s": 1.0}))
    assert report.main([str(tmp_path), "--json", str(tmp_path / "r.json"), "--boot-s", "50"]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["bench"] == "vm-arm64"


# ---- the two images: one shared library, and cache keys that hash every file their builds read ---------
BUILDS = {"vm-test": "build-image.sh", "vm-arm64": "arm64/build-image.sh"}


def _sourced(build: str) -> list[str]:
    """The files a build-image.sh sources (`. "$HERE/…"`), relative to scripts/vm."""
    script = VM / build
    found = re.findall(r'^\. "\$HERE/([^"]+)"$', script.read_text(), re.M)
    return [os.path.relpath(os.path.normpath(script.parent / f), VM) for f in found]


def _image_key(runner: str, vm: Path) -> str:
    """The image key as scripts/<runner> computes it, by its own function's text, over the copy vm of
    scripts/vm (vm-test's inputs_key takes the wheelhouse key as its argument)."""
    text = (ROOT / "scripts" / runner).read_text()
    name, call = ("inputs_key", "inputs_key wheels-key") if runner == "vm-test" else ("image_key", "image_key")
    fn = re.search(rf"^{name}\(\) {{.*?\n}}\n", text, re.S | re.M)
    assert fn, f"scripts/{runner} has no {name}()"
    script = f'set -euo pipefail; VM="{vm}"; A64="{vm}/arm64"\n{fn.group(0)}{call}\n'
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and re.fullmatch(r"[0-9a-f]{16}\n", r.stdout), (r.returncode, r.stdout, r.stderr)
    return r.stdout


def test_both_image_builds_source_the_one_library_and_parse():
    for build in BUILDS.values():
        assert _sourced(build) == ["image-lib.sh"], build
    for script in (VM / "build-image.sh", VM / "arm64" / "build-image.sh", VM / "image-lib.sh"):
        assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0, script


@pytest.mark.parametrize("runner", sorted(BUILDS))
def test_the_image_key_changes_with_every_file_the_build_reads(tmp_path, runner):
    """A change to the recipe, to what it sources (scripts/vm/image-lib.sh, shared by both images), to
    the gpio-sim build or to the units baked into the guest gives another key, so the cached image is
    rebuilt.  Each file is changed in a copy of scripts/vm and the runner's own key function run on it."""
    vm = tmp_path / "vm"
    shutil.copytree(VM, vm)
    build = BUILDS[runner]
    units = (["guest/vm-bench-boot", "guest/vm-bench.service"] if runner == "vm-test"
             else ["arm64/vm-arm64-boot", "arm64/vm-arm64.service"])
    inputs = [build, *_sourced(build), "gpio-sim/build.sh", "gpio-sim/Kbuild", *units]
    assert "image-lib.sh" in inputs
    key = _image_key(runner, vm)
    assert _image_key(runner, vm) == key  # the same inputs, the same key
    for rel in inputs:
        with open(vm / rel, "a") as f:
            f.write("\n# changed\n")
        new = _image_key(runner, vm)
        assert new != key, f"scripts/{runner}'s image key does not hash {rel}"
        key = new


def _pid1(msg_id: str, usec: int, **extra: str) -> dict[str, str]:
    return {"_PID": "1", "MESSAGE_ID": msg_id, "__MONOTONIC_TIMESTAMP": str(usec), **extra}


def test_start_ready_times_the_last_start_job_from_pid1s_journal():
    """start_ready reads the installer's start -> READY=1 from PID 1's start-job messages."""
    rows = _load("rows_service")
    begun, done, failed = rows.JOB_STARTING, rows.JOB_STARTED, rows.JOB_FAILED
    daemon_line = {"_PID": "812", "MESSAGE": "READY", "__MONOTONIC_TIMESTAMP": "19000000"}
    entries = [_pid1(begun, 5_000_000), _pid1(done, 6_000_000, JOB_RESULT="done"),  # an earlier start
               _pid1(begun, 17_250_000), daemon_line, _pid1(done, 20_960_000, JOB_RESULT="done")]
    assert rows.last_start_job(entries) == (pytest.approx(3.71), "done")
    timed_out = [_pid1(begun, 1_000_000), _pid1(failed, 41_000_000, JOB_RESULT="timeout")]
    assert rows.last_start_job(timed_out) == (pytest.approx(40.0), "timeout")
    with pytest.raises(rows.Fail, match="has not ended"):
        rows.last_start_job(entries[:3] + [daemon_line])
    with pytest.raises(rows.Fail, match="no start job"):
        rows.last_start_job([daemon_line])
    # the daemon's own lines never count, even with PID 1's message id
    with pytest.raises(rows.Fail, match="no start job"):
        rows.last_start_job([{**_pid1(begun, 1), "_PID": "812"}])


def test_only_an_install_that_failed_at_its_start_goes_on_to_the_rows():
    """With --break start the installer's `systemctl restart` fails: start_ready reports it.  A failure
    of any earlier step stays a set-up failure."""
    harness = _load("harness")
    at_start = ("[   90.1] + systemctl enable edged.service\n[   90.4] + systemctl restart edged.service\n"
                "[  101.0] Job for edged.service failed because a timeout was exceeded.\n")
    assert harness.failed_at_start(at_start)
    earlier = ("[    1.0] + /opt/edged/venv/bin/python -m pip install -q /root/src[all]\n"
               "[    9.0] ERROR: No matching distribution found for numpy\n")
    assert not harness.failed_at_start(earlier)
    assert not harness.failed_at_start("")
