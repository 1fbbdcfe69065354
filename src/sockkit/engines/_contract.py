"""The engine contract: what a server hands its engine, and the words every engine logs.

An engine needs nothing else to serve: it accepts on ``ServeContext.listeners``,
asks ``admission.admit`` before reading or writing a byte, keeps to ``limits``,
reports every connection to ``log`` with a :class:`CloseReason` or a
:class:`~sockkit._accept.Refusal`, and follows the stop sequence of
:mod:`sockkit.engines._lifecycle` when ``stop`` is set.

This module sits below ``sockkit.server`` (which re-exports it for users), so
importing an engine never loads the server.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal.py without the enum wrapping
import contextlib
import enum
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sockkit._accept import AccessList, Admission, Refusal, TrustedProxies
from sockkit._endpoint import Endpoint
from sockkit._proxy_admission import ProxyProtocol
from sockkit.services._base import Service

if TYPE_CHECKING:
    # Only a tls:// listener holds a context, and whoever made it imported ssl:
    # a plain server (and every fork child) never loads it.
    import ssl

__all__ = [
    "REFUSED_TLS",
    "AccessList",
    "Admission",
    "CloseReason",
    "ConnectionLog",
    "Limits",
    "LogLines",
    "Refusal",
    "ServeContext",
    "StopSignal",
    "StreamListener",
    "service_error",
]

#: Prefix of the refusal reason for a failed TLS handshake (``"tls: ..."``).
REFUSED_TLS = "tls"


def service_error(exc: BaseException) -> str:
    """The close reason for a service that raised ``exc``: the same text on every engine."""
    return f"service error: {type(exc).__name__}: {exc}"


class CloseReason(enum.StrEnum):
    """Why an engine closed a connection that was being served: one wording on every engine.

    A normal close (the service or the peer ended it) has no reason.  A
    service that raised is closed with ``"service error: ..."`` instead.
    """

    IDLE_TIMEOUT = "idle timeout"
    SEND_TIMEOUT = "send timeout"
    LINE_TIMEOUT = "line timeout"
    OUTPUT_CAP = "output cap exceeded"
    SERVER_STOPPING = "server stopping"
    TLS_HANDSHAKE_TIMEOUT = "tls handshake timeout"


def _default_threads() -> int:
    return max(8, 2 * (os.cpu_count() or 1))


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits every engine honours the same way."""

    #: Most connections served at once; extra clients are closed at once and counted.
    max_conns: int | None = None
    #: Close a connection that neither sends nor receives for this long.
    idle_timeout: float | None = None
    #: Close a connection whose pending output makes no progress for this long.
    send_timeout: float | None = None
    #: After a stop request, how long open connections may go on.
    drain_timeout: float = 10.0
    #: A TLS handshake must finish within this.
    handshake_timeout: float = 10.0
    #: Output buffered above this pauses the service (stop producing, stop reading).
    high_water: int = 64 * 1024
    #: Output drained below this resumes it.
    low_water: int = 16 * 1024
    #: Output buffered past this disconnects the peer: it is not reading.
    output_cap: int = 1024 * 1024
    #: Bytes asked of each recv().
    read_size: int = 256 * 1024
    #: Worker threads of the pool engine.
    threads: int = field(default_factory=_default_threads)
    #: Most connections served at once from one client IP address.
    max_conns_per_ip: int | None = None
    #: Unix peers must run as one of these users (SO_PEERCRED); ``None``: any user.
    allow_uids: frozenset[int] | None = None
    #: Line-based services close a client whose line takes longer than this to arrive.
    line_timeout: float | None = None
    #: Datagram replies per second to one source address (a token bucket); ``None``: no limit.
    dgram_rate: float | None = None

    def admission(self, access: AccessList, proxies: TrustedProxies | None = None) -> Admission:
        """The admission rules these limits, ``access`` and trusted ``proxies`` make."""
        return Admission(
            access,
            self.max_conns,
            proxies,
            max_conns_per_ip=self.max_conns_per_ip,
            allow_uids=self.allow_uids,
        )


@dataclass(slots=True)
class StreamListener:
    """A bound, listening stream socket and what serves its connections."""

    sock: socket.socket
    #: The real bound endpoint (port 0 already replaced).
    endpoint: Endpoint
    #: Makes one :class:`Service` per accepted connection.
    factory: Callable[[], Service]
    #: Server-side TLS context for ``tls://`` endpoints, else ``None``.
    tls: ssl.SSLContext | None = None


class StopSignal:
    """A stop request that threads, signal handlers and pollers can all see.

    The first :meth:`set` asks to stop (drain); any later one asks to hurry
    (close what is left now).  ``set()`` is safe from a signal handler and
    from any thread.  ``fd`` becomes readable on every ``set()``, so a reactor
    can poll it beside its sockets; :meth:`consume` empties it again.
    """

    def __init__(self) -> None:
        self._event = threading.Event()  # for waiters; the flags below are the truth
        self._stopped = False
        self._hurried = False
        #: Per thread: inside :meth:`set` (a signal handler may interrupt it).
        self._setting = threading.local()
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._signal_r = self._signal_w = -1
        self._closed = False

    @property
    def fd(self) -> int:
        return self._read_fd

    # -- signals ------------------------------------------------------------
    #
    # CPython runs a signal's Python handler in the main thread, at its next
    # bytecode.  A signal that lands on another thread, or on the main thread
    # just before it enters poll(), leaves the main thread asleep with the
    # handler -- the one that would call set() -- still to run.  So while a
    # stop handler is installed, the interpreter also writes each signal to a
    # pipe (signal.set_wakeup_fd), and every loop the main thread sleeps in
    # polls that pipe too: waking is all it takes for the handler to run.

    @property
    def signal_fd(self) -> int:
        """Readable once a signal has arrived (after :meth:`catch_signals`; else -1).

        A loop in the main thread polls it beside :attr:`fd` and calls
        :meth:`drain_signals` when it is readable; the handlers run by themselves.
        """
        return self._signal_r

    def catch_signals(self) -> int:
        """Make every signal with a Python handler wake :attr:`signal_fd` (main thread only).

        Returns the wakeup fd this replaces, for :meth:`release_signals`.
        """
        if self._signal_w < 0:
            self._signal_r, self._signal_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        previous: int = _signal.set_wakeup_fd(self._signal_w, warn_on_full_buffer=False)
        return previous

    def release_signals(self, previous: int = -1) -> None:
        """Put back the wakeup fd :meth:`catch_signals` replaced, if this one's is still set."""
        if self._signal_w < 0:
            return
        try:
            current = _signal.set_wakeup_fd(previous)
        except ValueError:  # not the main thread: only it can
            return
        if current != self._signal_w:  # another took over since: leave it be
            _signal.set_wakeup_fd(current)

    def drain_signals(self) -> None:
        """Empty :attr:`signal_fd` (level-triggered: a poller would wake for ever)."""
        _empty(self._signal_r)

    def set(self) -> None:
        # Plain attribute writes and a pipe write: safe anywhere.  The Event's
        # lock is not: a SIGTERM handler calling set() while this thread is
        # inside set() (holding that lock) would wait on itself for ever.  The
        # interrupted outer call sets the Event, so the nested one need not.
        if self._stopped:
            self._hurried = True
        self._stopped = True
        if not self._closed:  # once closed, the fd numbers may belong to another file
            with contextlib.suppress(OSError):  # pipe full: readable already, all we need
                os.write(self._write_fd, b"x")
        if getattr(self._setting, "active", False):
            return
        self._setting.active = True
        try:
            self._event.set()
        finally:
            self._setting.active = False

    def is_set(self) -> bool:
        return self._stopped

    def hurried(self) -> bool:
        """True once stop was asked for a second time: close the connections left now."""
        return self._hurried

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop is asked for or ``timeout`` passes; True if it was asked for."""
        if self._signal_r < 0 or threading.current_thread() is not threading.main_thread():
            return self._event.wait(timeout)
        # The main thread must see a signal that arrives while it waits (above).
        poller = select.poll()
        poller.register(self._read_fd, select.POLLIN)
        poller.register(self._signal_r, select.POLLIN)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped:
            left = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not poller.poll(left) and deadline is not None:
                break
            self.drain_signals()
        return self._stopped

    def consume(self) -> None:
        """Empty the pipe behind ``fd`` (a level-triggered poller would wake for ever)."""
        _empty(self._read_fd)

    def close(self) -> None:
        """Release the pipe.  ``set`` stays safe to call afterwards; ``fd`` is then invalid."""
        if self._closed:
            return
        self._closed = True
        # A signal written to a closed pipe's number would land in whatever
        # file takes that number next (in a fork child: a client's socket).
        self.release_signals()
        for fd in (self._read_fd, self._write_fd, self._signal_r, self._signal_w):
            if fd < 0:
                continue
            with contextlib.suppress(OSError):
                os.close(fd)


def _empty(fd: int) -> None:
    """Read a non-blocking pipe until nothing is left (or it is closed)."""
    with contextlib.suppress(OSError):
        while os.read(fd, 512):
            pass


@dataclass(frozen=True, slots=True)
class LogLines:
    """Where and how a log writes its lines: enough for another process to write the same."""

    #: The open file descriptor the lines go to (stderr's, usually 2).
    fd: int
    #: ``debug``, ``info``, ``warning``, ``error`` or ``off``: events below it are not written.
    level: str
    #: ``text`` or ``json``.
    format: str


class ConnectionLog:
    """Receives one event per connection opened, closed or refused.

    The server supplies the real one (text or JSON lines on stderr); this base
    records nothing, which is what engines get in unit tests.
    """

    #: False when nothing would be written, so engines can skip building records.
    enabled: bool = False

    def opened(self, peer: str, local: str, via: str | None = None) -> None:
        """A connection from ``peer`` to ``local`` was accepted and admitted.

        ``via`` is the proxy that relayed it (``--proxy-protocol``); ``peer`` is
        then the client its PROXY header named.
        """

    def closed(
        self, peer: str, bytes_in: int, bytes_out: int, duration: float, reason: str | None
    ) -> None:
        """A connection ended; ``reason`` is ``None`` for a normal close."""

    def refused(self, peer: str, reason: str) -> None:
        """A connection was closed without being served.

        ``reason`` is a :class:`Refusal` (``"deny"``, ``"max-conns"``), or for a
        failed handshake a text starting with :data:`REFUSED_TLS` (``"tls: ..."``);
        other refusals say why in a few words.  Logs and counters are keyed on
        these, so engines use them as they are.
        """

    def draining(self, count: int, timeout: float) -> None:
        """The server stopped accepting; ``count`` connections may go on for ``timeout`` s."""

    def warning(self, message: str) -> None:
        """Something about the server as a whole that its operator should see (one line)."""

    def lines(self) -> LogLines | None:
        """How this log writes, when another process can write the very same lines; else None.

        ``None`` (the default for a subclass) when the log does more than
        write formatted lines to a file descriptor: counters someone reads,
        an application's handlers.  The fork engine then forks children from
        the serving process itself, so every event still reaches this object.
        """
        if type(self) is ConnectionLog:
            return LogLines(-1, "off", "text")  # records nothing, wherever it is
        return None


@dataclass(slots=True)
class ServeContext:
    """Everything an engine needs; see the module docstring."""

    listeners: list[StreamListener]
    limits: Limits = field(default_factory=Limits)
    access: AccessList = field(default_factory=AccessList)
    log: ConnectionLog = field(default_factory=ConnectionLog)
    stop: StopSignal = field(default_factory=StopSignal)
    #: Closes every listener (and removes Unix socket files) the moment a stop
    #: begins, so new clients are refused; the default closes the sockets only.
    close_listeners: Callable[[], None] | None = None
    #: ``--proxy-protocol``: trusted proxies, whose connections begin with a
    #: PROXY header that the engine reads before the service sees a byte.
    proxy: ProxyProtocol | None = None
    #: The access list and ``limits.max_conns`` as one admission check.
    admission: Admission = field(init=False)

    def __post_init__(self) -> None:
        self.admission = self.limits.admission(self.access, self.proxy)

    def shut_listeners(self) -> None:
        """Close the listeners now (see :attr:`close_listeners`).  Idempotent."""
        if self.close_listeners is not None:
            self.close_listeners()
            return
        for listener in self.listeners:
            listener.sock.close()
