"""A whole speaker on any machine: the real ``edged run`` with only the edges swapped.

The Live emulator instead of Google, ALSA ``file`` devices instead of a sound card (the
microphone is a FIFO fed in real time, the speaker a WAV file), gpiozero's mock pins
instead of GPIO, the synthetic camera instead of picamera2.  Used by ``scripts/demo``,
the end-to-end tests, the benchmarks and the soak test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import tomli_w

from ..config import CUE_NAMES
from ..control_client import AsyncControlClient, ControlClient
from ..errors import ControlError
from ..sim.live_server import LiveEmulator
from ..sim.scenario import Scenario
from .filedev import FifoFeeder, silence, write_alsa_config

DEMO_DEVICES: list[dict[str, Any]] = [
    {"name": "kitchen_light", "kind": "led", "pin": 17, "description": "the light over the kitchen counter",
     "room": "kitchen"},
    {"name": "fan", "kind": "relay", "pin": 27, "active_high": False, "description": "the ceiling fan",
     "room": "living room", "min_interval_s": 1.0},
    {"name": "status", "kind": "rgb_led", "pins": [5, 6, 13], "description": "the speaker's status light"},
    {"name": "camera_light", "kind": "led", "pin": 16, "description": "lit while the camera looks"},
    {"name": "talk", "kind": "button", "pin": 22, "description": "the talk button"},
    {"name": "mute", "kind": "button", "pin": 23, "description": "the microphone mute button"},
]


class RigError(RuntimeError):
    pass


class Rig:
    def __init__(self, root: Path, models_dir: Path, *, scenario: Scenario | None = None, speed: float = 1.0,
                 devices: list[dict[str, Any]] | None = None, camera: str = "synthetic",
                 overrides: dict[str, dict[str, Any]] | None = None, env: dict[str, str] | None = None,
                 cues: bool = False) -> None:
        self.root = Path(root)
        self.cues = cues  # sound cues on; off by default so replies land in the WAV bit-exact
        self.models_dir = Path(models_dir)
        self.scenario = scenario
        self.speed = speed
        self.devices = DEMO_DEVICES if devices is None else devices
        self.camera = camera
        self.overrides = overrides or {}
        self.extra_env = env or {}
        self.emu: LiveEmulator | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.feeder: FifoFeeder | None = None
        self.runs = 0
        self.config_path = self.root / "edged.toml"
        self.socket = Path(self.overrides.get("control", {}).get("socket") or self.root / "run" / "control.sock")
        self.client = AsyncControlClient(self.socket)
        self.state_dir = self.root / "state"
        self.fifo = self.root / "mic.fifo"
        self.log_path = self.root / "edged.log"
        self.wavs: list[Path] = []

    # ---- set-up -------------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        assert self.emu is not None
        cfg: dict[str, Any] = {
            "live": {"base_url": self.emu.base_url, "ca_file": str(self.emu.ca_file), "backoff_initial_s": 0.2,
                     "backoff_max_s": 2.0, "connect_timeout_s": 5.0, "auth_retry_s": 5.0},
            # volume 100: the reply is written as the emulator sent it (gain 1)
            "audio": {"capture_device": "mic", "playback_device": "speaker", "jitter_ms": 80, "volume": 100},
            "wake": {"models": ["hey_jarvis"], "models_dir": str(self.models_dir)},
            "turn": {"silence_ms": 700, "no_speech_timeout_s": 4.0},
            "state": {"dir": str(self.state_dir)},
            "control": {"socket": str(self.socket)},
            "gpio": {"pin_factory": "mock", "devices": self.devices},
            "camera": {"backend": self.camera, "max_side": 640},
            "log": {"level": "info"},
        }
        if not self.cues:
            cfg["cues"] = {name: {"enabled": False} for name in CUE_NAMES}
        names = {d["name"]: d["kind"] for d in self.devices}
        if names.get("status") == "rgb_led":
            cfg["gpio"]["status_led"] = "status"
        if names.get("camera_light") == "led":
            cfg["gpio"]["camera_led"] = "camera_light"
        if names.get("talk") == "button":
            cfg["gpio"]["talk_button"] = "talk"
        if names.get("mute") == "button":
            cfg["gpio"]["mute_button"] = "mute"
        for section, values in self.overrides.items():
            if section == "cues" and "cues" in cfg:  # per-cue tables merge, so one cue can be switched on
                for key, value in values.items():
                    cfg["cues"][key] = {**cfg["cues"].get(key, {}), **value} if isinstance(value, dict) else value
                continue
            cfg.setdefault(section, {}).update(values)
        return cfg

    def _write_alsa(self) -> dict[str, str]:
        wav = self.root / f"played-{self.runs}.wav"
        self.wavs.append(wav)
        return write_alsa_config(self.root / "asound.conf", captures={"mic": self.fifo}, playbacks={"speaker": wav})

    async def start(self) -> Rig:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "run").mkdir(exist_ok=True)
        self.emu = LiveEmulator(self.scenario, cert_dir=self.root / "certs", speed=self.speed)
        await self.emu.start()
        self.config_path.write_text(tomli_w.dumps(self.config_dict()))
        await self.start_daemon()
        return self

    async def start_daemon(self, wait: bool = True) -> None:
        self.runs += 1
        env = {**os.environ, **self._write_alsa(), **self.extra_env, "PYTHONUNBUFFERED": "1"}
        for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM"):
            if var not in self.extra_env:
                env.pop(var, None)
        env.setdefault("GPIOZERO_MOCK_REVISION", "d04170")
        self._start_feeder()
        log = self._open_log()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edged", "run", "--config", str(self.config_path),
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        log.close()
        if wait:
            await self.wait_ready()

    def _open_log(self) -> Any:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed after the spawn
        log.write(f"---- run {self.runs} ----\n".encode())
        log.flush()
        return log

    def _start_feeder(self) -> None:
        if self.feeder is not None:
            self.feeder.stop()
        self.feeder = FifoFeeder(self.fifo).start()

    async def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc and self.proc.returncode is not None:
                raise RigError(f"edged exited with {self.proc.returncode}; see {self.log_path}")
            with contextlib.suppress(OSError, ControlError):
                last = await self.request("status")
                if last["ok"] and last["result"]["state"] not in ("starting",):
                    return last["result"]
            await asyncio.sleep(0.1)
        raise RigError(f"edged not ready after {timeout:.0f} s (last answer {last}); see {self.log_path}")

    # ---- talking to it ----------------------------------------------------------------------------
    def speak(self, pcm16k: bytes, pad_s: float = 0.0) -> None:
        """Queue audio on the microphone (16 kHz S16_LE mono), played in real time."""
        assert self.feeder is not None
        self.feeder.feed(pcm16k + silence(pad_s))

    def mic_idle(self) -> bool:
        return self.feeder is not None and self.feeder.pending_bytes() == 0

    def set_mic_present(self, present: bool) -> None:
        """Rewrite the ALSA config with or without the 'mic' PCM (a microphone unplugged, plugged back).

        alsa-lib re-reads a changed config at the next open, so the daemon notices when it next opens
        the capture device (an open file PCM never fails mid-stream)."""
        write_alsa_config(self.root / "asound.conf", captures={"mic": self.fifo} if present else {},
                          playbacks={"speaker": self.wavs[-1]})

    def proc_stats(self) -> dict[str, int]:
        """The daemon's resident memory (VmRSS, kB) and open file descriptors, from /proc."""
        assert self.proc is not None
        rss = 0
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        return {"rss_kb": rss, "fds": len(os.listdir(f"/proc/{self.proc.pid}/fd"))}

    async def request(self, cmd: str, **args: Any) -> dict[str, Any]:
        """The daemon's raw answer (``{"ok": ..., ...}``) to one command."""
        return await self.client.call(cmd, **args)

    async def status(self) -> dict[str, Any]:
        return await self.client.request("status")

    async def config_set(self, key: str, value: str) -> dict[str, Any]:
        """What ``edgectl config set KEY VALUE`` does (the daemon never writes its file): write the
        config file as this process, then ask for ``reload``.  Returns edgectl's result
        (``reloaded``, ``reload_error``); raises ConfigError when the value is refused."""
        from ..ctl_config import set_key

        return await asyncio.to_thread(set_key, ControlClient(self.socket), str(self.config_path), key, value)

    async def wait_state(self, *states: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            st = await self.status()
            if st["state"] in states:
                return st
            await asyncio.sleep(0.05)
        raise RigError(f"state {st.get('state')!r} ({st.get('why')}), not {states}, after {timeout} s")

    def events(self) -> AsyncIterator[dict[str, Any]]:
        return self.client.events()

    # ---- stopping ---------------------------------------------------------------------------------
    async def stop_daemon(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise RigError(f"edged did not stop within {timeout} s of signal {sig}") from None

    async def restart(self, sig: int = signal.SIGTERM) -> None:
        await self.stop_daemon(sig)
        await self.start_daemon()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.stop_daemon()
        if self.feeder:
            self.feeder.stop()
        if self.emu:
            await self.emu.stop()

    async def __aenter__(self) -> Rig:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class ThreadedRig:
    """A Rig on its own event loop in a background thread, for blocking code (sync tests, scripts).

    ``client`` is the blocking control client; ``call(coro)`` runs a coroutine on the rig's loop,
    e.g. ``threaded.call(threaded.rig.wait_state("idle"))``."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.client = ControlClient(rig.socket)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="rig-loop", daemon=True)

    def call(self, coro: Any, timeout: float = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> ThreadedRig:
        self._thread.start()
        try:
            self.call(self.rig.start())
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            try:
                self.call(self.rig.close(), timeout=60)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(30)
        self.loop.close()

    def __enter__(self) -> ThreadedRig:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
