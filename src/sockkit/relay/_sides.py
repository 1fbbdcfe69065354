"""The two ends of a relayed connection, plain sockets or TLS streams, behind one interface.

A plain side reads and writes its socket on the loop directly (and may be
spliced); a TLS side goes through asyncio's TLS transport.  ``half_close``
sends FIN on a plain side; TLS has no half-close, so a TLS side closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

__all__ = ["PlainSide", "Side", "TLSSide", "tls_accept", "tls_connect"]

CHUNK = 64 * 1024


class Side:
    """One end: ``sock`` is the socket underneath (for addresses, resets, splice)."""

    plain = True

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    async def recv(self) -> bytes:
        raise NotImplementedError

    async def send(self, data: bytes) -> None:
        raise NotImplementedError

    def half_close(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.sock.close()


class PlainSide(Side):
    async def recv(self) -> bytes:
        return await asyncio.get_running_loop().sock_recv(self.sock, CHUNK)

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    def half_close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)


class TLSSide(Side):
    plain = False

    def __init__(
        self, sock: socket.socket, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super().__init__(sock)
        self.reader = reader
        self.writer = writer

    async def recv(self) -> bytes:
        return await self.reader.read(CHUNK)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def half_close(self) -> None:
        self.writer.close()

    def close(self) -> None:
        # The transport owns the socket: closing it closes (or, with SO_LINGER 0, resets) it.
        self.writer.close()


async def tls_accept(sock: socket.socket, context: ssl.SSLContext, timeout: float) -> TLSSide:
    """Handshake as the server on an accepted socket; :class:`OSError`/ssl errors on failure."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=CHUNK)
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await asyncio.wait_for(
        loop.connect_accepted_socket(lambda: protocol, sock, ssl=context), timeout
    )
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return TLSSide(sock, reader, writer)


async def tls_connect(
    sock: socket.socket, context: ssl.SSLContext, hostname: str | None, timeout: float
) -> TLSSide:
    """Handshake as the client on a connected socket, checking ``hostname``."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(sock=sock, ssl=context, server_hostname=hostname, limit=CHUNK),
        timeout,
    )
    return TLSSide(sock, reader, writer)
