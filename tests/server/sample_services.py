"""Small services of the tests' own, so server tests do not depend on the service catalogue."""

from __future__ import annotations

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
