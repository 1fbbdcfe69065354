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
from collections.abc import Callable
from dataclasses import dataclass

from sockkit._errors import SockkitError, TLSError, UsageError, translate_os_error

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
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _common(context)
    if config.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif config.ca is not None:
        _load(lambda: context.load_verify_locations(cafile=config.ca), "--tls-ca", config.ca)
    else:
        context.load_default_certs()
    if config.cert is not None:
        _load(
            lambda: context.load_cert_chain(config.cert or "", config.key),
            "--tls-cert",
            config.cert,
        )
    return context


def server_context(config: TLSConfig) -> ssl.SSLContext:
    """An ``SSLContext`` for accepting: needs ``cert``; with ``ca`` clients must show one too."""
    if config.cert is None:
        raise UsageError("a TLS listener needs --tls-cert FILE (and --tls-key FILE)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _common(context)
    _load(lambda: context.load_cert_chain(config.cert or "", config.key), "--tls-cert", config.cert)
    if config.ca is not None:
        _load(lambda: context.load_verify_locations(cafile=config.ca), "--tls-ca", config.ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _common(context: ssl.SSLContext) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)


def _load(action: Callable[[], object], option: str, path: str) -> None:
    try:
        action()
    except FileNotFoundError:
        raise UsageError(f"{option} {path}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        # There but unusable (unreadable, not PEM, a key that does not match): exit 1.
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise TLSError(f"{option} {path}: cannot load it ({reason})") from None


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
