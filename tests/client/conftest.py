"""Fixtures for the client tests: real peers (socat, ncat), sockkit listeners, TLS certificates."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import LISTENING, cli_env, sockkit_argv

Spawn = Callable[..., subprocess.Popen[bytes]]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port nobody holds right now (for tools that cannot be told port 0)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_tcp(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing came to listen on port {port}")


@pytest.fixture
def processes() -> Iterator[Spawn]:
    """Start child processes with ``processes(argv, **popen_kwargs)``; all are killed at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn(argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        kwargs.setdefault("env", cli_env())
        proc = subprocess.Popen(list(argv), **kwargs)  # type: ignore[call-overload]
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian package {tool})")
    return path


@pytest.fixture
def socat_echo(processes: Spawn) -> int:
    """A socat TCP echo peer on loopback (it forks per connection); returns its port.

    ``-b 4096``: socat writes its blocks with blocking writes, and into its own
    PIPE a write larger than the pipe's free page can block forever (socat is
    also the pipe's only reader) once the client reads slower than it sends.
    A block of one page always fits when select() says the pipe is writable.
    ``-t 30``: after the client's half-close, wait for the echo to drain rather
    than socat's default half a second.
    """
    port = free_port()
    processes(
        [
            need("socat"),
            "-b",
            "4096",
            "-t",
            "30",
            f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
            "PIPE",
        ]
    )
    wait_for_tcp(port)
    return port


@dataclass
class Listening:
    proc: subprocess.Popen[bytes]
    endpoint: str

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])


@pytest.fixture
def sockkit_listen(processes: Spawn) -> Callable[..., Listening]:
    """Start ``sockkit listen ARGS``; returns once it said ``listening on ENDPOINT``."""

    def start(
        *args: str, stdin: int | None = subprocess.PIPE, stdout: object = subprocess.PIPE
    ) -> Listening:
        proc = processes(
            sockkit_argv("listen", *args), stdin=stdin, stdout=stdout, stderr=subprocess.PIPE
        )
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = LISTENING.search(line)
        assert match, f"listen did not start: {line!r}"
        return Listening(proc, match.group(1).decode())

    return start


@dataclass(frozen=True)
class Certs:
    ca: Path  # the CA that signed the server and client certificates
    server: Path  # chain + key for 127.0.0.1 / localhost
    client: Path  # chain + key of a client certificate
    other_ca: Path  # a CA that signed nothing here
    self_signed: Path  # a server certificate that signs itself


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    trustme = pytest.importorskip("trustme")
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    root = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(root / "server.pem")
    )
    ca.issue_cert("client@sockkit.test").private_key_and_cert_chain_pem.write_to_path(
        str(root / "client.pem")
    )
    trustme.CA().cert_pem.write_to_path(str(root / "other-ca.pem"))

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (root / "self-signed.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    return Certs(
        root / "ca.pem",
        root / "server.pem",
        root / "client.pem",
        root / "other-ca.pem",
        root / "self-signed.pem",
    )
