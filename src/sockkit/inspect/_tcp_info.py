"""``struct tcp_info`` as a value: what ``-i`` shows.

Kept apart from the other records because it is big (one field per kernel
counter) and only ``-i`` needs it: a listing without ``-i`` never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["TcpInfo"]


@dataclass(frozen=True)
class TcpInfo:
    """The kernel's ``struct tcp_info`` for one TCP socket, names without ``tcpi_``.

    Times are in microseconds (``rtt``, ``rttvar``, ``rto``, ``ato``,
    ``min_rtt``, ``rcv_rtt``) or milliseconds (``last_data_sent``,
    ``last_data_recv``, ``last_ack_recv``), rates in bytes per second,
    ``snd_cwnd`` in segments.  A field is ``None`` when the running kernel's
    struct is too short to hold it (older kernels give fewer fields).
    ``congestion`` is the congestion-control algorithm's name, when known.
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
    congestion: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fields the kernel gave, as a plain dict (``None`` fields left out)."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }
