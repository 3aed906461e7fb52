"""The files the VM bench writes before scripts/install: the emulator's script (``SIM_SCENARIO``) and
edged's config for the Pi in a box (``edged_toml``: the loopback card, the gpio-sim lines, the
emulator on 127.0.0.1).  breaks.py edits the config text (--break talk_button).

Standard library only, as the rest of the guest side (guestkit.py).
"""

from __future__ import annotations

from pathlib import Path

from guestkit import BUTTON_LINE, CAPTURE_DEV, LIGHT_LINE, PLAYBACK_DEV, SIM_PORT

SIM_SCENARIO = """\
# The emulator's script for the VM bench: the first turn asks for the kitchen light.
repeat_last = false
default = [{say = "Okay."}]

[[turns]]
steps = [
  {input_transcript = "turn on the kitchen light"},
  {tool_call = {name = "set_device", args = {device = "kitchen_light", state = "on"}}},
  {say = "The kitchen light is on."},
  {output_transcript = "The kitchen light is on."},
]
"""


def edged_toml(ca_file: Path) -> str:
    return f"""\
# Written by the VM bench (scripts/vm/runner.py) before scripts/install, which keeps it.
[live]
base_url = "https://127.0.0.1:{SIM_PORT}"
ca_file = "{ca_file}"
backoff_max_s = 2.0

[audio]
capture_device = "{CAPTURE_DEV}"
playback_device = "{PLAYBACK_DEV}"
capture_rate = 16000
capture_channels = 1
playback_rate = 24000
playback_channels = 1
reopen_backoff_max_s = 2.0

[wake]
models = ["hey_jarvis"]
threshold = 0.5

[gpio]
pin_factory = "lgpio"
talk_button = "talk_button"

[[gpio.devices]]
name = "kitchen_light"
kind = "led"
pin = {LIGHT_LINE}
room = "kitchen"
description = "the light over the kitchen counter"

[[gpio.devices]]
name = "talk_button"
kind = "button"
pin = {BUTTON_LINE}
pull_up = true

[cues.wake]
enabled = false

[cues.listen_end]
enabled = false

[cues.offline]
enabled = false
"""
