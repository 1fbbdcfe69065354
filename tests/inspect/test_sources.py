"""Choosing between sock_diag netlink and /proc/net, and falling back like ss."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any

import pytest

from sockkit._errors import SockkitError, UsageError
from sockkit.inspect import SocketTable, _listing, list_sockets, select_query


@pytest.fixture
def listener() -> Any:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(3)
    yield sock
    sock.close()


def listening_on(port: int, **kwargs: Any) -> list[Any]:
    return list_sockets(select_query(tcp=True, listening=True, sport=port), **kwargs)


def refuse(*_args: Any, **_kwargs: Any) -> Any:
    raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")


def test_without_sock_diag_auto_reads_proc(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_listing, "SockDiag", refuse)
    [record] = listening_on(listener.getsockname()[1])
    assert (record.state, record.send_q) == ("LISTEN", 0)  # /proc's answer: no backlog there


def test_netlink_source_refuses_to_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_listing, "SockDiag", refuse)
    with pytest.raises(SockkitError) as caught:
        listening_on(1, source="netlink")
    assert caught.value.exit_status == 1
    assert "sock_diag" in str(caught.value)


def test_a_table_netlink_cannot_dump_comes_from_proc(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_dump: Callable[..., Any] = _listing.SockDiag.dump

    def dump(self: Any, request: bytes, parse: Any) -> Any:
        if request[16] == socket.AF_INET:  # pretend this family has no diag module
            raise OSError(errno.ENOENT, "No such file or directory")
        return real_dump(self, request, parse)

    monkeypatch.setattr(_listing.SockDiag, "dump", dump)
    with socket.socket(socket.AF_INET6) as listener6:
        listener6.bind(("::1", 0))
        listener6.listen(3)
        [v4] = listening_on(listener.getsockname()[1])
        [v6] = listening_on(listener6.getsockname()[1])
    assert v4.send_q == 0  # IPv4 came from /proc, which has no backlog
    assert v6.send_q == 3  # IPv6 still from netlink


def test_unknown_source_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError):
        SocketTable("carrier-pigeon")
    monkeypatch.setenv("SOCKKIT_SS_SOURCE", "nowhere")
    with pytest.raises(UsageError):
        SocketTable()
