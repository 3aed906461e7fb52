"""The real daemon for the Home Assistant tests on ``edged run`` (test_mqtt_daemon*.py): a Rig
(edged/dev/rig.py) with [mqtt] on against the module's broker, a Home Assistant stand-in
subscribed to its topics, and waits on the daemon's status, each with a deadline."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from edged.dev.rig import Rig
from edged.sim.scenario import Scenario
from tests import waiting
from tests.waiting import status_until

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
    """The daemon's status (edgectl status) once pred(status) holds; fails at the deadline, showing
    the status's mqtt section."""
    return await status_until(rig, pred, what, timeout, detail=lambda st: st.get("mqtt"))


async def until(pred: Callable[[], Awaitable[Any] | Any], what: str, timeout: float = 20.0) -> Any:
    """tests.waiting.until at the daemon's pace (an async pred asks the daemon each time)."""
    return await waiting.until(pred, what, timeout, every=0.05)
