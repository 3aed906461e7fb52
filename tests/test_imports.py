"""The package's import graph: no circles, and the runtime never imports the harness.

The graph is read from the source with ``ast``: every ``import`` and ``from ... import`` of every
module of the edged package, wherever it is (module level, in a function, under
``if TYPE_CHECKING:``: a type-only import is still a dependency the design must not have).
The harness is ``edged.dev`` (rig, demo, soak, file devices, test speech) and the Live emulator
``edged.sim``: only they may import them. ``edged demo`` and ``edged sim`` reach them through
the cli's lazy ``module:function`` entries, which are strings, not imports.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import edged

PACKAGE = Path(edged.__file__).resolve().parent
HARNESS = ("edged.dev", "edged.sim")


def module_name(path: Path) -> str:
    parts = ["edged", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The edged module an imported name lives in (the longest known prefix), or None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The edged modules ``name`` imports, anywhere in its source."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # `from pkg import sub` imports the module pkg.sub when there is one
            targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]
        for target in targets:
            resolved = _resolve(target, known)
            if resolved and resolved != name:
                out.add(resolved)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return sorted(found)


def in_harness(name: str) -> bool:
    return any(name == h or name.startswith(h + ".") for h in HARNESS)


# ---- the checker checks itself ------------------------------------------------------------------
def test_the_graph_sees_every_kind_of_import():
    g = graph()
    assert "edged.control_client" in g["edged.ctl"]  # from .control_client import ... (module level)
    assert "edged.service.doctor" in g["edged.ctl"]  # from .service import doctor (in a function)
    assert "edged.config" in g["edged.service.doctor"]  # from .. import config (in a function)
    assert "edged.errors" in g["edged.dev.tts"]  # from ..errors import ...
    assert "edged.dev.filedev" in g["edged.dev.rig"]  # from .filedev import ...
    assert "edged.sim.live_server" in g["edged.dev.rig"]  # from ..sim.live_server import ...


def test_cycles_finds_a_circle_and_ignores_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


# ---- the rules -----------------------------------------------------------------------------------
def test_no_import_circles():
    found = cycles(graph())
    assert found == [], "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_runtime_never_imports_the_harness():
    bad = sorted((name, dep) for name, deps in graph().items() if not in_harness(name)
                 for dep in deps if in_harness(dep))
    assert bad == [], "runtime modules importing the harness: " + ", ".join(f"{a} -> {b}" for a, b in bad)


def test_daemon_entry_loads_no_harness():
    # what `edged run` loads before it builds anything: the cli and the daemon module (the daemon
    # itself, run to idle, is checked by tests/service/test_service_daemon.py from its import log)
    code = ("import json, sys, edged.cli, edged.daemon, edged.ctl; edged.cli._parser()\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('edged'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = json.loads(proc.stdout)
    assert "edged.daemon" in loaded and "edged.cli" in loaded
    assert [m for m in loaded if in_harness(m)] == []


def test_the_running_daemon_loaded_no_harness(daemon):
    """The session's real daemon (tests/conftest.py) logs every module it imports, at start-up and
    while it serves requests, up to now."""
    daemon.client.request("status")  # idle, connected, and has answered
    loaded = set(daemon.import_log.read_text().split())
    assert {"edged.cli", "edged.daemon", "edged.audio.wake", "edged.live.session",
            "edged.service.control"} <= loaded
    assert sorted(m for m in loaded if in_harness(m)) == []
