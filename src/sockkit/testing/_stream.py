"""An in-memory stream pair: two connected ends that behave like non-blocking stream sockets.

What one end sends, the other receives, in order, as a byte stream (sends are
not kept apart, as with TCP).  The calls follow the socket calls they stand
for, errors included, so code written against these ends reads like socket
code:

- ``recv(limit)`` returns up to ``limit`` bytes, ``b""`` once the peer has
  shut down writing and everything is read, and raises
  :class:`BlockingIOError` when nothing has arrived yet.
- ``send(data)`` takes all of ``data`` (memory is the buffer; a test that
  needs backpressure looks at the peer's :attr:`MemoryStream.pending`).
  After ``shutdown_write`` or ``close`` it raises :class:`BrokenPipeError`;
  once the peer has closed it raises :class:`ConnectionResetError`.
- ``shutdown_write()`` is ``shutdown(SHUT_WR)``; ``close()`` closes both ways.
"""

from __future__ import annotations

__all__ = ["MemoryStream", "memory_stream_pair"]


class MemoryStream:
    """One end of a pair made by :func:`memory_stream_pair`.  Not thread-safe."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._peer: MemoryStream | None = None
        self._inbox = bytearray()
        self._peer_done = False  # the peer shut down writing or closed
        self._write_done = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<MemoryStream {self.name} pending={len(self._inbox)}>"

    @property
    def pending(self) -> int:
        """Bytes that arrived at this end and are not received yet."""
        return len(self._inbox)

    @property
    def at_eof(self) -> bool:
        """The peer will send nothing more and everything sent has been received."""
        return self._peer_done and not self._inbox

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Send all of ``data``; return its length.  See the module docstring for errors."""
        if self._closed or self._write_done:
            raise BrokenPipeError(f"{self.name}: send after shutdown or close")
        peer = self._peer
        assert peer is not None
        if peer._closed:
            raise ConnectionResetError(f"{self.name}: peer closed")
        peer._inbox += data
        return len(data)

    def recv(self, limit: int) -> bytes:
        """Up to ``limit`` bytes; ``b""`` at EOF; :class:`BlockingIOError` if none yet."""
        if self._closed:
            raise OSError(f"{self.name}: recv after close")
        inbox = self._inbox
        if not inbox:
            if self._peer_done:
                return b""
            raise BlockingIOError(f"{self.name}: nothing to receive yet")
        data = bytes(inbox[:limit])
        del inbox[:limit]
        return data

    def shutdown_write(self) -> None:
        """Send EOF: the peer's ``recv`` returns ``b""`` once it has read everything."""
        if not self._write_done:
            self._write_done = True
            assert self._peer is not None
            self._peer._peer_done = True

    def close(self) -> None:
        """Close both directions; unreceived bytes at this end are dropped.  Idempotent."""
        self.shutdown_write()
        self._closed = True
        self._inbox.clear()


def memory_stream_pair(
    names: tuple[str, str] = ("client", "server"),
) -> tuple[MemoryStream, MemoryStream]:
    """Two connected :class:`MemoryStream` ends, named for ``repr`` and error messages."""
    first, second = MemoryStream(names[0]), MemoryStream(names[1])
    first._peer, second._peer = second, first
    return first, second
