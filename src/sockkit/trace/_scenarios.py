"""The classic cases, played with real sockets on loopback and recorded on a :class:`Stage`.

Each recorder makes its sockets (the client bound before it connects, so
both ends are known before the first packet), plays the steps, and after
each one tells the stage which kernel states to wait for.  It returns a
:class:`Recording`; :mod:`sockkit.trace._play` decides where it runs (here,
or in a private network namespace) and turns it into a trace.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from contextlib import ExitStack
from typing import NamedTuple

from sockkit.trace._closing import simultaneous_close
from sockkit.trace._events import Trace
from sockkit.trace._kernel import Address
from sockkit.trace._stage import Recording, Stage
from sockkit.trace._states import TcpState

__all__ = ["RECORDERS", "SCENARIOS"]

S = TcpState
HOST = "127.0.0.1"

#: name -> one line for ``sockkit trace --list``
SCENARIOS: dict[str, str] = {
    "handshake": "connect() and accept(): SYN, SYN+ACK, ACK -- the three-way handshake",
    "transfer": "a request and a reply: data segments, each acknowledged",
    "close": "the four-way teardown: FIN, ACK, FIN, ACK; the side that closed first waits in TIME-WAIT",
    "half-close": "shutdown(SHUT_WR): the client stops sending but still reads what the server sends",
    "simultaneous-close": "both ends close at once: the FINs cross and both pass through CLOSING",
    "refused": "connect() to a port nobody listens on: the SYN is answered by RST+ACK",
    "reset": "close() with SO_LINGER 0: an RST instead of a FIN, and no TIME-WAIT",
    "backlog-full": "the accept queue is full: the SYN is dropped and retransmitted until there is room",
    "zero-window": "a reader that stops reading: the window shrinks to 0, probes, then opens again",
    "udp": "datagrams with no connection, and ICMP port unreachable once the port is closed",
}


def _listener(stack: ExitStack, backlog: int = 8, rcvbuf: int | None = None) -> socket.socket:
    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    if rcvbuf is not None:  # set before listen(): accepted sockets inherit it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((HOST, 0))
    sock.listen(backlog)
    return sock


def _client(stack: ExitStack, kind: int = socket.SOCK_STREAM) -> tuple[socket.socket, Address]:
    sock = stack.enter_context(socket.socket(socket.AF_INET, kind))
    sock.bind((HOST, 0))
    address: Address = sock.getsockname()
    return sock, address


def _accept(listener: socket.socket, stack: ExitStack) -> socket.socket:
    conn, _ = listener.accept()
    return stack.enter_context(conn)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


class _Connection(NamedTuple):
    stage: Stage
    client_sock: socket.socket
    conn: socket.socket
    client: Address
    server: Address


def _connected(stack: ExitStack, title: str) -> _Connection:
    """A stage watching a fresh connection: handshake done and looked at."""
    listener = _listener(stack)
    server: Address = listener.getsockname()
    client_sock, client = _client(stack)
    stage = stack.enter_context(Stage(title, server[1]))
    stage.connection(client, server)
    stage.look()
    client_sock.connect(server)
    conn = _accept(listener, stack)
    stage.look({client: {S.ESTABLISHED}, server: {S.ESTABLISHED}})
    return _Connection(stage, client_sock, conn, client, server)


def handshake() -> Recording:
    with ExitStack() as stack:
        stage = _connected(stack, "handshake").stage
        return stage.finish()


def transfer() -> Recording:
    with ExitStack() as stack:
        stage, client, conn, _, _ = _connected(stack, "transfer")
        request, reply = b"GET /motd\r\n", b"Hello, sockets! Every byte has a number.\r\n"
        client.sendall(request)
        _recv_exactly(conn, len(request))
        stage.settle()
        conn.sendall(reply)
        _recv_exactly(client, len(reply))
        stage.look()
        return stage.finish()


def close() -> Recording:
    with ExitStack() as stack:
        stage, client_sock, conn, client, server = _connected(stack, "close")
        client_sock.close()  # the active close: FIN from the client
        stage.look({client: {S.FIN_WAIT_2}, server: {S.CLOSE_WAIT}})
        conn.recv(1)  # end of stream: the server sees the client is done...
        conn.close()  # ...and closes too: the passive close
        stage.look({client: {S.TIME_WAIT}, server: {S.CLOSED}})
        return stage.finish()


def half_close() -> Recording:
    with ExitStack() as stack:
        stage, client_sock, conn, client, server = _connected(stack, "half-close")
        client_sock.sendall(b"last request\n")
        client_sock.shutdown(socket.SHUT_WR)  # "I am done sending", but still reading
        stage.look({client: {S.FIN_WAIT_2}, server: {S.CLOSE_WAIT}})
        received = b""
        while chunk := conn.recv(4096):
            received += chunk
        for line in (b"reply, part 1\n", b"reply, part 2\n"):
            conn.sendall(line)  # the server still sends after the client's FIN
            _recv_exactly(client_sock, len(line))
            stage.settle()
        conn.close()
        stage.look({client: {S.TIME_WAIT}, server: {S.CLOSED}})
        return stage.finish()


def refused() -> Recording:
    with ExitStack() as stack:
        # a bound socket that does not listen keeps the port ours and closed
        closed = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        closed.bind((HOST, 0))
        server: Address = closed.getsockname()
        client_sock, client = _client(stack)
        stage = stack.enter_context(Stage("refused", server[1]))
        stage.connection(client, server)
        stage.look()
        try:
            client_sock.connect(server)
        except ConnectionRefusedError:
            stage.notes.append("connect() failed with ECONNREFUSED")
        stage.look({client: {S.CLOSED}})
        return stage.finish()


def reset() -> Recording:
    with ExitStack() as stack:
        stage, client_sock, conn, client, server = _connected(stack, "reset")
        client_sock.sendall(b"bye\n")
        _recv_exactly(conn, 4)
        stage.settle()
        client_sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client_sock.close()  # linger on, timeout 0: abort with RST
        stage.look({client: {S.CLOSED}, server: {S.CLOSED}})
        try:
            conn.recv(1)
        except ConnectionResetError:
            stage.notes.append("the server's next recv() failed with ECONNRESET")
        return stage.finish()


def backlog_full() -> Recording:
    with ExitStack() as stack:
        listener = _listener(stack, backlog=0)
        server: Address = listener.getsockname()
        stack.enter_context(socket.create_connection(server))  # fills the accept queue
        late, client = _client(stack)
        stage = stack.enter_context(Stage("backlog-full", server[1]))
        stage.connection(client, server)
        stage.notes.append(
            "listen(0): one earlier connection waits in the accept queue (not shown), so it is full"
        )
        stage.settle()
        stage.packets.clear()  # the first connection's packets are not this story
        stage.look()
        late.setblocking(False)
        late.connect_ex(server)
        stage.wait_for(_retransmitted_syn, "retransmitted SYN")
        stage.settle(0.3)
        _accept(listener, stack)  # room in the queue at last
        stage.notes.append("the server accept()ed the waiting connection after the second SYN")
        late.setblocking(True)
        stage.look({client: {S.ESTABLISHED}, server: {S.ESTABLISHED}})
        return stage.finish()


def _retransmitted_syn(trace: Trace) -> bool:
    return any("retransmission" in e.notes and e.packet.flags & 0x02 for e in trace.events)


def zero_window() -> Recording:
    with ExitStack() as stack:
        listener = _listener(stack, rcvbuf=4096)
        server: Address = listener.getsockname()
        client_sock, client = _client(stack)
        client_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        stage = stack.enter_context(Stage("zero-window", server[1]))
        stage.connection(client, server)
        stage.look()
        client_sock.connect(server)
        conn = _accept(listener, stack)
        stage.look({client: {S.ESTABLISHED}, server: {S.ESTABLISHED}})
        client_sock.setblocking(False)
        sent = 0
        block = bytes(range(97, 123)) * 40  # 1040 bytes of a-z
        try:
            while True:  # the server does not read: fill its buffer, then ours
                sent += client_sock.send(block)
        except BlockingIOError:
            pass
        stage.wait_for(_probed, "window probe")
        received = 0
        while received < sent:  # the reader wakes up: the window opens again
            received += len(conn.recv(65536))
        stage.look()
        stage.notes.append(f"the client wrote {sent} bytes before its send buffer was full too")
        return stage.finish()


def _probed(trace: Trace) -> bool:
    return any(any(n.startswith("window probe") for n in e.notes) for e in trace.events)


def udp() -> Recording:
    with ExitStack() as stack:
        server_sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        server_sock.bind((HOST, 0))
        server: Address = server_sock.getsockname()
        client_sock, client = _client(stack, socket.SOCK_DGRAM)
        stage = stack.enter_context(Stage("udp", server[1]))
        stage.connection(client, server)
        client_sock.connect(server)
        client_sock.send(b"ping 1")
        data, peer = server_sock.recvfrom(2048)
        server_sock.sendto(b"pong: " + data, peer)
        client_sock.recv(2048)
        stage.settle()
        server_sock.close()  # the port is closed now...
        client_sock.send(b"ping 2")  # ...and the kernel answers with ICMP port unreachable
        stage.wait_for(lambda t: any(e.packet.protocol == "icmp" for e in t.events), "ICMP error")
        client_sock.settimeout(2.0)
        try:
            client_sock.recv(2048)
        except ConnectionRefusedError:
            stage.notes.append("the client's next recv() failed with ECONNREFUSED")
        except OSError:
            pass
        stage.settle()
        stage.notes.append("UDP has no connection, so there are no states to show")
        return stage.finish()


#: name -> the function that records it
RECORDERS: dict[str, Callable[[], Recording]] = {
    "handshake": handshake,
    "transfer": transfer,
    "close": close,
    "half-close": half_close,
    "simultaneous-close": simultaneous_close,
    "refused": refused,
    "reset": reset,
    "backlog-full": backlog_full,
    "zero-window": zero_window,
    "udp": udp,
}
