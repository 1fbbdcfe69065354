"""The shared accept-and-admit policy, with plain calls (a fake listener where errors are needed)."""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest

from sockkit._accept import (
    ACCEPT_BATCH,
    BACKOFF,
    Acceptor,
    AccessList,
    Admission,
    AsyncAcceptor,
    Refusal,
)


class _FakeListener:
    """Stands in for a listening socket: ``_accept`` replays a script of results."""

    family = socket.AF_INET
    type = socket.SOCK_STREAM
    proto = 0

    def __init__(self, script: list[object]) -> None:
        self.script = script
        self.calls = 0

    def setblocking(self, flag: bool) -> None:
        pass

    def _accept(self) -> tuple[int, tuple[str, int]]:
        self.calls += 1
        step = self.script.pop(0) if self.script else BlockingIOError()
        if isinstance(step, BaseException):
            raise step
        assert isinstance(step, tuple)
        return step


def _pair_fd() -> int:
    a, b = socket.socketpair()
    b.close()
    return a.detach()


def test_out_of_descriptors_backs_off_and_logs_once_per_episode() -> None:
    fd = _pair_fd()
    fake = _FakeListener(
        [OSError(errno.EMFILE, "Too many open files")] * 3 + [(fd, ("127.0.0.1", 5))]
    )
    warnings: list[str] = []
    acceptor = Acceptor(fake, "tcp://127.0.0.1:1", warnings.append)  # type: ignore[arg-type]
    assert [acceptor.accept() for _ in range(3)] == [BACKOFF] * 3
    assert warnings == [
        "cannot accept on tcp://127.0.0.1:1: Too many open files; retrying every 0.1s"
    ]
    got = acceptor.accept()
    assert isinstance(got, tuple)
    got[0].close()
    assert got[1] == ("127.0.0.1", 5)
    assert warnings[-1] == "accepting on tcp://127.0.0.1:1 again"
    assert acceptor.accept() is None


def test_client_gone_is_skipped_and_other_errors_raise() -> None:
    fake = _FakeListener([OSError(errno.ECONNABORTED, "gone"), OSError(errno.EBADF, "bad")])
    acceptor = Acceptor(fake, "x", print)  # type: ignore[arg-type]
    with pytest.raises(OSError) as info:
        acceptor.accept()
    assert info.value.errno == errno.EBADF
    assert fake.calls == 2


def test_batch_stops_at_the_limit_and_after_a_backoff() -> None:
    fds = [_pair_fd() for _ in range(ACCEPT_BATCH + 1)]
    fake = _FakeListener([(fd, ("127.0.0.1", 1)) for fd in fds])
    acceptor = Acceptor(fake, "x", print)  # type: ignore[arg-type]
    got = list(acceptor.batch())
    assert len(got) == ACCEPT_BATCH
    for item in [*got, *acceptor.batch()]:
        assert isinstance(item, tuple)
        item[0].close()
    fake.script = [OSError(errno.ENFILE, "full"), (99, ("127.0.0.1", 1))]
    assert list(acceptor.batch()) == [BACKOFF]
    assert len(fake.script) == 1


def test_admission_takes_the_socket_address_as_accept_returns_it() -> None:
    admission = Admission(AccessList(allow=["127.0.0.0/8"], deny=["127.0.0.2/32"]), max_conns=2)
    assert admission.admit(("127.0.0.1", 4000)) is None
    assert admission.admit(("::ffff:127.0.0.1", 4000, 0, 0)) is None
    assert admission.admit(("127.0.0.2", 4000)) is Refusal.DENY
    assert admission.admit(("10.0.0.1", 4000)) is Refusal.DENY
    assert admission.admit("/tmp/s.sock") is None  # Unix peers: file permissions guard them
    assert admission.admit(b"") is None
    assert admission.admit(("127.0.0.1", 4000), open_now=2) is Refusal.MAX_CONNS
    assert Refusal.MAX_CONNS == "max-conns" and Refusal.DENY == "deny"


def test_async_acceptor_hands_on_real_connections() -> None:
    async def main() -> list[object]:
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        accepted: list[object] = []
        done = asyncio.Event()

        def on_accept(sock: socket.socket, address: object) -> None:
            accepted.append(address)
            sock.close()
            if len(accepted) == 3:
                done.set()

        acceptor = AsyncAcceptor(listener, on_accept, where="t", warn=print)
        acceptor.start()
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        await asyncio.wait_for(done.wait(), 5)
        acceptor.close()
        for c in clients:
            c.close()
        listener.close()
        return accepted

    accepted = asyncio.run(main())
    assert all(isinstance(a, tuple) and a[0] == "127.0.0.1" for a in accepted)
