"""ss's filter language, parsed: ``state``/``exclude`` words, then an expression.

The grammar is iproute2's (``man ss``, FILTER and STATE-FILTER)::

    FILTER     := { state STATE | exclude STATE }... [ EXPRESSION ]
    EXPRESSION := TERM | EXPRESSION [ or | and ] TERM      (no operator: and)
    TERM       := PREDICATE | not TERM | ( EXPRESSION )
    PREDICATE  := src [=] HOST | dst [=] HOST
                | sport [OP] PORT | dport [OP] PORT | autobound
    OP         := = | == | eq | != | ne | neq | > | gt | < | lt | >= | ge | geq | <= | le | leq
    HOST       := [inet:|inet6:|unix:] ADDRESS[/PREFIX][:PORT] | [IPV6][:PORT] | *[:PORT] | :PORT

Rules, as ss applies them (and tests against ss check):

* Words are split on blanks, so ``'( dport = :ssh )'`` may come as one
  argument; parentheses must stand alone, as in ss.
* ``or``/``and`` chain *left to right*, with no precedence between them:
  ``a or b and c`` is ``(a or b) and c`` (ss's parser does this, whatever
  its manual says); ``not`` binds to the one term after it.
* ``state`` words are or-ed together; an ``exclude`` before any ``state``
  starts from every state.
* A Unix socket's "ports" are its inode and its peer's inode, as ss shows
  them, so port conditions compare those; an IP address never matches a
  Unix socket; a Unix pattern (``unix:/tmp/*``, or any HOST starting with
  ``/`` or ``@``, or any HOST when only Unix sockets are listed) is a
  case-insensitive glob on the socket's path and restricts the listing to
  Unix sockets, as an ``inet:``/``inet6:`` prefix restricts it to IP.
* A HOST that is not an address is a name, resolved to every address it has.

:func:`parse_filter` does the parsing (and the name and service look-ups);
:mod:`._filter_match` evaluates a parsed expression in Python and
:mod:`._bytecode` compiles it for the kernel.
"""

from __future__ import annotations

import socket
from typing import NamedTuple

from sockkit._errors import UsageError
from sockkit.inspect._filter_tree import (
    AF_INET,
    AF_INET6,
    AF_UNIX,
    AF_UNSPEC,
    And,
    Auto,
    HostCond,
    Node,
    Not,
    Or,
    PortCompare,
)
from sockkit.inspect._query import ALL_STATES, parse_state

__all__ = ["GRAMMAR", "FilterError", "SocketFilter", "parse_filter"]

GRAMMAR = """\
FILTER     := { state STATE | exclude STATE }... [ EXPRESSION ]
EXPRESSION := TERM | EXPRESSION [ or | and ] TERM   (left to right; no word means and)
TERM       := src [=] HOST | dst [=] HOST | sport [OP] PORT | dport [OP] PORT
            | autobound | not TERM | ( EXPRESSION )
OP         := = != < <= > >= (or eq ne lt le gt ge)
HOST       := ADDRESS[/PREFIX][:PORT] | [IPV6][:PORT] | :PORT | unix:GLOB
example    : state established '( dport = :ssh or sport = :ssh )' dst 127.0.0.1/8"""


class SocketFilter(NamedTuple):
    """A parsed filter: the state mask it sets (``None``: it names no state), the
    expression (``None``: none), and the families a HOST prefix limits it to."""

    states: int | None
    expression: Node | None
    families: frozenset[str] | None = None


class FilterError(UsageError):
    """A filter that does not follow the grammar; :meth:`explain` points at the word."""

    def __init__(self, message: str, words: list[str], position: int) -> None:
        super().__init__(f"bad filter: {message}")
        self.words = words
        self.position = position

    def explain(self) -> str:
        """The filter with a caret under the word the parser stopped at, then the grammar."""
        shown = " ".join(self.words) if self.words else ""
        column = sum(len(word) + 1 for word in self.words[: self.position])
        lines = [f"  {shown}", "  " + " " * column + "^", *("  " + g for g in GRAMMAR.split("\n"))]
        return "\n".join(lines) + "\n"


_EQ = frozenset({"=", "==", "eq"})
_OPS: dict[str, str] = {
    **dict.fromkeys(("!=", "ne", "neq"), "ne"),
    **dict.fromkeys((">", "gt"), "gt"),
    **dict.fromkeys(("<", "lt"), "lt"),
    **dict.fromkeys((">=", "ge", "geq"), "ge"),
    **dict.fromkeys(("<=", "le", "leq"), "le"),
    **dict.fromkeys(_EQ, "eq"),
}
_NOT = frozenset({"!", "not"})
_AND = frozenset({"&", "&&", "and"})
_OR = frozenset({"|", "||", "or"})
_UNSUPPORTED = frozenset({"dev", "fwmark", "cgroup"})
_KEYWORDS = _NOT | _AND | _OR | {"(", ")", "src", "dst", "sport", "dport", "autobound"}


def parse_filter(
    arguments: list[str] | tuple[str, ...], *, unix_only: bool = False
) -> SocketFilter:
    """Parse ss's FILTER from command-line ``arguments`` (each split on blanks).

    ``unix_only``: only Unix sockets are listed, so every HOST is a Unix glob
    (ss does the same after ``-x``).  Raises :class:`FilterError`.
    """
    words = [word for argument in arguments for word in argument.split()]
    return _Parser(words, unix_only).parse()


class _Parser:
    def __init__(self, words: list[str], unix_only: bool) -> None:
        self.words = words
        self.pos = 0
        self.unix_only = unix_only
        self.families: frozenset[str] | None = None

    def fail(self, message: str, position: int | None = None) -> FilterError:
        at = self.pos if position is None else position
        return FilterError(message, self.words, at)

    def peek(self) -> str | None:
        return self.words[self.pos] if self.pos < len(self.words) else None

    def take(self) -> str:
        word = self.peek()
        if word is None:
            raise self.fail("the filter ends too early")
        self.pos += 1
        return word

    def parse(self) -> SocketFilter:
        states = self.state_words()
        expression = None
        if self.peek() is not None:
            expression = self.expression()
            if self.peek() is not None:
                raise self.fail(f"unexpected {self.peek()!r}")
        return SocketFilter(states, expression, self.families)

    def state_words(self) -> int | None:
        mask: int | None = None
        while self.peek() in ("state", "exclude", "excl"):
            keyword = self.take()
            if self.peek() is None:
                raise self.fail(f"expected a state name after {keyword!r}")
            try:
                bits = parse_state(self.peek() or "")
            except UsageError:
                raise self.fail(f"unknown state {self.peek()!r}") from None
            self.pos += 1
            if keyword == "state":
                mask = (mask or 0) | bits
            else:
                mask = (ALL_STATES if mask is None else mask) & ~bits
        return mask

    def expression(self) -> Node:
        node = self.term()
        while True:
            word = self.peek()
            if word is None or word == ")":
                return node
            if word in _OR:
                self.pos += 1
                node = Or(node, self.term())
            else:
                if word in _AND:
                    self.pos += 1
                node = And(node, self.term())

    def term(self) -> Node:
        start = self.pos
        word = self.take()
        if word == "(":
            node = self.expression()
            if self.peek() != ")":
                raise self.fail("expected ')'")
            self.pos += 1
            return node
        if word in _NOT:
            return Not(self.term())
        if word in ("src", "dst"):
            if self.peek() in _EQ:
                self.pos += 1
            return self.host(word[0])
        if word in ("sport", "dport"):
            return self.port_condition(word[0])
        if word == "autobound":
            return Auto()
        if word in _UNSUPPORTED:
            raise self.fail(f"{word!r} conditions are not supported by sockkit ss", start)
        raise self.fail(f"expected a condition, got {word!r}", start)

    def port_condition(self, side: str) -> Node:
        op = "eq"
        if self.peek() in _OPS:
            op = _OPS[self.take()]
        position = self.pos
        text = self.take()
        port = _port(text.removeprefix(":"))
        if port is None:
            raise self.fail(f"expected a port (:22, :ssh or *), got {text!r}", position)
        if port == -1:
            if op != "eq":
                raise self.fail(f"'*' cannot be compared, got {text!r}", position)
            return HostCond(side, None)
        if op == "eq":
            return HostCond(side, port)
        if op == "ne":
            return Not(HostCond(side, port))
        if op in ("ge", "le"):
            return PortCompare(side, op, port)
        # > and < are the negations of <= and >=, as ss compiles them
        return Not(PortCompare(side, "le" if op == "gt" else "ge", port))

    def host(self, side: str) -> Node:
        position = self.pos
        text = self.take()
        if text in _KEYWORDS:
            raise self.fail(f"expected a HOST after {'src' if side == 's' else 'dst'}", position)
        family = AF_UNSPEC
        for prefix, fam in (("unix:", AF_UNIX), ("inet6:", AF_INET6), ("inet:", AF_INET)):
            if text.startswith(prefix):
                family, text = fam, text[len(prefix) :]
                break
        else:
            if text.startswith(("/", "@")) or self.unix_only:
                family = AF_UNIX
        if family == AF_UNIX:
            self.limit("unix")
            return HostCond(side, None, (), text)
        if family != AF_UNSPEC:
            self.limit("inet" if family == AF_INET else "inet6")
        try:
            address, port = _split_host(text)
            addresses = _addresses(address, family)
        except ValueError as exc:
            raise self.fail(str(exc), position) from None
        return HostCond(side, port, addresses)

    def limit(self, family: str) -> None:
        self.families = (self.families or frozenset()) | {family}


def _port(text: str) -> int | None:
    """A port number, -1 for ``*``/empty (any), ``None`` if ``text`` is no port."""
    if text in ("", "*"):
        return -1
    if text.isdigit():
        number = int(text)
        return number if number <= 65535 else None
    for protocol in ("tcp", "udp"):
        try:
            return socket.getservbyname(text, protocol)
        except OSError:
            continue
    return None


def _split_host(text: str) -> tuple[str, int | None]:
    """``ADDRESS[:PORT]`` -> (address text, port or ``None``); raises ValueError."""
    if text.startswith("["):
        address, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise ValueError(f"missing ']' in {text!r}")
    elif text.startswith("*"):
        address, rest = "", text[1:]
    elif text.count(":") > 1 and _is_ipv6(text):
        address, rest = text, ""  # a bare IPv6 address (ss needs brackets)
    else:
        slash = text.find("/")
        colon = text.rfind(":", slash if slash >= 0 else 0)
        address, rest = (text, "") if colon < 0 else (text[:colon], text[colon:])
    if rest and not rest.startswith(":"):
        raise ValueError(f"expected ':PORT' after the address in {text!r}")
    port = _port(rest[1:]) if rest else -1
    if port is None:
        raise ValueError(f"{rest[1:]!r} does not look like a port")
    return address, None if port == -1 else port


def _is_ipv6(text: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6, text.partition("/")[0])
    except OSError:
        return False
    return True


def _addresses(text: str, family: int) -> tuple[tuple[int, bytes, int], ...]:
    if text in ("", "*"):
        return ()
    address, slash, length = text.partition("/")
    for fam, size in ((AF_INET, 4), (AF_INET6, 16)):
        if family not in (AF_UNSPEC, fam):
            continue
        packed = _pack(fam, address)
        if packed is None:
            continue
        prefix = size * 8
        if slash:
            if not length.isdigit() or int(length) > prefix:
                raise ValueError(f"bad prefix length in {text!r}")
            prefix = int(length)
        return ((fam, packed, prefix),)
    if slash:
        raise ValueError(f"an address is expected rather than {text!r}")
    return _resolve(address, family)


def _pack(family: int, text: str) -> bytes | None:
    if family == AF_INET and text.count(".") < 3 and text.replace(".", "").isdigit():
        text = ".".join([*text.split("."), "0", "0", "0"][:4])  # ss's 193.233.7/24
    try:
        return socket.inet_pton(family, text)
    except OSError:
        return None


def _resolve(name: str, family: int) -> tuple[tuple[int, bytes, int], ...]:
    try:
        infos = socket.getaddrinfo(name, None, family, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ValueError(f"an address is expected rather than {name!r}") from None
    found: list[tuple[int, bytes, int]] = []
    for fam, _type, _proto, _canon, sockaddr in infos:
        packed = socket.inet_pton(fam, str(sockaddr[0]).partition("%")[0])
        entry = (int(fam), packed, len(packed) * 8)
        if entry not in found:
            found.append(entry)
    return tuple(found)
