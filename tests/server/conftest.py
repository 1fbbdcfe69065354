"""Fixtures of the server tests; the helpers themselves live in serverkit.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme


class TLSFilesForTest:
    """A CA, a server certificate for loopback, and a client certificate, as PEM files."""

    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA()
        self.client_ca = trustme.CA()
        server_cert = self.ca.issue_cert("localhost", "127.0.0.1", "::1")
        client_cert = self.client_ca.issue_cert("client@example.test")
        self.ca_file = directory / "ca.pem"
        self.cert_file = directory / "server.pem"
        self.key_file = directory / "server.key"
        self.client_ca_file = directory / "client-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        server_cert.cert_chain_pems[0].write_to_path(str(self.cert_file))
        server_cert.private_key_pem.write_to_path(str(self.key_file))
        self.client_ca.cert_pem.write_to_path(str(self.client_ca_file))
        self.client_cert = client_cert


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFilesForTest:
    return TLSFilesForTest(tmp_path_factory.mktemp("tls"))
