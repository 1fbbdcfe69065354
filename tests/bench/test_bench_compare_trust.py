"""``bench compare`` never prints an impossible figure as a result, nor judges a target on one.

Negative memory growth, too few idle connections to measure memory, and runs
with errors are shown as "not measured (reason)"; in the plot those bars are
hatched and labelled, and the memory panel is never on a log axis.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from sockkit.bench._measure import Measurement, judge
from sockkit.bench.compare import BASELINE, CompareReport, _summarise, workloads_for
from sockkit.bench.report import format_markdown, format_table


def _harness() -> ModuleType:
    """benchmarks/compare_peers.py, where sockkit's own goals are judged."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "compare_peers.py"
    spec = importlib.util.spec_from_file_location("compare_peers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_targets = _harness().targets


def _rr(ops: float, cpu: float, errors: int = 0) -> Measurement:
    return Measurement(
        ops_per_s=ops,
        mb_per_s=ops * 128 / 1e6,
        p50_us=100.0,
        p99_us=300.0,
        server_cpu_us_per_op=cpu,
        client_cpu_pct=99.0,
        errors=errors,
        established=100,
        problem=judge("rr", ops, errors, 100, None),
    )


def _idle(conns: int, pss_bytes: float, errors: int = 0) -> Measurement:
    problem = judge("idle", 0.0, errors, conns, pss_bytes)
    return Measurement(
        ops_per_s=0.0,
        mb_per_s=0.0,
        p50_us=None,
        p99_us=None,
        server_cpu_us_per_op=None,
        client_cpu_pct=10.0,
        errors=errors,
        established=conns,
        rss_per_conn=None if problem else pss_bytes * 1.5,
        pss_per_conn=None if problem else pss_bytes,
        problem=problem,
    )


def _report(results: dict[str, dict[str, Measurement]]) -> CompareReport:
    return CompareReport(
        scale="tiny",
        loadgen="sockkit",
        machine={"cpus": 2, "server_cpu": 1, "load_cpu": 0, "kernel": "x", "python": "3"}
        | {"rounds": 1, "warmup_s": 0.1, "duration_s": 0.3},
        workloads=workloads_for(200),
        servers=list(results),
        skipped={},
        results=results,
        rounds={name: {k: [m] for k, m in rows.items()} for name, rows in results.items()},
        targets=_targets(results),
        started="now",
        seconds=1.0,
    )


def _rows(idle: Measurement, pool_errors: int = 0) -> dict[str, Measurement]:
    return {key: _rr(100_000, 6.0, pool_errors) for key in "abcd"} | {"e": idle}


def test_judge_names_each_reason_a_figure_cannot_be_trusted() -> None:
    assert judge("idle", 0, 0, 200, 300.0) is not None
    assert "too few to measure memory" in (judge("idle", 0, 0, 200, 300.0) or "")
    assert "did not grow" in (judge("idle", 0, 0, 5000, -810.0) or "")
    assert "did not grow" in (judge("idle", 0, 0, 5000, 0.0) or "")
    assert judge("idle", 0, 0, 5000, 410.0) is None
    # a process per connection: 300 connections of 90 KiB each are plenty to see
    assert judge("idle", 0, 0, 300, 90 * 1024.0) is None
    assert "too few" in (judge("idle", 0, 0, 300, 900.0) or "")
    assert judge("rr", 1000.0, 3, 100, None) == "3 errors"
    assert judge("rr", 0.0, 0, 100, None) == "no operation completed"
    assert judge("rr", 1000.0, 0, 100, None) is None


def test_negative_memory_and_too_few_connections_are_not_measured_nor_met() -> None:
    results = {
        "uvloop": _rows(_idle(5000, -0.64 * 1024)),
        BASELINE: _rows(_idle(200, 300.0)),
        "fork": _rows(_idle(5000, 2.4 * 1024)),
    }
    report = _report(results)
    table = format_table(report)
    section = table.split("(e) ")[1].split("\n\n")[0]
    uvloop_row = next(line for line in section.splitlines() if line.strip().startswith("uvloop "))
    figures = uvloop_row.split("not measured")[0].split()
    assert figures == ["uvloop", "5,000", "-", "-", "-", "0"]
    assert "not measured (memory did not grow (PSS -0.64 KiB/conn))" in section
    assert "not measured (200 connections are too few to measure memory" in section
    # the trusted fork row has its figure, but no ratio against an untrusted baseline
    fork_row = next(line for line in section.splitlines() if line.strip().startswith("fork"))
    assert "2.40" in fork_row and "x" not in fork_row.split("2.40")[1]
    pss_target = next(t for t in report.targets if "PSS per idle connection" in t.text)
    assert pss_target.met is None and pss_target.value is None
    assert pss_target.reason is not None and "did not grow" in pss_target.reason
    line = next(line for line in table.splitlines() if "PSS per idle connection" in line)
    assert line.lstrip().startswith("[not measured]") and "-0.64 (limit" not in line
    markdown = format_markdown(report, "sockkit bench compare")
    assert "| not measured |" in markdown and "| yes |" not in markdown.split("PSS per idle")[1]


def test_errored_runs_are_not_measured_and_their_targets_not_judged() -> None:
    results = {
        "uvloop": _rows(_idle(5000, 400.0)),
        BASELINE: _rows(_idle(5000, 420.0)),
        "thread": _rows(_idle(5000, 900.0), pool_errors=552),
        "socketserver_threading_echo": _rows(_idle(5000, 900.0)),
    }
    report = _report(results)
    table = format_table(report)
    section = table.split("(a) ")[1].split("\n\n")[0]
    thread_row = next(line for line in section.splitlines() if line.strip().startswith("thread"))
    assert "not measured (552 errors)" in thread_row
    assert "100,000" not in thread_row and "6.00" not in thread_row
    thread_target = next(t for t in report.targets if t.text.startswith("thread "))
    assert thread_target.met is None
    assert thread_target.reason == "thread (a): 552 errors"
    uvloop_target = next(t for t in report.targets if "raw uvloop Protocol" in t.text)
    assert uvloop_target.met is True  # both sides clean: judged as before


def test_one_untrusted_round_makes_the_median_untrusted() -> None:
    clean, bad = _idle(5000, 400.0), _idle(5000, -100.0)
    summary = _summarise([clean, bad, clean])
    assert summary.problem is not None and "did not grow" in summary.problem


@pytest.mark.skipif(not importlib.util.find_spec("matplotlib"), reason="needs matplotlib")
def test_plot_marks_untrusted_bars_and_keeps_the_memory_panel_linear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.pyplot as plt

    from sockkit.bench import plot as _plot

    results = {
        "uvloop": _rows(_idle(5000, -0.64 * 1024)),
        BASELINE: _rows(_idle(5000, 420.0)),
        "fork": _rows(_idle(300, 900.0)),
        "pool": _rows(_idle(5000, 900.0), pool_errors=552),
    }
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    _plot.write_plot(_report(results), tmp_path / "compare.png")
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    axes = figures[0].axes
    memory = next(ax for ax in axes if ax.get_title().startswith("(e)"))
    assert memory.get_xscale() == "linear"
    for ax in axes:
        labels = [t.get_text() for t in ax.texts]
        hatched = [p for p in ax.patches if p.get_hatch()]
        if ax is memory:
            assert len(hatched) == 2  # uvloop (did not grow), fork (too few connections)
            assert any("did not grow" in text for text in labels)
        else:
            assert len(hatched) == 1 and any("552 errors" in text for text in labels)
