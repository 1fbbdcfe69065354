"""The sans-I/O service contract.

A :class:`Service` is one stream connection's protocol logic.  It never touches a
socket, a thread or an event loop: a driver (an engine, or the in-memory
transport in :mod:`sockkit.testing`) feeds it events and sends what it answers.
So one service runs unchanged under every engine and is tested with plain calls.

Rules, per connection (driver → service)::

    connected(peer)
      → ( received(data) | produce(limit) )*
      → [ eof_received() → produce(limit)* ]
      → closed()

- ``connected``, ``received``, ``eof_received`` and ``produce`` return the bytes
  to send next, in order; ``b""`` means nothing for now.
- After every call the driver reads :attr:`Service.state`:

  ``OPEN``        carry on.
  ``HALF_CLOSE``  send everything returned so far, then ``shutdown(SHUT_WR)``;
                  keep reading (and feeding) until the peer closes.
  ``CLOSE``       send everything returned so far, then close.  If
                  :attr:`close_reason` is set the driver logs it.

- While :attr:`Service.producing` is true the driver calls ``produce(limit)``
  whenever its output buffer is below its low-water mark, asking for at most
  ``limit`` bytes (``limit`` > 0).  That is how a streaming service (chargen)
  sends as fast as the peer reads and never faster: backpressure is the
  driver's job.  A service with nothing left to hand out clears ``producing``
  in the same call that returns ``b""``; otherwise the driver asks again.
- A service whose output appears between calls (chat: another client's line)
  sets ``producing`` and calls :attr:`Service.wakeup`, which the driver
  installs before ``connected``.  ``wakeup`` may be called from any thread;
  services call it outside their own locks, since a driver may act on it at
  once.
- A service that must close between calls (chat drops a member whose queue
  overflowed) sets ``state = CLOSE`` and ``producing``, then calls ``wakeup``:
  the driver calls ``produce``, which returns ``b""``, and reads the state.
- After the peer's EOF the default is to close once output is flushed.
- ``closed`` is called exactly once, whatever ended the connection; it is where
  a service leaves shared state (a chat room).
- ``data`` is ``bytes``, unless the class's ``received`` is marked
  :func:`borrows_input`: then a driver may pass a ``memoryview`` of its read
  buffer, valid only until the call returns (the reply may be that view or a
  slice of it: the driver consumes it before it reads again).

A :class:`DatagramService` answers each datagram with at most one datagram,
never longer than its :attr:`DatagramService.max_reply`.

:mod:`sockkit.testing` drives services over memory by exactly these rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, TypeVar

__all__ = [
    "CLOSE",
    "HALF_CLOSE",
    "OPEN",
    "DatagramService",
    "Service",
    "borrows_input",
    "lends_input",
]

OPEN = 0
HALF_CLOSE = 1
CLOSE = 2


def _no_wakeup() -> None:
    pass


class Service:
    """Base class of stream services; override the calls you need.

    Subclasses keep per-connection state as instance attributes.  ``state``,
    ``producing`` and ``close_reason`` are plain attributes so drivers read them
    without a call on the hot path.
    """

    #: ``OPEN``, ``HALF_CLOSE`` or ``CLOSE``; read by the driver after every call.
    state: int = OPEN
    #: True while the service has output to hand out through :meth:`produce`.
    producing: bool = False
    #: Why the service asked to close, for the connection log (``None``: normal end).
    close_reason: str | None = None
    #: Nonzero while the service holds an incomplete message (chat: a line with
    #: no newline yet), and a new value each time a new one begins.  Drivers
    #: time it against ``--line-timeout``; a service with no framing leaves it 0.
    partial_input: int = 0
    #: Installed by the driver before :meth:`connected`; callable from any thread.
    wakeup: Callable[[], None] = staticmethod(_no_wakeup)

    def connected(self, peer: str) -> bytes:
        """The connection is up; ``peer`` is the formatted peer address.  Return a greeting."""
        return b""

    def received(self, data: bytes) -> bytes:
        """``data`` arrived (never empty).  Return the reply bytes."""
        return b""

    def eof_received(self) -> bytes:
        """The peer finished sending.  Default: close once everything is sent."""
        self.state = CLOSE
        return b""

    def produce(self, limit: int) -> bytes:
        """Return up to ``limit`` more bytes of output; called while ``producing`` is true."""
        return b""

    def closed(self) -> None:
        """The connection is gone (called once).  Release shared state here."""


_Received = TypeVar("_Received", bound=Callable[..., bytes])

#: The ``received`` functions marked by :func:`borrows_input`.
_BORROWING: set[object] = set()


def borrows_input(received: _Received) -> _Received:
    """Mark a ``received`` that does not keep ``data`` past the call, except as its reply.

    A driver may then hand it a ``memoryview`` of its own read buffer instead
    of a ``bytes`` copy (echo sends the same view straight back), and reuse
    the buffer once the reply is sent.  Only the marked function counts: a
    subclass that overrides ``received`` gets ``bytes`` again unless it marks
    its own.
    """
    _BORROWING.add(received)
    return received


def lends_input(service_class: type[Service]) -> bool:
    """Whether a driver may pass this class's ``received`` a view of its buffer (:func:`borrows_input`)."""
    return service_class.received in _BORROWING


class DatagramService:
    """Base class of datagram services: one reply (or none) per datagram."""

    #: The largest reply the protocol allows; drivers never send more.
    max_reply: ClassVar[int] = 65507

    def datagram(self, data: bytes, peer: str) -> bytes | None:
        """``data`` came from ``peer``; return the reply, or ``None`` to send nothing."""
        return None
