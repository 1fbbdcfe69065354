"""The relay's log lines, in serve's vocabulary: ``listening on``, ``opened``, ``closed``.

Lines go through the standard ``sockkit.relay`` logger with their fields in
``record.fields``; the library attaches no handler.  :func:`log_handler`
builds the one the command line attaches: ``text`` (the message alone, e.g.
``closed 127.0.0.1:51012 in=5 out=5 duration=0.002s``) or ``json`` (one object
per line: ``time``, ``level``, ``message`` and the fields).
"""

from __future__ import annotations

import json
import logging
from typing import Any, TextIO

__all__ = ["event", "log", "log_handler"]

log = logging.getLogger("sockkit.relay")


def event(level: int, message: str, **fields: Any) -> None:
    """Log ``message`` with ``fields`` kept for the JSON format."""
    if log.isEnabledFor(level):
        log.log(level, message, extra={"fields": fields})


class _Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


class _JSON(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": round(record.created, 6),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        return json.dumps(entry, separators=(",", ":"))


def log_handler(stream: TextIO, fmt: str) -> logging.Handler:
    """A handler writing ``fmt`` (``text`` or ``json``) lines to ``stream``."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_JSON() if fmt == "json" else _Text())
    return handler
