"""Fixtures: the emulator over TLS, a recording LiveHandler, and a LiveSession with small timings."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from edged.config import LiveConfig
from edged.live.session import LiveSession
from edged.sim import LiveEmulator, Scenario
from tests import waiting


class RecordingHandler:
    def __init__(self) -> None:
        self.audio = bytearray()
        self.events: list[tuple[str, Any]] = []
        self.session: LiveSession | None = None
        self.auto_tool_response = True

    def on_audio(self, pcm24k: bytes) -> None:
        self.audio += pcm24k
        if not self.events or self.events[-1][0] != "audio":
            self.events.append(("audio", None))

    def on_interrupted(self) -> None:
        self.events.append(("interrupted", None))

    def on_generation_complete(self) -> None:
        self.events.append(("generation_complete", None))

    def on_turn_complete(self) -> None:
        self.events.append(("turn_complete", None))

    def on_tool_call(self, calls: list[Any]) -> None:
        self.events.append(("tool_call", calls))
        if self.auto_tool_response and self.session is not None:
            from google.genai import types

            responses = [types.FunctionResponse(id=c.id, name=c.name, response={"ok": True}) for c in calls]
            asyncio.get_running_loop().create_task(self.session.send_tool_responses(responses))

    def on_tool_cancel(self, ids: list[str]) -> None:
        self.events.append(("tool_cancel", ids))

    def on_transcript(self, role: str, text: str) -> None:
        self.events.append(("transcript", (role, text)))

    def on_connection(self, state: str, detail: str) -> None:
        self.events.append(("connection", (state, detail)))

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.events if k == kind)

    def states(self) -> list[str]:
        return [v[0] for k, v in self.events if k == "connection"]


async def until(pred, what: str = "condition", timeout: float = 15.0) -> Any:
    """tests.waiting.until with the Live tests' deadline."""
    return await waiting.until(pred, what, timeout)


def live_cfg(emu: LiveEmulator, **over: Any) -> LiveConfig:
    base: dict[str, Any] = dict(base_url=emu.base_url, ca_file=str(emu.ca_file), api_version="v1beta",
                                connect_timeout_s=3.0, backoff_initial_s=0.05, backoff_max_s=0.2,
                                stable_after_s=60.0, auth_retry_s=1.0, ping_interval_s=0)
    base.update(over)
    return LiveConfig(**base)


@pytest.fixture(scope="session")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("certs")


@pytest.fixture
async def emu(cert_dir: Path):
    e = LiveEmulator(Scenario(), cert_dir=cert_dir, speed=20.0)
    await e.start()
    yield e
    await e.stop()


class Runner:
    """Starts LiveSessions and stops them at the end of the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.tasks: list[tuple[LiveSession, asyncio.Task[None]]] = []

    def start(self, cfg: LiveConfig, *, api_key=None, state_dir: Path | None = None, tools=None,
              handler: RecordingHandler | None = None) -> tuple[LiveSession, RecordingHandler]:
        h = handler or RecordingHandler()
        s = LiveSession(cfg, api_key, state_dir or self.tmp_path / "state", h, tools or (lambda: []))
        h.session = s
        self.tasks.append((s, asyncio.get_running_loop().create_task(s.run())))
        return s, h

    async def close(self) -> None:
        for s, t in self.tasks:
            await s.stop()
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


@pytest.fixture
async def runner(tmp_path: Path):
    r = Runner(tmp_path)
    yield r
    await r.close()
