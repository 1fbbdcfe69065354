"""``ss -s``: socket totals per protocol, from ``/proc/net/sockstat``, ``sockstat6`` and ``snmp``.

The counts are the kernel's own (the same files ss reads), so they cover the
whole network namespace at once and cost three small reads, not a dump:

* ``Total`` is ``sockets: used`` -- every socket of every kind;
* ``TCP: N (estab E, closed C, orphaned O, timewait W)``: N is allocated
  TCP sockets plus TIME-WAIT ones, E the ``CurrEstab`` counter of
  ``/proc/net/snmp``, C the allocated ones that are in no hash table;
* then the table of RAW, UDP, TCP (in use), INET (their sum) and FRAG,
  over IPv4 and IPv6.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

__all__ = ["SocketSummary", "format_summary", "parse_summary", "read_summary"]


@dataclass(frozen=True)
class SocketSummary:
    """The counters behind ``ss -s`` (names as in ``/proc/net/sockstat``)."""

    sockets: int = 0
    tcp_inuse: int = 0
    tcp_orphan: int = 0
    tcp_tw: int = 0
    tcp_alloc: int = 0
    tcp6_inuse: int = 0
    udp: int = 0
    udp6: int = 0
    raw: int = 0
    raw6: int = 0
    frag: int = 0
    frag6: int = 0
    tcp_established: int = 0


def _numbers(line: str) -> list[int]:
    # "TCP: inuse 4 orphan 0 tw 59 alloc 4 mem 196" -> the values after each key
    words = line.split()[1:]
    return [int(word) for word in words[1::2] if word.isdigit()]


def parse_summary(sockstat: str, sockstat6: str = "", snmp: str = "") -> SocketSummary:
    """A :class:`SocketSummary` from the three files' texts (missing ones count as zeros)."""
    values: dict[str, int] = {}
    keys = {
        "sockets:": ("sockets",),
        "TCP:": ("tcp_inuse", "tcp_orphan", "tcp_tw", "tcp_alloc"),
        "UDP:": ("udp",),
        "RAW:": ("raw",),
        "FRAG:": ("frag",),
        "TCP6:": ("tcp6_inuse",),
        "UDP6:": ("udp6",),
        "RAW6:": ("raw6",),
        "FRAG6:": ("frag6",),
    }
    for line in (sockstat + "\n" + sockstat6).splitlines():
        names = keys.get(line.split(" ", 1)[0])
        if names:
            values.update(zip(names, _numbers(line), strict=False))
    lines = snmp.splitlines()
    for header, data in itertools.pairwise(lines):
        if header.startswith("Tcp:") and data.startswith("Tcp:"):
            fields = dict(zip(header.split()[1:], data.split()[1:], strict=False))
            if fields.get("CurrEstab", "").isdigit():
                values["tcp_established"] = int(fields["CurrEstab"])
            break
    return SocketSummary(**values)


def read_summary(proc: str = "/proc") -> SocketSummary:
    """The summary of this network namespace now.  Raises OSError if sockstat cannot be read."""

    def read(name: str, required: bool = False) -> str:
        try:
            with open(f"{proc}/net/{name}", encoding="ascii", errors="replace") as file:
                return file.read()
        except OSError:
            if required:
                raise
            return ""

    return parse_summary(read("sockstat", True), read("sockstat6"), read("snmp"))


def format_summary(s: SocketSummary) -> str:
    """The text ``ss -s`` prints for ``s``."""
    closed = s.tcp_alloc - (s.tcp_inuse + s.tcp6_inuse - s.tcp_tw)
    inet4, inet6 = s.raw + s.udp + s.tcp_inuse, s.raw6 + s.udp6 + s.tcp6_inuse
    rows = (
        ("RAW", s.raw, s.raw6),
        ("UDP", s.udp, s.udp6),
        ("TCP", s.tcp_inuse, s.tcp6_inuse),
        ("INET", inet4, inet6),
        ("FRAG", s.frag, s.frag6),
    )
    lines = [
        f"Total: {s.sockets}",
        f"TCP:   {s.tcp_alloc + s.tcp_tw} (estab {s.tcp_established}, closed {closed}, "
        f"orphaned {s.tcp_orphan}, timewait {s.tcp_tw})",
        "",
        "Transport Total     IP        IPv6",
        *(f"{name}\t  {v4 + v6:<9} {v4:<9} {v6:<9}" for name, v4, v6 in rows),
        "",
    ]
    return "\n".join(lines) + "\n"
