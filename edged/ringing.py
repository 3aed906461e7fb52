"""The ringing of timers and alarms: the bell, the events, and what the model is told.

The Timers part (:mod:`edged.timers`) decides when something rings and when it stops ringing
(``stop_ringing()``, a cancel, or ``timers.ring_max_s``); it reports both here, on the event loop:
``ring(item)`` and ``ended(item, reason)``.  The :class:`Ringer`:

- plays the ``ring`` cue, looped, from the first ring to the end of the last one (the player mixes
  it over any reply, which it ducks), online or not: the bell needs no connection;
- publishes ``{"event": "timer", "what": "ringing", "id", "kind", "label", ...}`` and
  ``{"event": "timer", "what": "ended", "reason": "stopped" | "cancelled" | "timeout", ...}``;
- tells the model as context what rang (``LiveSession.send_context``: client content with
  ``turn_complete`` false, so no reply is asked for).  While the session is not connected the
  context is dropped (and counted by the session): a bell that rang an hour ago is not worth
  telling after a reconnect.

Who stops the ringing: the wake word and the talk button (the conversation's ``stop_ringing*``
rows: they stop it and open no turn), ``edgectl timers stop``, cancelling the timer (by the model
or edgectl), or ``timers.ring_max_s``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, Protocol

from .ports import Ports

log = logging.getLogger(__name__)

CUE = "ring"


class BellPort(Protocol):
    """What the ringer needs of the player: its cue channel."""

    def play_cue(self, name: str, *, loop: bool = False) -> None: ...
    def stop_cue(self) -> None: ...


class ContextPort(Protocol):
    def send_context(self, text: str) -> Awaitable[None]: ...


class RingerParts(Protocol):
    """The current parts (the root's container; a reload replaces the player and the session)."""

    @property
    def player(self) -> Any: ...
    @property
    def live(self) -> ContextPort: ...


def context_text(item: dict[str, Any]) -> str:
    """What the model is told when ``item`` (a Timers.public() dict) starts ringing."""
    label = f' "{item["label"]}"' if item.get("label") else ""
    if item.get("kind") == "alarm":
        what = f"The alarm{label} set for {item.get('time', '?').replace('T', ' ')}"
    else:
        what = f"The {item.get('duration', '?')} timer{label}"
    return (f"[{what} ({item.get('id')}) is ringing now on the speaker. It stops when someone says the "
            "wake word or presses the talk button; cancel_timer stops it too.]")


class Ringer:
    def __init__(self, ports: Ports) -> None:
        self._ports = ports
        self._parts: RingerParts | None = None
        self._ringing: dict[str, dict[str, Any]] = {}
        self.bell_on = False
        self.told = 0  # contexts handed to the session (it drops those it cannot send)

    def attach(self, parts: RingerParts) -> None:
        self._parts = parts

    @property
    def active(self) -> bool:
        return bool(self._ringing)

    def ringing(self) -> list[dict[str, Any]]:
        return list(self._ringing.values())

    # ---- from the Timers part (on the loop) --------------------------------------------------------
    def ring(self, item: dict[str, Any]) -> None:
        self._ringing[item["id"]] = item
        log.info("ringing: %s%s", item["id"], f" ({item['label']})" if item.get("label") else "")
        self._bell(True)
        self._ports.publish({"event": "timer", "what": "ringing", **_brief(item)})
        self._tell(context_text(item))

    def ended(self, item: dict[str, Any], reason: str) -> None:
        self._ringing.pop(item["id"], None)
        log.info("ringing: %s ended (%s)", item["id"], reason)
        self._ports.publish({"event": "timer", "what": "ended", "reason": reason, **_brief(item)})
        if not self._ringing:
            self._bell(False)

    # ---- from the root -----------------------------------------------------------------------------
    def player_started(self) -> None:
        """A new player (a reload of [audio]): it rings on if something is ringing."""
        if self._ringing:
            self.bell_on = False
            self._bell(True)

    def status(self) -> dict[str, Any]:
        return {"bell": self.bell_on, "told": self.told}

    # ---- internals ---------------------------------------------------------------------------------
    def _bell(self, on: bool) -> None:
        if on == self.bell_on or self._parts is None:
            return
        player = self._parts.player
        play, stop = getattr(player, "play_cue", None), getattr(player, "stop_cue", None)
        if play is None or stop is None:
            log.warning("ringing: this player plays no cues; the ring is not heard")
            return
        try:
            if on:
                if play(CUE, loop=True) is False:
                    log.info("ringing: the ring cue is switched off (cues.ring.enabled): nothing is heard")
            else:
                stop()
        except Exception as exc:  # the ring goes on in status and events; the player reports its device
            log.warning("ringing: the bell could not be %s: %s", "started" if on else "stopped", exc)
            return
        self.bell_on = on

    def _tell(self, text: str) -> None:
        if self._parts is None:
            return
        self.told += 1
        self._ports.spawn(self._send(self._parts.live, text), "edged-ring-context")

    @staticmethod
    async def _send(live: ContextPort, text: str) -> None:
        try:
            await live.send_context(text)
        except Exception as exc:
            log.info("ringing: the model could not be told (%s)", exc)


def _brief(item: dict[str, Any]) -> dict[str, Any]:
    return {k: item[k] for k in ("id", "kind", "label", "duration", "time", "rings_at") if k in item}
