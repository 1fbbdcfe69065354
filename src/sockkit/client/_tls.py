"""TLS for the client and the listener: safe contexts, and handshakes that say why they failed.

Defaults protect the user: certificates are verified (against the system store
or the CA file given), the host name is checked, and nothing older than TLS 1.2
is spoken.  Verification is switched off only by ``insecure=True``.

Closing: we send ``close_notify`` when we stop sending (see ``_streams``) and
before closing.  A peer that closes without it is taken as closing, as most TLS
tools do (``OP_IGNORE_UNEXPECTED_EOF``): many servers never send it, and a
netcat-like tool prints what arrived either way.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from sockkit import _tls_context
from sockkit._errors import SockkitError, TLSError, translate_os_error

__all__ = ["TLSConfig", "client_context", "server_context", "tls_error"]


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """How to speak TLS.

    ``ca``: a PEM file of CA certificates to trust.  For a client it replaces the
    system store; for a server it turns on client-certificate checking (mutual TLS)
    and every client must then present a certificate it signed.
    ``cert``/``key``: our own certificate chain and private key (a server needs
    them; a client sends them when the server asks).  ``key`` may be omitted when
    ``cert`` holds both.  ``insecure``: a client accepts any certificate and name.
    ``server_hostname``: the name to check and send as SNI (default: the endpoint's host).
    """

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure: bool = False
    server_hostname: str | None = None


def client_context(config: TLSConfig) -> ssl.SSLContext:
    """An ``SSLContext`` for connecting.

    Raises :class:`UsageError` for a missing file, :class:`TLSError` for one that cannot be used.
    """
    return _tls_context.client_context(
        ca=config.ca,
        cert=config.cert,
        key=config.key,
        insecure=config.insecure,
        ignore_unexpected_eof=True,
    )


def server_context(config: TLSConfig) -> ssl.SSLContext:
    """An ``SSLContext`` for accepting: needs ``cert``; with ``ca`` clients must show one too."""
    return _tls_context.server_context(
        cert=config.cert, key=config.key, client_ca=config.ca, ignore_unexpected_eof=True
    )


def tls_error(
    exc: BaseException, target: str, action: str = "talk to"
) -> SockkitError | BaseException:
    """The :class:`SockkitError` for an exception met while talking (maybe TLS) to ``target``."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or "certificate rejected"
        return TLSError(f"TLS verification failed for {target}: {reason}")
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or str(exc)).replace("_", " ").lower()
        return TLSError(f"TLS error with {target}: {reason}")
    if isinstance(exc, OSError):
        return translate_os_error(exc, action, target)
    return exc
