"""Building :class:`ssl.SSLContext` objects from the user's files, one way for every package.

Every context speaks TLS 1.2 or later.  A client verifies the peer (against the
system store, or only the CA file given) unless told ``insecure``, and sends its
own certificate when it has one; a server needs a certificate, and with a CA
file requires every client to present one signed by it (mutual TLS).

One error policy: a file name that leads nowhere is a usage error (exit 2); a
file that is there but cannot be used -- not a regular file, unreadable, not
PEM, a key that does not match -- is a runtime failure (:class:`TLSError`, exit 1).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable

from sockkit._errors import TLSError, UsageError

__all__ = ["client_context", "server_context"]


def client_context(
    *,
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    insecure: bool = False,
    ignore_unexpected_eof: bool = False,
) -> ssl.SSLContext:
    """A context for connecting; ``ca`` replaces the system store, ``cert``/``key`` answer a server's request."""
    _check_files(
        ("--tls-ca", None if insecure else ca),
        ("--tls-cert", cert),
        ("--tls-key", key if cert is not None else None),
    )
    context = _new(ssl.PROTOCOL_TLS_CLIENT, ignore_unexpected_eof)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca is not None:
        _load(lambda: context.load_verify_locations(cafile=ca), "--tls-ca", ca, "TLS CA bundle")
    else:
        context.load_default_certs()
    if cert is not None:
        _load_chain(context, cert, key)
    return context


def server_context(
    *,
    cert: str | None,
    key: str | None = None,
    client_ca: str | None = None,
    client_ca_option: str = "--tls-ca",
    ignore_unexpected_eof: bool = False,
) -> ssl.SSLContext:
    """A context for accepting: needs ``cert``; with ``client_ca`` clients must show a certificate it signed."""
    if cert is None:
        raise UsageError("a TLS listener needs --tls-cert FILE (and --tls-key FILE)")
    _check_files(("--tls-cert", cert), ("--tls-key", key), (client_ca_option, client_ca))
    context = _new(ssl.PROTOCOL_TLS_SERVER, ignore_unexpected_eof)
    _load_chain(context, cert, key)
    if client_ca is not None:
        _load(
            lambda: context.load_verify_locations(cafile=client_ca),
            client_ca_option,
            client_ca,
            "TLS CA bundle",
        )
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _new(protocol: ssl._SSLMethod, ignore_unexpected_eof: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ignore_unexpected_eof:
        context.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return context


def _check_files(*named: tuple[str, str | None]) -> None:
    for option, path in named:
        if path is None:
            continue
        if not os.path.exists(path):
            raise UsageError(f"{option} {path}: no such file")
        if not os.path.isfile(path):
            raise TLSError(f"{option} {path}: not a regular file")
        if not os.access(path, os.R_OK):
            raise TLSError(f"{option} {path}: permission denied")


def _load_chain(context: ssl.SSLContext, cert: str, key: str | None) -> None:
    what = "TLS certificate" if key is None else f"TLS certificate with key {key}"
    _load(lambda: context.load_cert_chain(cert, key), "--tls-cert", cert, what)


def _load(action: Callable[[], object], option: str, path: str, what: str) -> None:
    try:
        action()
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise TLSError(f"{option} {path}: cannot load {what} ({reason})") from None
