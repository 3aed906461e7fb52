"""The local Live API emulator (see :mod:`edged.sim.live_server`)."""

from .live_server import ConnRecord, Frame, LiveEmulator, LiveEmulatorThread
from .scenario import Scenario, ScenarioError, Step

__all__ = ["ConnRecord", "Frame", "LiveEmulator", "LiveEmulatorThread", "Scenario", "ScenarioError", "Step"]
