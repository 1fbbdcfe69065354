"""``sockkit connect ENDPOINT``: stdin to a socket, the socket to stdout."""

from __future__ import annotations

import argparse
import dataclasses
import socket
from collections.abc import Callable

from sockkit._endpoint import Endpoint, parse_address, parse_endpoint
from sockkit._errors import SockkitError, UsageError
from sockkit.cli._netcat_flags import add_connect_flags, apply_flags, as_datagram, run_port_scan
from sockkit.cli._parser import finite_seconds, say
from sockkit.client import NetcatOptions, TLSConfig, run_connect

DESCRIPTION = """\
Connect to ENDPOINT (or HOST PORT, as nc) and pump bytes both ways: stdin to the socket, the socket
to stdout, binary-safe.  At end of stdin the write side is shut (a half-close)
and replies are printed until the peer closes; then the exit status is 0.
The peer's end of stream does not stop stdin (it may still be reading): if it
resets before all of stdin arrived, the bytes not delivered are counted, exit 1.
udp:// and unixgram: send one datagram per stdin line (or per --chunk bytes)
and print the replies, waiting --wait seconds after stdin ends.
Failures (refused, timed out, reset, TLS) print one line and exit 1; a bad
endpoint or option exits 2."""

EXAMPLES = """\
examples: (the nc and ncat forms first)
  sockkit connect 127.0.0.1 7007 < file       HOST PORT, as nc
  sockkit connect -4 localhost 7007           IPv4 addresses only (-6: IPv6)
  sockkit connect -z 127.0.0.1 20-25          which ports are open (status 0 if any)
  sockkit connect -u -q 2 127.0.0.1 7007      UDP; wait 2 s for replies after stdin ends
  sockkit connect -w 5 -C example.test 80     5 s to connect (and idle); CRLF line endings
  sockkit connect -x 127.0.0.1 7007           hex dump of the traffic on stderr (-vv: text)
  sockkit connect -c 'echo $NCAT_REMOTE_PORT' 127.0.0.1 7007
                                              a program talks to the peer (-e: no shell)
sockkit's endpoint forms:
  sockkit connect 7007 < file > reply         send a file to an echo server, keep the reply
  echo hello | sockkit connect udp://127.0.0.1:7007
  sockkit connect tls://example.test:443 --tls-ca ca.pem
  sockkit connect -v --timeout 2 --idle-timeout 30 [::1]:7007
"""


def add_common_arguments(parser: argparse.ArgumentParser, *, listening: bool = False) -> None:
    """The options ``connect`` and ``listen`` share (``listen -p PORT`` may omit ENDPOINT)."""
    parser.add_argument(
        "endpoint",
        nargs="?" if listening else None,
        metavar="ENDPOINT",
        help="tcp://, udp://, tls://, unix:, unixgram:, HOST:PORT or PORT; or HOST then PORT",
    )
    parser.add_argument("port", nargs="?", metavar="PORT", help=argparse.SUPPRESS)
    family = parser.add_mutually_exclusive_group()
    family.add_argument(
        "-4",
        dest="family",
        action="store_const",
        const=socket.AF_INET,
        help="IPv4 addresses only",
    )
    family.add_argument(
        "-6", dest="family", action="store_const", const=socket.AF_INET6, help="IPv6 addresses only"
    )
    parser.add_argument(
        "--idle-timeout",
        type=finite_seconds,
        metavar="S",
        help="fail when no byte moves either way for S seconds",
    )
    parser.add_argument(
        "--send-only", action="store_true", help="only send stdin; ignore what arrives"
    )
    parser.add_argument(
        "--recv-only", action="store_true", help="only print what arrives; never read stdin"
    )
    parser.add_argument(
        "--chunk",
        type=int,
        metavar="N",
        help="datagrams: N bytes of stdin per datagram instead of one line",
    )
    parser.add_argument(
        "--tls-ca", metavar="FILE", help="CA certificates to trust for the peer (PEM)"
    )
    parser.add_argument("--tls-cert", metavar="FILE", help="our certificate chain (PEM)")
    parser.add_argument(
        "--tls-key", metavar="FILE", help="our private key (PEM), if not in --tls-cert"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="report connection events on stderr (-vv: and the traffic, as text)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument(
        "--timeout",
        type=finite_seconds,
        metavar="S",
        help="give up connecting to an address after S seconds",
    )
    parser.add_argument(
        "--source", metavar="ADDR", help="bind the local side to ADDR or ADDR:PORT first"
    )
    parser.add_argument(
        "--no-shutdown", action="store_true", help="at end of stdin keep the write side open"
    )
    parser.add_argument(
        "--wait",
        type=finite_seconds,
        metavar="S",
        help="datagrams: wait S seconds for replies after stdin ends (default 1; 0: do not wait)",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="TLS: accept any certificate and host name (unsafe)"
    )
    parser.add_argument(
        "--tls-servername",
        metavar="NAME",
        help="TLS: check the certificate for NAME instead of the endpoint's host",
    )
    add_connect_flags(parser)


def endpoint_of(
    args: argparse.Namespace, text: str | None = None, port: str | None = None
) -> Endpoint:
    """The endpoint named by ``ENDPOINT``, or by ``HOST PORT`` (two words, as nc).

    ``text``/``port`` stand in for ``args.endpoint``/``args.port`` when given.
    """
    host = args.endpoint if text is None else text
    port = args.port if text is None else port
    if port is None:
        return parse_endpoint(host)
    if "://" in host or host.startswith(("unix:", "unixgram:")):
        raise UsageError(
            f"HOST PORT takes a host name or address, not the endpoint {host!r};"
            f" give the endpoint alone"
        )
    return parse_endpoint(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")


#: (option, the argparse dest, a test of the endpoint it applies to, why not otherwise).
_APPLIES: list[tuple[str, str, Callable[[Endpoint], bool], str]] = [
    ("--tls-ca", "tls_ca", lambda ep: ep.is_tls, "it applies to tls:// endpoints only"),
    ("--tls-cert", "tls_cert", lambda ep: ep.is_tls, "it applies to tls:// endpoints only"),
    ("--tls-key", "tls_key", lambda ep: ep.is_tls, "it applies to tls:// endpoints only"),
    ("--insecure", "insecure", lambda ep: ep.is_tls, "it applies to tls:// endpoints only"),
    (
        "--tls-servername",
        "tls_servername",
        lambda ep: ep.is_tls,
        "it applies to tls:// endpoints only",
    ),
    (
        "--chunk",
        "chunk",
        lambda ep: ep.is_datagram,
        "a stream has no datagrams to size; it applies to udp:// and unixgram: only",
    ),
    (
        "--wait",
        "wait",
        lambda ep: ep.is_datagram,
        "a stream ends when the peer closes; it applies to udp:// and unixgram: only",
    ),
    (
        "--no-shutdown",
        "no_shutdown",
        lambda ep: ep.is_stream,
        "datagrams have no half-close to skip",
    ),
    (
        "--half-close",
        "half_close",
        lambda ep: ep.is_stream,
        "datagrams have no half-close",
    ),
    (
        "--keep-open",
        "keep_open",
        lambda ep: ep.is_stream,
        "a datagram listener already hears every sender until interrupted",
    ),
    ("--source", "source", lambda ep: not ep.is_unix, "a Unix socket has no source address"),
    ("-p", "source_port", lambda ep: not ep.is_unix, "a Unix socket has no source port"),
    ("-n", "numeric", lambda ep: not ep.is_unix, "a Unix socket path is never looked up"),
    ("-4/-6", "family", lambda ep: not ep.is_unix, "a Unix socket has no address family to pick"),
]


def reject_inapplicable(args: argparse.Namespace, endpoint: Endpoint) -> None:
    """Raise :class:`UsageError` for an option given that does nothing for ``endpoint``."""
    for option, dest, applies, why in _APPLIES:
        value = getattr(args, dest, None)
        if value is not None and value is not False and not applies(endpoint):
            raise UsageError(f"{option} does nothing for {endpoint}: {why}")


def tls_config(args: argparse.Namespace) -> TLSConfig:
    return TLSConfig(
        ca=args.tls_ca,
        cert=args.tls_cert,
        key=args.tls_key,
        insecure=getattr(args, "insecure", False),
        server_hostname=getattr(args, "tls_servername", None),
    )


def verbose_printer(args: argparse.Namespace) -> Callable[[str], None]:
    return say if args.verbose else lambda message: None


def common_options(args: argparse.Namespace) -> NetcatOptions:
    """The :class:`NetcatOptions` that :func:`add_common_arguments`' options give."""
    return NetcatOptions(
        idle_timeout=args.idle_timeout,
        send_only=args.send_only,
        receive_only=args.recv_only,
        chunk=args.chunk,
        tls=tls_config(args),
        family=args.family or socket.AF_UNSPEC,
    )


def source_of(args: argparse.Namespace) -> str | None:
    """``--source``, with ``-p PORT`` (nc's source port) folded in."""
    source: str | None = args.source
    port: int | None = args.source_port
    if port is None:
        return source
    if source is None:
        return f":{port}"
    try:
        given = parse_address(source)
    except SockkitError:
        raise UsageError(f"--source {source!r}: expected ADDR or ADDR:PORT") from None
    if given.port:
        raise UsageError(f"-p {port} and --source {source} both name the source port: give one")
    host = given.host or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run(args: argparse.Namespace) -> int:
    if args.zero_io:
        return run_port_scan(args)
    endpoint = as_datagram(args, endpoint_of(args))
    reject_inapplicable(args, endpoint)
    options = dataclasses.replace(
        common_options(args),
        timeout=args.timeout,
        source=source_of(args),
        shutdown_on_eof=not args.no_shutdown,
        wait=args.wait,
    )
    options = apply_flags(args, endpoint, options, listening=False)
    run_connect(endpoint, options, on_event=verbose_printer(args))
    return 0
