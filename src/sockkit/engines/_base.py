"""The engine contract.

An engine is a driver: it takes a :class:`~sockkit.engines._contract.ServeContext`
(listening sockets, a service factory per listener, limits, access rules, a log
and a stop signal) and serves stream connections until the stop signal is set.

Every engine promises the same:

- Accept through :mod:`sockkit._accept` (batches; out of descriptors: one log
  line, the shared back-off, never a busy loop).  For each accepted
  connection: refuse at once (close, ``log.refused``) when
  ``ctx.admission.admit`` gives a :class:`~sockkit._accept.Refusal`; otherwise
  do the TLS handshake where the listener has a context (bounded by
  ``limits.handshake_timeout``), then drive one :class:`~sockkit.services.Service`
  by its call grammar, with ``log.opened``/``log.closed`` around it.
- Output: send at once, buffer the rest; above ``limits.high_water`` stop asking
  the service to produce and stop reading from the peer; past
  ``limits.output_cap``, or without progress for ``limits.send_timeout``,
  disconnect.  ``limits.idle_timeout`` closes a silent connection.  Every
  close an engine decides is logged with a
  :class:`~sockkit.engines._contract.CloseReason`, the same text on every engine.
- When ``stop`` is set: follow :mod:`sockkit.engines._lifecycle` -- stop
  accepting, call ``Drain.begin`` (listeners closed at once), let open
  connections go on while ``Drain.remaining()`` allows (a second stop ends it),
  close the rest with ``CloseReason.SERVER_STOPPING``, and return from
  :meth:`Engine.run` with no thread or child process left behind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from sockkit.engines._contract import ServeContext

__all__ = ["Engine"]


class Engine(ABC):
    """A way of serving many connections.  Subclasses set :attr:`name`."""

    name: ClassVar[str]
    #: True when the engine serves every connection in one process, so state
    #: shared between connections (a chat room) works.
    shares_memory: ClassVar[bool] = True

    @classmethod
    def available(cls) -> bool:
        """Whether this engine can run here (its dependency is installed)."""
        return True

    @abstractmethod
    def run(self, ctx: ServeContext) -> None:
        """Serve until ``ctx.stop`` is set, drain, and return.  See the module docstring."""
