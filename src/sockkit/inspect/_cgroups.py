"""cgroup v2 ids to paths, for ``-e``'s ``cgroup:/system.slice/...``.

The kernel reports a socket's cgroup by id; on cgroup v2 that id is the
inode number of the cgroup's directory, so one walk of the hierarchy maps
every id to its path (``/`` for the root), as ss does.
"""

from __future__ import annotations

import os

__all__ = ["cgroup_paths", "cgroup_text"]

CGROUP2_ROOT = "/sys/fs/cgroup"


def cgroup_paths(root: str = CGROUP2_ROOT) -> dict[int, str]:
    """Map cgroup id -> path below ``root`` (``{}`` when there is no cgroup v2 hierarchy)."""
    paths: dict[int, str] = {}
    for directory, _subdirs, _files in os.walk(root):
        try:
            inode = os.stat(directory).st_ino
        except OSError:
            continue
        relative = directory[len(root) :]
        paths[inode] = relative or "/"
    return paths


def cgroup_text(cgroup_id: int, paths: dict[int, str]) -> str:
    """The path for ``cgroup_id``, or ss's ``unreachable:ID`` (hex) when it is not found."""
    return paths.get(cgroup_id) or f"unreachable:{cgroup_id:x}"
