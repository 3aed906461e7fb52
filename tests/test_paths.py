"""edged/paths.py: where edgectl knocks, read from the config file without loading it."""

from __future__ import annotations

import os

import pytest

from edged import config, paths


def test_the_socket_the_config_file_sets(tmp_path):
    f = tmp_path / "edged.toml"
    f.write_text('[control]\nsocket = "/run/other/c.sock"\n[wake]\nthreshold = "not a number"\n')
    # another key's mistake is the daemon's to report; the socket is still where the file says
    assert paths.control_socket(f) == "/run/other/c.sock"


@pytest.mark.parametrize("text", ["", "[control]\ngroup = \"x\"\n", "[control]\nsocket = 3\n", "control = 1\n",
                                  "[control\nsocket = '/x'\n"])
def test_the_default_socket_when_the_file_does_not_say(tmp_path, text):
    f = tmp_path / "edged.toml"
    f.write_text(text)
    assert paths.control_socket(f) == paths.DEFAULT_SOCKET == config.Config().control.socket


def test_the_default_socket_when_the_file_cannot_be_read(tmp_path):
    assert paths.control_socket(tmp_path / "missing.toml") == paths.DEFAULT_SOCKET
    f = tmp_path / "edged.toml"
    f.write_text('[control]\nsocket = "/x.sock"\n')
    os.chmod(f, 0)
    pid = os.fork()
    if pid == 0:  # as a user who may not read it (root reads anything)
        try:
            os.setgid(65534)
            os.setuid(65534)
            os._exit(0 if paths.control_socket(f) == paths.DEFAULT_SOCKET else 1)
        finally:
            os._exit(2)
    assert os.waitpid(pid, 0)[1] == 0


def test_the_config_path_given_then_the_environment_then_the_default(monkeypatch, tmp_path):
    monkeypatch.delenv("EDGED_CONFIG", raising=False)
    assert paths.config_path() == paths.DEFAULT_CONFIG == config.DEFAULT_PATH
    monkeypatch.setenv("EDGED_CONFIG", str(tmp_path / "e.toml"))
    assert paths.config_path() == str(tmp_path / "e.toml") == config.default_path()
    assert paths.config_path(tmp_path / "g.toml") == str(tmp_path / "g.toml")
    (tmp_path / "e.toml").write_text('[control]\nsocket = "/from/env.sock"\n')
    assert paths.control_socket() == "/from/env.sock"
