"""``sockkit ss``: the socket table as iproute2 ss prints it, its filter language and views, plus JSON and a live watch."""

from __future__ import annotations

import argparse
import gc
import socket
import sys
from typing import TYPE_CHECKING

from sockkit._errors import SockkitError, UsageError
from sockkit.cli._parser import positive_int, positive_seconds
from sockkit.inspect import (
    INET_NETIDS,
    SOURCES,
    UNIX_NETIDS,
    SocketQuery,
    SocketTable,
    format_table,
    select_query,
)

if TYPE_CHECKING:
    from sockkit.inspect import Annotations, SocketFilter

__all__ = ["DESCRIPTION", "EXAMPLES", "add_arguments", "run"]

DESCRIPTION = """\
List the sockets on this machine as iproute2 ss does, with ss's flags and
its filter language:

  sockkit ss -tlnp                                  listening TCP sockets and their processes
  sockkit ss -tan state established '( dport = :ssh or sport = :ssh )'
  sockkit ss -tn dst 127.0.0.1/8                    connections to the loopback network
  sockkit ss -tan exclude time-wait 'sport gt :1024'
  sockkit ss -s                                     totals per protocol
  sockkit ss -tnoem                                 timers, uid/inode/cookie, socket memory
  sockkit ss -K dport = :7007                       close matching sockets (root)

Without -t/-u/-x/-4/-6 every kind is listed; without -a/-l/state only
connected sockets (not LISTEN, UNCONN, TIME-WAIT or SYN-RECV), as ss does.
Recv-Q/Send-Q of a listener are its accept queue and backlog.  Ports are
shown as service names outside the ephemeral range unless -n is given.

FILTER (as in man ss; or/and chain left to right, use parentheses):
  FILTER     := { state STATE | exclude STATE }... [ EXPRESSION ]
  EXPRESSION := TERM | EXPRESSION [ or | and ] TERM   (no word means and)
  TERM       := src [=] HOST | dst [=] HOST | sport [OP] PORT | dport [OP] PORT
              | autobound | not TERM | ( EXPRESSION )
  OP         := = != < <= > >= (or eq ne lt le gt ge)
  HOST       := ADDRESS[/PREFIX][:PORT] | [IPV6][:PORT] | :PORT | unix:GLOB
The kernel applies what it can of a filter (sock_diag bytecode); the rest,
and Unix sockets, are filtered here.

Data comes from sock_diag netlink; /proc/net is used where netlink is not
available (force it with --source proc or SOCKKIT_SS_SOURCE=proc; -e, -m,
-o, -K and -E need netlink).  --watch lists again every INTERVAL seconds
(default 0.2) and prints each change: '+' a socket appeared, '~' it changed
state, '-' it disappeared; it watches every state unless -a/-l/state say
otherwise.  -E prints TCP/UDP sockets as the kernel destroys them."""

EXAMPLES = """\
examples:
  sockkit ss                          connected sockets of every kind
  sockkit ss -tlnp                    listening TCP sockets and their processes
  sockkit ss -tn state established '( dport = :ssh or sport = :ssh )'
  sockkit ss -x src '/run/*'          Unix sockets bound under /run
  sockkit ss -ti dport = :7007        TCP internals (rtt, cwnd, bbr, pacing) of connections to 7007
  sockkit ss -tan --port 7007         every TCP socket with port 7007 on either end
  sockkit ss -ua --json               every UDP socket as a JSON list
  sockkit ss -E -t --duration 10      TCP sockets as they are destroyed, for 10 s
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
    """ss's flags and FILTER, plus --port/--sport/--dport, --json, --watch and --source."""
    parser.usage = (
        "%(prog)s [-tuxlan46] [-pieomH] [FILTER ...]\n"
        "       %(prog)s -s | -K FILTER | -E [FILTER]\n"
        "       %(prog)s [--json] [--watch [INTERVAL]] [--port P] [--source SRC] ..."
    )
    parser.add_argument(
        "filter", nargs="*", metavar="FILTER", help="ss's filter: [state S] [exclude S] [EXPR]"
    )
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
        help="only this state (repeatable; the FILTER's 'state STATE' does the same): "
        "established, syn-sent, syn-recv, fin-wait-1, fin-wait-2, time-wait, closed, "
        "close-wait, last-ack, listening, closing, or a group: all, connected, synchronized, "
        "bucket, big",
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
    show.add_argument(
        "-i", "--info", action="store_true", help="TCP internals: tcp_info, congestion module"
    )
    show.add_argument("-o", "--options", action="store_true", help="timers: timer:(NAME,LEFT,N)")
    show.add_argument(
        "-e", "--extended", action="store_true", help="uid, inode, cookie, cgroup (and -o)"
    )
    show.add_argument("-m", "--memory", action="store_true", help="socket memory: skmem:(...)")
    show.add_argument("-s", "--summary", action="store_true", help="totals per protocol")
    show.add_argument("-H", "--no-header", action="store_true", help="leave out the header line")
    show.add_argument("--json", action="store_true", help="a JSON list, one object per socket")
    show.add_argument(
        "--source",
        choices=SOURCES,
        default=None,
        help="where to read sockets from (default: $SOCKKIT_SS_SOURCE, else auto)",
    )
    act = parser.add_argument_group("acting and following")
    act.add_argument(
        "-K", "--kill", action="store_true", help="close the matching TCP/UDP sockets (root)"
    )
    act.add_argument(
        "-E", "--events", action="store_true", help="print TCP/UDP sockets as they are destroyed"
    )
    act.add_argument(
        "--watch",
        nargs="?",
        type=positive_seconds,
        const=0.2,
        metavar="INTERVAL",
        help="list again every INTERVAL seconds (default 0.2) and print each change",
    )
    act.add_argument(
        "--count", type=positive_int, metavar="N", help="with --watch/-E: stop after N lines"
    )
    act.add_argument(
        "--duration",
        type=positive_seconds,
        metavar="SECONDS",
        help="with --watch/-E: stop after SECONDS",
    )


def run(args: argparse.Namespace) -> int:
    """List, summarise, kill or follow the sockets the flags and FILTER select; exit status 0."""
    following = args.watch is not None or args.events
    if not following and (args.count is not None or args.duration is not None):
        raise UsageError("--count and --duration go with --watch or -E")
    if args.summary:
        from sockkit.inspect import format_summary, read_summary

        sys.stdout.write(format_summary(read_summary()))
        if not (args.filter or args.tcp or args.udp or args.unix or args.ipv4 or args.ipv6):
            return 0
    chosen = _filter(args)
    if isinstance(chosen, str):
        sys.stderr.write(chosen)
        return 2
    query = _query(args, chosen)
    if args.events:
        from sockkit.cli._ss_follow import follow_events

        return follow_events(args, query, _annotations(args))
    with SocketTable(args.source) as table:
        if args.watch is not None:
            from sockkit.cli._ss_follow import watch

            return watch(args, query, table)
        # A one-shot listing allocates a tuple per socket and frees nothing
        # until it exits: the cyclic collector would only rescan them.
        gc.disable()
        rows = table.rows(query)
        gc.freeze()  # nor rescan them all once more at exit
    if args.kill:
        from sockkit.inspect import kill_sockets

        rows = kill_sockets(rows)
    if args.json:
        from sockkit.cli._output import print_json
        from sockkit.inspect import record_from_row, record_to_dict

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
        port_name=port_name,
        annotate=_annotations(args),
    )
    sys.stdout.write(text)
    return 0


def _filter(args: argparse.Namespace) -> SocketFilter | str | None:
    """The parsed FILTER (``None``: none given), or the text to print (exit 2) when it does not parse."""
    if not args.filter:
        return None  # and the parser is not even imported
    from sockkit.inspect import FilterError, parse_filter

    unix_only = args.unix and not (args.tcp or args.udp or args.ipv4 or args.ipv6)
    try:
        return parse_filter(args.filter, unix_only=unix_only)
    except FilterError as exc:
        return f"sockkit: ss: {exc}\n{exc.explain()}"


def _query(args: argparse.Namespace, chosen: SocketFilter | None) -> SocketQuery:
    watching = args.watch is not None
    state_mask = chosen.states if chosen is not None else None
    if state_mask is not None and args.state:
        from sockkit.inspect import parse_state

        for word in args.state:
            state_mask |= parse_state(word)
    query = select_query(
        tcp=args.tcp,
        udp=args.udp,
        unix=args.unix,
        ipv4=args.ipv4,
        ipv6=args.ipv6,
        listening=args.listening,
        # a watch or an event stream follows sockets through every state unless told otherwise
        all_states=args.all or ((watching or args.events) and not args.listening),
        states=tuple(args.state),
        state_mask=state_mask,
        sport=args.sport,
        dport=args.dport,
        port=args.port,
        processes=args.processes,
        tcp_info=args.info,
        expression=chosen.expression if chosen is not None else None,
        details=args.extended or args.options or args.kill,
        memory=args.memory,
    )
    if chosen is not None and chosen.families is not None:
        # a HOST's family prefix (inet:, inet6:, unix:) chooses the families, as in ss
        families = chosen.families
        netids = query.netids & (UNIX_NETIDS if families == {"unix"} else INET_NETIDS)
        if not netids:
            netids = UNIX_NETIDS if "unix" in families else INET_NETIDS
        if "unix" in families and families != {"unix"}:
            netids = query.netids
        query = query._replace(families=families, netids=frozenset(netids))
    if args.kill and not (args.filter or args.port or args.sport or args.dport):
        # ss would close every connection on the machine; make that a choice
        raise UsageError(
            "-K needs a FILTER or --port/--sport/--dport (e.g. 'dport = :7007'); "
            "to close every socket, say 'state all'"
        )
    if args.kill or args.events:
        if args.source == "proc":
            raise UsageError("-K and -E work through sock_diag netlink, not --source proc")
        if args.kill and not (query.netids & INET_NETIDS):
            raise SockkitError("-K closes TCP and UDP sockets only")
    return query


def _annotations(args: argparse.Namespace) -> Annotations | None:
    if not (args.options or args.extended or args.memory or args.info):
        return None
    from sockkit.inspect import Annotations

    cgroups: dict[int, str] = {}
    if args.extended:
        from sockkit.inspect import cgroup_paths

        cgroups = cgroup_paths()
    return Annotations(
        timers=args.options,
        details=args.extended,
        memory=args.memory,
        tcp_info=args.info,
        numeric=args.numeric,
        cgroups=cgroups,
    )
