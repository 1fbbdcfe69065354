"""``sockkit serve [SERVICE] [ENDPOINT ...]``: run a server until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import gc
import re
from collections.abc import Callable, Sequence
from dataclasses import replace

from sockkit._endpoint import Endpoint, parse_endpoint
from sockkit._errors import UsageError
from sockkit.cli._parser import CommandParser, positive_int, positive_seconds

DESCRIPTION = """\
Serve SERVICE (echo, discard, chargen, daytime, time, chat, or module:Class) on
every ENDPOINT (default 7007, i.e. 127.0.0.1:7007) with one engine.  Datagram
endpoints (udp://, unixgram:) serve the datagram form of the service.  Each
bound endpoint is logged once on stderr as 'listening on ENDPOINT' with the
real address.  SIGINT/SIGTERM stops accepting, lets open connections finish for
up to --drain-timeout seconds, and exits 0."""

EXAMPLES = """\
examples:
  sockkit serve                                 echo on 127.0.0.1:7007
  sockkit serve 9000                            echo on 127.0.0.1:9000
  sockkit serve chargen tcp://[::1]:0           chargen on a free IPv6 loopback port
  sockkit serve daytime 7013 udp://7013         daytime over TCP and UDP
  sockkit serve echo unix:/tmp/echo.sock --mode 660
  sockkit serve echo :7007 --allow 10.0.0.0/8 --deny 10.9.0.0/16
  sockkit serve echo tls://127.0.0.1:7443 --tls-cert cert.pem --tls-key key.pem
  sockkit serve --engine thread --max-conns 100 --idle-timeout 30
  sockkit serve --workers 4 :8000               four processes on one port
  sockkit serve mypkg.services:Upper 7100       your own Service subclass"""

DEFAULT_ENDPOINT = "7007"


def _octal_mode(text: str) -> int:
    try:
        value = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an octal mode such as 600, not {text!r}"
        ) from None
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"mode must be 000-777, not {text}")
    return value


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "targets",
        nargs="*",
        metavar="[SERVICE] [ENDPOINT]",
        help="service (default echo) then endpoints (default 7007)",
    )
    eng = parser.add_argument_group("engine")
    eng.add_argument(
        "--engine",
        help="fork, thread, pool, select, poll, epoll, asyncio or uvloop (default: fastest)",
    )
    eng.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="processes sharing the endpoints",
    )
    eng.add_argument(
        "--threads", type=positive_int, metavar="N", help="worker threads of the pool engine"
    )
    eng.add_argument(
        "--backlog", type=positive_int, metavar="N", help="listen() backlog (default SOMAXCONN)"
    )
    lim = parser.add_argument_group("limits")
    lim.add_argument(
        "--max-conns",
        type=positive_int,
        metavar="N",
        help="refuse clients past N open connections",
    )
    lim.add_argument(
        "--idle-timeout", type=positive_seconds, metavar="SECONDS", help="close a silent connection"
    )
    lim.add_argument(
        "--send-timeout",
        type=positive_seconds,
        metavar="SECONDS",
        help="close a peer that stops reading",
    )
    lim.add_argument(
        "--drain-timeout",
        type=positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, how long open connections may finish (default 10)",
    )
    acc = parser.add_argument_group("access")
    acc.add_argument(
        "--allow", action="append", default=[], metavar="CIDR", help="serve only these networks"
    )
    acc.add_argument(
        "--deny",
        action="append",
        default=[],
        metavar="CIDR",
        help="never serve these (wins over --allow)",
    )
    acc.add_argument(
        "--mode",
        type=_octal_mode,
        metavar="OCTAL",
        help="Unix socket file mode (default 600)",
    )
    tls = parser.add_argument_group("tls")
    tls.add_argument(
        "--tls-cert", metavar="FILE", help="certificate chain (PEM) for tls:// endpoints"
    )
    tls.add_argument(
        "--tls-key", metavar="FILE", help="private key (PEM), if not in the certificate file"
    )
    tls.add_argument(
        "--tls-client-ca", metavar="FILE", help="require client certificates signed by this CA"
    )
    log = parser.add_argument_group("logging")
    log.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    log.add_argument("--log-format", default="text", choices=("text", "json"))


def split_targets(targets: Sequence[str]) -> tuple[str, list[str]]:
    """``[SERVICE] [ENDPOINT ...]`` -> (service, endpoints).

    A first word that is a service name, or that does not parse as an
    endpoint (``module:Class``), is the service; otherwise it is the first
    endpoint and the service is echo (``sockkit serve 9000``).  A first word
    shaped like an endpoint (``70000``, ``tcp://...:99999``) counts as one even
    when it is a bad one, so the error says what is wrong with it.
    """
    if not targets:
        return "echo", [DEFAULT_ENDPOINT]
    first, rest = targets[0], list(targets[1:])
    if _is_service_name(first):
        return first, rest or [DEFAULT_ENDPOINT]
    if _looks_like_endpoint(first):
        parse_endpoint(first)  # raises, naming what is wrong, if it is a bad one
    if not _is_endpoint(first):
        return first, rest or [DEFAULT_ENDPOINT]
    return "echo", list(targets)


#: ``module:Class`` never looks like these: a scheme, a path form, a port number
#: alone or after ``HOST:``, ``:PORT`` or ``[v6]:PORT``.
_ENDPOINT_SHAPE = re.compile(r"[a-z]+://.*|unix(gram)?:.*|\d+|[^:\s]*:\d+|\[.*")


def _looks_like_endpoint(word: str) -> bool:
    return _ENDPOINT_SHAPE.fullmatch(word) is not None


def _is_service_name(word: str) -> bool:
    from sockkit.services import SERVICE_NAMES

    return word in SERVICE_NAMES


def _is_endpoint(word: str) -> bool:
    try:
        parse_endpoint(word)
    except UsageError:
        return False
    return True


#: (option, the argparse dest, what an endpoint needs for it to do anything, why).
_APPLIES: list[tuple[str, str, str, str]] = [
    ("--tls-cert", "tls_cert", "tls", "it is for tls:// endpoints, and none is given"),
    ("--tls-key", "tls_key", "tls", "it is for tls:// endpoints, and none is given"),
    ("--tls-client-ca", "tls_client_ca", "tls", "it is for tls:// endpoints, and none is given"),
    ("--mode", "mode", "unix file", "it sets a Unix socket file's mode, and no endpoint is one"),
    ("--backlog", "backlog", "stream", "datagram sockets do not listen()"),
    ("--max-conns", "max_conns", "stream", "datagram endpoints have no connections"),
    ("--idle-timeout", "idle_timeout", "stream", "datagram endpoints have no connections"),
    ("--send-timeout", "send_timeout", "stream", "datagram endpoints have no connections"),
    ("--allow", "allow", "inet", "Unix peers have no address to match"),
    ("--deny", "deny", "inet", "Unix peers have no address to match"),
]

_NEEDS: dict[str, Callable[[Endpoint], bool]] = {
    "tls": lambda ep: ep.is_tls,
    "unix file": lambda ep: ep.is_unix and not ep.is_abstract,
    "stream": lambda ep: ep.is_stream,
    "inet": lambda ep: not ep.is_unix,
}


def reject_inapplicable(args: argparse.Namespace, endpoints: Sequence[str]) -> None:
    """Raise :class:`UsageError` for an option that none of ``endpoints`` can use."""
    parsed: list[Endpoint] = []
    for text in endpoints:
        try:
            parsed.append(parse_endpoint(text))
        except UsageError:
            return  # not a plain endpoint (an inherited socket, or bad): the server decides
    for option, dest, needs, why in _APPLIES:
        if getattr(args, dest) in (None, []):
            continue
        if not any(_NEEDS[needs](ep) for ep in parsed):
            raise UsageError(f"{option} does nothing here: {why}")
    if args.threads is not None and args.engine != "pool":
        raise UsageError("--threads does nothing here: it sizes the pool engine (--engine pool)")


def run(args: argparse.Namespace) -> int:
    from sockkit.server import Limits, TLSFiles, serve

    service, endpoints = split_targets(args.targets)
    reject_inapplicable(args, endpoints)
    limits = replace(
        Limits(),
        max_conns=args.max_conns,
        idle_timeout=args.idle_timeout,
        send_timeout=args.send_timeout,
        drain_timeout=args.drain_timeout,
    )
    if args.threads is not None:
        limits = replace(limits, threads=args.threads)
    tls = None
    if args.tls_cert is not None:
        tls = TLSFiles(args.tls_cert, args.tls_key, args.tls_client_ca)
    elif args.tls_key is not None or args.tls_client_ca is not None:
        raise UsageError("--tls-key and --tls-client-ca need --tls-cert FILE")
    # This process only serves from here on: what start-up built (modules,
    # the parser) lives until exit, so keep the collector from rescanning it
    # whenever connections' objects trigger a collection.
    gc.freeze()
    serve(
        service,
        endpoints,
        engine=args.engine,
        limits=limits,
        allow=args.allow,
        deny=args.deny,
        tls=tls,
        backlog=args.backlog,
        mode=0o600 if args.mode is None else args.mode,
        workers=args.workers,
        log_level=args.log_level,
        log_format=args.log_format,
    )
    return 0
