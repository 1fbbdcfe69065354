"""Turning ``echo`` or ``module:Class`` into the factories a server needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sockkit.services._base import DatagramService, Service

__all__ = ["ServiceSource", "find_service", "needs_shared_memory"]


class ServiceSource(Protocol):
    """What a server needs of a service: a name and a factory per form.

    ``sockkit.services.ServiceSpec`` is one; a factory that is ``None`` means the
    service has no such form (chat has no datagram form).
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
    from sockkit import services  # imported here: the services package loads every service

    if ":" in service:
        spec: ServiceSource = services.load_service(service)  # type: ignore[attr-defined]
    else:
        spec = services.get_service(service)  # type: ignore[attr-defined]
    return spec


def needs_shared_memory(spec: ServiceSource) -> bool:
    """Whether the service's connections share state (a chat room), so need one process."""
    shared = getattr(spec, "shared_state", None)
    if shared is not None:
        return bool(shared)
    return spec.name == "chat"
