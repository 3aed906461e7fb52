"""The daemon's lifecycle states: the one vocabulary shared by status, LEDs, notify and events."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    STARTING = "starting"
    IDLE = "idle"  # listening for the wake word only; nothing leaves the device
    LISTENING = "listening"  # a turn is open: audio streams to the model
    THINKING = "thinking"  # the turn is closed, waiting for the reply
    SPEAKING = "speaking"  # the reply is playing
    MUTED = "muted"  # microphone off (privacy)
    ERROR = "error"  # something needs attention; the daemon keeps running what it can
    STOPPING = "stopping"
