"""How ``edgectl`` shows what the daemon answers: the ``status`` summary, ``--verbose``, tables.

Pure functions from the daemon's JSON (docs/CONTROL.md) to text; nothing here talks to the daemon.
The summary reads only the keys it knows and shows "-" for one that is absent, so a daemon that
does not report volume, timers or MQTT yet still gets a summary.
"""

from __future__ import annotations

import os
from typing import Any

# -- values -------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    """3725.4 -> "1h02m05s"; under 10 s with a tenth."""
    if seconds < 0:
        return "-" + duration(-seconds)
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h{m:02d}m" if d else f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def number(value: float) -> str:
    """A number for people: no exponent, at most three decimals (1560.0 -> "1560", 0.0971 -> "0.097")."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3f}".rstrip("0").rstrip(".")


def scalar(key: str, value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) and key.endswith(("_s", "uptime", "age")):
        return duration(float(value))
    if isinstance(value, (int, float)):
        return number(value)
    return str(value)


def compact(key: str, value: Any) -> str:
    """A list on one line: [] -> "-", [1, 2] -> "1, 2", [[0.1, 1560]] -> "(0.1, 1560)"."""
    if isinstance(value, list):
        if not value:
            return "-"
        return ", ".join(f"({', '.join(compact(key, y) for y in x)})" if isinstance(x, list) else compact(key, x)
                         for x in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {compact(str(k), v)}" for k, v in value.items()) if value else "-"
    return scalar(key, value)


def label(key: str) -> str:
    return key.removesuffix("_s").replace("_", " ")


# -- the generic two-column view (--verbose, config show, other results) --------------------------
def render(value: Any, indent: int = 0, key: str = "") -> list[str]:
    """Nested dicts as an indented two-column table; lists of dicts as blocks; other lists on one line."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return [pad + "-"]
        width = max(len(label(str(k))) for k in value)
        lines: list[str] = []
        for k, v in value.items():
            k = str(k)
            if (isinstance(v, dict) and v) or _blocks(v):
                lines.append(f"{pad}{label(k)}:")
                lines += render(v, indent + 1, k)
            else:
                lines.append(f"{pad}{label(k):<{width}}  {compact(k, v)}")
        return lines
    if _blocks(value):
        out: list[str] = []
        for item in value:
            sub = render(item, indent + 1, key)
            out.append(f"{pad}- {sub[0].strip()}")
            out += sub[1:]
        return out
    return [pad + compact(key, value)]


def _blocks(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(x, dict) for x in value)


# -- GPIO ---------------------------------------------------------------------------------------
def gpio_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return "(" + ", ".join(scalar("", v) for v in value) + ")"
    return scalar("", value)


def gpio_table(devices: Any, indent: str = "") -> list[str]:
    """``gpio.list`` (id -> state) as a table: ID, NAME, KIND, VALUE, ROOM, and FAILED: why."""
    if not isinstance(devices, dict) or not devices:
        return [f"{indent}no GPIO devices"]
    rows = [("ID", "NAME", "KIND", "VALUE", "ROOM", "")]
    for ident, dev in devices.items():
        dev = dev if isinstance(dev, dict) else {"value": dev}
        health = "" if dev.get("ok", True) else f"FAILED: {dev.get('error') or 'not working'}"
        rows.append((str(ident), str(dev.get("name") or ident), str(dev.get("kind") or "-"),
                     gpio_value(dev.get("value")), str(dev.get("room") or "-"), health))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return [(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[5]).rstrip() for r in rows]


# -- status: the summary ----------------------------------------------------------------------------
COLOURS = {"idle": "32", "listening": "32", "thinking": "32", "speaking": "32", "muted": "33",
           "starting": "33", "stopping": "33", "error": "31"}

# What to do about a problem, by the part it is reported for (the daemon's status "problems").
FIXES = {
    "live": "edgectl doctor checks the key and the network; after fixing, `edgectl reload`",
    "capture": "check audio.capture_device (`arecord -L`); the service user needs the audio group",
    "playback": "check audio.playback_device (`aplay -L`); the service user needs the audio group",
    "gpio": "`edgectl gpio list` shows the failed devices; check their pins in gpio.devices",
    "camera": "`edgectl doctor` checks the camera backend",
    "wake": "`edged models fetch` (or check wake.models)",
    "mqtt": "check [mqtt] host, port, tls and credentials; `edgectl doctor` probes the broker",
}
LIVE_FIXES = {
    "auth_failed": "check the API key (`edgectl doctor`), then `edgectl reload`",
    "offline": "check the network and DNS (`edgectl doctor`)",
    "no_key": "put the API key in /etc/edged/gemini-api-key (root, 0600), then `edgectl reload`",
    "no_ca": "point live.ca_file at a PEM file of CA certificates (or leave it empty), then `edgectl reload`",
}


def fix_for(part: str, problem: Any) -> str:
    if isinstance(problem, dict) and problem.get("fix"):
        return str(problem["fix"])
    text = str(problem.get("message") if isinstance(problem, dict) else problem)
    if part == "live":
        for word, fix in LIVE_FIXES.items():
            if text.startswith(word):
                return fix
    return FIXES.get(part, "`journalctl -u edged` says more; `edgectl doctor` checks the installation")


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _join(*parts: Any) -> str:
    return ", ".join(str(p) for p in parts if p not in (None, "", "-")) or "-"


def use_colour(stream: Any) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR") \
        and os.environ.get("TERM") != "dumb"


def headline(status: dict[str, Any], colour: bool) -> str:
    state = str(status.get("state", "?"))
    why = status.get("why")
    since = status.get("state_for_s")
    text = f"edged: {state}" + (f" ({why})" if why and why != state else "")
    if isinstance(since, (int, float)):
        text += f" for {duration(float(since))}"
    if colour:
        return f"\x1b[{COLOURS.get(state, '0')}m\u25cf\x1b[0m {text}"
    return text


def _live(live: Any) -> str:
    """The connection, and whether a wake now reaches the assistant (``reach``: connected;
    reconnecting, when a turn is kept and replayed; offline, when a wake gets the offline cue)."""
    if not isinstance(live, dict):
        return "-"
    state = str(live.get("state") or "-")
    fresh = None
    if live.get("connected") or state.startswith(("connected", "resumed")):
        fresh = "resumed" if state.startswith("resumed") else "fresh"
    session = live.get("session_id")
    age = live.get("handle_age_s")
    reach, why = live.get("reach"), live.get("reach_why")
    if reach and reach != "connected":  # its why names the connection state
        state = f"{str(reach).upper()}: {why}" if why else f"{str(reach).upper()} ({state})"
    return _join(state, live.get("model"),
                 f"session {session}" + (f" ({fresh})" if fresh else "") if session else None,
                 f"handle {duration(float(age))} old" if isinstance(age, (int, float)) else None)


def _wake(wake: Any) -> str:
    if not isinstance(wake, dict):
        return "-"
    models = ", ".join(map(str, wake.get("models") or [])) or "-"
    last = wake.get("last_score")
    return _join(models, wake.get("engine"),
                 f"threshold {number(wake['threshold'])}" if isinstance(wake.get("threshold"), (int, float)) else None,
                 f"{wake.get('detections', 0)} detections",
                 f"last {number(last)} ({wake.get('last_model') or '?'})" if isinstance(last, (int, float)) else None,
                 _resting(wake.get("ear")))


def _resting(ear: Any) -> str | None:
    """The share of frames the wake-word models rested through (wake.quiet_margin_db), if they ever did."""
    if not isinstance(ear, dict):
        return None
    skipped, scored = ear.get("wake_quiet_skipped"), ear.get("wake_frames_scored")
    if not isinstance(skipped, int) or not isinstance(scored, int) or skipped <= 0:
        return None
    return f"models resting {round(100 * skipped / (skipped + scored))}% (quiet room)"


def _device(audio: Any, part: str) -> str:
    if not isinstance(audio, dict):
        return "-"
    st = audio.get(part) if isinstance(audio.get(part), dict) else {}
    device = audio.get(f"{part}_device") or st.get("device") or "-"
    counter = ("drops", "underruns")[part == "playback"]
    extra = f"{st[counter]} {counter}" if isinstance(st.get(counter), int) and st[counter] else None
    err = f"error: {st['error']}" if st.get("error") else None
    return f"{device}: " + _join(st.get("state"), extra, err)


def _volume(v: Any) -> str:
    """The Volume part's status: level, the mixer when one does the work, why not when it cannot."""
    if isinstance(v, dict):
        level = v.get("level")
        mixer = v.get("mixer") if v.get("backend", "mixer") == "mixer" else None
        return _join(f"{level}%" if isinstance(level, int) else level, f"mixer {mixer}" if mixer else None,
                     f"error: {v['error']}" if v.get("error") else None)
    return "-" if v is None else str(v)


def _timers(t: Any) -> str:
    items = t.get("timers", t.get("items")) if isinstance(t, dict) else t
    ringing = isinstance(t, dict) and bool(t.get("ringing"))
    if not isinstance(items, list):
        return "-" if t is None else compact("", t)
    if not items:
        return "ringing" if ringing else "none"
    shown = [timer_line(x) for x in items[:2]]
    more = f", +{len(items) - 2} more" if len(items) > 2 else ""
    return ("RINGING; " if ringing else "") + "; ".join(shown) + more


def timer_line(x: Any) -> str:
    if not isinstance(x, dict):
        return str(x)
    left = x.get("remaining_s", x.get("left_s"))
    ringing = x.get("ringing") or x.get("state") == "ringing"  # the daemon's items say state: ringing
    when = x.get("due") or x.get("time")  # while ringing: no "in 0.0s"
    if not ringing and isinstance(left, (int, float)):
        when = f"in {duration(float(left))}"
    return " ".join(str(p) for p in (x.get("kind"), repr(x["label"]) if x.get("label") else None,
                                     when, "(ringing)" if ringing else None) if p) or str(x.get("id"))


def _tools(running: Any) -> str | None:
    """``tools_running``: the model's calls running now (during a reply they run beside it)."""
    if not isinstance(running, list) or not running:
        return None
    return ", ".join(f"{c.get('name', '?')} for {duration(float(c['for_s']))}"
                     if isinstance(c, dict) and isinstance(c.get("for_s"), (int, float))
                     else str(c.get("name", c) if isinstance(c, dict) else c) for c in running)


def _mqtt(m: Any) -> str:
    if isinstance(m, dict):
        if m.get("enabled") is False:
            return "off"
        where = m.get("broker") or (f"{m['host']}:{m.get('port', '')}".rstrip(":") if m.get("host") else None)
        state = m.get("state") or ("connected" if m.get("connected") else "disconnected" if "connected" in m else None)
        err = m.get("error") or (None if m.get("connected") else m.get("last_error"))
        return _join(state, where, f"error: {err}" if err else None)
    return "-" if m is None else str(m)


def _camera(c: Any) -> str:
    if not isinstance(c, dict):
        return "none" if c is None else str(c)
    return _join(c.get("backend"), ("running" if c.get("running") else "stopped") if "running" in c else None,
                 f"error: {c['last_error']}" if c.get("last_error") else None)


def summary(status: Any, colour: bool = False) -> str:
    """``edgectl status``: about 20 lines, like ``systemctl status``."""
    if not isinstance(status, dict):
        return "\n".join(render(status))
    rows = [
        ("Version", _join(status.get("version"), f"pid {status['pid']}" if status.get("pid") else None,
                          f"up {duration(float(status['uptime_s']))}"
                          if isinstance(status.get("uptime_s"), (int, float)) else None)),
        ("Config", status.get("config") or "-"),
        ("Live", _live(status.get("live"))),
        *([("Tool calls", tools)] if (tools := _tools(status.get("tools_running"))) else []),
        ("Wake word", _wake(status.get("wake"))),
        ("Microphone", ("muted; " if status.get("muted") else "") + _device(status.get("audio"), "capture")),
        ("Speaker", _device(status.get("audio"), "playback")),
        ("Volume", _volume(status.get("volume"))),
        ("Timers", _timers(status.get("timers"))),
        ("MQTT", _mqtt(status.get("mqtt"))),
        ("Camera", _camera(status.get("camera"))),
    ]
    problems = status.get("problems") if isinstance(status.get("problems"), dict) else {}
    for part, problem in list(problems.items())[:3]:
        msg = problem.get("message") if isinstance(problem, dict) else problem
        rows += [("Problem", f"{part}: {msg}"), ("Fix", fix_for(part, problem))]
    if not problems:
        last = status.get("last_error")
        rows.append(("Problems", f"none (last: {last})" if last else "none"))
    width = max(len(k) for k, _ in rows)
    lines = [headline(status, colour)] + [f"  {k:>{width}}: {v}" for k, v in rows]
    gpio = status.get("gpio")
    if isinstance(gpio, dict) and gpio:
        lines += ["", "GPIO:"] + gpio_table(gpio, indent="  ")
    return "\n".join(lines)


def verbose(status: Any) -> str:
    """``edgectl status --verbose``: every counter, sections indented, lists on one line, GPIO as a table."""
    if not isinstance(status, dict):
        return "\n".join(render(status))
    first = {k: status[k] for k in ("state", "why", "state_for_s", "uptime_s") if k in status}
    lines = render({**first, **{k: v for k, v in status.items() if k not in first and k != "gpio"}})
    if "gpio" in status:
        lines += ["gpio:"] + gpio_table(status["gpio"], indent="  ")
    return "\n".join(lines)
