"""``sockkit trace``: a connection's life on loopback, packet by packet, with both ends' states."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from sockkit._errors import SockkitError, UsageError
from sockkit.cli._output import color_enabled
from sockkit.cli._parser import fail, positive_int, positive_seconds

if TYPE_CHECKING:
    from sockkit.trace import Trace

__all__ = ["DESCRIPTION", "EXAMPLES", "add_arguments", "run"]

DESCRIPTION = """\
Show the life of a TCP connection (or UDP datagrams) on loopback, one packet
a line: the time, an arrow between the two ends with the flags, relative
seq/ack (the absolute ISN on SYNs), the window, the SYN options, the payload
length and first bytes -- and each end's TCP state after the packet, from
RFC 9293's state machine, marked * where the kernel (sock_diag) showed the
same state.

Trace a built-in SCENARIO that sockkit plays with real sockets (--list
explains each), a live --port until Ctrl-C, --count or --duration, or --read
a pcap file (from tcpdump -w).  One connection is traced at a time: the first
one whose SYN is seen (else the first packet's); packets of others are
counted at the end.  Live, once it is over, the next one to the port gets a
ladder of its own.  With --read, --port picks the connection among the file's.  Capturing needs root or CAP_NET_RAW; without
them scenarios run in a private user and network namespace of their own."""

EXAMPLES = """\
examples:
  sockkit trace handshake             SYN, SYN+ACK, ACK and the states on both sides
  sockkit trace --list                the scenarios, one line each
  sockkit trace close --svg close.svg the four-way teardown as a sequence diagram
  sockkit trace zero-window --json    one JSON object per packet
  sockkit trace --port 7007 --count 20
                                      the next 20 packets to or from port 7007
  sockkit trace --read dump.pcap      the ladder of a capture made with tcpdump -w
  sockkit trace --read dump.pcap --port 7007
                                      the first connection to or from port 7007 in it"""


def _port(text: str) -> int:
    if text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected a port number 1-65535, not {text!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """SCENARIO | --port | --read, the limits of a live capture, and the outputs."""
    parser.add_argument("scenario", nargs="?", metavar="SCENARIO", help="a built-in scenario")
    what = parser.add_argument_group("what to trace (one of SCENARIO, --port, --read)")
    what.add_argument("--list", action="store_true", help="list the scenarios and stop")
    what.add_argument("--port", type=_port, help="capture this port live on lo")
    what.add_argument("--read", metavar="FILE", help="read a pcap file instead of capturing")
    what.add_argument("--count", type=positive_int, help="--port: stop after N packets")
    what.add_argument("--duration", type=positive_seconds, help="--port: stop after SECONDS")
    out = parser.add_argument_group("output")
    out.add_argument(
        "--json", action="store_true", help="one JSON object per packet, then a summary"
    )
    out.add_argument("--svg", metavar="FILE", help="also draw the trace as an SVG sequence diagram")
    out.add_argument("--pcap", metavar="FILE", help="also write the packets as a pcap file")


def _check(args: argparse.Namespace) -> None:
    live_port = None if args.read is not None else args.port
    chosen = [name for name, given in (
        ("SCENARIO", args.scenario), ("--port", live_port), ("--read", args.read)
    ) if given is not None]  # fmt: skip
    if len(chosen) > 1:
        raise UsageError(f"sockkit trace: give only one of {', '.join(chosen)} (see --help)")
    if not chosen and not args.list:
        raise UsageError("sockkit trace: give a SCENARIO, --port P or --read FILE (see --list)")
    if (args.count or args.duration) and live_port is None:
        raise UsageError("sockkit trace: --count and --duration go with --port")


def run(args: argparse.Namespace) -> int:
    _check(args)
    from sockkit.trace import SCENARIOS

    if args.list:
        width = max(map(len, SCENARIOS))
        for name, summary in SCENARIOS.items():
            print(f"{name:<{width}}  {summary}")
        return 0
    if args.scenario is not None and args.scenario not in SCENARIOS:
        raise UsageError(
            f"unknown scenario {args.scenario!r}; expected one of: {', '.join(SCENARIOS)}"
        )
    color = color_enabled(sys.stdout) and not args.json
    if args.port is not None and args.read is None:
        trace = _follow(args, color)
    else:
        trace = _whole(args)
        _print(trace, args.json, color)
    if trace is None:
        return 0
    return _save(trace, args)


def _whole(args: argparse.Namespace) -> Trace:
    if args.read is not None:
        from sockkit.trace import build_trace, read_pcap

        packets = read_pcap(args.read)
        if args.port is not None:
            packets = [p for p in packets if args.port in (p.sport, p.dport)]
        return build_trace(packets, title=args.read, source="file")
    from sockkit.trace import play

    return play(args.scenario)


def _print(trace: Trace, as_json: bool, color: bool) -> None:
    if as_json:
        from sockkit.trace import event_record, summary_record

        for event in trace.events:
            sys.stdout.write(json.dumps(event_record(trace, event)) + "\n")
        sys.stdout.write(json.dumps(summary_record(trace)) + "\n")
        return
    from sockkit.trace import ladder_lines

    sys.stdout.write("\n".join(ladder_lines(trace, color)) + "\n")


def _follow(args: argparse.Namespace, color: bool) -> Trace | None:
    from sockkit.trace import (
        event_lines,
        event_record,
        follow,
        footer_lines,
        header_lines,
        summary_record,
    )

    def ready() -> None:
        sys.stderr.write(f"capturing port {args.port} on lo (Ctrl-C to stop)\n")
        sys.stderr.flush()

    trace = None
    heading = None
    try:
        for trace, fresh in follow(
            args.port, count=args.count, duration=args.duration, on_ready=ready
        ):
            if trace.ends != heading and not args.json:
                print("\n".join(([""] if heading else []) + header_lines(trace, color)))
            heading = trace.ends
            for event in fresh:
                if args.json:
                    print(json.dumps(event_record(trace, event)))
                else:
                    previous = trace.events[event.index - 1] if event.index else None
                    print("\n".join(event_lines(event, previous, color)))
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    if trace is None:
        sys.stderr.write(f"no packet to or from port {args.port} was seen\n")
        return None
    if args.json:
        print(json.dumps(summary_record(trace)))
    else:
        print("\n".join(footer_lines(trace)))
    return trace


def _save(trace: Trace, args: argparse.Namespace) -> int:
    try:
        if args.svg:
            from sockkit.trace import render_svg

            with open(args.svg, "w", encoding="utf-8") as file:
                file.write(render_svg(trace))
        if args.pcap:
            from sockkit.trace import write_pcap

            write_pcap(args.pcap, [event.packet for event in trace.events])
    except OSError as exc:
        raise SockkitError(f"cannot write {exc.filename}: {exc.strerror or exc}") from exc
    if trace.stats is not None and trace.stats.dropped:
        return fail(
            f"the capture dropped {trace.stats.dropped} packets: the trace above has holes", 1
        )
    return 0
