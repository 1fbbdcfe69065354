"""Turning ``echo`` or ``module:Class`` into the factories a server needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sockkit.services._base import DatagramService, Service

__all__ = ["ServiceSource", "find_service", "needs_shared_memory"]


class ServiceSource(Protocol):
    """What a server needs of a service: a name and a factory per form.

    ``sockkit.services.ServiceSpec`` is one; a factory that is ``None`` means the
    service has no such form (chat has no datagram form).  A source may also
    have ``needs_shared_memory = True`` (see :func:`needs_shared_memory`).
    """

    @property
    def name(self) -> str: ...

    @property
    def stream(self) -> Callable[[], Service] | None: ...

    @property
    def datagram(self) -> Callable[[], DatagramService] | None: ...


def find_service(service: str | ServiceSource) -> ServiceSource:
    """The service called ``service`` (``echo``) or loaded from ``module:Class``.

    A :class:`ServiceSource` is returned as it is.  Raises :class:`UsageError`
    for an unknown name or a module or class that cannot be loaded.
    """
    if not isinstance(service, str):
        return service
    # Imported here: the services package loads every built-in service.
    from sockkit.services import resolve_service

    spec: ServiceSource = resolve_service(service)
    return spec


def needs_shared_memory(spec: ServiceSource) -> bool:
    """Whether the service's connections share state (a chat room), so need one process.

    Read from the spec's optional ``needs_shared_memory`` attribute (``ServiceSpec`` has it).
    """
    return bool(getattr(spec, "needs_shared_memory", False))
