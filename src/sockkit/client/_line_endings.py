"""``--crlf`` (nc's and ncat's ``-C``): stdin's line feeds go out as CRLF.

A line feed already preceded by a carriage return is left alone, as ncat and
OpenBSD nc do, so text that already has CRLF endings is not doubled.  The
filter remembers the last byte of the previous piece, because a ``\\r\\n`` pair
can be split between two reads of stdin.
"""

from __future__ import annotations

import re

__all__ = ["CrlfFilter"]

_BARE_LF = re.compile(rb"(?<!\r)\n")


class CrlfFilter:
    """Call with each piece of stdin in order; returns the piece with bare LFs made CRLF."""

    def __init__(self) -> None:
        self._after_cr = False

    def __call__(self, data: bytes) -> bytes:
        if not data:
            return data
        if self._after_cr and data.startswith(b"\n"):
            out = b"\n" + _BARE_LF.sub(b"\r\n", data[1:])
        else:
            out = _BARE_LF.sub(b"\r\n", data)
        self._after_cr = data.endswith(b"\r")
        return out
