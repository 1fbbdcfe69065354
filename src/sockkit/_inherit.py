"""Sockets handed to sockkit already open: ``fd:N`` and systemd socket activation (``systemd:``).

A service manager (systemd, ``systemd-socket-activate``, a supervisor, a
previous generation of the same server) can bind and listen itself and pass
the socket down as an open descriptor.  Then the port is held the whole time,
privileged ports need no privilege in the server, and connections queue while
the server starts.

- ``fd:N`` names descriptor N.  Its kind is read from the socket itself
  (``SO_DOMAIN``, ``SO_TYPE``, ``SO_ACCEPTCONN``): an IPv4/IPv6 stream socket is
  ``tcp``, a datagram one ``udp``; a Unix one ``unix`` or ``unixgram``.  A
  stream socket must already be listening and a datagram socket bound.
- ``systemd:`` names every descriptor of the systemd protocol, ``systemd:NAME``
  the ones whose ``FileDescriptorName=`` is NAME: ``LISTEN_FDS`` descriptors
  from 3 up, meant for us only if ``LISTEN_PID`` is our pid (a child that
  inherited the environment must not take them), named by the colon-separated
  ``LISTEN_FDNAMES``.

What systemd owns stays systemd's: an adopted socket is marked close-on-exec
(so programs we start do not hold it), and its Unix socket file is never
unlinked nor the socket shut down -- closing our descriptor is all we do.

Everything here is a usage error (:class:`EndpointError`) that says what was
expected, because it comes from the command line and the environment the user
or the unit file set.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sockkit._errors import EndpointError

__all__ = [
    "INHERITED_PREFIXES",
    "InheritedSocket",
    "adopt",
    "expand_inherited",
    "inspect_inherited",
    "systemd_descriptors",
]

INHERITED_PREFIXES = ("fd:", "systemd:")
#: The first descriptor of the systemd protocol (0-2 are stdin, stdout, stderr).
SD_LISTEN_FDS_START = 3

_KINDS: dict[tuple[int, int], Literal["tcp", "udp", "unix", "unixgram"]] = {
    (socket.AF_INET, socket.SOCK_STREAM): "tcp",
    (socket.AF_INET6, socket.SOCK_STREAM): "tcp",
    (socket.AF_INET, socket.SOCK_DGRAM): "udp",
    (socket.AF_INET6, socket.SOCK_DGRAM): "udp",
    (socket.AF_UNIX, socket.SOCK_STREAM): "unix",
    (socket.AF_UNIX, socket.SOCK_DGRAM): "unixgram",
}


@dataclass(frozen=True, slots=True)
class InheritedSocket:
    """What an inherited descriptor holds: its kind and the address it is bound to."""

    fd: int
    transport: Literal["tcp", "udp", "unix", "unixgram"]
    host: str | None
    port: int
    path: str | None


def systemd_descriptors(
    name: str | None = None, environ: Mapping[str, str] | None = None, *, text: str = "systemd:"
) -> list[int]:
    """The descriptors systemd passed us (those named ``name`` if given), in order.

    Raises :class:`EndpointError` when ``LISTEN_FDS`` is missing or malformed,
    ``LISTEN_PID`` is not our pid, or no descriptor has that name.
    """
    env = os.environ if environ is None else environ
    count_text = env.get("LISTEN_FDS")
    if count_text is None:
        raise EndpointError(
            text, "expected sockets from systemd socket activation, but LISTEN_FDS is not set"
        )
    if not count_text.isdigit() or int(count_text) < 1:
        raise EndpointError(
            text, f"expected LISTEN_FDS to be a count of 1 or more, not {count_text!r}"
        )
    pid_text = env.get("LISTEN_PID", "")
    if pid_text != str(os.getpid()):
        raise EndpointError(
            text,
            f"LISTEN_PID is {pid_text or 'not set'} but this process is {os.getpid()};"
            " expected the sockets to be passed to this process",
        )
    count = int(count_text)
    fds = list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))
    if not name:
        return fds
    names = env.get("LISTEN_FDNAMES", "").split(":")
    chosen = [fd for fd, fd_name in zip(fds, names, strict=False) if fd_name == name]
    if not chosen:
        known = ", ".join(n for n in names if n) or "none"
        raise EndpointError(text, f"expected a socket named {name!r} in LISTEN_FDNAMES ({known})")
    return chosen


def expand_inherited(text: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """``systemd:`` or ``systemd:NAME`` as one ``fd:N`` text per descriptor; other texts as they are.

    For commands that serve many endpoints (``serve``): a socket unit may pass several.
    """
    if not text.startswith("systemd:"):
        return [text]
    name = text[len("systemd:") :]
    return [f"fd:{fd}" for fd in systemd_descriptors(name, environ, text=text)]


def inspect_inherited(text: str, environ: Mapping[str, str] | None = None) -> InheritedSocket:
    """Read the kind and address of the socket that ``fd:N`` or ``systemd:[NAME]`` names.

    ``systemd:`` must then name exactly one descriptor.  The socket is looked at,
    not taken: see :func:`adopt`.  Raises :class:`EndpointError`.
    """
    if text.startswith("systemd:"):
        fds = systemd_descriptors(text[len("systemd:") :], environ, text=text)
        if len(fds) != 1:
            raise EndpointError(
                text, f"expected one socket, but systemd passed {len(fds)}; name one: systemd:NAME"
            )
        fd = fds[0]
    else:
        number = text[len("fd:") :]
        if not (number.isascii() and number.isdigit()):
            raise EndpointError(text, "expected fd:N with N a descriptor number (fd:3)")
        fd = int(number)
    return _inspect(text, fd)


def _inspect(text: str, fd: int) -> InheritedSocket:
    try:
        probe = socket.socket(fileno=os.dup(fd))
    except OSError as exc:
        if exc.errno == errno.EBADF:
            raise EndpointError(
                text, f"expected an open socket on descriptor {fd}, but it is not open"
            ) from None
        raise EndpointError(text, f"expected a socket on descriptor {fd}: {exc.strerror}") from None
    with probe:
        try:
            domain = probe.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)
            kind = probe.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
            listening = probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            address = probe.getsockname()
        except OSError as exc:
            raise EndpointError(
                text, f"expected a socket on descriptor {fd}: {exc.strerror}"
            ) from None
    transport = _KINDS.get((domain, kind))
    if transport is None:
        raise EndpointError(
            text, f"expected a TCP, UDP or Unix stream/datagram socket on descriptor {fd}"
        )
    if kind == socket.SOCK_STREAM and not listening:
        raise EndpointError(
            text,
            f"expected a listening socket on descriptor {fd}; it is a stream socket not listening",
        )
    if domain == socket.AF_UNIX:
        raw = address if isinstance(address, bytes) else os.fsencode(address)
        if not raw:
            raise EndpointError(text, f"expected a bound socket on descriptor {fd}")
        if raw.startswith(b"\x00"):
            path = "@" + raw[1:].decode("utf-8", "backslashreplace")
        else:
            path = os.fsdecode(raw)
        return InheritedSocket(fd, transport, None, 0, path)
    host, port = address[0], address[1]
    if port == 0:
        raise EndpointError(text, f"expected a bound socket on descriptor {fd}")
    return InheritedSocket(fd, transport, host, port, None)


def adopt(fd: int) -> socket.socket:
    """Take descriptor ``fd`` as a socket object (closing it closes ``fd``); set close-on-exec."""
    os.set_inheritable(fd, False)
    return socket.socket(fileno=fd)
