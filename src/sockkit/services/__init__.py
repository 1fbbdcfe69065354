"""Sans-I/O services: the contract, the classic ones, chat, and the registry.

Names load on first use (PEP 562): a process that needs only the contract
(``sockkit.services._base``, e.g. a fork child serving echo) does not load the
whole catalogue, chat and the registry with it.  Importing a name opens nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sockkit.services._base import (
        CLOSE,
        HALF_CLOSE,
        OPEN,
        DatagramService,
        Service,
        borrows_input,
    )
    from sockkit.services._chargen import ChargenDatagram, ChargenService
    from sockkit.services._chat import ChatRoom, ChatService
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
    from sockkit.services._registry import (
        SERVICE_NAMES,
        ServiceSpec,
        chat_spec,
        get_service,
        load_service,
        resolve_service,
    )

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "CLOSE": "sockkit.services._base",
    "HALF_CLOSE": "sockkit.services._base",
    "OPEN": "sockkit.services._base",
    "DatagramService": "sockkit.services._base",
    "Service": "sockkit.services._base",
    "borrows_input": "sockkit.services._base",
    "ChargenDatagram": "sockkit.services._chargen",
    "ChargenService": "sockkit.services._chargen",
    "ChatRoom": "sockkit.services._chat",
    "ChatService": "sockkit.services._chat",
    "DaytimeDatagram": "sockkit.services._classic",
    "DaytimeService": "sockkit.services._classic",
    "DiscardDatagram": "sockkit.services._classic",
    "DiscardService": "sockkit.services._classic",
    "EchoDatagram": "sockkit.services._classic",
    "EchoService": "sockkit.services._classic",
    "TimeDatagram": "sockkit.services._classic",
    "TimeService": "sockkit.services._classic",
    "SERVICE_NAMES": "sockkit.services._registry",
    "ServiceSpec": "sockkit.services._registry",
    "chat_spec": "sockkit.services._registry",
    "get_service": "sockkit.services._registry",
    "load_service": "sockkit.services._registry",
    "resolve_service": "sockkit.services._registry",
}

__all__ = [
    "CLOSE",
    "HALF_CLOSE",
    "OPEN",
    "SERVICE_NAMES",
    "ChargenDatagram",
    "ChargenService",
    "ChatRoom",
    "ChatService",
    "DatagramService",
    "DaytimeDatagram",
    "DaytimeService",
    "DiscardDatagram",
    "DiscardService",
    "EchoDatagram",
    "EchoService",
    "Service",
    "ServiceSpec",
    "TimeDatagram",
    "TimeService",
    "borrows_input",
    "chat_spec",
    "get_service",
    "load_service",
    "resolve_service",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sockkit.services' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
