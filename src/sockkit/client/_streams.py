"""Non-blocking byte streams over a socket: plain, or TLS through memory BIOs.

The pump and :class:`Connection` see one small interface (:class:`ByteStream`):
``recv``/``send`` never block (they raise ``BlockingIOError`` instead),
``wants_write`` says TLS output is waiting for the socket, ``has_buffered``
says bytes can be read without waiting, and ``half_close`` ends our direction.

Why TLS goes through memory BIOs and not ``ssl.SSLSocket``: a TLS half-close is
a ``close_notify`` alert, and ``SSLSocket.unwrap()`` reads from the socket right
after sending it, failing on (and losing) any application data the peer sent
meanwhile.  With memory BIOs we first decrypt everything already received, then
send ``close_notify`` with nothing left for OpenSSL to trip over, and carry on
reading the peer's replies.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from typing import Protocol

from sockkit._errors import TimeoutError
from sockkit.client._tls import tls_error

__all__ = ["ByteStream", "PlainStream", "TLSStream", "tls_handshake"]

_CIPHERTEXT_READ = 256 * 1024


class ByteStream(Protocol):
    sock: socket.socket

    def fileno(self) -> int: ...
    def recv(self, max_bytes: int) -> bytes: ...
    def send(self, data: bytes | bytearray | memoryview) -> int: ...
    def wants_write(self) -> bool: ...
    def flush(self) -> None: ...
    def has_buffered(self) -> bool: ...
    def half_close(self) -> None: ...
    def close(self) -> None: ...
    def wait(self, timeout: float | None) -> bool: ...


def _wait(stream: ByteStream, timeout: float | None) -> bool:
    """Wait until ``stream`` can make progress (readable, or writable when output waits)."""
    if stream.has_buffered():
        return True
    writers = [stream.sock] if stream.wants_write() else []
    readable, writable, _ = select.select([stream.sock], writers, [], timeout)
    return bool(readable or writable)


class PlainStream:
    """A connected socket, switched to non-blocking."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def wait(self, timeout: float | None) -> bool:
        """True once the socket is ready, False when ``timeout`` seconds passed first."""
        return _wait(self, timeout)

    def recv(self, max_bytes: int) -> bytes:
        return self.sock.recv(max_bytes)

    def send(self, data: bytes | bytearray | memoryview) -> int:
        return self.sock.send(data)

    def wants_write(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def has_buffered(self) -> bool:
        return False

    def half_close(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


class TLSStream:
    """TLS over a non-blocking socket; made by :func:`tls_handshake`."""

    def __init__(
        self,
        sock: socket.socket,
        tls: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
    ) -> None:
        self.sock = sock
        self.tls = tls
        self._incoming = incoming
        self._outgoing = outgoing
        self._ciphertext = bytearray()  # encrypted bytes the socket has not taken yet
        self._plaintext = bytearray()  # decrypted before a close_notify, not yet returned
        self._eof = False
        self._closed_notify = False
        # True when the incoming BIO holds only part of a record: more must come
        # from the socket before anything can be decrypted.
        self._starved = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def wait(self, timeout: float | None) -> bool:
        """True once progress is possible, False when ``timeout`` seconds passed first."""
        return _wait(self, timeout)

    # -- output ----------------------------------------------------------------

    def wants_write(self) -> bool:
        return bool(self._ciphertext) or self._outgoing.pending > 0

    def flush(self) -> None:
        """Write encrypted output to the socket; ``BlockingIOError`` if some must wait.

        When the peer has gone, the alert it sent first (if any) is raised as
        :class:`ssl.SSLError` rather than the bare reset: with TLS 1.3 a server
        checks a client certificate after the client's handshake is done, so the
        client may be writing when "certificate required" and the close arrive.
        """
        self._ciphertext += self._outgoing.read()
        try:
            while self._ciphertext:
                n = self.sock.send(self._ciphertext)
                del self._ciphertext[:n]
        except BlockingIOError:
            raise
        except OSError:
            self._raise_parting_alert()
            raise

    def _raise_parting_alert(self) -> None:
        """Read what a departed peer sent; raise its alert if there is one.

        Application data found on the way is kept for :meth:`recv`.
        """
        try:
            while chunk := self.sock.recv(_CIPHERTEXT_READ):
                self._incoming.write(chunk)
        except OSError:
            pass  # reset: the bytes that arrived before it were read above
        while True:
            try:
                data = self.tls.read(_CIPHERTEXT_READ)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return
            if not data:
                return
            self._plaintext += data

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Encrypt up to 64 KiB of ``data``; returns how much was taken."""
        if self._ciphertext:
            self.flush()  # raises BlockingIOError while the socket is full
        n = self.tls.write(bytes(data[: 64 * 1024]))
        try:
            self.flush()
        except BlockingIOError:
            pass  # taken and encrypted; the rest goes when the socket is writable
        return n

    # -- input -----------------------------------------------------------------

    def has_buffered(self) -> bool:
        """True if ``recv`` can make progress without the socket (poll cannot see this)."""
        if self._plaintext or self.tls.pending() > 0:
            return True
        return self._incoming.pending > 0 and not self._starved

    def recv(self, max_bytes: int) -> bytes:
        """Decrypted bytes, ``b""`` at the end, ``BlockingIOError`` if none yet."""
        if self._plaintext:
            data = bytes(self._plaintext[:max_bytes])
            del self._plaintext[:max_bytes]
            return data
        while True:
            try:
                return self.tls.read(max_bytes)
            except ssl.SSLWantReadError:
                self._starved = True
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            if self._eof:
                return b""
            if self.wants_write():
                try:
                    self.flush()  # a handshake message (key update) may need to go out
                except (BlockingIOError, ssl.SSLError):
                    raise
                except OSError:
                    pass  # the peer has gone; the read below says how
            chunk = self.sock.recv(_CIPHERTEXT_READ)  # BlockingIOError: nothing yet
            self._starved = False
            if chunk:
                self._incoming.write(chunk)
            else:
                self._eof = True
                self._incoming.write_eof()

    # -- closing ---------------------------------------------------------------

    def half_close(self) -> None:
        """Send ``close_notify`` then a TCP FIN; the peer's replies can still be read."""
        if not self._closed_notify:
            self._closed_notify = True
            # Decrypt what has already arrived, so the read unwrap() attempts after
            # sending close_notify finds no application data to choke on.
            while True:
                try:
                    data = self.tls.read(_CIPHERTEXT_READ)
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    break
                if not data:
                    break  # the peer's close_notify was read before: it half-closed first
                self._plaintext += data
            try:
                self.tls.unwrap()
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass
            self.flush_before(time.monotonic() + 5, "the TLS close_notify")
        self.sock.shutdown(socket.SHUT_WR)

    def flush_before(self, deadline: float | None, what: str) -> None:
        """Write all encrypted output, waiting for the socket until ``deadline`` (monotonic)."""
        while True:
            try:
                self.flush()
                return
            except BlockingIOError:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"timed out sending {what}") from None
                select.select([], [self.sock], [], left)

    def close(self) -> None:
        """Close, after a polite ``close_notify`` if the socket takes it at once."""
        if not self._closed_notify and self.sock.fileno() >= 0:
            self._closed_notify = True
            try:
                self.tls.unwrap()
            except ssl.SSLError:
                pass
            try:
                self.flush()
            except OSError:
                pass
        self.sock.close()


def tls_handshake(
    sock: socket.socket,
    context: ssl.SSLContext,
    *,
    target: str,
    server_side: bool = False,
    server_hostname: str | None = None,
    deadline: float | None = None,
) -> TLSStream:
    """Run the TLS handshake on connected ``sock`` before ``deadline`` (monotonic).

    Returns a :class:`TLSStream`.  On failure ``sock`` is closed and
    :class:`TLSError` says why (``TLS verification failed for TARGET: self-signed
    certificate``); :class:`TimeoutError` if the deadline passes.
    """
    sock.setblocking(False)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    try:
        tls = context.wrap_bio(
            incoming,
            outgoing,
            server_side=server_side,
            server_hostname=None if server_side else server_hostname,
        )
        stream = TLSStream(sock, tls, incoming, outgoing)
        while True:
            try:
                tls.do_handshake()
                stream.flush_before(deadline, f"the TLS handshake to {target}")
                return stream
            except ssl.SSLWantReadError:
                pass
            stream.flush_before(deadline, f"the TLS handshake to {target}")
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                raise TimeoutError(f"timed out during the TLS handshake with {target}")
            if select.select([sock], [], [], wait)[0]:
                chunk = sock.recv(_CIPHERTEXT_READ)
                if chunk:
                    incoming.write(chunk)
                else:
                    incoming.write_eof()
    except BaseException as exc:
        # A failed handshake leaves its alert (why it failed) in the outgoing BIO:
        # let the peer hear it, if the socket takes it at once.
        with contextlib.suppress(OSError):
            sock.send(outgoing.read())
        sock.close()
        if isinstance(exc, TimeoutError):
            raise
        raise tls_error(exc, target, "complete the TLS handshake with") from exc
