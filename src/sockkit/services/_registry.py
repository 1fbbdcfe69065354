"""Services by name: the built-in ones, and a user's own class given as ``module:Class``.

A :class:`ServiceSpec` is what a server needs to serve a service: a factory
that makes one stream service per connection, and/or a factory for the
datagram form.  The server calls the factory once per connection (stream) or
once per datagram socket (datagram).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sockkit._errors import UsageError
from sockkit.services._base import DatagramService, Service
from sockkit.services._chargen import ChargenDatagram, ChargenService
from sockkit.services._chat import (
    DEFAULT_MAX_LINE,
    DEFAULT_QUEUE_CAP,
    Backplane,
    ChatRoom,
    ChatService,
)
from sockkit.services._classic import (
    DaytimeDatagram,
    DaytimeService,
    DiscardDatagram,
    DiscardService,
    EchoDatagram,
    EchoService,
    TimeDatagram,
    TimeService,
)

__all__ = [
    "SERVICE_NAMES",
    "ServiceSpec",
    "chat_spec",
    "get_service",
    "load_service",
    "resolve_service",
]

#: The built-in services, in the order ``--help`` lists them.
SERVICE_NAMES: tuple[str, ...] = ("echo", "discard", "chargen", "daytime", "time", "chat")


@dataclass(frozen=True)
class ServiceSpec:
    """How to make a service's per-connection objects.

    ``stream`` makes one :class:`Service` per stream connection (``None``: the
    service has no stream form); ``datagram`` makes one
    :class:`DatagramService` per datagram socket (``None``: no datagram form).
    ``needs_shared_memory`` is true when connections share state (a chat
    room), so they must all be served in one process: a server refuses such a
    service on an engine or worker count that splits connections across
    processes.
    """

    name: str
    stream: Callable[[], Service] | None
    datagram: Callable[[], DatagramService] | None = None
    needs_shared_memory: bool = False
    #: One line for ``--help`` and listings.
    description: str = ""


def get_service(name: str) -> ServiceSpec:
    """The built-in service called ``name`` (one of :data:`SERVICE_NAMES`).

    Each call returns a new spec; for chat that means a new, empty room shared
    by every connection made from that spec.  Raises :class:`UsageError` for
    an unknown name, naming the choices.
    """
    if name == "echo":
        return ServiceSpec(
            "echo", EchoService, EchoDatagram, description="RFC 862: send back every byte"
        )
    if name == "discard":
        return ServiceSpec(
            "discard", DiscardService, DiscardDatagram, description="RFC 863: read and drop"
        )
    if name == "chargen":
        return ServiceSpec(
            "chargen",
            ChargenService,
            ChargenDatagram,
            description="RFC 864: rotating ASCII lines as fast as the client reads",
        )
    if name == "daytime":
        return ServiceSpec(
            "daytime", DaytimeService, DaytimeDatagram, description="RFC 867: the date, then close"
        )
    if name == "time":
        return ServiceSpec(
            "time",
            TimeService,
            TimeDatagram,
            description="RFC 868: 4-byte seconds since 1900, then close",
        )
    if name == "chat":
        return chat_spec()
    raise UsageError(
        f"unknown service {name!r}; choose from {', '.join(SERVICE_NAMES)} or give module:Class"
    )


def chat_spec(
    *,
    max_line: int = DEFAULT_MAX_LINE,
    queue_cap: int = DEFAULT_QUEUE_CAP,
    notices: bool = False,
    backplane: Backplane | None = None,
) -> ServiceSpec:
    """A chat service with its own new room, limits chosen (see :class:`ChatRoom`).

    ``get_service("chat")`` is ``chat_spec()``.  With a ``backplane`` the room
    is shared through it, so connections may be served by any number of
    processes (``--engine fork``, ``--workers N``).  Raises :class:`ValueError`
    for limits below 1.
    """
    room = ChatRoom(max_line=max_line, queue_cap=queue_cap, notices=notices, backplane=backplane)
    return ServiceSpec(
        "chat",
        lambda: ChatService(room),
        None,
        needs_shared_memory=backplane is None,
        description="line-based room: each line goes to every other client",
    )


def load_service(spec: str) -> ServiceSpec:
    """A user's service class named as ``module:Class`` (or dotted: ``module:Outer.Inner``).

    A :class:`Service` subclass gives the stream form, a
    :class:`DatagramService` subclass the datagram form; the class is called
    with no arguments once per connection.  As with ``python -m``, the current
    the command line searches the working directory too, so ``sockkit serve
    mymod:Upper`` finds ``./mymod.py`` (the library leaves ``sys.path`` alone).
    Raises :class:`UsageError` when the text has no colon,
    the module cannot be imported, the attribute is missing, or it is not a
    service class that can be made without arguments.
    """
    module_name, colon, attr_path = spec.partition(":")
    if not colon or not module_name or not attr_path:
        raise UsageError(f"bad service {spec!r}: expected a service name or module:Class")
    module = _import_user_module(module_name, spec)
    obj: Any = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"bad service {spec!r}: {module_name} has no {attr_path!r}") from None
    if not isinstance(obj, type) or not issubclass(obj, (Service, DatagramService)):
        raise UsageError(
            f"bad service {spec!r}: {attr_path} is not a subclass of"
            " sockkit.Service or sockkit.DatagramService"
        )
    try:
        inspect.signature(obj).bind()
    except TypeError:
        raise UsageError(
            f"bad service {spec!r}: {attr_path}() must be callable with no arguments"
        ) from None
    except ValueError:
        pass  # no signature to inspect (a C-level __init__): let the first call tell
    if issubclass(obj, Service):
        return ServiceSpec(spec, obj, None, description=_summary(obj))
    return ServiceSpec(spec, None, obj, description=_summary(obj))


def resolve_service(text: str) -> ServiceSpec:
    """``module:Class`` through :func:`load_service`, anything else through :func:`get_service`."""
    return load_service(text) if ":" in text else get_service(text)


def _import_user_module(module_name: str, spec: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise UsageError(f"bad service {spec!r}: no module named {module_name!r}") from None
        raise UsageError(f"bad service {spec!r}: importing {module_name} failed: {exc}") from exc
    except Exception as exc:
        raise UsageError(
            f"bad service {spec!r}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _summary(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return doc.splitlines()[0] if doc else ""
