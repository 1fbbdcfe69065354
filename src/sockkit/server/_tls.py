"""The server side of ``tls://`` endpoints: one :class:`ssl.SSLContext` from the user's files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sockkit._errors import TLSError, UsageError

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


def _check_readable(path: str, what: str) -> None:
    # A name that leads nowhere is a usage error (exit 2); a file that is there
    # but cannot be used is a runtime failure (exit 1), as an invalid one is.
    if not os.path.exists(path):
        raise UsageError(f"{what} {path!r}: no such file")
    if not os.path.isfile(path):
        raise TLSError(f"{what} {path!r}: not a regular file")
    if not os.access(path, os.R_OK):
        raise TLSError(f"{what} {path!r}: permission denied")


def server_tls_context(files: TLSFiles) -> ssl.SSLContext:
    """A server context: TLS 1.2 or later, the given chain, mutual TLS when ``client_ca`` is set.

    With ``client_ca`` a client that presents no certificate, or one not signed
    by that CA, fails the handshake (``CERT_REQUIRED``).  Raises
    :class:`UsageError` for a missing file and :class:`TLSError` for one that
    cannot be read or is not a usable certificate, key or CA bundle.
    """
    # Imported here: ssl is ~6 MiB of every process that loads it, and a server
    # without a tls:// endpoint (and each child a fork server makes) needs none of it.
    import ssl

    _check_readable(files.cert, "TLS certificate")
    if files.key is not None:
        _check_readable(files.key, "TLS key")
    if files.client_ca is not None:
        _check_readable(files.client_ca, "TLS client CA")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(files.cert, files.key)
    except ssl.SSLError as exc:
        key = f" with key {files.key!r}" if files.key else ""
        raise TLSError(
            f"cannot load TLS certificate {files.cert!r}{key}: {exc.reason or exc}"
            " (is it PEM, and does the key match the certificate?)"
        ) from None
    if files.client_ca is not None:
        try:
            context.load_verify_locations(cafile=files.client_ca)
        except ssl.SSLError as exc:
            raise TLSError(
                f"cannot load TLS client CA {files.client_ca!r}: {exc.reason or exc}"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context
