"""Real clients the cases use: an echo probe, a bulk transfer, waiting for a peer to close."""

from __future__ import annotations

import hashlib
import os
import select
import socket
import threading
import time

__all__ = ["closed_within", "echo_probe", "echo_transfer", "family_of", "wait_closed"]


def family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def echo_probe(address: tuple[str, int], timeout: float = 5.0) -> float:
    """A new client's round trip: connect, send a line, read it back, close.  Seconds (inf: failed)."""
    start = time.monotonic()
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.sendall(b"ping\n")
            got = b""
            while len(got) < 5:
                chunk = sock.recv(64)
                if not chunk:
                    return float("inf")
                got += chunk
    except OSError:
        return float("inf")
    return time.monotonic() - start


def wait_closed(sock: socket.socket, timeout: float) -> tuple[bool, int]:
    """Read until the peer closes (EOF or reset) or ``timeout``; (closed?, bytes read)."""
    deadline = time.monotonic() + timeout
    total = 0
    sock.setblocking(False)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, total
        readable, _, _ = select.select([sock], [], [], left)
        if not readable:
            continue
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            return True, total
        if not chunk:
            return True, total
        total += len(chunk)


def closed_within(sock: socket.socket, timeout: float) -> float | None:
    """Seconds until the peer closed ``sock`` (None: still open after ``timeout``)."""
    start = time.monotonic()
    closed, _ = wait_closed(sock, timeout)
    return time.monotonic() - start if closed else None


def echo_transfer(
    address: tuple[str, int], size: int, timeout: float = 120.0
) -> tuple[bool, float, int]:
    """Send ``size`` random bytes to echo while reading them back; (sha256 equal, seconds, bytes back).

    The sender is a thread so the reader never waits on it: the server can
    always make progress and backpressure stays the server's business.
    """
    block = os.urandom(64 * 1024)
    sent_hash = hashlib.sha256()
    got_hash = hashlib.sha256()
    sock = socket.create_connection(address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    failure: list[BaseException] = []

    def send() -> None:
        left = size
        try:
            while left:
                piece = block[: min(left, len(block))]
                sent_hash.update(piece)
                sock.sendall(piece)
                left -= len(piece)
            sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            failure.append(exc)

    start = time.monotonic()
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    received = 0
    try:
        while True:
            chunk = sock.recv(256 * 1024)
            if not chunk:
                break
            got_hash.update(chunk)
            received += len(chunk)
    except OSError:
        pass
    elapsed = time.monotonic() - start
    sender.join(timeout)
    sock.close()
    same = not failure and received == size and sent_hash.digest() == got_hash.digest()
    return same, elapsed, received
