"""The trace's outputs: SVG that parses, pcap that tcpdump reads, and --read of tcpdump's files."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from tests.trace.scenario_runs import needs_capture, played

from sockkit.trace import read_pcap, render_svg, write_pcap
from sockkit.trace._events import build_trace

SVG = "{http://www.w3.org/2000/svg}"


@needs_capture
@pytest.mark.parametrize("scenario", ["handshake", "close", "zero-window", "udp"])
def test_svg_parses_and_has_one_arrow_per_packet(scenario: str) -> None:
    trace = played(scenario)
    root = ET.fromstring(render_svg(trace))
    assert root.tag == f"{SVG}svg"
    arrows = [e for e in root.iter(f"{SVG}line") if e.get("class") == "packet"]
    assert len(arrows) == len(trace.events) > 0
    for arrow, event in zip(arrows, trace.events, strict=True):
        x1, x2 = float(arrow.get("x1", 0)), float(arrow.get("x2", 0))
        assert (x1 < x2) == event.rightward  # points from the sender to the receiver
        assert float(arrow.get("y2", 0)) > float(arrow.get("y1", 0))  # slanted down: time runs
    texts = "".join(t.text or "" for t in root.iter(f"{SVG}text"))
    if trace.initial is not None:
        assert "ESTABLISHED" in texts


@needs_capture
def test_pcap_is_read_back_by_tcpdump_and_by_sockkit(tmp_path: Path) -> None:
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    trace = played("close")
    path = tmp_path / "close.pcap"
    assert write_pcap(path, [e.packet for e in trace.events]) == len(trace.events)
    out = subprocess.run(
        ["tcpdump", "-nn", "-r", str(path)], capture_output=True, text=True, check=True
    ).stdout
    lines = out.splitlines()
    assert len(lines) == len(trace.events)
    assert "Flags [S]" in lines[0] and "Flags [F.]" in lines[3]
    again = build_trace(read_pcap(path))
    assert [(e.packet.flags, e.seq, e.ack, e.packet.length) for e in again.events] == [
        (e.packet.flags, e.seq, e.ack, e.packet.length) for e in trace.events
    ]
    assert [s.state for s in again.events[-1].states or ()] == [
        s.state for s in trace.events[-1].states or ()
    ]


def test_pcapng_and_junk_are_refused_with_one_line(tmp_path: Path) -> None:
    from sockkit.trace._pcap import PcapError

    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all, just text")
    with pytest.raises(PcapError, match="not a pcap file"):
        read_pcap(junk)
    ng = tmp_path / "ng.pcap"
    ng.write_bytes(bytes.fromhex("0a0d0d0a") + bytes(40))
    with pytest.raises(PcapError, match="pcapng"):
        read_pcap(ng)
