"""Accepting stream connections and admitting peers: the one policy every listener in sockkit uses.

Everything in sockkit that accepts connections -- the serve engines (blocking,
selector reactors, asyncio), ``relay`` and ``listen --keep-open`` -- goes
through this module, so they fail and recover the same way:

- :data:`OUT_OF_DESCRIPTORS` errors (EMFILE, ENFILE, ENOBUFS, ENOMEM) mean this
  process cannot take a connection *now*.  The listener stays readable, so
  retrying at once is a busy loop: stop accepting for :data:`BACKOFF` seconds
  (100 ms, as trio does), log one line per episode, and log again when
  accepting works again.  Waiting clients stay queued in the kernel's backlog.
- :data:`CLIENT_GONE` errors (ECONNABORTED, EPROTO, EPERM, ETIMEDOUT) mean only
  that one client left before it was accepted: take the next.
- Any other error is the caller's to report.
- At most :data:`ACCEPT_BATCH` connections are taken per readiness event, so
  one busy listener cannot starve the connections already open.

Admission is decided once, before a byte is read or written, by
:meth:`Admission.admit` from the peer's socket address exactly as
``accept()`` returns it (a tuple for IP peers, ``str``/``bytes`` for Unix
peers, which are always admitted: file permissions guard them).

How to drive :class:`Acceptor` from each kind of caller:

- blocking code (a thread polling the listener)::

      for got in acceptor.batch():          # after poll() says readable
          if isinstance(got, float):        # out of descriptors
              stop.wait(got); break
          sock, address = got

- a selector reactor: the same loop in the listener's handler; on a float,
  unregister the listener and re-register it ``got`` seconds later;
- asyncio: :class:`AsyncAcceptor` does exactly that with ``add_reader`` and
  ``call_later`` (unlike ``asyncio.start_server``, which retries EMFILE in a
  tight loop on Python 3.11).
"""

from __future__ import annotations

import enum
import errno
import ipaddress
import socket
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    # Not at run time: blocking callers (the fork engine above all, whose every
    # child copies the parent's page tables) should not load asyncio.
    import asyncio

    from sockkit._shared_peer_counts import SharedPeerCounts

__all__ = [
    "ACCEPT_BATCH",
    "BACKOFF",
    "CLIENT_GONE",
    "OUT_OF_DESCRIPTORS",
    "Acceptor",
    "AccessList",
    "Admission",
    "AsyncAcceptor",
    "PeerCounts",
    "Refusal",
    "SockAddr",
    "peer_uid",
]

#: Errors meaning the process (or the system) is out of descriptors or memory:
#: back off and retry, never at once.
OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: Errors meaning one client went away between the kernel's queue and accept():
#: nothing is wrong with the listener, take the next.
CLIENT_GONE = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ETIMEDOUT})
#: Seconds to stop accepting after an :data:`OUT_OF_DESCRIPTORS` error.
BACKOFF = 0.1
#: Most connections taken per readiness event.
ACCEPT_BATCH = 64

#: A peer's socket address as ``accept()``/``recvfrom()`` return it: ``(host, port)``
#: or ``(host, port, flowinfo, scope_id)`` for IP, a path (``str``/``bytes``) for Unix.
SockAddr = tuple[str, int] | tuple[str, int, int, int] | str | bytes


class TrustedProxies(Protocol):
    """What admission needs of ``--proxy-protocol`` (:class:`sockkit._proxy_admission.ProxyProtocol`)."""

    def trusts(self, address: SockAddr) -> bool: ...


class Refusal(enum.StrEnum):
    """Why a connection was closed before it was served; the text is what logs and counters show."""

    DENY = "deny"
    MAX_CONNS = "max-conns"
    MAX_CONNS_PER_IP = "max-conns-per-ip"
    UID = "uid"
    #: ``--proxy-protocol``: the peer is not one of the trusted proxies.
    NOT_A_PROXY = "proxy-protocol: not a trusted proxy"


class PeerCounts:
    """Connections open per client IP address, for ``--max-conns-per-ip``; safe from any thread.

    :meth:`take` when a connection from ``host`` is admitted, :meth:`give_back`
    exactly once when it ends.  A limit per address rather than in total keeps
    one client from taking every slot that ``--max-conns`` leaves.
    """

    __slots__ = ("_lock", "_open", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, host: str) -> bool:
        """Count one more connection from ``host``; False (nothing counted) if at the limit."""
        with self._lock:
            count = self._open.get(host, 0)
            if count >= self.limit:
                return False
            self._open[host] = count + 1
            return True

    def give_back(self, host: str) -> None:
        with self._lock:
            count = self._open.get(host, 0) - 1
            if count > 0:
                self._open[host] = count
            else:
                self._open.pop(host, None)

    def open_from(self, host: str) -> int:
        with self._lock:
            return self._open.get(host, 0)


def peer_uid(sock: socket.socket) -> int | None:
    """The user id of the process at the other end of a Unix socket (``SO_PEERCRED``)."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None
    return int(_UCRED.unpack(creds)[1])


#: struct ucred: pid, uid, gid.
_UCRED = struct.Struct("=iII")


class AccessList:
    """``--allow`` / ``--deny`` CIDR rules.  Deny wins; with any allow rule, the rest are denied.

    Unix peers are always admitted (file permissions guard them).
    """

    def __init__(self, allow: Sequence[str] = (), deny: Sequence[str] = ()) -> None:
        self.allow = [ipaddress.ip_network(c, strict=False) for c in allow]
        self.deny = [ipaddress.ip_network(c, strict=False) for c in deny]

    @property
    def open(self) -> bool:
        """True when there are no rules, so callers may skip the check."""
        return not self.allow and not self.deny

    def admit(self, address: SockAddr) -> bool:
        """Whether the peer at socket ``address`` may be served."""
        if self.open or not isinstance(address, tuple):
            return True
        addr = ipaddress.ip_address(address[0].split("%", 1)[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if any(addr in net for net in self.deny):
            return False
        return not self.allow or any(addr in net for net in self.allow)


@dataclass(frozen=True, slots=True)
class Admission:
    """The rules a new connection must pass: access list, uids, total and per-address limits.

    A caller that got ``None`` from :meth:`admit` calls :meth:`release` with
    :meth:`counted` of the same address exactly once when that connection
    ends (or is refused later for another reason), so the per-address counts
    stay true; behind ``--proxy-protocol`` it is the client's address that
    :meth:`admit_client` counted.
    """

    access: AccessList = field(default_factory=AccessList)
    #: Most connections served at once (``None``: no limit).
    max_conns: int | None = None
    #: ``--proxy-protocol``: only these peers are served, and the access list
    #: and the per-address limit then apply to the client their header names:
    #: :meth:`admit_client` once the header is read.
    proxies: TrustedProxies | None = None
    #: Most connections served at once from one IP address (``None``: no limit).
    max_conns_per_ip: int | None = None
    #: Unix peers must run as one of these users (checked with SO_PEERCRED); None: any.
    allow_uids: frozenset[int] | None = None
    per_ip: PeerCounts | SharedPeerCounts | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.max_conns_per_ip is not None:
            object.__setattr__(self, "per_ip", PeerCounts(self.max_conns_per_ip))

    def share_counts(self) -> None:
        """Keep the per-address counts where forked children see and change them.

        For the fork engine behind ``--proxy-protocol``, whose children read the
        header and so call :meth:`admit_client` and :meth:`release` themselves.
        """
        if self.max_conns_per_ip is not None:
            from sockkit._shared_peer_counts import SharedPeerCounts

            object.__setattr__(self, "per_ip", SharedPeerCounts(self.max_conns_per_ip))

    @property
    def refuses_any(self) -> bool:
        """False when every peer is admitted: callers may skip :meth:`admit`."""
        return (
            not self.access.open
            or self.max_conns is not None
            or self.per_ip is not None
            or self.allow_uids is not None
            or self.proxies is not None
        )

    def admit(
        self, address: SockAddr, open_now: int = 0, sock: socket.socket | None = None
    ) -> Refusal | None:
        """``None`` to serve the peer at ``address`` (``open_now`` already open), else why not.

        ``sock`` is the accepted socket, needed for ``allow_uids`` (a Unix peer
        whose uid cannot be read is refused).
        """
        if self.proxies is not None:
            if not self.proxies.trusts(address):
                return Refusal.NOT_A_PROXY
        elif not self.access.open and not self.access.admit(address):
            return Refusal.DENY
        if self.allow_uids is not None and not isinstance(address, tuple):
            if sock is None or peer_uid(sock) not in self.allow_uids:
                return Refusal.UID
        if self.max_conns is not None and open_now >= self.max_conns:
            return Refusal.MAX_CONNS
        if self.proxies is None:
            return self._take(address)
        return None

    def admit_client(self, address: SockAddr) -> Refusal | None:
        """``None`` to serve the client a trusted proxy's header names, else why not.

        Behind ``--proxy-protocol`` every peer is a proxy, so :meth:`admit`
        counts no address: counting the proxy's would let ten clients in all
        take the slots ``--max-conns-per-ip`` means for each.  The access list
        and the per-address limit apply here, to the real client (the proxy's
        own address for a LOCAL or UNKNOWN header).  ``None`` counted the
        client: :meth:`release` it, not the proxy, when the connection ends.
        """
        if not self.access.open and not self.access.admit(address):
            return Refusal.DENY
        return self._take(address)

    def counted(self, address: SockAddr) -> SockAddr | None:
        """The address :meth:`admit` counted for a connection from ``address`` (None: none)."""
        if self.per_ip is None or self.proxies is not None or not isinstance(address, tuple):
            return None
        return address

    def _take(self, address: SockAddr) -> Refusal | None:
        if self.per_ip is not None and isinstance(address, tuple):
            if not self.per_ip.take(address[0]):
                return Refusal.MAX_CONNS_PER_IP
        return None

    def release(self, address: object) -> None:
        """A connection counted for ``address`` (a :data:`SockAddr`; ``None``: none) has ended."""
        if self.per_ip is not None and isinstance(address, tuple):
            self.per_ip.give_back(str(address[0]))


class Acceptor:
    """Accepts from one non-blocking listening socket with the shared back-off policy.

    ``where`` names the listener in the two log lines of an out-of-descriptors
    episode, which go to ``warn`` (a logger's ``warning``, or a command's
    warning printer).  Any error other than the two sets above is raised
    as the ``OSError`` it is.
    """

    __slots__ = ("_accept", "_family", "_kind", "_proto", "exhausted", "warn", "where")

    def __init__(self, sock: socket.socket, where: str, warn: Callable[[str], object]) -> None:
        sock.setblocking(False)
        # The C-level accept: socket.accept() does the same but reads the
        # listener's family and type back as enums for every connection.
        self._accept = sock._accept  # type: ignore[attr-defined]
        self._family = int(sock.family)
        self._kind = int(sock.type)
        self._proto = sock.proto
        self.where = where
        self.warn = warn
        #: True from an out-of-descriptors error until an accept succeeds again.
        self.exhausted = False

    def accept(self) -> tuple[socket.socket, SockAddr] | float | None:
        """One connection; ``None`` if none is waiting; a float: wait that long, then call again."""
        while True:
            try:
                fd, address = self._accept()
            except (BlockingIOError, InterruptedError):
                return None
            except OSError as exc:
                if exc.errno in CLIENT_GONE:
                    continue
                if exc.errno not in OUT_OF_DESCRIPTORS:
                    raise
                if not self.exhausted:
                    self.exhausted = True
                    self.warn(
                        f"cannot accept on {self.where}: {exc.strerror}; "
                        f"retrying every {BACKOFF:g}s"
                    )
                return BACKOFF
            if self.exhausted:
                self.exhausted = False
                self.warn(f"accepting on {self.where} again")
            return socket.socket(self._family, self._kind, self._proto, fd), address

    def batch(self) -> Iterator[tuple[socket.socket, SockAddr] | float]:
        """Up to :data:`ACCEPT_BATCH` results of :meth:`accept`; ends after a back-off delay."""
        for _ in range(ACCEPT_BATCH):
            got = self.accept()
            if got is None:
                return
            yield got
            if isinstance(got, float):
                return


class AsyncAcceptor:
    """Accepts on a listening socket inside an asyncio loop, handing each connection on.

    ``on_accept(sock, address)`` runs in the loop for each new connection (the
    socket is non-blocking; the callee owns it).  :meth:`start` begins watching
    the listener; on an out-of-descriptors error it stops watching for
    :data:`BACKOFF` seconds.  :meth:`close` stops at once; the listening socket
    is left to its owner to close.  Works on any loop with ``add_reader``
    (asyncio's selector loops, uvloop).
    """

    def __init__(
        self,
        sock: socket.socket,
        on_accept: Callable[[socket.socket, SockAddr], object],
        *,
        where: str,
        warn: Callable[[str], object],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if loop is None:
            import asyncio

            loop = asyncio.get_running_loop()
        self._loop = loop
        self._fd = sock.fileno()
        self._acceptor = Acceptor(sock, where, warn)
        self._on_accept = on_accept
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False

    def start(self) -> None:
        """Watch the listener (again)."""
        self._retry = None
        if not self._closed:
            self._loop.add_reader(self._fd, self._readable)

    def close(self) -> None:
        """Stop accepting; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def _readable(self) -> None:
        for got in self._acceptor.batch():
            if isinstance(got, float):
                self._loop.remove_reader(self._fd)
                self._retry = self._loop.call_later(got, self.start)
                return
            if self._closed:
                got[0].close()
                return
            self._on_accept(*got)
