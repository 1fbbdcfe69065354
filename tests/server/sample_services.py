"""Small services of the tests' own, so server tests do not depend on the service catalogue."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sockkit.services._base import HALF_CLOSE, DatagramService, Service


class Echo(Service):
    def received(self, data: bytes) -> bytes:
        return data


class DatagramEcho(DatagramService):
    def datagram(self, data: bytes, peer: str) -> bytes | None:
        return data


class TinyReplyDatagram(DatagramService):
    """Answers every datagram with a reply far larger than it may send."""

    max_reply = 10

    def datagram(self, data: bytes, peer: str) -> bytes | None:
        return data * 100


@dataclass(frozen=True)
class Spec:
    name: str
    stream: Callable[[], Service] | None
    datagram: Callable[[], DatagramService] | None = None
    needs_shared_memory: bool = False


ECHO = Spec("test-echo", Echo, DatagramEcho)
STREAM_ONLY = Spec("test-stream-only", Echo, None)
TINY_REPLY = Spec("test-tiny", Echo, TinyReplyDatagram)
SHARED = Spec("test-shared", Echo, None, needs_shared_memory=True)


class Flood(Service):
    """Answers any input with far more output than the output cap allows."""

    def received(self, data: bytes) -> bytes:
        return b"f" * (16 * 1024 * 1024)


class TalksAfterHalfClose(Service):
    """Half-closes with a greeting, then answers anyway (which the contract forbids)."""

    def connected(self, peer: str) -> bytes:
        self.state = HALF_CLOSE
        return b"hello"

    def received(self, data: bytes) -> bytes:
        return b"late"


class StopsFromHere(Service):
    """Sends SIGTERM to the thread that runs it, then answers ``sent``.

    On the thread and pool engines that thread is not the main one: the
    signal's handler must still run, though the main thread sleeps in poll().
    """

    def received(self, data: bytes) -> bytes:
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        return b"sent\n"
