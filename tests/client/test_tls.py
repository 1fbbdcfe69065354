"""TLS: verification on by default, clear failures, --insecure, mutual TLS; sockkit, Python and socat peers."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.client.conftest import Certs, Listening, Spawn, free_port, need, wait_for_tcp
from tests.conftest import run_cli

import sockkit

StartListen = Callable[..., Listening]


def test_connect_and_listen_talk_tls_both_ways(
    sockkit_listen: StartListen, certs: Certs, tmp_path: Path
) -> None:
    # listen's stdout goes to a file: nobody reads a pipe until the end.
    out_file = open(tmp_path / "got", "wb")
    listening = sockkit_listen(
        "tls://127.0.0.1:0", "--tls-cert", str(certs.server), stdin=subprocess.PIPE, stdout=out_file
    )
    out_file.close()
    assert listening.endpoint.startswith("tls://127.0.0.1:")
    assert listening.proc.stdin is not None
    listening.proc.stdin.write(b"server says hi\n")
    # listen sends stdin until it ends, even after the client's end of stream.
    listening.proc.stdin.close()
    payload = os.urandom(200_000)
    result = run_cli(["connect", "--tls-ca", str(certs.ca), listening.endpoint], input=payload)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"server says hi\n"
    assert listening.proc.wait(10) == 0
    assert (tmp_path / "got").read_bytes() == payload


def test_self_signed_certificate_is_refused_with_the_reason(
    sockkit_listen: StartListen, certs: Certs
) -> None:
    listening = sockkit_listen(
        "tls://127.0.0.1:0", "--tls-cert", str(certs.self_signed), stdin=subprocess.DEVNULL
    )
    result = run_cli(["connect", "--tls-ca", str(certs.ca), listening.endpoint], input=b"secret")
    assert result.returncode == 1
    assert (
        result.stderr
        == (
            f"sockkit: TLS verification failed for {listening.endpoint}: self-signed certificate\n"
        ).encode()
    )
    # The system store does not know it either: verification is on by default.
    listening = sockkit_listen(
        "tls://127.0.0.1:0", "--tls-cert", str(certs.self_signed), stdin=subprocess.DEVNULL
    )
    result = run_cli(["connect", listening.endpoint], input=b"secret")
    assert result.returncode == 1
    assert b"TLS verification failed" in result.stderr


def test_insecure_accepts_a_self_signed_certificate(
    sockkit_listen: StartListen, certs: Certs
) -> None:
    listening = sockkit_listen(
        "tls://127.0.0.1:0", "--tls-cert", str(certs.self_signed), stdin=subprocess.DEVNULL
    )
    result = run_cli(["connect", "--insecure", listening.endpoint], input=b"anyway\n")
    assert result.returncode == 0, result.stderr
    out, _ = listening.proc.communicate(timeout=10)
    assert out == b"anyway\n"


def test_wrong_host_name_is_refused(sockkit_listen: StartListen, certs: Certs) -> None:
    listening = sockkit_listen(
        "tls://127.0.0.1:0", "--tls-cert", str(certs.server), stdin=subprocess.DEVNULL
    )
    result = run_cli(
        [
            "connect",
            "--tls-ca",
            str(certs.ca),
            "--tls-servername",
            "wrong.test",
            listening.endpoint,
        ],
        input=b"",
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"sockkit: TLS verification failed for {listening.endpoint}: Hostname mismatch".encode()
    )


def test_a_ca_that_signed_nothing_is_refused(sockkit_listen: StartListen, certs: Certs) -> None:
    listening = sockkit_listen(
        "tls://127.0.0.1:0", "--tls-cert", str(certs.server), stdin=subprocess.DEVNULL
    )
    result = run_cli(["connect", "--tls-ca", str(certs.other_ca), listening.endpoint], input=b"")
    assert result.returncode == 1
    assert b"unable to get local issuer certificate" in result.stderr


def test_mutual_tls_needs_the_client_certificate(sockkit_listen: StartListen, certs: Certs) -> None:
    args = ("tls://127.0.0.1:0", "--tls-cert", str(certs.server), "--tls-ca", str(certs.ca))
    listening = sockkit_listen(*args, stdin=subprocess.DEVNULL)
    result = run_cli(
        ["connect", "--tls-ca", str(certs.ca), "--tls-cert", str(certs.client), listening.endpoint],
        input=b"with a certificate\n",
    )
    assert result.returncode == 0, result.stderr
    out, _ = listening.proc.communicate(timeout=10)
    assert out == b"with a certificate\n"

    listening = sockkit_listen(*args, stdin=subprocess.DEVNULL)
    result = run_cli(["connect", "--tls-ca", str(certs.ca), listening.endpoint], input=b"without\n")
    assert result.returncode == 1
    assert result.stderr.startswith(b"sockkit: TLS error with ")
    assert b"certificate required" in result.stderr
    _, err = listening.proc.communicate(timeout=10)
    assert listening.proc.returncode == 1
    assert b"TLS" in err


def test_api_sender_refused_for_no_certificate_hears_why(
    sockkit_listen: StartListen, certs: Certs
) -> None:
    # TLS 1.3: our handshake is done before the server checks for a certificate,
    # so the refusal meets us while sending; it must say why, not "reset".
    args = ("tls://127.0.0.1:0", "--tls-cert", str(certs.server), "--tls-ca", str(certs.ca))
    listening = sockkit_listen(*args, stdin=subprocess.DEVNULL)
    conn = sockkit.connect(listening.endpoint, timeout=10, tls=sockkit.TLSConfig(ca=str(certs.ca)))
    with conn, pytest.raises(sockkit.TLSError, match="certificate required"):
        for _ in range(200):  # 12.5 MiB: far more than the socket buffers hold
            conn.send(b"x" * 65536)
        conn.recv_all()


def test_missing_certificate_file_is_a_usage_error(certs: Certs) -> None:
    result = run_cli(["connect", "--tls-ca", "/nonexistent/ca.pem", "tls://127.0.0.1:1"], input=b"")
    assert result.returncode == 2
    assert result.stderr == b"sockkit: --tls-ca /nonexistent/ca.pem: no such file\n"
    result = run_cli(["listen", "tls://127.0.0.1:0"], input=b"")
    assert result.returncode == 2
    assert b"--tls-cert" in result.stderr


@pytest.fixture
def python_tls_echo(certs: Certs) -> Iterator[int]:
    """A tiny Python ssl echo server that requires a client certificate from ``certs.ca``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certs.server))
    context.load_verify_locations(str(certs.ca))
    context.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def run() -> None:
        try:
            raw, _ = listener.accept()
        except OSError:
            return
        with context.wrap_socket(raw, server_side=True) as conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.close()
    thread.join(10)


def test_api_mutual_tls_against_a_python_ssl_server(python_tls_echo: int, certs: Certs) -> None:
    config = sockkit.TLSConfig(ca=str(certs.ca), cert=str(certs.client))
    with sockkit.connect(f"tls://127.0.0.1:{python_tls_echo}", timeout=10, tls=config) as conn:
        conn.sendline("hello")
        assert conn.recv_line() == b"hello\n"
        conn.send(b"x" * 100_000)
        conn.shutdown_write()
        assert conn.recv_all() == b"x" * 100_000


def test_api_reports_a_self_signed_server(sockkit_listen: StartListen, certs: Certs) -> None:
    listening = sockkit_listen(
        "tls://127.0.0.1:0", "--tls-cert", str(certs.self_signed), stdin=subprocess.DEVNULL
    )
    with pytest.raises(sockkit.TLSError, match="self-signed certificate"):
        sockkit.connect(listening.endpoint, timeout=10, tls=sockkit.TLSConfig(ca=str(certs.ca)))


def test_connect_through_socat_tls_echo(processes: Spawn, certs: Certs) -> None:
    port = free_port()
    processes(
        [
            need("socat"),
            *("-b", "4096", "-t", "30"),  # see socat_echo in conftest.py
            f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={certs.server},verify=0",
            "PIPE",
        ]
    )
    wait_for_tcp(port)
    payload = os.urandom(1 << 20)
    result = run_cli(
        ["connect", "--tls-ca", str(certs.ca), f"tls://127.0.0.1:{port}"], input=payload
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload
