"""The Live API session (see :mod:`edged.live.session`), its resumption handle store and the model profiles.

The session is imported lazily, so :mod:`edged.config` can read :mod:`edged.live.profiles` (which
imports nothing of edged) without an import circle.
"""

from typing import Any

__all__ = ["Handle", "HandleStore", "LiveHandler", "LiveSession"]


def __getattr__(name: str) -> Any:
    if name in ("Handle", "HandleStore"):
        from . import resumption  # noqa: PLC0415

        return getattr(resumption, name)
    if name in ("LiveHandler", "LiveSession"):
        from . import session  # noqa: PLC0415

        return getattr(session, name)
    raise AttributeError(name)
