"""Live transitions: list the sockets again and again, report what changed.

A socket is followed by its key: (netid, local end, peer end) for a
connected TCP/UDP socket, whose inode is not stable (0 while it waits to be
accepted and once its process closed it, e.g. in TIME-WAIT); the inode is
added for one without a peer (a listener, an unconnected UDP socket), whose
inode is stable and whose address SO_REUSEPORT lets several share; and
(netid, local end, inode) for Unix sockets, whose names are not unique.
Should two sockets still share a key, their inodes tell them apart.

Between two listings a socket may have *appeared*, *changed* state, or
*disappeared*; queue lengths moving is not a change.  :func:`diff_snapshots`
is the pure rule; :func:`watch_sockets` is the polling loop.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

from sockkit.inspect._listing import SocketTable
from sockkit.inspect._owners import socket_owners
from sockkit.inspect._query import SocketQuery
from sockkit.inspect._record import ProcessRef, SocketRecord

__all__ = ["SocketEvent", "diff_snapshots", "snapshot", "socket_key", "watch_sockets"]

EventKind = Literal["appeared", "changed", "disappeared"]
Key = tuple[object, ...]


@dataclass(frozen=True)
class SocketEvent:
    """One change: ``record`` is the socket as now seen (as last seen, if it disappeared).

    ``old_state`` is the state before a ``changed`` event, else ``None``;
    ``time`` is the wall-clock time of the listing that saw it.
    """

    kind: EventKind
    record: SocketRecord
    old_state: str | None
    time: float


def socket_key(record: SocketRecord) -> Key:
    """The identity :func:`diff_snapshots` follows a socket by (see the module docstring)."""
    if record.family == "unix":
        return (record.netid, record.local_address, record.inode)
    if not record.peer_port:
        return (record.netid, record.local, record.peer, record.inode)
    return (record.netid, record.local, record.peer)


def snapshot(records: Iterable[SocketRecord]) -> dict[Key, SocketRecord]:
    """Records keyed by :func:`socket_key`, in listing order; shared keys get the inode added."""
    listed = list(records)
    counts = Counter(socket_key(record) for record in listed)
    result: dict[Key, SocketRecord] = {}
    for record in listed:
        key = socket_key(record)
        if counts[key] > 1:
            key = (*key, record.inode)
        result[key] = record
    return result


def diff_snapshots(
    before: dict[Key, SocketRecord], after: dict[Key, SocketRecord], when: float = 0.0
) -> list[SocketEvent]:
    """The events that turn ``before`` into ``after``.

    Appearances and state changes in ``after``'s order, then disappearances.
    """
    events: list[SocketEvent] = []
    for key, record in after.items():
        old = before.get(key)
        if old is None:
            events.append(SocketEvent("appeared", record, None, when))
        elif old.state != record.state:
            events.append(SocketEvent("changed", record, old.state, when))
    for key, record in before.items():
        if key not in after:
            events.append(SocketEvent("disappeared", record, None, when))
    return events


def watch_sockets(
    query: SocketQuery,
    interval: float,
    *,
    until: float | None = None,
    table: SocketTable | None = None,
) -> Iterator[list[SocketEvent]]:
    """List the sockets every ``interval`` seconds and yield each listing's events (often none).

    The first listing is the baseline: it yields an empty list at once, so the
    caller knows that changes from then on will be seen.  Stops once the
    ``time.monotonic()`` deadline ``until`` passes (never, if ``None``).  With
    ``query.processes``, owners are looked up only for sockets not seen
    before, so a fast watch does not rescan every process each time.
    Raises what :meth:`SocketTable.read` raises.
    """
    own_table = table is None
    lister = table or SocketTable()
    plain = query._replace(processes=False)
    owners: dict[int, tuple[ProcessRef, ...]] = {}
    try:
        previous = snapshot(lister.read(plain))
        yield []
        next_at = time.monotonic() + interval
        while True:
            now = time.monotonic()
            if until is not None and now >= until:
                return
            pause = next_at - now if until is None else min(next_at, until) - now
            if pause > 0:
                time.sleep(pause)
            next_at = max(next_at + interval, time.monotonic())
            current = snapshot(lister.read(plain))
            events = diff_snapshots(previous, current, time.time())
            previous = current
            if query.processes and events:
                events = _with_owners(events, owners)
            yield events
    finally:
        if own_table:
            lister.close()


def _with_owners(
    events: list[SocketEvent], owners: dict[int, tuple[ProcessRef, ...]]
) -> list[SocketEvent]:
    unknown = {e.record.inode for e in events if e.record.inode and e.record.inode not in owners}
    if unknown:
        found = socket_owners(unknown)
        for inode in unknown:
            owners[inode] = found.get(inode, ())
    return [
        replace(e, record=replace(e.record, processes=owners.get(e.record.inode, ())))
        if e.record.inode
        else e
        for e in events
    ]
