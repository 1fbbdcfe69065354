"""sockkit's own comparison: ``sockkit bench compare`` plus the peer servers and the goals of RESULTS.md.

Usage (from the checkout; ``run_compare.sh`` runs the full one)::

    python benchmarks/compare_peers.py [--scale tiny|full] [--rounds N] [--idle-conns N]
        [--engines a,b] [--baselines a,b|none] [--peers a,b|none] [--loadgen rrload.c]
        [--out DIR] [--markdown FILE]

Besides sockkit's engines and the baselines sockkit ships, it starts the peer
servers in ``benchmarks/peers`` (socketserver, asyncio streams, trio, gevent,
twisted -- each skipped when its package is missing -- and a C epoll echo,
built here with cc) and judges the goals recorded in RESULTS.md.  A goal is
judged only where both sides were measured and could be trusted.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from sockkit import SockkitError
from sockkit.bench.compare import (
    BASELINE,
    CompareConfig,
    Results,
    ServerSpec,
    Target,
    judged,
    ratio_of,
    run_compare,
    worst_cpu_ratio,
)
from sockkit.bench.report import format_table, write_files
from sockkit.engines import default_engine

PEERS_DIR = Path(__file__).resolve().parent / "peers"

#: peer script stem -> the module it needs (a peer whose module is missing is skipped)
PEER_MODULES: dict[str, str | None] = {
    "asyncio_streams_echo": None,
    "socketserver_threading_echo": None,
    "socketserver_forking_echo": None,
    "trio_echo": "trio",
    "gevent_echo": "gevent",
    "twisted_echo": "twisted",
}
C_PEER = "c_epoll_echo"


def peer_servers(
    wanted: list[str] | None, build_dir: Path
) -> tuple[list[ServerSpec], dict[str, str]]:
    """The peers to compare (``None``: all), and ``{name: why skipped}``."""
    specs: list[ServerSpec] = []
    skipped: dict[str, str] = {}

    def want(stem: str) -> bool:
        return wanted is None or stem in wanted or stem.removesuffix("_echo") in wanted

    for stem, module in PEER_MODULES.items():
        if not want(stem):
            continue
        if module is not None and importlib.util.find_spec(module) is None:
            skipped[stem] = f"{module} is not installed"
            continue
        argv = (sys.executable, str(PEERS_DIR / f"{stem}.py"), "127.0.0.1", "0")
        specs.append(ServerSpec(stem, "peer", argv, stem.endswith("forking_echo")))
    if want(C_PEER):
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            skipped[C_PEER] = "no C compiler"
        else:
            binary = build_dir / C_PEER
            done = subprocess.run(
                [compiler, "-O2", "-o", str(binary), str(PEERS_DIR / f"{C_PEER}.c")],
                capture_output=True,
                timeout=120,
            )
            if done.returncode != 0:
                skipped[C_PEER] = "build failed: " + done.stderr.decode(errors="replace")[:200]
            else:
                specs.append(ServerSpec(C_PEER, "peer", (str(binary), "127.0.0.1", "0")))
    return specs, skipped


def targets(results: Results) -> list[Target]:
    """The goals recorded in RESULTS.md."""
    try:
        default = default_engine()
    except SockkitError:
        default = "uvloop"
    found = [
        judged(
            f"{default} (default) server CPU/op <= 1.00x raw uvloop Protocol, worst of (a)-(d)",
            worst_cpu_ratio(results, default, BASELINE),
            1.0,
            True,
        )
    ]
    idle = results.get(default, {}).get("e")
    if idle is None:
        pss: tuple[float | None, str | None] = (None, f"{default} (e) not measured")
    elif idle.problem is not None or idle.pss_per_conn is None:
        pss = (None, f"{default} (e): {idle.problem or 'memory was not sampled'}")
    else:
        pss = (idle.pss_per_conn / 1024, None)
    found.append(judged(f"{default} (default) PSS per idle connection, KiB", pss, 0.5, True))
    for engine, baseline in (
        ("select", "selectors_select_echo"),
        ("poll", "selectors_poll_echo"),
        ("epoll", "selectors_echo"),
    ):
        if baseline not in results:
            baseline = "selectors_echo"
        mechanism = "epoll" if baseline == "selectors_echo" else engine
        found.append(
            judged(
                f"{engine} server CPU/op <= 1.0x minimal selectors reactor ({mechanism}),"
                " worst of (a)-(d)",
                worst_cpu_ratio(results, engine, baseline),
                1.0,
                True,
            )
        )
    found.append(
        judged(
            "thread server CPU/op <= 0.9x socketserver ThreadingTCPServer, worst of (a)-(d)",
            worst_cpu_ratio(results, "thread", "socketserver_threading_echo"),
            0.9,
            True,
        )
    )
    found.append(
        judged(
            "fork connection rate >= 2x ForkingTCPServer (d)",
            ratio_of(results, "fork", "socketserver_forking_echo", "d", "ops_per_s"),
            2.0,
            False,
        )
    )
    found.append(
        judged(
            f"{default} bulk (c) MB/s >= 0.95x C epoll echo",
            ratio_of(results, default, C_PEER, "c", "mb_per_s"),
            0.95,
            False,
        )
    )
    return found


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [] if text == "none" else [n.strip() for n in text.split(",") if n.strip()]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=("tiny", "full"), default="full")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--idle-conns", type=int)
    parser.add_argument("--engines")
    parser.add_argument("--baselines")
    parser.add_argument("--peers")
    parser.add_argument("--loadgen")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--markdown")
    args = parser.parse_args(argv)
    command = " ".join(["python benchmarks/compare_peers.py", *(argv or sys.argv[1:])])
    config = CompareConfig(
        scale=args.scale,
        rounds=args.rounds,
        idle_conns=args.idle_conns,
        engines=_names(args.engines),
        baselines=_names(args.baselines),
        loadgen=args.loadgen,
    )
    # SIGTERM unwinds like Ctrl-C, so every started server is stopped on the way out.
    signal.signal(signal.SIGTERM, _interrupt)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="sockkit-peers-") as tmp:
        peers, peer_skips = peer_servers(_names(args.peers), Path(tmp))
        report = run_compare(config, log, extra=peers, targets=targets)
    report.skipped.update(peer_skips)
    markdown = Path(args.markdown) if args.markdown else None
    written, plot_skipped = write_files(report, Path(args.out), markdown, command)
    sys.stdout.write(format_table(report))
    for path in written:
        print(f"wrote {path}")
    if plot_skipped:
        print(f"plot skipped: {plot_skipped}", file=sys.stderr)
    if report.interrupted:
        return 130
    errors = sum(m.errors for per in report.results.values() for m in per.values())
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SockkitError as exc:
        print(f"compare_peers: {exc}", file=sys.stderr)
        sys.exit(exc.exit_status)
    except KeyboardInterrupt:
        sys.exit(130)
