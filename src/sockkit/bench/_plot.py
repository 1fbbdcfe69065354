"""The comparison as a PNG (needs matplotlib, the optional ``plot`` extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
        names, values = [], []
        for server in report.servers:
            m = report.results[server].get(w.key)
            if m is None:
                continue
            value = (
                m.pss_per_conn / 1024 if w.key == "e" and m.pss_per_conn else m.server_cpu_us_per_op
            )
            names.append(server.removesuffix("_echo"))
            values.append(value or 0.0)
        ax.barh(
            names, values, color=["#d62728" if n == "uvloop_protocol" else "#1f77b4" for n in names]
        )
        positive = [v for v in values if v > 0]
        if positive and max(positive) / min(positive) > 50:
            ax.set_xscale("log")  # a fork-per-connection server dwarfs the rest otherwise
        ax.set_title(f"({w.key}) {w.label}", fontsize=9)
        ax.set_xlabel("PSS KiB / idle conn" if w.key == "e" else "server CPU µs / op", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.invert_yaxis()
    fig.suptitle("sockkit bench compare (lower is better)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
