"""Reading ``tcpdump -nn -S -tt -r FILE`` text: an independent decoder to hold sockkit's against."""

from __future__ import annotations

import re
import subprocess
from typing import NamedTuple

_LINE = re.compile(
    r"^(?P<time>\d+\.\d+) IP6? (?P<src>\S+) > (?P<dst>\S+): Flags \[(?P<flags>[^\]]*)\]"
    r"(?:, seq (?P<seq>\d+)(?::\d+)?)?(?:, ack (?P<ack>\d+))?(?:, win (?P<win>\d+))?"
    r".*?, length (?P<length>\d+)"
)
_FLAG_LETTERS = {"S": "SYN", "F": "FIN", "R": "RST", "P": "PSH", ".": "ACK", "U": "URG"}
_ORDER = ("SYN", "FIN", "RST", "PSH", "ACK", "URG")


class Segment(NamedTuple):
    time: float
    src: str
    dst: str
    flags: str
    seq: int | None
    ack: int | None
    window: int | None
    length: int


def tcpdump_segments(pcap: str, port: int) -> list[Segment]:
    """The TCP segments to or from ``port`` in ``pcap``, as tcpdump prints them."""
    out = subprocess.run(
        ["tcpdump", "-nn", "-S", "-tt", "-r", pcap, f"tcp port {port}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    segments = []
    for line in out.splitlines():
        match = _LINE.match(line)
        assert match, f"tcpdump line not understood: {line!r}"
        names = {_FLAG_LETTERS[c] for c in match["flags"]}
        segments.append(
            Segment(
                float(match["time"]),
                _endpoint(match["src"]),
                _endpoint(match["dst"]),
                "+".join(n for n in _ORDER if n in names) or "none",
                int(match["seq"]) if match["seq"] else None,
                int(match["ack"]) if match["ack"] else None,
                int(match["win"]) if match["win"] else None,
                int(match["length"]),
            )
        )
    return segments


def same_packets(ours: list[Segment], theirs: list[Segment]) -> None:
    """Assert the two lists hold the same packets, field for field.

    tcpdump keeps capturing after sockkit's trace has ended (the scenario's
    sockets are closed then), so its later packets are left out.  The two
    take their timestamps at nearly the same point in the kernel (within a
    millisecond; exactly, for most packets).
    """
    assert ours, "sockkit saw no packet"
    last = ours[-1].time + 1e-3
    theirs = [t for t in theirs if t.time <= last]
    assert [s[1:] for s in ours] == [t[1:] for t in theirs]
    for mine, tcpdumps in zip(ours, theirs, strict=True):
        assert abs(mine.time - tcpdumps.time) < 1e-3


def _endpoint(text: str) -> str:
    host, _, port = text.rpartition(".")
    return f"{host}:{port}"


def sockkit_segments(events: list[dict[str, object]]) -> list[Segment]:
    """The same fields from ``sockkit trace --json`` packet events (tcpdump's omissions kept)."""
    segments = []
    for event in events:
        if event.get("event") != "packet" or event["protocol"] != "tcp":
            continue
        flags = str(event["flags"])
        shows_seq = bool(event["length"]) or "SYN" in flags or "FIN" in flags or "RST" in flags
        segments.append(
            Segment(
                float(event["timestamp"]),  # type: ignore[arg-type]
                str(event["src"]),
                str(event["dst"]),
                flags,
                int(event["seq_abs"]) if shows_seq else None,  # type: ignore[call-overload]
                int(event["ack_abs"]) if "ACK" in flags else None,  # type: ignore[call-overload]
                int(event["window_raw"]),  # type: ignore[call-overload]
                int(event["length"]),  # type: ignore[call-overload]
            )
        )
    return segments
