"""sockkit relay: forward LISTEN to TARGET, optionally breaking the network on purpose."""

from __future__ import annotations

import argparse
import logging
import sys

from sockkit._endpoint import Endpoint, parse_endpoint, resolve_service
from sockkit._sd_notify import notify_ready, notify_stopping
from sockkit.relay import Faults, parse_rate, parse_size, run_relay

DESCRIPTION = """\
Forward every connection (or datagram) on LISTEN to TARGET, like socat, and
inject faults like toxiproxy: latency and jitter, a bandwidth cap, small
writes, a reset after N bytes, datagram loss. Half-close passes through.
"""

EXAMPLES = """\
examples:
  sockkit relay 7100 7007                          plain forwarder 127.0.0.1:7100 -> :7007
  sockkit relay 7100 7007 --latency 200 --jitter 50
  sockkit relay 7100 7007 --bandwidth 64k --slice 10
  sockkit relay 7100 7007 --reset-after 1M         reset both sides after 1 MB
  sockkit relay udp://5300 udp://127.0.0.1:53 --drop 10%
  sockkit relay unix:/tmp/front.sock tcp://127.0.0.1:6379
  sockkit relay systemd:web 127.0.0.1:8080        accept on the socket systemd named 'web'
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("listen", help="endpoint to accept on (also fd:N, systemd:[NAME])")
    parser.add_argument("target", help="endpoint to forward to")
    parser.add_argument(
        "--latency", type=float, default=0.0, metavar="MS", help="added delay per chunk"
    )
    parser.add_argument("--jitter", type=float, default=0.0, metavar="MS", help="+/- random delay")
    parser.add_argument(
        "--bandwidth", default="0", metavar="BYTES/S", help="cap per direction (64k, 1M)"
    )
    parser.add_argument(
        "--slice", default="0", metavar="BYTES", help="split writes into pieces this big"
    )
    parser.add_argument(
        "--reset-after", default="0", metavar="BYTES", help="reset after this many bytes"
    )
    parser.add_argument("--drop", default="0", metavar="RATE", help="datagram loss (0.1 or 10%%)")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )


def run(args: argparse.Namespace) -> int:
    listen = parse_endpoint(args.listen)
    target = parse_endpoint(
        args.target,
        default_transport=listen.transport if listen.is_datagram and not listen.is_unix else "tcp",
    )
    target = resolve_service(target)  # an unknown service name is a usage error now, not per client
    faults = Faults(
        latency=max(0.0, args.latency) / 1000,
        jitter=max(0.0, args.jitter) / 1000,
        bandwidth=parse_size(args.bandwidth, "bandwidth"),
        slice=parse_size(args.slice, "slice"),
        reset_after=parse_size(args.reset_after, "byte count"),
        drop=parse_rate(args.drop),
    )
    logging.basicConfig(level=args.log_level.upper(), format="%(message)s", stream=sys.stderr)
    run_relay(listen, target, faults, on_ready=_announce)
    notify_stopping()
    return 0


def _announce(bound: Endpoint) -> None:
    sys.stderr.write(f"listening on {bound}\n")
    sys.stderr.flush()
    notify_ready()
