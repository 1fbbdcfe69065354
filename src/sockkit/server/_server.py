"""The server: listeners + engine + service + limits + life cycle.

Life cycle of a :class:`Server`::

    Server(...)   check everything that can be checked without a socket
    open()        bind every endpoint, log ``listening on ENDPOINT`` once each
    run()         serve: the engine on the stream listeners, a thread per
                  datagram socket; returns once stopped and drained
    stop()        from any thread or a signal handler: ask run() to return
    close()       close every socket, remove the Unix socket files it created

``with Server(...) as server`` closes on exit; :func:`serve` is the whole
sequence with SIGINT/SIGTERM wired to :meth:`Server.stop`.  What a stop does
(listeners closed at once, a drain, a second stop ending it) is the engines'
one life cycle: :mod:`sockkit.engines._lifecycle`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType, TracebackType
from typing import TYPE_CHECKING

from sockkit._endpoint import Endpoint, open_listener, parse_endpoint, sockaddr_endpoint
from sockkit._errors import UsageError
from sockkit._proxy_admission import ProxyProtocol
from sockkit._sd_notify import notify_ready, notify_stopping
from sockkit.engines._contract import AccessList, Limits, ServeContext, StopSignal, StreamListener
from sockkit.server._datagram import DatagramListener, DatagramThread, join_all
from sockkit.server._log import LogFormat, ServerLog, make_logger
from sockkit.server._reload import handed_over, reloading
from sockkit.server._service import ServiceArgument, find_service, needs_shared_memory
from sockkit.server._tls import TLSFiles, server_tls_context
from sockkit.server._workers import Supervisor, Workforce
from sockkit.services._contract import checked_factory

if TYPE_CHECKING:
    from sockkit.engines import Engine

__all__ = ["Server", "serve"]

DEFAULT_ENDPOINT = "7007"


class Server:
    """Serves one service on one or more endpoints with one engine.

    ``service`` is a name (``echo``), ``module:Class``, a :class:`Service` or
    :class:`DatagramService` subclass, a factory, or a :class:`ServiceSource`
    (see :func:`~sockkit.server._service.find_service`);
    ``endpoints`` are endpoint texts or :class:`Endpoint` values; ``engine`` is an
    engine name or class (default: the fastest available).  ``workers`` > 1
    runs that many processes on the same endpoints (see
    :mod:`sockkit.server._workers`).

    The constructor raises :class:`UsageError` for anything wrong with the
    arguments (unknown service or engine, bad CIDR, a datagram endpoint for a
    service without a datagram form, chat without shared memory, ``tls://``
    without a certificate) and :class:`TLSError` for unusable certificate files.
    """

    def __init__(
        self,
        service: ServiceArgument = "echo",
        endpoints: Sequence[str | Endpoint] = (DEFAULT_ENDPOINT,),
        *,
        engine: str | type[Engine] | None = None,
        limits: Limits | None = None,
        allow: Sequence[str] = (),
        deny: Sequence[str] = (),
        tls: TLSFiles | None = None,
        backlog: int | None = None,
        mode: int = 0o600,
        workers: int = 1,
        log_level: str | None = None,
        log_format: LogFormat | None = None,
        log: ServerLog | None = None,
        proxy_protocol: ProxyProtocol | None = None,
    ) -> None:
        self.spec = find_service(service)
        self.requested = [e if isinstance(e, Endpoint) else parse_endpoint(e) for e in endpoints]
        if not self.requested:
            raise UsageError("no endpoint to serve on")
        if isinstance(engine, str) or engine is None:
            # Imported here: the engine contract imports this package's context.
            from sockkit.engines import default_engine, get_engine

            engine = get_engine(engine or default_engine())
        self.engine_class = engine
        self.limits = limits if limits is not None else Limits()
        self.access = _access_list(allow, deny)
        if workers < 1:
            raise UsageError(f"--workers must be at least 1, not {workers}")
        self.workers = workers
        self.backlog = backlog
        self.mode = mode
        self.log = log if log is not None else _server_log(log_level, log_format)
        self.stop_signal = StopSignal()
        self._check_service()
        self.proxy_protocol = proxy_protocol
        if proxy_protocol is not None and any(ep.is_tls for ep in self.requested):
            # The header comes before the TLS handshake; engines read it on plain sockets only.
            raise UsageError("--proxy-protocol does not work with tls:// endpoints yet")
        self.tls_context = None
        if any(ep.is_tls for ep in self.requested):
            if tls is None:
                raise UsageError("a tls:// endpoint needs --tls-cert FILE (and --tls-key FILE)")
            self.tls_context = server_tls_context(tls)
        self.listeners: list[StreamListener] = []
        self.datagram_listeners: list[DatagramListener] = []
        # (path, device, inode) of each socket file we bound, removed by close().
        self._unix_files: list[tuple[str, int, int]] = []
        self._bound: list[Endpoint] = []
        # (endpoint text as asked, listener), in order: what a reload hands over.
        self._asked: list[tuple[str, StreamListener | DatagramListener]] = []

    def _check_service(self) -> None:
        name = self.spec.name
        for ep in self.requested:
            if ep.is_datagram and self.spec.datagram is None:
                raise UsageError(f"service {name!r} has no datagram form; it cannot serve {ep}")
            if ep.is_stream and self.spec.stream is None:
                raise UsageError(f"service {name!r} has no stream form; it cannot serve {ep}")
        if needs_shared_memory(self.spec):
            if not self.engine_class.shares_memory:
                raise UsageError(
                    f"service {name!r} shares state between connections, but engine"
                    f" {self.engine_class.name!r} serves each connection in its own process;"
                    " pick another --engine"
                )
            if self.workers > 1:
                raise UsageError(
                    f"service {name!r} shares state between connections;"
                    " it cannot run with --workers > 1"
                )

    # -- open -------------------------------------------------------------

    @property
    def endpoints(self) -> list[Endpoint]:
        """The real bound endpoints (port 0 replaced), in the order given; empty before open()."""
        return list(self._bound)

    def all_listeners(self) -> Iterator[StreamListener | DatagramListener]:
        """Every bound listener, stream ones first."""
        yield from self.listeners
        yield from self.datagram_listeners

    def open(self, *, announce: bool = True) -> list[Endpoint]:
        """Bind every endpoint; log ``listening on ENDPOINT`` for each unless ``announce`` is false.

        Returns the real endpoints.  On failure nothing stays open and the
        error (:class:`AddressInUseError`, ...) propagates.
        """
        try:
            for ep in self.requested:
                self._open_one(ep)
        except BaseException:
            self.close()
            raise
        if announce:
            self.announce()
        return self.endpoints

    def announce(self) -> None:
        """Log ``listening on ENDPOINT`` once for each bound endpoint."""
        for ep in self.endpoints:
            self.log.listening(str(ep))
        notify_ready()  # a service manager waiting on Type=notify may go on

    def _open_one(self, asked: Endpoint) -> None:
        # Workers share these very sockets (see _workers.py): no SO_REUSEPORT.
        # After a reload the previous generation's socket stands in for the
        # asked endpoint (same scheme, now ours); an fd: socket stays its owner's.
        sock = open_listener(handed_over(asked), backlog=self.backlog, mode=self.mode)
        if asked.is_unix and asked.fd is None:
            real = asked  # getsockname() of a file socket names its temporary bind path
            if not asked.is_abstract and asked.path:
                st = os.stat(asked.path)
                self._unix_files.append((asked.path, st.st_dev, st.st_ino))
        else:
            real = sockaddr_endpoint(sock, asked.transport)
        self._bound.append(real)
        listener: StreamListener | DatagramListener
        if asked.is_datagram:
            assert self.spec.datagram is not None
            listener = DatagramListener(sock, real, self.spec.datagram)
            self.datagram_listeners.append(listener)
        else:
            assert self.spec.stream is not None
            tls = self.tls_context if asked.is_tls else None
            factory = self.spec.stream
            if os.environ.get("SOCKKIT_DEBUG_CONTRACT"):
                # Every call checked against the service contract's tables, so
                # a service that breaks a rule is named, whatever the engine.
                factory = checked_factory(factory)
            listener = StreamListener(sock, real, factory, tls)
            self.listeners.append(listener)
        self._asked.append((str(asked), listener))

    def handover_sockets(self) -> list[tuple[str, socket.socket]]:
        """(endpoint as asked, socket) for every listener: what a reload hands on."""
        return [(text, lst.sock) for text, lst in self._asked]

    # -- run --------------------------------------------------------------

    def context(self) -> ServeContext:
        """What the engine is handed."""
        return ServeContext(
            self.listeners,
            self.limits,
            self.access,
            self.log,
            self.stop_signal,
            close_listeners=self.close_listeners,
            proxy=self.proxy_protocol,
        )

    def run(self, *, handle_signals: bool = False) -> None:
        """Serve until :meth:`stop`; drain; return.  Opens first if :meth:`open` was not called.

        ``handle_signals`` (main thread only) makes SIGINT and SIGTERM call
        :meth:`stop` while running.  With ``workers`` > 1 this process becomes
        the supervisor of the worker processes.
        """
        if not self.listeners and not self.datagram_listeners:
            self.open(announce=self.workers == 1)
        with _stop_on_signals(self.stop_signal) if handle_signals else contextlib.nullcontext():
            if self.workers > 1:
                Supervisor(self._workforce(), self.stop_signal).run()
            else:
                self.serve_here()

    def serve_here(self) -> None:
        """Serve in this process: the engine in this thread, datagram threads beside it."""
        threads = [
            DatagramThread(dl, self.access, self.stop_signal, self.log, self.limits.dgram_rate)
            for dl in self.datagram_listeners
        ]
        for thread in threads:
            thread.start()
        try:
            if self.listeners:
                self.engine_class().run(self.context())
            else:
                self.stop_signal.wait()
        finally:
            self.stop_signal.set()
            join_all(threads)

    def _workforce(self) -> Workforce:
        return Workforce(
            count=self.workers,
            run_worker=self._run_worker,
            # The supervisor keeps every listener; the workers share them.
            all_ready=self.announce,
            close_listeners=self.close_listeners,
            event=self.log.event,
            drain_timeout=self.limits.drain_timeout,
        )

    def _run_worker(self, stop: StopSignal, ready: Callable[[], None]) -> None:
        """A worker process's life: its own stop signal and sockets, serve, release."""
        self.stop_signal.close()
        self.stop_signal = stop
        self.disown_socket_files()  # the supervisor removes them
        ready()
        self.serve_here()
        self.release()

    def stop(self) -> None:
        """Ask :meth:`run` to stop accepting, drain and return; a second call ends the drain.

        Safe from signal handlers and from any thread.
        """
        self.stop_signal.set()

    # -- close ------------------------------------------------------------

    def close_listeners(self) -> None:
        """Close the stream listeners and remove the socket files this server created.

        Called the moment a stop begins, so a new client is refused at once.
        Idempotent.
        """
        for lst in self.listeners:
            lst.sock.close()
        for path, dev, ino in self._unix_files:
            with contextlib.suppress(OSError):
                st = os.stat(path)
                if (st.st_dev, st.st_ino) == (dev, ino):  # still ours, not a newer server's
                    os.unlink(path)
        self._unix_files.clear()

    def close(self) -> None:
        """Close every socket and remove the socket files this server created.  Idempotent."""
        self.close_listeners()
        for lst in self.datagram_listeners:
            lst.sock.close()

    def disown_socket_files(self) -> None:
        """Leave the socket files to another process (a worker leaves them to its supervisor)."""
        self._unix_files.clear()

    def release(self) -> None:
        """Close sockets and the stop signal but leave socket files (a worker's exit)."""
        self._unix_files.clear()
        self.close()
        self.stop_signal.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.close()
        self.stop_signal.close()


def _server_log(level: str | None, fmt: LogFormat | None) -> ServerLog:
    """The ``sockkit.server`` logger, where the application's logging set-up decides.

    Only a level or format asked for here (the command line asks for both)
    gets sockkit's own stderr writer, with its fast direct path.
    """
    if level is None and fmt is None:
        return ServerLog(logging.getLogger("sockkit.server"))
    return ServerLog(make_logger(level or "info", fmt or "text"))


def _access_list(allow: Sequence[str], deny: Sequence[str]) -> AccessList:
    try:
        return AccessList(allow, deny)
    except ValueError as exc:
        raise UsageError(f"bad --allow/--deny network: {exc}") from None


@contextlib.contextmanager
def _stop_on_signals(
    stop: StopSignal, signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)
) -> Iterator[None]:
    """Make ``signals`` set ``stop`` for the duration of the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            notify_stopping()
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    wakeup = stop.catch_signals()
    try:
        yield
    finally:
        stop.release_signals(wakeup)
        for sig, old in previous.items():
            signal.signal(sig, old)


def serve(
    service: ServiceArgument = "echo",
    endpoints: Sequence[str | Endpoint] = (DEFAULT_ENDPOINT,),
    *,
    reload_command: Sequence[str] | None = None,
    reload_signal: int = signal.SIGHUP,
    **options: object,
) -> None:
    """Serve ``service`` on ``endpoints`` until SIGINT or SIGTERM, then drain and return.

    ``options`` are :class:`Server`'s keyword arguments.  With ``reload_command``
    (a full argv), ``reload_signal`` starts that command as the next
    generation on the same sockets (see :mod:`sockkit.server._reload`).
    Raises what :class:`Server` and :meth:`Server.open` raise.
    """
    server = Server(service, endpoints, **options)  # type: ignore[arg-type]
    # Signals are wired before the first ``listening on`` line: a script that
    # reads it and at once sends SIGTERM must get a clean exit.
    with (
        server,
        _stop_on_signals(server.stop_signal),
        reloading(server, reload_command, reload_signal),
    ):
        server.open(announce=server.workers == 1)
        server.run()
