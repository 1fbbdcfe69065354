"""Sans-I/O services: the contract, the classic ones, chat, and the registry.

Importing this package loads every built-in service; it opens nothing.
"""

from __future__ import annotations

from sockkit.services._base import CLOSE, HALF_CLOSE, OPEN, DatagramService, Service
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
    "chat_spec",
    "get_service",
    "load_service",
    "resolve_service",
]
