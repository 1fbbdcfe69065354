"""The parsed form of ss's filter expressions: small immutable nodes.

Produced by :func:`~sockkit.inspect._filter.parse_filter`, evaluated by
:mod:`._filter_match` and compiled for the kernel by :mod:`._bytecode`.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "AF_INET",
    "AF_INET6",
    "AF_UNIX",
    "AF_UNSPEC",
    "And",
    "Auto",
    "HostCond",
    "Node",
    "Not",
    "Or",
    "PortCompare",
]

AF_UNSPEC, AF_UNIX, AF_INET, AF_INET6 = 0, 1, 2, 10


class HostCond(NamedTuple):
    """``src``/``dst`` HOST: the local (``side`` ``"s"``) or peer (``"d"``) end matches.

    ``port`` ``None`` matches any port.  ``addresses`` are (family, packed
    address, prefix length) alternatives, any of which may match; none means
    any address.  ``pattern`` is set instead for a Unix glob.
    """

    side: str
    port: int | None
    addresses: tuple[tuple[int, bytes, int], ...] = ()
    pattern: str | None = None


class PortCompare(NamedTuple):
    """``sport``/``dport`` compared with ``>=`` (``op`` ``"ge"``) or ``<=`` (``"le"``)."""

    side: str
    op: str
    port: int


class Auto(NamedTuple):
    """``autobound``: the local port (or Unix name) was chosen by the kernel."""


class Not(NamedTuple):
    term: Node


class And(NamedTuple):
    left: Node
    right: Node


class Or(NamedTuple):
    left: Node
    right: Node


Node = HostCond | PortCompare | Auto | Not | And | Or
