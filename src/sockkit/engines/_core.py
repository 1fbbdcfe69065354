"""The sans-I/O connection core: the rules every engine applies to one connection.

A pump (the I/O half of an engine) owns the socket and the waiting; the core
owns the rules.  It imports no socket, selector, thread or event loop::

    pump                              core
    ----------------------------      --------------------------------------------
    the connection is admitted   -->  start(peer)
    recv() gave bytes            -->  receive(data)
    recv() gave b"" (peer FIN)   -->  receive_eof()
    the socket can take more     -->  writable()      asks a producing service
    send() took n bytes          -->  sent(n)
    the clock, now and then      -->  tick(now)       idle and send deadlines
    a stop, or a socket error    -->  abort(reason)
                                 <--  data_to_send()  pending bytes, or END_OF_STREAM
                                 <--  wants_read / wants_write
                                 <--  should_close, close_reason

Rules (each with its reason, one wording: :class:`CloseReason`):

- Output is sent at once; what the socket does not take waits in the core's
  buffer.  Above ``high_water`` the core stops reading from the peer and
  stops asking the service to produce; at ``low_water`` it resumes.  Past
  ``output_cap`` the peer is not reading: close with ``OUTPUT_CAP``.
- No byte either way for ``idle_timeout``: ``IDLE_TIMEOUT``.  Output waiting
  and no byte of it sent for ``send_timeout``: ``SEND_TIMEOUT``.  Both are
  read from byte counters at each :meth:`tick`, so a pump only needs a coarse
  timer (``tick_interval``): a deadline fires between its value and its value
  plus one interval.
- ``HALF_CLOSE``: the bytes of the call that asked for it are sent, then the
  FIN (:data:`END_OF_STREAM` from :meth:`data_to_send`); bytes the service
  returns later are dropped (the service contract forbids them); once the
  peer has finished too, the connection closes normally.
- ``CLOSE``: flush, then close with the service's ``close_reason``.
- A service that raises: close at once with :func:`service_error`.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from sockkit.engines._contract import CloseReason, Limits, service_error
from sockkit.services._base import CLOSE, HALF_CLOSE, Service

__all__ = [
    "END_OF_STREAM",
    "ConnectionCore",
    "ConnectionRules",
    "EndOfStream",
    "PartialInput",
    "line_tick",
    "tick_interval",
]


class EndOfStream:
    """The type of :data:`END_OF_STREAM`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "END_OF_STREAM"


#: What :meth:`ConnectionCore.data_to_send` returns when the FIN is due: shutdown(SHUT_WR).
END_OF_STREAM: Final = EndOfStream()

_log = logging.getLogger("sockkit.engines")

#: The coarsest tick: a deadline fires at most this late.
_MAX_TICK = 0.5


#: The coarsest tick when a line timeout is set: a slow line is closed at most
#: this late (its start is timed exactly, on the receive that began it).
_MAX_LINE_TICK = 0.5


def tick_interval(limits: Limits) -> float | None:
    """How often a pump should call :meth:`ConnectionCore.tick`; ``None``: never needed."""
    timeouts = [t for t in (limits.idle_timeout, limits.send_timeout) if t is not None]
    # A quarter of the timeout (at most 0.5 s): a 3 s idle timeout then fires
    # by 3.5 s, inside the "timeout + 1 s" users are promised even on a busy
    # machine; a sweep costs microseconds per connection.
    periods = [min(t / 4, _MAX_TICK) for t in timeouts]
    line = line_tick(limits)
    if line is not None:
        periods.append(line)
    return min(periods) if periods else None


def line_tick(limits: Limits) -> float | None:
    """How often to check :class:`PartialInput` deadlines; ``None`` without a line timeout."""
    if limits.line_timeout is None:
        return None
    return min(limits.line_timeout / 4, _MAX_LINE_TICK)


class PartialInput:
    """Times a service's incomplete message (``Service.partial_input``) for ``--line-timeout``.

    Call :meth:`seen` after every call that fed the service bytes, and
    :meth:`overdue` from the periodic tick.  No clock of its own: the pump
    passes ``now``.
    """

    __slots__ = ("_seq", "_since", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._seq = 0
        self._since = 0.0

    def seen(self, service: Service, now: float) -> None:
        seq = service.partial_input
        if seq != self._seq:
            self._seq, self._since = seq, now

    def overdue(self, now: float) -> bool:
        return self._seq != 0 and now - self._since >= self.timeout


class ConnectionRules:
    """One connection's rules, without storage for its limits and deadline marks.

    :class:`ConnectionCore` adds that storage and is what a pump normally
    uses.  A pump that makes a class per server may subclass this instead,
    with ``_limits`` as a class attribute and the deadline state (four marks
    and ``_line``) as slots of the connections that have deadlines (set by
    :meth:`start_clock`), so a connection without deadlines carries six slots
    fewer.
    """

    __slots__ = (
        "_done_sending",
        "_fin_sent",
        "_paused",
        "_peer_done",
        "bytes_in",
        "bytes_out",
        "close_reason",
        "out",
        "service",
        "should_close",
    )

    #: An instance slot (:class:`ConnectionCore`) or a class attribute.
    _limits: Limits
    # Set by start_clock, read by tick; only a connection with deadlines has them.
    _io_mark: int
    _io_since: float
    _out_mark: int
    _out_since: float
    #: The service's partial message, timed for ``--line-timeout``: a slot where
    #: deadlines are stored, else a class attribute ``None``.
    _line: PartialInput | None

    def __init__(self, service: Service) -> None:
        self.service = service
        #: Output the socket has not taken yet: an immutable ``b""`` while
        #: there is none (no buffer is allocated for a connection that keeps up).
        self.out: bytes | bytearray = b""
        self.bytes_in = self.bytes_out = 0
        #: True once the connection must end: the pump closes the socket.
        self.should_close = False
        #: Why it ended (``None``: a normal end); valid once ``should_close``.
        self.close_reason: str | None = None
        self._paused = False
        self._peer_done = False
        self._done_sending = False  # the service answered HALF_CLOSE or CLOSE
        self._fin_sent = False

    def start_clock(self, now: float) -> None:
        """Begin the idle, send and line deadlines at ``now`` (the clock :meth:`tick` is given)."""
        # (The marks are slots of the subclass: mypy sees only this class's.)
        # Bytes moved so far is 0: a peer silent from the start is timed from
        # its start, not from the first tick.
        self._io_mark, self._out_mark = 0, -1  # type: ignore[misc]
        self._io_since = self._out_since = now  # type: ignore[misc]
        line = self._limits.line_timeout
        self._line = PartialInput(line) if line is not None else None  # type: ignore[misc]

    # -- what the pump tells the core -----------------------------------------

    def start(self, peer: str) -> None:
        """The connection is admitted: greet."""
        self._call(self.service.connected, peer)

    def receive(self, data: bytes) -> None:
        """``data`` (not empty) arrived from the peer."""
        self.bytes_in += len(data)
        self._call(self.service.received, data)
        if self._line is not None:
            self._line.seen(self.service, time.monotonic())

    def receive_eof(self) -> None:
        """The peer finished sending."""
        if self._peer_done:
            return
        self._peer_done = True
        self._call(self.service.eof_received)

    def writable(self) -> None:
        """The socket can take more: a producing service is asked for up to high water."""
        service = self.service
        high, low = self._limits.high_water, self._limits.low_water
        while (
            service.producing
            and not self._done_sending
            and not self.should_close
            and len(self.out) < low
        ):
            before = len(self.out)
            self._call(service.produce, high - before)
            if len(self.out) == before:
                return  # nothing for now: the service calls wakeup when it has more

    def sent(self, count: int) -> None:
        """The socket took the first ``count`` bytes of :meth:`data_to_send`."""
        if count:
            if count == len(self.out):
                # Let go of the buffer rather than empty it: a pump may hand it
                # on (an asyncio transport keeps what it is given).
                self.out = b""
            else:
                del self.out[:count]  # type: ignore[union-attr]  # bytes only when empty
            self.bytes_out += count
            if self.out and self._limits.send_timeout is not None:
                # The socket took part: the last progress is now, not at the
                # next tick, so a stalled peer is closed send_timeout after it
                # stalled (one clock read per partial send, only with the option).
                self._out_mark, self._out_since = self.bytes_out, time.monotonic()  # type: ignore[misc]
        if self._paused and len(self.out) <= self._limits.low_water:
            self._paused = False
        self.settle()

    def fin_sent(self) -> None:
        """The pump did ``shutdown(SHUT_WR)`` after :data:`END_OF_STREAM`."""
        self._fin_sent = True
        self.settle()

    def tick(self, now: float) -> None:
        """Check the idle and send deadlines against the byte counters."""
        if self.should_close:
            return
        idle, send_timeout = self._limits.idle_timeout, self._limits.send_timeout
        if idle is not None:
            total = self.bytes_in + self.bytes_out
            if total != self._io_mark:
                self._io_mark, self._io_since = total, now  # type: ignore[misc]
            elif now - self._io_since >= idle:
                self.abort(CloseReason.IDLE_TIMEOUT)
                return
        if self._line is not None and self._line.overdue(now):
            self.abort(CloseReason.LINE_TIMEOUT)
            return
        if send_timeout is not None:
            if not self.out:
                self._out_mark = -1  # type: ignore[misc]
            elif self.bytes_out != self._out_mark:
                self._out_mark, self._out_since = self.bytes_out, now  # type: ignore[misc]
            elif now - self._out_since >= send_timeout:
                self.abort(CloseReason.SEND_TIMEOUT)

    def abort(self, reason: str | None) -> None:
        """End now (a deadline, a stop, a socket error): unsent output is dropped."""
        if not self.should_close:
            self.should_close = True
            self.close_reason = reason

    def finish(self, reason: str | None) -> None:
        """End normally: everything is handed on (the core decides this in :meth:`settle`).

        Unlike :meth:`abort` nothing is dropped, so a pump whose lower layer
        still holds bytes (an asyncio transport) lets it flush them first.
        """
        if not self.should_close:
            self.should_close = True
            self.close_reason = reason

    # -- what the pump asks the core ------------------------------------------

    def data_to_send(self) -> bytes | bytearray | EndOfStream | None:
        """What to send now: bytes (report :meth:`sent`), :data:`END_OF_STREAM`, or ``None``.

        After :data:`END_OF_STREAM` the pump calls ``shutdown(SHUT_WR)`` and
        then :meth:`fin_sent`.  The bytes are the core's own buffer: send from
        it, do not keep it.
        """
        if self.should_close:
            return None
        if self.out:
            return self.out
        return END_OF_STREAM if self.fin_due else None

    @property
    def fin_due(self) -> bool:
        """Everything is sent and the service asked HALF_CLOSE: shutdown(SHUT_WR) now."""
        return (
            self._done_sending
            and not self._fin_sent
            and not self.out
            and not self.should_close
            and self.service.state == HALF_CLOSE
        )

    @property
    def wants_read(self) -> bool:
        return not (self._peer_done or self._paused or self.should_close)

    @property
    def wants_write(self) -> bool:
        """Output waits, the FIN is due, or a producing service may be asked for more."""
        if self.should_close:
            return False
        return bool(self.out) or self.fin_due or (self.service.producing and not self._done_sending)

    # -- the rules ------------------------------------------------------------

    def output(self, data: bytes | memoryview) -> None:
        """Output the service returned that no send took yet (a pump's inlined call).

        Dropped after HALF_CLOSE or CLOSE; buffered otherwise, with the water
        marks and the cap applied.  Call :meth:`settle` after the service call.
        """
        if self._done_sending or self.should_close:
            return
        out = self.out
        if out:
            out += data  # in place: a bytearray once not empty
        else:
            self.out = out = bytearray(data)
        size = len(out)
        limits = self._limits
        if size > limits.high_water:
            if size > limits.output_cap:
                self.abort(CloseReason.OUTPUT_CAP)
                return
            self._paused = True

    def failed(self, exc: BaseException) -> None:
        """The service raised ``exc`` (in a call the pump made itself)."""
        _log.error("service %s failed", type(self.service).__name__, exc_info=exc)
        self.abort(service_error(exc))

    def _call(self, method: object, *args: object) -> None:
        if self.should_close:
            return
        try:
            out = method(*args)  # type: ignore[operator]
        except Exception as exc:
            self.failed(exc)
            return
        if out:
            self.output(out)
        self.settle()

    def settle(self) -> None:
        """Read the service's state after a call: the order of half-close and close lives here."""
        if self.should_close:
            return
        state = self.service.state
        if state:
            self._done_sending = True
            if state == CLOSE:
                if not self.out:
                    self.finish(self.service.close_reason)
                return
            if self._fin_sent and self._peer_done:
                self.finish(self.service.close_reason)  # both directions are done


class ConnectionCore(ConnectionRules):
    """One connection's rules and their state; see the module docstring for the calls."""

    __slots__ = ("_io_mark", "_io_since", "_limits", "_line", "_out_mark", "_out_since")

    def __init__(self, service: Service, limits: Limits, now: float | None = None) -> None:
        super().__init__(service)
        self._limits = limits
        self.start_clock(time.monotonic() if now is None else now)
