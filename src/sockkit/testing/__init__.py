"""Test doubles for sockkit services: run a service over memory, no socket needed.

:class:`MemoryConnection` drives one stream :class:`~sockkit.Service` the way
every engine does -- greeting, input in chunks, EOF, ``produce`` under a
bounded output buffer, half-close and close, ``wakeup``, ``closed`` exactly
once -- while the test plays the client::

    from sockkit.services import EchoService
    from sockkit.testing import MemoryConnection

    conn = MemoryConnection(EchoService())
    conn.send(b"hello\\n")
    conn.shutdown_write()
    assert conn.read_until_eof() == b"hello\\n"
    assert conn.closed_calls == 1

It runs over :func:`memory_stream_pair`, two connected ends with the calls of
a non-blocking stream socket (``send``, ``recv``, ``shutdown_write``,
``close``), which is usable on its own.  :func:`exchange_datagram` does the
same for one datagram of a :class:`~sockkit.DatagramService`.  Any break of
the service contract raises :class:`ContractViolation`, so these double as
conformance checks for your own services.
"""

from __future__ import annotations

from sockkit.testing._memory import ContractViolation, MemoryConnection, exchange_datagram
from sockkit.testing._stream import MemoryStream, memory_stream_pair

__all__ = [
    "ContractViolation",
    "MemoryConnection",
    "MemoryStream",
    "exchange_datagram",
    "memory_stream_pair",
]
