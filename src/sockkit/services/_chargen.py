"""chargen (RFC 864): the rotating printable-ASCII pattern, streamed or one datagram at a time.

The pattern is the 95 printable characters 0x20..0x7E in a ring.  Line ``n``
is the 72 characters starting at offset ``n mod 95``, then CRLF, so the whole
output repeats every 95 lines (:data:`CYCLE`, 6,840 + 190 bytes).

The stream service hands the pattern out through ``produce(limit)``: the
driver asks only when its output buffer has room, so chargen goes as fast as
the peer reads and never buffers ahead of it.  Every call returns one slice of
a buffer built once at import, continuing exactly where the previous call
stopped, and allocates nothing else.
"""

from __future__ import annotations

import random

from sockkit.services._base import DatagramService, Service

__all__ = ["CYCLE", "LINE_LENGTH", "ChargenDatagram", "ChargenService", "chargen_bytes"]

_PRINTABLE = bytes(range(0x20, 0x7F))
#: Characters per line, before CRLF (RFC 864's suggestion).
LINE_LENGTH = 72
#: One full period of the stream: 95 lines of 72 characters and CRLF.
CYCLE = b"".join((_PRINTABLE * 2)[n : n + LINE_LENGTH] + b"\r\n" for n in range(len(_PRINTABLE)))

#: Most bytes one ``produce`` call returns, whatever ``limit`` it is given.
#: 64 KiB is the engines' default high-water mark, so a larger answer would
#: only sit in their buffer; the cap keeps the precomputed buffer small.
MAX_CHUNK = 64 * 1024

# CYCLE repeated so that any offset within one cycle plus MAX_CHUNK is a plain
# slice, never a wrap-around join.
_RING = CYCLE * (MAX_CHUNK // len(CYCLE) + 2)

#: RFC 864: a datagram reply holds a random number of characters, 0 to 512.
MAX_DATAGRAM = 512


def chargen_bytes(offset: int, count: int) -> bytes:
    """``count`` bytes of the chargen stream starting at byte ``offset`` of it (any size)."""
    start = offset % len(CYCLE)
    if count <= len(_RING) - start:
        return _RING[start : start + count]
    whole, rest = divmod(count, len(CYCLE))
    rotated = CYCLE[start:] + CYCLE[:start]
    return rotated * whole + rotated[:rest]


class ChargenService(Service):
    """RFC 864 over a stream: the pattern, for as long as the peer reads; its input is discarded.

    ``producing`` is always true; each :meth:`produce` returns
    ``min(limit, MAX_CHUNK)`` bytes.  The peer's EOF closes the connection.
    """

    producing = True
    #: Where in :data:`CYCLE` the next byte comes from (class default saves a slot until used).
    _offset = 0

    def received(self, data: bytes) -> bytes:
        return b""

    def produce(self, limit: int) -> bytes:
        start = self._offset
        end = start + (limit if limit < MAX_CHUNK else MAX_CHUNK)
        self._offset = end % len(CYCLE)
        return _RING[start:end]


class ChargenDatagram(DatagramService):
    """RFC 864 over datagrams: answer each datagram with 0-512 characters of the pattern.

    Each reply starts at the beginning of the next line of the pattern and is
    cut to a random length; ``rng`` chooses it (pass a seeded
    :class:`random.Random` for repeatable replies).
    """

    max_reply = MAX_DATAGRAM

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()
        self._line = 0

    def datagram(self, data: bytes, peer: str) -> bytes | None:
        start = self._line * (LINE_LENGTH + 2)
        self._line = (self._line + 1) % len(_PRINTABLE)
        return _RING[start : start + self._rng.randint(0, MAX_DATAGRAM)]
