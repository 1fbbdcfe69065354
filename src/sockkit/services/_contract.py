"""The service contract as one state machine: which call may come next, and what a service may answer.

The rules of :mod:`sockkit.services._base`, as two tables.  A connection is in
one :class:`Phase`.  :data:`CALLS` says which driver call may come in which
phase and where it leads; a call missing from it is the *driver's* mistake.
After every call the service answers with bytes and a ``state``;
:data:`ANSWERS` says where each answered state leads from each phase, and a
pair missing from it is the *service's* mistake.  Besides the tables:

- every call returns bytes; ``produce(limit)`` returns at most ``limit`` bytes,
  and ``b""`` only together with clearing ``producing`` (or leaving ``OPEN``);
- bytes returned by the call that answers ``HALF_CLOSE`` are sent before the
  FIN; a call made after that may return no bytes at all (there is no way to
  send them: the FIN is gone).  Every engine drops such bytes the same way,
  and :class:`Checked` names the service that returned them.

Drivers check nothing on the hot path.  :mod:`sockkit.testing`'s memory
connection checks every call with :class:`ContractState`, and with
``SOCKKIT_DEBUG_CONTRACT=1`` the server wraps each service in :class:`Checked`
so that a service breaking a rule is named on every engine.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from sockkit.services._base import CLOSE, HALF_CLOSE, OPEN, Service

__all__ = ["ANSWERS", "CALLS", "Call", "Checked", "ContractState", "ContractViolation", "Phase"]


class ContractViolation(AssertionError):
    """A service (or a driver) did something the service contract forbids."""


class Phase(enum.Enum):
    NEW = "before connected()"
    OPEN = "open"
    PEER_DONE = "after eof_received()"
    SHUT = "after HALF_CLOSE"
    SHUT_PEER_DONE = "after HALF_CLOSE and eof_received()"
    CLOSING = "after CLOSE"
    ENDED = "after closed()"


class Call(enum.Enum):
    CONNECTED = "connected"
    RECEIVED = "received"
    PRODUCE = "produce"
    EOF_RECEIVED = "eof_received"
    CLOSED = "closed"


_P, _C = Phase, Call

#: (phase, driver call) -> phase while the service answers.
CALLS: dict[tuple[Phase, Call], Phase] = {
    (_P.NEW, _C.CONNECTED): _P.OPEN,
    (_P.NEW, _C.CLOSED): _P.ENDED,  # the connection failed before it was served
    (_P.OPEN, _C.RECEIVED): _P.OPEN,
    (_P.OPEN, _C.PRODUCE): _P.OPEN,
    (_P.OPEN, _C.EOF_RECEIVED): _P.PEER_DONE,
    (_P.OPEN, _C.CLOSED): _P.ENDED,
    (_P.PEER_DONE, _C.PRODUCE): _P.PEER_DONE,
    (_P.PEER_DONE, _C.CLOSED): _P.ENDED,
    (_P.SHUT, _C.RECEIVED): _P.SHUT,
    (_P.SHUT, _C.EOF_RECEIVED): _P.SHUT_PEER_DONE,
    (_P.SHUT, _C.CLOSED): _P.ENDED,
    (_P.SHUT_PEER_DONE, _C.CLOSED): _P.ENDED,
    (_P.CLOSING, _C.CLOSED): _P.ENDED,
}

#: (phase, state the service answered) -> next phase.
ANSWERS: dict[tuple[Phase, int], Phase] = {
    (_P.OPEN, OPEN): _P.OPEN,
    (_P.OPEN, HALF_CLOSE): _P.SHUT,
    (_P.OPEN, CLOSE): _P.CLOSING,
    (_P.PEER_DONE, OPEN): _P.PEER_DONE,
    (_P.PEER_DONE, HALF_CLOSE): _P.SHUT_PEER_DONE,
    (_P.PEER_DONE, CLOSE): _P.CLOSING,
    (_P.SHUT, HALF_CLOSE): _P.SHUT,
    (_P.SHUT, CLOSE): _P.CLOSING,
    (_P.SHUT_PEER_DONE, HALF_CLOSE): _P.SHUT_PEER_DONE,
    (_P.SHUT_PEER_DONE, CLOSE): _P.CLOSING,
    (_P.CLOSING, CLOSE): _P.CLOSING,
}

_STATE_NAMES = {OPEN: "OPEN", HALF_CLOSE: "HALF_CLOSE", CLOSE: "CLOSE"}


class ContractState:
    """One connection's place in the tables; raises :class:`ContractViolation` on a broken rule.

    Call :meth:`call` before each call into the service and :meth:`answer`
    after it (``closed`` has no answer).  ``name`` goes into every message.
    """

    __slots__ = ("name", "phase")

    def __init__(self, name: str = "the service") -> None:
        self.name = name
        self.phase = Phase.NEW

    @property
    def write_shut(self) -> bool:
        """The service asked ``HALF_CLOSE``: no more bytes may come from it."""
        return self.phase in (Phase.SHUT, Phase.SHUT_PEER_DONE)

    def call(self, call: Call) -> None:
        nxt = CALLS.get((self.phase, call))
        if nxt is None:
            raise ContractViolation(f"the driver called {call.value}() {self.phase.value}")
        self.phase = nxt

    def answer(
        self, call: Call, data: object, state: int, producing: bool, limit: int | None = None
    ) -> None:
        arg = "" if limit is None else str(limit)
        where = f"{self.name}: {call.value}({arg})"
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ContractViolation(f"{where} returned {type(data).__name__}, not bytes")
        if data and self.write_shut:
            raise ContractViolation(f"{where} returned bytes after HALF_CLOSE")
        if call is Call.PRODUCE and limit is not None:
            if len(data) > limit:
                raise ContractViolation(f"{where} returned {len(data)} bytes")
            if not data and producing and state == OPEN:
                raise ContractViolation(f"{where} returned b'' but left producing set")
        nxt = ANSWERS.get((self.phase, state))
        if nxt is None:
            if state == OPEN and self.write_shut:
                raise ContractViolation(f"{where} went back to OPEN after HALF_CLOSE")
            name = _STATE_NAMES.get(state, repr(state))
            raise ContractViolation(f"{where} left state {name} {self.phase.value}")
        self.phase = nxt


class Checked(Service):
    """A service wrapped so that every call is checked against the tables (a debug aid).

    Engines read ``state``, ``producing`` and ``close_reason`` as plain
    attributes, so they are copied from the wrapped service after each call
    and before each ``wakeup`` it makes.
    """

    def __init__(self, inner: Service) -> None:
        self.inner = inner
        self.contract = ContractState(type(inner).__qualname__)
        self._sync()

    def _sync(self) -> None:
        inner = self.inner
        self.state = inner.state
        self.producing = inner.producing
        self.close_reason = inner.close_reason

    def _answer(self, call: Call, data: bytes, limit: int | None = None) -> bytes:
        inner = self.inner
        self._sync()
        self.contract.answer(call, data, inner.state, inner.producing, limit)
        return data

    def install_wakeup(self, wakeup: Callable[[], None]) -> None:
        def synced() -> None:
            self._sync()
            wakeup()

        self.inner.wakeup = synced

    def __setattr__(self, name: str, value: object) -> None:
        if name == "wakeup":
            self.install_wakeup(value)  # type: ignore[arg-type]
            return
        object.__setattr__(self, name, value)

    def connected(self, peer: str) -> bytes:
        self.contract.call(Call.CONNECTED)
        return self._answer(Call.CONNECTED, self.inner.connected(peer))

    def received(self, data: bytes) -> bytes:
        self.contract.call(Call.RECEIVED)
        return self._answer(Call.RECEIVED, self.inner.received(data))

    def eof_received(self) -> bytes:
        self.contract.call(Call.EOF_RECEIVED)
        return self._answer(Call.EOF_RECEIVED, self.inner.eof_received())

    def produce(self, limit: int) -> bytes:
        self.contract.call(Call.PRODUCE)
        return self._answer(Call.PRODUCE, self.inner.produce(limit), limit)

    def closed(self) -> None:
        self.contract.call(Call.CLOSED)
        self.inner.closed()


def checked_factory(factory: Callable[[], Service]) -> Callable[[], Service]:
    """``factory`` whose services are each wrapped in :class:`Checked`."""

    def make() -> Service:
        return Checked(factory())

    return make
