"""libasound's own error lines go to the edged.audio.alsalog logger at debug level, not to stderr."""

from __future__ import annotations

import os
import subprocess
import sys

_OPEN_MISSING_PCM = """
import logging, sys
{install}
import alsaaudio
try:
    alsaaudio.PCM(alsaaudio.PCM_PLAYBACK, device="no_such_pcm")
except alsaaudio.ALSAAudioError as exc:
    print("refused:", exc)
try:
    alsaaudio.PCM(alsaaudio.PCM_PLAYBACK, device="default")  # no card: the 18 lines of the issue
except alsaaudio.ALSAAudioError as exc:
    print("refused:", exc)
try:  # a write error that carries an error code
    alsaaudio.PCM(alsaaudio.PCM_PLAYBACK, device="file:'/nonexistent/x.raw',raw").write(bytes(3200))
except alsaaudio.ALSAAudioError as exc:
    print("refused:", exc)
"""

_INSTALL = """
logging.basicConfig(stream=sys.stdout, level=logging.DEBUG, format="%(levelname)s %(name)s %(message)s")
from edged.audio import alsalog
assert alsalog.install() and alsalog.install()  # idempotent
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    # the subprocess's fd 2 is a pipe of its own: anything libasound prints there is seen
    env = {**os.environ, "ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)


def test_without_the_handler_libasound_prints_to_stderr():
    out = _run(_OPEN_MISSING_PCM.format(install=""))
    assert out.returncode == 0
    assert "ALSA lib" in out.stderr  # the baseline the handler removes


def test_with_the_handler_stderr_stays_empty_and_the_logger_gets_the_lines():
    out = _run(_OPEN_MISSING_PCM.format(install=_INSTALL) + "print('lines', alsalog.lines)\n")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    log_lines = [ln for ln in out.stdout.splitlines() if ln.startswith("DEBUG edged.audio.alsalog ")]
    assert log_lines, out.stdout
    # file:line (function): the format string, and the error text when alsa-lib gives an error code
    assert any("alsa-lib pcm.c:" in ln and ln.endswith(" (snd_pcm_open_noupdate): Unknown PCM %s")
               for ln in log_lines), log_lines
    assert any(ln.endswith("(snd_pcm_file_write_bytes): %s write failed, file data may be corrupt: "
                           "Bad file descriptor") for ln in log_lines), log_lines
    assert any("confmisc.c:" in ln and "(parse_card): cannot find card '%s'" in ln for ln in log_lines), log_lines
    n = int(out.stdout.split("lines ")[-1])
    assert n == len(log_lines)
    assert out.stdout.count("refused:") == 3


def test_uninstall_gives_stderr_back():
    code = _OPEN_MISSING_PCM.format(install=_INSTALL + "alsalog.uninstall()\nassert not alsalog.installed()\n")
    out = _run(code)
    assert out.returncode == 0
    assert "ALSA lib" in out.stderr and "edged.audio.alsalog" not in out.stdout
