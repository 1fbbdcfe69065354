"""The socket table: sock_diag netlink first, ``/proc/net`` when netlink is not there.

:class:`SocketTable` keeps one netlink socket open for repeated listings
(``--watch``); :func:`list_sockets` is the one-shot form.  Sockets come in
ss's order: Unix, then UDP, then TCP, IPv4 before IPv6, each in the kernel's
order.

The source is chosen by the ``source`` argument or the ``SOCKKIT_SS_SOURCE``
environment variable: ``netlink`` (fail if unavailable), ``proc`` (read
``/proc/net`` only) or ``auto`` (the default: netlink, and ``/proc`` for any
table netlink cannot dump, as ss does).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING

from sockkit._errors import SockkitError, UsageError, translate_os_error
from sockkit.inspect._netlink import (
    AF_INET,
    AF_INET6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    inet_request,
    parse_inet_dump,
    port_bytecode,
)
from sockkit.inspect._query import SocketQuery
from sockkit.inspect._sockdiag import SockDiag
from sockkit.inspect._unix_diag import parse_unix_dump, unix_request

if TYPE_CHECKING:
    from sockkit.inspect._record import ProcessRef, SocketRecord, SocketRow

__all__ = ["SOURCES", "SocketTable", "list_sockets"]

SOURCES = ("auto", "netlink", "proc")
SOURCE_VARIABLE = "SOCKKIT_SS_SOURCE"

Owners = Mapping[int, "tuple[ProcessRef, ...]"]

_INET_TABLES = (("udp", IPPROTO_UDP), ("tcp", IPPROTO_TCP))
_FAMILIES = (("inet", AF_INET, ""), ("inet6", AF_INET6, "6"))


def _chosen_source(source: str | None) -> str:
    chosen = source or os.environ.get(SOURCE_VARIABLE) or "auto"
    if chosen not in SOURCES:
        raise UsageError(f"unknown socket source {chosen!r}; expected one of: {', '.join(SOURCES)}")
    return chosen


class SocketTable:
    """Lists sockets, reusing one netlink socket across calls.

    ``source`` is ``auto``, ``netlink`` or ``proc`` (default: the
    ``SOCKKIT_SS_SOURCE`` variable, else ``auto``); an unknown one raises
    :class:`UsageError`.  Call :meth:`read` as often as needed, then
    :meth:`close` (or use ``with``).
    """

    def __init__(self, source: str | None = None, proc: str = "/proc") -> None:
        self.source = _chosen_source(source)
        self._proc = proc
        self._diag: SockDiag | None = None
        self._netlink_failed = self.source == "proc"

    def read(self, query: SocketQuery | None = None) -> list[SocketRecord]:
        """The sockets that pass ``query`` (default: ss's default selection).

        Raises :class:`SockkitError` when the ``netlink`` source was demanded
        and fails, or when ``/proc/net`` cannot be read either.
        """
        from sockkit.inspect._record import record_from_row

        return list(map(record_from_row, self.rows(query)))

    def rows(self, query: SocketQuery | None = None) -> list[SocketRow]:
        """What :meth:`read` returns, as rows (tuples in :class:`SocketRecord` field order).

        The cheap form, for printing large tables; raises what :meth:`read` raises.
        """
        query = query or SocketQuery()
        kernel_filter = port_bytecode(query.sport, query.dport, query.port)
        keep = None
        if query.expression is not None:
            from sockkit.inspect._bytecode import bytecode_and, compile_bytecode
            from sockkit.inspect._filter_match import compile_predicate

            keep = compile_predicate(query.expression)
            compiled = compile_bytecode(query.expression)
            if compiled is not None:
                kernel_filter = bytecode_and(kernel_filter, compiled) if kernel_filter else compiled
        owners = None
        if query.processes:
            from sockkit.inspect._owners import socket_owners

            owners = socket_owners(proc=self._proc)
        rows: list[SocketRow] = []
        if query.wants("u_str") or query.wants("u_dgr") or query.wants("u_seq"):
            unix = self._netlink_unix(query, owners)
            if unix is None:
                from sockkit.inspect._procnet import parse_proc_unix

                unix = parse_proc_unix(self._read("net/unix"), query.states, owners)
            rows += [row for row in unix if row[0] in query.netids]
        for netid, protocol in _INET_TABLES:
            if not query.wants(netid):
                continue
            for family, af, suffix in _FAMILIES:
                if family not in query.families:
                    continue
                found = self._netlink_inet(query, owners, netid, af, protocol, kernel_filter)
                if found is None:
                    from sockkit.inspect._procnet import parse_proc_inet

                    text = self._read(f"net/{netid}{suffix}")
                    found = parse_proc_inet(text, netid, query.states, owners)
                    if query.has_port_filter:
                        found = [r for r in found if query.port_matches(r[6], r[8])]
                rows += found
        if keep is not None:
            # as ss does, also after the kernel's filter: it may have run none
            # of it, and its ``autobound`` test differs from ss's
            rows = list(filter(keep, rows))
        return rows

    def _netlink(self) -> SockDiag | None:
        if self._netlink_failed:
            return None
        if self._diag is None:
            try:
                self._diag = SockDiag()
            except OSError as exc:
                self._netlink_failed = True
                self._fall_back(exc)
                return None
        return self._diag

    def _fall_back(self, exc: OSError) -> None:
        # Like ss: a table netlink cannot dump (no sock_diag, or no diag
        # module for that protocol) is read from /proc instead.
        if self.source == "netlink":
            raise translate_os_error(
                exc, "read the socket table from", "sock_diag netlink"
            ) from exc

    def _netlink_unix(self, query: SocketQuery, owners: Owners | None) -> list[SocketRow] | None:
        diag = self._netlink()
        if diag is None:
            return None
        try:
            details = query.details or query.memory
            return diag.dump(
                unix_request(query.states, vfs=query.details, memory=query.memory),
                partial(parse_unix_dump, owners=owners, details=details),
            )
        except OSError as exc:
            self._fall_back(exc)
            return None

    def _netlink_inet(
        self,
        query: SocketQuery,
        owners: Owners | None,
        netid: str,
        af: int,
        protocol: int,
        bytecode: bytes,
    ) -> list[SocketRow] | None:
        diag = self._netlink()
        if diag is None:
            return None
        request = inet_request(
            af,
            protocol,
            query.states,
            tcp_info=query.tcp_info,
            memory=query.memory,
            bytecode=bytecode,
        )
        parse = partial(
            parse_inet_dump,
            netid=netid,
            owners=owners,
            tcp_info=query.tcp_info,
            details=query.details or query.memory,
        )
        try:
            return diag.dump(request, parse)
        except OSError as exc:
            self._fall_back(exc)
            return None

    def _read(self, name: str) -> str:
        path = f"{self._proc}/{name}"
        try:
            with open(path, encoding="ascii", errors="replace") as file:
                return file.read()
        except FileNotFoundError:
            # no IPv6 (or no such protocol) in this kernel: nothing to list
            return ""
        except OSError as exc:
            raise SockkitError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        if self._diag is not None:
            self._diag.close()
            self._diag = None

    def __enter__(self) -> SocketTable:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def list_sockets(
    query: SocketQuery | None = None, *, source: str | None = None
) -> list[SocketRecord]:
    """Every socket on this machine that passes ``query``, as :class:`SocketRecord` values.

    Without a query, ss's default selection (connected sockets of every kind).
    ``source`` is ``auto`` (default), ``netlink`` or ``proc``; see the module
    docstring.  Raises :class:`SockkitError` if no source can be read.
    """
    with SocketTable(source) as table:
        return table.read(query)
