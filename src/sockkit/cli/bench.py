"""``sockkit bench``: load-test an echo server, verifying every byte; ``bench compare``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from sockkit._endpoint import parse_endpoint
from sockkit._errors import UsageError
from sockkit.bench import MODES, BenchResult, Interval, run_bench

__all__ = ["DESCRIPTION", "EXAMPLES", "add_arguments", "run"]

DESCRIPTION = """\
Load-test an echo server on loopback or a Unix socket and verify every echoed
byte.  Reports messages/s, MB/s, latency percentiles, errors and the load
generator's own CPU use.  Exit status 1 when any request failed verification or
a connection failed.

'sockkit bench compare' starts every available sockkit engine and the baseline
servers it ships (raw asyncio and uvloop Protocols, minimal selectors reactors)
in turn and measures them side by side: throughput, latency, server CPU per
operation and memory per idle connection."""

EXAMPLES = """\
examples:
  sockkit bench 7007                              rr: 50 conns, 64 B, depth 1, 5 s
  sockkit bench 7007 --conns 100 --depth 16       pipelined requests
  sockkit bench 7007 --mode connect --src-ips 8   connections per second
  sockkit bench 7007 --mode idle --conns 10000    hold 10k verified connections
  sockkit bench unix:/tmp/echo.sock --mode stream --size 65536
  sockkit bench udp://127.0.0.1:7007 --json       datagrams; losses counted
  sockkit bench 7007 --duration 10 --interval 1   one line per second, as iperf3 -i 1
  sockkit bench compare --scale tiny --out /tmp/cmp
"""

_COMPARE_ONLY = (
    "rounds", "scale", "loadgen", "out", "idle_conns", "engines", "baselines", "markdown",
)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("endpoint", metavar="ENDPOINT|compare", help="server to load, or 'compare'")
    parser.add_argument("--mode", choices=MODES, default="rr", help="workload (default rr)")
    parser.add_argument("--conns", type=int, default=None, help="connections (default 50)")
    parser.add_argument("--depth", type=int, default=1, help="requests in flight per connection")
    parser.add_argument(
        "--size", type=int, default=None, help="request bytes (default 64; stream 65536)"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds (default 5)")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="unmeasured seconds first (default 1)"
    )
    parser.add_argument("--processes", type=int, default=1, help="generator processes (default 1)")
    parser.add_argument(
        "--src-ips", type=int, default=1, help="spread connections over 127.0.0.1..N (IPv4)"
    )
    parser.add_argument(
        "--connect-timeout", type=float, default=10.0, help="seconds to connect all"
    )
    parser.add_argument("--pending", type=int, default=256, help="handshakes in flight at once")
    parser.add_argument(
        "--interval",
        type=float,
        default=0.0,
        metavar="S",
        help="one line per S seconds of the measured phase (throughput, p99), as iperf3 -i",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object (BenchResult)")
    group = parser.add_argument_group("compare options")
    group.add_argument("--rounds", type=int, default=None, help="rounds to alternate servers over")
    group.add_argument("--scale", choices=("tiny", "full"), default=None, help="run length")
    group.add_argument("--loadgen", default=None, help="'rrload', a path to rrload(.c), or builtin")
    group.add_argument("--out", default=None, help="directory for compare.json / compare.png")
    group.add_argument("--idle-conns", type=int, default=None, help="idle connections (workload e)")
    group.add_argument("--engines", default=None, help="comma-separated engines (default: all)")
    group.add_argument(
        "--baselines",
        "--peers",
        dest="baselines",
        default=None,
        help="comma-separated baselines (uvloop_protocol, asyncio_protocol, selectors,"
        " selectors_poll, selectors_select), or 'none'",
    )
    group.add_argument("--markdown", default=None, help="also write the table as Markdown here")


def run(args: argparse.Namespace) -> int:
    if args.endpoint == "compare":
        return _compare(args)
    used = [name for name in _COMPARE_ONLY if getattr(args, name) is not None]
    if used:
        flag = "--" + used[0].replace("_", "-")
        raise UsageError(f"{flag} belongs to 'sockkit bench compare'")
    endpoint = parse_endpoint(args.endpoint)
    size = args.size if args.size is not None else (65536 if args.mode == "stream" else 64)
    conns = args.conns if args.conns is not None else (4 if args.mode == "stream" else 50)
    progress = (
        _Progress(args.warmup, args.duration) if sys.stderr.isatty() and not args.json else None
    )
    interval_line = None if args.json else _IntervalLines(progress, args.mode)
    result = run_bench(
        endpoint,
        mode=args.mode,
        conns=conns,
        depth=args.depth,
        size=size,
        duration=args.duration,
        warmup=args.warmup,
        processes=args.processes,
        src_ips=args.src_ips,
        connect_timeout=args.connect_timeout,
        pending=args.pending,
        on_progress=progress,
        # a person gets one clear line when nothing listens; --json gets the result
        require_listener=not args.json,
        interval=args.interval,
        on_interval=interval_line,
    )
    if progress is not None:
        progress.clear()
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        sys.stdout.write(format_result(result, color=_color(sys.stdout)))
    for warning in result.warnings:
        sys.stderr.write(f"sockkit: warning: {warning}\n")
    if result.interrupted:
        return 130  # as any command stopped by Ctrl-C, after the partial report (as iperf3)
    return 0 if result.ok else 1


def _color(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR")  # empty: colour stays


class _Progress:
    """A one-line progress display on stderr (terminals only): the warm-up, then the measure."""

    def __init__(self, warmup: float, duration: float) -> None:
        self.total = {"warmup": warmup, "measure": duration}

    def __call__(self, phase: str, elapsed: float, requests: int, errors: int) -> None:
        total = self.total.get(phase, 0.0)
        line = f"  {phase} {min(elapsed, total):4.1f}s/{total:g}s"
        if phase == "measure":
            rate = requests / elapsed if elapsed > 0 else 0.0
            line += f"  {rate:12,.0f} req/s  errors {errors}"
        sys.stderr.write("\r\x1b[K" + line)
        sys.stderr.flush()

    def clear(self) -> None:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()


class _IntervalLines:
    """``--interval`` lines on stdout as they come, as iperf3 prints them (header first)."""

    def __init__(self, progress: _Progress | None, mode: str) -> None:
        self.progress = progress
        self.unit = "conn/s" if mode == "connect" else "msg/s"
        self.header_done = False

    def __call__(self, part: Interval) -> None:
        if self.progress is not None:
            self.progress.clear()
        if not self.header_done:
            sys.stdout.write(
                f"  {'interval':>15}  {self.unit:>12}  {'MB/s':>9}  {'p99':>10}  errors\n"
            )
            self.header_done = True
        span = f"{part.start_s:.2f}-{part.end_s:.2f} s"
        sys.stdout.write(
            f"  {span:>15}  {part.msgs_per_s:12,.0f}  {part.mb_per_s:9,.2f}"
            f"  {_fmt_us(part.p99_us):>10}  {part.errors:,}\n"
        )
        sys.stdout.flush()


def _fmt_us(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f} ms" if value >= 10_000 else f"{value:.1f} µs"


def format_result(r: BenchResult, color: bool = False) -> str:
    """The human-readable report of one run."""
    red, reset = ("\x1b[31m", "\x1b[0m") if color else ("", "")
    plural = "es" if r.processes > 1 else ""
    lines = [
        f"{r.target}  {r.mode}  {r.conns} conns x depth {r.depth} x {r.size} B"
        f"  {r.duration_s:g} s measured, {r.processes} process{plural}"
    ]
    if r.interrupted:
        lines.append(
            f"  interrupted: partial results of the {r.duration_s:g} s measured"
            if r.duration_s > 0
            else "  interrupted before the measured phase: nothing was measured"
        )
    if r.interrupted and r.duration_s <= 0:
        pass  # nothing measured: no figures to show
    elif r.mode == "idle":
        lines.append(
            f"  connections  {r.established:,} open and verified in {r.connect_s:.2f} s,"
            f" {r.requests:,} still open after the hold"
        )
    else:
        unit = "conn/s" if r.mode == "connect" else "msg/s"
        lines.append(f"  throughput   {r.msgs_per_s:,.0f} {unit}   {r.mb_per_s:,.2f} MB/s")
        lines.append(
            f"  latency      p50 {_fmt_us(r.p50_us)}  p90 {_fmt_us(r.p90_us)}"
            f"  p99 {_fmt_us(r.p99_us)}  p99.9 {_fmt_us(r.p999_us)}  max {_fmt_us(r.max_us)}"
        )
    errors = f"  errors       {r.errors:,}  connection failures {r.conn_failures:,}"
    if r.lost:
        errors += f"  lost datagrams {r.lost:,}"
    if not r.ok:
        errors = f"{red}{errors}  (first: {r.first_error}){reset}"
    lines.append(errors)
    lines.append(f"  client CPU   {r.client_cpu_pct:.0f}% of a core")
    return "\n".join(lines) + "\n"


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [] if text == "none" else [n.strip() for n in text.split(",") if n.strip()]


def _compare_command(args: argparse.Namespace) -> str:
    parts = ["python -m sockkit bench compare", f"--scale {args.scale or 'full'}"]
    for name in ("rounds", "idle_conns", "engines", "baselines", "loadgen", "out", "markdown"):
        value = getattr(args, name)
        if value is not None:
            parts.append(f"--{name.replace('_', '-')} {value}")
    return " ".join(parts)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _compare(args: argparse.Namespace) -> int:
    from sockkit.bench.compare import CompareConfig, run_compare
    from sockkit.bench.report import format_table, write_files

    config = CompareConfig(
        scale=args.scale or "full",
        rounds=args.rounds,
        idle_conns=args.idle_conns,
        engines=_names(args.engines),
        baselines=_names(args.baselines),
        loadgen=args.loadgen,
    )

    def log(line: str) -> None:
        if not args.json:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    # SIGTERM unwinds like Ctrl-C, so every started server is stopped on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    report = run_compare(config, log)
    markdown = Path(args.markdown) if args.markdown else None
    written, plot_skipped = write_files(
        report, Path(args.out or "."), markdown, _compare_command(args)
    )
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        sys.stdout.write(format_table(report))
        for path in written:
            print(f"wrote {path}")
    if plot_skipped:
        sys.stderr.write(f"sockkit: plot skipped: {plot_skipped}\n")
    if report.interrupted:
        return 130
    errors = sum(m.errors for per in report.results.values() for m in per.values())
    return 0 if errors == 0 else 1
