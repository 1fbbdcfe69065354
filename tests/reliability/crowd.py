"""Many clients at once, run in their own process so the case's probes keep their own core time.

``python crowd.py MODE HOST PORT [options]`` prints one JSON object:

``storm``      ``--count N --seconds S``: N clients spread evenly over S seconds,
               each connects, sends one byte, waits for its echo and closes.
               Reports every client's duration and how many failed.
``churn``      ``--count N --seconds S --width W --hold H``: N connect/send/echo/close
               cycles over S seconds, at most W at once, each kept open H seconds
               after its echo.  Reports completed/refused.
``slowloris``  ``--count N --gap G --limit L``: N clients each send one byte (no
               newline) every G seconds; reports when each was closed, relative
               to its connect (for at most L seconds).
``soak``       ``--seconds S --count IDLE [--chat PORT] [--pace P]``: mixed load for S seconds, P
               seconds' pause per round (0.005: about 400 round trips a second) --
               paced round trips, connect churn, IDLE idle holders and, with a
               chat server's port, five chatting members.  Reports the counts.
"""

from __future__ import annotations

import argparse
import errno
import json
import selectors
import socket
import sys
import time
from dataclasses import dataclass, field


@dataclass
class _Client:
    sock: socket.socket
    started: float
    state: str = "connecting"
    extra: dict[str, float] = field(default_factory=dict)


def _new_client(host: str, port: int) -> _Client:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    started = time.monotonic()
    err = sock.connect_ex((host, port))
    client = _Client(sock, started)
    if err not in (0, errno.EINPROGRESS):
        client.state = "failed"
    return client


def _exchange(args: argparse.Namespace, paced: bool) -> dict[str, object]:
    """storm and churn: connect, one byte, its echo, close; paced over ``seconds``."""
    sel = selectors.DefaultSelector()
    durations: list[float] = []
    failed = 0
    open_now = 0
    most_open = 0
    started = time.monotonic()
    launched = 0
    hang_limit = 10.0
    holding: list[_Client] = []
    while launched < args.count or open_now:
        now = time.monotonic()
        due = (
            args.count
            if not paced
            else min(args.count, int((now - started) / args.seconds * args.count) + 1)
        )
        while launched < due and open_now < args.width:
            client = _new_client(args.host, args.port)
            launched += 1
            if client.state == "failed":
                client.sock.close()
                failed += 1
                continue
            sel.register(client.sock, selectors.EVENT_WRITE, client)
            open_now += 1
            most_open = max(most_open, open_now)
        now = time.monotonic()
        while holding and holding[0].extra["close_at"] <= now:
            holding.pop(0).sock.close()
            open_now -= 1
        for key, _ in sel.select(0.002):
            client = key.data
            sock = client.sock
            done = False
            try:
                if client.state == "connecting":
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, "connect")
                    sock.send(b"x")
                    client.state = "waiting"
                    sel.modify(sock, selectors.EVENT_READ, client)
                else:
                    data = sock.recv(16)
                    if data != b"x":
                        raise OSError(errno.ECONNRESET, "closed before echo")
                    if client.state == "waiting":
                        durations.append(time.monotonic() - client.started)
                    if args.hold > 0 and client.state == "waiting":
                        # Keep the connection a while (churn): it counts against --max-conns.
                        client.state = "holding"
                        client.extra["close_at"] = time.monotonic() + args.hold
                        sel.unregister(sock)
                        holding.append(client)
                        continue
                    done = True
            except OSError:
                failed += 1
                done = True
            if done:
                sel.unregister(sock)
                sock.close()
                open_now -= 1
        now = time.monotonic()
        for key in list(sel.get_map().values()):
            client = key.data
            if now - client.started > hang_limit:
                sel.unregister(client.sock)
                client.sock.close()
                open_now -= 1
                failed += 1
                durations.append(now - client.started)
    return {
        "durations": durations,
        "failed": failed,
        "elapsed": time.monotonic() - started,
        "most_open": most_open,
    }


def _slowloris(args: argparse.Namespace) -> dict[str, object]:
    clients = [_new_client(args.host, args.port) for _ in range(args.count)]
    sel = selectors.DefaultSelector()
    closed_after: list[float | None] = [None] * len(clients)
    for index, client in enumerate(clients):
        if client.state == "failed":
            closed_after[index] = 0.0
            continue
        sel.register(client.sock, selectors.EVENT_READ, index)
    next_byte = time.monotonic()
    end = time.monotonic() + args.limit
    live = {i for i, c in enumerate(clients) if c.state != "failed"}
    while live and time.monotonic() < end:
        now = time.monotonic()
        if now >= next_byte:
            for index in list(live):
                try:
                    clients[index].sock.send(b"a")
                except BlockingIOError:
                    pass
                except OSError:
                    closed_after[index] = now - clients[index].started
                    live.discard(index)
                    sel.unregister(clients[index].sock)
            next_byte += args.gap
        for key, _ in sel.select(max(0.0, min(next_byte, end) - time.monotonic())):
            index = key.data
            try:
                data = clients[index].sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                closed_after[index] = time.monotonic() - clients[index].started
                live.discard(index)
                sel.unregister(clients[index].sock)
    for client in clients:
        client.sock.close()
    return {"closed_after": closed_after}


def _soak(args: argparse.Namespace) -> dict[str, object]:
    """Mixed load for ``--seconds``: paced rr, connect churn, idle holders, chat members."""
    echo = (args.host, args.port)
    idle = [socket.create_connection(echo) for _ in range(args.count)]
    rr = [socket.create_connection(echo) for _ in range(2)]
    for sock in rr:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    chat = [socket.create_connection((args.host, args.chat)) for _ in range(5)] if args.chat else []
    for sock in chat:
        sock.setblocking(False)
    exchanges = churned = lines = errors = 0
    end = time.monotonic() + args.seconds
    tick = 0
    while time.monotonic() < end:
        tick += 1
        try:
            for sock in rr:  # about 400 round trips a second over two connections
                sock.sendall(b"r" * 64)
                got = 0
                while got < 64:
                    got += len(sock.recv(64 - got) or b"!" * 100)
                exchanges += 1
            if tick % 5 == 0:  # about 40 connect/echo/close cycles a second
                with socket.create_connection(echo, timeout=5) as sock:
                    sock.sendall(b"c")
                    sock.recv(1)
                churned += 1
            if chat and tick % 20 == 0:  # each member a line about every 100 ms
                for n, sock in enumerate(chat):
                    sock.sendall(b"soak line %d %d\n" % (n, tick))
                    lines += 1
                for sock in chat:
                    try:
                        while sock.recv(65536):
                            pass
                    except BlockingIOError:
                        pass
        except OSError:
            errors += 1
        time.sleep(args.pace)
    for sock in idle + rr + chat:
        sock.close()
    return {"exchanges": exchanges, "churned": churned, "lines": lines, "errors": errors}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("storm", "churn", "slowloris", "soak"))
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--width", type=int, default=100_000)
    parser.add_argument("--gap", type=float, default=2.0)
    parser.add_argument("--limit", type=float, default=30.0)
    parser.add_argument("--hold", type=float, default=0.0)
    parser.add_argument("--chat", type=int, default=0)
    parser.add_argument("--pace", type=float, default=0.005)
    args = parser.parse_args()
    if args.mode == "slowloris":
        result = _slowloris(args)
    elif args.mode == "soak":
        result = _soak(args)
    else:
        result = _exchange(args, paced=True)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
