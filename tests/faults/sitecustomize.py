"""Loaded at start-up by a Python whose PYTHONPATH holds this folder (tests/e2e/test_e2e_supervise.py's
real daemon): while the file named by $EDGED_TEST_LIVE_FAULT exists, building the Live client raises,
so the daemon's Live task crashes at each start.  Nothing in a correct configuration crashes it any
more (an unusable live.ca_file, the test's old cause, is now the no_ca state), yet the supervision of
a task that does crash must still be shown on the real daemon: the fault is put in from outside."""

import os

_flag = os.environ.get("EDGED_TEST_LIVE_FAULT")
if _flag:
    from edged.live import supervisor as _supervisor

    _real_client = _supervisor.LinkSupervisor._client

    def _client(self):
        if os.path.exists(_flag):
            raise RuntimeError("injected: the Live client cannot be built")
        return _real_client(self)

    _supervisor.LinkSupervisor._client = _client
