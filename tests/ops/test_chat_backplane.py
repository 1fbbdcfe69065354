"""serve chat --backplane redis://: one room across processes, through a real redis-server."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from opskit import LISTENING, RedisServer, cli_env, free_port, need, run_cli, sockkit_argv

from sockkit.backplane import parse_redis_url
from sockkit.backplane._redis import BACK_NOTICE, LOST_NOTICE
from sockkit.services import ChatRoom, ChatService

pytest.importorskip("redis")

CHANNEL = "sockkit:chat:0"


class Chat:
    """A chat client: sends lines, reads lines with a deadline."""

    def __init__(self, endpoint: str) -> None:
        host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=15)
        self.name = "{}:{}".format(*self.sock.getsockname()[:2])
        self.buffer = b""

    def say(self, text: str) -> bytes:
        self.sock.sendall(text.encode() + b"\n")
        return f"[{self.name}] {text}\n".encode()

    def line(self, timeout: float = 15) -> bytes:
        self.sock.settimeout(timeout)
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, f"connection closed; had {self.buffer!r}"
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def close(self) -> None:
        self.sock.close()


class ChatServer:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            sockkit_argv("serve", "chat", "127.0.0.1:0", *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=cli_env(),
        )
        assert self.proc.stderr is not None
        self.lines: list[bytes] = []
        deadline = time.monotonic() + 20
        while True:
            assert time.monotonic() < deadline, self.lines
            line = self.proc.stderr.readline()
            assert line, (self.proc.wait(5), self.lines)
            self.lines.append(line)
            match = LISTENING.search(line)
            if match:
                self.endpoint = match.group(1).decode()
                break
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def log_so_far(self) -> bytes:
        return b"".join(list(self.lines))

    def stop(self) -> tuple[int, bytes]:
        if self.proc.poll() is None:
            self.proc.terminate()
        code = self.proc.wait(20)
        self._reader.join(10)
        return code, self.log_so_far()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def chat_servers() -> Iterator[list[ChatServer]]:
    started: list[ChatServer] = []
    yield started
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(5)


def subscribers(port: int) -> int:
    out = subprocess.run(
        [need("redis-cli"), "-p", str(port), "PUBSUB", "NUMSUB", CHANNEL],
        capture_output=True,
        timeout=10,
    ).stdout.split()
    return int(out[1]) if len(out) == 2 else -1


def wait_subscribers(port: int, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while subscribers(port) != count:
        assert time.monotonic() < deadline, f"{subscribers(port)} subscribers, expected {count}"
        time.sleep(0.05)


def settle(members: list[Chat], remote: Chat) -> None:
    """Return once every one of ``members`` (on one server) has joined the room.

    A connect completes before the server accepts it, so a line sent at once
    may be spread before another member joins.  Each member speaks (it has
    joined once ``remote`` hears it); then ``remote`` sends a marker that every
    member must get, skipping only the others' greetings.
    """
    greetings = {member.say("here") for member in members}
    for _ in members:
        assert remote.line() in greetings
    marker = remote.say("settled")
    for member in members:
        line = member.line()
        while line != marker:
            assert line in greetings, line
            line = member.line()


# -- without processes ----------------------------------------------------------


class RecordingBackplane:
    def __init__(self) -> None:
        self.published: list[bytes] = []
        self.started = 0

    def start(self, room: ChatRoom) -> None:
        self.started += 1

    def publish(self, message: bytes) -> None:
        self.published.append(message)


def test_room_publishes_its_lines_and_hears_remote_ones_without_echo() -> None:
    backplane = RecordingBackplane()
    room = ChatRoom(backplane=backplane)
    a, b = ChatService(room), ChatService(room)
    a.connected("10.0.0.1:1")
    b.connected("10.0.0.2:2")
    a.received(b"hi\n")
    assert backplane.published == [b"[10.0.0.1:1] hi\n"]
    assert b.produce(1000) == b"[10.0.0.1:1] hi\n" and a.produce(1000) == b""
    room.receive_remote(b"[192.0.2.9:9] from afar\n")
    assert a.produce(1000) == b.produce(1000) == b"[192.0.2.9:9] from afar\n"
    assert len(backplane.published) == 1  # remote lines are not published again
    room.notice(b"* note\n")
    assert a.produce(1000) == b"* note\n" and len(backplane.published) == 1


def test_backplane_urls() -> None:
    assert str(parse_redis_url("redis://127.0.0.1:6380/2")) == "redis://127.0.0.1:6380/2"
    assert parse_redis_url("redis://localhost").port == 6379
    assert parse_redis_url("redis://[::1]:7000").host == "::1"


# -- through the command line ---------------------------------------------------


def test_redis_down_at_start_is_one_line_and_exit_1() -> None:
    result = run_cli(
        ["serve", "chat", "127.0.0.1:0", "--backplane", f"redis://127.0.0.1:{free_port()}"]
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(b"sockkit: cannot reach the chat backplane")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["chat", "--backplane", "http://x"], b"expected redis://HOST:PORT[/DB]"),
        (["chat", "--backplane", "redis://h:99999"], b"expected redis://HOST:PORT[/DB]"),
        (["echo", "--backplane", "redis://127.0.0.1:1"], b"--backplane is for the chat service"),
    ],
)
def test_bad_backplane_options_are_usage_errors(args: list[str], expected: bytes) -> None:
    result = run_cli(["serve", *args])
    assert result.returncode == 2 and expected in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_two_servers_share_one_room_and_nobody_hears_itself(
    redis_server: RedisServer, chat_servers: list[ChatServer]
) -> None:
    one = ChatServer("--engine", "thread", "--backplane", redis_server.url)
    two = ChatServer("--engine", "asyncio", "--backplane", redis_server.url)
    chat_servers += [one, two]
    a, c = Chat(one.endpoint), Chat(one.endpoint)
    b = Chat(two.endpoint)
    wait_subscribers(redis_server.port, 2)
    settle([a, c], b)
    sent = a.say("hello from one")
    assert b.line() == sent and c.line() == sent
    reply = b.say("hello from two")
    # a's next line is b's: its own line never came back to it.
    assert a.line() == reply and c.line() == reply
    for n in range(50):
        c.say(f"burst {n}")
    for n in range(50):
        line = f"[{c.name}] burst {n}\n".encode()
        assert a.line() == line and b.line() == line
    marker = b.say("marker")
    assert c.line() == marker and a.line() == marker
    for client in (a, b, c):
        client.close()
    assert one.stop()[0] == 0 and two.stop()[0] == 0


@pytest.mark.parametrize("mode", [["--engine", "fork"], ["--workers", "2", "--engine", "thread"]])
def test_chat_runs_on_many_processes_with_a_backplane(
    redis_server: RedisServer, chat_servers: list[ChatServer], mode: list[str]
) -> None:
    server = ChatServer(*mode, "--backplane", redis_server.url)
    chat_servers.append(server)
    clients = [Chat(server.endpoint) for _ in range(4)]
    # fork: one process per connection; workers: at most one subscriber per worker.
    expected = 4 if "fork" in mode else None
    if expected is not None:
        wait_subscribers(redis_server.port, expected)
    else:
        deadline = time.monotonic() + 20
        while subscribers(redis_server.port) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
    for speaker in clients:
        sent = speaker.say(f"I am {speaker.name}")
        for listener in clients:
            if listener is not speaker:
                assert listener.line() == sent
    # Nobody heard itself: each one's next line is the last speaker's marker.
    marker = clients[0].say("end")
    for listener in clients[1:]:
        assert listener.line() == marker
    last = clients[1].say("end too")
    assert clients[0].line() == last
    for client in clients:
        client.close()
    assert server.stop()[0] == 0


def test_redis_lost_and_back_keeps_every_member_once(
    redis_server: RedisServer, chat_servers: list[ChatServer]
) -> None:
    one = ChatServer("--engine", "epoll", "--backplane", redis_server.url)
    two = ChatServer("--engine", "thread", "--backplane", redis_server.url)
    chat_servers += [one, two]
    a, b = Chat(one.endpoint), Chat(two.endpoint)
    wait_subscribers(redis_server.port, 2)
    sent = a.say("before")
    assert b.line() == sent
    redis_server.stop()
    assert a.line() == LOST_NOTICE and b.line() == LOST_NOTICE
    # While Redis is away each server's members still hear each other.
    # A connect completes before the server accepts it, so a2 speaks first:
    # once a hears it, a2 is a member and will hear what a says next.
    a2 = Chat(one.endpoint)
    hello = a2.say("joined while away")
    assert a.line() == hello
    local = a.say("only here")
    assert a2.line() == local
    redis_server.start()
    assert a.line() == BACK_NOTICE and b.line() == BACK_NOTICE and a2.line() == BACK_NOTICE
    wait_subscribers(redis_server.port, 2)  # one subscription per server, not two
    after = a.say("after")
    assert b.line() == after and a2.line() == after
    reply = b.say("reply")
    assert a.line() == reply and a2.line() == reply
    # One notice each, nothing twice: the next line anyone gets is the next one sent.
    final = a2.say("final")
    assert a.line() == final and b.line() == final
    for client in (a, a2, b):
        client.close()
    code, log = one.stop()
    assert code == 0
    assert log.count(b"chat backplane lost") == 1 and log.count(b"chat backplane back") == 1
