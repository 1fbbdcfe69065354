"""The text ss adds after a socket's columns: ``-o`` timers, ``-e`` details, ``-m`` memory, ``-i`` TCP info.

Where each piece goes, as ss prints it: on the socket's own line, after the
processes, come the timer (``-o``, and ``-e`` which implies it), then the
details (``-e``), and for a Unix socket its memory (``-m``); on a second,
tab-indented line under a TCP or UDP socket come its memory (``-m``) and,
for TCP, the TCP information (``-i``), led by the options negotiated
(``ts sack ...``) when ``-o``/``-e`` is on.  Pure functions of the records.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sockkit.inspect._cgroups import cgroup_text
from sockkit.inspect._details import SocketDetails, SocketMemory, timer_name
from sockkit.inspect._record import SocketRow
from sockkit.inspect._tcp_info import TcpInfo

__all__ = [
    "Annotations",
    "format_bandwidth",
    "format_details",
    "format_memory",
    "format_tcp_info",
    "format_timer",
]

# struct tcp_info's option bits, and the words ss prints for them
_OPTION_WORDS: tuple[tuple[int, str], ...] = (
    (0x01, "ts"),
    (0x40, "usec_ts"),
    (0x02, "sack"),
    (0x08, "ecn"),
    (0x10, "ecnseen"),
    (0x20, "fastopen"),
)
_WSCALE = 0x04
_UNSET_32 = 0xFFFFFFFF
_UNSET_64 = 0xFFFFFFFFFFFFFFFF

Add = Callable[[str], None]


@dataclass(frozen=True)
class Annotations:
    """Which of ss's annotations to add: a callable row -> (same line, next line)."""

    timers: bool = False
    details: bool = False
    memory: bool = False
    tcp_info: bool = False
    numeric: bool = False
    #: cgroup id -> path (from :func:`~sockkit.inspect._cgroups.cgroup_paths`), for ``-e``
    cgroups: Mapping[int, str] = field(default_factory=dict)

    def __call__(self, row: SocketRow) -> tuple[str, str | None]:
        """(text for the socket's line, text for the line under it or ``None`` for no line).

        Like ss, a TCP socket gets the second line with ``-m`` or ``-i`` (a
        UDP one with ``-m``) even when there is nothing to put on it.
        """
        extra = row[14]
        same: list[str] = []
        below: list[str] = []
        unix = row[4] == "unix"
        if (self.timers or self.details) and extra is not None and not unix:
            timer = format_timer(extra)
            if timer:
                same.append(timer)
        if self.memory and extra is not None and extra.memory is not None:
            (same if unix else below).append(format_memory(extra.memory))
        if self.details and extra is not None:
            same.append(format_details(row, extra, self.cgroups))
        info = row[13]
        if self.tcp_info and info is not None:
            below.append(
                format_tcp_info(info, options=self.timers or self.details, numeric=self.numeric)
            )
        wants_line = not unix and (self.memory or (self.tcp_info and row[0] == "tcp"))
        under = " ".join(part for part in below if part) if wants_line else None
        return " ".join(part for part in same if part), under


def format_timer(details: SocketDetails) -> str:
    """``timer:(keepalive,119min,0)``, as ``ss -o`` prints it; ``""`` when no timer runs."""
    if not details.timer:
        return ""
    name = timer_name(details.timer)
    return f"timer:({name},{_ms_timer(details.expires)},{details.retransmits})"


def _ms_timer(milliseconds: int) -> str:
    # ss's rounding: minutes drop the milliseconds, ten minutes or more drop
    # the seconds, ten seconds or more drop the milliseconds
    seconds, msecs = divmod(milliseconds, 1000)
    minutes, seconds = divmod(seconds, 60)
    text = ""
    if minutes:
        msecs = 0
        text = f"{minutes}min"
        if minutes > 9:
            seconds = 0
    if seconds:
        if seconds > 9:
            msecs = 0
        text += f"{seconds}{'.' if msecs else 'sec'}"
    if msecs:
        text += f"{msecs:03d}{'sec' if seconds else 'ms'}"
    return text


def format_memory(memory: SocketMemory) -> str:
    """``skmem:(r0,rb131072,t0,tb16384,f0,w0,o0,bl0,d0)``, as ``ss -m`` prints it."""
    text = f"skmem:(r{memory.r},rb{memory.rb},t{memory.t},tb{memory.tb},f{memory.f}"
    text += f",w{memory.w},o{memory.o}"
    if memory.bl is not None:
        text += f",bl{memory.bl}"
    if memory.d is not None:
        text += f",d{memory.d}"
    return text + ")"


def _shutdown(mask: int) -> str:
    return f"{'-' if mask & 1 else '<'}-{'-' if mask & 2 else '>'}"


def format_details(
    row: SocketRow, details: SocketDetails, cgroups: Mapping[int, str] | None = None
) -> str:
    """What ``ss -e`` adds.

    ``uid:1000 ino:4711 sk:3c cgroup:/ v6only:0 <->`` for TCP/UDP (the uid
    when not root's), ``<-> ino:.. dev:.. peers: ..`` for Unix; ``cgroups``
    names the cgroup ids.
    """
    parts: list[str] = []
    if row[4] == "unix":
        if details.shutdown is not None:
            parts.append(_shutdown(details.shutdown))
        if details.file is not None:
            inode, device = details.file
            parts.append(f"ino:{inode} dev:{os.major(device)}/{os.minor(device)}")
        if details.peers is not None:
            parts.append(" ".join(["peers:", *map(str, details.peers)]))
        return " ".join(parts)
    if row[10]:
        parts.append(f"uid:{row[10]}")
    parts.append(f"ino:{row[9]} sk:{details.cookie:x}")
    if details.cgroup_id:
        parts.append(f"cgroup:{cgroup_text(details.cgroup_id, dict(cgroups or {}))}")
    # a full socket reports its shutdown state, and an IPv6 listener or
    # unconnected one its v6only; a TIME-WAIT or request socket neither
    if details.shutdown is not None:
        if row[4] == "inet6" and row[1] in ("LISTEN", "UNCONN"):
            parts.append(f"v6only:{int(bool(row[11]))}")
        parts.append(_shutdown(details.shutdown))
    return " ".join(parts)


def format_bandwidth(bits_per_second: float, numeric: bool = False) -> str:
    """A rate as ss prints it: ``145.6G`` (or every digit with ``-n``); add the unit yourself."""
    if numeric:
        return f"{bits_per_second:.0f}"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if bits_per_second >= scale:
            return f"{bits_per_second / scale:.3g}{suffix}"
    return f"{bits_per_second:g}"


def _ms(microseconds: int) -> str:
    return f"{microseconds / 1000:g}"


def format_tcp_info(info: TcpInfo, *, options: bool = False, numeric: bool = False) -> str:
    """ss's ``-i`` text for one socket, field by field in ss's order, leaving out zeros.

    ``options`` leads with the negotiated options (``ts sack ecn ...``), as ss
    does with ``-o``/``-e``; ``numeric`` prints rates with every digit (``-n``).
    """
    parts: list[str] = []
    add = parts.append
    opts = info.options or 0
    if options:
        parts += [word for bit, word in _OPTION_WORDS if opts & bit]
    if info.congestion:
        add(info.congestion)
    if opts & _WSCALE and info.snd_wscale is not None:
        add(f"wscale:{info.snd_wscale},{info.rcv_wscale}")
    if info.rto and info.rto != 3_000_000:
        add(f"rto:{_ms(info.rto)}")
    if info.backoff:
        add(f"backoff:{info.backoff}")
    if info.rtt:
        add(f"rtt:{_ms(info.rtt)}/{_ms(info.rttvar or 0)}")
    if info.ato:
        add(f"ato:{_ms(info.ato)}")
    _counters(add, info, ("mss", "snd_mss"), ("pmtu", "pmtu"), ("rcvmss", "rcv_mss"))
    _counters(add, info, ("advmss", "advmss"), ("cwnd", "snd_cwnd"))
    if info.snd_ssthresh and info.snd_ssthresh < 0xFFFF:
        add(f"ssthresh:{info.snd_ssthresh}")
    _counters(
        add,
        info,
        ("bytes_sent", "bytes_sent"),
        ("bytes_retrans", "bytes_retrans"),
        ("bytes_acked", "bytes_acked"),
        ("bytes_received", "bytes_received"),
        ("segs_out", "segs_out"),
        ("segs_in", "segs_in"),
        ("data_segs_out", "data_segs_out"),
        ("data_segs_in", "data_segs_in"),
    )
    _module(add, info, numeric)
    send = info.send_rate
    if send:
        add(f"send {format_bandwidth(send, numeric)}bps")
    _counters(add, info, ("lastsnd", "last_data_sent"), ("lastrcv", "last_data_recv"))
    _counters(add, info, ("lastack", "last_ack_recv"))
    _rates(add, info, numeric)
    _losses(add, info)
    _counters(add, info, ("rcv_space", "rcv_space"), ("rcv_ssthresh", "rcv_ssthresh"))
    _counters(add, info, ("notsent", "notsent_bytes"))
    if info.min_rtt and info.min_rtt != _UNSET_32:
        add(f"minrtt:{_ms(info.min_rtt)}")
    _counters(add, info, ("rcv_ooopack", "rcv_ooopack"), ("snd_wnd", "snd_wnd"))
    _counters(add, info, ("rcv_wnd", "rcv_wnd"), ("rehash", "rehash"))
    return " ".join(parts)


def _counters(add: Add, info: TcpInfo, *pairs: tuple[str, str]) -> None:
    for label, name in pairs:
        value = getattr(info, name)
        if value:
            add(f"{label}:{value}")


def _module(add: Add, info: TcpInfo, numeric: bool) -> None:
    if info.dctcp_enabled:
        add(
            f"dctcp:(ce_state:{info.dctcp_ce_state},alpha:{info.dctcp_alpha},"
            f"ab_ecn:{info.dctcp_ab_ecn},ab_tot:{info.dctcp_ab_tot})"
        )
    elif info.dctcp_enabled is not None:
        add("dctcp:fallback_mode")
    if info.bbr_bw is not None:
        text = f"bbr:(bw:{format_bandwidth(info.bbr_bw * 8.0, numeric)}bps"
        text += f",mrtt:{(info.bbr_min_rtt or 0) / 1000:g}"
        if info.bbr_pacing_gain:
            text += f",pacing_gain:{info.bbr_pacing_gain / 256:g}"
        if info.bbr_cwnd_gain:
            text += f",cwnd_gain:{info.bbr_cwnd_gain / 256:g}"
        add(text + ")")


def _rates(add: Add, info: TcpInfo, numeric: bool) -> None:
    pacing = info.pacing_rate
    if pacing and pacing != _UNSET_64:
        text = f"pacing_rate {format_bandwidth(pacing * 8.0, numeric)}bps"
        top = info.max_pacing_rate
        if top and top != _UNSET_64:
            text += f"/{format_bandwidth(top * 8.0, numeric)}bps"
        add(text)
    if info.delivery_rate:
        add(f"delivery_rate {format_bandwidth(info.delivery_rate * 8.0, numeric)}bps")
    _counters(add, info, ("delivered", "delivered"), ("delivered_ce", "delivered_ce"))
    if info.delivery_rate_app_limited:
        add("app_limited")
    busy = info.busy_time
    if busy:
        add(f"busy:{busy // 1000}ms")
        limits = (("rwnd_limited", info.rwnd_limited), ("sndbuf_limited", info.sndbuf_limited))
        for label, value in limits:
            if value:
                add(f"{label}:{value // 1000}ms({100.0 * value / busy:.1f}%)")


def _losses(add: Add, info: TcpInfo) -> None:
    _counters(add, info, ("unacked", "unacked"))
    if info.retrans or info.total_retrans:
        add(f"retrans:{info.retrans or 0}/{info.total_retrans or 0}")
    _counters(add, info, ("lost", "lost"))
    if info.sacked and info.state != 10:  # a listener's "sacked" is its backlog
        add(f"sacked:{info.sacked}")
    _counters(add, info, ("dsack_dups", "dsack_dups"), ("fackets", "fackets"))
    if info.reordering is not None and info.reordering != 3:
        add(f"reordering:{info.reordering}")
    _counters(add, info, ("reord_seen", "reord_seen"))
    if info.rcv_rtt:
        add(f"rcv_rtt:{_ms(info.rcv_rtt)}")
