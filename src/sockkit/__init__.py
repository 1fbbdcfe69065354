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
    from sockkit.bench._result import BenchResult
    from sockkit.bench._runner import run_bench
    from sockkit.server._context import AccessList, Limits, ServeContext
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
    "AccessList": "sockkit.server._context",
    "Limits": "sockkit.server._context",
    "ServeContext": "sockkit.server._context",
    "Server": "sockkit.server._server",
    "serve": "sockkit.server._server",
    "TLSFiles": "sockkit.server._tls",
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
    "ConnectionResetError",
    "DatagramService",
    "Endpoint",
    "EndpointError",
    "Limits",
    "ResolveError",
    "ServeContext",
    "Server",
    "Service",
    "ServiceSpec",
    "SockkitError",
    "TLSError",
    "TLSFiles",
    "TimeoutError",
    "UsageError",
    "__version__",
    "format_sockaddr",
    "get_service",
    "load_service",
    "open_connection",
    "open_listener",
    "parse_endpoint",
    "resolve",
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
