"""``struct tcp_info``: its layout, its decoding, and :class:`TcpInfo`, what ``-i`` shows.

Kept apart from the other records because it is big (one field per kernel
counter) and only ``-i`` needs it: a listing without ``-i`` never imports it.
The kernel's struct has grown over the years, so it is decoded by length:
a field exists only when the attribute is long enough to hold it.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["TcpInfo", "parse_tcp_info"]

_LITTLE = sys.byteorder == "little"


@dataclass(frozen=True)
class TcpInfo:
    """The kernel's ``struct tcp_info`` for one TCP socket, names without ``tcpi_``.

    Times are in microseconds (``rtt``, ``rttvar``, ``rto``, ``ato``,
    ``min_rtt``, ``rcv_rtt``) or milliseconds (``last_data_sent``,
    ``last_data_recv``, ``last_ack_recv``), rates in bytes per second,
    ``snd_cwnd`` in segments.  A field is ``None`` when the running kernel's
    struct is too short to hold it (older kernels give fewer fields).
    ``congestion`` is the congestion-control algorithm's name, when known;
    the ``bbr_*`` fields are BBR's own view (bandwidth in bytes per second,
    minimum rtt in microseconds, gains in 1/256ths), the ``dctcp_*`` fields
    DCTCP's, ``vegas_rtt`` Vegas's rtt (microseconds), when that module runs.
    """

    state: int | None = None
    ca_state: int | None = None
    retransmits: int | None = None
    probes: int | None = None
    backoff: int | None = None
    options: int | None = None
    snd_wscale: int | None = None
    rcv_wscale: int | None = None
    delivery_rate_app_limited: bool | None = None
    rto: int | None = None
    ato: int | None = None
    snd_mss: int | None = None
    rcv_mss: int | None = None
    unacked: int | None = None
    sacked: int | None = None
    lost: int | None = None
    retrans: int | None = None
    fackets: int | None = None
    last_data_sent: int | None = None
    last_ack_sent: int | None = None
    last_data_recv: int | None = None
    last_ack_recv: int | None = None
    pmtu: int | None = None
    rcv_ssthresh: int | None = None
    rtt: int | None = None
    rttvar: int | None = None
    snd_ssthresh: int | None = None
    snd_cwnd: int | None = None
    advmss: int | None = None
    reordering: int | None = None
    rcv_rtt: int | None = None
    rcv_space: int | None = None
    total_retrans: int | None = None
    pacing_rate: int | None = None
    max_pacing_rate: int | None = None
    bytes_acked: int | None = None
    bytes_received: int | None = None
    segs_out: int | None = None
    segs_in: int | None = None
    notsent_bytes: int | None = None
    min_rtt: int | None = None
    data_segs_in: int | None = None
    data_segs_out: int | None = None
    delivery_rate: int | None = None
    busy_time: int | None = None
    rwnd_limited: int | None = None
    sndbuf_limited: int | None = None
    delivered: int | None = None
    delivered_ce: int | None = None
    bytes_sent: int | None = None
    bytes_retrans: int | None = None
    dsack_dups: int | None = None
    reord_seen: int | None = None
    rcv_ooopack: int | None = None
    snd_wnd: int | None = None
    rcv_wnd: int | None = None
    rehash: int | None = None
    congestion: str | None = None
    bbr_bw: int | None = None
    bbr_min_rtt: int | None = None
    bbr_pacing_gain: int | None = None
    bbr_cwnd_gain: int | None = None
    dctcp_enabled: bool | None = None
    dctcp_ce_state: int | None = None
    dctcp_alpha: int | None = None
    dctcp_ab_ecn: int | None = None
    dctcp_ab_tot: int | None = None
    vegas_rtt: int | None = None

    @property
    def send_rate(self) -> float | None:
        """ss's ``send`` in bits per second: cwnd x mss over the smoothed rtt (vegas's if it runs)."""
        rtt = self.vegas_rtt or self.rtt
        if not rtt or not self.snd_mss or not self.snd_cwnd:
            return None
        return self.snd_cwnd * self.snd_mss * 8_000_000 / rtt

    def as_dict(self) -> dict[str, Any]:
        """The fields the kernel gave, as a plain dict (``None`` fields left out)."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }


#: (field, offset, struct format) in ``struct tcp_info`` (linux/tcp.h); the
#: kernel's struct has grown over the years, so a field exists only when the
#: attribute is long enough to hold it.
_TCP_INFO_LAYOUT: tuple[tuple[str, int, str], ...] = (
    ("state", 0, "B"),
    ("ca_state", 1, "B"),
    ("retransmits", 2, "B"),
    ("probes", 3, "B"),
    ("backoff", 4, "B"),
    ("options", 5, "B"),
    ("rto", 8, "I"),
    ("ato", 12, "I"),
    ("snd_mss", 16, "I"),
    ("rcv_mss", 20, "I"),
    ("unacked", 24, "I"),
    ("sacked", 28, "I"),
    ("lost", 32, "I"),
    ("retrans", 36, "I"),
    ("fackets", 40, "I"),
    ("last_data_sent", 44, "I"),
    ("last_ack_sent", 48, "I"),
    ("last_data_recv", 52, "I"),
    ("last_ack_recv", 56, "I"),
    ("pmtu", 60, "I"),
    ("rcv_ssthresh", 64, "I"),
    ("rtt", 68, "I"),
    ("rttvar", 72, "I"),
    ("snd_ssthresh", 76, "I"),
    ("snd_cwnd", 80, "I"),
    ("advmss", 84, "I"),
    ("reordering", 88, "I"),
    ("rcv_rtt", 92, "I"),
    ("rcv_space", 96, "I"),
    ("total_retrans", 100, "I"),
    ("pacing_rate", 104, "Q"),
    ("max_pacing_rate", 112, "Q"),
    ("bytes_acked", 120, "Q"),
    ("bytes_received", 128, "Q"),
    ("segs_out", 136, "I"),
    ("segs_in", 140, "I"),
    ("notsent_bytes", 144, "I"),
    ("min_rtt", 148, "I"),
    ("data_segs_in", 152, "I"),
    ("data_segs_out", 156, "I"),
    ("delivery_rate", 160, "Q"),
    ("busy_time", 168, "Q"),
    ("rwnd_limited", 176, "Q"),
    ("sndbuf_limited", 184, "Q"),
    ("delivered", 192, "I"),
    ("delivered_ce", 196, "I"),
    ("bytes_sent", 200, "Q"),
    ("bytes_retrans", 208, "Q"),
    ("dsack_dups", 216, "I"),
    ("reord_seen", 220, "I"),
    ("rcv_ooopack", 224, "I"),
    ("snd_wnd", 228, "I"),
    ("rcv_wnd", 232, "I"),
    ("rehash", 236, "I"),
)
_TCP_INFO_STRUCTS = {fmt: struct.Struct("=" + fmt) for fmt in ("B", "I", "Q")}


# the congestion modules' own structs (linux/inet_diag.h), by attribute type
_VEGASINFO, _DCTCPINFO, _BBRINFO = 3, 9, 16
_BBR = struct.Struct("=IIIII")  # bw_lo bw_hi min_rtt pacing_gain cwnd_gain
_DCTCP = struct.Struct("=HHIII")  # enabled ce_state alpha ab_ecn ab_tot
_VEGAS = struct.Struct("=IIII")  # enabled rttcnt rtt minrtt


def _module_values(kind: int, raw: bytes) -> dict[str, int | bool | str | None]:
    if kind == _BBRINFO and len(raw) >= _BBR.size:
        low, high, min_rtt, pacing, cwnd = _BBR.unpack_from(raw)
        return {
            "bbr_bw": (high << 32) | low,
            "bbr_min_rtt": min_rtt,
            "bbr_pacing_gain": pacing,
            "bbr_cwnd_gain": cwnd,
        }
    if kind == _DCTCPINFO and len(raw) >= _DCTCP.size:
        enabled, ce_state, alpha, ab_ecn, ab_tot = _DCTCP.unpack_from(raw)
        return {
            "dctcp_enabled": bool(enabled),
            "dctcp_ce_state": ce_state,
            "dctcp_alpha": alpha,
            "dctcp_ab_ecn": ab_ecn,
            "dctcp_ab_tot": ab_tot,
        }
    if kind == _VEGASINFO and len(raw) >= _VEGAS.size:
        enabled, _count, rtt, _min = _VEGAS.unpack_from(raw)
        if enabled and rtt and rtt != 0x7FFFFFFF:
            return {"vegas_rtt": rtt}
    return {}


def parse_tcp_info(
    raw: bytes, congestion: str | None = None, module_info: tuple[int, bytes] | None = None
) -> TcpInfo:
    """Decode ``struct tcp_info`` of any kernel's length into a :class:`TcpInfo`.

    Fields past the end of ``raw`` stay ``None``; a longer struct (a newer
    kernel) is read as far as this layout knows.  ``module_info`` is the
    congestion module's own attribute (its type and payload), if any.
    """
    values: dict[str, int | bool | str | None] = {"congestion": congestion}
    if module_info is not None:
        values.update(_module_values(*module_info))
    size = len(raw)
    for name, offset, fmt in _TCP_INFO_LAYOUT:
        unpacker = _TCP_INFO_STRUCTS[fmt]
        if offset + unpacker.size <= size:
            values[name] = unpacker.unpack_from(raw, offset)[0]
    if size > 6:
        # __u8 tcpi_snd_wscale : 4, tcpi_rcv_wscale : 4 -- the first bit-field
        # takes the low bits on little-endian ABIs, the high bits on big-endian.
        scales = raw[6]
        low, high = scales & 0x0F, scales >> 4
        values["snd_wscale"], values["rcv_wscale"] = (low, high) if _LITTLE else (high, low)
    if size > 7:
        flag = raw[7] & 0x01 if _LITTLE else raw[7] >> 7
        values["delivery_rate_app_limited"] = bool(flag)
    return TcpInfo(**values)  # type: ignore[arg-type]
