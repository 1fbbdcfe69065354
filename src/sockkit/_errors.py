"""sockkit's exception tree, and the one place OS errors are translated into it.

Every error a user can cause or meet is a :class:`SockkitError`.  Its message is
one line a person can act on, and its ``exit_status`` is what the command line
returns: 1 for a runtime failure (refused, reset, timed out, address in use),
2 for a usage error (bad endpoint, bad option).

Socket code never formats ``OSError`` itself: it calls :func:`translate_os_error`
(or wraps a block in :func:`translating`) with what it was doing and to whom.
"""

from __future__ import annotations

import builtins
import errno
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "AddressInUseError",
    "ConnectError",
    "ConnectionResetError",
    "EndpointError",
    "ResolveError",
    "SockkitError",
    "TLSError",
    "TimeoutError",
    "UsageError",
    "translate_os_error",
    "translating",
]


class SockkitError(Exception):
    """Base of every error sockkit raises on purpose."""

    exit_status = 1


class UsageError(SockkitError):
    """The command or call was given something it cannot use (exit status 2)."""

    exit_status = 2


class EndpointError(UsageError, ValueError):
    """An endpoint text does not follow the grammar."""

    def __init__(self, text: str, expected: str) -> None:
        super().__init__(f"bad endpoint {text!r}: {expected}")
        self.text = text
        self.expected = expected


class ResolveError(SockkitError):
    """A host or service name could not be resolved."""


class ConnectError(SockkitError):
    """A connection could not be made or was lost (refused, unreachable, ...)."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_


class ConnectionResetError(ConnectError):
    """The peer reset the connection."""


class AddressInUseError(SockkitError):
    """Another socket already holds the address we tried to bind."""

    def __init__(self, message: str, address: str = "") -> None:
        super().__init__(message)
        self.address = address
        #: The endpoint that could not be bound, when known (an ``Endpoint``),
        #: so the command line can name the process that holds it.
        self.endpoint: object | None = None


class TLSError(SockkitError):
    """A TLS handshake or certificate check failed."""


class TimeoutError(SockkitError, builtins.TimeoutError):
    """A deadline passed.

    ``partial`` holds whatever bytes had arrived before the deadline, so a
    caller that times out loses nothing it was sent.
    """

    def __init__(self, message: str, partial: bytes = b"") -> None:
        SockkitError.__init__(self, message)
        self.partial = partial

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "timed out"


_PRIVILEGED_PORT_LIMIT = 1024


def translate_os_error(exc: BaseException, action: str, target: str) -> SockkitError:
    """Return the :class:`SockkitError` that says, in one line, why ``action`` on ``target`` failed.

    ``action`` is a verb phrase such as ``"connect to"`` or ``"bind"``; ``target`` names
    the address (``"127.0.0.1:7007"``, ``"unix:/tmp/s"``).  Errors that are already
    a :class:`SockkitError` are returned unchanged.
    """
    if isinstance(exc, SockkitError):
        return exc
    if isinstance(exc, socket.gaierror):
        return ResolveError(f"cannot resolve {target}: {exc.strerror or exc}")
    if isinstance(exc, builtins.TimeoutError) and not getattr(exc, "errno", None):
        return TimeoutError(f"timed out trying to {action} {target}")
    code = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None) or str(exc)
    if code == errno.ECONNREFUSED:
        return ConnectError(f"connection refused: nothing is listening at {target}", code)
    if code == errno.ETIMEDOUT:
        return TimeoutError(f"timed out trying to {action} {target}")
    if code == errno.EHOSTUNREACH:
        return ConnectError(f"host unreachable: no route to {target}", code)
    if code == errno.ENETUNREACH:
        return ConnectError(f"network unreachable: cannot reach {target}", code)
    if code == errno.ECONNRESET:
        return ConnectionResetError(f"connection reset by peer {target}", code)
    if code == errno.EPIPE:
        return ConnectionResetError(f"connection closed by peer {target} while sending", code)
    if code == errno.EADDRINUSE:
        return AddressInUseError(f"address already in use: {target}", target)
    if code == errno.EADDRNOTAVAIL:
        return ConnectError(f"cannot {action} {target}: address not available on this host", code)
    if code in (errno.EACCES, errno.EPERM):
        if action == "bind" and _port_of(target) in range(1, _PRIVILEGED_PORT_LIMIT):
            return SockkitError(
                f"permission denied binding {target}: ports below {_PRIVILEGED_PORT_LIMIT}"
                " need root or CAP_NET_BIND_SERVICE"
            )
        return SockkitError(f"permission denied: cannot {action} {target}")
    if code == errno.ENOENT and target.startswith(("unix:", "unixgram:")):
        directory = os.path.dirname(target.partition(":")[2])
        if directory and not os.path.isdir(directory):
            return SockkitError(f"cannot {action} {target}: directory {directory} does not exist")
        return ConnectError(f"no such socket file: {target}", code)
    if code in (errno.EMFILE, errno.ENFILE):
        return SockkitError(f"cannot {action} {target}: too many open files")
    return SockkitError(f"cannot {action} {target}: {reason}")


def _port_of(target: str) -> int:
    _, sep, port = target.rpartition(":")
    return int(port) if sep and port.isdigit() else 0


@contextmanager
def translating(action: str, target: str) -> Iterator[None]:
    """Run a block, turning any ``OSError`` into the matching :class:`SockkitError`."""
    try:
        yield
    except OSError as exc:
        raise translate_os_error(exc, action, target) from exc
