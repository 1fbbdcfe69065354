"""The native copy loop: plain links leave Python, and come back intact when something needs them.

Each test runs ``sockkit relay --api`` as a child, so the relay's own threads
can be measured (the Python thread's CPU time, RSS) and the API's list of
live connections says where each direction's bytes go (``paths``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import cli_env, sockkit_argv
from tests.relay.conftest import Peer

from sockkit.relay._pump_native import ENV, native_usable

pytestmark = pytest.mark.skipif(not native_usable(), reason="the native copy loop is not built")

MB = 1024 * 1024


class ApiRelay:
    """``sockkit relay --api`` with one proxy ``p`` to ``upstream``, as a child process."""

    def __init__(self, upstream: str, tmp: Path, **env: str) -> None:
        config = tmp / "proxies.json"
        config.write_text(
            json.dumps([{"name": "p", "listen": "127.0.0.1:0", "upstream": upstream}])
        )
        self.proc = subprocess.Popen(
            sockkit_argv("relay", "--api", "127.0.0.1:0", "--config", str(config)),
            stderr=subprocess.PIPE,
            env=cli_env(**env),
        )
        assert self.proc.stderr is not None
        lines = [self.proc.stderr.readline().decode() for _ in range(2)]
        self.api = next(line.split("http://")[1].strip() for line in lines if "api on" in line)
        self.rest: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        _, proxy = self.call("GET", "/proxies/p")
        self.port = int(proxy["listen"].rsplit(":", 1)[1])

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.rest.append(line.decode(errors="replace"))

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://{self.api}{path}", data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        return status, json.loads(raw) if raw.strip() else None

    def links(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/proxies/p/connections")[1])

    def paths(self) -> dict[str, str]:
        (link,) = self.links()
        return dict(link["paths"])

    def python_cpu(self) -> float:
        """CPU seconds of the relay's main (Python) thread."""
        fields = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/stat").read_text()
        user, system = fields.rsplit(")", 1)[1].split()[11:13]
        return (int(user) + int(system)) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0])

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        assert self.proc.wait(10) == 0
        time.sleep(0.1)
        return "".join(self.rest)


@pytest.fixture
def echo() -> Any:
    peer = Peer("echo")
    yield peer
    peer.close()


def _wait_for(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _round_trips(sock: socket.socket, count: int, size: int = 64) -> None:
    message = b"m" * size
    for _ in range(count):
        sock.sendall(message)
        got = b""
        while len(got) < size:
            chunk = sock.recv(size - len(got))
            assert chunk
            got += chunk


def test_plain_link_runs_in_native_loop_with_python_idle(echo: Peer, tmp_path: Path) -> None:
    """5,000 round trips and 100 MB: the relay's Python thread stays (almost) idle."""
    relay = ApiRelay(echo.address, tmp_path)
    sink = Peer("sink")
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
            _round_trips(sock, 10)
            assert relay.paths() == {"upstream": "native", "downstream": "native"}
            before = relay.python_cpu()
            _round_trips(sock, 5000)
            spent = relay.python_cpu() - before
        # the Python path costs ~50 µs of Python thread per round trip: ~0.25 s here
        assert spent < 0.06, f"Python thread spent {spent:.3f} s on 5,000 round trips"
        relay.call("POST", "/proxies/p", {"upstream": sink.address})
        before = relay.python_cpu()
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
            chunk = b"b" * MB
            for _ in range(100):
                sock.sendall(chunk)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(20)
            assert sock.recv(1) == b""
        spent = relay.python_cpu() - before
        assert spent < 0.1, f"Python thread spent {spent:.3f} s on 100 MB"
        _wait_for(lambda: 100 * MB in sink.received)
    finally:
        log = relay.stop()
        sink.close()
    assert f"in={100 * MB} out=0" in log


def test_50mb_each_way_byte_exact(echo: Peer, tmp_path: Path) -> None:
    relay = ApiRelay(echo.address, tmp_path)
    payload = os.urandom(50 * MB)
    got: list[bytes] = []
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=20) as sock:

            def read() -> None:
                got.append(b"".join(iter(lambda: sock.recv(1 << 16), b"")))

            reader = threading.Thread(target=read)
            reader.start()
            sock.sendall(payload)
            assert relay.paths() == {"upstream": "native", "downstream": "native"}
            sock.shutdown(socket.SHUT_WR)
            reader.join(60)
        assert hashlib.sha256(got[0]).hexdigest() == hashlib.sha256(payload).hexdigest()
    finally:
        log = relay.stop()
    assert f"in={50 * MB} out={50 * MB}" in log


@pytest.mark.skipif(not (shutil.which("ncat") and shutil.which("nc")), reason="needs ncat, nc")
def test_half_close_each_way_with_nc_and_ncat(tmp_path: Path) -> None:
    """``nc -N`` half-closes to ``ncat --recv-only``; ``ncat --send-only`` half-closes to a reader."""
    data = os.urandom(5 * MB)
    port = _free_port()
    received = tmp_path / "received.bin"
    with received.open("wb") as out:
        ncat = subprocess.Popen(["ncat", "-l", "--recv-only", "127.0.0.1", str(port)], stdout=out)
    time.sleep(0.2)
    relay = ApiRelay(f"127.0.0.1:{port}", tmp_path)
    try:
        nc = subprocess.run(
            ["nc", "-N", "127.0.0.1", str(relay.port)], input=data, capture_output=True, timeout=30
        )
        assert nc.returncode == 0 and nc.stdout == b""
        assert ncat.wait(20) == 0
        assert received.read_bytes() == data
        source = tmp_path / "source.bin"
        source.write_bytes(data)
        port2 = _free_port()
        with source.open("rb") as stdin:
            sender = subprocess.Popen(
                ["ncat", "-l", "--send-only", "127.0.0.1", str(port2)], stdin=stdin
            )
        time.sleep(0.2)
        relay.call("POST", "/proxies/p", {"upstream": f"127.0.0.1:{port2}"})
        with socket.create_connection(("127.0.0.1", relay.port), timeout=20) as sock:
            sock.settimeout(20)
            first = sock.recv(1 << 16)
            assert relay.paths()["downstream"] == "native"
            rest = b"".join(iter(lambda: sock.recv(1 << 16), b""))
            sock.sendall(b"after the peer's FIN")  # our direction is still open
        assert first + rest == data
        assert sender.wait(20) == 0
    finally:
        ncat.kill()
        ncat.wait()
        log = relay.stop()
    assert f"in=20 out={5 * MB}" in log


def test_target_reset_reaches_client_as_reset(tmp_path: Path) -> None:
    target = socket.create_server(("127.0.0.1", 0))
    relay = ApiRelay(f"127.0.0.1:{target.getsockname()[1]}", tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
            conn, _ = target.accept()
            sock.sendall(b"hello")
            assert conn.recv(5) == b"hello"
            conn.sendall(b"world")
            assert sock.recv(5) == b"world"
            assert relay.paths() == {"upstream": "native", "downstream": "native"}
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            sock.settimeout(5)
            with pytest.raises(ConnectionResetError):
                while sock.recv(1024):
                    pass
        _wait_for(lambda: not relay.links())
    finally:
        target.close()
        relay.stop()


def test_slow_consumer_bounded_in_native_loop(tmp_path: Path) -> None:
    """30 MB to a reader taking 3 MB/s: RSS grows < 4 MB while the native loop carries it."""
    total = 30 * MB
    source = Peer(f"send:{total}")
    relay = ApiRelay(source.address, tmp_path)
    try:
        before = relay.rss_kib()
        peak = before
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.sendall(b"g")
            got, started = 0, time.monotonic()
            while got < total:
                data = sock.recv(64 * 1024)
                assert data
                got += len(data)
                if got > MB and got < 2 * MB:
                    assert relay.paths()["downstream"] == "native"
                ahead = got / (3 * MB) - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
                peak = max(peak, relay.rss_kib())
        assert got == total
        assert peak - before < 4 * 1024, f"RSS grew {peak - before} KiB"
    finally:
        relay.stop()
        source.close()


def test_toxic_added_to_live_link_applies_and_loses_nothing(echo: Peer, tmp_path: Path) -> None:
    """A latency toxic added mid-stream takes the link back to Python; removing it returns it."""
    relay = ApiRelay(echo.address, tmp_path)
    payload = os.urandom(20 * MB)
    got: list[bytes] = []
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=20) as sock:
            sock.settimeout(20)
            _round_trips(sock, 3)
            assert relay.paths() == {"upstream": "native", "downstream": "native"}

            def read() -> None:
                got.append(b"".join(iter(lambda: sock.recv(1 << 16), b"")))

            reader = threading.Thread(target=read)
            reader.start()
            sender = threading.Thread(target=sock.sendall, args=(payload,))
            sender.start()
            time.sleep(0.05)  # bytes in flight, some inside the native loop's buffers
            toxic = {"name": "lag", "type": "latency", "stream": "downstream"}
            status, _ = relay.call(
                "POST", "/proxies/p/toxics", {**toxic, "attributes": {"latency": 200}}
            )
            assert status == 200
            assert relay.paths() == {"upstream": "native", "downstream": "python"}
            sender.join(60)
            time.sleep(0.5)
            assert relay.call("DELETE", "/proxies/p/toxics/lag")[0] == 204
            sock.shutdown(socket.SHUT_WR)
            reader.join(60)
        assert hashlib.sha256(got[0]).hexdigest() == hashlib.sha256(payload).hexdigest()

        with socket.create_connection(("127.0.0.1", relay.port), timeout=20) as sock:
            sock.settimeout(20)
            _round_trips(sock, 2)
            relay.call("POST", "/proxies/p/toxics", {**toxic, "attributes": {"latency": 200}})
            started = time.monotonic()
            _round_trips(sock, 1)
            assert time.monotonic() - started >= 0.19
            relay.call("DELETE", "/proxies/p/toxics/lag")
            _round_trips(sock, 2)  # the first piece after the removal still passes Python
            _wait_for(lambda: relay.paths()["downstream"] == "native")
            started = time.monotonic()
            _round_trips(sock, 1)
            assert time.monotonic() - started < 0.1
    finally:
        relay.stop()


def test_api_closes_native_link(echo: Peer, tmp_path: Path) -> None:
    relay = ApiRelay(echo.address, tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
            _round_trips(sock, 3)
            (link,) = relay.links()
            assert link["paths"] == {"upstream": "native", "downstream": "native"}
            assert relay.call("DELETE", f"/proxies/p/connections/{link['id']}")[0] == 204
            sock.settimeout(5)
            assert sock.recv(10) == b""
            _wait_for(lambda: not relay.links())
            _wait_for(lambda: echo.received == [3 * 64])
    finally:
        log = relay.stop()
    assert "closed through the API" in log


def test_sigterm_drains_native_links_then_closes(echo: Peer, tmp_path: Path) -> None:
    """SIGTERM: the listener closes at once, a live native link keeps working, the second signal ends it."""
    relay = ApiRelay(echo.address, tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
            _round_trips(sock, 3)
            assert relay.paths() == {"upstream": "native", "downstream": "native"}
            relay.proc.send_signal(signal.SIGTERM)
            _wait_for(lambda: any("draining" in line for line in relay.rest))
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", relay.port), timeout=2).close()
            _round_trips(sock, 100)  # still relayed while draining
            relay.proc.send_signal(signal.SIGTERM)
            sock.settimeout(5)
            assert sock.recv(10) == b""
            assert relay.proc.wait(5) == 0
    finally:
        relay.stop()


def test_env_turns_native_loop_off(echo: Peer, tmp_path: Path) -> None:
    relay = ApiRelay(echo.address, tmp_path, **{ENV: "0"})
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
            _round_trips(sock, 3)
            assert relay.paths() == {"upstream": "splice", "downstream": "splice"}
            before = relay.python_cpu()
            _round_trips(sock, 2000)
            assert relay.python_cpu() - before > 0.0  # Python carries each message
    finally:
        relay.stop()


def test_release_hands_back_the_bytes_a_full_destination_left_behind() -> None:
    """The engine itself: bytes stuck behind a reader that does not read come back to Python."""
    from sockkit.relay import _fastpath

    fds_before = len(os.listdir("/proc/self/fd"))
    engine = _fastpath.Engine()
    src, writer = socket.socketpair()
    dst, reader = socket.socketpair()
    for sock in (src, dst, writer):
        sock.setblocking(False)
    sent = bytearray()
    try:
        handle = engine.add(src.fileno(), dst.fileno())
        block = os.urandom(64 * 1024)
        stalled = 0
        while stalled < 20:  # until nothing more fits anywhere for 0.2 s
            try:
                sent += block[: writer.send(block)]
                stalled = 0
            except BlockingIOError:
                stalled += 1
                time.sleep(0.01)
        moved, pending, state, _ = engine.release(handle)
        assert state == _fastpath.RUNNING
        assert 0 < len(pending) <= _fastpath.CAPACITY + _fastpath.PIPE_CAPACITY
        with pytest.raises(KeyError):
            engine.release(handle)
        reader.setblocking(False)
        delivered = b"".join(iter(lambda: _recv_now(reader), b""))
        left = b"".join(iter(lambda: _recv_now(src), b""))
        assert len(delivered) == moved
        assert delivered + pending + left == bytes(sent)
    finally:
        engine.close()
        del engine
        for sock in (src, writer, dst, reader):
            sock.close()
    assert len(os.listdir("/proc/self/fd")) == fds_before


def _native_threads() -> int:
    tasks = Path("/proc/self/task")
    return sum((task / "comm").read_text().strip() == "sockkit-relay" for task in tasks.iterdir())


def test_native_thread_ends_with_the_relay(echo: Peer) -> None:
    from tests.relay.conftest import start_relay_api

    before = _native_threads()
    api = start_relay_api([{"name": "p", "listen": "127.0.0.1:0", "upstream": echo.address}])
    try:
        with socket.create_connection(("127.0.0.1", api.listen_port("p")), timeout=10) as sock:
            _round_trips(sock, 3)
            assert _native_threads() == before + 1
    finally:
        api.stop.set()
        api.thread.join(10)
    assert _native_threads() == before


def _recv_now(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1 << 20)
    except BlockingIOError:
        return b""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_relay_works_without_the_extension(echo: Peer) -> None:
    """With the compiled part missing the package imports and relays on the Python path."""
    script = f"""
import socket, sys, threading
sys.modules["sockkit.relay._fastpath"] = None  # as if it was never built
from sockkit.relay import _pump_native, run_relays
assert not _pump_native.native_usable()
ready = {{}}
stop = threading.Event()
spec = [{{"name": "p", "listen": "127.0.0.1:0", "upstream": "{echo.address}"}}]
thread = threading.Thread(target=run_relays, args=(spec,), kwargs=dict(
    on_ready=lambda proxies: ready.update(proxies), stop=stop))
thread.start()
while "p" not in ready: pass
port = ready["p"].bound.port
with socket.create_connection(("127.0.0.1", port)) as sock:
    sock.sendall(b"x" * 100000)
    sock.shutdown(socket.SHUT_WR)
    got = b"".join(iter(lambda: sock.recv(65536), b""))
stop.set()
thread.join()
print(len(got))
"""
    out = subprocess.run(
        [*sockkit_argv()[:1], "-c", script], capture_output=True, env=cli_env(), timeout=60
    )
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().strip() == "100000"
