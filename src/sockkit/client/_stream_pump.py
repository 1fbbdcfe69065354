"""The byte pump behind ``sockkit connect`` and ``sockkit listen``: stdin to peers, peers to stdout.

One ``poll`` loop, no threads.  Rules:

- stdin is read only when every peer's send buffer is empty, so a slow peer
  slows the reader instead of growing memory; what is read goes to every peer
  (one peer for ``connect`` and plain ``listen``; a broadcast with ``keep_open``).
- At end of stdin, once a peer's buffer is flushed, its write side is shut
  (``shutdown(SHUT_WR)``) if ``shutdown_on_eof``; we keep reading its replies.
- A peer's end of stream means only that the peer stopped *sending*: it may
  still be reading (``ncat --recv-only``, ``nc -N``), so stdin keeps going to it
  until stdin ends.  A peer is done once both directions are: it sent its end
  of stream, and ours is finished (stdin ended and flushed, and shut if
  ``shutdown_on_eof``).  With ``keep_open`` such a peer is done once what is
  queued for it is sent.  With no peer left (and not ``keep_open``) the pump returns.
- A peer that resets (or fails) while stdin bytes are still on their way raises
  :class:`NotDeliveredError`, which says how many bytes of stdin did not reach it.
- ``send_only``: once stdin is done and flushed the pump returns without
  waiting for the peer.  ``receive_only``: stdin is never read.
- ``idle_timeout``: no byte either way for that long raises :class:`TimeoutError`.
- ``quit_after`` (nc's ``-q``): once stdin has ended and every peer's buffer is
  flushed, wait that many seconds (printing replies), then return.
- ``stdin_filter`` rewrites each piece of stdin before it is queued (``--crlf``);
  ``dump`` is told every piece that moved, ``(">" or "<", peer number, offset, bytes)``.
- Reset, refused and TLS errors on a peer raise (one peer) or are reported
  through ``on_event`` and drop that peer (``keep_open``).
"""

from __future__ import annotations

import errno
import os
import select
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sockkit._errors import ConnectionResetError, SockkitError, TimeoutError
from sockkit.client._delivery import NotDeliveredError, Shortfall, acknowledged, stdin_left
from sockkit.client._streams import ByteStream, PlainStream
from sockkit.client._tls import tls_error

__all__ = ["Peer", "PumpOptions", "StreamPump", "write_all"]

#: Bytes per read from stdin or a socket: large, so 10 MiB moves in few system calls.
_CHUNK = 256 * 1024
_IN = select.POLLIN | select.POLLHUP | select.POLLERR
_OUT = select.POLLOUT


@dataclass(frozen=True, slots=True)
class PumpOptions:
    """How the pump behaves; see the module rules."""

    shutdown_on_eof: bool = True
    send_only: bool = False
    receive_only: bool = False
    idle_timeout: float | None = None
    keep_open: bool = False
    quit_after: float | None = None


@dataclass(slots=True, eq=False)
class Peer:
    """One connected stream and what has moved through it."""

    stream: ByteStream
    name: str
    out: bytearray = field(default_factory=bytearray)
    sent: int = 0
    received: int = 0
    write_shut: bool = False
    #: The peer sent its end of stream; it may still be reading.
    read_done: bool = False
    #: ... and did so before we shut our side.
    peer_first: bool = False
    #: Counts the peers of one pump from 1 (the ``conn=`` of a traffic dump).
    number: int = 0


Accept = Callable[[], Peer | None]
Event = Callable[[str], None]
#: ``(way, peer number, offset, data)``: see :class:`sockkit._traffic_dump.TrafficDump`.
Dump = Callable[[str, int, int, bytes], None]


class StreamPump:
    """Move bytes between ``stdin_fd``/``stdout_fd`` and connected stream sockets until done.

    Call :meth:`add` for each connected peer (or give ``accept`` and a listening
    ``listener_fd`` to take new peers as they come), then :meth:`run` once.
    """

    def __init__(
        self,
        stdin_fd: int,
        stdout_fd: int,
        options: PumpOptions,
        on_event: Event | None = None,
        on_warning: Event | None = None,
        *,
        stdin_filter: Callable[[bytes], bytes] | None = None,
        dump: Dump | None = None,
    ) -> None:
        self._stdin = stdin_fd
        self._stdout = stdout_fd
        self._options = options
        self._on_event = on_event or (lambda message: None)
        # A dropped peer (keep_open) is worth saying even without --verbose.
        self._on_warning = on_warning or self._on_event
        self._peers: dict[int, Peer] = {}
        self._stdin_open = not options.receive_only
        self._stdin_ended = False  # stdin reached its end (never, with receive_only)
        self._poll = select.poll()
        self._masks: dict[int, int] = {}
        self._last_activity = time.monotonic()
        self._stdin_filter = stdin_filter
        self._dump = dump
        self._numbered = 0
        self._flushed_at: float | None = None  # when stdin was over and all of it sent

    def add(self, peer: Peer) -> None:
        self._numbered += 1
        peer.number = self._numbered
        self._peers[peer.stream.fileno()] = peer

    def run_one(self, peer: Peer) -> None:
        """Pump with the single connected ``peer`` until done."""
        self.add(peer)
        self.run()

    def run(self, listener_fd: int | None = None, accept: Accept | None = None) -> None:
        """Pump until done (see the module rules); raises :class:`SockkitError` on failure."""
        try:
            while self._peers or (self._options.keep_open and listener_fd is not None):
                if self._options.send_only and not self._stdin_open and self._all_flushed():
                    return
                if self._quit_left() == 0:
                    self._on_event(f"quitting {self._options.quit_after:g}s after end of stdin")
                    return
                self._update_interest(listener_fd)
                for fd, mask in self._poll.poll(self._poll_timeout()):
                    self._dispatch(fd, mask, listener_fd, accept)
                self._check_idle()
        finally:
            for peer in list(self._peers.values()):
                self._forget(peer)

    # -- the loop ----------------------------------------------------------------

    def _quit_left(self) -> float | None:
        """Seconds until ``quit_after`` ends the pump (0: now), or None when it does not apply."""
        if self._options.quit_after is None or not self._stdin_ended:
            return None
        if self._flushed_at is None:
            if not self._all_flushed():
                return None
            self._flushed_at = time.monotonic()
        return max(self._flushed_at + self._options.quit_after - time.monotonic(), 0.0)

    def _all_flushed(self) -> bool:
        return all(not p.out and not p.stream.wants_write() for p in self._peers.values())

    def _wants_send(self, peer: Peer) -> bool:
        """Output waits for ``peer``: bytes, TLS records, or the half-close stdin's end calls for."""
        if peer.out or peer.stream.wants_write():
            return True
        return self._stdin_ended and self._options.shutdown_on_eof and not peer.write_shut

    def _sending_done(self, peer: Peer) -> bool:
        """Our direction to ``peer`` is finished: nothing more will ever be sent to it."""
        if self._options.receive_only:
            return True
        return self._stdin_ended and not self._wants_send(peer)

    def _may_finish(self, peer: Peer) -> bool:
        """``peer`` sent its end of stream: may it be closed now?

        Once our direction is finished, yes.  With ``keep_open`` also once the
        bytes queued for it are sent: holding every such peer until stdin ends
        would hold its descriptor for as long as the listener runs.
        """
        if self._sending_done(peer):
            return True
        return self._options.keep_open and not self._wants_send(peer)

    def _want(self, fd: int, mask: int) -> None:
        if self._masks.get(fd, 0) == mask:
            return
        if mask:
            self._poll.register(fd, mask)
            self._masks[fd] = mask
        else:
            self._poll.unregister(fd)
            del self._masks[fd]

    def _update_interest(self, listener_fd: int | None) -> None:
        read_stdin = self._stdin_open and bool(self._peers) and self._all_flushed()
        self._want(self._stdin, _IN if read_stdin else 0)
        for fd, peer in self._peers.items():
            # POLLERR alone once the peer finished sending: a reset still wakes us.
            reading = select.POLLERR if peer.read_done else _IN
            self._want(fd, reading | (_OUT if self._wants_send(peer) else 0))
        if listener_fd is not None:
            self._want(listener_fd, _IN)

    def _poll_timeout(self) -> int | None:
        # TLS may hold decrypted bytes that poll cannot see: look again at once.
        if any(self._buffered(p) for p in self._peers.values()):
            return 0
        limits = []
        quit_left = self._quit_left()
        if quit_left is not None:
            limits.append(quit_left)
        if self._options.idle_timeout is not None:
            limits.append(self._last_activity + self._options.idle_timeout - time.monotonic())
        if not limits:
            return None
        return max(int(min(limits) * 1000) + 1, 0)

    @staticmethod
    def _buffered(peer: Peer) -> bool:
        return not peer.read_done and peer.stream.has_buffered()

    def _check_idle(self) -> None:
        for peer in list(self._peers.values()):
            if self._buffered(peer):
                self._guarded(peer, self._receive)
        idle = self._options.idle_timeout
        if idle is not None and time.monotonic() - self._last_activity >= idle:
            raise TimeoutError(f"timed out: no data either way for {idle:g}s")

    def _dispatch(self, fd: int, mask: int, listener_fd: int | None, accept: Accept | None) -> None:
        if fd == listener_fd:
            assert accept is not None
            peer = accept()
            if peer is not None:
                self.add(peer)
            return
        if fd == self._stdin:
            self._read_stdin()
            return
        peer = self._peers.get(fd)
        if peer is None:
            return
        if mask & _OUT:
            self._guarded(peer, self._send)
        if mask & _IN and fd in self._peers:
            self._guarded(peer, self._receive)

    def _guarded(self, peer: Peer, step: Callable[[Peer], None]) -> None:
        """Run ``step``; with ``keep_open`` a failing peer is reported and dropped, not fatal."""
        if peer.stream.fileno() not in self._peers:
            return
        try:
            step(peer)
        except SockkitError as exc:
            error = self._with_shortfall(peer, exc)
            if not self._options.keep_open:
                if error is exc:
                    raise
                raise error from exc
            self._on_warning(f"{peer.name}: {error}")
            self._forget(peer)

    def _with_shortfall(self, peer: Peer, exc: SockkitError) -> SockkitError:
        """``exc``, or a :class:`NotDeliveredError` when stdin bytes did not reach ``peer``."""
        if self._options.receive_only:
            return exc
        if isinstance(peer.stream, PlainStream):
            short = acknowledged(peer.stream.sock, peer.sent)
        else:
            short = Shortfall(0, exact=False)  # TLS counts ciphertext; a Unix socket, nothing
        short += Shortfall(len(peer.out), exact=True)
        # Later peers of keep_open never get stdin's earlier part: count only the rest for one.
        if not self._stdin_ended and not self._options.keep_open:
            short += stdin_left(self._stdin)
        if short.count == 0:
            return exc  # nothing known to be lost (stdin a pipe with nothing read yet, say)
        return NotDeliveredError(exc, short.count, short.exact)

    # -- stdin -------------------------------------------------------------------

    def _read_stdin(self) -> None:
        try:
            data = os.read(self._stdin, _CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno not in (errno.EBADF, errno.EIO):
                raise
            data = b""  # stdin closed or gone (a hung-up terminal): end of input
        if not data:
            self._stdin_open = False
            self._stdin_ended = True
            self._want(self._stdin, 0)
            self._on_event("end of stdin")
            for peer in list(self._peers.values()):
                self._guarded(peer, self._send)
            return
        self._last_activity = time.monotonic()
        if self._stdin_filter is not None:
            data = self._stdin_filter(data)
        for peer in list(self._peers.values()):
            peer.out += data
            self._guarded(peer, self._send)

    # -- peers -------------------------------------------------------------------

    def _send(self, peer: Peer) -> None:
        try:
            peer.stream.flush()
            while peer.out:
                n = peer.stream.send(peer.out)
                if self._dump is not None:
                    self._dump(">", peer.number, peer.sent, bytes(peer.out[:n]))
                del peer.out[:n]
                peer.sent += n
                self._last_activity = time.monotonic()
        except BlockingIOError:
            return
        except OSError as exc:
            raise tls_error(exc, peer.name) from exc
        if self._stdin_ended and not peer.write_shut and self._options.shutdown_on_eof:
            peer.write_shut = True
            try:
                peer.stream.half_close()
            except OSError as exc:
                if exc.errno != errno.ENOTCONN:
                    raise tls_error(exc, peer.name) from exc
                # Already reset by the peer: the next read says so, with the real reason.
            self._on_event(f"half-closed to {peer.name} after {peer.sent} bytes (end of stdin)")
        if peer.read_done and self._may_finish(peer):
            self._finish(peer)

    def _receive(self, peer: Peer) -> None:
        # TLS hands out one record per call: keep going (a while) until it runs dry.
        for _ in range(64):
            try:
                data = peer.stream.recv(_CHUNK)
            except BlockingIOError:
                return
            except OSError as exc:
                raise tls_error(exc, peer.name) from exc
            if not data:
                self._end_of_stream(peer)
                return
            if self._dump is not None:
                self._dump("<", peer.number, peer.received, data)
            peer.received += len(data)
            self._last_activity = time.monotonic()
            if not self._options.send_only:
                write_all(self._stdout, data)
            if isinstance(peer.stream, PlainStream):
                return

    def _end_of_stream(self, peer: Peer) -> None:
        if peer.read_done:
            # Woken again after its end of stream without an error: the connection is
            # gone both ways, so whatever stdin still had for it cannot be sent.
            raise ConnectionResetError(f"connection closed by peer {peer.name} while sending")
        peer.read_done = True
        peer.peer_first = not peer.write_shut
        if self._may_finish(peer):
            self._finish(peer)
            return
        # Its FIN says it stopped sending, not that it stopped reading.
        self._on_event(f"{peer.name} finished sending; still sending stdin to it")

    def _finish(self, peer: Peer) -> None:
        who = "peer closed first" if peer.peer_first else "we had half-closed"
        moved = f"sent {peer.sent} bytes, received {peer.received} bytes"
        self._on_event(f"{peer.name} closed ({who}): {moved}")
        self._forget(peer)

    def _forget(self, peer: Peer) -> None:
        fd = peer.stream.fileno()
        if fd in self._peers:
            self._want(fd, 0)
            del self._peers[fd]
        peer.stream.close()


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``, waiting if it is a non-blocking pipe that is full.

    Blocking here is the backpressure: while stdout cannot take more, no more is read.
    """
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[n:]
