"""Every case, what it runs on at each scale, and the failures already understood.

At full scale every case runs on every engine it applies to.  At CI scale the
cheap cases still run on every engine; the expensive ones (seconds of waiting
or thousands of clients each) run on a representative subset: one engine of
each kind -- ``thread`` (a thread per connection), ``epoll`` (the reactor
that ``select`` and ``poll`` share), ``asyncio`` -- plus ``fork`` where the
case is about processes.  The subsets are in :data:`CASES` beside each case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import cases_clients, cases_crowds, cases_datagram, cases_fuzz, cases_security, cases_signals
from .scale import Scale
from .verdict import Verdict

__all__ = ["CASES", "KNOWN", "Case", "variants"]

#: One engine of each kind.
KINDS = ("thread", "epoll", "asyncio")
#: The same with fork, for cases about processes and life cycle.
KINDS_AND_FORK = ("fork", "thread", "epoll", "asyncio")
#: Every engine except the two that share epoll's reactor code.
ALL_BUT_SELECT_POLL = ("fork", "thread", "pool", "epoll", "asyncio", "uvloop")


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    run: Callable[[str, Scale], Verdict]
    #: "engines": one run per engine; "fuzz": one per fuzz target; "once": one run, default engine.
    over: str = "engines"
    #: At CI scale, only these engines (None: all of them).
    ci: tuple[str, ...] | None = None


CASES: list[Case] = [
    Case("1", "idle flood", cases_crowds.idle_flood, ci=KINDS),
    Case("2", "--max-conns", cases_crowds.max_conns),
    Case("3", "--max-conns-per-ip", cases_crowds.max_conns_per_ip),
    Case("4", "EMFILE", cases_crowds.emfile, ci=KINDS),
    Case("5", "accept storm", cases_crowds.accept_storm, ci=KINDS_AND_FORK),
    Case("6", "fork churn", cases_crowds.fork_churn, ci=("fork",)),
    Case("7", "never-reading chargen client", cases_clients.never_reads_chargen),
    Case("8", "never-reading echo client", cases_clients.never_reads_echo),
    Case("9", "10 MB chat line", cases_clients.chat_long_line),
    Case("10", "slowloris, --line-timeout", cases_clients.slowloris, ci=KINDS),
    Case("11", "read then reset", cases_clients.reset_storm),
    Case("12", "half-close", cases_clients.half_close, ci=ALL_BUT_SELECT_POLL),
    Case("13", "EINTR (SIGALRM every 10 ms)", cases_signals.eintr),
    Case("14", "SIGTERM during downloads", cases_signals.sigterm_drain, ci=ALL_BUT_SELECT_POLL),
    Case("15", "UDP, --dgram-rate", cases_datagram.datagrams, ci=KINDS),
    Case("16", "fuzzing", cases_fuzz.fuzz, over="fuzz"),
    Case("17", "soak", cases_crowds.soak, ci=("epoll",)),
    Case("S1", "loopback by default", cases_security.loopback_default),
    Case("S2", "denied source, no byte", cases_security.denied_source),
    Case("S3", "socket file mode under umask 000", cases_security.socket_file_mode, over="once"),
    Case("S4", "regular file never deleted", cases_security.regular_file_kept, over="once"),
    Case("S5", "--allow-uid (SO_PEERCRED)", cases_security.allow_uid),
    Case("S6", "TLS client verification", cases_security.tls_client_checks, over="once"),
    Case(
        "S7",
        "TLS server: 1.1, client CA, handshake timeout",
        cases_security.tls_server_checks,
        ci=("epoll",),
    ),
]

#: (case key, engine or target) -> why it fails today.  Tests mark these as
#: expected failures (not strict: a fix makes them pass), RELIABILITY.md lists them.
KNOWN: dict[tuple[str, str], str] = {
    ("1", "thread"): (
        "a thread per idle connection: hundreds of threads each waking for their"
        " timeouts contend for the GIL, so a new client's round trip exceeds 50 ms"
    ),
}


def variants(case: Case, engines: list[str], scale: Scale) -> list[str]:
    """What ``case`` runs over at ``scale`` given the ``engines`` available here."""
    if case.over == "fuzz":
        return list(cases_fuzz.TARGETS)
    if case.over == "once":
        return [engines[0] if "epoll" not in engines else "epoll"]
    if scale.name == "ci" and case.ci is not None:
        return [engine for engine in engines if engine in case.ci]
    return list(engines)
