"""TLS on either leg of a relay: terminate a ``tls://`` listener, originate to a ``tls://`` target.

Between the two legs the bytes are plaintext, so toxics and dumps see (and
break) what the application really sent.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass

from sockkit._errors import UsageError

__all__ = ["RelayTLS", "accept_context", "connect_context"]


@dataclass(frozen=True, slots=True)
class RelayTLS:
    """``cert``/``key`` for a tls:// listener; ``ca``/``insecure`` for a tls:// target."""

    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    insecure: bool = False


def _load(action: Callable[[], object], option: str, path: str) -> None:
    try:
        action()
    except FileNotFoundError:
        raise UsageError(f"{option} {path}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"{option} {path}: cannot load it ({reason})") from None


def accept_context(tls: RelayTLS) -> ssl.SSLContext:
    """The listener's context; :class:`UsageError` without a usable certificate."""
    if tls.cert is None:
        raise UsageError("a tls:// listen endpoint needs --tls-cert FILE (and --tls-key FILE)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(lambda: context.load_cert_chain(tls.cert or "", tls.key), "--tls-cert", tls.cert)
    return context


def connect_context(tls: RelayTLS) -> ssl.SSLContext:
    """The target's context: verification on unless ``insecure``; ``ca`` replaces the system store."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif tls.ca is not None:
        _load(lambda: context.load_verify_locations(cafile=tls.ca), "--tls-ca", tls.ca)
    else:
        context.load_default_certs()
    return context
