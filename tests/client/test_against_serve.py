"""``sockkit connect`` against ``sockkit serve``: half-close, mutual TLS and datagrams."""

from __future__ import annotations

import hashlib
import os

from tests.client.conftest import Certs
from tests.conftest import ServerProcess, run_cli


def test_ten_mib_through_serve_echo_comes_back_byte_exact(serve: type[ServerProcess]) -> None:
    server = serve(["echo", "127.0.0.1:0"])
    payload = os.urandom(10 * 1024 * 1024)
    result = run_cli(["connect", server.endpoints[0]], input=payload)
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(result.stdout).digest() == hashlib.sha256(payload).digest()


def test_mutual_tls_with_serve(serve: type[ServerProcess], certs: Certs) -> None:
    # Pinned to the thread engine: the default (uvloop) drops some TLS handshakes
    # on this machine, whoever the client is.
    server = serve(
        [
            "echo",
            "tls://127.0.0.1:0",
            "--engine",
            "thread",
            "--tls-cert",
            str(certs.server),
            "--tls-client-ca",
            str(certs.ca),
        ]
    )
    endpoint = server.endpoints[0]
    payload = os.urandom(300_000)
    result = run_cli(
        ["connect", "--tls-ca", str(certs.ca), "--tls-cert", str(certs.client), endpoint],
        input=payload,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload
    refused = run_cli(["connect", "--tls-ca", str(certs.ca), endpoint], input=b"no certificate\n")
    # TLS 1.3 finishes the client's handshake before the server checks it; serve
    # then closes: with its "certificate required" alert, silently, or with a
    # reset (our data was unread).  Whichever, nothing is echoed.
    assert refused.stdout == b""
    assert refused.returncode == 0 or refused.stderr.startswith(
        (b"sockkit: TLS error with ", b"sockkit: connection reset by peer")
    )


def test_udp_lines_through_serve_echo(serve: type[ServerProcess]) -> None:
    server = serve(["echo", "udp://127.0.0.1:0"])
    result = run_cli(["connect", "--wait", "0.5", server.endpoints[0]], input=b"a\nbb\nccc\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"a\nbb\nccc\n"
