"""sockkit: socket client/server programs on Linux, made real and fast.

The public API is re-exported here from private modules.  Names load on first
use (PEP 562), so ``import sockkit`` stays cheap for the command line;
``tests/test_exports.py`` keeps ``__all__`` and ``_EXPORTS`` in step.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from sockkit._version import __version__

# A library logs through the standard hierarchy (sockkit.server, sockkit.relay,
# ...) and leaves where the lines go to the application: without a handler of
# its own, the "last resort" handler would print warnings on stderr.
logging.getLogger("sockkit").addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from sockkit._endpoint import (
        AddressInfo,
        Endpoint,
        format_sockaddr,
        open_connection,
        open_listener,
        parse_endpoint,
        resolve,
        resolve_service,
    )
    from sockkit._errors import (
        AddressInUseError,
        ConnectError,
        ConnectionResetError,
        EndpointError,
        ResolveError,
        SockkitError,
        TimeoutError,
        TLSError,
        UsageError,
    )
    from sockkit.bench._result import BenchResult
    from sockkit.bench._runner import run_bench
    from sockkit.client._connection import (
        Connection,
        DatagramConnection,
        connect,
        connect_datagram,
    )
    from sockkit.client._listener import Listener, listen, listen_datagram
    from sockkit.client._tls import TLSConfig
    from sockkit.engines._contract import AccessList, Limits, ServeContext
    from sockkit.inspect._listing import list_sockets
    from sockkit.inspect._port_owner import port_owner
    from sockkit.inspect._query import SocketQuery
    from sockkit.inspect._record import SocketRecord
    from sockkit.server._server import Server, serve
    from sockkit.server._tls import TLSFiles
    from sockkit.services._base import CLOSE, HALF_CLOSE, OPEN, DatagramService, Service
    from sockkit.services._registry import ServiceSpec, get_service, load_service

#: public name -> private module that defines it
_EXPORTS: dict[str, str] = {
    "AddressInfo": "sockkit._endpoint",
    "Endpoint": "sockkit._endpoint",
    "format_sockaddr": "sockkit._endpoint",
    "open_connection": "sockkit._endpoint",
    "open_listener": "sockkit._endpoint",
    "parse_endpoint": "sockkit._endpoint",
    "resolve": "sockkit._endpoint",
    "resolve_service": "sockkit._endpoint",
    "AddressInUseError": "sockkit._errors",
    "ConnectError": "sockkit._errors",
    "ConnectionResetError": "sockkit._errors",
    "EndpointError": "sockkit._errors",
    "ResolveError": "sockkit._errors",
    "SockkitError": "sockkit._errors",
    "TLSError": "sockkit._errors",
    "TimeoutError": "sockkit._errors",
    "UsageError": "sockkit._errors",
    "BenchResult": "sockkit.bench._result",
    "run_bench": "sockkit.bench._runner",
    "Connection": "sockkit.client._connection",
    "DatagramConnection": "sockkit.client._connection",
    "connect": "sockkit.client._connection",
    "connect_datagram": "sockkit.client._connection",
    "Listener": "sockkit.client._listener",
    "listen": "sockkit.client._listener",
    "listen_datagram": "sockkit.client._listener",
    "TLSConfig": "sockkit.client._tls",
    "AccessList": "sockkit.engines._contract",
    "Limits": "sockkit.engines._contract",
    "ServeContext": "sockkit.engines._contract",
    "Server": "sockkit.server._server",
    "serve": "sockkit.server._server",
    "TLSFiles": "sockkit.server._tls",
    "SocketQuery": "sockkit.inspect._query",
    "SocketRecord": "sockkit.inspect._record",
    "list_sockets": "sockkit.inspect._listing",
    "port_owner": "sockkit.inspect._port_owner",
    "CLOSE": "sockkit.services._base",
    "HALF_CLOSE": "sockkit.services._base",
    "OPEN": "sockkit.services._base",
    "DatagramService": "sockkit.services._base",
    "Service": "sockkit.services._base",
    "ServiceSpec": "sockkit.services._registry",
    "get_service": "sockkit.services._registry",
    "load_service": "sockkit.services._registry",
}

__all__ = [
    "CLOSE",
    "HALF_CLOSE",
    "OPEN",
    "AccessList",
    "AddressInUseError",
    "AddressInfo",
    "BenchResult",
    "ConnectError",
    "Connection",
    "ConnectionResetError",
    "DatagramConnection",
    "DatagramService",
    "Endpoint",
    "EndpointError",
    "Limits",
    "Listener",
    "ResolveError",
    "ServeContext",
    "Server",
    "Service",
    "ServiceSpec",
    "SocketQuery",
    "SocketRecord",
    "SockkitError",
    "TLSConfig",
    "TLSError",
    "TLSFiles",
    "TimeoutError",
    "UsageError",
    "__version__",
    "connect",
    "connect_datagram",
    "format_sockaddr",
    "get_service",
    "list_sockets",
    "listen",
    "listen_datagram",
    "load_service",
    "open_connection",
    "open_listener",
    "parse_endpoint",
    "port_owner",
    "resolve",
    "resolve_service",
    "run_bench",
    "serve",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sockkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
