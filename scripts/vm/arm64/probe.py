#!/usr/bin/env python3
"""The arm64 VM bench's probe (scripts/vm-arm64).  Standard library only at the top level: the
wake-word and GPIO parts import numpy, onnxruntime and lgpio only in the Python that has them.

    probe.py models WHEEL DEST               take openWakeWord's models out of its wheel (sha256-checked
                                             against edged/audio/models.py)
    probe.py wake MODELS NAME=CLIP.raw ...   score each clip with edged's LeanWakeModel (hey_jarvis):
                                             JSON {"clips": {NAME: {"peak", "frames"}}, "ms_per_frame"...}
    probe.py clips OUT MODELS [--python PY]  on the host: render "hey jarvis" (edged/dev/tts.py's voices)
                                             and a non-wake phrase with espeak-ng, padded with silence;
                                             with PY (a Python with onnxruntime) score them and keep the
                                             best wake clip (>= 0.5) as OUT/wake.raw, the other as
                                             OUT/nonwake.raw (and .wav); prints the host's scores (JSON)
    probe.py gpio [--sim SYSFS]              lgpio's version and which gpiochips it can open (JSON); with
                                             --sim (a gpio-sim chip's sysfs dir), an output line written and
                                             an input line read through lgpio, checked through gpio-sim
    probe.py guest --share DIR --uptime S    in the guest: all of the above plus a venv made offline
                                             from DIR/../wheels and snd-aloop; writes DIR/results.json
"""

from __future__ import annotations

import argparse
import glob
import json
import platform
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[3]  # the edged source tree this file sits in
CHUNK = 1280  # samples per 80 ms frame at 16 kHz
WAKE = "hey_jarvis"


def _edged_models():
    sys.path.insert(0, str(SRC))
    from edged.audio import models

    return models


def extract_models(wheel: Path, dest: Path) -> list[str]:
    """openWakeWord's melspectrogram, embedding and wake models from its wheel, each checked by sha256."""
    M = _edged_models()
    want = [M.MELSPEC, M.EMBEDDING, M.BUILTIN[WAKE]]
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        for name in want:
            (dest / name).write_bytes(z.read(M.MEMBER_PREFIX + name))
            if M.sha256(dest / name) != M.MANIFEST[name]:
                raise SystemExit(f"{name}: sha256 does not match edged/audio/models.py")
    return want


def wake_scores(models_dir: Path, clips: dict[str, Path]) -> dict:
    """Peak hey_jarvis score of each clip, streamed in 80 ms frames, and the time each frame takes."""
    import numpy as np

    M = _edged_models()
    from edged.audio.oww_lean import LeanWakeModel

    t = time.perf_counter()
    eng = LeanWakeModel({WAKE: models_dir / M.BUILTIN[WAKE]}, models_dir / M.MELSPEC, models_dir / M.EMBEDDING)
    load_s = time.perf_counter() - t
    out: dict = {"clips": {}, "load_s": round(load_s, 2)}
    times: list[float] = []
    for name, path in clips.items():
        eng.reset()
        audio = np.frombuffer(Path(path).read_bytes(), dtype=np.int16)
        audio = np.concatenate((audio, np.zeros((-len(audio)) % CHUNK, dtype=np.int16)))
        peak = 0.0
        for i in range(0, len(audio), CHUNK):
            t = time.perf_counter()
            score = eng.predict(audio[i:i + CHUNK])[WAKE]
            times.append(time.perf_counter() - t)
            peak = max(peak, score)
        out["clips"][name] = {"peak": round(peak, 4), "frames": len(audio) // CHUNK}
    times.sort()
    out["ms_per_frame"] = {"mean": round(1000 * sum(times) / len(times), 2),
                           "median": round(1000 * times[len(times) // 2], 2),
                           "max": round(1000 * times[-1], 2), "frames": len(times)}
    import onnxruntime

    out["onnxruntime"], out["numpy"] = onnxruntime.__version__, np.__version__
    return out


def host_clips(out: Path, models_dir: Path, python: str | None) -> dict:
    """The two clips the guest scores, chosen on the host with the same engine."""
    sys.path.insert(0, str(SRC))
    from edged.dev.tts import WAKE_VARIANTS, render

    cand = out / "candidates"
    cand.mkdir(parents=True, exist_ok=True)
    texts = {f"wake_{v.replace('+', '_').replace('-', '_')}_{s}": ("hey jarvis", v, s) for v, s in WAKE_VARIANTS}
    texts["nonwake"] = ("what time is it", "en-us", 175)
    lead, tail = bytes(2 * 8000), bytes(2 * 16000)  # 0.5 s of silence before, 1 s after
    for name, (text, voice, speed) in texts.items():
        raw = render(text, rate=16000, voice=voice, speed=speed)
        (cand / f"{name}.raw").write_bytes(lead + raw.read_bytes() + tail)
    host: dict = {"python": python, "scores": None}
    best = "wake_en_us_140"  # without a scorer: the slow American voice (0.996 on the development host)
    if python:
        clips = [f"{n}={cand / n}.raw" for n in texts]
        p = subprocess.run([python, str(Path(__file__).resolve()), "wake", str(models_dir), *clips],
                           capture_output=True, text=True, check=True)
        host = {"python": python, **json.loads(p.stdout.splitlines()[-1])}
        wakes = {n: c["peak"] for n, c in host["clips"].items() if n != "nonwake"}
        best = max(wakes, key=wakes.__getitem__)
        if wakes[best] < 0.5:
            raise SystemExit(f"no rendered 'hey jarvis' scores 0.5 on the host: {wakes}")
    host["wake_clip"] = best
    for src, dst in ((best, "wake"), ("nonwake", "nonwake")):
        data = (cand / f"{src}.raw").read_bytes()
        (out / f"{dst}.raw").write_bytes(data)
        subprocess.run(["sox", "-t", "raw", "-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer",
                        str(out / f"{dst}.raw"), str(out / f"{dst}.wav")], check=True, capture_output=True)
    shutil.rmtree(cand)
    return host


def gpio_sim_create(lines: int = 8) -> dict:
    """A gpio-sim chip through configfs (the module built out of tree into the image): its sysfs dir."""
    cfg = Path("/sys/kernel/config/gpio-sim/arm64")
    out = {"modprobe": _run(["modprobe", "gpio-sim-oot"])}
    if out["modprobe"]["rc"] == 0:
        try:
            (cfg / "bank0").mkdir(parents=True)
            (cfg / "bank0" / "num_lines").write_text(str(lines))
            (cfg / "live").write_text("1")
            _run(["udevadm", "settle", "-t", "10"])
            chip = (cfg / "bank0" / "chip_name").read_text().strip()
            out["sysfs"] = f"/sys/devices/platform/{(cfg / 'dev_name').read_text().strip()}/{chip}"
        except OSError as exc:
            out["error"] = str(exc)
    return out


def gpio_sim_loop(lgpio, sysfs: Path) -> dict:
    """lgpio drives line 0 high then low, gpio-sim reads it; gpio-sim pulls line 1 up then down, lgpio reads it."""
    h = lgpio.gpiochip_open(int(sysfs.name.removeprefix("gpiochip")))
    try:
        line = sysfs / "sim_gpio0" / "value"
        lgpio.gpio_claim_output(h, 0, 1)
        high = int(line.read_text())
        lgpio.gpio_write(h, 0, 0)
        low = int(line.read_text())
        reads = []
        for pull in ("pull-up", "pull-down"):
            (sysfs / "sim_gpio1" / "pull").write_text(pull)
            if not reads:
                lgpio.gpio_claim_input(h, 1)
            reads.append(lgpio.gpio_read(h, 1))
    finally:
        lgpio.gpiochip_close(h)
    ok = (high, low, reads) == (1, 0, [1, 0])
    return {"ok": ok, "output_seen_by_sim": [high, low], "input_read_pull_up_down": reads}


def gpio_probe(sim: Path | None = None) -> dict:
    """lgpio's version and, for each /dev/gpiochip*, whether lgpio opens it (and its lines)."""
    import lgpio

    out: dict = {"lgpio": lgpio.get_module_version(), "chips": []}
    for dev in sorted(glob.glob("/dev/gpiochip*")):
        n = int(dev.removeprefix("/dev/gpiochip"))
        row: dict = {"dev": dev}
        try:
            h = lgpio.gpiochip_open(n)
            if h < 0:
                raise OSError(lgpio.error_text(h))
            _, lines, name, label = lgpio.gpio_get_chip_info(h)
            row.update(opened=True, name=name, label=label, lines=lines)
            lgpio.gpiochip_close(h)
        except Exception as exc:  # lgpio raises its own error type
            row.update(opened=False, error=str(exc))
        out["chips"].append(row)
    if sim:
        try:
            out["gpio_sim_loop"] = gpio_sim_loop(lgpio, sim)
        except Exception as exc:  # lgpio.error, OSError
            out["gpio_sim_loop"] = {"ok": False, "error": str(exc)}
    return out


def _run(cmd: list[str], timeout: float = 600) -> dict:
    t = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        rc, text = p.returncode, (p.stdout + p.stderr)
    except (OSError, subprocess.TimeoutExpired) as exc:
        rc, text = -1, str(exc)
    return {"rc": rc, "seconds": round(time.monotonic() - t, 1), "output": text.strip()[-4000:]}


def _json_of(step: dict) -> dict | None:
    try:
        return json.loads(step["output"].splitlines()[-1])
    except (ValueError, IndexError):
        return None


def guest(share: Path, uptime: float) -> int:
    """Everything the guest reports: one JSON in the share, written after each step."""
    res: dict = {"uptime_at_probe_s": uptime, "kernel": platform.release(), "machine": platform.machine(),
                 "python": platform.python_version(), "steps": {}}
    out = share / "results.json"

    def save() -> None:
        out.write_text(json.dumps(res, indent=1), encoding="utf-8")

    save()
    wheels, work = share / "wheels", Path("/opt/probe")
    venv_py = str(work / "venv" / "bin" / "python")
    res["steps"]["venv"] = _run([sys.executable, "-m", "venv", "--system-site-packages", str(work / "venv")])
    save()
    # --no-compile: byte-compiling the packages under TCG would cost minutes and measure nothing here
    res["steps"]["pip_install"] = _run([venv_py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                        "--no-index", "--no-compile", "--find-links", str(wheels),
                                        *(share / "pins.txt").read_text().split()], timeout=1800)
    save()
    if res["steps"]["pip_install"]["rc"] == 0:
        me = str(Path(__file__).resolve())
        step = _run([venv_py, me, "models", str(next(wheels.glob("openwakeword-*.whl"))), str(work / "models")])
        res["steps"]["models"] = step
        if step["rc"] == 0:
            clips = [f"{c.stem}={c}" for c in sorted((share / "clips").glob("*.raw"))]
            step = _run([venv_py, me, "wake", str(work / "models"), *clips], timeout=3600)
            res["steps"]["wake"] = step
            res["wake"] = _json_of(step)
        save()
        res["gpio_sim"] = sim = gpio_sim_create()
        res["steps"]["gpio"] = step = _run([venv_py, me, "gpio", *(["--sim", sim["sysfs"]] if "sysfs" in sim else [])])
        res["gpio"] = _json_of(step)
    res["gpiochips"] = sorted(glob.glob("/dev/gpiochip*"))
    save()
    # a real ALSA card: snd-aloop, listed by aplay, a clip played into it and recorded back
    alsa: dict = {"modprobe": _run(["modprobe", "snd-aloop"])}
    alsa["aplay_l"] = _run(["aplay", "-l"])
    clip = next(iter(sorted((share / "clips").glob("*.wav"))), None)
    if clip and alsa["modprobe"]["rc"] == 0:
        rec = work / "loop.raw"
        p = subprocess.Popen(["arecord", "-q", "-D", "hw:Loopback,1,0", "-f", "S16_LE", "-r", "16000", "-c", "1",
                              "-t", "raw", "-d", "4", str(rec)], stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        alsa["aplay_clip"] = _run(["aplay", "-q", "-D", "hw:Loopback,0,0", str(clip)])
        try:
            _, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        data = rec.read_bytes() if rec.exists() else b""
        nonzero = sum(1 for i in range(0, len(data) - 1, 2) if data[i] or data[i + 1])
        # the loopback card is bit-exact: the clip's first 0.25 s of speech is in the record as it is
        raw = clip.with_suffix(".raw").read_bytes()
        start = (len(raw) - len(raw.lstrip(b"\0"))) & ~1
        speech = raw[start:start + 8000]
        alsa["arecord"] = {"rc": p.returncode, "bytes": len(data), "nonzero_samples": nonzero,
                           "clip_found_bit_exact": speech in data, "error": err.strip()[-500:]}
    res["alsa"] = alsa
    res["uptime_at_end_s"] = float(Path("/proc/uptime").read_text().split()[0])
    save()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="probe.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("models")
    m.add_argument("wheel", type=Path)
    m.add_argument("dest", type=Path)
    w = sub.add_parser("wake")
    w.add_argument("models", type=Path)
    w.add_argument("clips", nargs="+", help="NAME=PATH of 16 kHz mono S16_LE raw audio")
    c = sub.add_parser("clips")
    c.add_argument("out", type=Path)
    c.add_argument("models", type=Path)
    c.add_argument("--python")
    gp = sub.add_parser("gpio")
    gp.add_argument("--sim", type=Path)
    g = sub.add_parser("guest")
    g.add_argument("--share", type=Path, required=True)
    g.add_argument("--uptime", type=float, required=True)
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].startswith("--share"):  # the image's boot script: probe.py --share DIR --uptime S
        argv = ["guest", *argv]
    args = ap.parse_args(argv)
    if args.cmd == "models":
        print(json.dumps(extract_models(args.wheel, args.dest)))
    elif args.cmd == "wake":
        print(json.dumps(wake_scores(args.models, dict(c.split("=", 1) for c in args.clips))))
    elif args.cmd == "clips":
        print(json.dumps(host_clips(args.out, args.models, args.python)))
    elif args.cmd == "gpio":
        print(json.dumps(gpio_probe(args.sim)))
    else:
        return guest(args.share, args.uptime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
