"""sockkit relay: forward LISTEN to TARGET, breaking the network on purpose; toxiproxy's API."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from typing import Any

from sockkit._endpoint import Endpoint, parse_endpoint, resolve_service
from sockkit._errors import UsageError
from sockkit._sd_notify import notify_ready
from sockkit.cli._parser import positive_seconds
from sockkit.relay import (
    DATAGRAM_TYPES,
    STREAM_TYPES,
    Faults,
    RelayTLS,
    load_config,
    log_handler,
    make_observers,
    parse_rate,
    parse_size,
    run_relay,
    run_relays,
)

SUBCOMMANDS = {"ctl": "sockkit.cli.relay_ctl"}

DESCRIPTION = """\
Forward every connection (or datagram) on LISTEN to TARGET, like socat, and
inject faults like toxiproxy: latency and jitter, a bandwidth cap, small
writes, resets, cut-offs; packet loss (random or in bursts), duplicates,
reordering and corruption for datagrams. Half-close passes through.

With --api, serve toxiproxy's HTTP API: its clients (and 'sockkit relay ctl')
create proxies and toxics at run time, many proxies in one process.

toxics (--toxic TYPE[:KEY=VALUE,...]; toxiproxy units: ms, KB/s, bytes):
  latency     latency, jitter             delay each chunk (datagram too)
  bandwidth   rate (KB/s)                 cap the rate
  slicer      average_size, size_variation, delay (us)   cut into small writes
  reset_peer  timeout                     RST both sides after timeout
  limit_data  bytes                       pass that many bytes, then close
  timeout     timeout (0 = never close)   swallow data, close after timeout
  slow_close  delay                       hold the close back
  loss        probability | p, r, loss_bad, loss_good   (Gilbert-Elliott bursts)
  duplicate / reorder / corrupt   probability           (datagrams)
keys for any toxic: stream=upstream|downstream (default both on the command
line), toxicity, name, and the conditions from_connection, until_connection,
after_bytes, after_seconds, pattern.
"""

EXAMPLES = """\
examples:
  sockkit relay 7100 7007                          plain forwarder 127.0.0.1:7100 -> :7007
  sockkit relay 7100 7007 --latency 200 --jitter 50
  sockkit relay 7100 7007 --bandwidth 64k --slice 10
  sockkit relay 7100 7007 --toxic reset_peer:until_connection=2   fail the first two
  sockkit relay udp://5300 udp://127.0.0.1:53 --toxic loss:p=0.05,r=0.25
  sockkit relay unix:/tmp/front.sock tcp://127.0.0.1:6379 -v
  sockkit relay --api 127.0.0.1:8474 --config proxies.json
  sockkit relay ctl toxic add redis latency latency=100 --stream downstream
  sockkit relay systemd:web 127.0.0.1:8080        accept on the socket systemd named 'web'
"""

_CONDITIONS = {"from_connection", "until_connection", "after_bytes", "after_seconds", "pattern"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "listen", nargs="?", help="endpoint to accept on (also fd:N, systemd:[NAME])"
    )
    parser.add_argument("target", nargs="?", help="endpoint to forward to")
    parser.add_argument(
        "--latency", type=float, default=0.0, metavar="MS", help="added delay per chunk (>= 0)"
    )
    parser.add_argument("--jitter", type=float, default=0.0, metavar="MS", help="+/- random delay")
    parser.add_argument(
        "--bandwidth", metavar="BYTES/S", help="cap per direction (64k, 1M; more than 0)"
    )
    parser.add_argument(
        "--slice", metavar="BYTES", help="split writes into pieces this big (more than 0)"
    )
    parser.add_argument(
        "--reset-after",
        metavar="BYTES",
        help="reset both sides once this many bytes passed one way (more than 0)",
    )
    parser.add_argument(
        "--drop", metavar="RATE", help="datagram loss (0.1 or 10%%); datagram relays only"
    )
    parser.add_argument(
        "--toxic",
        action="append",
        default=[],
        metavar="SPEC",
        help="add a toxic: TYPE[:KEY=VALUE,...] (see above); repeatable",
    )
    parser.add_argument(
        "--api", metavar="HOST:PORT", help="serve toxiproxy's HTTP API here (e.g. 127.0.0.1:8474)"
    )
    parser.add_argument("--config", metavar="FILE", help="proxies to create, toxiproxy's JSON")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="dump relayed bytes as text, socat-style (> upstream, < downstream)",
    )
    parser.add_argument("-x", "--hex", action="store_true", help="dump relayed bytes as hex")
    parser.add_argument("--pcap", metavar="FILE", help="write the relayed bytes to a pcap file")
    parser.add_argument(
        "--send-proxy",
        choices=["v1", "v2"],
        help="send a PROXY protocol header (text v1 or binary v2) to TARGET first",
    )
    parser.add_argument("--tls-cert", metavar="FILE", help="certificate for a tls:// LISTEN")
    parser.add_argument("--tls-key", metavar="FILE", help="its key (if not in --tls-cert)")
    parser.add_argument("--tls-ca", metavar="FILE", help="CAs to trust for a tls:// TARGET")
    parser.add_argument(
        "--insecure", action="store_true", help="do not verify a tls:// TARGET's certificate"
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    parser.add_argument(
        "--drain-timeout",
        type=positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, how long open connections may finish (default 10)",
    )


def run(args: argparse.Namespace) -> int:
    log = logging.getLogger("sockkit.relay")
    handler = log_handler(sys.stderr, args.log_format)
    log.addHandler(handler)
    log.setLevel(args.log_level.upper())
    log.propagate = False
    try:
        return _run(args)
    finally:
        log.removeHandler(handler)


def _run(args: argparse.Namespace) -> int:
    if (args.listen is None) != (args.target is None):
        raise UsageError("relay needs both LISTEN and TARGET (or --api / --config alone)")
    specs: list[dict[str, Any]] = load_config(args.config) if args.config else []
    api = _api_address(args.api) if args.api else None
    observers = _observers(args)
    tls = RelayTLS(args.tls_cert, args.tls_key, args.tls_ca, args.insecure)
    if args.listen is None:
        if not specs and api is None:
            raise UsageError("relay needs LISTEN and TARGET, or --api HOST:PORT, or --config FILE")
        _no_single_proxy_options(args)
        run_relays(
            specs,
            api=api,
            on_api=_announce_api,
            on_ready=_ready,
            tls=tls,
            drain_timeout=args.drain_timeout,
        )
        return 0
    listen = parse_endpoint(args.listen)
    target = parse_endpoint(
        args.target,
        default_transport=listen.transport if listen.is_datagram and not listen.is_unix else "tcp",
    )
    target = resolve_service(target)  # an unknown service name is a usage error now, not per client
    faults = _faults(args, datagram=listen.is_datagram)
    _tls_options_apply(args, listen, target)
    toxics = [body for text in args.toxic for body in _toxic_spec(text, listen.is_datagram)]
    if specs or api is not None:
        bodies = [*faults.toxics(datagram=listen.is_datagram), *toxics]
        spec = {"name": "relay", "listen": str(listen), "upstream": str(target), "toxics": bodies}
        if args.send_proxy:
            spec["send_proxy"] = args.send_proxy
        run_relays(
            [spec, *specs],
            api=api,
            on_api=_announce_api,
            on_ready=_ready,
            tls=tls,
            drain_timeout=args.drain_timeout,
        )
        return 0
    run_relay(
        listen,
        target,
        faults,
        toxics=toxics,
        observers=observers,
        send_proxy=args.send_proxy,
        tls=tls,
        on_ready=_ready,
        drain_timeout=args.drain_timeout,
    )
    return 0


def _ready(proxies: object) -> None:
    notify_ready()  # to systemd (Type=notify), once every proxy listens


def _observers(args: argparse.Namespace) -> list[Any]:
    if not (args.verbose or args.hex or args.pcap):
        return []
    return make_observers(verbose=args.verbose, hexdump=args.hex, pcap=args.pcap)


def _no_single_proxy_options(args: argparse.Namespace) -> None:
    for option, value in (
        ("--latency", args.latency),
        ("--jitter", args.jitter),
        ("--bandwidth", args.bandwidth),
        ("--slice", args.slice),
        ("--reset-after", args.reset_after),
        ("--drop", args.drop),
        ("--toxic", args.toxic),
        ("-v", args.verbose),
        ("-x", args.hex),
        ("--pcap", args.pcap),
        ("--send-proxy", args.send_proxy),
    ):
        if value:
            raise UsageError(
                f"{option} applies to the LISTEN TARGET relay; with --api alone,"
                " add toxics through the API ('sockkit relay ctl toxic add')"
            )


def _tls_options_apply(args: argparse.Namespace, listen: Endpoint, target: Endpoint) -> None:
    """TLS options name the leg they are for; one without that leg being tls:// is an error."""
    for option, value, leg, endpoint in (
        ("--tls-cert", args.tls_cert, "LISTEN", listen),
        ("--tls-key", args.tls_key, "LISTEN", listen),
        ("--tls-ca", args.tls_ca, "TARGET", target),
        ("--insecure", args.insecure, "TARGET", target),
    ):
        if value and not endpoint.is_tls:
            raise UsageError(f"{option} applies to a tls:// {leg}, and {leg} is {endpoint}")


def _faults(args: argparse.Namespace, *, datagram: bool) -> Faults:
    """The command line's faults; a value that would do nothing or cannot apply is a usage error."""
    for option, value in (("--latency", args.latency), ("--jitter", args.jitter)):
        if not (math.isfinite(value) and value >= 0):
            raise UsageError(f"{option} must be 0 or more milliseconds, not {value:g}")
    kind = "datagram" if datagram else "stream"
    if args.drop is not None and not datagram:
        raise UsageError(
            "--drop loses datagrams and does not apply to a stream relay;"
            " for streams use --toxic reset_peer, limit_data or timeout"
        )
    for option, value in (
        ("--bandwidth", args.bandwidth),
        ("--slice", args.slice),
        ("--reset-after", args.reset_after),
    ):
        if value is not None and datagram:
            raise UsageError(f"{option} applies to streams, not to a {kind} relay")
    sizes = {}
    for option, value, what in (
        ("--bandwidth", args.bandwidth, "bandwidth"),
        ("--slice", args.slice, "slice"),
        ("--reset-after", args.reset_after, "byte count"),
    ):
        size = parse_size(value, what) if value is not None else 0
        if value is not None and size <= 0:
            raise UsageError(f"{option} must be more than 0 (leave it out for no {what} limit)")
        sizes[option] = size
    return Faults(
        latency=args.latency / 1000,
        jitter=args.jitter / 1000,
        bandwidth=sizes["--bandwidth"],
        slice=sizes["--slice"],
        reset_after=sizes["--reset-after"],
        drop=parse_rate(args.drop) if args.drop is not None else 0.0,
    )


def _toxic_spec(text: str, datagram: bool) -> list[dict[str, Any]]:
    """``TYPE[:KEY=VALUE,...]`` -> toxic bodies (both directions unless ``stream`` is given)."""
    kind, _, rest = text.partition(":")
    kinds = DATAGRAM_TYPES if datagram else STREAM_TYPES
    if kind not in kinds:
        raise UsageError(
            f"bad --toxic {text!r}: unknown type {kind!r} for a"
            f" {'datagram' if datagram else 'stream'} relay; choose from {', '.join(kinds)}"
        )
    body: dict[str, Any] = {"type": kind, "attributes": {}, "when": {}}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"bad --toxic {text!r}: expected KEY=VALUE, not {item!r}")
        if key in ("stream", "name"):
            body[key] = value
        elif key == "pattern":
            body["when"][key] = value
        else:
            try:
                number = float(value)
            except ValueError:
                raise UsageError(f"bad --toxic {text!r}: {key} needs a number") from None
            if not math.isfinite(number):
                raise UsageError(f"bad --toxic {text!r}: {key} needs a finite number")
            if key == "toxicity":
                body[key] = number
            elif key in _CONDITIONS:
                body["when"][key] = number
            else:
                body["attributes"][key] = number
    if "stream" in body:
        return [body]
    return [{**body, "stream": s, "name": f"{kind}_{s}"} for s in ("upstream", "downstream")]


def _api_address(text: str) -> tuple[str, int]:
    endpoint = resolve_service(parse_endpoint(text))
    if endpoint.is_unix or endpoint.is_datagram or not isinstance(endpoint.port, int):
        raise UsageError(f"--api takes HOST:PORT, not {text!r}")
    return endpoint.host or "127.0.0.1", endpoint.port


def _announce_api(host: str, port: int) -> None:
    where = f"[{host}]" if ":" in host else host
    sys.stderr.write(f"api on http://{where}:{port}\n")
    sys.stderr.flush()
    notify_ready()
