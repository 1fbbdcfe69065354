"""TLS on either leg of a relay: terminate a ``tls://`` listener, originate to a ``tls://`` target.

Between the two legs the bytes are plaintext, so toxics and dumps see (and
break) what the application really sent.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from sockkit import _tls_context

__all__ = ["RelayTLS", "accept_context", "connect_context"]


@dataclass(frozen=True, slots=True)
class RelayTLS:
    """``cert``/``key`` for a tls:// listener; ``ca``/``insecure`` for a tls:// target."""

    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    insecure: bool = False


def accept_context(tls: RelayTLS) -> ssl.SSLContext:
    """The listener's context: :class:`UsageError` without a certificate, :class:`TLSError` for an unusable one."""
    return _tls_context.server_context(cert=tls.cert, key=tls.key)


def connect_context(tls: RelayTLS) -> ssl.SSLContext:
    """The target's context: verification on unless ``insecure``; ``ca`` replaces the system store."""
    return _tls_context.client_context(ca=tls.ca, insecure=tls.insecure)
