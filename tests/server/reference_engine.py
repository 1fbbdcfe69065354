"""A deliberately plain thread-per-connection engine, used to test the server itself.

It keeps the engine contract (``sockkit.engines._base``) in the simplest way
that works, so the server's tests and the conformance suite have something to
run against whatever engines exist on this branch, and so a suite failure on a
real engine can be told apart from a harness bug.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import ssl
import threading
import time

from sockkit._endpoint import format_sockaddr
from sockkit.engines._base import Engine
from sockkit.server._context import ServeContext, StreamListener
from sockkit.services._base import CLOSE, HALF_CLOSE, Service


class ReferenceEngine(Engine):
    name = "reference"

    def run(self, ctx: ServeContext) -> None:
        conns: dict[_Connection, threading.Thread] = {}
        lock = threading.Lock()
        with selectors.DefaultSelector() as selector:
            selector.register(ctx.stop.fd, selectors.EVENT_READ)
            for lst in ctx.listeners:
                lst.sock.setblocking(False)
                selector.register(lst.sock, selectors.EVENT_READ, lst)
            while not ctx.stop.is_set():
                for key, _ in selector.select():
                    if key.data is not None:
                        self._accept(ctx, key.data, conns, lock)
        deadline = time.monotonic() + ctx.limits.drain_timeout
        with lock:
            pending = list(conns.items())
        for conn, thread in pending:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                conn.abort()
                thread.join()

    def _accept(
        self,
        ctx: ServeContext,
        lst: StreamListener,
        conns: dict[_Connection, threading.Thread],
        lock: threading.Lock,
    ) -> None:
        try:
            sock, address = lst.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            time.sleep(0.05)  # EMFILE and friends: back off rather than spin
            return
        peer = format_sockaddr(sock.family, address)
        host = address[0] if isinstance(address, tuple) else peer
        if not ctx.access.admit(host):
            ctx.log.refused(peer, "deny")
            sock.close()
            return
        with lock:
            if ctx.limits.max_conns is not None and len(conns) >= ctx.limits.max_conns:
                ctx.log.refused(peer, "max-conns")
                sock.close()
                return
            conn = _Connection(ctx, lst, sock, peer)
            thread = threading.Thread(target=conn.serve, args=(conns, lock), daemon=True)
            conns[conn] = thread
        thread.start()


class _Connection:
    def __init__(
        self, ctx: ServeContext, lst: StreamListener, sock: socket.socket, peer: str
    ) -> None:
        self.ctx, self.lst, self.sock, self.peer = ctx, lst, sock, peer
        self.bytes_in = self.bytes_out = 0
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def serve(self, conns: dict[_Connection, threading.Thread], lock: threading.Lock) -> None:
        started = time.monotonic()
        reason: str | None = None
        opened = False
        service = self.lst.factory()
        try:
            self.sock.setblocking(True)
            if self.lst.tls is not None:
                self.sock.settimeout(self.ctx.limits.handshake_timeout)
                try:
                    self.sock = self.lst.tls.wrap_socket(self.sock, server_side=True)
                except (OSError, ssl.SSLError) as exc:
                    self.ctx.log.refused(self.peer, f"tls: {exc}")
                    return
            self.sock.settimeout(self.ctx.limits.send_timeout)
            self.ctx.log.opened(self.peer, str(self.lst.endpoint))
            opened = True
            reason = self._drive(service)
        except OSError as exc:
            reason = str(exc) or type(exc).__name__
        finally:
            service.closed()
            service.wakeup = _ignore
            with contextlib.suppress(OSError):
                self.sock.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            if opened:
                self.ctx.log.closed(
                    self.peer, self.bytes_in, self.bytes_out, time.monotonic() - started, reason
                )
            with lock:
                conns.pop(self, None)

    def _send(self, data: bytes) -> None:
        if data:
            self.sock.sendall(data)
            self.bytes_out += len(data)

    def _drive(self, service: Service) -> str | None:
        limits = self.ctx.limits
        service.wakeup = lambda: _poke(self.wake_w)
        self._send(service.connected(self.peer))
        half_closed = False
        eof = False
        with selectors.DefaultSelector() as selector:
            selector.register(self.sock, selectors.EVENT_READ)
            selector.register(self.wake_r, selectors.EVENT_READ)
            while True:
                if service.state == CLOSE:
                    return service.close_reason
                if service.state == HALF_CLOSE and not half_closed:
                    self.sock.shutdown(socket.SHUT_WR)
                    half_closed = True
                if service.producing:
                    self._send(service.produce(limits.high_water))
                pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
                timeout = 0 if service.producing or pending else limits.idle_timeout
                events = [] if pending else selector.select(timeout)
                if not events and not pending and not service.producing:
                    return "idle timeout"
                readable = pending or any(k.fileobj is self.sock for k, _ in events)
                if any(k.fileobj == self.wake_r for k, _ in events):
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 512)
                if readable and not eof:
                    data = self.sock.recv(limits.read_size)
                    if data:
                        self.bytes_in += len(data)
                        self._send(service.received(data))
                    else:
                        eof = True
                        selector.unregister(self.sock)
                        self._send(service.eof_received())


def _poke(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, b"w")


def _ignore() -> None:
    pass
