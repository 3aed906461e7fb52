"""The Live API session (see :mod:`edged.live.session`) and its resumption handle store."""

from .resumption import Handle, HandleStore
from .session import LiveHandler, LiveSession

__all__ = ["Handle", "HandleStore", "LiveHandler", "LiveSession"]
