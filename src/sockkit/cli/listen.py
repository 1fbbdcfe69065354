"""``sockkit listen ENDPOINT``: accept peers and pump both ways."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from types import FrameType

from sockkit.cli._netcat_flags import (
    add_listen_flags,
    apply_flags,
    as_datagram,
    listen_endpoint_text,
    print_line,
)
from sockkit.cli._parser import say
from sockkit.cli.connect import (
    add_common_arguments,
    common_options,
    endpoint_of,
    reject_inapplicable,
    verbose_printer,
)
from sockkit.client import run_listen

DESCRIPTION = """\
Listen on ENDPOINT (a bare PORT means 127.0.0.1), print one stderr line
'listening on ENDPOINT' with the real address (so port 0 can be scripted),
then accept one peer: what it sends goes to stdout, stdin goes to it.  The
exit status is 0 once the peer has closed and stdin has ended (a reset before
all of stdin arrived counts the bytes not delivered, exit 1).  At end of stdin the write side stays
open (so a peer still sending is not cut short); --half-close shuts it.
--keep-open accepts peers until interrupted: each peer's bytes reach stdout
in order (peers interleave chunk by chunk) and stdin goes to every peer
connected at the time.
udp:// and unixgram: print every datagram and send stdin lines, one datagram
each, to whoever sent last; they run until interrupted.
tls:// needs --tls-cert/--tls-key; --tls-ca then requires client certificates.
SIGTERM stops the listener with status 0."""

EXAMPLES = """\
examples: (the nc and ncat forms first)
  sockkit listen 127.0.0.1 9000 > got.bin     [HOST] PORT; a bare PORT is 127.0.0.1 only
  sockkit listen -k 0.0.0.0 9000              --keep-open: every peer, each one logged
  sockkit listen -k --exec /bin/cat 9000      a forking echo server (-c CMD: through sh)
  sockkit listen -k --allow 10.0.0.0/8 -e ./handler :9000
  sockkit listen -u 127.0.0.1 9000            UDP
  sockkit listen -x 9000                      hex dump of the traffic on stderr (-vv: text)
  sockkit listen -lvnp 9000                   nc -lvnp: -l is accepted, -p gives the port
sockkit's endpoint forms:
  sockkit listen 9000 > received.bin          receive one file
  sockkit listen --keep-open :9000            every peer, all interfaces
  sockkit listen udp://127.0.0.1:9000
  sockkit listen tls://127.0.0.1:4433 --tls-cert cert.pem --tls-key key.pem
  sockkit listen systemd:                    the socket systemd socket activation passed
  sockkit listen fd:3                        an inherited listening socket on descriptor 3
"""


class _Stop(Exception):
    pass


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, listening=True)
    parser.add_argument(
        "-k", "--keep-open", action="store_true", help="accept peers until interrupted"
    )
    parser.add_argument(
        "--half-close", action="store_true", help="at end of stdin shut the write side to the peer"
    )
    parser.add_argument("--tls-client-ca", dest="tls_ca", metavar="FILE", help="same as --tls-ca")
    add_listen_flags(parser)


def run(args: argparse.Namespace) -> int:
    endpoint = as_datagram(args, endpoint_of(args, *listen_endpoint_text(args)))
    reject_inapplicable(args, endpoint)
    options = dataclasses.replace(
        common_options(args), shutdown_on_eof=args.half_close, keep_open=args.keep_open
    )
    options = apply_flags(args, endpoint, options, listening=True)

    def listening(real: str) -> None:
        sys.stderr.write(f"listening on {real}\n")
        sys.stderr.flush()

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        run_listen(
            endpoint,
            options,
            on_event=verbose_printer(args),
            on_listening=listening,
            on_warning=say,
            on_peer=print_line,
        )
    except _Stop:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
