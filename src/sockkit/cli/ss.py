"""``sockkit ss``: the socket table, as iproute2 ss prints it, plus JSON and a live watch."""

from __future__ import annotations

import argparse
import gc
import socket
import sys
import time

from sockkit.cli._parser import positive_int, positive_seconds
from sockkit.inspect import (
    SOURCES,
    SocketQuery,
    SocketTable,
    format_table,
    record_from_row,
    record_to_dict,
    select_query,
)

__all__ = ["DESCRIPTION", "EXAMPLES", "add_arguments", "run"]

DESCRIPTION = """\
List the sockets on this machine like iproute2 ss: TCP, UDP and Unix, with
their states, queues, addresses, owning processes (-p) and TCP internals (-i).

Without -t/-u/-x/-4/-6 every kind is listed; without -a/-l/--state only
connected sockets (not LISTEN, UNCONN, TIME-WAIT or SYN-RECV), as ss does.
Recv-Q/Send-Q of a listener are its accept queue and backlog.  Ports are
shown as service names outside the ephemeral range unless -n is given.

Data comes from sock_diag netlink; /proc/net is used where netlink is not
available (force it with --source proc or SOCKKIT_SS_SOURCE=proc).
--watch lists again every INTERVAL seconds (default 0.2) and prints each
change: '+' a socket appeared, '~' it changed state, '-' it disappeared;
it watches every state unless -a/-l/--state say otherwise."""

EXAMPLES = """\
examples:
  sockkit ss                          connected sockets of every kind
  sockkit ss -tlnp                    listening TCP sockets and their processes
  sockkit ss -tan --port 7007         every TCP socket with port 7007 on either end
  sockkit ss -ti --dport 7007         TCP internals (rtt, cwnd, ...) of connections to 7007
  sockkit ss -x --state listening     listening Unix sockets
  sockkit ss -ua --json               every UDP socket as a JSON list
  sockkit ss --watch 0.1 --port 7007 --duration 10
                                      print each socket change on port 7007 for 10 s"""


def _port(text: str) -> int:
    if text.isdigit() and int(text) <= 65535:
        return int(text)
    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        raise argparse.ArgumentTypeError(
            f"expected a port number 0-65535 or a service name, got {text!r}"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """ss's flags, plus --port/--sport/--dport, --json, --watch and --source."""
    tables = parser.add_argument_group("what to list")
    tables.add_argument("-t", "--tcp", action="store_true", help="TCP sockets")
    tables.add_argument("-u", "--udp", action="store_true", help="UDP sockets")
    tables.add_argument("-x", "--unix", action="store_true", help="Unix sockets")
    tables.add_argument("-4", "--ipv4", action="store_true", help="IPv4 sockets only")
    tables.add_argument("-6", "--ipv6", action="store_true", help="IPv6 sockets only")
    tables.add_argument(
        "-l", "--listening", action="store_true", help="listening and unconnected sockets"
    )
    tables.add_argument("-a", "--all", action="store_true", help="sockets in every state")
    tables.add_argument(
        "--state",
        action="append",
        default=[],
        metavar="STATE",
        help="only this state (repeatable): established, syn-sent, syn-recv, fin-wait-1, "
        "fin-wait-2, time-wait, closed, close-wait, last-ack, listening, closing, or a group: "
        "all, connected, synchronized, bucket, big",
    )
    tables.add_argument("--port", type=_port, help="TCP/UDP sockets with this port at either end")
    tables.add_argument("--sport", type=_port, help="TCP/UDP sockets with this local port")
    tables.add_argument("--dport", type=_port, help="TCP/UDP sockets with this peer port")
    show = parser.add_argument_group("what to show")
    show.add_argument(
        "-n", "--numeric", action="store_true", help="numeric ports, no service names"
    )
    show.add_argument(
        "-p", "--processes", action="store_true", help="the processes holding each socket"
    )
    show.add_argument("-i", "--info", action="store_true", help="TCP internals (struct tcp_info)")
    show.add_argument("-H", "--no-header", action="store_true", help="leave out the header line")
    show.add_argument("--json", action="store_true", help="a JSON list, one object per socket")
    show.add_argument(
        "--source",
        choices=SOURCES,
        default=None,
        help="where to read sockets from (default: $SOCKKIT_SS_SOURCE, else auto)",
    )
    watch = parser.add_argument_group("watching")
    watch.add_argument(
        "--watch",
        nargs="?",
        type=positive_seconds,
        const=0.2,
        metavar="INTERVAL",
        help="list again every INTERVAL seconds (default 0.2) and print each change",
    )
    watch.add_argument(
        "--count", type=positive_int, metavar="N", help="with --watch: stop after N changes"
    )
    watch.add_argument(
        "--duration",
        type=positive_seconds,
        metavar="SECONDS",
        help="with --watch: stop after SECONDS",
    )


def run(args: argparse.Namespace) -> int:
    """List (or watch) the sockets the flags select; exit status 0."""
    from sockkit._errors import UsageError

    if args.watch is None and (args.count is not None or args.duration is not None):
        raise UsageError("--count and --duration go with --watch")
    watching = args.watch is not None
    query = select_query(
        tcp=args.tcp,
        udp=args.udp,
        unix=args.unix,
        ipv4=args.ipv4,
        ipv6=args.ipv6,
        listening=args.listening,
        # a watch follows sockets through every state unless told otherwise
        all_states=args.all or (watching and not args.listening),
        states=tuple(args.state),
        sport=args.sport,
        dport=args.dport,
        port=args.port,
        processes=args.processes,
        tcp_info=args.info,
    )
    with SocketTable(args.source) as table:
        if watching:
            return _watch(args, query, table)
        # A one-shot listing allocates a tuple per socket and frees nothing
        # until it exits: the cyclic collector would only rescan them.
        gc.disable()
        rows = table.rows(query)
        gc.freeze()  # nor rescan them all once more at exit
    if args.json:
        from sockkit.cli._output import print_json

        print_json([record_to_dict(record_from_row(row)) for row in rows])
        return 0
    port_name = None
    if not args.numeric:
        from sockkit.inspect import ServiceNames

        port_name = ServiceNames()
    text = format_table(
        rows,
        netid_column=len(query.netids) > 1,
        state_column=query.states.bit_count() > 1,
        header=not args.no_header,
        tcp_info=args.info,
        port_name=port_name,
    )
    sys.stdout.write(text)
    return 0


def _watch(args: argparse.Namespace, query: SocketQuery, table: SocketTable) -> int:
    import json

    from sockkit.inspect import event_to_dict, format_event, watch_sockets

    until = time.monotonic() + args.duration if args.duration is not None else None
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    arrow = "→" if encoding == "utf8" else "->"
    printed = 0
    started = False
    try:
        for events in watch_sockets(query, args.watch, until=until, table=table):
            if not started:
                started = True
                sys.stderr.write(f"sockkit ss: watching every {args.watch:g} s\n")
                sys.stderr.flush()
            for event in events:
                line = json.dumps(event_to_dict(event)) if args.json else format_event(event, arrow)
                sys.stdout.write(line + "\n")
                printed += 1
                if args.count is not None and printed >= args.count:
                    sys.stdout.flush()
                    return 0
            if events:
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
    return 0
