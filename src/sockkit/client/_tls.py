"""TLS for the client and the listener: safe contexts, and handshakes that say why they failed.

Defaults protect the user: certificates are verified (against the system store
or the CA file given), the host name is checked, and nothing older than TLS 1.2
is spoken.  Verification is switched off only by ``insecure=True``.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from sockkit._errors import SockkitError, TimeoutError, TLSError, UsageError, translate_os_error

__all__ = ["TLSConfig", "client_context", "handshake", "server_context"]


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
    """An ``SSLContext`` for connecting; raises :class:`UsageError` if a file cannot be loaded."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
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
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(lambda: context.load_cert_chain(config.cert or "", config.key), "--tls-cert", config.cert)
    if config.ca is not None:
        _load(lambda: context.load_verify_locations(cafile=config.ca), "--tls-ca", config.ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _load(action: Callable[[], object], option: str, path: str) -> None:
    try:
        action()
    except FileNotFoundError:
        raise UsageError(f"{option} {path}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"{option} {path}: cannot load it ({reason})") from None


def handshake(
    sock: socket.socket,
    context: ssl.SSLContext,
    *,
    target: str,
    server_side: bool = False,
    server_hostname: str | None = None,
    deadline: float | None = None,
) -> ssl.SSLSocket:
    """Wrap the connected ``sock`` and complete the handshake before ``deadline`` (monotonic).

    Returns the TLS socket, blocking (no timeout).  On failure ``sock`` is closed and
    :class:`TLSError` says why (``TLS verification failed for TARGET: self-signed
    certificate``); :class:`TimeoutError` if the deadline passes.
    """
    try:
        tls = context.wrap_socket(
            sock,
            server_side=server_side,
            server_hostname=None if server_side else server_hostname,
            do_handshake_on_connect=False,
        )
    except BaseException:
        sock.close()
        raise
    try:
        tls.settimeout(None if deadline is None else max(deadline - time.monotonic(), 0.001))
        tls.do_handshake()
        tls.settimeout(None)
        return tls
    except BaseException as exc:
        tls.close()
        raise tls_error(exc, target, "complete the TLS handshake with") from exc


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
    if isinstance(exc, socket.timeout) and not getattr(exc, "errno", None):
        return TimeoutError(f"timed out during the TLS handshake with {target}")
    if isinstance(exc, OSError):
        return translate_os_error(exc, action, target)
    return exc
