"""A logger for the websockets library that never shows credentials.

At DEBUG level websockets logs every handshake header, including ``x-goog-api-key`` and
``Authorization``.  ``ws_logger(name)`` returns a logger (passed as ``logger=`` to websockets)
whose filter drops those header lines and scrubs any registered secret from the rest.
"""

from __future__ import annotations

import logging

from ..secrets import RedactFilter

_SENSITIVE = ("x-goog-api-key", "authorization", "cookie")


class NoCredentialsFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._redact = RedactFilter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage().lower()
        except Exception:  # a malformed record: drop it rather than risk leaking
            return False
        if any(s in text for s in _SENSITIVE):
            return False
        return self._redact.filter(record)


def ws_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    if not any(isinstance(f, NoCredentialsFilter) for f in logger.filters):
        logger.addFilter(NoCredentialsFilter())
    return logger
