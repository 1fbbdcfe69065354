"""``run_bench``: one or several generator processes, merged into a :class:`BenchResult`.

With ``processes > 1`` the connections are split over forked children; each runs
:func:`~sockkit.bench._loadgen.generate` and writes its tally (and its phase
changes and intervals) as JSON lines on a pipe.  The parent relays a phase to
``on_phase`` once every child has reached it, merges the tallies (and each
interval once every child has reported it) and reaps every child -- a child
never outlives the call, even when the parent is interrupted.

Ctrl-C ends the load early with a result: the generator stops where it is and
reports what it measured (``BenchResult.interrupted``).  Forked children ignore
SIGINT; the parent asks them to stop with SIGUSR1 and still collects their
tallies.  A second Ctrl-C stops at once, without a result.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from types import FrameType
from typing import Any

from sockkit._endpoint import Endpoint, open_connection
from sockkit._errors import UsageError
from sockkit.bench._interval import IntervalTally
from sockkit.bench._loadgen import (
    MODES,
    LoadSpec,
    Mode,
    PhaseCallback,
    ProgressCallback,
    generate,
)
from sockkit.bench._result import SATURATED_PCT, BenchResult, Interval
from sockkit.bench._tally import Tally
from sockkit.bench._target import resolve_target

__all__ = ["raise_fd_limit", "run_bench"]

_FD_SLACK = 64


def raise_fd_limit(needed: int) -> None:
    """Raise RLIMIT_NOFILE's soft limit toward ``needed`` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _check(spec: LoadSpec, processes: int) -> None:
    if spec.mode not in MODES:
        raise UsageError(f"unknown mode {spec.mode!r}; choose from {', '.join(MODES)}")
    if spec.conns < 1 or spec.depth < 1 or processes < 1 or spec.pending < 1:
        raise UsageError("--conns, --depth, --processes and --pending must be at least 1")
    if spec.conns < processes:
        raise UsageError(f"--conns {spec.conns} cannot be split over {processes} processes")
    if spec.duration <= 0 or spec.warmup < 0 or spec.duration + spec.warmup > 3600:
        raise UsageError("--duration must be > 0 and warm-up + duration at most an hour")
    if spec.size < (0 if spec.mode == "idle" else 1) or spec.size > 16 << 20:
        raise UsageError("--size must be 1 byte to 16 MiB (idle: 0 skips the echo)")
    if spec.target.is_datagram:
        if spec.mode != "rr":
            raise UsageError("datagram targets support --mode rr only")
        if not 8 <= spec.size <= 65507:
            raise UsageError("datagram --size must be 8-65507 bytes (8 hold the sequence number)")
    if spec.interval < 0 or (spec.interval and spec.interval < 0.1):
        raise UsageError("--interval must be at least 0.1 seconds")
    if spec.interval and spec.mode == "idle":
        raise UsageError("--interval needs a load: idle mode has no throughput to report")
    if not 1 <= spec.src_ips <= 254:
        raise UsageError("--src-ips must be 1-254")
    if spec.src_ips > 1 and not spec.target.is_ipv4:
        raise UsageError("--src-ips needs an IPv4 loopback target")


def run_bench(
    endpoint: Endpoint,
    *,
    mode: Mode = "rr",
    conns: int = 50,
    depth: int = 1,
    size: int = 64,
    duration: float = 5.0,
    warmup: float = 1.0,
    processes: int = 1,
    src_ips: int = 1,
    connect_timeout: float = 10.0,
    pending: int = 256,
    on_phase: PhaseCallback | None = None,
    on_progress: ProgressCallback | None = None,
    require_listener: bool = False,
    interval: float = 0.0,
    on_interval: Callable[[Interval], None] | None = None,
) -> BenchResult:
    """Load ``endpoint`` and return the verified measurements.

    Raises :class:`UsageError` for a bad combination of options or a target that
    is neither loopback nor Unix.  Server failures (refused, reset, corrupted
    echoes) are never raised: they are counted in ``errors``/``conn_failures``.
    ``on_phase`` hears "ready" (idle), "measure" and "done"; ``on_progress`` is
    called about once a second (first process only).  With ``require_listener``
    a stream target is connected to once before the load, and a failure raises
    the :class:`~sockkit.ConnectError` that says why (nothing listening, ...)
    instead of a result with every connection failed.  ``interval`` > 0 cuts
    the measured phase into reports of that many seconds, each given to
    ``on_interval`` as it ends and kept in ``BenchResult.intervals``.
    ``KeyboardInterrupt`` during the load gives a result marked ``interrupted``.
    """
    target = resolve_target(endpoint)
    if mode != "rr" or target.is_datagram:
        depth = depth if mode in ("rr", "stream") else 1
    spec = LoadSpec(
        target,
        mode,
        conns,
        depth,
        size,
        duration,
        warmup,
        src_ips,
        connect_timeout,
        pending,
        interval=interval,
    )
    _check(spec, processes)
    if require_listener and not target.is_datagram:
        open_connection(endpoint, timeout=min(connect_timeout, 5.0)).close()
    raise_fd_limit(conns // processes + conns % processes + _FD_SLACK)
    intervals: list[Interval] = []

    def interval_done(part: IntervalTally) -> None:
        intervals.append(_interval(part))
        if on_interval is not None:
            on_interval(intervals[-1])

    if processes == 1:
        tally = generate(spec, on_phase, on_progress, interval_done)
    else:
        tally = _run_forked(spec, processes, on_phase, on_progress, interval_done)
    return replace(_result(spec, processes, tally), intervals=tuple(intervals))


def _interval(part: IntervalTally) -> Interval:
    seconds = max(part.end_s - part.start_s, 1e-9)
    return Interval(
        start_s=part.start_s,
        end_s=part.end_s,
        requests=part.requests,
        msgs_per_s=round(part.requests / seconds, 1),
        mb_per_s=round(part.payload_bytes / seconds / 1e6, 3),
        p99_us=_us(part.hist.percentile(0.99)),
        errors=part.errors,
    )


def _run_forked(
    spec: LoadSpec,
    processes: int,
    on_phase: PhaseCallback | None,
    on_progress: ProgressCallback | None,
    on_interval: Callable[[IntervalTally], None],
) -> Tally:
    read_fd, write_fd = os.pipe()
    pids: list[int] = []
    share, extra = divmod(spec.conns, processes)
    # Children are born with the stop request's handler, so one asked to stop
    # the instant it starts reports an empty tally instead of dying.
    previous = _swap_stop_handler(_stop_early)
    try:
        for i in range(processes):
            child_spec = replace(spec, conns=share + (1 if i < extra else 0), index=i)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                os.close(read_fd)
                _child(child_spec, write_fd, on_progress if i == 0 else None)
            pids.append(pid)
        _swap_stop_handler(previous)
        os.close(write_fd)
        write_fd = -1
        return _collect(read_fd, pids, on_phase, on_interval)
    finally:
        _swap_stop_handler(previous)
        if write_fd >= 0:
            os.close(write_fd)
        os.close(read_fd)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _child(
    spec: LoadSpec, write_fd: int, on_progress: ProgressCallback | None
) -> None:  # pragma: no cover
    """Generator child: phases and the final tally as JSON lines, then ``_exit``."""
    status = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
        signal.signal(signal.SIGUSR1, _stop_early)  # (a parent off the main thread could not)

        def phase(name: str) -> None:
            os.write(write_fd, json.dumps({"phase": name}).encode() + b"\n")

        def interval(part: IntervalTally) -> None:
            os.write(write_fd, json.dumps({"interval": part.to_dict()}).encode() + b"\n")

        tally = generate(spec, phase, on_progress, interval)
        data = json.dumps({"tally": tally.to_dict()}).encode() + b"\n"
        view = memoryview(data)
        while view:
            view = view[os.write(write_fd, view) :]
        status = 0
    except BaseException as exc:
        with contextlib.suppress(OSError):
            sys.stderr.write(f"sockkit: bench process {spec.index} failed: {exc}\n")
    finally:
        os._exit(status)


def _stop_early(signum: int, frame: FrameType | None) -> None:  # pragma: no cover - child
    raise KeyboardInterrupt


_Handler = Callable[[int, FrameType | None], Any] | int | None


def _swap_stop_handler(handler: _Handler) -> _Handler:
    """Set SIGUSR1's handler (main thread only; elsewhere a no-op); return the old one."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGUSR1, handler)


def _collect(
    read_fd: int,
    pids: list[int],
    on_phase: PhaseCallback | None,
    on_interval: Callable[[IntervalTally], None],
) -> Tally:
    processes = len(pids)
    merged: Tally | None = None
    done = 0
    seen: dict[str, int] = {}
    parts: dict[int, tuple[int, IntervalTally]] = {}  # index -> (reports, merged)
    buffer = b""
    interrupted = False
    with os.fdopen(os.dup(read_fd), "rb", buffering=0) as pipe:
        while done < processes:
            try:
                chunk = pipe.read(65536)
            except KeyboardInterrupt:
                if interrupted:
                    raise
                interrupted = True
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGUSR1)
                continue
            if not chunk:
                raise UsageError(f"{processes - done} bench process(es) died without a result")
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                message = json.loads(line)
                if "interval" in message:
                    part = IntervalTally.from_dict(message["interval"])
                    count, so_far = parts.get(part.index, (0, None))
                    if so_far is not None:
                        so_far.merge(part)
                        part = so_far
                    parts[part.index] = (count + 1, part)
                    if count + 1 == processes:
                        on_interval(parts.pop(part.index)[1])
                    continue
                if "phase" in message:
                    name = message["phase"]
                    seen[name] = seen.get(name, 0) + 1
                    if seen[name] == processes and on_phase is not None:
                        on_phase(name)
                    continue
                tally = Tally.from_dict(message["tally"])
                done += 1
                if merged is None:
                    merged = tally
                else:
                    merged.merge(tally)
    # a last interval some processes ended too early to report: what there is of it
    for index in sorted(parts):
        on_interval(parts[index][1])
    assert merged is not None
    merged.interrupted = merged.interrupted or interrupted
    return merged


def _us(value: int | None) -> float | None:
    return None if value is None else round(value / 1000, 1)


def _result(spec: LoadSpec, processes: int, tally: Tally) -> BenchResult:
    seconds = tally.measured_s or 1e-9
    per_process = tally.cpu_pct_max
    total_cpu = 100 * tally.cpu_s / seconds
    saturated = per_process >= SATURATED_PCT and spec.mode != "idle"
    warnings: list[str] = []
    if saturated:
        warnings.append(
            f"a load generator process used {per_process:.0f}% of a core: it was the"
            " bottleneck, so these figures measure the client, not the server"
            " (try --processes, or compare server CPU per request)"
        )
    if tally.port_retries:
        warnings.append(
            f"the client ran out of local ports {tally.port_retries} times (TIME_WAIT);"
            " spread connections with --src-ips N"
        )
    if tally.established < spec.conns and spec.mode != "connect":
        warnings.append(f"only {tally.established} of {spec.conns} connections were established")
    hist = tally.hist
    return BenchResult(
        target=str(spec.target.endpoint),
        mode=spec.mode,
        conns=spec.conns,
        depth=spec.depth,
        size=spec.size,
        processes=processes,
        duration_s=round(tally.measured_s, 3),
        requests=tally.requests,
        msgs_per_s=0.0 if spec.mode == "idle" else round(tally.requests / seconds, 1),
        mb_per_s=round(tally.payload_bytes / seconds / 1e6, 3),
        p50_us=_us(hist.percentile(0.5)),
        p90_us=_us(hist.percentile(0.9)),
        p99_us=_us(hist.percentile(0.99)),
        p999_us=_us(hist.percentile(0.999)),
        max_us=_us(hist.max),
        errors=tally.errors,
        conn_failures=tally.conn_failures,
        lost=tally.lost,
        established=tally.established,
        connect_s=round(tally.connect_s, 3),
        client_cpu_pct=round(total_cpu, 1),
        client_cpu_pct_max=round(per_process, 1),
        saturated=saturated,
        first_error=tally.first_error,
        warnings=tuple(warnings),
        interrupted=tally.interrupted,
    )
