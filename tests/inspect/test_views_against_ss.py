"""ss's other views -- -s, -e, -o, -m, -i -- against iproute2 ss on the same sockets; -K and -E
on sockets the test opens and closes.

Only the zoo's own sockets are compared; a value that moves by itself (a
timer's time left, "last sent" ages, round-trip times) is compared by name
or masked, everything else to the byte.
"""

from __future__ import annotations

import errno
import os
import re
import select
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator

import pytest
from tests.conftest import cli_env, run_cli, sockkit_argv
from tests.inspect.sockzoo import SocketZoo

pytestmark = pytest.mark.skipif(shutil.which("ss") is None, reason="needs iproute2 ss")

Entries = list[tuple[str, ...]]
TIMER = re.compile(r"timer:\((\w+),[^,]*,(\d+)\)")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SocketZoo]:
    sockets = SocketZoo(tmp_path_factory.mktemp("views-zoo"))
    sockets.established.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    yield sockets
    sockets.close()


def entries(text: str) -> list[str]:
    """Socket entries: a line plus its tab-indented continuation, joined by ' | '."""
    found: list[str] = []
    for line in text.splitlines():
        if line.startswith("\t") and found:
            found[-1] += " | " + line.strip()
        elif line.strip():
            found.append(line.strip())
    return found


def inet_keep(ports: set[int]) -> Callable[[str], bool]:
    def keep(entry: str) -> bool:
        first = entry.split(" | ")[0].split()
        ends = [f.rpartition(":")[2] for f in first if ":" in f and "(" not in f]
        return any(end.isdigit() and int(end) in ports for end in ends)

    return keep


def compared(
    args: list[str], keep: Callable[[str], bool], mask: Callable[[str], str] = lambda e: e
) -> tuple[Entries, Entries]:
    """(ss's entries, sockkit's) for ``args``, taken while ss's answer held still."""
    for _attempt in range(5):
        before = subprocess.run(["ss", *args], capture_output=True, text=True, check=True).stdout
        ours = run_cli(["ss", *args])
        assert ours.returncode == 0, ours.stderr
        after = subprocess.run(["ss", *args], capture_output=True, text=True, check=True).stdout

        def pick(text: str) -> Entries:
            return sorted(tuple(mask(e).split()) for e in entries(text) if keep(e))

        if pick(before) == pick(after):
            return pick(before), pick(ours.stdout.decode())
    raise AssertionError("ss's answer kept changing")


def masked_timer(entry: str) -> str:
    return TIMER.sub(r"timer:(\1,LEFT,\2)", entry)


def test_summary_matches_ss() -> None:
    # Other programs open and close sockets all the time: a line that reads
    # the same in ss's answers before and after sockkit's must read the same
    # in sockkit's; a line that moved is compared by its words only.
    before = subprocess.run(["ss", "-s"], capture_output=True, text=True, check=True).stdout
    ours = run_cli(["ss", "-s"])
    after = subprocess.run(["ss", "-s"], capture_output=True, text=True, check=True).stdout
    assert ours.returncode == 0
    theirs, again, mine = (t.splitlines() for t in (before, after, ours.stdout.decode()))
    assert len(mine) == len(theirs) == len(again)
    held = 0
    for first, second, got in zip(theirs, again, mine, strict=True):
        if first == second:
            assert got.split() == first.split()
            held += 1
        else:
            assert [w for w in got.split() if not w.strip(",()").isdigit()] == [
                w for w in first.split() if not w.strip(",()").isdigit()
            ]
    assert held >= 5  # the table's header and the RAW/UDP/FRAG rows at least


def test_summary_with_a_table_prints_both(zoo: SocketZoo) -> None:
    out = run_cli(["ss", "-s", "-tn", f"sport = :{zoo.tcp_port}"]).stdout.decode()
    assert out.startswith("Total: ") and "Transport Total     IP        IPv6" in out
    assert f"127.0.0.1:{zoo.tcp_port}" in out


def test_extended_and_timers_match_ss(zoo: SocketZoo) -> None:
    expected, got = compared(["-tanoeH"], inet_keep(zoo.tcp_ports), masked_timer)
    assert got == expected
    words = " ".join(" ".join(e) for e in expected)
    assert "ino:" in words and "sk:" in words and "timer:(keepalive,LEFT,0)" in words
    assert "v6only:1" in words and "<--" in words and "-->" in words


def test_timers_alone_match_ss(zoo: SocketZoo) -> None:
    expected, got = compared(["-tanoH"], inet_keep(zoo.tcp_ports), masked_timer)
    assert got == expected
    keepalive = [e for e in expected if "timer:(keepalive,LEFT,0)" in e]
    assert len(keepalive) == 1


def test_keepalive_time_left_is_close_to_ss(zoo: SocketZoo) -> None:
    port = zoo.established.getsockname()[1]
    theirs = subprocess.run(
        ["ss", "-tnoH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    ours = run_cli(["ss", "-tnoH", f"sport = :{port}"]).stdout.decode()
    assert "timer:(keepalive,1" in theirs and "timer:(keepalive,1" in ours  # 119min or so
    assert TIMER.search(ours) and TIMER.search(ours).group(1) == "keepalive"  # type: ignore[union-attr]


def test_memory_matches_ss(zoo: SocketZoo) -> None:
    expected, got = compared(["-tanmH"], inet_keep(zoo.tcp_ports))
    assert got == expected
    # every full socket has its memory line; a TIME-WAIT entry an empty one, as in ss
    assert all(e[-1].startswith("skmem:(r") or e[0] == "TIME-WAIT" for e in expected)
    expected, got = compared(["-uanmH"], inet_keep(zoo.udp_ports))
    assert got == expected and expected


def test_unix_memory_and_details_match_ss(zoo: SocketZoo) -> None:
    def keep(entry: str) -> bool:
        fields = entry.split()
        return any(f.isdigit() and int(f) in zoo.unix_inodes for f in fields[4:8])

    for flags in ("-xanmH", "-xaneH"):
        expected, got = compared([flags], keep)
        assert got == expected and len(expected) == len(zoo.unix_inodes), flags


# Values that move on their own between two listings (ages, rates, round
# trips); the rest of -i is compared exactly.
MOVING = {"lastsnd", "lastrcv", "lastack", "rtt", "rto", "ato", "send", "pacing_rate"}
MOVING |= {"delivery_rate", "minrtt", "rcv_rtt", "bbr", "busy", "delivered", "app_limited"}


def info_items(entry: str) -> dict[str, str]:
    text = entry.split(" | ", 1)[1] if " | " in entry else ""
    text = re.sub(r"(send|pacing_rate|delivery_rate) (\S+)", r"\1:\2", text)
    items: dict[str, str] = {}
    for word in text.split():
        key, _, value = word.partition(":")
        items[key] = value
    return items


def test_tcp_info_matches_ss(zoo: SocketZoo) -> None:
    keep = inet_keep({zoo.tcp_port, zoo.tcp6_port})
    for flags in ("-tniH", "-tnioH"):
        theirs = subprocess.run(["ss", flags], capture_output=True, text=True, check=True).stdout
        ours = run_cli(["ss", flags]).stdout.decode()
        expected = {
            " ".join(e.split(" | ")[0].split()): info_items(e) for e in entries(theirs) if keep(e)
        }
        got = {" ".join(e.split(" | ")[0].split()): info_items(e) for e in entries(ours) if keep(e)}
        assert set(got) == set(expected) and len(expected) >= 4
        for line, items in expected.items():
            mine = got[line]
            # newer iproute2 than this machine's also prints rcv_wnd (and rehash)
            assert set(items) <= set(mine) <= set(items) | {"rcv_wnd", "rehash"}, line
            for key in set(items) - MOVING:
                assert mine[key] == items[key], (line, key)
        words = " ".join(" ".join(items) for items in got.values())
        for needed in ("send", "pacing_rate", "app_limited", "cwnd", "bytes_acked"):
            assert needed in words
        if flags == "-tnioH":
            assert "ts" in words and "sack" in words


def test_congestion_module_info_is_shown(zoo: SocketZoo) -> None:
    port = zoo.established.getsockname()[1]
    algorithm = zoo.established.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
    name = algorithm.split(b"\0")[0].decode()
    out = run_cli(["ss", "-tniH", f"sport = :{port}"]).stdout.decode()
    theirs = subprocess.run(
        ["ss", "-tniH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    assert f"\t {name} " in out
    for module in ("bbr:(bw:", "dctcp:"):
        assert (module in out) == (module in theirs)


def _pair() -> tuple[socket.socket, socket.socket, socket.socket]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    return listener, client, server


def test_kill_closes_the_matching_sockets_and_prints_them() -> None:
    if os.geteuid() != 0:
        pytest.skip("SOCK_DESTROY needs root")
    listener, client, server = _pair()
    port = listener.getsockname()[1]
    try:
        before = subprocess.run(
            ["ss", "-tnH", f"dport = :{port}"], capture_output=True, text=True, check=True
        ).stdout
        result = run_cli(["ss", "-tnKH", f"dport = :{port}"])
        assert result.returncode == 0, result.stderr
        assert [line.split() for line in result.stdout.decode().splitlines()] == [
            line.split() for line in before.splitlines()
        ]
        client.settimeout(5)
        with pytest.raises(OSError) as aborted:
            client.recv(1)
        assert aborted.value.errno == errno.ECONNABORTED
        server.settimeout(5)
        with pytest.raises(OSError) as reset:
            server.recv(1)
        assert reset.value.errno == errno.ECONNRESET
        after = subprocess.run(
            ["ss", "-tanH", f"sport = :{port} or dport = :{port}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert "ESTAB" not in after and "LISTEN" in after  # the listener was not matched
    finally:
        for sock in (listener, client, server):
            sock.close()


def test_kill_without_privilege_is_refused_in_one_line() -> None:
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to drop CAP_NET_ADMIN")
    listener, client, server = _pair()
    port = listener.getsockname()[1]
    try:
        # root without CAP_NET_ADMIN: what an unprivileged user has for this
        without = ["setpriv", "--bounding-set", "-net_admin", "--inh-caps", "-net_admin"]
        result = subprocess.run(
            [*without, *sockkit_argv("ss", "-tnK", f"dport = :{port}")],
            capture_output=True,
            env=cli_env(),
            timeout=30,
        )
        assert result.returncode == 1, result.stderr
        [line] = result.stderr.decode().splitlines()
        assert line.startswith("sockkit: ") and "CAP_NET_ADMIN" in line
        client.sendall(b"still open")
        assert server.recv(100) == b"still open"
    finally:
        for sock in (listener, client, server):
            sock.close()


def test_events_print_sockets_as_they_are_destroyed() -> None:
    listener, client, server = _pair()
    port = listener.getsockname()[1]
    wanted = f"sport = :{port} or dport = :{port}"
    follower = subprocess.Popen(
        sockkit_argv("ss", "-tnE", "--count", "3", "--duration", "30", wanted),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    try:
        assert follower.stderr is not None
        ready, _, _ = select.select([follower.stderr], [], [], 15)
        assert ready, "sockkit ss -E did not start"
        assert b"following destroyed sockets" in follower.stderr.readline()
        client_port = client.getsockname()[1]
        for sock in (client, server, listener):
            sock.close()
        out, err = follower.communicate(timeout=30)
        assert follower.returncode == 0, err
        lines = [line.split() for line in out.decode().splitlines()]
        assert lines[0][:2] == ["State", "Recv-Q"]
        ends = {(row[3], row[4]) for row in lines[1:]}
        assert ends == {
            (f"127.0.0.1:{client_port}", f"127.0.0.1:{port}"),
            (f"127.0.0.1:{port}", f"127.0.0.1:{client_port}"),
            (f"127.0.0.1:{port}", "0.0.0.0:*"),
        }
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        for sock in (listener, client, server):
            sock.close()
