"""A trace as JSON-ready dictionaries: one per packet, then one that sums the capture up."""

from __future__ import annotations

from typing import Any

from sockkit.trace._events import EndState, Trace, TraceEvent
from sockkit.trace._ladder import payload_text

__all__ = ["event_record", "summary_record"]


def _end(end: EndState) -> dict[str, Any]:
    return {
        "state": end.state.value,
        "kernel": end.kernel.value if end.kernel is not None else None,
        "agrees": end.agrees,
    }


def event_record(trace: Trace, event: TraceEvent) -> dict[str, Any]:
    """``{"event": "packet", "time": ..., "flags": "SYN", "seq": 0, ..., "states": {...}}``."""
    packet = event.packet
    sender, receiver = trace.labels if event.rightward else trace.labels[::-1]
    record: dict[str, Any] = {
        "event": "packet",
        "index": event.index,
        "time": round(event.time, 9),
        "timestamp": packet.time,
        "from": sender,
        "to": receiver,
        "src": f"{packet.src}:{packet.sport}",
        "dst": f"{packet.dst}:{packet.dport}",
        "protocol": packet.protocol,
        "length": packet.length,
        "payload": payload_text(packet.payload, packet.length, quoted=False)
        if packet.length
        else None,
        "notes": list(event.notes),
    }
    if packet.protocol == "tcp":
        options = packet.options
        record.update(
            flags=packet.flag_text,
            seq=event.seq,
            ack=event.ack,
            seq_abs=packet.seq,
            ack_abs=packet.ack,
            isn=event.isn,
            window=event.window,
            window_raw=packet.window,
            options={
                "mss": options.mss,
                "wscale": options.wscale,
                "sack_permitted": options.sack_permitted,
                "timestamps": list(options.timestamps) if options.timestamps else None,
            },
        )
    if packet.icmp is not None:
        record["icmp"] = {"type": packet.icmp.type, "code": packet.icmp.code}
    if event.states is not None:
        record["states"] = {
            trace.labels[0]: _end(event.states[0]),
            trace.labels[1]: _end(event.states[1]),
        }
    return record


def summary_record(trace: Trace) -> dict[str, Any]:
    """``{"event": "end", "packets": N, "dropped": D, ...}``: the last line of ``--json``."""
    return {
        "event": "end",
        "title": trace.title,
        "source": trace.source,
        "packets": len(trace.events),
        "dropped": trace.stats.dropped if trace.stats is not None else None,
        "left_out": trace.left_out,
        trace.labels[0]: f"{trace.ends[0][0]}:{trace.ends[0][1]}",
        trace.labels[1]: f"{trace.ends[1][0]}:{trace.ends[1][1]}",
        "initial": {
            trace.labels[0]: _end(trace.initial[0]),
            trace.labels[1]: _end(trace.initial[1]),
        }
        if trace.initial is not None
        else None,
        "notes": list(trace.notes),
    }
