"""'sockkit trace' as a user runs it: scenarios, --list, --json, --read, colour, errors, start-up."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import cli_env, run_cli, sockkit_argv
from tests.trace.scenario_runs import needs_capture

import sockkit.trace
from sockkit.cli import main
from sockkit.trace._scenarios import SCENARIOS


def test_list_explains_every_scenario_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(SCENARIOS)
    assert len(SCENARIOS) == 10 and all(len(line.split()) > 4 for line in lines)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["nosuch"],
        ["handshake", "--port", "80"],
        ["--count", "3"],
        ["--port", "0"],
        ["handshake", "--read", "x.pcap"],
        ["--read", "x.pcap", "--count", "3"],
    ],
)
def test_usage_errors_are_one_line_and_status_2(args: list[str]) -> None:
    done = run_cli(["trace", *args])
    assert done.returncode == 2
    assert done.stderr.decode().startswith("sockkit: ") and done.stderr.count(b"\n") == 1


@needs_capture
def test_scenario_ladder_on_a_pipe_has_no_colour_and_shows_both_ends() -> None:
    done = run_cli(["trace", "handshake"])
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "\x1b[" not in out
    assert "client 127.0.0.1:" in out and "server 127.0.0.1:" in out
    for word in ("SYN seq=0", "SYN+ACK seq=0 ack=1", "ACK seq=1 ack=1", "ISN ", "mss ", "wscale"):
        assert word in out
    assert "SYN-RECEIVED" in out and "ESTABLISHED*" in out


def _on_a_terminal(args: list[str], **env: str) -> str:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        sockkit_argv(*args), stdout=follower, stderr=subprocess.PIPE, env=cli_env(**env)
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(leader)
    return b"".join(chunks).decode()


@needs_capture
def test_colour_on_a_terminal_and_none_with_no_color() -> None:
    assert "\x1b[" in _on_a_terminal(["trace", "refused"])
    assert "\x1b[" not in _on_a_terminal(["trace", "refused"], NO_COLOR="1")


@needs_capture
def test_json_is_one_event_per_line_then_a_summary() -> None:
    done = run_cli(["trace", "close", "--json"])
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.decode().splitlines()]
    packets, summary = events[:-1], events[-1]
    assert [e["event"] for e in packets] == ["packet"] * 7, done.stdout.decode()
    assert summary["event"] == "end"
    assert summary["packets"] == 7 and summary["dropped"] == 0
    assert packets[0]["flags"] == "SYN" and packets[0]["isn"] == packets[0]["seq_abs"]
    assert packets[0]["options"]["mss"] and packets[0]["options"]["sack_permitted"]
    last = packets[-1]["states"]
    assert last["client"] == {"state": "TIME-WAIT", "kernel": "TIME-WAIT", "agrees": True}


@needs_capture
def test_svg_and_pcap_files_are_written_and_read_back(tmp_path: Path) -> None:
    svg, pcap = tmp_path / "t.svg", tmp_path / "t.pcap"
    done = run_cli(["trace", "transfer", "--svg", str(svg), "--pcap", str(pcap)])
    assert done.returncode == 0, done.stderr
    assert svg.read_text().startswith("<svg")
    again = run_cli(["trace", "--read", str(pcap)])
    assert again.returncode == 0
    assert again.stdout.decode().count("\n") >= 7 and b'"GET /motd\\r\\n"' in again.stdout


@needs_capture
def test_read_a_capture_made_by_tcpdump(tmp_path: Path) -> None:
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    pcap = tmp_path / "dump.pcap"
    script = (
        f"ip link set lo up; tcpdump -i lo -U -w {pcap} 2>{pcap}.err & "
        f"for _ in $(seq 200); do grep -q listening {pcap}.err && break; sleep 0.05; done; "
        f"{sys.executable} -m sockkit trace refused >/dev/null; sleep 1; kill -INT $!; wait"
    )
    subprocess.run(["unshare", "-n", "sh", "-c", script], env=cli_env(), timeout=60, check=True)
    done = run_cli(["trace", "--read", str(pcap), "--json"])
    events = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [e["flags"] for e in events[:-1]] == ["SYN", "RST+ACK"]
    assert events[1]["states"]["client"]["state"] == "CLOSED"


def test_unreadable_pcap_is_one_line_status_1(tmp_path: Path) -> None:
    done = run_cli(["trace", "--read", str(tmp_path / "missing.pcap")])
    assert done.returncode == 1 and done.stderr.decode().startswith("sockkit: cannot read")


def test_help_is_quick_and_imports_no_capture_code() -> None:
    started = time.perf_counter()
    done = run_cli(["trace", "--help"])
    elapsed = time.perf_counter() - started
    assert done.returncode == 0 and b"--svg" in done.stdout
    assert elapsed < 3.0  # ~0.1 s idle; the margin is for a machine shared with other runs
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from sockkit.cli import main; main(['trace', '--help']);"
         "print(sorted(m for m in sys.modules if m.startswith('sockkit.trace')))"],
        capture_output=True, text=True, env=cli_env(),
    )  # fmt: skip
    assert probe.stdout.strip().splitlines()[-1] == "[]"


def test_public_names_match_their_private_modules() -> None:
    assert set(sockkit.trace.__all__) == set(sockkit.trace._EXPORTS)
    for name, module in sockkit.trace._EXPORTS.items():
        assert module.rsplit(".", 1)[1].startswith("_")
        assert getattr(sockkit.trace, name) is getattr(__import__(module, fromlist=[name]), name)


@needs_capture
def test_live_port_runs_until_ctrl_c_and_then_sums_up() -> None:
    import signal
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        proc = subprocess.Popen(
            sockkit_argv("trace", "--port", str(port), "--json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(),
        )
        try:
            assert proc.stderr is not None and b"capturing port" in proc.stderr.readline()
            with socket.create_connection(("127.0.0.1", port)) as client:
                conn, _ = server.accept()
                client.sendall(b"ping")
                assert conn.recv(4) == b"ping"
                conn.close()
            time.sleep(1.0)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.decode().splitlines()]
    assert events[-1]["event"] == "end" and events[-1]["source"] == "lo"
    flags = [e["flags"] for e in events[:-1]]
    assert flags[:3] == ["SYN", "SYN+ACK", "ACK"] and "FIN+ACK" in flags
    assert events[0]["states"]["server"]["state"] == "SYN-RECEIVED"


@needs_capture
def test_read_with_port_picks_that_connection_among_several(tmp_path: Path) -> None:
    from tests.trace.scenario_runs import played

    from sockkit.trace import write_pcap

    first, second = played("handshake"), played("refused")
    pcap = tmp_path / "two.pcap"
    write_pcap(pcap, [e.packet for e in (*first.events, *second.events)])
    whole = json.loads(run_cli(["trace", "--read", str(pcap), "--json"]).stdout.splitlines()[-1])
    assert whole["packets"] == 3 and whole["left_out"] == 2
    port = second.ends[1][1]
    done = run_cli(["trace", "--read", str(pcap), "--port", str(port), "--json"])
    events = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [e["flags"] for e in events[:-1]] == ["SYN", "RST+ACK"] and events[-1]["left_out"] == 0


@needs_capture
def test_live_port_gives_each_connection_after_the_first_its_own_ladder() -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        proc = subprocess.Popen(
            sockkit_argv("trace", "--port", str(port), "--duration", "6"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(),
        )
        try:
            assert proc.stderr is not None and b"capturing port" in proc.stderr.readline()
            clients = []
            for _ in range(2):
                with socket.create_connection(("127.0.0.1", port)) as client:
                    clients.append(client.getsockname()[1])
                    conn, _ = server.accept()
                    client.close()
                    assert conn.recv(1) == b""
                    conn.close()
                time.sleep(0.5)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    heads = [line for line in out.decode().splitlines() if "client 127.0.0.1:" in line]
    assert [int(h.split("client 127.0.0.1:")[1].split()[0]) for h in heads] == clients
    assert out.decode().count("TIME-WAIT") >= 2
