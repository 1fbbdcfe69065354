"""sockkit resolve: getaddrinfo and getnameinfo as a table."""

from __future__ import annotations

import argparse
import socket

from sockkit import _inet
from sockkit._endpoint import (
    Endpoint,
    format_sockaddr,
    lookup,
    parse_address,
    parse_port,
    resolve_service,
    reverse_lookup,
)
from sockkit._errors import EndpointError, UsageError
from sockkit.cli._output import print_json, print_table

DESCRIPTION = """\
Resolve names the way a socket program does.

  sockkit resolve HOST [SERVICE]     getaddrinfo: every address a connect would try
  sockkit resolve --reverse ADDR[:PORT]
                                     getnameinfo: the host and service names
  sockkit resolve --service NAME|PORT
                                     getservbyname / getservbyport (echo <-> 7/tcp)
"""

EXAMPLES = """\
examples:
  sockkit resolve localhost http
  sockkit resolve localhost --family 6 --type dgram
  sockkit resolve "" 7007 --passive          the addresses a server would bind
  sockkit resolve --reverse 127.0.0.1:7
  sockkit resolve --service echo
  sockkit resolve --service 22 --json
"""

_FAMILIES = {"4": socket.AF_INET, "6": socket.AF_INET6}
_TYPES = {"stream": socket.SOCK_STREAM, "dgram": socket.SOCK_DGRAM}
_TYPE_NAMES = {socket.SOCK_STREAM: "stream", socket.SOCK_DGRAM: "dgram", socket.SOCK_RAW: "raw"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", nargs="?", help="host name or address ('' for none)")
    parser.add_argument("service", nargs="?", help="service name or port number")
    parser.add_argument("--family", "-f", choices=sorted(_FAMILIES), help="IPv4 or IPv6 only")
    parser.add_argument("--type", "-t", choices=sorted(_TYPES), help="socket type")
    parser.add_argument("--passive", action="store_true", help="addresses to bind (AI_PASSIVE)")
    parser.add_argument("--reverse", metavar="ADDR[:PORT]", help="getnameinfo for an address")
    parser.add_argument(
        "--service", dest="service_lookup", metavar="NAME|PORT", help="service look-up"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    if args.reverse is not None:
        return _reverse(args.reverse, args.json)
    if args.service_lookup is not None:
        return _service(args.service_lookup, args.json)
    if args.host is None and args.service is None:
        raise UsageError(
            "resolve: give HOST [SERVICE], --reverse ADDR or --service NAME (see --help)"
        )
    host = args.host or None
    infos = lookup(
        host,
        _service_port(args.service),
        family=_FAMILIES.get(args.family or "", socket.AF_UNSPEC),
        socktype=_TYPES.get(args.type or "", 0),
        passive=args.passive,
        canonname=host is not None,
    )
    rows = [
        {
            "family": "inet6" if i.family == socket.AF_INET6 else "inet",
            "type": _TYPE_NAMES.get(i.type, str(int(i.type))),
            "protocol": _proto_name(i.proto),
            "canonname": i.canonname,
            "address": i.host,
            "port": i.port,
            "sockaddr": format_sockaddr(i.family, i.sockaddr),
        }
        for i in infos
    ]
    if args.json:
        print_json(rows)
    else:
        header = ("FAMILY", "TYPE", "PROTO", "CANONNAME", "ADDRESS", "PORT")
        print_table(
            header, [[r[k.lower().replace("proto", "protocol")] for k in header] for r in rows]
        )
    return 0


_PROTO_NAMES = {
    socket.IPPROTO_TCP: "tcp",
    socket.IPPROTO_UDP: "udp",
    socket.IPPROTO_IP: "ip",
    getattr(socket, "IPPROTO_SCTP", 132): "sctp",
}


def _proto_name(proto: int) -> str:
    return _PROTO_NAMES.get(proto, str(proto))


def _service_port(text: str | None) -> int | str | None:
    # The endpoint grammar's port rule, so 70000 is refused here as everywhere.
    if text is None:
        return None
    try:
        return parse_port(text)
    except EndpointError as exc:
        raise UsageError(f"bad service {text!r}: {exc.expected}") from None


def _reverse_target(text: str) -> Endpoint:
    bad = f"bad address {text!r}: expected ADDR, ADDR:PORT or [IPv6]:PORT"
    try:
        endpoint = resolve_service(parse_address(text))
    except EndpointError as exc:
        raise UsageError(f"bad address {text!r}: {exc.expected}") from None
    host = endpoint.host or ""
    try:
        _inet.pton(host.partition("%")[0])
    except UsageError:
        raise UsageError(bad) from None
    return endpoint


def _reverse(text: str, as_json: bool) -> int:
    endpoint = _reverse_target(text)
    host, port = endpoint.host or "", int(endpoint.port)
    name, service = reverse_lookup(host, port)
    result = {"address": host, "port": port, "host": name, "service": service}
    if as_json:
        print_json(result)
    else:
        print_table(("ADDRESS", "PORT", "HOST", "SERVICE"), [[host, port, name, service]])
    return 0


def _service(text: str, as_json: bool) -> int:
    if text.isdigit():
        names = _inet.service_name(int(text))
        rows = [{"port": int(text), "protocol": proto, "service": name} for name, proto in names]
    else:
        ports = _inet.service_port(text)
        rows = [{"port": port, "protocol": proto, "service": text} for port, proto in ports]
    if as_json:
        print_json(rows)
    else:
        print_table(
            ("SERVICE", "PORT", "PROTO"), [[r["service"], r["port"], r["protocol"]] for r in rows]
        )
    return 0
