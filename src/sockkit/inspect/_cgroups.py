"""cgroup v2 ids to paths, for ``-e``'s ``cgroup:/system.slice/...``.

The kernel reports a socket's cgroup by id; on cgroup v2 that id is the
inode number of the cgroup's directory, so one walk of the cgroup2 mount
(found in ``/proc/self/mounts``, not crossing into other file systems) maps
every id to its path (``/`` for the root), as ss does.
"""

from __future__ import annotations

import os

__all__ = ["cgroup_paths", "cgroup_text"]


def cgroup2_mount(mounts: str = "/proc/self/mounts") -> str | None:
    """Where the cgroup v2 hierarchy is mounted, or ``None``."""
    try:
        with open(mounts, encoding="utf-8", errors="replace") as file:
            for line in file:
                fields = line.split()
                if len(fields) > 2 and fields[2] == "cgroup2":
                    return fields[1]
    except OSError:
        pass
    return None


def cgroup_paths(root: str | None = None) -> dict[int, str]:
    """Map cgroup id -> path below ``root`` (default: the cgroup2 mount; ``{}`` if none)."""
    root = root or cgroup2_mount()
    paths: dict[int, str] = {}
    if root is None:
        return paths
    try:
        device = os.stat(root).st_dev
    except OSError:
        return paths
    for directory, subdirs, _files in os.walk(root):
        try:
            info = os.stat(directory)
        except OSError:
            continue
        if info.st_dev != device:
            subdirs.clear()
            continue
        paths[info.st_ino] = directory[len(root) :] or "/"
    return paths


def cgroup_text(cgroup_id: int, paths: dict[int, str]) -> str:
    """The path for ``cgroup_id``, or ss's ``unreachable:ID`` (hex) when it is not found."""
    return paths.get(cgroup_id) or f"unreachable:{cgroup_id:x}"
