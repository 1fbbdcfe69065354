"""The client layer: connections and listeners for Python programs, and the netcat pumps.

Python programs use :func:`connect` / :func:`listen` (streams) and
:func:`connect_datagram` / :func:`listen_datagram` (UDP, unixgram).  The
``sockkit connect`` and ``sockkit listen`` commands run :func:`run_connect` and
:func:`run_listen`.
"""

from __future__ import annotations

from sockkit.client._connection import (
    DEFAULT,
    Connection,
    DatagramConnection,
    connect,
    connect_datagram,
)
from sockkit.client._delivery import NotDeliveredError
from sockkit.client._exec import program_argv
from sockkit.client._listener import Listener, listen, listen_datagram
from sockkit.client._netcat import NetcatOptions, run_connect, run_listen
from sockkit.client._portscan import PortResult, parse_ports, scan_ports
from sockkit.client._tls import TLSConfig

__all__ = [
    "DEFAULT",
    "Connection",
    "DatagramConnection",
    "Listener",
    "NetcatOptions",
    "NotDeliveredError",
    "PortResult",
    "TLSConfig",
    "connect",
    "connect_datagram",
    "listen",
    "listen_datagram",
    "parse_ports",
    "program_argv",
    "run_connect",
    "run_listen",
    "scan_ports",
]
