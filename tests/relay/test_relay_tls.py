"""TLS on either leg: terminate a tls:// listener, originate to a tls:// target (verified)."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from tests.conftest import run_cli
from tests.relay.conftest import Peer
from tests.relay.test_pump import RelayProcess


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def files(ca: trustme.CA, tmp_path: Path) -> dict[str, str]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "cert.pem", "key": tmp_path / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture
def tls_echo(files: dict[str, str]) -> Iterator[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files["cert"], files["key"])
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(raw, server_side=True) as conn:
                    while data := conn.recv(65536):
                        conn.sendall(data)
            except (OSError, ssl.SSLError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    yield f"tls://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def _tls_client(port: int, ca_file: str) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=ca_file)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_terminates_tls_and_dumps_plaintext(files: dict[str, str], peer: Peer) -> None:
    relay = RelayProcess(
        "tls://127.0.0.1:0",
        peer.address,
        "--tls-cert",
        files["cert"],
        "--tls-key",
        files["key"],
        "-v",
    )
    try:
        with _tls_client(relay.port, files["ca"]) as sock:
            sock.sendall(b"secret in plaintext")
            assert sock.recv(100) == b"secret in plaintext"
    finally:
        log = relay.stop()
    assert "secret in plaintext" in log  # the dump sees between the legs


def test_originates_tls_with_verification(files: dict[str, str], tls_echo: str) -> None:
    verified = RelayProcess("127.0.0.1:0", tls_echo, "--tls-ca", files["ca"])
    try:
        with socket.create_connection(("127.0.0.1", verified.port), timeout=10) as sock:
            sock.sendall(b"hello")
            assert sock.recv(100) == b"hello"
    finally:
        verified.stop()
    # The system store does not know this CA: the relay refuses, in one log line.
    unknown = RelayProcess("127.0.0.1:0", tls_echo)
    try:
        with socket.create_connection(("127.0.0.1", unknown.port), timeout=10) as sock:
            sock.settimeout(10)
            sock.sendall(b"hello")
            try:
                assert sock.recv(100) == b""
            except ConnectionResetError:
                pass
    finally:
        log = unknown.stop()
    refused = [line for line in log.splitlines() if line.startswith("refused")]
    assert len(refused) == 1 and "CERTIFICATE_VERIFY_FAILED" in refused[0]
    insecure = RelayProcess("127.0.0.1:0", tls_echo, "--insecure")
    try:
        with socket.create_connection(("127.0.0.1", insecure.port), timeout=10) as sock:
            sock.sendall(b"anyway")
            assert sock.recv(100) == b"anyway"
    finally:
        insecure.stop()


def test_tls_options_without_a_tls_leg_are_usage_errors(files: dict[str, str]) -> None:
    result = run_cli(["relay", "127.0.0.1:0", "127.0.0.1:9", "--tls-cert", files["cert"]])
    assert result.returncode == 2
    assert "--tls-cert applies to a tls:// LISTEN" in result.stderr.decode()
    result = run_cli(["relay", "127.0.0.1:0", "127.0.0.1:9", "--insecure"])
    assert (
        result.returncode == 2 and "--insecure applies to a tls:// TARGET" in result.stderr.decode()
    )
    result = run_cli(["relay", "tls://127.0.0.1:0", "127.0.0.1:9"])
    assert result.returncode == 2 and "needs --tls-cert" in result.stderr.decode()


def test_an_unusable_certificate_exits_1_and_a_missing_one_exits_2(
    ca: trustme.CA, files: dict[str, str], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    other_key = tmp_path / "other.key"
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(other_key))
    unusable = [
        ["--tls-cert", str(junk)],  # there, but not a certificate
        ["--tls-cert", str(tmp_path)],  # there, but a directory: cannot be read as one
        ["--tls-cert", files["cert"], "--tls-key", str(other_key)],  # a key that does not match
    ]
    for options in unusable:
        result = run_cli(["relay", "tls://127.0.0.1:0", "127.0.0.1:9", *options])
        lines = result.stderr.decode().splitlines()
        assert result.returncode == 1, (options, lines)
        assert len(lines) == 1 and lines[0].startswith("sockkit: --tls-"), lines
    result = run_cli(
        ["relay", "tls://127.0.0.1:0", "127.0.0.1:9", "--tls-cert", "/nonexistent.pem"]
    )
    assert result.returncode == 2
    assert result.stderr == b"sockkit: --tls-cert /nonexistent.pem: no such file\n"
