"""The server itself, whatever the engine: logging, datagrams, TLS set-up, errors, files."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import threading
from pathlib import Path
from typing import ClassVar

import pytest
from sample_services import ECHO, SHARED, STREAM_ONLY, TINY_REPLY
from serverkit import default_test_engine, running, wait_for

from sockkit._endpoint import open_connection
from sockkit._errors import TLSError, UsageError
from sockkit.engines import Engine
from sockkit.server import ServeContext, Server, ServerLog, TLSFiles, make_logger

ENGINE = default_test_engine()
ENGINE_ARG = ENGINE


def test_logs_one_listening_line_per_endpoint_with_the_real_port(tmp_path: Path) -> None:
    endpoints = ["tcp://127.0.0.1:0", "udp://127.0.0.1:0", f"unix:{tmp_path}/s"]
    with running(ECHO, endpoints, ENGINE) as srv:
        lines = srv.log_text.getvalue().splitlines()
        tcp, udp, _ = srv.endpoints
    assert tcp.port != 0 and udp.port != 0
    assert lines[:3] == [
        f"listening on tcp://127.0.0.1:{tcp.port}",
        f"listening on udp://127.0.0.1:{udp.port}",
        f"listening on unix:{tmp_path}/s",
    ]


def test_logs_one_line_per_connection_with_bytes_and_counts_them() -> None:
    with running(ECHO, ["tcp://127.0.0.1:0"], ENGINE) as srv:
        with srv.connect() as sock:
            sock.sendall(b"hello")
            assert sock.recv(5) == b"hello"
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(5) == b""
        assert wait_for(lambda: srv.counts.get("closed") == 1)
        text = srv.log_text.getvalue()
    assert srv.counts["opened"] == 1
    closed = [line for line in text.splitlines() if line.startswith("closed ")]
    assert len(closed) == 1
    assert " in=5 out=5 " in closed[0]


def test_json_log_lines_are_objects_with_message_and_fields() -> None:
    stream = io.StringIO()
    log = ServerLog(make_logger("info", "json", stream=stream))
    log.listening("tcp://127.0.0.1:7007")
    log.closed("127.0.0.1:5000", 3, 4, 0.5, "idle timeout")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "listening on tcp://127.0.0.1:7007"
    assert first["endpoint"] == "tcp://127.0.0.1:7007"
    assert second["bytes_in"] == 3 and second["bytes_out"] == 4
    assert second["reason"] == "idle timeout"


def test_log_level_warning_hides_connections_but_not_listening() -> None:
    stream = io.StringIO()
    log = ServerLog(make_logger("warning", "text", stream=stream))
    log.listening("tcp://127.0.0.1:1")
    log.opened("127.0.0.1:2", "tcp://127.0.0.1:1")
    log.refused("127.0.0.1:3", "deny")
    assert stream.getvalue().splitlines() == [
        "listening on tcp://127.0.0.1:1",
        "refused 127.0.0.1:3: deny",
    ]
    assert not log.enabled
    assert log.counts["refused:deny"] == 1


# -- datagrams ------------------------------------------------------------------


def _datagram_client(endpoint: str) -> socket.socket:
    from sockkit._endpoint import parse_endpoint

    sock = open_connection(parse_endpoint(endpoint), timeout=3)
    sock.settimeout(3)
    return sock


@pytest.mark.parametrize("kind", ["udp4", "udp6", "unixgram"])
def test_datagram_endpoint_answers_each_datagram(kind: str, tmp_path: Path) -> None:
    endpoint = {
        "udp4": "udp://127.0.0.1:0",
        "udp6": "udp://[::1]:0",
        "unixgram": f"unixgram:{tmp_path}/d",
    }[kind]
    with running(ECHO, [endpoint], ENGINE) as srv, _datagram_client(str(srv.endpoint)) as sock:
        for payload in (b"one", b"two" * 1000, b"x"):
            sock.send(payload)
            assert sock.recv(65536) == payload


def test_datagram_reply_is_never_larger_than_max_reply() -> None:
    with (
        running(TINY_REPLY, ["udp://127.0.0.1:0"], ENGINE) as srv,
        _datagram_client(str(srv.endpoint)) as sock,
    ):
        sock.send(b"abc")
        assert sock.recv(65536) == (b"abc" * 100)[:10]


def test_denied_datagram_peer_gets_no_reply_and_is_counted() -> None:
    with (
        running(ECHO, ["udp://127.0.0.1:0"], ENGINE, deny=["127.0.0.0/8"]) as srv,
        _datagram_client(str(srv.endpoint)) as sock,
    ):
        sock.send(b"ping")
        assert wait_for(lambda: srv.counts.get("refused:deny") == 1)
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(100)


def test_datagram_and_stream_endpoints_run_side_by_side() -> None:
    with (
        running(ECHO, ["tcp://127.0.0.1:0", "udp://127.0.0.1:0"], ENGINE) as srv,
        srv.connect(0) as stream,
        _datagram_client(str(srv.endpoints[1])) as dgram,
    ):
        stream.sendall(b"stream")
        dgram.send(b"dgram")
        assert stream.recv(6) == b"stream"
        assert dgram.recv(100) == b"dgram"


# -- usage errors ---------------------------------------------------------------


def test_service_without_datagram_form_on_datagram_endpoint_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no datagram form"):
        Server(STREAM_ONLY, ["udp://127.0.0.1:0"], engine=ENGINE_ARG)


class _SeparateProcessEngine(Engine):
    name = "separate"
    shares_memory: ClassVar[bool] = False

    def run(self, ctx: ServeContext) -> None:
        ctx.stop.wait()


def test_shared_state_service_needs_one_process() -> None:
    with pytest.raises(UsageError, match="own process"):
        Server(SHARED, ["tcp://127.0.0.1:0"], engine=_SeparateProcessEngine)
    with pytest.raises(UsageError, match="--workers"):
        Server(SHARED, ["tcp://127.0.0.1:0"], engine=ENGINE_ARG, workers=2)


def test_tls_endpoint_without_certificate_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--tls-cert"):
        Server(ECHO, ["tls://127.0.0.1:0"], engine=ENGINE_ARG)


def test_missing_or_bad_certificate_files_are_one_line_errors(tmp_path: Path) -> None:
    missing = TLSFiles(str(tmp_path / "nope.pem"), str(tmp_path / "nope.key"))
    with pytest.raises(UsageError, match="no such file"):
        Server(ECHO, ["tls://127.0.0.1:0"], engine=ENGINE_ARG, tls=missing)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(TLSError, match="cannot load TLS certificate") as info:
        Server(ECHO, ["tls://127.0.0.1:0"], engine=ENGINE_ARG, tls=TLSFiles(str(junk)))
    assert "\n" not in str(info.value)


def test_bad_cidr_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--allow/--deny"):
        Server(ECHO, ["tcp://127.0.0.1:0"], engine=ENGINE_ARG, allow=["10.0.0.0/33"])


# -- Unix socket files ------------------------------------------------------------


def test_unix_socket_file_gets_mode_and_is_removed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "m.sock"
    with running(ECHO, [f"unix:{path}"], ENGINE, mode=0o660) as srv:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        with srv.connect() as sock:
            sock.sendall(b"u")
            assert sock.recv(1) == b"u"
    assert not path.exists()


def test_stop_from_another_thread_returns_promptly() -> None:
    with Server(ECHO, ["tcp://127.0.0.1:0"], engine=ENGINE_ARG) as server:
        server.open(announce=False)
        thread = threading.Thread(target=server.run)
        thread.start()
        server.stop()
        thread.join(10)
        assert not thread.is_alive()
