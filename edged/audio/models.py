"""Wake-word, VAD and end-of-turn models: fetch from wheels on PyPI, check by sha256, resolve names.

openWakeWord 0.6.0 ships no model files and downloads them from GitHub; the 0.5.1 wheel on PyPI
holds them.  Smart Turn v3.2 (BSD-2) is bundled in the ``pipecat-ai`` 1.14.0 wheel.  ``fetch`` takes
the files from those wheels through pip (the ordinary registry client), checks each wheel's sha256,
and verifies every file against the manifest below.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import ModelError

log = logging.getLogger(__name__)

PACKAGE = "openwakeword==0.5.1"
WHEEL = "openwakeword-0.5.1-py3-none-any.whl"
WHEEL_SHA256 = "015467e49f08b0ef8efa433690ce70566abb72f7c36501a6fa893762b4ddc559"
MEMBER_PREFIX = "openwakeword/resources/models/"

SMART_TURN = "smart-turn-v3.2-cpu.onnx"
SMART_PACKAGE = "pipecat-ai==1.14.0"
SMART_WHEEL = "pipecat_ai-1.14.0-py3-none-any.whl"
SMART_WHEEL_SHA256 = "0352f504b44e78bdf524e45af4bc759601c835b9b7dc195efe5e03384b974a44"
SMART_PREFIX = "pipecat/audio/turn/smart_turn/data/"

MANIFEST: dict[str, str] = {
    "alexa_v0.1.onnx": "6ff566a01d12670e8d9e3c59da32651db1575d17272a601b7f8a39283dfbae3e",
    "embedding_model.onnx": "70d164290c1d095d1d4ee149bc5e00543250a7316b59f31d056cff7bd3075c1f",
    "hey_jarvis_v0.1.onnx": "94a13cfe60075b132f6a472e7e462e8123ee70861bc3fb58434a73712ee0d2cb",
    "hey_mycroft_v0.1.onnx": "c2a311e8fa1338de89c31b3b46dc4dffd4af2f9a8d6ddead48893c2d301b1f18",
    "hey_rhasspy_v0.1.onnx": "5a9b3ed3be2910e35780e097905aa9f35a9c10038df47914cf2b3ec4d670f6ea",
    "melspectrogram.onnx": "ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f",
    "silero_vad.onnx": "a35ebf52fd3ce5f1469b2a36158dba761bc47b973ea3382b3186ca15b1f5af28",
    SMART_TURN: "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
}
Source = tuple[str, str, str, str]  # (pip requirement, wheel file name, wheel sha256, folder in the wheel)
# which wheel holds each file
SOURCE_OF: dict[str, Source] = {
    f: (SMART_PACKAGE, SMART_WHEEL, SMART_WHEEL_SHA256, SMART_PREFIX) if f == SMART_TURN
    else (PACKAGE, WHEEL, WHEEL_SHA256, MEMBER_PREFIX) for f in MANIFEST}
BUILTIN = {"alexa": "alexa_v0.1.onnx", "hey_jarvis": "hey_jarvis_v0.1.onnx",
           "hey_mycroft": "hey_mycroft_v0.1.onnx", "hey_rhasspy": "hey_rhasspy_v0.1.onnx"}
MELSPEC = "melspectrogram.onnx"
EMBEDDING = "embedding_model.onnx"
SILERO = "silero_vad.onnx"
FIX_HINT = "run `edged models fetch` (or `edged models fetch --dir DIR`)"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_problem(path: Path, expected: str | None) -> str | None:
    if not path.is_file():
        return f"{path}: missing"
    if expected is None:
        return None
    try:
        got = sha256(path)
    except OSError as exc:
        return f"{path}: cannot read: {exc.strerror or exc}"
    if got != expected:
        return f"{path}: corrupt (sha256 {got[:12]}..., expected {expected[:12]}...)"
    return None


def resolve(name: str, models_dir: str | os.PathLike[str]) -> Path:
    """A built-in name (``hey_jarvis``), a manifest file name, or a path to a custom ``.onnx``."""
    if name in BUILTIN:
        return Path(models_dir) / BUILTIN[name]
    if name in MANIFEST:
        return Path(models_dir) / name
    if name.endswith(".onnx") or os.sep in name:
        return Path(name).expanduser()
    raise ModelError(f"wake model {name!r}: unknown (built-in names: {', '.join(sorted(BUILTIN))}; "
                     "or give the path of a custom .onnx file)")


def check(models_dir: str | os.PathLike[str], names: list[str] | None = None) -> list[str]:
    """Problems with the files needed for ``names`` (wake models) plus the feature models.

    ``names=None`` checks the whole manifest.  Custom ``.onnx`` paths are checked for existence only.
    """
    d = Path(models_dir)
    if names is None:
        return [p for f, h in sorted(MANIFEST.items()) if (p := _file_problem(d / f, h))]
    problems: list[str] = []
    wanted: list[Path] = [d / MELSPEC, d / EMBEDDING]
    for n in names:
        try:
            wanted.append(resolve(n, d))
        except ModelError as exc:
            problems.append(str(exc))
    for path in wanted:
        expected = MANIFEST.get(path.name) if path.parent == d else None
        if (p := _file_problem(path, expected)) is not None:
            problems.append(p)
    return problems


def _pip_download(dest: Path, sources: list[Source]) -> dict[str, Path]:
    """Every wheel of ``sources`` into ``dest`` with one pip run (starting pip costs seconds on a slow
    board: two runs took 16-19 s of the VM bench's install), each checked by sha256.  Returns
    {wheel name: path}."""
    packages = [s[0] for s in sources]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
           "--only-binary=:all:", *packages, "-d", str(dest)]
    what = ", ".join(packages)
    log.info("downloading %s with pip", what)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelError(f"pip download {what}: {exc}; check the network or proxy, or copy the model "
                         f"files into the models directory by hand") from None
    missing = [s for s in sources if not (dest / s[1]).is_file()]
    if r.returncode != 0 or missing:
        tail = " ".join((r.stderr or r.stdout or "").strip().splitlines()[-2:])
        by_hand = "; ".join(f"{wheel} and unzip {prefix}*.onnx" for _, wheel, _, prefix in missing or sources)
        raise ModelError(f"pip download {what} failed ({tail or 'exit ' + str(r.returncode)}); the package "
                         "registry must be reachable (check network, proxy, PIP_INDEX_URL), or download "
                         f"{by_hand} into the models directory")
    wheels = {}
    for _, wheel_name, wheel_sha256, _ in sources:
        wheel = dest / wheel_name
        got = sha256(wheel)
        if got != wheel_sha256:
            raise ModelError(f"{wheel_name}: sha256 {got} does not match the expected {wheel_sha256}; "
                             "the registry or a proxy served a different file")
        wheels[wheel_name] = wheel
    return wheels


def _install(data: bytes, target: Path, expected: str, wheel_name: str = WHEEL) -> None:
    got = hashlib.sha256(data).hexdigest()
    if got != expected:
        raise ModelError(f"{target.name} in {wheel_name}: sha256 {got} does not match the manifest {expected}")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch(models_dir: str | os.PathLike[str]) -> list[str]:
    """Make ``models_dir`` hold every manifest file with the right sha256.  Returns the files installed."""
    d = Path(models_dir)
    need = [f for f, h in sorted(MANIFEST.items()) if _file_problem(d / f, h) is not None]
    if not need:
        log.debug("models in %s are complete", d)
        return []
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"{d}: cannot create the models directory: {exc.strerror or exc}") from None
    sources = sorted({SOURCE_OF[f] for f in need})
    with tempfile.TemporaryDirectory(prefix="edged-models-") as tmp:
        wheels = _pip_download(Path(tmp), sources)
        for _, wheel_name, _, prefix in sources:
            with zipfile.ZipFile(wheels[wheel_name]) as z:
                names = set(z.namelist())
                for f in need:
                    if SOURCE_OF[f][1] != wheel_name:
                        continue
                    member = prefix + f
                    if member not in names:
                        raise ModelError(f"{wheel_name} has no {member}")
                    _install(z.read(member), d / f, MANIFEST[f], wheel_name)
                    log.info("installed %s", d / f)
    return need
