"""The engine contract.

An engine is a driver: it takes a :class:`~sockkit.server._context.ServeContext`
(listening sockets, a service factory per listener, limits, access rules, a log
and a stop signal) and serves stream connections until the stop signal is set.

Every engine promises the same:

- For each accepted connection: refuse at once (close, ``log.refused``) when
  ``access.admit`` says no or ``limits.max_conns`` connections are already open;
  otherwise do the TLS handshake where the listener has a context (bounded by
  ``limits.handshake_timeout``), then drive one :class:`~sockkit.services.Service`
  by its call grammar, with ``log.opened``/``log.closed`` around it.
- Output: send at once, buffer the rest; above ``limits.high_water`` stop asking
  the service to produce and stop reading from the peer; past
  ``limits.output_cap``, or without progress for ``limits.send_timeout``,
  disconnect.  ``limits.idle_timeout`` closes a silent connection.
- EMFILE/ENFILE in accept: log once, back off, retry; never a busy loop.
- When ``stop`` is set: stop accepting at once (listening sockets stay open for
  the server to close), let open connections finish for up to
  ``limits.drain_timeout`` seconds, then close them, and return from
  :meth:`Engine.run` with no thread or child process left behind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from sockkit.server._context import ServeContext

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
