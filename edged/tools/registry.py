"""Function declarations for the Live API and their dispatch.

The declarations are generated from the configured devices as the SDK's
``types.Schema`` in ``parameters`` (exact enums and bounds, descriptions naming
rooms), the form every Live model honours: 2.5 native-audio models ignore
``parameters_json_schema`` and send empty args (googleapis/python-genai#1147,
livekit/agents#2940/#3135/#5560), and 3.x refuses ``additionalProperties``
inside ``parameters`` with 1007 (livekit/agents#7302), so there is none.
Unknown arguments are still refused here, in ``call()``.  Each declaration's
``behavior`` is set per model by :func:`edged.live.wire.adapt_declaration`.
Each response carries the call's id and the tool's ``scheduling`` (``SCHEDULING``
below, with the reason); the session drops it for models without scheduling.  ``call()`` never raises:
every problem becomes a ``FunctionResponse`` whose response is
``{"error": "<what was wrong>"}``, with the call's id and name.
``cancel(ids)`` honours ``toolCallCancellation``: a cancelled call returns None
instead of a response, a ``duration_s`` pulse is restored at once and a
``watch`` stops.  The household functions (timers, alarms, volume) are those of the one
``HouseholdTools`` the root builds (``household``): declared and answered through here too.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from google.genai import types

from ..config import OUTPUT_KINDS, GpioDevice
from ..errors import DeviceError, ToolError
from .camera import Camera
from .gpio import GpioBank
from .household import HouseholdTools

if TYPE_CHECKING:
    from .household import HouseholdTools

log = logging.getLogger(__name__)

MAX_PULSE_S = 600.0
MIN_PULSE_S = 0.1
COLORS: dict[str, tuple[float, float, float]] = {
    "white": (1.0, 1.0, 1.0), "warm_white": (1.0, 0.7, 0.4), "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0), "yellow": (1.0, 1.0, 0.0),
    "orange": (1.0, 0.5, 0.0), "purple": (0.5, 0.0, 1.0), "pink": (1.0, 0.4, 0.7),
    "cyan": (0.0, 1.0, 1.0), "magenta": (1.0, 0.0, 1.0),
}
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
_CANCELLED_KEEP = 256

SendVideo = Callable[[bytes], Awaitable[None]]

# How a NON_BLOCKING call's result enters the conversation (types.FunctionResponseScheduling; on
# gemini-3.8-live calls are NON_BLOCKING by default, ai.google.dev/gemini-api/docs/models/gemini-3.8-live):
_S = types.FunctionResponseScheduling
SCHEDULING: dict[str, types.FunctionResponseScheduling] = {
    # A device switch: the model usually says "turning it on" while the call runs.  WHEN_IDLE lets it
    # finish that sentence and confirm ("the kitchen light is on") when it is free, instead of
    # cutting itself off; nothing the user waits for is lost by the delay.
    "set_device": _S.WHEN_IDLE,
    # A read the model needs for its answer ("is the door open?"): the answer is the state itself, so
    # INTERRUPT stops any filler ("let me check") and speaks the answer at once.  Reads return in
    # milliseconds, so the interruption lands before much filler was said.
    "read_devices": _S.INTERRUPT,
    # One picture for "what do you see": like a read, the answer depends on it: INTERRUPT.
    "look": _S.INTERRUPT,
    # Watching runs for seconds while frames stream as video; its result is only a summary (frames
    # sent, stopped early): WHEN_IDLE, so whatever the model is saying about the frames is not cut.
    "watch": _S.WHEN_IDLE,
    # "how long is left on the pasta": a read, like read_devices.  Setting and cancelling timers keep
    # the WHEN_IDLE default: the model confirms when it has finished its sentence.
    "list_timers": _S.INTERRUPT,
}


def _where(d: GpioDevice) -> str:
    text = d.description or d.name.replace("_", " ")
    return f"{d.name}: {text} ({d.kind.replace('_', ' ')}{', in the ' + d.room if d.room else ''})"


class ToolRegistry:
    def __init__(self, gpio: GpioBank | None, camera: Camera | None, send_video: SendVideo,
                 household: HouseholdTools | None = None) -> None:
        self.gpio = gpio
        self.household = household  # timers, alarms, volume (edged/tools/household.py): one instance, kept
        self.camera = camera
        self.send_video = send_video
        self.household = household  # set_volume, and the timer functions when it has timers
        devs = gpio.devices if gpio is not None else {}
        # the daemon drives the status and camera LEDs itself: the model does not get them
        reserved = {getattr(gpio.cfg, "status_led", ""), getattr(gpio.cfg, "camera_led", "")} if gpio else set()
        self._all: dict[str, GpioDevice] = dict(devs)
        self._outputs = {n: d for n, d in devs.items() if d.kind in OUTPUT_KINDS and n not in reserved}
        self._last_on: dict[str, Any] = {}
        self._cancelled: set[str] = set()
        self._cancelled_order: deque[str] = deque()
        self._pulses: dict[str, tuple[asyncio.Task[None], str, Any]] = {}  # call id -> (task, device, restore)
        self._pulse_of: dict[str, str] = {}  # device -> call id of its pending pulse
        self._watches: dict[str, asyncio.Event] = {}
        self._bg: set[asyncio.Task[Any]] = set()
        self._seq = 0

    # declarations --------------------------------------------------------------
    @property
    def camera_enabled(self) -> bool:
        return self.camera is not None and self.camera.cfg.backend != "none"

    def declarations(self) -> list[types.FunctionDeclaration]:
        out: list[types.FunctionDeclaration] = []
        if self._outputs:
            out.append(self._set_device_decl())
        if self._all:
            out.append(types.FunctionDeclaration(
                name="read_devices",
                description="Read the current state of devices (lights, switches, buttons, sensors). Devices:\n"
                + "\n".join(_where(d) for d in self._all.values()),
                parameters=_obj({"devices": types.Schema(
                    type=types.Type.ARRAY, items=types.Schema(type=types.Type.STRING, enum=list(self._all)),
                    description="Devices to read; leave out to read all.")})))
        if self.camera_enabled:
            assert self.camera is not None
            cam = self.camera.cfg
            out.append(types.FunctionDeclaration(
                name="look",
                description="Take one picture with the camera; it arrives as video input right after this call.",
                parameters=None))  # no arguments: declared by name, as in the Live API tools guide
            out.append(types.FunctionDeclaration(
                name="watch",
                description=(f"Watch through the camera for some seconds: {cam.watch_fps:g} frames per second "
                             "arrive as video input; the call answers when watching is over."),
                parameters=_obj({"seconds": types.Schema(type=types.Type.NUMBER, minimum=1, maximum=cam.watch_max_s,
                                                         description="How long to watch.")}, ["seconds"])))
        if self.household is not None:
            out += self.household.declarations()
        return out

    def _set_device_decl(self) -> types.FunctionDeclaration:
        dimmable = [n for n, d in self._outputs.items() if d.kind in ("pwm_led", "rgb_led")]
        coloured = [n for n, d in self._outputs.items() if d.kind == "rgb_led"]
        t = types.Type
        props: dict[str, types.Schema] = {
            "device": types.Schema(type=t.STRING, enum=list(self._outputs), description="Which device."),
            "state": types.Schema(type=t.STRING, enum=["on", "off", "toggle"], description=(
                "on, off or toggle; may be left out when brightness or color is given.")),
        }
        if dimmable:
            props["brightness"] = types.Schema(type=t.NUMBER, minimum=0, maximum=1,
                                               description=f"0 to 1; only for {', '.join(dimmable)}.")
        if coloured:
            props["color"] = types.Schema(type=t.STRING, any_of=[
                types.Schema(type=t.STRING, enum=list(COLORS)),
                types.Schema(type=t.STRING, pattern="^#[0-9a-fA-F]{6}$")],
                description=f"A colour name or #rrggbb; only for {', '.join(coloured)}.")
        props["duration_s"] = types.Schema(type=t.NUMBER, minimum=MIN_PULSE_S, maximum=MAX_PULSE_S,
                                           description="Only for this many seconds, then back to how it was.")
        return types.FunctionDeclaration(
            name="set_device",
            description="Switch a device on or off, dim it or change its colour. Devices:\n"
            + "\n".join(_where(d) for d in self._outputs.values()),
            parameters=_obj(props, ["device"]))

    def tools(self) -> list[types.Tool]:
        decls = self.declarations()
        return [types.Tool(function_declarations=decls)] if decls else []

    # calls ---------------------------------------------------------------------
    async def call(self, fc: types.FunctionCall) -> types.FunctionResponse | None:
        cid = fc.id
        if cid is not None and cid in self._cancelled:
            return None
        try:
            response = await self._dispatch(fc)
        except (ToolError, DeviceError) as exc:
            response = {"error": str(exc)}
        except Exception as exc:
            log.exception("tools: %s failed", fc.name)
            response = {"error": f"internal error in {fc.name}: {type(exc).__name__}: {exc}"}
        if cid is not None and cid in self._cancelled:
            log.info("tools: %s (%s) was cancelled; no response", fc.name, cid)
            return None
        return types.FunctionResponse(id=cid, name=fc.name, response=response, scheduling=SCHEDULING.get(
            fc.name or "", types.FunctionResponseScheduling.WHEN_IDLE))

    def cancel(self, ids: list[str]) -> None:
        """toolCallCancellation: drop these calls' responses and undo what is still going on."""
        for cid in ids:
            if not isinstance(cid, str) or cid in self._cancelled:
                continue
            self._cancelled.add(cid)
            self._cancelled_order.append(cid)
            while len(self._cancelled_order) > _CANCELLED_KEEP:
                self._cancelled.discard(self._cancelled_order.popleft())
            if cid in self._watches:
                self._watches[cid].set()
            if cid in self._pulses:
                task, name, restore = self._pulses.pop(cid)
                task.cancel()
                if self._pulse_of.get(name) == cid:
                    del self._pulse_of[name]
                self._spawn(self._restore(name, restore))

    async def close(self) -> None:
        """Stop watches and pending pulses (without restoring: the GPIO bank's stop sets safe values)."""
        for ev in self._watches.values():
            ev.set()
        tasks = [t for t, _, _ in self._pulses.values()] + list(self._bg)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pulses.clear()
        self._pulse_of.clear()

    # dispatch ------------------------------------------------------------------
    async def _dispatch(self, fc: types.FunctionCall) -> dict[str, Any]:
        args = fc.args if fc.args is not None else {}
        if not isinstance(args, dict):
            raise ToolError(f"arguments must be an object (got {type(args).__name__})")
        known = {d.name for d in self.declarations()}
        if fc.name not in known:
            raise ToolError(f"unknown function {fc.name!r} (available: {', '.join(sorted(known)) or 'none'})")
        if self.household is not None and fc.name in self.household.names:
            return self.household.handle(fc.name, args)
        if fc.name == "set_device":
            return await self._set_device(fc.id, args)
        if fc.name == "read_devices":
            return self._read_devices(args)
        if fc.name == "look":
            _only(args, ())
            return await self._look()
        return await self._watch(fc.id, args)

    async def _set_device(self, cid: str | None, args: dict[str, Any]) -> dict[str, Any]:
        assert self.gpio is not None
        _only(args, ("device", "state", "brightness", "color", "duration_s"))
        name = args.get("device")
        if not isinstance(name, str) or name not in self._outputs:
            raise ToolError(f"device must be one of {', '.join(self._outputs)} (got {_show(name)})")
        d = self._outputs[name]
        state = args.get("state")
        if state is not None and state not in ("on", "off", "toggle"):
            raise ToolError(f"state must be on, off or toggle (got {_show(state)})")
        brightness = _number(args, "brightness", 0, 1)
        color = args.get("color")
        duration = _number(args, "duration_s", MIN_PULSE_S, MAX_PULSE_S)
        if brightness is not None and d.kind not in ("pwm_led", "rgb_led"):
            raise ToolError(f"{name} is a {d.kind}: it cannot be dimmed (brightness is for dimmable lights)")
        rgb: tuple[float, float, float] | None = None
        if color is not None:
            if d.kind != "rgb_led":
                raise ToolError(f"{name} is a {d.kind}: it has no colour")
            rgb = _color(color)
        if state is None and brightness is None and rgb is None:
            raise ToolError("give state (on, off or toggle), brightness or color")

        before = self.gpio.state(name)
        if not before["ok"]:
            raise DeviceError(f"{name} is not working: {before['error']}")
        prev = tuple(before["value"]) if isinstance(before["value"], list) else before["value"]
        target = self._target(d, prev, state, brightness, rgb)
        new = await asyncio.to_thread(self.gpio.set, name, target)
        if _on(new["value"]):
            self._last_on[name] = tuple(new["value"]) if isinstance(new["value"], list) else new["value"]
        # a new order for the device replaces a pending pulse: its restore is dropped, or, when the
        # new order is a pulse too, inherited (so on-for-5s twice still ends how it was before both)
        old = self._pulse_of.pop(name, None)
        if old is not None and old in self._pulses:
            task, _, restore = self._pulses.pop(old)
            task.cancel()
            if duration is not None:
                prev = restore
        if cid is not None and cid in self._cancelled:
            await asyncio.to_thread(self.gpio.set, name, prev, rate_limit=False)
            return {}
        out = _describe(name, d, new)
        if duration is not None:
            self._seq += 1
            key = cid if cid is not None else f"pulse-{self._seq}"
            task = asyncio.create_task(self._pulse_end(key, name, prev, duration))
            self._pulses[key] = (task, name, prev)
            self._pulse_of[name] = key
            out["for_s"] = duration
            out["then"] = "on" if _on(prev) else "off"
        return out

    def _target(self, d: GpioDevice, prev: Any, state: str | None, brightness: float | None,
                rgb: tuple[float, float, float] | None) -> Any:
        if state == "toggle":
            state = "off" if _on(prev) else "on"
        if state == "off":
            return (0.0, 0.0, 0.0) if d.kind == "rgb_led" else (0.0 if d.kind == "pwm_led" else False)
        if d.kind == "pwm_led":
            if brightness is not None:
                return brightness
            last = self._last_on.get(d.name, 1.0)
            return prev if _on(prev) else (last if isinstance(last, float) and last > 0 else 1.0)
        if d.kind == "rgb_led":
            if rgb is None:
                base = prev if _on(prev) else self._last_on.get(d.name, (1.0, 1.0, 1.0))
                peak = max(base) or 1.0
                rgb = (base[0] / peak, base[1] / peak, base[2] / peak)
                level = brightness if brightness is not None else (max(base) or 1.0)
            else:
                level = brightness if brightness is not None else 1.0
            return tuple(round(c * level, 4) for c in rgb)
        return True

    async def _pulse_end(self, key: str, name: str, restore: Any, duration: float) -> None:
        await asyncio.sleep(duration)
        self._pulses.pop(key, None)
        if self._pulse_of.get(name) == key:
            del self._pulse_of[name]
        await self._restore(name, restore)

    async def _restore(self, name: str, value: Any) -> None:
        assert self.gpio is not None
        try:
            await asyncio.to_thread(self.gpio.set, name, value, rate_limit=False)
            log.info("tools: %s back to %s", name, value)
        except Exception as exc:
            log.warning("tools: restoring %s failed: %s", name, exc)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    def _read_devices(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.gpio is not None
        _only(args, ("devices",))
        names = args.get("devices")
        if names is None or names == []:
            names = list(self._all)
        if not isinstance(names, list) or not all(isinstance(n, str) and n in self._all for n in names):
            raise ToolError(f"devices must be a list of: {', '.join(self._all)} (got {_show(names)})")
        states = self.gpio.states()
        return {"devices": {n: _describe(n, self._all[n], states[n]) for n in dict.fromkeys(names)}}

    async def _look(self) -> dict[str, Any]:
        assert self.camera is not None
        jpeg = await self.camera.snapshot()
        await self._send(jpeg)
        return {"camera": "one picture sent as video input", "frames_sent": 1,
                "width": self.camera.last_width, "height": self.camera.last_height}

    async def _watch(self, cid: str | None, args: dict[str, Any]) -> dict[str, Any]:
        assert self.camera is not None
        cfg = self.camera.cfg
        _only(args, ("seconds",))
        if "seconds" not in args:
            raise ToolError(f"seconds is required (1 to {cfg.watch_max_s:g})")
        seconds = _number(args, "seconds", 1, cfg.watch_max_s)
        assert seconds is not None
        if self._watches:
            raise ToolError("the camera is already watching; wait for that to finish")
        n = max(1, math.floor(seconds * cfg.watch_fps + 1e-9))
        interval = 1.0 / cfg.watch_fps
        stop = asyncio.Event()
        self._seq += 1
        key = cid if cid is not None else f"watch-{self._seq}"
        self._watches[key] = stop
        sent = 0
        t0 = time.monotonic()
        try:
            with self.camera.hold():
                for k in range(n):
                    if stop.is_set():
                        break
                    jpeg = await self.camera.snapshot()
                    if stop.is_set():
                        break
                    await self._send(jpeg)
                    sent += 1
                    if k < n - 1:
                        delay = t0 + (k + 1) * interval - time.monotonic()
                        if delay > 0:
                            try:
                                await asyncio.wait_for(stop.wait(), delay)
                            except TimeoutError:
                                pass
        except DeviceError as exc:
            raise DeviceError(f"{exc} (after {sent} frames)") from exc
        finally:
            self._watches.pop(key, None)
        return {"camera": "watched", "frames_sent": sent, "seconds": round(time.monotonic() - t0, 1),
                "stopped_early": stop.is_set()}

    async def _send(self, jpeg: bytes) -> None:
        try:
            await self.send_video(jpeg)
        except Exception as exc:
            raise DeviceError(f"the picture could not be sent to the model: {type(exc).__name__}: {exc}") from exc


# helpers -------------------------------------------------------------------------
def _obj(props: dict[str, types.Schema], required: list[str] | None = None) -> types.Schema:
    return types.Schema(type=types.Type.OBJECT, properties=props, required=required or None)


def _only(args: dict[str, Any], allowed: tuple[str, ...]) -> None:
    extra = [k for k in args if k not in allowed]
    if extra:
        takes = f"takes only {', '.join(allowed)}" if allowed else "takes no arguments"
        raise ToolError(f"unexpected argument {', '.join(map(repr, extra))}: this function {takes}")


def _number(args: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    v = args.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ToolError(f"{key} must be a number from {lo:g} to {hi:g} (got {_show(v)})")
    if not math.isfinite(v) or not lo <= v <= hi:
        raise ToolError(f"{key} must be from {lo:g} to {hi:g} (got {_show(v)})")
    return float(v)


def _color(c: Any) -> tuple[float, float, float]:
    if isinstance(c, str):
        name = c.strip().lower().replace(" ", "_")
        if name in COLORS:
            return COLORS[name]
        if _HEX.match(c.strip()):
            h = c.strip()[1:]
            return (int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255)
    raise ToolError(f"color must be one of {', '.join(COLORS)} or #rrggbb (got {_show(c)})")


def _on(value: Any) -> bool:
    if isinstance(value, tuple | list):
        return any(float(v) > 0 for v in value)
    return bool(value)


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(name: str, d: GpioDevice, st: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"device": name, "kind": d.kind}
    if d.room:
        out["room"] = d.room
    if not st["ok"]:
        out["ok"] = False
        out["error"] = st["error"]
        return out
    v = st["value"]
    if v is None:
        out["state"] = "unknown"
        return out
    if d.kind in ("button", "motion_sensor", "digital_input"):
        word = {"button": ("pressed", "released"), "motion_sensor": ("motion", "no motion")}.get(
            d.kind, ("active", "inactive"))
        out["state"] = word[0] if v else word[1]
        return out
    out["state"] = "on" if _on(v) else "off"
    if d.kind == "pwm_led":
        out["brightness"] = round(float(v), 3)
    elif d.kind == "rgb_led":
        out["brightness"] = round(max(v), 3)
        out["color"] = "#" + "".join(f"{round(c * 255):02x}" for c in v)
    return out
