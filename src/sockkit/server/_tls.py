"""The server side of ``tls://`` endpoints: one :class:`ssl.SSLContext` from the user's files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

__all__ = ["TLSFiles", "server_tls_context"]


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """``--tls-cert``, ``--tls-key`` and the optional ``--tls-client-ca``."""

    cert: str
    #: ``None`` when the key is in the certificate file.
    key: str | None = None
    #: Clients must present a certificate signed by this CA (mutual TLS).
    client_ca: str | None = None


def server_tls_context(files: TLSFiles) -> ssl.SSLContext:
    """A server context: TLS 1.2 or later, the given chain, mutual TLS when ``client_ca`` is set.

    With ``client_ca`` a client that presents no certificate, or one not signed
    by that CA, fails the handshake (``CERT_REQUIRED``).  Raises
    :class:`UsageError` for a missing file and :class:`TLSError` for one that
    cannot be read or is not a usable certificate, key or CA bundle.
    """
    # Imported here: ssl is ~6 MiB of every process that loads it, and a server
    # without a tls:// endpoint (and each child a fork server makes) needs none of it.
    from sockkit._tls_context import server_context

    return server_context(
        cert=files.cert,
        key=files.key,
        client_ca=files.client_ca,
        client_ca_option="--tls-client-ca",
    )
