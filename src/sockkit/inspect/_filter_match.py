"""A parsed filter expression, evaluated in Python on socket rows.

The kernel runs the compiled form (:mod:`._bytecode`) on TCP/UDP dumps; this
is the same test for everything else -- Unix sockets, ``/proc/net`` tables,
parts the kernel cannot run -- and, as ss does, it is applied to the
kernel's answer as well, so the two never need to agree byte for byte.
An address condition follows the kernel's rule: the families must match,
except that an IPv4 condition matches an IPv4-mapped IPv6 address.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from fnmatch import fnmatchcase

from sockkit.inspect._filter_tree import (
    AF_INET,
    AF_INET6,
    And,
    Auto,
    HostCond,
    Node,
    Not,
    Or,
    PortCompare,
)
from sockkit.inspect._record import SocketRow
from sockkit.inspect._services import ephemeral_range

__all__ = ["Predicate", "compile_predicate"]

Predicate = Callable[[SocketRow], bool]

_MAPPED_PREFIX = b"\0" * 10 + b"\xff\xff"
_PACKED: dict[str, bytes] = {}


def compile_predicate(node: Node) -> Predicate:
    """A function telling whether a row passes ``node``."""
    if isinstance(node, And):
        left, right = compile_predicate(node.left), compile_predicate(node.right)
        return lambda row: left(row) and right(row)
    if isinstance(node, Or):
        first, second = compile_predicate(node.left), compile_predicate(node.right)
        return lambda row: first(row) or second(row)
    if isinstance(node, Not):
        term = compile_predicate(node.term)
        return lambda row: not term(row)
    if isinstance(node, PortCompare):
        port_of = _PORT[node.side]
        port = node.port
        if node.op == "ge":
            return lambda row: port_of(row) >= port
        return lambda row: port_of(row) <= port
    if isinstance(node, Auto):
        return _autobound
    return _host_predicate(node)


def _local_address(row: SocketRow) -> str:
    return row[5]


def _peer_address(row: SocketRow) -> str:
    return row[7]


def _local_port(row: SocketRow) -> int:
    return row[6]


def _peer_port(row: SocketRow) -> int:
    return row[8]


_ADDRESS = {"s": _local_address, "d": _peer_address}
_PORT = {"s": _local_port, "d": _peer_port}


def _host_predicate(cond: HostCond) -> Predicate:
    address_of, port_of = _ADDRESS[cond.side], _PORT[cond.side]
    if cond.pattern is not None:
        pattern = cond.pattern.lower()
        # a Unix glob: the socket's path, compared without regard to case
        return lambda row: row[4] == "unix" and fnmatchcase(address_of(row).lower(), pattern)
    port, alternatives = cond.port, cond.addresses

    def matches(row: SocketRow) -> bool:
        if port is not None and port_of(row) != port:
            return False
        if not alternatives:
            return True
        if row[4] == "unix":
            return False
        packed = _packed(address_of(row))
        return any(_address_matches(packed, *alternative) for alternative in alternatives)

    return matches


def _packed(text: str) -> bytes:
    packed = _PACKED.get(text)
    if packed is None:
        family = socket.AF_INET6 if ":" in text else socket.AF_INET
        packed = _PACKED[text] = socket.inet_pton(family, text)
    return packed


def _address_matches(packed: bytes, family: int, wanted: bytes, prefix: int) -> bool:
    row_family = AF_INET6 if len(packed) == 16 else AF_INET
    if family != row_family:
        if family == AF_INET and packed.startswith(_MAPPED_PREFIX):
            return _prefix_matches(packed[12:], wanted, prefix)
        return False
    return _prefix_matches(packed, wanted, prefix)


def _prefix_matches(address: bytes, wanted: bytes, prefix: int) -> bool:
    whole, bits = divmod(prefix, 8)
    if address[:whole] != wanted[:whole]:
        return False
    if bits:
        mask = (0xFF << (8 - bits)) & 0xFF
        return (address[whole] & mask) == (wanted[whole] & mask)
    return True


_EPHEMERAL: list[tuple[int, int]] = []


def _autobound(row: SocketRow) -> bool:
    if row[4] == "unix":
        # the kernel's autobind name: '@' and five hex digits (or none at all)
        name = row[5]
        return not name or (
            len(name) == 6 and name[0] == "@" and all(c in "0123456789abcdef" for c in name[1:])
        )
    if not _EPHEMERAL:
        _EPHEMERAL.append(ephemeral_range())
    low, high = _EPHEMERAL[0]
    return low <= row[6] <= high
