"""One measured load run against one running server, from the server's side too.

The load runs in a child process pinned to its own CPU -- either sockkit's
generator (forked, reporting its phases on a pipe) or an external one such as
``rrload`` (one JSON line per phase on stdout).  Around the measured phase the
parent samples the server tree's CPU time (:func:`~sockkit.bench._procstat.tree_cpu`);
for idle runs it samples the tree's memory before the connections open and
again once they are all open and verified.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from sockkit._endpoint import Endpoint
from sockkit._errors import SockkitError
from sockkit.bench._loadgen import Mode
from sockkit.bench._procstat import tree_cpu, tree_memory
from sockkit.bench._runner import run_bench

__all__ = [
    "MIN_GROWTH_FOR_MEMORY",
    "MIN_IDLE_CONNS_FOR_MEMORY",
    "Measurement",
    "Workload",
    "judge",
    "measure",
]

#: Memory per idle connection is trusted only from this many connections, or
#: from ``MIN_GROWTH_FOR_MEMORY`` bytes of growth in all: the server's resident
#: memory moves in 4 KiB pages and allocator arenas of up to 1 MiB, so a few
#: hundred connections of ~0.5 KiB each drown in that noise (and the growth can
#: even come out negative).  A process per connection (300 x ~100 KiB) is plenty.
MIN_IDLE_CONNS_FOR_MEMORY = 1000
MIN_GROWTH_FOR_MEMORY = 4 << 20


@dataclass(frozen=True, slots=True)
class Workload:
    """One row of the comparison: ``key`` a-e, a label, and the load to apply."""

    key: str
    label: str
    mode: Mode
    conns: int
    depth: int = 1
    size: int = 64
    src_ips: int = 1


@dataclass(frozen=True, slots=True)
class Measurement:
    """What one run measured.  ``ops_per_s`` is messages/s (connect: connections/s)."""

    ops_per_s: float
    mb_per_s: float
    p50_us: float | None
    p99_us: float | None
    server_cpu_us_per_op: float | None
    client_cpu_pct: float
    errors: int
    established: int
    rss_per_conn: float | None = None
    pss_per_conn: float | None = None
    #: why these figures cannot be trusted (errors, too few connections,
    #: memory that did not grow); ``None`` when they can
    problem: str | None = None


def judge(
    mode: str, ops_per_s: float, errors: int, established: int, pss_per_conn: float | None
) -> str | None:
    """Why a run's figures cannot be trusted, or ``None``.  Untrusted runs are never judged."""
    problems = []
    if errors:
        problems.append(f"{errors:,} errors")
    if mode == "idle":
        growth = (pss_per_conn or 0.0) * established
        if established < MIN_IDLE_CONNS_FOR_MEMORY and growth < MIN_GROWTH_FOR_MEMORY:
            problems.append(
                f"{established:,} connections are too few to measure memory"
                f" (at least {MIN_IDLE_CONNS_FOR_MEMORY:,},"
                f" or {MIN_GROWTH_FOR_MEMORY >> 20} MiB of growth)"
            )
        elif pss_per_conn is None:
            problems.append("memory was not sampled")
        elif pss_per_conn <= 0:
            problems.append(f"memory did not grow (PSS {pss_per_conn / 1024:+.2f} KiB/conn)")
    elif ops_per_s <= 0:
        problems.append("no operation completed")
    return "; ".join(problems) or None


def measure(
    endpoint: Endpoint,
    server_pid: int,
    workload: Workload,
    *,
    warmup: float,
    duration: float,
    load_cpu: int | None,
    loadgen: str | None,
    connect_timeout: float = 30.0,
) -> Measurement:
    """Apply ``workload`` to the server at ``endpoint`` once and measure both sides.

    ``loadgen`` is ``None`` for sockkit's generator or the path of an rrload-style
    binary.  Raises :class:`SockkitError` if the load process fails outright.
    """
    samples: dict[str, Any] = {"cpu": [], "mem": []}
    if workload.mode == "idle":
        samples["mem"].append(tree_memory(server_pid))

    def on_phase(name: str) -> None:
        if name in ("measure", "done"):
            samples["cpu"].append(tree_cpu(server_pid))
        elif name == "ready":
            samples["mem"].append(tree_memory(server_pid))

    if loadgen is None:
        result = _run_builtin(
            endpoint, workload, warmup, duration, load_cpu, connect_timeout, on_phase
        )
    else:
        result = _run_external(
            loadgen, endpoint, workload, duration, load_cpu, connect_timeout, on_phase
        )
    cpu = samples["cpu"]
    ops = float(result.get("msgs_per_s", 0.0))
    per_op = None
    if len(cpu) >= 2 and workload.mode != "idle" and ops > 0:
        per_op = (cpu[-1] - cpu[0]) / (ops * result["duration_s"]) * 1e6
    rss = pss = None
    established = int(result.get("established", 0))
    if workload.mode == "idle" and len(samples["mem"]) == 2 and established:
        before, after = samples["mem"]
        rss = (after.rss - before.rss) / established
        pss = (after.pss - before.pss) / established
    errors = int(result.get("errors", 0)) + int(result.get("conn_failures", 0))
    problem = judge(workload.mode, ops, errors, established, pss)
    if problem is not None and workload.mode == "idle":
        rss = pss = None  # an impossible figure is not shown at all
    return Measurement(
        ops_per_s=ops,
        mb_per_s=float(result.get("mb_per_s", 0.0)),
        p50_us=result.get("p50_us"),
        p99_us=result.get("p99_us"),
        server_cpu_us_per_op=per_op,
        client_cpu_pct=result.get("client_cpu_pct", 0.0),
        errors=errors,
        established=established,
        rss_per_conn=rss,
        pss_per_conn=pss,
        problem=problem,
    )


def _run_builtin(
    endpoint: Endpoint,
    workload: Workload,
    warmup: float,
    duration: float,
    load_cpu: int | None,
    connect_timeout: float,
    on_phase: Any,
) -> dict[str, Any]:
    """Fork a pinned child running :func:`run_bench`; relay its phases; return its result."""
    read_fd, write_fd = os.pipe()
    ack_read, ack_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 1
        try:
            os.close(read_fd)
            os.close(ack_write)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if load_cpu is not None:
                os.sched_setaffinity(0, {load_cpu})

            def phase(name: str) -> None:
                # Wait until the parent has sampled the server: at "done" the
                # connections must still be open, or a fork server's exiting
                # children could be missed by the /proc walk.
                os.write(write_fd, json.dumps({"phase": name}).encode() + b"\n")
                os.read(ack_read, 1)

            result = run_bench(
                endpoint,
                mode=workload.mode,
                conns=workload.conns,
                depth=workload.depth,
                size=workload.size,
                duration=duration,
                warmup=warmup,
                src_ips=workload.src_ips,
                connect_timeout=connect_timeout,
                on_phase=phase,
            )
            data = json.dumps({"result": result.to_json()}).encode() + b"\n"
            view = memoryview(data)
            while view:
                view = view[os.write(write_fd, view) :]
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    os.close(ack_read)
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            for line in pipe:
                message = json.loads(line)
                if "phase" in message:
                    on_phase(message["phase"])
                    os.write(ack_write, b"k")
                else:
                    result_data: dict[str, Any] = message["result"]
                    return result_data
        raise SockkitError(f"the load process for {workload.label} died without a result")
    finally:
        os.close(ack_write)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _rrload_target(endpoint: Endpoint) -> str:
    return f"unix:{endpoint.path}" if endpoint.is_unix else endpoint.address


def _run_external(
    binary: str,
    endpoint: Endpoint,
    workload: Workload,
    duration: float,
    load_cpu: int | None,
    connect_timeout: float,
    on_phase: Any,
) -> dict[str, Any]:
    """Run an rrload-style generator (documented JSON lines on stdout), pinned.

    It gets no warm-up (the server was primed already), so the server CPU sampled
    around the whole process divides by the requests of the whole run.
    """
    argv = [binary, "--mode", workload.mode, "--conns", str(workload.conns)]
    argv += ["--depth", str(workload.depth), "--size", str(workload.size)]
    argv += [
        "--warmup",
        "0",
        "--duration",
        f"{duration:g}",
        "--connect-timeout",
        f"{connect_timeout:g}",
    ]
    if workload.src_ips > 1:
        argv += ["--src-ips", str(workload.src_ips)]
    argv.append(_rrload_target(endpoint))
    preexec = (lambda: os.sched_setaffinity(0, {load_cpu})) if load_cpu is not None else None
    on_phase("measure")
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec
    )
    assert proc.stdout is not None
    last: dict[str, Any] | None = None
    try:
        for line in proc.stdout:
            data = json.loads(line)
            if data.get("phase") == "ready":
                on_phase("ready")
            else:
                last = data
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    time.sleep(0.2)  # let a forking server reap its exited children before sampling
    on_phase("done")
    if last is None:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise SockkitError(f"{binary} gave no result for {workload.label}: {err.strip()[:200]}")
    if proc.stderr is not None:
        proc.stderr.close()
    last.setdefault("duration_s", duration)
    last.setdefault("established", last.get("conns", workload.conns))
    return last
