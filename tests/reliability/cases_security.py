"""Security cases: safe defaults, access rules before any byte, socket files, peer uids, TLS."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .probes import wait_closed
from .scale import Scale
from .served import Served, sockkit_env
from .verdict import Verdict

__all__ = [
    "allow_uid",
    "denied_source",
    "loopback_default",
    "regular_file_kept",
    "socket_file_mode",
    "tls_client_checks",
    "tls_server_checks",
]


def loopback_default(engine: str, scale: Scale) -> Verdict:
    """No address means loopback only, for TCP and UDP alike."""
    v = Verdict()
    with Served(["daytime", "0", "udp://0", "--engine", engine], endpoints=2) as server:
        for endpoint in server.endpoints:
            host = endpoint.split("://", 1)[1].rpartition(":")[0]
            v.check(host == "127.0.0.1", f"{endpoint.split(':', 1)[0]} bound to {host}")
    return v


def _first_bytes(server: Served, source: str) -> tuple[bool, int]:
    sock = server.connect(source=source)
    closed, got = wait_closed(sock, 2.0)
    sock.close()
    return closed, got


def denied_source(engine: str, scale: Scale) -> Verdict:
    """A denied source is closed before any byte (daytime greets at once, so any byte would show)."""
    v = Verdict()
    with Served(["daytime", "0", "--engine", engine, "--deny", "127.0.0.2/32"]) as server:
        closed, got = _first_bytes(server, "127.0.0.2")
        v.check(closed and got == 0, f"denied 127.0.0.2: {got} bytes, then closed")
        closed, got = _first_bytes(server, "127.0.0.3")
        v.check(got > 0, f"127.0.0.3: {got} bytes")
    return v


def socket_file_mode(engine: str, scale: Scale) -> Verdict:
    """Under ``umask 000`` a watcher over many start-ups never sees the socket file wider than 0600."""
    v = Verdict()
    widest = 0
    seen = 0
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "s.sock"
        for _ in range(scale.umask_startups):
            finished = threading.Event()

            def watch(finished: threading.Event = finished) -> None:
                nonlocal widest, seen
                while not finished.is_set():
                    try:
                        mode = stat.S_IMODE(os.lstat(path).st_mode)
                    except FileNotFoundError:
                        continue
                    seen += 1
                    widest |= mode

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            with Served(["echo", f"unix:{path}", "--engine", engine], umask=0) as server:
                server.stop()
            finished.set()
            watcher.join()
    v.check(
        seen > 0 and widest & ~0o600 == 0,
        f"{scale.umask_startups} start-ups, {seen} looks, widest {widest:04o}",
    )
    return v


def regular_file_kept(engine: str, scale: Scale) -> Verdict:
    """A regular file where the socket should go is never deleted: a one-line error, exit 1."""
    v = Verdict()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "precious"
        path.write_bytes(b"keep me\n")
        done = subprocess.run(
            [sys.executable, "-m", "sockkit", "serve", "echo", f"unix:{path}", "--engine", engine],
            capture_output=True,
            env=sockkit_env(),
            timeout=30,
        )
        lines = done.stderr.decode().strip().splitlines()
        v.check(path.read_bytes() == b"keep me\n", "file kept" if path.exists() else "file gone")
        v.check(
            done.returncode == 1 and len(lines) == 1 and lines[0].startswith("sockkit: "),
            f"exit {done.returncode}: {lines[-1] if lines else ''}",
        )
    return v


_CONNECT_AS = """
import os, socket, sys
os.setgid(65534); os.setuid(65534)
s = socket.socket(socket.AF_UNIX); s.settimeout(3); s.connect(sys.argv[1])
try:
    s.sendall(b"x")
    data = s.recv(1)
except OSError:  # refused: closed before or while we sent
    data = b""
print(len(data))
"""


def allow_uid(engine: str, scale: Scale) -> Verdict:
    """``--allow-uid``: SO_PEERCRED decides; other users are closed before any byte."""
    v = Verdict()
    me = os.getuid()
    with tempfile.TemporaryDirectory() as scratch:
        os.chmod(scratch, 0o755)
        path = Path(scratch) / "u.sock"
        args = ["echo", f"unix:{path}", "--engine", engine, "--allow-uid", str(me), "--mode", "666"]
        with Served(args):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(3)
                sock.connect(str(path))
                sock.sendall(b"x")
                v.check(sock.recv(1) == b"x", f"uid {me} served")
            if me == 0:
                other = subprocess.run(
                    [sys.executable, "-c", _CONNECT_AS, str(path)],
                    capture_output=True,
                    timeout=10,
                )
                answer = other.stdout.decode().strip()
                v.check(
                    answer == "0", f"uid 65534 got {answer or other.stderr.decode()[-80:]} bytes"
                )
        args = ["echo", f"unix:{path}", "--engine", engine, "--allow-uid", "65534"]
        with Served(args) as server:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(3)
                sock.connect(str(path))
                closed, got = wait_closed(sock, 2.0)
            v.check(closed and got == 0, f"uid {me} refused by --allow-uid 65534 ({got} bytes)")
            v.check(bool(server.wait_for_lines("refused", 1, 2.0)), "refusal logged")
    return v


def _certificates(scratch: Path) -> dict[str, Path]:
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("client@sockkit.test")
    files = {
        "ca": scratch / "ca.pem",
        "server": scratch / "server.pem",
        "client": scratch / "client.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.private_key_and_cert_chain_pem.write_to_path(str(files["server"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    return files


def _connect(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "sockkit", "connect", *args, "--timeout", "5"],
        input=b"",
        capture_output=True,
        env=sockkit_env(),
        timeout=30,
    )


def tls_client_checks(engine: str, scale: Scale) -> Verdict:
    """The client refuses an untrusted or wrongly named certificate unless ``--insecure``."""
    v = Verdict()
    with tempfile.TemporaryDirectory() as scratch:
        files = _certificates(Path(scratch))
        args = ["daytime", "tls://127.0.0.1:0", "--tls-cert", str(files["server"])]
        with Served([*args, "--engine", engine]) as server:
            port = server.address[1]
            untrusted = _connect(f"tls://127.0.0.1:{port}")
            v.check(untrusted.returncode == 1, f"unknown CA: exit {untrusted.returncode}")
            trusted = _connect(f"tls://127.0.0.1:{port}", "--tls-ca", str(files["ca"]))
            v.check(trusted.returncode == 0, f"trusted CA: exit {trusted.returncode}")
            wrong = _connect(
                f"tls://127.0.0.1:{port}",
                "--tls-ca",
                str(files["ca"]),
                "--tls-servername",
                "evil.example",
            )
            v.check(wrong.returncode == 1, f"wrong hostname: exit {wrong.returncode}")
            insecure = _connect(f"tls://127.0.0.1:{port}", "--insecure")
            v.check(insecure.returncode == 0, f"--insecure: exit {insecure.returncode}")
    return v


def _handshake(port: int, context: ssl.SSLContext) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                version = tls.version()
                # Served means the greeting arrived; a close with no bytes is a refusal.
                if not tls.recv(64):
                    return "refused (closed without a byte)"
                return f"accepted {version}"
    except (ssl.SSLError, OSError) as exc:
        return f"refused ({type(exc).__name__})"


def tls_server_checks(engine: str, scale: Scale) -> Verdict:
    """The server refuses TLS 1.1 and certificate-less clients, and ends a silent handshake on time."""
    v = Verdict()
    with tempfile.TemporaryDirectory() as scratch:
        files = _certificates(Path(scratch))
        args = [
            "daytime",
            "tls://127.0.0.1:0",
            "--engine",
            engine,
            "--tls-cert",
            str(files["server"]),
        ]
        with Served(args) as server:
            port = server.address[1]
            old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            old.load_verify_locations(str(files["ca"]))
            old.set_ciphers("DEFAULT:@SECLEVEL=0")
            old.minimum_version = ssl.TLSVersion.TLSv1_1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
            modern = ssl.create_default_context(cafile=str(files["ca"]))
            answer = _handshake(port, old)
            v.check(answer.startswith("refused"), f"TLS 1.1 client {answer}")
            answer = _handshake(port, modern)
            v.check(answer.startswith("accepted"), f"TLS 1.2+ client {answer}")
            silent = socket.create_connection(("127.0.0.1", port), timeout=5)
            start = time.monotonic()
            closed, _ = wait_closed(silent, 15.0)
            waited = time.monotonic() - start
            silent.close()
            v.check(
                closed and abs(waited - 10.0) <= 1.0,
                f"silent client closed after {waited:.1f} s (10)",
            )
        with Served([*args, "--tls-client-ca", str(files["ca"])]) as server:
            port = server.address[1]
            anonymous = ssl.create_default_context(cafile=str(files["ca"]))
            answer = _handshake(port, anonymous)
            v.check(answer.startswith("refused"), f"client without certificate {answer}")
            known = ssl.create_default_context(cafile=str(files["ca"]))
            known.load_cert_chain(str(files["client"]))
            answer = _handshake(port, known)
            v.check(answer.startswith("accepted"), f"client with certificate {answer}")
    return v
