"""``bench compare``: sockkit's engines against baseline servers, side by side.

For each round, each server (in an order rotated per round, so no server always
runs first or last) is started fresh, pinned to one CPU while the load runs on
another, primed with a short unmeasured run (a fresh Python server is often
several times slower on its first run), then given the workloads (a)-(e).  The
report holds, per server and workload, the median over rounds of throughput,
latency, server CPU per operation and memory per idle connection, and each
server's ratio to the raw uvloop ``Protocol`` baseline.

The servers are sockkit's engines and :mod:`~sockkit.bench.baselines`, plus any
a caller brings (``extra``); goals to judge the figures by are the caller's too
(``targets``), built with :func:`worst_cpu_ratio` and :func:`ratio_of`, which
never judge a figure that could not be trusted.  sockkit's own goals and peer
servers live with its benchmarks, not here.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sockkit._errors import SockkitError, UsageError
from sockkit.bench._measure import Measurement, Workload, measure
from sockkit.bench._runner import raise_fd_limit
from sockkit.bench._servers import RunningServer, ServerSpec, builtin_servers
from sockkit.bench.targets import Results, Target, judged, ratio_of, worst_cpu_ratio

__all__ = [
    "BASELINE",
    "SCALES",
    "CompareConfig",
    "CompareReport",
    "Results",
    "Scale",
    "ServerSpec",
    "Target",
    "judged",
    "ratio_of",
    "run_compare",
    "workloads_for",
    "worst_cpu_ratio",
]

#: The server every ratio is taken against.
BASELINE = "uvloop_protocol_echo"
#: Servers with a process per connection hold at most this many idle connections.
_PER_PROCESS_IDLE_CAP = 300


@dataclass(frozen=True, slots=True)
class Scale:
    """Run lengths: ``tiny`` for CI (seconds in all), ``full`` for RESULTS.md."""

    warmup: float
    duration: float
    prime: float
    rounds: int
    idle_conns: int
    idle_hold: float
    connect_timeout: float


SCALES: dict[str, Scale] = {
    "tiny": Scale(
        warmup=0.1,
        duration=0.3,
        prime=0.2,
        rounds=1,
        idle_conns=200,
        idle_hold=0.2,
        connect_timeout=5.0,
    ),
    "full": Scale(
        warmup=0.5,
        duration=1.5,
        prime=1.0,
        rounds=3,
        idle_conns=10_000,
        idle_hold=1.0,
        connect_timeout=10.0,
    ),
}


def workloads_for(idle_conns: int) -> list[Workload]:
    """Workloads (a)-(e) of the comparison."""
    return [
        Workload("a", "rr 64 B x100 d1", "rr", 100, 1, 64),
        Workload("b", "rr 64 B x100 d16", "rr", 100, 16, 64),
        Workload("c", "rr 64 KiB x10", "rr", 10, 1, 65536),
        Workload("d", "connect", "connect", 32, 1, 64, src_ips=16),
        Workload("e", f"idle x{idle_conns}", "idle", idle_conns, 1, 64),
    ]


@dataclass(frozen=True, slots=True)
class CompareConfig:
    """What to compare.  ``engines``/``baselines``: names to keep, ``None`` for all."""

    scale: str = "full"
    rounds: int | None = None
    idle_conns: int | None = None
    engines: list[str] | None = None
    baselines: list[str] | None = None
    loadgen: str | None = None


@dataclass(frozen=True, slots=True)
class CompareReport:
    """Medians per ``results[server][workload_key]``, with every round in ``rounds``."""

    scale: str
    loadgen: str
    machine: dict[str, Any]
    workloads: list[Workload]
    servers: list[str]
    skipped: dict[str, str]
    results: dict[str, dict[str, Measurement]]
    rounds: dict[str, dict[str, list[Measurement]]] = field(repr=False)
    targets: list[Target]
    started: str
    seconds: float
    #: stopped early (Ctrl-C): the figures cover the servers measured so far
    interrupted: bool = False

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = [asdict(t) | {"met": t.met} for t in self.targets]
        return data


Log = Callable[[str], None]


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _summarise(runs: list[Measurement]) -> Measurement:
    fields: dict[str, Any] = {}
    problems = [m.problem for m in runs if m.problem is not None]
    for name in Measurement.__dataclass_fields__:
        values = [getattr(m, name) for m in runs]
        if name == "problem":
            # one untrusted round makes the median untrusted too
            fields[name] = "; ".join(dict.fromkeys(problems)) or None
        elif name in ("errors",):
            fields[name] = sum(values)
        elif name == "established":
            fields[name] = min(values)
        else:
            fields[name] = _median(values)
    fields["ops_per_s"] = fields["ops_per_s"] or 0.0
    fields["mb_per_s"] = fields["mb_per_s"] or 0.0
    fields["client_cpu_pct"] = fields["client_cpu_pct"] or 0.0
    return Measurement(**fields)


def _cpus() -> tuple[int | None, int | None]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[-1], cpus[0]  # server, load


def _resolve_loadgen(loadgen: str | None, build_dir: Path) -> str | None:
    """``None`` (builtin), or the path of an rrload-style binary (built from ``.c`` here)."""
    if loadgen in (None, "builtin", "sockkit"):
        return None
    assert loadgen is not None
    if loadgen.endswith(".c"):
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None or not Path(loadgen).exists():
            raise UsageError(f"cannot build {loadgen}: no C compiler or no such file")
        binary = build_dir / Path(loadgen).stem
        import subprocess

        done = subprocess.run(
            [compiler, "-O2", "-o", str(binary), loadgen], capture_output=True, timeout=120
        )
        if done.returncode != 0:
            raise SockkitError(f"building {loadgen} failed: {done.stderr.decode()[:200]}")
        return str(binary)
    found = shutil.which(loadgen)
    if found is None:
        raise UsageError(
            f"load generator {loadgen!r} not found (give a path, or rrload.c to build)"
        )
    return found


def run_compare(
    config: CompareConfig,
    log: Log | None = None,
    *,
    extra: Sequence[ServerSpec] = (),
    targets: Callable[[Results], list[Target]] | None = None,
) -> CompareReport:
    """Start, prime, load and stop every server; return the medians (and ``targets``' verdicts).

    The servers are the engines and baselines ``config`` names, then ``extra``.
    Raises :class:`UsageError` for a bad configuration and :class:`SockkitError`
    when no server could be found at all.  Servers that fail to start are
    recorded in ``skipped``; every started process is stopped before returning.
    """
    say = log or (lambda _line: None)
    if config.scale not in SCALES:
        raise UsageError(f"unknown scale {config.scale!r}; choose tiny or full")
    scale = SCALES[config.scale]
    rounds = config.rounds or scale.rounds
    idle_conns = config.idle_conns or scale.idle_conns
    if rounds < 1 or idle_conns < 1:
        raise UsageError("--rounds and --idle-conns must be at least 1")
    workloads = workloads_for(idle_conns)
    raise_fd_limit(idle_conns + 1024)
    server_cpu, load_cpu = _cpus()
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sockkit-compare-") as tmp:
        loadgen = _resolve_loadgen(config.loadgen, Path(tmp))
        specs, skipped = builtin_servers(config.engines, config.baselines)
        specs += extra
        if not specs:
            raise SockkitError(
                "no server to compare: " + "; ".join(f"{k}: {v}" for k, v in skipped.items())
            )
        per_round: dict[str, dict[str, list[Measurement]]] = {s.name: {} for s in specs}
        interrupted = False
        try:
            for r in range(rounds):
                order = specs[r % len(specs) :] + specs[: r % len(specs)]
                for spec in order:
                    say(f"round {r + 1}/{rounds}: {spec.name}")
                    t_server = time.monotonic()
                    try:
                        _run_server(
                            spec, workloads, scale, server_cpu, load_cpu, loadgen, per_round, say
                        )
                    except SockkitError as exc:
                        skipped[spec.name] = str(exc)
                        say(f"  {spec.name} skipped: {exc}")
                    say(f"  ({time.monotonic() - t_server:.1f} s)")
        except KeyboardInterrupt:
            # Every started server was stopped on the way out: report what was measured.
            interrupted = True
            say("interrupted: reporting what was measured so far")
    names = [s.name for s in specs if per_round[s.name]]
    results = {
        name: {key: _summarise(runs) for key, runs in per_round[name].items()} for name in names
    }
    machine = {
        "cpus": os.cpu_count(),
        "server_cpu": server_cpu,
        "load_cpu": load_cpu,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "rounds": rounds,
        "warmup_s": scale.warmup,
        "duration_s": scale.duration,
    }
    return CompareReport(
        scale=config.scale,
        loadgen=loadgen or "sockkit",
        machine=machine,
        workloads=workloads,
        servers=names,
        skipped=skipped,
        results=results,
        rounds={n: per_round[n] for n in names},
        targets=targets(results) if targets is not None else [],
        started=started,
        seconds=round(time.monotonic() - t0, 1),
        interrupted=interrupted,
    )


def _run_server(
    spec: ServerSpec,
    workloads: list[Workload],
    scale: Scale,
    server_cpu: int | None,
    load_cpu: int | None,
    loadgen: str | None,
    per_round: dict[str, dict[str, list[Measurement]]],
    say: Log,
) -> None:
    with RunningServer(spec, server_cpu) as server:
        prime = workloads[0]
        measure(
            server.endpoint,
            server.pid,
            prime,
            warmup=0,
            duration=scale.prime,
            load_cpu=load_cpu,
            loadgen=None,
            connect_timeout=scale.connect_timeout,
        )
        for workload in workloads:
            duration = scale.duration
            if workload.mode == "idle":
                duration = scale.idle_hold
                if spec.per_connection_process:
                    workload = replace(workload, conns=min(workload.conns, _PER_PROCESS_IDLE_CAP))
            m = measure(
                server.endpoint,
                server.pid,
                workload,
                warmup=scale.warmup,
                duration=duration,
                load_cpu=load_cpu,
                loadgen=loadgen,
                connect_timeout=scale.connect_timeout,
            )
            per_round[spec.name].setdefault(workload.key, []).append(m)
            say(f"  ({workload.key}) {workload.label}: {_one_line(m)}")
        if server.proc.poll() is not None:
            raise SockkitError(f"{spec.name} exited during the run")


def _one_line(m: Measurement) -> str:
    text = f"{m.ops_per_s:,.0f}/s"
    if m.server_cpu_us_per_op is not None:
        text += f", server {m.server_cpu_us_per_op:.1f} µs/op"
    if m.pss_per_conn is not None:
        text += f", {m.pss_per_conn / 1024:.2f} KiB PSS/conn"
    if m.errors:
        text += f", {m.errors} ERRORS"
    return text
