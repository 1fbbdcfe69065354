"""What a server process costs, read from /proc: memory, descriptors, threads, children, CPU."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "cpu_seconds",
    "descendants",
    "fd_count",
    "memory_kb",
    "thread_count",
    "zombies",
]

_TICK = os.sysconf("SC_CLK_TCK")


def _status(pid: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _kb(text: str) -> int:
    return int(text.split()[0])


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (any thread's)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        found.extend(int(word) for word in text.split())
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, children first."""
    found: list[int] = []
    todo = children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children(child))
    return found


def _private_dirty_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in text.splitlines():
        if line.startswith("Private_Dirty:"):
            return _kb(line.split(":", 1)[1])
    return 0


def memory_kb(pid: int) -> int:
    """The server's resident memory: VmRSS of ``pid`` plus what each child wrote for itself.

    A forked child shares its parent's pages until it writes them, so summing
    children's RSS would count the same pages many times; their Private_Dirty
    is what each one really adds.
    """
    total = _kb(_status(pid)["VmRSS"])
    for child in descendants(pid):
        total += _private_dirty_kb(child)
    return total


def fd_count(pid: int) -> int:
    """Open descriptors of ``pid`` itself."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_count(pid: int) -> int:
    return int(_status(pid)["Threads"])


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def zombies(pid: int) -> list[int]:
    """Children of ``pid`` that exited and were not reaped."""
    return [child for child in descendants(pid) if _state(child) == "Z"]


def _cpu_ticks(pid: int, waited_children: bool) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    fields = stat.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14-17.
    ticks = int(fields[11]) + int(fields[12])
    if waited_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid``, its reaped children and its live descendants."""
    ticks = _cpu_ticks(pid, True)
    for child in descendants(pid):
        ticks += _cpu_ticks(child, False)
    return ticks / _TICK
