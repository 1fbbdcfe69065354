"""Cost of the services themselves, with no I/O: time per call and memory per connection.

Run from the repository root::

    PYTHONPATH=src python benchmarks/services_calls.py

Prints one line per measurement.  Engines add their own costs on top; this
shows how much of a request the service is.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable

from sockkit.services import (
    ChargenService,
    ChatRoom,
    ChatService,
    DiscardService,
    EchoService,
    Service,
)


def per_call(label: str, call: Callable[[], object], rounds: int = 200_000) -> None:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            call()
        best = min(best, time.perf_counter() - start)
    print(f"{label:44s} {best / rounds * 1e9:8.0f} ns/call")


def per_connection(label: str, make: Callable[[int], Service], count: int = 10_000) -> None:
    tracemalloc.start()
    kept = [make(n) for n in range(count)]
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"{label:44s} {size / count:8.0f} bytes/connection (idle)")
    for service in kept:
        service.closed()


def _idle(factory: Callable[[], Service]) -> Callable[[int], Service]:
    def make(n: int) -> Service:
        service = factory()
        service.wakeup = print  # as an engine installs it
        service.connected(f"127.0.0.1:{40000 + n % 20000}")
        return service

    return make


def main() -> None:
    echo = EchoService()
    data = b"x" * 64
    per_call("echo received(64 B)", lambda: echo.received(data))
    chargen = ChargenService()
    per_call("chargen produce(64 KiB)", lambda: chargen.produce(65536), rounds=20_000)
    per_call("chargen produce(1 KiB)", lambda: chargen.produce(1024))

    room = ChatRoom(notices=False)
    sender = ChatService(room)
    sender.connected("127.0.0.1:1")
    listeners = [ChatService(room) for _ in range(10)]
    for n, listener in enumerate(listeners):
        listener.connected(f"127.0.0.1:{n + 2}")
    line = b"hello, room\n"

    def chat_round() -> None:
        sender.received(line)
        for listener in listeners:
            listener.produce(65536)

    per_call("chat line to 10 members, each produce()", chat_round, rounds=50_000)

    per_connection("echo", _idle(EchoService))
    per_connection("discard", _idle(DiscardService))
    per_connection("chargen", _idle(ChargenService))
    shared = ChatRoom(notices=False)
    per_connection("chat", _idle(lambda: ChatService(shared)))


if __name__ == "__main__":
    main()
