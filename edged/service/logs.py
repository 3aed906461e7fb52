"""Logging for the daemon: the journal with structured fields under systemd, stderr otherwise.

Records may carry journal fields::

    log.info("wake word %s (%.2f)", model, score,
             extra={"fields": {"WAKE_MODEL": model, "WAKE_SCORE": score, "EDGED_STATE": "listening"}})

They become journal fields (names upper-cased, other characters -> ``_``); stderr ignores
them.  Known fields: EDGED_STATE, WAKE_MODEL, WAKE_SCORE, SESSION_ID, CLOSE_CODE.

``setup()`` configures the ``edged`` logger (the daemon logs under ``edged.*``) and, at
WARNING, the third-party loggers whose warnings matter (google_genai, websockets, asyncio).
It never touches the root logger.  Every handler carries ``edged.secrets.RedactFilter``, and
field values are scrubbed too, so a registered secret never reaches the output.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import IO, Any

from ..secrets import RedactFilter, scrub

THIRD_PARTY = ("google_genai", "websockets", "asyncio")
STDERR_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_FIELD_OK = re.compile(r"[^A-Z0-9_]")
# syslog priorities
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
_MARK = "_edged_setup"


def journal_wanted() -> bool:
    """True when stderr is connected to the journal ($JOURNAL_STREAM, set by systemd)."""
    return bool(os.environ.get("JOURNAL_STREAM"))


def field_name(key: str) -> str | None:
    """A valid journal field name for ``key`` (upper-cased), or None if nothing is left."""
    name = _FIELD_OK.sub("_", str(key).upper()).lstrip("_")
    if not name:
        return None
    if name[0].isdigit():
        name = "F_" + name
    return name[:64]


def priority(levelno: int) -> int:
    for level, prio in _PRIORITY:
        if levelno >= level:
            return prio
    return 7  # debug


def record_fields(record: logging.LogRecord, formatter: logging.Formatter | None = None) -> dict[str, str]:
    """The journal entry for a record: MESSAGE, PRIORITY, LOGGER, CODE_*, THREAD_NAME, the
    exception text, and the record's ``extra={"fields": {...}}`` (scrubbed of secrets)."""
    fmt = formatter or logging.Formatter("%(message)s")
    message = record.getMessage()
    fields: dict[str, str] = {}
    extra = getattr(record, "fields", None)
    if isinstance(extra, dict):
        for key, value in extra.items():
            name = field_name(key)
            if name and value is not None:
                fields[name] = scrub(str(value))
    if record.exc_info and record.exc_info[0] is not None:
        fields["EXCEPTION_TEXT"] = scrub(fmt.formatException(record.exc_info))
        message = f"{message}\n{fields['EXCEPTION_TEXT']}"
    elif record.exc_text:
        fields["EXCEPTION_TEXT"] = scrub(record.exc_text)
        message = f"{message}\n{record.exc_text}"
    fields.update({
        "MESSAGE": scrub(message),
        "PRIORITY": str(priority(record.levelno)),
        "LOGGER": record.name,
        "THREAD_NAME": record.threadName or "",
        "CODE_FILE": record.pathname or "",
        "CODE_LINE": str(record.lineno),
        "CODE_FUNC": record.funcName or "",
        "SYSLOG_IDENTIFIER": "edged",
    })
    return fields


class JournalFieldsHandler(logging.Handler):
    """Sends each record to journald with its structured fields (systemd-python)."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        from systemd import journal  # noqa: PLC0415 - optional dependency, imported when used

        self._send = journal.send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = record_fields(record)
            message = fields.pop("MESSAGE")
            self._send(message, CODE_FILE=fields.pop("CODE_FILE"), CODE_LINE=int(fields.pop("CODE_LINE")),
                       CODE_FUNC=fields.pop("CODE_FUNC"), **fields)
        except Exception:
            self.handleError(record)


def setup(level: str | int = "info", *, journal: bool | None = None,
          stream: IO[str] | None = None) -> logging.Handler:
    """Configure the ``edged`` logger.  ``journal``: None = auto ($JOURNAL_STREAM set), True =
    force (falls back to stderr with a warning if systemd-python is missing), False = stderr.
    Calling it again replaces the handler it installed before.  Returns the handler."""
    lvl = logging.getLevelName(level.upper()) if isinstance(level, str) else int(level)
    if not isinstance(lvl, int):
        raise ValueError(f"log level must be debug, info, warning or error, not {level!r}")
    use_journal = journal_wanted() if journal is None else journal
    handler: logging.Handler | None = None
    fallback_reason = ""
    if use_journal:
        try:
            handler = JournalFieldsHandler()
        except ImportError:
            fallback_reason = "systemd-python is not installed: logging to stderr"
    if handler is None:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
        handler.setFormatter(logging.Formatter(STDERR_FORMAT))
    handler.addFilter(RedactFilter())
    setattr(handler, _MARK, True)

    targets: list[tuple[logging.Logger, int]] = [(logging.getLogger("edged"), lvl)]
    targets += [(logging.getLogger(name), max(lvl, logging.WARNING)) for name in THIRD_PARTY]
    for logger, logger_level in targets:
        for old in [h for h in logger.handlers if getattr(h, _MARK, False)]:
            logger.removeHandler(old)
            old.close()
        logger.addHandler(handler)
        logger.setLevel(logger_level)
    if fallback_reason:
        logging.getLogger(__name__).warning("%s", fallback_reason)
    return handler


def fields(**values: Any) -> dict[str, dict[str, Any]]:
    """Shorthand: ``log.info("...", extra=fields(edged_state="idle"))``."""
    return {"fields": values}
