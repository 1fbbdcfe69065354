"""A zoo of real sockets in known states, all on loopback or in a temporary directory.

TCP over IPv4: a listener with one connection waiting to be accepted, an
established pair with 5 unread bytes, a half-closed pair (FIN-WAIT-2 /
CLOSE-WAIT) and a TIME-WAIT entry.  TCP over IPv6 (::1): a listener and an
established pair.  UDP: a bound IPv4 socket holding one unread datagram and a
connected IPv6 pair.  Unix: a stream listener with a connection carrying
unread bytes, an abstract-namespace listener, a bound datagram socket with a
connected sender, a seqpacket pair.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path


def time_wait_table_full(margin: int = 2000) -> bool:
    """Whether the kernel is (nearly) out of TIME-WAIT buckets, when it closes instead.

    Load tests elsewhere on the machine can fill the table; a closing socket
    then skips TIME-WAIT, and tests expecting one must accept that.
    """
    try:
        limit = int(Path("/proc/sys/net/ipv4/tcp_max_tw_buckets").read_text())
        fields = next(
            line.split()
            for line in Path("/proc/net/sockstat").read_text().splitlines()
            if line.startswith("TCP:")
        )
        in_use = int(fields[fields.index("tw") + 1])
    except (OSError, ValueError, StopIteration):
        return False
    return in_use >= limit - margin


def inode_of(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


def _wait_for(check: object, timeout: float = 5.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("sockets did not settle")
        time.sleep(0.01)


def _ss_states(port: int) -> list[str]:
    out = subprocess.run(
        ["ss", "-tanH", "sport", "=", f":{port}", "or", "dport", "=", f":{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split()[0] for line in out.splitlines()]


class SocketZoo:
    """Opens the sockets on construction; :meth:`close` closes every one."""

    def __init__(self, directory: Path) -> None:
        self.sockets: list[socket.socket] = []
        self._open_tcp4()
        self._open_tcp6()
        self._open_udp()
        self._open_unix(directory)

    def _keep(self, *socks: socket.socket) -> None:
        self.sockets.extend(socks)

    def _tcp_pair(self, listener: socket.socket) -> tuple[socket.socket, socket.socket]:
        client = socket.socket(listener.family, socket.SOCK_STREAM)
        client.connect(listener.getsockname()[:2])
        server, _ = listener.accept()
        self._keep(client, server)
        return client, server

    def _open_tcp4(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self._keep(self.listener)
        self.tcp_port = self.listener.getsockname()[1]
        self.established, accepted = self._tcp_pair(self.listener)
        accepted.sendall(b"hello")
        self.fin_wait, self.close_wait = self._tcp_pair(self.listener)
        self.fin_wait.shutdown(socket.SHUT_WR)
        closer, other = self._tcp_pair(self.listener)
        self.time_wait_port = closer.getsockname()[1]
        closer.close()
        self.sockets.remove(closer)
        _wait_for(lambda: other.recv(1) == b"")
        other.close()
        self.sockets.remove(other)
        self.queued = socket.create_connection(("127.0.0.1", self.tcp_port))
        self._keep(self.queued)
        try:
            _wait_for(lambda: "TIME-WAIT" in _ss_states(self.time_wait_port), timeout=3)
            self.has_time_wait = True
        except AssertionError:
            if not time_wait_table_full():
                raise
            self.has_time_wait = False

    def _open_tcp6(self) -> None:
        self.listener6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.listener6.bind(("::1", 0))
        self.listener6.listen(4)
        self._keep(self.listener6)
        self.tcp6_port = self.listener6.getsockname()[1]
        self._tcp_pair(self.listener6)

    def _open_udp(self) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp_port = self.udp.getsockname()[1]
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.sendto(b"datagram", ("127.0.0.1", self.udp_port))
        sender.close()
        self.udp6_a = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.udp6_a.bind(("::1", 0))
        self.udp6_b = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.udp6_b.bind(("::1", 0))
        self.udp6_a.connect(self.udp6_b.getsockname()[:2])
        self.udp6_b.connect(self.udp6_a.getsockname()[:2])
        self.udp6_ports = {self.udp6_a.getsockname()[1], self.udp6_b.getsockname()[1]}
        self._keep(self.udp, self.udp6_a, self.udp6_b)

    def _open_unix(self, directory: Path) -> None:
        self.unix_path = str(directory / "zoo.sock")
        self.unix_listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix_listener.bind(self.unix_path)
        self.unix_listener.listen(3)
        self.unix_client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix_client.connect(self.unix_path)
        self.unix_accepted, _ = self.unix_listener.accept()
        self.unix_accepted.sendall(b"unread")
        self.abstract_name = f"sockkit-zoo-{uuid.uuid4().hex[:12]}"
        self.abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.abstract.bind("\0" + self.abstract_name)
        self.abstract.listen(1)
        self.dgram_path = str(directory / "zoo.dgram")
        self.dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.dgram.bind(self.dgram_path)
        self.dgram_sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.dgram_sender.connect(self.dgram_path)
        self.seq_a, self.seq_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.unix_sockets = [
            self.unix_listener,
            self.unix_client,
            self.unix_accepted,
            self.abstract,
            self.dgram,
            self.dgram_sender,
            self.seq_a,
            self.seq_b,
        ]
        self._keep(*self.unix_sockets)
        self.unix_inodes = {inode_of(s) for s in self.unix_sockets}

    @property
    def tcp_ports(self) -> set[int]:
        return {self.tcp_port, self.tcp6_port, self.time_wait_port}

    @property
    def udp_ports(self) -> set[int]:
        return {self.udp_port, *self.udp6_ports}

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()
