"""The comparison as a PNG (needs matplotlib, the optional ``plot`` extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from sockkit.bench.compare import CompareReport

__all__ = ["plot_available", "write_plot"]


def plot_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def write_plot(report: CompareReport, path: Path) -> None:
    """One bar chart per workload: server CPU µs/op for (a)-(d), PSS KiB/conn for (e)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt

    keys = [w for w in report.workloads if any(w.key in r for r in report.results.values())]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 0.35 * len(report.servers) + 2))
    if len(keys) == 1:
        axes = [axes]
    for ax, w in zip(axes, keys, strict=True):
        _panel(ax, report, w.key)
        ax.set_title(f"({w.key}) {w.label}", fontsize=9)
        ax.set_xlabel("PSS KiB / idle conn" if w.key == "e" else "server CPU µs / op", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.invert_yaxis()
    fig.suptitle("sockkit bench compare (lower is better)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _panel(ax: Any, report: CompareReport, key: str) -> None:
    """One workload's bars.  A run that could not be trusted is drawn hatched and says why.

    An errored run keeps its bar (hatched); one with no usable figure (memory
    that did not grow, too few connections) has only its label.
    """
    names: list[str] = []
    values: list[float] = []
    problems: list[str | None] = []
    for server in report.servers:
        m = report.results[server].get(key)
        if m is None:
            continue
        value = m.pss_per_conn / 1024 if key == "e" and m.pss_per_conn else m.server_cpu_us_per_op
        if key == "e" and m.pss_per_conn is None:
            value = None
        names.append(server.removesuffix("_echo"))
        values.append(value if value is not None and value > 0 else 0.0)
        problems.append(m.problem)
    colors = ["#d62728" if n == "uvloop_protocol" else "#1f77b4" for n in names]
    bars = ax.barh(names, values, color=colors)
    measured = [v for v, p in zip(values, problems, strict=True) if p is None and v > 0]
    # Log scale only for CPU, where a fork-per-connection server dwarfs the rest,
    # and only when every bar is drawn: a log axis hides zero and negative bars.
    if key != "e" and measured and len(measured) == len(values):
        if max(measured) / min(measured) > 50:
            ax.set_xscale("log")
    for bar, problem in zip(bars, problems, strict=True):
        if problem is None:
            continue
        bar.set_hatch("///")
        bar.set_facecolor("none")
        bar.set_edgecolor("#7f7f7f")
        ax.text(
            0,
            bar.get_y() + bar.get_height() / 2,
            f" not measured: {problem}"[:60],
            va="center",
            ha="left",
            fontsize=6,
            color="#7f7f7f",
        )
