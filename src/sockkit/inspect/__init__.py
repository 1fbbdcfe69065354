"""The socket inspector: every socket on the machine, as iproute2 ``ss`` sees it.

Data comes from the kernel's sock_diag netlink interface (inet_diag for
TCP/UDP over IPv4 and IPv6, unix_diag), with ``/proc/net`` as the fallback
(``SOCKKIT_SS_SOURCE=proc`` forces it); processes come from
``/proc/PID/fd``.  The parsers -- bytes or text in, :class:`SocketRecord`
values out -- are pure and live apart from the I/O that feeds them:

* :mod:`._netlink` (sock_diag requests and replies), :mod:`._procnet`
  (``/proc/net`` text), :mod:`._format` (table and JSON), :mod:`._query`
  (ss's state names and selection rules), :func:`diff_snapshots` (watch);
* :mod:`._sockdiag` (the netlink socket), :mod:`._owners` (``/proc/PID/fd``),
  :mod:`._listing` (sources and fallback), :func:`watch_sockets` (polling).

This package is imported by ``sockkit ss`` on every run, so it imports only
what printing a table needs: the records (and the ``dataclasses`` module
under them), :func:`port_owner` and the watch loop load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sockkit.inspect._listing import SOURCES, SocketTable, list_sockets
from sockkit.inspect._query import (
    ALL_STATES,
    CONNECTED_STATES,
    DEFAULT_STATES,
    INET_NETIDS,
    STATE_NAMES,
    UNIX_NETIDS,
    SocketQuery,
    parse_state,
    select_query,
)

if TYPE_CHECKING:
    from sockkit.inspect._annotations import Annotations, format_tcp_info
    from sockkit.inspect._cgroups import cgroup_paths
    from sockkit.inspect._details import SocketDetails, SocketMemory
    from sockkit.inspect._events import destroyed_sockets, event_groups
    from sockkit.inspect._filter import GRAMMAR, FilterError, SocketFilter, parse_filter
    from sockkit.inspect._filter_match import compile_predicate
    from sockkit.inspect._format import (
        event_to_dict,
        format_event,
        format_processes,
        format_table,
        record_to_dict,
    )
    from sockkit.inspect._kill import kill_sockets
    from sockkit.inspect._port_owner import port_owner
    from sockkit.inspect._record import (
        ProcessRef,
        SocketRecord,
        SocketRow,
        display_address,
        record_from_row,
    )
    from sockkit.inspect._services import ServiceNames
    from sockkit.inspect._summary import SocketSummary, format_summary, read_summary
    from sockkit.inspect._tcp_info import TcpInfo
    from sockkit.inspect._watch import (
        SocketEvent,
        diff_snapshots,
        snapshot,
        socket_key,
        watch_sockets,
    )

__all__ = [
    "ALL_STATES",
    "CONNECTED_STATES",
    "DEFAULT_STATES",
    "GRAMMAR",
    "INET_NETIDS",
    "SOURCES",
    "STATE_NAMES",
    "UNIX_NETIDS",
    "Annotations",
    "FilterError",
    "ProcessRef",
    "ServiceNames",
    "SocketDetails",
    "SocketEvent",
    "SocketFilter",
    "SocketMemory",
    "SocketQuery",
    "SocketRecord",
    "SocketRow",
    "SocketSummary",
    "SocketTable",
    "TcpInfo",
    "cgroup_paths",
    "compile_predicate",
    "destroyed_sockets",
    "diff_snapshots",
    "display_address",
    "event_groups",
    "event_to_dict",
    "format_event",
    "format_processes",
    "format_summary",
    "format_table",
    "format_tcp_info",
    "kill_sockets",
    "list_sockets",
    "parse_filter",
    "parse_state",
    "port_owner",
    "read_summary",
    "record_from_row",
    "record_to_dict",
    "select_query",
    "snapshot",
    "socket_key",
    "watch_sockets",
]

_LAZY = {
    "GRAMMAR": "sockkit.inspect._filter",
    "FilterError": "sockkit.inspect._filter",
    "SocketFilter": "sockkit.inspect._filter",
    "parse_filter": "sockkit.inspect._filter",
    "Annotations": "sockkit.inspect._annotations",
    "cgroup_paths": "sockkit.inspect._cgroups",
    "SocketDetails": "sockkit.inspect._details",
    "SocketMemory": "sockkit.inspect._details",
    "destroyed_sockets": "sockkit.inspect._events",
    "event_groups": "sockkit.inspect._events",
    "compile_predicate": "sockkit.inspect._filter_match",
    "kill_sockets": "sockkit.inspect._kill",
    "SocketSummary": "sockkit.inspect._summary",
    "format_summary": "sockkit.inspect._summary",
    "read_summary": "sockkit.inspect._summary",
    "ProcessRef": "sockkit.inspect._record",
    "SocketRecord": "sockkit.inspect._record",
    "SocketRow": "sockkit.inspect._record",
    "display_address": "sockkit.inspect._record",
    "record_from_row": "sockkit.inspect._record",
    "ServiceNames": "sockkit.inspect._services",
    "event_to_dict": "sockkit.inspect._format",
    "format_event": "sockkit.inspect._format",
    "format_processes": "sockkit.inspect._format",
    "format_table": "sockkit.inspect._format",
    "format_tcp_info": "sockkit.inspect._annotations",
    "record_to_dict": "sockkit.inspect._format",
    "TcpInfo": "sockkit.inspect._tcp_info",
    "port_owner": "sockkit.inspect._port_owner",
    "SocketEvent": "sockkit.inspect._watch",
    "diff_snapshots": "sockkit.inspect._watch",
    "snapshot": "sockkit.inspect._watch",
    "socket_key": "sockkit.inspect._watch",
    "watch_sockets": "sockkit.inspect._watch",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sockkit.inspect' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
