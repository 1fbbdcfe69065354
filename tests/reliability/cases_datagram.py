"""Case 15: datagrams -- only when asked for, never amplifying, rate-limited, unbreakable."""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

from .scale import Scale
from .served import Served, inet_address
from .verdict import Verdict

__all__ = ["datagrams"]


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _udp_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9:
                inodes.add(fields[9])
    return inodes


def _udp_client(source: str, timeout: float = 1.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    return sock


def _ask(sock: socket.socket, address: tuple[str, int], data: bytes) -> bytes | None:
    sock.sendto(data, address)
    try:
        return sock.recv(65536)
    except TimeoutError:
        return None


def datagrams(engine: str, scale: Scale) -> Verdict:
    """15. No UDP unless named; replies never larger than allowed; ``--dgram-rate``; junk survived."""
    v = Verdict()
    with Served(["echo", "0", "--engine", engine]) as plain:
        udp = _socket_inodes(plain.pid) & _udp_inodes()
        v.check(not udp, f"{len(udp)} UDP sockets without udp://")
    sizes = [0, 1, 72, 511, 512, 513, 1400, 9000, 65507]
    args = ["chargen", "udp://127.0.0.1:0", "--engine", engine]
    with Served(args) as chargen:
        address = inet_address(chargen.endpoints[0])
        client = _udp_client("127.0.0.2")
        replies = [_ask(client, address, b"q" * size) for size in sizes]
        client.close()
        longest = max((len(r) for r in replies if r is not None), default=-1)
        answered = sum(r is not None for r in replies)
        v.check(0 <= longest <= 512, f"chargen replies <= {longest} bytes ({answered} answered)")
    rate = scale.dgram_rate
    args = ["echo", "udp://127.0.0.1:0", "--engine", engine, "--dgram-rate", str(rate)]
    with Served([*args, "--log-level", "warning"]) as echo:
        address = inet_address(echo.endpoints[0])
        # The flood comes from 127.0.0.1; every other check from 127.0.0.2, a
        # source with its own allowance.
        client = _udp_client("127.0.0.2")
        longer = 0
        for size in sizes:
            reply = _ask(client, address, os.urandom(size))
            longer += reply is not None and len(reply) > size
        v.check(longer == 0, f"{longer} echo replies longer than their request")
        time.sleep(1.0)  # let the bucket refill after the size checks
        flooder = _udp_client("127.0.0.1")
        flooder.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        flooder.setblocking(False)
        start = time.monotonic()
        for n in range(scale.dgram_flood):
            due = start + n / 10_000
            while time.monotonic() < due:
                pass
            try:
                flooder.sendto(b"amplify?", address)
            except BlockingIOError:
                pass
        seconds = time.monotonic() - start
        time.sleep(0.3)
        got = 0
        while True:
            try:
                flooder.recv(64)
            except BlockingIOError:
                break
            got += 1
        flooder.close()
        # A bucket of ``rate`` refilled at ``rate``/s allows at most rate x (the
        # whole window, including the queue the server answers after the last
        # send) + rate in any window.
        window = time.monotonic() - start
        allowed = rate * window + rate
        per_second = got / seconds
        v.check(
            got <= allowed,
            f"{got} replies to {scale.dgram_flood} in {seconds:.2f} s ({per_second:.0f}/s, "
            f"allowed {allowed:.0f})",
        )
        other = _ask(client, address, b"other source")
        v.check(other == b"other source", "another source still answered")
        client.close()
    # Junk goes to a server without --dgram-rate, so every datagram reaches the service.
    with Served(
        ["echo", "udp://127.0.0.1:0", "--engine", engine, "--log-level", "warning"]
    ) as echo:
        address = inet_address(echo.endpoints[0])
        client = _udp_client("127.0.0.2")
        rng = random.Random(14)
        for n in range(scale.dgram_flood):
            size = rng.choice([0, 1, 2, 7, 100, 1500, 65507]) if n % 10 else 0
            try:
                client.sendto(rng.randbytes(size), address)
            except OSError:
                pass
            if n % 500 == 0:
                time.sleep(0.01)
        time.sleep(0.5)
        client.close()  # its queue is full of junk's echoes; ask from a fresh socket
        client = _udp_client("127.0.0.2")
        alive = echo.alive() and _ask(client, address, b"still?") == b"still?"
        client.close()
        v.check(alive and not echo.tracebacks(), f"{scale.dgram_flood} junk datagrams survived")
    return v
