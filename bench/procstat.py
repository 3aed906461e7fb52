"""This process's memory from /proc/self/status, in MB: the one reader the benches share.

It imports nothing beyond the standard library, so a bench can measure before its heavy imports.
"""

from __future__ import annotations

from pathlib import Path

KEYS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")


def memory() -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon and RssFile of this process, in MB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in KEYS:
            out[key] = int(line.split()[1]) / 1024
    return out
