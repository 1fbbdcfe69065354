"""The server: listeners + engine + service + limits + life cycle."""

from __future__ import annotations

from sockkit.engines._contract import (
    AccessList,
    ConnectionLog,
    Limits,
    ServeContext,
    StopSignal,
    StreamListener,
)
from sockkit.server._datagram import DatagramListener
from sockkit.server._log import ServerLog, make_logger
from sockkit.server._server import Server, serve
from sockkit.server._service import ServiceSource
from sockkit.server._tls import TLSFiles, server_tls_context

__all__ = [
    "AccessList",
    "ConnectionLog",
    "DatagramListener",
    "Limits",
    "ServeContext",
    "Server",
    "ServerLog",
    "ServiceSource",
    "StopSignal",
    "StreamListener",
    "TLSFiles",
    "make_logger",
    "serve",
    "server_tls_context",
]
