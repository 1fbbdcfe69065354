"""What a server process costs, read from /proc: memory, descriptors, threads, children, CPU."""

from __future__ import annotations

import os
import time
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


def _rollup(pid: int) -> dict[str, int]:
    """``/proc/PID/smaps_rollup`` in kB ({} once the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    fields: dict[str, int] = {}
    for line in text.splitlines()[1:]:
        name, _, value = line.partition(":")
        fields[name] = _kb(value)
    return fields


def memory_kb(pid: int) -> int:
    """The memory of ``pid`` and every process below it, each page counted once.

    A forked child shares its parent's pages until it writes them, so summing
    RSS would count the same pages many times.  Each written page is counted
    as its proportional share (``Pss_Dirty``), so a page a fork server shares
    with its children counts once across them however many there are -- and
    does not jump when the last child exits and the page becomes private
    again.  The top process's clean pages (code, mapped files) count in full.

    The processes are read one after another, so a fork or an exit in the
    middle would count a shared page twice or not at all: the reading is
    repeated until the tree stood still through it (a child that is exiting
    has no memory map left to read).  Without ``Pss_Dirty`` (kernels before
    6.0): VmRSS plus each child's ``Private_Dirty``.
    """
    for _ in range(100):
        tree = descendants(pid)
        top = _rollup(pid)
        if "Pss_Dirty" not in top:
            total = _kb(_status(pid)["VmRSS"])
            return total + sum(_rollup(child).get("Private_Dirty", 0) for child in tree)
        total = top["Rss"] - top["Private_Dirty"] - top["Shared_Dirty"] + top["Pss_Dirty"]
        shares = [_rollup(child).get("Pss_Dirty") for child in tree]
        if None not in shares and descendants(pid) == tree:
            break
        time.sleep(0.01)
    return total + sum(share or 0 for share in shares)


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
