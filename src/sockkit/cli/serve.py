"""``sockkit serve [SERVICE] [ENDPOINT ...]``: run a server until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from sockkit._endpoint import Endpoint, parse_endpoint, resolve_service
from sockkit._errors import UsageError
from sockkit._inherit import INHERITED_PREFIXES, expand_inherited
from sockkit.cli._parser import CommandParser, add_allow_deny, positive_int, positive_seconds

if TYPE_CHECKING:
    from sockkit._proxy_admission import ProxyProtocol
    from sockkit.server import ServerLog
    from sockkit.services import ServiceSpec

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
  sockkit serve chat :7000 --proxy-protocol 10.0.0.5/32   behind HAProxy send-proxy(-v2)
  kill -HUP $PID                                reload: new generation, same sockets, old drains
  sockkit serve @/etc/sockkit/chat.args         arguments from a file (one a line), re-read on reload
  sockkit serve mypkg.services:Upper 7100       your own Service subclass
  sockkit serve chat systemd:                   every socket systemd passed (LISTEN_FDS)
  sockkit serve echo fd:3                       the listening socket on descriptor 3
  sockkit serve chat --workers 4 --backplane redis://127.0.0.1:6379   one room, 4 processes"""

DEFAULT_ENDPOINT = "7007"

#: ``sockkit serve @FILE`` reads arguments from FILE, one per line; a reload
#: (SIGHUP) reads it again, so changed options take effect.
PARSER_OPTIONS = {"fromfile_prefix_chars": "@"}


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


def _uid(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a numeric user id, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a user id of 0 or more, not {text}")
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
        "--reload-signal",
        default="HUP",
        choices=("HUP", "USR1", "USR2", "none"),
        help="start a new generation (same command line, same sockets), then drain this one"
        " (default HUP)",
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
        "--max-conns-per-ip",
        type=positive_int,
        metavar="N",
        help="refuse a client address's connections past N open at once",
    )
    lim.add_argument(
        "--line-timeout",
        type=positive_seconds,
        metavar="SECONDS",
        help="chat: close a client whose line takes longer than this to arrive",
    )
    lim.add_argument(
        "--dgram-rate",
        type=positive_int,
        metavar="N",
        help="answer at most N datagrams a second per source address (a burst of N allowed)",
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
    add_allow_deny(acc)
    acc.add_argument(
        "--allow-uid",
        type=_uid,
        action="append",
        default=[],
        metavar="UID",
        help="Unix sockets: serve only peers running as UID (SO_PEERCRED; repeatable)",
    )
    acc.add_argument(
        "--proxy-protocol",
        metavar="CIDR[,CIDR...]",
        help="peers in these networks are proxies that must open with a PROXY header"
        " (v1 or v2, within 3 s); everyone else is refused",
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
    chat = parser.add_argument_group("chat")
    chat.add_argument(
        "--backplane",
        metavar="redis://HOST:PORT[/DB]",
        help="share chat rooms through Redis pub/sub: across --workers, --engine fork and hosts",
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
    if word.startswith(INHERITED_PREFIXES):
        return True  # fd:abc is then a bad endpoint, not an unknown service
    # A port that is a name must be a known service here: ``module:Class`` is not an endpoint.
    try:
        resolve_service(parse_endpoint(word))
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
    from sockkit.server import Limits, ServerLog, TLSFiles, make_logger, serve

    _search_working_directory()
    service, endpoints = split_targets(args.targets)
    endpoints = [text for given in endpoints for text in expand_inherited(given)]
    reject_inapplicable(args, endpoints)
    limits = replace(
        Limits(),
        max_conns=args.max_conns,
        idle_timeout=args.idle_timeout,
        send_timeout=args.send_timeout,
        drain_timeout=args.drain_timeout,
        max_conns_per_ip=args.max_conns_per_ip,
        allow_uids=frozenset(args.allow_uid) if args.allow_uid else None,
        dgram_rate=args.dgram_rate,
        line_timeout=args.line_timeout,
    )
    if args.threads is not None:
        limits = replace(limits, threads=args.threads)
    tls = None
    if args.tls_cert is not None:
        tls = TLSFiles(args.tls_cert, args.tls_key, args.tls_client_ca)
    elif args.tls_key is not None or args.tls_client_ca is not None:
        raise UsageError("--tls-key and --tls-client-ca need --tls-cert FILE")
    service_source: str | ServiceSpec = service
    log = ServerLog(make_logger(args.log_level, args.log_format))
    if args.backplane is not None:
        service_source = _chat_with_backplane(service, args.backplane, log)
    reload_command = None
    if args.reload_signal != "none" and getattr(args, "argv", None):
        reload_command = [sys.executable, "-m", "sockkit", *args.argv]
    # This process only serves from here on: what start-up built (modules,
    # the parser) lives until exit, so keep the collector from rescanning it
    # whenever connections' objects trigger a collection.
    gc.freeze()
    serve(
        service_source,
        endpoints,
        engine=args.engine,
        limits=limits,
        allow=args.allow,
        deny=args.deny,
        tls=tls,
        backlog=args.backlog,
        mode=0o600 if args.mode is None else args.mode,
        workers=args.workers,
        log=log,
        reload_command=reload_command,
        proxy_protocol=_proxy_protocol(args.proxy_protocol),
        reload_signal=getattr(signal, f"SIG{args.reload_signal}", signal.SIGHUP),
    )
    return 0


def _chat_with_backplane(service: str, url: str, log: ServerLog) -> ServiceSpec:
    """The chat service with its room carried through Redis; Redis must answer now (else exit 1)."""
    from sockkit.backplane import RedisBackplane, parse_redis_url
    from sockkit.services import chat_spec

    if service != "chat":
        raise UsageError(f"--backplane is for the chat service, not {service!r}")
    backplane = RedisBackplane(
        parse_redis_url(url), log=lambda text: log.event(logging.WARNING, text)
    )
    backplane.check()
    return chat_spec(backplane=backplane)


def _proxy_protocol(text: str | None) -> ProxyProtocol | None:
    from sockkit._proxy_admission import ProxyProtocol

    if text is None:
        return None
    try:
        return ProxyProtocol.from_option(text)
    except ValueError as exc:
        raise UsageError(f"bad --proxy-protocol {text!r}: {exc}") from None


def _search_working_directory() -> None:
    """Let ``serve mymod:Upper`` find ``./mymod.py``, as ``python -m`` would.

    The installed ``sockkit`` script, unlike ``python -m``, does not put the
    working directory on ``sys.path``; the library never edits it.
    """
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
