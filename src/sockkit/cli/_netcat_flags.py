"""The flags nc and ncat users type by habit, for ``connect`` and ``listen``.

They sit beside sockkit's own long options and map onto them (``-w`` is
``--timeout`` and an idle limit, ``-k`` is ``--keep-open``, ...) or onto the
client layer's :class:`~sockkit.client.NetcatOptions` fields.  ``connect`` and
``listen`` call :func:`add_connect_flags` / :func:`add_listen_flags` when
building their parser and :func:`apply_flags` once the endpoint is known.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import socket
import sys
from typing import Any

from sockkit._accept import AccessList, Admission
from sockkit._endpoint import Endpoint
from sockkit._errors import UsageError
from sockkit.cli._parser import add_allow_deny, finite_seconds
from sockkit.client import NetcatOptions, program_argv

__all__ = ["add_connect_flags", "add_listen_flags", "apply_flags", "as_datagram", "print_line"]


_seconds = finite_seconds


def _add_shared(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("nc / ncat habits")
    group.add_argument(
        "-u", "--udp", action="store_true", help="UDP: HOST PORT or HOST:PORT means udp://"
    )
    group.add_argument(
        "-q",
        dest="quit_after",
        type=_seconds,
        metavar="S",
        help="after end of stdin, wait S seconds then quit (as OpenBSD nc; negative: never)",
    )
    group.add_argument("-C", "--crlf", action="store_true", help="send stdin's line feeds as CRLF")
    group.add_argument(
        "-e",
        "--exec",
        dest="exec_command",
        metavar="CMD",
        help="run CMD with the socket as its stdin/stdout (NCAT_REMOTE_ADDR etc. set)",
    )
    group.add_argument(
        "-c", "--sh-exec", dest="sh_command", metavar="CMD", help="the same through /bin/sh -c"
    )
    group.add_argument(
        "-x",
        "--hex-dump",
        action="store_true",
        help="dump the traffic to stderr in hex (the relay's -x format); -vv: as text",
    )
    group.add_argument(
        "-n",
        "--nodns",
        dest="numeric",
        action="store_true",
        help="HOST must be a numeric address: never look a name up",
    )
    return group


def add_connect_flags(parser: argparse.ArgumentParser) -> None:
    group = _add_shared(parser)
    group.add_argument(
        "-w",
        dest="wait_limit",
        type=_seconds,
        metavar="S",
        help="give up connecting after S seconds, and quit (status 0) after S idle seconds",
    )
    group.add_argument(
        "-z",
        dest="zero_io",
        action="store_true",
        help="probe ports, send nothing: 'connect -z HOST 20-25' (status 0 if any is open)",
    )
    group.add_argument(
        "-N", dest="nc_shutdown", action="store_true", help="half-close at end of stdin (default)"
    )
    group.add_argument(
        "-p",
        dest="source_port",
        type=_port_number,
        metavar="PORT",
        help="bind the local side to PORT first (with --source: its address)",
    )


def add_listen_flags(parser: argparse.ArgumentParser) -> None:
    group = _add_shared(parser)
    group.add_argument(
        "-l",
        "--listen",
        dest="listen_mode",
        action="store_true",
        help="accepted for 'nc -l' habits: listening is what this command does",
    )
    group.add_argument(
        "-p",
        dest="local_port",
        type=_port_number,
        metavar="PORT",
        help="the port to listen on: 'listen -lvnp 4444' is 'listen -v 4444'",
    )
    group.add_argument(
        "-w", dest="wait_limit", type=_seconds, metavar="S", help="same as --idle-timeout S"
    )
    group.add_argument("-N", dest="half_close", action="store_true", help="same as --half-close")
    add_allow_deny(group)


def _port_number(text: str) -> int:
    try:
        port = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (0-65535)")
    return port


def listen_endpoint_text(args: argparse.Namespace) -> tuple[str, str | None]:
    """``ENDPOINT``/``PORT`` as ``listen`` got them, with ``-p PORT`` folded in.

    ``-p 4444`` alone is the bare port ``4444``; ``-p 4444 0.0.0.0`` is
    ``0.0.0.0 4444``.  The port given twice, or no port at all, is a usage error.
    """
    endpoint, port, local = args.endpoint, args.port, args.local_port
    if local is None:
        if endpoint is None:
            raise UsageError("listen needs ENDPOINT, HOST PORT or -p PORT")
        return endpoint, port
    if port is not None or (endpoint is not None and endpoint.isdigit()):
        given = endpoint if port is None else port
        raise UsageError(f"-p {local} and PORT {given} both name the port: give one")
    if endpoint is None:
        return str(local), None
    if "://" in endpoint or endpoint.startswith(("unix:", "unixgram:")):
        raise UsageError(f"-p {local} takes a HOST beside it, not the endpoint {endpoint!r}")
    return endpoint, str(local)


def check_numeric(args: argparse.Namespace, endpoint: Endpoint) -> None:
    """Raise :class:`UsageError` when ``-n`` was given and ``endpoint`` names a host."""
    if not args.numeric or endpoint.host is None or endpoint.fd is not None:
        return
    host = endpoint.host.partition("%")[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(
            f"-n: {endpoint.host!r} is a name, and -n looks no name up; give a numeric address"
        ) from None


def as_datagram(args: argparse.Namespace, endpoint: Endpoint) -> Endpoint:
    """``endpoint`` made ``udp://`` (``unixgram:`` for ``unix:``) when ``-u`` was given."""
    if not args.udp or endpoint.is_datagram:
        return endpoint
    if endpoint.transport == "tcp":
        return dataclasses.replace(endpoint, transport="udp")
    if endpoint.transport == "unix":
        return dataclasses.replace(endpoint, transport="unixgram")
    raise UsageError(f"-u does nothing for {endpoint}: it turns tcp:// or unix: into datagrams")


def apply_flags(
    args: argparse.Namespace, endpoint: Endpoint, options: NetcatOptions, *, listening: bool
) -> NetcatOptions:
    """``options`` with the habit flags of ``args`` folded in; usage errors for misfits."""
    check_numeric(args, endpoint)
    changes: dict[str, Any] = {}
    argv = program_argv(args.exec_command, args.sh_command)
    if argv is not None:
        changes["exec_argv"] = tuple(argv)
    if args.crlf:
        changes["crlf"] = True
    if args.hex_dump:
        changes["dump"] = "hex"
    elif args.verbose >= 2:
        changes["dump"] = "text"
    quit_after = args.quit_after
    if quit_after is not None and quit_after >= 0:
        if endpoint.is_datagram and listening:
            raise UsageError(
                f"-q does nothing for {endpoint}: a datagram listener runs until interrupted"
            )
        if endpoint.is_datagram:
            changes["wait"] = quit_after  # a datagram client's -q is how long to await replies
        else:
            changes["quit_after"] = quit_after
    limit = args.wait_limit
    if limit is not None:
        if limit <= 0:
            raise UsageError("-w must be a positive number of seconds")
        if listening:
            changes["idle_timeout"] = options.idle_timeout or limit
        else:
            changes["timeout"] = options.timeout or limit
            if endpoint.is_datagram:
                # As nc -u -w: how long to wait for replies once stdin has ended.
                changes.setdefault("wait", limit if options.wait is None else options.wait)
            elif options.idle_timeout is None:
                changes["idle_timeout"] = limit
                changes["idle_quits"] = True
    if listening and (args.allow or args.deny):
        try:
            access = AccessList(args.allow, args.deny)
        except ValueError as exc:
            raise UsageError(f"bad --allow/--deny network: {exc}") from None
        if endpoint.is_unix:
            raise UsageError(
                f"--allow/--deny do nothing for {endpoint}: file permissions guard Unix sockets"
            )
        changes["admission"] = Admission(access)
    return dataclasses.replace(options, **changes) if changes else options


def family_of(args: argparse.Namespace) -> int:
    """The address family ``-4``/``-6`` asked for (``AF_UNSPEC`` when neither)."""
    return getattr(args, "family", None) or socket.AF_UNSPEC


def print_line(message: str) -> None:
    """One plain line on stderr (a peer accepted or refused), as ``serve`` logs them."""
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()


#: Seconds a ``-z`` probe waits for an answer when ``-w`` does not say.
PROBE_TIMEOUT = 2.0


def run_port_scan(args: argparse.Namespace) -> int:
    """``connect -z HOST PORTS`` (or ``HOST:PORTS``): one line per port; 0 if any is open."""
    from sockkit.client import parse_ports, scan_ports

    host, ports = args.endpoint, getattr(args, "port", None)
    if ports is None:
        host, colon, ports = host.rpartition(":")
        if not colon or not host:
            raise UsageError("-z needs HOST PORTS, e.g. 'sockkit connect -z 127.0.0.1 20-25'")
    host = host.removeprefix("[").removesuffix("]")
    if args.numeric:
        check_numeric(args, Endpoint("tcp", host=host))
    if "://" in host or host.startswith(("unix:", "unixgram:")):
        raise UsageError("-z takes HOST PORTS (ports: 22, 20-25, 22,80), not an endpoint URL")
    for option, given in (
        ("--exec/--sh-exec", args.exec_command or args.sh_command),
        ("-x", args.hex_dump),
        ("-C", args.crlf),
        ("-q", args.quit_after),
    ):
        if given:
            raise UsageError(f"{option} does nothing with -z: no data is sent")
    timeout = args.wait_limit or args.timeout or PROBE_TIMEOUT
    shown, results = scan_ports(
        host, parse_ports(ports), udp=args.udp, family=family_of(args), timeout=timeout
    )
    proto = "udp" if args.udp else "tcp"
    lines = []
    for result in results:
        try:
            service = f" ({socket.getservbyport(result.port, proto)})"
        except OSError:
            service = ""
        lines.append(f"{shown} {result.port}/{proto} {result.state}{service}\n")
    sys.stdout.write("".join(lines))
    sys.stdout.flush()
    return 0 if any(result.open for result in results) else 1
