"""Case 16: fuzzing the parsers hostile input reaches, with hypothesis.

Each target is fed generated input and may raise only what its docstring
promises.  A target that is not in this checkout is reported as absent, not
as passed.
"""

from __future__ import annotations

import functools
import signal
import struct
import time
from collections.abc import Callable

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from .scale import Scale
from .verdict import Verdict

__all__ = ["fuzz"]

_HEX = "0123456789ABCDEF"
_hex = st.text(_HEX, min_size=0, max_size=40)


class _Hang(Exception):
    """One example ran past :data:`_EXAMPLE_LIMIT` seconds."""


#: A parser that takes this long on one small input is treated as hung.
_EXAMPLE_LIMIT = 2.0


def _on_alarm(signum: int, frame: object) -> None:
    raise _Hang(f"no answer within {_EXAMPLE_LIMIT:g} s")


def _time_limited(test: Callable[..., None]) -> Callable[..., None]:
    """Raise :class:`_Hang` from an example that runs past :data:`_EXAMPLE_LIMIT`."""

    @functools.wraps(test)
    def limited(*args: object, **kwargs: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, _EXAMPLE_LIMIT)
        try:
            test(*args, **kwargs)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    return limited


def _endpoint_grammar() -> Callable[[], None]:
    from sockkit import parse_endpoint
    from sockkit._errors import UsageError

    scheme = st.sampled_from(
        ["", "tcp://", "udp://", "tls://", "unix:", "unixgram:", "fd:", "systemd:"]
    )
    host = st.one_of(st.text(max_size=20), st.from_regex(r"\[[0-9a-f:%.]{0,40}\]", fullmatch=True))
    port = st.one_of(st.integers(-10, 70000).map(str), st.text(max_size=8))
    text = st.one_of(
        st.text(max_size=60), st.builds(lambda s, h, p: f"{s}{h}:{p}", scheme, host, port)
    )

    @given(text)
    @_time_limited
    def target(value: str) -> None:
        try:
            parse_endpoint(value)
        except UsageError:
            pass  # the documented answer to a malformed endpoint

    return target


def _chat_lines() -> Callable[[], None]:
    from sockkit.services._base import CLOSE
    from sockkit.services._chat import ChatRoom, ChatService

    pieces = st.lists(
        st.one_of(st.binary(max_size=40), st.sampled_from([b"\n", b"\r\n", b"x" * 33])),
        max_size=30,
    )

    @given(pieces, st.integers(1, 64))
    @_time_limited
    def target(chunks: list[bytes], max_line: int) -> None:
        room = ChatRoom(max_line=max_line)
        sender, hearer = ChatService(room), ChatService(room)
        sender.connected("s")
        hearer.connected("h")
        for chunk in chunks:
            if chunk and sender.state != CLOSE:
                sender.received(chunk)
        heard = hearer.produce(1 << 20)
        # The oracle: every whole line before the first over-long one, in order.
        expected = b""
        data = b"".join(chunks)
        *lines, tail = data.split(b"\n")
        for line in lines:
            if len(line) > max_line:
                break
            expected += b"[s] " + line + b"\n"
        assert heard == expected, (heard, expected)
        overlong = any(len(line) > max_line for line in lines) or len(tail) > max_line
        assert (sender.state == CLOSE) == overlong
        sender.closed()
        hearer.closed()

    return target


def _proc_net() -> Callable[[], None]:
    from sockkit.inspect._procnet import parse_proc_inet, parse_proc_unix

    address = st.builds(lambda a, p: f"{a}:{p}", _hex, _hex)
    row = st.builds(
        lambda n, loc, rem, state, q, rest: f"{n}: {loc} {rem} {state} {q} {rest}",
        st.integers(0, 9999),
        address,
        address,
        # Up to twelve hex digits: parse_proc_inet once shifted by the state
        # before checking it, so ten digits took the machine's memory.
        st.text(_HEX, min_size=1, max_size=12),
        st.builds(lambda a, b: f"{a}:{b}", _hex, _hex),
        st.text(max_size=60),
    )
    text = st.lists(st.one_of(row, st.text(max_size=80)), max_size=8).map("\n".join)

    @given(text, st.sampled_from(["tcp", "udp"]))
    @example(" 0: 0100007F:1B5F 00000000:0000 FFFFFFFFFF 0:0 00:0 0 0 0 1", "tcp")
    @_time_limited
    def target(value: str, netid: str) -> None:
        parse_proc_inet("header\n" + value, netid)
        parse_proc_unix("header\n" + value)

    return target


def _netlink() -> Callable[[], None]:
    from sockkit.inspect._netlink import parse_inet_dump
    from sockkit.inspect._unix_diag import parse_unix_dump

    header = struct.Struct("=IHHII")
    message = st.builds(
        lambda kind, body, claimed: (
            header.pack(claimed if claimed else 16 + len(body), kind, 0, 1, 0) + body
        ),
        st.sampled_from([2, 3, 20, 0, 65535]),
        st.binary(max_size=120),
        st.one_of(st.just(0), st.integers(0, 400)),
    )
    chunk = st.one_of(st.binary(max_size=200), st.lists(message, max_size=4).map(b"".join))

    @given(chunk)
    @example(bytes.fromhex("10000000140000000100000000000000"))  # a header and nothing else
    @example(bytes.fromhex("00000000030000000100000000000000"))  # length 0: looped for ever
    @_time_limited
    def target(value: bytes) -> None:
        for parse in (lambda: parse_inet_dump(value, "tcp"), lambda: parse_unix_dump(value)):
            try:
                parse()
            except OSError:
                pass  # the documented answer to an NLMSG_ERROR from the kernel

    return target


def _relay_faults() -> Callable[[], None]:
    from sockkit._errors import UsageError
    from sockkit.relay._faults import parse_rate, parse_size

    text = st.one_of(
        st.text(max_size=12),
        st.builds(
            lambda n, u: f"{n}{u}",
            st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers()),
            st.sampled_from(["", "k", "M", "Mi", "%", "/s", "b"]),
        ),
    )

    @given(text)
    @example("nan")  # inputs that once failed stay in every run
    @example("inf")
    @_time_limited
    def target(value: str) -> None:
        for parse in (lambda: parse_size(value), lambda: parse_rate(value)):
            try:
                parse()
            except UsageError:
                pass  # the documented answer to a bad --bandwidth/--drop

    return target


def _proxy_header() -> Callable[[], None]:
    import socket as socket_module

    from sockkit._proxy_protocol import (
        V2_SIGNATURE,
        ProxyHeaderError,
        ProxyHeaderReader,
        build_v1,
        build_v2,
    )

    ipv4 = st.ip_addresses(v=4).map(str)
    ipv6 = st.ip_addresses(v=6).map(str)
    port = st.integers(0, 65535)
    pair = st.one_of(
        st.tuples(st.tuples(ipv4, port), st.tuples(ipv4, port)),
        st.tuples(st.tuples(ipv6, port), st.tuples(ipv6, port)),
    )
    tlvs = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=3)
    valid = st.one_of(
        st.builds(lambda p: build_v1(*p), pair),
        st.builds(lambda p, t: build_v2(*p, tlvs=tuple(t)), pair, tlvs),
        st.just(build_v2(None, None, local=True)),
        st.just(b"PROXY UNKNOWN\r\n"),
    )

    def mutated(header: bytes, at: int, value: int, cut: int) -> bytes:
        # one byte changed (a length, a family, a digit) and maybe the end cut off
        raw = bytearray(header)
        raw[at % len(raw)] = value
        return bytes(raw[: max(1, len(raw) - cut)])

    noise = st.one_of(
        st.binary(max_size=120),
        st.builds(lambda b: V2_SIGNATURE + b, st.binary(max_size=80)),
        st.builds(lambda t: b"PROXY " + t.encode("utf-8", "replace"), st.text(max_size=110)),
        st.builds(mutated, valid, st.integers(0, 300), st.integers(0, 255), st.integers(0, 20)),
    )
    # the header, the client's first bytes, and where the reads split them
    stream = st.tuples(
        st.one_of(valid, noise), st.binary(max_size=20), st.lists(st.integers(1, 40))
    )

    @given(stream)
    @_time_limited
    def target(parts: tuple[bytes, bytes, list[int]]) -> None:
        header, payload, splits = parts
        data = header + payload
        reader = ProxyHeaderReader()
        fed = 0
        found = None
        try:
            for size in [*splits, len(data)]:
                wanted = reader.wanted
                assert wanted > 0, f"wanted {wanted} before the header is complete"
                chunk = data[fed : fed + size]
                if not chunk:
                    break
                fed += len(chunk)
                found = reader.feed(chunk)
                if found is not None:
                    break
        except ProxyHeaderError:
            return  # the documented answer to bytes that are not a header
        if found is None:
            return  # still waiting: a prefix of a header
        # Once complete: the header and the bytes after it are exactly what was fed.
        assert 0 < found.length <= fed
        assert data[found.length : fed] == reader.leftover
        assert reader.wanted == 0
        if header.startswith(V2_SIGNATURE) and found.version == 2:
            assert found.length == 16 + int.from_bytes(header[14:16], "big")
        if found.source is not None and found.family in (
            socket_module.AF_INET,
            socket_module.AF_INET6,
        ):
            host, number = found.source
            socket_module.inet_pton(found.family, host)
            assert 0 <= number <= 65535

    return target


TARGETS: dict[str, Callable[[], Callable[[], None] | None]] = {
    "endpoint grammar": _endpoint_grammar,
    "chat lines": _chat_lines,
    "/proc/net parsers": _proc_net,
    "netlink parsers": _netlink,
    "relay fault options": _relay_faults,
    "PROXY header": _proxy_header,
}


def fuzz(target_name: str, scale: Scale) -> Verdict:
    """16. ``scale.fuzz_examples`` examples of one target: only documented exceptions, no hang.

    Failures are reported as first found (no shrinking), so a hang costs one
    time limit rather than many.
    """
    v = Verdict()
    target = TARGETS[target_name]()
    if target is None:
        v.skipped = f"{target_name}: not in this checkout"
        return v
    run = settings(
        max_examples=scale.fuzz_examples,
        deadline=None,
        database=None,
        derandomize=scale.name == "ci",
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )(target)
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    start = time.monotonic()
    try:
        run()
    except Exception as exc:
        example = " ".join(getattr(exc, "__notes__", [])).replace("\n", " ")
        v.check(False, f"{type(exc).__name__}: {exc} {example}"[:300])
        return v
    finally:
        signal.signal(signal.SIGALRM, previous)
    v.check(True, f"{scale.fuzz_examples} examples, none failed ({time.monotonic() - start:.0f} s)")
    return v
