"""CPU time and memory of a process tree, read from /proc (no cgroups needed).

A server may be one process with threads (counted in its /proc/PID/stat), a
pre-forked set of workers, or a process per connection that comes and goes.
:func:`tree_cpu` sums, over the root and every live descendant, the process's
own time plus the time of its reaped children (``cutime``/``cstime``), so a
per-connection child that exits between two samples is still counted: before,
as a live child; after, inside its parent's ``cutime``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["TreeMemory", "process_start_time", "tree_cpu", "tree_memory", "tree_pids"]

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or ``None`` if it is gone."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[19])


def tree_pids(root: int) -> list[int]:
    """``root`` and every live descendant (one pass over /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def _run_time(pid: int) -> float:
    """Seconds on a CPU of ``pid``'s live threads, from the scheduler's ns counters."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by ``root``'s tree, reaped children included.

    Per live process this is the larger of its tick-based user+system time
    (/proc/PID/stat, which also holds its exited threads) and the scheduler's
    nanosecond run time of its live threads (/proc/PID/task/*/schedstat).  The
    second matters: for many processes that each run in short bursts (a process
    per connection) the tick-based figure was measured to miss most of the time.
    Reaped children add their parent's ``cutime``/``cstime``.
    """
    total = 0.0
    for pid in tree_pids(root):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
        own = (int(fields[11]) + int(fields[12])) / _TICK
        total += max(own, _run_time(pid)) + (int(fields[13]) + int(fields[14])) / _TICK
    return total


@dataclass(frozen=True, slots=True)
class TreeMemory:
    """Resident (RSS) and proportional (PSS) memory of a tree, in bytes."""

    rss: int
    pss: int
    processes: int


def tree_memory(root: int) -> TreeMemory:
    """Sum ``Rss`` and ``Pss`` of /proc/PID/smaps_rollup over ``root``'s tree.

    PSS splits pages shared between forked workers fairly, so it is the figure to
    compare across engines; RSS counts shared pages once per process.
    """
    rss = pss = count = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                text = f.read().decode("ascii", "replace")
        except OSError:
            continue
        count += 1
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            if key == "Rss":
                rss += int(rest.split()[0]) * 1024
            elif key == "Pss":
                pss += int(rest.split()[0]) * 1024
    return TreeMemory(rss, pss, count)
