"""Port numbers to service names, the way ss does it without ``-n``.

ss leaves ports in the local ephemeral range numeric (``/etc/services``
names many of them for long-dead protocols, which would only mislead), looks
the rest up with getservbyport for the socket's protocol, and remembers each
answer.  Port 0 prints as ``*``.
"""

from __future__ import annotations

import socket

__all__ = ["ServiceNames", "ephemeral_range"]

_DEFAULT_RANGE = (1024, 4999)  # what ss assumes when the sysctl cannot be read


def ephemeral_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int]:
    """The kernel's ephemeral port range, e.g. ``(32768, 60999)``."""
    try:
        with open(path) as file:
            low, high = (int(word) for word in file.read().split()[:2])
    except (OSError, ValueError):
        return _DEFAULT_RANGE
    return low, high


class ServiceNames:
    """A caching ``(port, protocol) -> text`` namer for :func:`~sockkit.inspect.format_table`."""

    def __init__(self, ephemeral: tuple[int, int] | None = None) -> None:
        self._low, self._high = ephemeral or ephemeral_range()
        self._cache: dict[tuple[int, str], str] = {}

    def __call__(self, port: int, protocol: str) -> str:
        """The text for ``port`` of ``protocol``; anything but ``tcp``/``udp`` stays numeric."""
        if not port:
            return "*"
        if protocol not in ("tcp", "udp") or self._low <= port <= self._high:
            return str(port)
        key = (port, protocol)
        text = self._cache.get(key)
        if text is None:
            try:
                text = socket.getservbyport(port, protocol)
            except (OSError, OverflowError):
                text = str(port)
            self._cache[key] = text
        return text
