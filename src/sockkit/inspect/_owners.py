"""Which processes hold which sockets: ``/proc/PID/fd/N -> socket:[INODE]``.

This is how ss's ``-p`` works, and like ss it needs no privilege: processes
whose ``fd`` directory we may not read (another user's, or gone meanwhile)
are skipped without a word, so an unprivileged user sees their own.

The scan is the cost of ``-p`` (one readlink per open descriptor on the
machine), so it opens each ``fd`` directory once and reads the links
relative to it (``readlinkat``), and reads a process's name only when it
holds a socket.
"""

from __future__ import annotations

import os
from collections.abc import Collection

from sockkit.inspect._record import ProcessRef, make_process

__all__ = ["parse_socket_link", "process_name", "socket_owners"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def parse_socket_link(target: str) -> int | None:
    """The inode in a ``socket:[12345]`` link target, or ``None`` for anything else."""
    if target.startswith("socket:[") and target.endswith("]"):
        digits = target[8:-1]
        if digits.isdigit():
            return int(digits)
    return None


def process_name(pid: int, proc: str = "/proc") -> str:
    """The command name of ``pid`` (``/proc/PID/comm``), or ``"?"`` if it cannot be read."""
    try:
        with open(f"{proc}/{pid}/comm", "rb") as comm:
            return comm.read().rstrip(b"\n").decode("utf-8", "replace")
    except OSError:
        return "?"


def socket_owners(
    inodes: Collection[int] | None = None, proc: str = "/proc"
) -> dict[int, tuple[ProcessRef, ...]]:
    """Map socket inode -> the processes (name, pid, fd) that hold it, ordered by pid and fd.

    With ``inodes``, only those sockets are reported (the scan still reads
    every readable descriptor, but builds less).  Never raises for a process
    it cannot read.
    """
    owners: dict[int, tuple[ProcessRef, ...]] = {}
    readlink = os.readlink
    try:
        entries = os.listdir(proc)
    except OSError:
        return owners
    pids = sorted(int(entry) for entry in entries if entry.isdigit())
    for pid in pids:
        try:
            dirfd = os.open(f"{proc}/{pid}/fd", _DIR_FLAGS)
        except OSError:
            continue
        links: list[tuple[str, str]] = []
        try:
            for entry in os.listdir(dirfd):
                try:
                    target = readlink(entry, dir_fd=dirfd)
                except OSError:
                    continue
                if target[:8] == "socket:[":
                    links.append((entry, target))
        except OSError:
            continue
        finally:
            os.close(dirfd)
        if not links:
            continue
        name = process_name(pid, proc)
        get = owners.get
        # procfs lists a process's descriptors in ascending order already
        for entry, target in links:
            inode = int(target[8:-1])
            if inodes is not None and inode not in inodes:
                continue
            ref = make_process(name, pid, int(entry))
            before = get(inode)
            owners[inode] = (ref,) if before is None else (*before, ref)
    return owners
