"""Capturing one flow on loopback: an AF_PACKET socket with a kernel filter.

The socket is opened with protocol 0, so it receives nothing until it is
bound; the filter is attached first and only then is it bound to ``lo`` with
``ETH_P_ALL``.  So no packet of another flow is ever queued (tcpdump opens
its socket the same way).  Every packet carries the kernel's receive
timestamp (``SO_TIMESTAMPNS``), not the time Python got round to reading
it, so reading late changes nothing.  ``PACKET_STATISTICS`` says how many
packets the filter passed and how many were dropped for lack of buffer
space; a capture with drops is reported, never drawn as if complete.
"""

from __future__ import annotations

import ctypes
import errno
import select
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

from sockkit._errors import SockkitError
from sockkit.trace._bpf import assemble, flow_filter

__all__ = ["Capture", "CaptureStats", "CaptureUnavailable", "RawPacket", "capture"]

_ETH_P_ALL = 0x0003
_SOL_PACKET = 263
_PACKET_STATISTICS = 6
_SO_ATTACH_FILTER = 26
_SO_TIMESTAMPNS = 35
_SNAPLEN = 0x40000
_BUFFER = 8 << 20  # 8 MiB: a few seconds of a scenario with room to spare
_CMSG_SPACE = socket.CMSG_SPACE(16)
_PACKET_OUTGOING = 4


class CaptureUnavailable(SockkitError):
    """A packet capture cannot be opened here (no privilege, no such interface)."""


@dataclass(frozen=True)
class RawPacket:
    """One captured frame: the kernel's timestamp (seconds since the epoch) and its bytes."""

    time: float
    frame: bytes


@dataclass(frozen=True)
class CaptureStats:
    """``packets`` the filter passed, ``dropped`` of them for lack of buffer space."""

    packets: int
    dropped: int


class Capture:
    """A running capture of PORT's packets on ``interface`` (default ``lo``).

    Raises :class:`CaptureUnavailable` when the packet socket cannot be
    opened (``EPERM`` without CAP_NET_RAW) or bound.  Call :meth:`read` (or
    iterate :meth:`packets`) and :meth:`stats`, then :meth:`close`.
    """

    def __init__(self, port: int, interface: str = "lo", buffer_size: int = _BUFFER) -> None:
        self.port = port
        self.interface = interface
        self._packets = self._dropped = 0
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        except PermissionError as exc:
            raise CaptureUnavailable(
                "capturing packets needs root or CAP_NET_RAW (a packet socket was refused)"
            ) from exc
        try:
            _attach_filter(sock, assemble(flow_filter(port)))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_size)
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            sock.bind((interface, _ETH_P_ALL))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.ENODEV:
                raise CaptureUnavailable(f"no interface {interface!r} to capture on") from exc
            raise CaptureUnavailable(f"cannot capture on {interface}: {exc.strerror}") from exc
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self, timeout: float = 0.0) -> list[RawPacket]:
        """Every packet queued now, waiting up to ``timeout`` seconds for the first one."""
        out: list[RawPacket] = []
        ready, _, _ = select.select([self._sock], [], [], timeout)
        while ready:
            try:
                data, ancdata, _, address = self._sock.recvmsg(
                    _SNAPLEN, _CMSG_SPACE, socket.MSG_DONTWAIT
                )
            except BlockingIOError:
                break
            if address[2] != _PACKET_OUTGOING:  # the filter drops these already
                out.append(RawPacket(_timestamp(ancdata), data))
        return out

    def packets(
        self, count: int | None = None, duration: float | None = None
    ) -> Iterator[RawPacket]:
        """Yield packets as they arrive, until ``count`` of them or ``duration`` seconds."""
        deadline = None if duration is None else time.monotonic() + duration
        seen = 0
        while count is None or seen < count:
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            for packet in self.read(wait):
                yield packet
                seen += 1
                if count is not None and seen >= count:
                    return
            if deadline is not None and time.monotonic() >= deadline:
                return

    def stats(self) -> CaptureStats:
        """Totals since the capture opened (the kernel's counters reset on each read)."""
        raw = self._sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8)
        packets, dropped = struct.unpack("II", raw)
        self._packets += packets
        self._dropped += dropped
        return CaptureStats(self._packets, self._dropped)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def capture(port: int, interface: str = "lo") -> Capture:
    """Start capturing PORT's TCP/UDP packets (and ICMP errors about them) on ``interface``."""
    return Capture(port, interface)


def _attach_filter(sock: socket.socket, code: bytes) -> None:
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    program = ctypes.create_string_buffer(code)
    fprog = struct.pack("HxxxxxxP", len(code) // 8, ctypes.addressof(program))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)


def _timestamp(ancdata: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
            seconds: int
            nanoseconds: int
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return seconds + nanoseconds / 1e9
    return time.time()
