"""The connection log's lines, in one wording, and a writer that needs no ``logging``.

:class:`~sockkit.server.ServerLog` (the serve process) and :class:`LineLog`
(the fork engine's lean fork server, a separate process) write the same
events, so both build them here: each ``*_event`` function returns the
message (what the ``text`` format prints) and the fields the ``json`` format
adds to ``time``, ``level`` and ``message``.

:class:`LineLog` writes straight to a file descriptor with ``os.write``: no
``logging`` records or handlers, and ``json`` is imported only for the json
format.  It is what a forked child inherits, so it holds nothing but a few
ints and strings.
"""

from __future__ import annotations

import os
import time
from types import ModuleType
from typing import Any

from sockkit.engines._contract import ConnectionLog, LogLines

__all__ = [
    "LEVELS",
    "LineLog",
    "LogLines",
    "closed_event",
    "draining_event",
    "json_line",
    "opened_event",
    "refused_event",
]

#: Level names (as ``--log-level`` spells them) and their ``logging`` numbers;
#: ``off`` writes nothing.
LEVELS: dict[str, int] = {"debug": 10, "info": 20, "warning": 30, "error": 40, "off": 100}

Event = tuple[str, dict[str, Any]]


def opened_event(peer: str, local: str, via: str | None = None) -> Event:
    if via is None:
        return f"opened {peer} -> {local}", {"event": "opened", "peer": peer, "local": local}
    fields = {"event": "opened", "peer": peer, "local": local, "via": via}
    return f"opened {peer} -> {local} via={via}", fields


def closed_event(
    peer: str, bytes_in: int, bytes_out: int, duration: float, reason: str | None
) -> Event:
    text = f"closed {peer} in={bytes_in} out={bytes_out} duration={duration:.3f}s"
    if reason:
        text += f" reason={reason}"
    fields = {
        "event": "closed",
        "peer": peer,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "duration": round(duration, 6),
        "reason": reason,
    }
    return text, fields


def refused_event(peer: str, reason: str) -> Event:
    return f"refused {peer}: {reason}", {"event": "refused", "peer": peer, "reason": reason}


def draining_event(count: int, timeout: float) -> Event:
    noun = "connection" if count == 1 else "connections"
    text = f"draining {count} {noun} (up to {timeout:g} s; Ctrl-C again to close them now)"
    return text, {"event": "draining", "connections": count, "timeout": timeout}


_json: ModuleType | None = None


def json_line(created: float, level: str, message: str, fields: object) -> str:
    """One ``json`` format line (without the newline)."""
    global _json
    if _json is None:
        import json  # only the json format pays for it

        _json = json
    entry: dict[str, Any] = {"time": round(created, 6), "level": level.lower(), "message": message}
    if isinstance(fields, dict):
        entry.update(fields)
    return str(_json.dumps(entry, separators=(",", ":")))


class LineLog(ConnectionLog):
    """A :class:`ConnectionLog` writing :class:`LogLines`' lines with ``os.write``.

    Counts nothing: the process that reads counters is not the one writing.
    """

    __slots__ = ("_fd", "_json", "_level")

    def __init__(self, lines: LogLines) -> None:
        self._fd = lines.fd
        self._level = LEVELS[lines.level]
        self._json = lines.format == "json"
        self.enabled = self._level <= LEVELS["info"]

    def lines(self) -> LogLines | None:
        level = next(name for name, number in LEVELS.items() if number == self._level)
        return LogLines(self._fd, level, "json" if self._json else "text")

    def _write(self, level: str, event: Event) -> None:
        if LEVELS[level] < self._level:
            return
        message, fields = event
        line = json_line(time.time(), level, message, fields) if self._json else message
        try:
            os.write(self._fd, (line + "\n").encode())
        except OSError:
            pass  # stderr gone (closed pipe): serving goes on without a log

    def opened(self, peer: str, local: str, via: str | None = None) -> None:
        if self.enabled:
            self._write("info", opened_event(peer, local, via))

    def closed(
        self, peer: str, bytes_in: int, bytes_out: int, duration: float, reason: str | None
    ) -> None:
        if self.enabled:
            self._write("info", closed_event(peer, bytes_in, bytes_out, duration, reason))

    def refused(self, peer: str, reason: str) -> None:
        self._write("warning", refused_event(peer, reason))

    def draining(self, count: int, timeout: float) -> None:
        self._write("info", draining_event(count, timeout))

    def warning(self, message: str) -> None:
        self._write("warning", (message, {"event": "warning"}))
