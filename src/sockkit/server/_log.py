"""The server's log: ``listening on`` lines, one line per connection, counters.

An embedded :class:`~sockkit.server.Server` logs to the standard
``logging.getLogger("sockkit.server")``; the ``sockkit`` package logger has only a
``NullHandler``, so where the lines go is the application's choice.  The
command line (or a program asking for ``log_level``/``log_format``) gets
:func:`make_logger`: a private logger writing to stderr in one of two formats,
written to directly by :class:`ServerLog` (no ``LogRecord`` per line):

``text``  the message alone, e.g. ``listening on tcp://127.0.0.1:43117`` or
          ``closed 127.0.0.1:51012 in=5 out=5 duration=0.002s`` -- scripts grep it.
``json``  one JSON object per line: ``time``, ``level``, ``message`` and the
          event's fields (``event``, ``peer``, ``bytes_in``, ...).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections import Counter
from typing import Any, Literal, TextIO

from sockkit._errors import UsageError
from sockkit.engines._contract import ConnectionLog, LogLines
from sockkit.engines._log_lines import (
    closed_event,
    draining_event,
    json_line,
    opened_event,
    refused_event,
)

__all__ = ["LOG_LEVELS", "LogFormat", "ServerLog", "make_logger"]

LogFormat = Literal["text", "json"]

LOG_LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        return json_line(record.created, record.levelname, record.getMessage(), fields)


def make_logger(
    level: str = "info", fmt: LogFormat = "text", stream: TextIO | None = None
) -> logging.Logger:
    """A logger writing ``fmt`` lines at ``level`` and above to ``stream`` (default stderr).

    Raises :class:`UsageError` for an unknown level or format.  Each call gives a
    fresh, private logger, so two servers in one process do not share handlers.
    """
    if level not in LOG_LEVELS:
        raise UsageError(f"unknown log level {level!r}; choose from {', '.join(LOG_LEVELS)}")
    if fmt not in ("text", "json"):
        raise UsageError(f"unknown log format {fmt!r}; choose text or json")
    logger = logging.Logger("sockkit.server", LOG_LEVELS[level])
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_JSONFormatter() if fmt == "json" else _TextFormatter())
    logger.addHandler(handler)
    return logger


class ServerLog(ConnectionLog):
    """The real :class:`ConnectionLog`: writes connection events and counts them.

    Safe to call from any thread.  ``counts`` holds ``opened``, ``closed``,
    ``refused`` and ``refused:<reason>`` totals for this process.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.enabled = logger.isEnabledFor(logging.INFO)
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        # A logger from make_logger is written to directly: a LogRecord (caller
        # lookup, a dozen attributes) per connection line costs more than the
        # line, and in a fork child it copies pages the parent could have shared.
        handlers = logger.handlers
        self._direct: logging.StreamHandler[TextIO] | None = None
        if (
            len(handlers) == 1
            and isinstance(handlers[0], logging.StreamHandler)
            and isinstance(handlers[0].formatter, (_TextFormatter, _JSONFormatter))
            and not logger.filters
            and not handlers[0].filters
        ):
            self._direct = handlers[0]
        self._json = self._direct is not None and isinstance(self._direct.formatter, _JSONFormatter)

    def _count(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self.counts[key] += 1

    def event(self, level: int, message: str, **fields: Any) -> None:
        """Log ``message`` with ``fields`` (kept as JSON fields in the json format)."""
        if not self.logger.isEnabledFor(level):
            return
        handler = self._direct
        if handler is None:
            self.logger.log(level, message, extra={"fields": fields})
            return
        if self._json:
            line = json_line(time.time(), logging.getLevelName(level), message, fields)
        else:
            line = message
        with handler.lock or contextlib.nullcontext():
            try:
                handler.stream.write(line + "\n")
                handler.stream.flush()
            except (OSError, ValueError):
                pass  # stderr gone (closed pipe): serving goes on without a log

    def listening(self, endpoint: str) -> None:
        """Announce a bound endpoint: exactly the line ``listening on ENDPOINT``."""
        # Written whatever --log-level says: scripts depend on this line for the port.
        record = self.logger.makeRecord(
            self.logger.name,
            logging.INFO,
            __file__,
            0,
            f"listening on {endpoint}",
            (),
            None,
            extra={"fields": {"event": "listening", "endpoint": endpoint}},
        )
        self.logger.handle(record)

    def opened(self, peer: str, local: str, via: str | None = None) -> None:
        self._count("opened")
        if not self.enabled:
            return  # counted; nothing to format (below --log-level info)
        message, fields = opened_event(peer, local, via)
        self.event(logging.INFO, message, **fields)

    def closed(
        self, peer: str, bytes_in: int, bytes_out: int, duration: float, reason: str | None
    ) -> None:
        self._count("closed")
        if not self.enabled:
            return
        message, fields = closed_event(peer, bytes_in, bytes_out, duration, reason)
        self.event(logging.INFO, message, **fields)

    def draining(self, count: int, timeout: float) -> None:
        message, fields = draining_event(count, timeout)
        self.event(logging.INFO, message, **fields)

    def refused(self, peer: str, reason: str) -> None:
        self._count("refused", f"refused:{reason}")
        message, fields = refused_event(peer, reason)
        self.event(logging.WARNING, message, **fields)

    def warning(self, message: str) -> None:
        self.event(logging.WARNING, message, event="warning")

    def lines(self) -> LogLines | None:
        """Where this log's lines go, when it is sockkit's own writer on a real file descriptor.

        The counters then stay at what this process saw: connections served
        by another process (the fork engine's fork server) are not counted.
        """
        handler = self._direct
        if handler is None or self.logger.filters:
            return None
        try:
            fd = handler.stream.fileno()
        except (AttributeError, OSError, ValueError):
            return None  # a StringIO: only this process can write to it
        level = logging.getLevelName(self.logger.getEffectiveLevel())
        if not isinstance(level, str) or level.lower() not in ("debug", "info", "warning", "error"):
            return None
        return LogLines(fd, level.lower(), "json" if self._json else "text")
