"""What ``-e``, ``-o`` and ``-m`` add to a socket: its cookie, timer, shutdown state and memory.

Like :mod:`._tcp_info`, kept apart from the records because only those flags
need it: a plain listing never imports this module.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["SocketDetails", "SocketMemory", "parse_skmeminfo", "timer_name"]


@dataclass(frozen=True)
class SocketMemory:
    """The kernel's ``SK_MEMINFO_*`` counters (bytes), as ``ss -m`` prints them.

    ``r`` receive memory allocated, ``rb`` receive buffer size, ``t`` transmit
    memory allocated, ``tb`` send buffer size, ``f`` forward-allocated, ``w``
    write queue, ``o`` option memory, ``bl`` backlog, ``d`` drops (the last
    two ``None`` on kernels that do not report them).
    """

    r: int
    rb: int
    t: int
    tb: int
    f: int
    w: int
    o: int
    bl: int | None = None
    d: int | None = None


@dataclass(frozen=True)
class SocketDetails:
    """A socket's identity and state beyond the table's columns.

    ``cookie`` is the kernel's socket cookie (ss's ``sk:``), ``cgroup_id``
    the cgroup v2 id (0 when unknown).  ``timer`` is the pending TCP timer
    (0 none, 1 retransmit, 2 keepalive, 3 TIME-WAIT, 4 zero-window probe, 5
    delayed ack) with ``expires`` milliseconds left and ``retransmits`` so
    far.  ``shutdown`` is the kernel's ``sk_shutdown`` bits (1: receiving
    shut, 2: sending shut), ``None`` when not reported.  ``memory`` is set
    when asked for (``-m``).  ``file`` is the (inode, device) of a Unix
    socket's bound file, ``peers`` the inodes of the connections waiting in
    a Unix listener's queue.
    """

    cookie: int = 0
    cgroup_id: int = 0
    timer: int = 0
    expires: int = 0
    retransmits: int = 0
    shutdown: int | None = None
    memory: SocketMemory | None = None
    file: tuple[int, int] | None = None
    peers: tuple[int, ...] | None = None


_TIMER_NAMES = ("off", "on", "keepalive", "timewait", "persist", "delack")


def timer_name(timer: int) -> str:
    """ss's name for a timer number: ``on`` (retransmit), ``keepalive``, ``timewait``, ..."""
    return _TIMER_NAMES[timer] if 0 <= timer < len(_TIMER_NAMES) else "unknown"


_U32 = struct.Struct("=I")


def parse_skmeminfo(raw: bytes) -> SocketMemory:
    """Decode an ``INET_DIAG_SKMEMINFO`` / ``UNIX_DIAG_MEMINFO`` payload (u32 counters)."""
    count = min(len(raw) // 4, 9)
    values = [_U32.unpack_from(raw, 4 * i)[0] for i in range(count)]
    values += [0] * (7 - len(values)) if len(values) < 7 else []
    return SocketMemory(*values)
