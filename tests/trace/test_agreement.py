"""sockkit's ladder against an independent capture: Debian's tcpdump, on the same run.

A scenario is played inside a fresh network namespace (``unshare -n``, as
root) with ``tcpdump -i lo -w`` capturing that namespace's loopback, so the
two captures see exactly the same packets and nothing else.  The live mode
is checked the same way on the machine's lo, tcpdump filtering the port,
while socat plays both ends of a real connection.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import cli_env
from tests.trace.scenario_runs import needs_capture
from tests.trace.tcpdump_text import same_packets, sockkit_segments, tcpdump_segments

pytestmark = [
    needs_capture,
    pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed"),
]

_IN_NAMESPACE = """
set -e
ip link set lo up
tcpdump -i lo -U -w "$1" 2>"$1.err" &
dump=$!
for _ in $(seq 200); do grep -q listening "$1.err" && break; sleep 0.05; done
"$2" -m sockkit trace "$3" --json > "$1.json"
# let tcpdump write out everything sockkit saw (it lags on a busy machine)
want=$(( $(wc -l < "$1.json") - 1 ))
for _ in $(seq 300); do
    [ "$(tcpdump -r "$1" 2>/dev/null | wc -l)" -ge "$want" ] && break
    sleep 0.1
done
sleep 0.2
kill -INT $dump
wait $dump || true
"""


@pytest.mark.parametrize(
    "scenario", ["handshake", "transfer", "close", "half-close", "reset", "refused", "zero-window"]
)
def test_scenario_matches_tcpdump_packet_for_packet(scenario: str, tmp_path: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    pcap = tmp_path / "run.pcap"
    done = subprocess.run(
        ["unshare", "-n", "bash", "-c", _IN_NAMESPACE, "run", str(pcap), sys.executable, scenario],
        capture_output=True,
        env=cli_env(),
        timeout=90,
    )
    assert done.returncode == 0, done.stderr.decode()
    events = [json.loads(line) for line in Path(f"{pcap}.json").read_text().splitlines()]
    summary = events[-1]
    port = int(summary["server"].rpartition(":")[2])
    ours = sockkit_segments(events)
    theirs = tcpdump_segments(str(pcap), port)
    same_packets(ours, theirs)
    assert len(ours) == summary["packets"] and summary["dropped"] == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_live_port_matches_tcpdump_on_a_socat_connection(tmp_path: Path) -> None:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed")
    port = _free_port()
    pcap = tmp_path / "live.pcap"
    dump = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-U", "-w", str(pcap), f"tcp port {port}"],
        stderr=subprocess.PIPE,
    )
    trace = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sockkit",
            "trace",
            "--port",
            str(port),
            "--duration",
            "4",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    server = None
    try:
        assert dump.stderr is not None and trace.stderr is not None
        assert b"listening" in dump.stderr.readline()
        assert b"capturing port" in trace.stderr.readline()
        server = subprocess.Popen(
            ["socat", "-u", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr", "OPEN:/dev/null"]
        )
        time.sleep(0.5)
        subprocess.run(
            ["socat", "-u", "-", f"TCP:127.0.0.1:{port}"],
            input=b"hello from socat\n" * 100,
            check=True,
            timeout=20,
        )
        server.wait(timeout=20)
        out, err = trace.communicate(timeout=30)
    finally:
        for proc in (server, trace):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        time.sleep(0.3)
        dump.send_signal(2)
        dump.wait(timeout=20)
    assert trace.returncode == 0, err.decode()
    events = [json.loads(line) for line in out.decode().splitlines()]
    ours = sockkit_segments(events)
    theirs = tcpdump_segments(str(pcap), port)
    same_packets(ours, theirs)
    assert [s.flags for s in ours[:3]] == ["SYN", "SYN+ACK", "ACK"]
    assert sum(s.length for s in ours) == len(b"hello from socat\n") * 100
