"""Loaded at start-up by a Python whose PYTHONPATH holds this folder (tests/conftest.py's daemon):
writes the name of every module the process imports, one a line, to $EDGED_IMPORT_LOG, as it
happens. A finder first on sys.meta_path sees every import, importlib.import_module's included
(``-X importtime`` does not report those)."""

import os
import sys

_path = os.environ.get("EDGED_IMPORT_LOG")
if _path:
    _log = open(_path, "a", buffering=1)  # noqa: SIM115 - open for the life of the process

    class _Recorder:
        @staticmethod
        def find_spec(name, path=None, target=None):
            _log.write(name + "\n")
            return None  # the real finders do the work

    for _name in list(sys.modules):
        _log.write(_name + "\n")
    sys.meta_path.insert(0, _Recorder)
