"""sockkit: socket client/server programs on Linux, made real and fast.

The public API is re-exported here from private modules.  Names load on first
use (PEP 562), so ``import sockkit`` stays cheap for the command line;
``tests/test_exports.py`` keeps ``__all__`` and ``_EXPORTS`` in step.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sockkit._version import __version__

if TYPE_CHECKING:
    from sockkit._endpoint import (
        AddressInfo,
        Endpoint,
        format_sockaddr,
        open_connection,
        open_listener,
        parse_endpoint,
        resolve,
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
    from sockkit.inspect._listing import list_sockets
    from sockkit.inspect._port_owner import port_owner
    from sockkit.inspect._query import SocketQuery
    from sockkit.inspect._record import SocketRecord
    from sockkit.services._base import CLOSE, HALF_CLOSE, OPEN, DatagramService, Service

#: public name -> private module that defines it
_EXPORTS: dict[str, str] = {
    "AddressInfo": "sockkit._endpoint",
    "Endpoint": "sockkit._endpoint",
    "format_sockaddr": "sockkit._endpoint",
    "open_connection": "sockkit._endpoint",
    "open_listener": "sockkit._endpoint",
    "parse_endpoint": "sockkit._endpoint",
    "resolve": "sockkit._endpoint",
    "AddressInUseError": "sockkit._errors",
    "ConnectError": "sockkit._errors",
    "ConnectionResetError": "sockkit._errors",
    "EndpointError": "sockkit._errors",
    "ResolveError": "sockkit._errors",
    "SockkitError": "sockkit._errors",
    "TLSError": "sockkit._errors",
    "TimeoutError": "sockkit._errors",
    "UsageError": "sockkit._errors",
    "SocketQuery": "sockkit.inspect._query",
    "SocketRecord": "sockkit.inspect._record",
    "list_sockets": "sockkit.inspect._listing",
    "port_owner": "sockkit.inspect._port_owner",
    "CLOSE": "sockkit.services._base",
    "HALF_CLOSE": "sockkit.services._base",
    "OPEN": "sockkit.services._base",
    "DatagramService": "sockkit.services._base",
    "Service": "sockkit.services._base",
}

__all__ = [
    "CLOSE",
    "HALF_CLOSE",
    "OPEN",
    "AddressInUseError",
    "AddressInfo",
    "ConnectError",
    "ConnectionResetError",
    "DatagramService",
    "Endpoint",
    "EndpointError",
    "ResolveError",
    "Service",
    "SocketQuery",
    "SocketRecord",
    "SockkitError",
    "TLSError",
    "TimeoutError",
    "UsageError",
    "__version__",
    "format_sockaddr",
    "list_sockets",
    "open_connection",
    "open_listener",
    "parse_endpoint",
    "port_owner",
    "resolve",
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
