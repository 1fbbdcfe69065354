"""toxiproxy's HTTP API, driven by toxiproxy's own clients and by 'sockkit relay ctl'."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from tests.conftest import cli_env, run_cli, sockkit_argv
from tests.relay.conftest import Peer, RelayAPI

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / ".node" / "node_modules"


def _round_trip(port: int, payload: bytes = b"ping") -> tuple[bytes, float]:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        data = b""
        while len(data) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data, time.monotonic() - started


def test_toxiproxy_python_client(relay_api: RelayAPI, peer: Peer) -> None:
    from toxiproxy import Toxiproxy  # type: ignore[import-untyped]

    server = Toxiproxy()
    server.update_api_consumer("127.0.0.1", relay_api.port)
    assert server.running()
    assert b"version" in server.version()
    proxy = server.create(upstream=peer.address, name="echo", listen="127.0.0.1:0")
    port = int(proxy.listen.rsplit(":", 1)[1])
    assert port != 0  # the real port, not the 0 asked for
    assert _round_trip(port)[0] == b"ping"
    proxy.add_toxic(type="latency", attributes={"latency": 150}, stream="downstream")
    assert set(proxy.toxics()) == {"latency_downstream"}
    data, took = _round_trip(port)
    assert data == b"ping" and took >= 0.15
    proxy.destroy_toxic("latency_downstream")
    assert proxy.toxics() == {}
    assert _round_trip(port)[1] < 0.15
    assert list(server.proxies()) == ["echo"]
    with proxy.down():
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert _round_trip(port)[0] == b"ping"  # enabled again, on the same port
    assert server.reset()
    server.destroy(proxy)
    assert server.proxies() == {}


NODE_SCRIPT = r"""
const { Toxiproxy } = require("toxiproxy-node-client");
(async () => {
  const [api, upstream] = process.argv.slice(2);
  const toxiproxy = new Toxiproxy(api);
  const proxy = await toxiproxy.createProxy({ name: "node", listen: "127.0.0.1:0", upstream });
  const toxic = await proxy.addToxic({ type: "latency", stream: "upstream", toxicity: 1,
                                       attributes: { latency: 120, jitter: 0 } });
  const all = await toxiproxy.getAll();
  const fetched = await proxy.getToxic(toxic.name);
  console.log(JSON.stringify({ listen: proxy.listen, names: Object.keys(all),
                               toxic: fetched.toJson() }));
  await toxic.remove();
  const after = await toxiproxy.get("node");
  console.log(JSON.stringify({ toxics: (await toxiproxy.getApi().get(`${api}/proxies/node/toxics`)).data,
                               enabled: after.enabled }));
  await after.remove();
  console.log(JSON.stringify({ left: Object.keys(await toxiproxy.getAll()) }));
})().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_toxiproxy_node_client(relay_api: RelayAPI, peer: Peer, tmp_path: Path) -> None:
    assert (NODE_MODULES / "toxiproxy-node-client").is_dir(), (
        "install it: npm install --prefix .node toxiproxy-node-client (as .ci/run does)"
    )
    script = tmp_path / "client.js"
    script.write_text(NODE_SCRIPT)
    result = subprocess.run(
        ["node", str(script), relay_api.url, peer.address],
        capture_output=True,
        timeout=60,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
    assert result.returncode == 0, result.stderr.decode()
    first, second, third = (json.loads(line) for line in result.stdout.decode().splitlines())
    assert first["names"] == ["node"]
    assert not first["listen"].endswith(":0")
    assert first["toxic"] == {
        "attributes": {"latency": 120, "jitter": 0},
        "name": "latency_upstream",
        "stream": "upstream",
        "toxicity": 1,
        "type": "latency",
    }
    assert second == {"toxics": [], "enabled": True}
    assert third == {"left": []}


def test_bad_requests_answer_400_and_relaying_goes_on(relay_api: RelayAPI, peer: Peer) -> None:
    status, proxy = relay_api.call(
        "POST", "/proxies", {"name": "p", "listen": "127.0.0.1:0", "upstream": peer.address}
    )
    assert status == 201
    port = int(proxy["listen"].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as live:
        live.sendall(b"before")
        assert live.recv(100) == b"before"
        status, body = relay_api.call("POST", "/proxies/p/toxics", b"{not json")
        assert status == 400 and body["error"].startswith("bad request body")
        status, body = relay_api.call("POST", "/proxies/p/toxics", {"type": "gremlins"})
        assert status == 400 and "invalid toxic type 'gremlins'" in body["error"]
        status, body = relay_api.call(
            "POST", "/proxies/p/toxics", {"type": "latency", "attributes": {"latency": -5}}
        )
        assert status == 400 and "latency.latency" in body["error"]
        assert relay_api.call("GET", "/proxies/nope")[0] == 404
        assert relay_api.call("POST", "/proxies", {"name": "p", "upstream": peer.address})[0] == 409
        live.sendall(b"after")
        assert live.recv(100) == b"after"


def test_populate_metrics_and_live_connections(relay_api: RelayAPI, peer: Peer) -> None:
    status, body = relay_api.call(
        "POST",
        "/populate",
        [
            {"name": "a", "listen": "127.0.0.1:0", "upstream": peer.address},
            {"name": "b", "listen": "127.0.0.1:0", "upstream": peer.address},
        ],
    )
    assert status == 201 and [p["name"] for p in body["proxies"]] == ["a", "b"]
    relay_api.call(
        "POST", "/proxies/a/toxics", {"type": "slicer", "attributes": {"average_size": 1}}
    )
    with socket.create_connection(("127.0.0.1", relay_api.listen_port("a")), timeout=10) as conn:
        conn.sendall(b"hello")
        got = b""
        while len(got) < 5:
            got += conn.recv(100)
        status, conns = relay_api.call("GET", "/proxies/a/connections")
        assert status == 200 and len(conns) == 1
        assert conns[0]["bytes_upstream"] == 5 and conns[0]["toxics"] == ["slicer_downstream"]
        _, metrics = relay_api.call("GET", "/metrics")
        assert 'sockkit_relay_bytes_total{proxy="a",direction="upstream"} 5' in metrics
        assert 'sockkit_relay_connections_open{proxy="a"} 1' in metrics
        assert 'sockkit_relay_toxics{proxy="a"} 1' in metrics
        status, _ = relay_api.call("DELETE", f"/proxies/a/connections/{conns[0]['id']}")
        assert status == 204
        conn.settimeout(5)
        assert conn.recv(100) == b""  # closed by the relay
    assert relay_api.call("POST", "/reset")[0] == 204
    assert relay_api.call("GET", "/proxies/a/toxics")[1] == []


def test_ctl_command_and_config_file(peer: Peer, tmp_path: Path) -> None:
    config = tmp_path / "proxies.json"
    config.write_text(
        json.dumps([{"name": "cfg", "listen": "127.0.0.1:0", "upstream": peer.address}])
    )
    proc = subprocess.Popen(
        sockkit_argv("relay", "--api", "127.0.0.1:0", "--config", str(config)),
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline().decode() for _ in range(2)]
        api = next(line.split("http://")[1].strip() for line in lines if "api on" in line)
        assert any(line.startswith("listening on tcp://127.0.0.1:") for line in lines)
        ctl = ["relay", "ctl", "--api", api]
        added = run_cli([*ctl, "add", "extra", "127.0.0.1:0", peer.address])
        assert added.returncode == 0, added.stderr
        toxic = run_cli(
            [*ctl, "toxic", "add", "cfg", "latency", "latency=100", "--stream", "upstream"]
        )
        assert toxic.returncode == 0, toxic.stderr
        assert toxic.stdout.decode().startswith("cfg: latency_upstream (latency upstream")
        listing = run_cli([*ctl, "list"]).stdout.decode()
        assert (
            "cfg    127.0.0.1:" in listing and "latency_upstream" in listing and "extra" in listing
        )
        bad = run_cli([*ctl, "toxic", "add", "cfg", "gremlins"])
        assert bad.returncode == 1
        assert bad.stderr.decode().startswith("sockkit: POST /proxies/cfg/toxics: 400 bad request")
        assert run_cli([*ctl, "toxic", "rm", "cfg", "latency_upstream"]).returncode == 0
        assert "latency" not in run_cli([*ctl, "list"]).stdout.decode()
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        assert proc.stderr is not None
        proc.stderr.close()
    gone = run_cli(["relay", "ctl", "--api", api, "list"])
    assert gone.returncode == 1 and "cannot reach the relay API" in gone.stderr.decode()


def test_byte_counts_span_fast_path_and_toxic_path(relay_api: RelayAPI, peer: Peer) -> None:
    """Bytes moved on the no-toxic path count live, and still count once a toxic takes over."""
    status, _ = relay_api.call(
        "POST", "/proxies", {"name": "c", "listen": "127.0.0.1:0", "upstream": peer.address}
    )
    assert status == 201

    def upstream_bytes() -> tuple[int, str]:
        conns = relay_api.call("GET", "/proxies/c/connections")[1]
        metrics = relay_api.call("GET", "/metrics")[1]
        return conns[0]["bytes_upstream"], metrics

    def echo(conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        got = b""
        while len(got) < len(data):
            got += conn.recv(65536)
        assert got == data

    with socket.create_connection(("127.0.0.1", relay_api.listen_port("c")), timeout=10) as conn:
        echo(conn, b"x" * 7)
        echo(conn, b"y" * 100_000)  # a full read: the fast path turns to splice
        count, metrics = upstream_bytes()
        assert count == 100_007
        assert 'sockkit_relay_bytes_total{proxy="c",direction="upstream"} 100007' in metrics
        status, _ = relay_api.call(
            "POST",
            "/proxies/c/toxics",
            {"type": "latency", "stream": "upstream", "attributes": {"latency": 1}},
        )
        assert status == 200
        echo(conn, b"z" * 11)  # now through the toxic path: the fast path's count was kept
        count, metrics = upstream_bytes()
        assert count == 100_018
        assert 'sockkit_relay_bytes_total{proxy="c",direction="upstream"} 100018' in metrics
