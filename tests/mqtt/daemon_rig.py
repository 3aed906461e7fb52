"""The real daemon for the Home Assistant tests on ``edged run`` (test_mqtt_daemon*.py): a Rig
(edged/dev/rig.py) with [mqtt] on against the module's broker, a Home Assistant stand-in
subscribed to its topics, and waits on the daemon's status, each with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from edged.dev.rig import Rig
from edged.sim.scenario import Scenario

from .conftest import HA, Broker

DEV_ID = "e2e_spk"
BASE = f"edged/{DEV_ID}"


def mqtt_section(broker: Broker, **kw: Any) -> dict[str, Any]:
    return {"enabled": True, "host": "127.0.0.1", "port": broker.port, "device_id": DEV_ID,
            "device_name": "Kitchen speaker", "backoff_initial_s": 0.05, "backoff_max_s": 0.5, **kw}


@contextlib.asynccontextmanager
async def running(root: Path, models_dir: Path, broker: Broker, scenario: Scenario,
                  **overrides: Any) -> AsyncIterator[Rig]:
    """``edged run`` with [mqtt] on against broker (and the other config sections given), from the
    moment its bridge is connected; closed on exit."""
    r = Rig(root, models_dir, scenario=scenario, overrides={"mqtt": mqtt_section(broker), **overrides})
    await r.start()
    try:
        await eventually(r, lambda st: st["mqtt"]["connected"], "the daemon's bridge to connect", 30)
        yield r
    finally:
        await r.close()


@contextlib.asynccontextmanager
async def home_assistant(broker: Broker, *topics: str) -> AsyncIterator[HA]:
    """A Home Assistant stand-in on broker, subscribed to topics."""
    async with HA(broker.port) as client:
        await client.sub(*topics)
        yield client


async def eventually(rig: Rig, pred: Callable[[dict], Any], what: str, timeout: float = 20.0) -> dict:
    """The daemon's status (edgectl status) once pred(status) holds; fails at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        st = await rig.status()
        if pred(st):
            return st
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}: {st.get('mqtt')}"
        await asyncio.sleep(0.05)


async def until(pred: Callable[[], Awaitable[Any] | Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        await asyncio.sleep(0.05)
