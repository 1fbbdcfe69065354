"""Turning ``echo`` or ``module:Class`` into the factories a server needs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sockkit.services._base import DatagramService, Service

__all__ = ["ServiceArgument", "ServiceSource", "find_service", "needs_shared_memory"]


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


#: Everything a server takes as its service (see :func:`find_service`).
ServiceArgument = (
    str | ServiceSource | type[Service] | type[DatagramService] | Callable[[], Service]
)

_EXPECTED = (
    "a service name ('echo'), 'module:Class', a Service or DatagramService subclass,"
    " a factory returning a Service, or a ServiceSpec"
)


@dataclass(frozen=True)
class _Source:
    name: str
    stream: Callable[[], Service] | None
    datagram: Callable[[], DatagramService] | None


def find_service(service: ServiceArgument) -> ServiceSource:
    """The :class:`ServiceSource` for whatever names a service, as asyncio takes a factory.

    - ``"echo"`` or ``"module:Class"``: a built-in or a user's class, loaded;
    - a :class:`Service` subclass: its stream form; a :class:`DatagramService`
      subclass: its datagram form (the class is called once per connection or socket);
    - any other callable: a factory of stream services, called once per connection;
    - a :class:`ServiceSource` (``ServiceSpec``): as it is.

    Raises :class:`UsageError` for an unknown name or a module or class that
    cannot be loaded, and :class:`TypeError` for anything else.
    """
    if isinstance(service, str):
        # Imported here: the services package loads every built-in service.
        from sockkit.services import resolve_service

        spec: ServiceSource = resolve_service(service)
        return spec
    if isinstance(service, type):
        name = f"{service.__module__}:{service.__qualname__}"
        if issubclass(service, Service):
            return _Source(name, service, None)
        if issubclass(service, DatagramService):
            return _Source(name, None, service)
        raise TypeError(f"service must be {_EXPECTED}; {name} is neither service class")
    if all(hasattr(service, attr) for attr in ("name", "stream", "datagram")):
        return service  # type: ignore[return-value]
    if callable(service):
        return _Source(_factory_name(service), _checked(service), None)
    raise TypeError(f"service must be {_EXPECTED}, not {type(service).__name__}")


def _factory_name(factory: Any) -> str:
    return str(getattr(factory, "__qualname__", None) or type(factory).__name__)


def _checked(factory: Callable[[], Any]) -> Callable[[], Service]:
    """``factory``, made to say clearly when what it returns is not a :class:`Service`."""

    def make() -> Service:
        made = factory()
        if not isinstance(made, Service):
            raise TypeError(
                f"service factory {_factory_name(factory)} returned"
                f" {type(made).__name__}, not a sockkit.Service"
            )
        return made

    return make


def needs_shared_memory(spec: ServiceSource) -> bool:
    """Whether the service's connections share state (a chat room), so need one process.

    Read from the spec's optional ``needs_shared_memory`` attribute (``ServiceSpec`` has it).
    """
    return bool(getattr(spec, "needs_shared_memory", False))
