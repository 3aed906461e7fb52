"""``edged sim``: run the Live API emulator until SIGINT/SIGTERM.

Prints exactly one line, flushed, once it listens::

    edged-sim listening base_url=https://127.0.0.1:PORT ca_file=PATH
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .live_server import LiveEmulator
from .scenario import Scenario, ScenarioError

log = logging.getLogger(__name__)


async def _serve(emu: LiveEmulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await emu.start()
    try:
        print(f"edged-sim listening base_url={emu.base_url} ca_file={emu.ca_file}", flush=True)
        await stop.wait()
    finally:
        await emu.stop()


def main(args: Any) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    scenario = None
    if getattr(args, "scenario", None):
        try:
            scenario = Scenario.load(args.scenario)
        except ScenarioError as exc:
            raise ConfigError(str(args.scenario), "", str(exc).removeprefix(f"{args.scenario}: ")) from None
    cert_dir = getattr(args, "cert_dir", None) or str(Path.home() / ".cache" / "edged" / "sim")
    emu = LiveEmulator(scenario=scenario, host=getattr(args, "host", "127.0.0.1"),
                       port=int(getattr(args, "port", 0) or 0), cert_dir=cert_dir,
                       speed=float(getattr(args, "speed", 1.0) or 1.0), record=getattr(args, "record", None),
                       pacing=getattr(args, "pacing", None),
                       models=[m for m in args.models.split(",") if m] if getattr(args, "models", None) else None)
    asyncio.run(_serve(emu))
    return 0
