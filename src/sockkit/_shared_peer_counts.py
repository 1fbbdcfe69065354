"""Per-address connection counts that forked processes share: ``--max-conns-per-ip`` for fork.

The fork engine admits in the parent but, behind ``--proxy-protocol``, the
client's address is known only in the child that read the PROXY header.  So
the counts live in one shared anonymous mapping that every child inherits,
and a child takes and gives back its slot there.

Rules, and why:

- A table of :data:`SLOTS` entries (16-byte address, 32-bit count), open
  addressing with linear probing.  An entry once used is never emptied, only
  set to count 0, so every probe chain stays whole; an entry at count 0 is
  reused by the next new address on its chain.  Its size is fixed, so a
  flood of distinct addresses costs probe time, never memory.
- When every entry holds a live count the address is refused (fail closed):
  that is :data:`SLOTS` distinct clients with a connection open at once,
  far past what a process per connection serves.
- Mutual exclusion between processes is a POSIX record lock (``lockf``) on
  the memfd behind the mapping: such locks belong to a process, so a parent
  and its children exclude each other (flock would not: they share the
  open file).
- A child gives its slot back when its connection ends.  One killed by
  SIGKILL (only past the drain deadline, when the server is exiting) keeps it.
"""

from __future__ import annotations

import fcntl
import ipaddress
import mmap
import os
import struct

__all__ = ["SLOTS", "SharedPeerCounts"]

#: Entries in the table: distinct addresses with connections open at once.
SLOTS = 4096
_ENTRY = struct.Struct("=16sI")  # address (IPv4 as v4-mapped IPv6), open count
_UNUSED = bytes(16)


def _key(host: str) -> bytes:
    addr = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv4Address):
        addr = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + addr.packed)
    return addr.packed


class SharedPeerCounts:
    """:class:`sockkit._accept.PeerCounts`' interface, shared with forked children."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._fd = os.memfd_create("sockkit-peer-counts", os.MFD_CLOEXEC)
        os.ftruncate(self._fd, SLOTS * _ENTRY.size)
        self._map = mmap.mmap(self._fd, SLOTS * _ENTRY.size, mmap.MAP_SHARED)

    def _find(self, key: bytes) -> tuple[int | None, int, int | None]:
        """``key``'s entry offset (None: absent), its count, and where a new entry would go."""
        start = int.from_bytes(key[-4:], "big") * 2654435761 % SLOTS
        free: int | None = None
        for step in range(SLOTS):
            offset = (start + step) % SLOTS * _ENTRY.size
            found, count = _ENTRY.unpack_from(self._map, offset)
            if found == key:
                return offset, count, free
            if found == _UNUSED:
                return None, 0, free if free is not None else offset
            if count == 0 and free is None:
                free = offset
        return None, 0, free

    def take(self, host: str) -> bool:
        """Count one more connection from ``host``; False (nothing counted) if at the limit."""
        key = _key(host)
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            offset, count, free = self._find(key)
            if offset is None:
                if free is None:
                    return False  # every entry holds a live count
                offset = free
            if count >= self.limit:
                return False
            _ENTRY.pack_into(self._map, offset, key, count + 1)
            return True
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def give_back(self, host: str) -> None:
        key = _key(host)
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            offset, count, _ = self._find(key)
            if offset is not None and count > 0:
                _ENTRY.pack_into(self._map, offset, key, count - 1)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def open_from(self, host: str) -> int:
        return self._find(_key(host))[1]

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
