"""Run the reliability and security cases at full scale and write benchmarks/RELIABILITY.md.

    python benchmarks/reliability.py                      # every case, every engine
    python benchmarks/reliability.py --cases 1,2 --engines epoll,thread --out /tmp/r.md

The cases are the ones ``tests/reliability`` runs at CI scale (the same
functions and pass rules; see ``tests/reliability/catalogue.py``).  Each cell
of the table is the case's measured figures and PASS or FAIL against its
targets.  ``--soak-seconds``/``--fuzz-examples``/``--soak-engines`` shorten the
two cases that cannot fit a bounded run at their stated size (10 minutes of
soak per engine, a million examples per fuzz target); the file then says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

from reliability.catalogue import CASES, KNOWN, variants  # noqa: E402
from reliability.scale import CI, FULL, Scale  # noqa: E402
from reliability.verdict import Verdict  # noqa: E402
from sockkit.engines import available_engines  # noqa: E402


def _run(case_run: object, variant: str, scale: Scale) -> tuple[Verdict, float]:
    start = time.monotonic()
    try:
        verdict = case_run(variant, scale)  # type: ignore[operator]
    except Exception as exc:
        verdict = Verdict()
        detail = traceback.format_exception_only(exc)[-1].strip().replace("\n", " ")
        verdict.check(False, f"did not run: {detail[:200]}")
    return verdict, time.monotonic() - start


def _cell(verdict: Verdict) -> str:
    if verdict.skipped:
        return f"n/a: {verdict.skipped}"
    mark = "**PASS**" if verdict.passed else "**FAIL**"
    return f"{mark} " + "; ".join(verdict.figures).replace("|", "/")


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds, so every case stops its servers


def main() -> int:
    signal.signal(signal.SIGTERM, _exit_on_term)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", help="comma-separated case keys (default: all)")
    parser.add_argument("--engines", help="comma-separated engines (default: all available)")
    parser.add_argument("--scale", choices=("full", "ci"), default="full")
    parser.add_argument("--soak-seconds", type=float, help="shorter soak (warm-up kept)")
    parser.add_argument("--soak-warmup", type=float, help="soak warm-up")
    parser.add_argument("--soak-engines", help="engines the soak runs on (default: all)")
    parser.add_argument("--fuzz-examples", type=int, help="fewer examples per fuzz target")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RELIABILITY.md"))
    args = parser.parse_args()

    scale = FULL if args.scale == "full" else CI
    reduced = []
    if args.soak_seconds is not None:
        scale = dataclasses.replace(scale, soak_seconds=args.soak_seconds)
        reduced.append(f"soak {args.soak_seconds:g} s instead of {FULL.soak_seconds:g} s")
    if args.soak_warmup is not None:
        scale = dataclasses.replace(scale, soak_warmup=args.soak_warmup)
        reduced.append(f"soak warm-up {args.soak_warmup:g} s")
    if args.fuzz_examples is not None:
        scale = dataclasses.replace(scale, fuzz_examples=args.fuzz_examples)
        reduced.append(
            f"{args.fuzz_examples:,} fuzz examples per target, not {FULL.fuzz_examples:,}"
        )
    engines = args.engines.split(",") if args.engines else available_engines()
    wanted = set(args.cases.split(",")) if args.cases else None
    soak_engines = args.soak_engines.split(",") if args.soak_engines else None
    if soak_engines:
        reduced.append(f"soak on {', '.join(soak_engines)} only")

    rows: list[tuple[str, dict[str, str]]] = []
    started = time.monotonic()
    for case in CASES:
        if wanted is not None and case.key not in wanted:
            continue
        cells: dict[str, str] = {}
        over = variants(case, engines, scale)
        if case.key == "17" and soak_engines:
            over = [e for e in over if e in soak_engines]
        for variant in over:
            verdict, seconds = _run(case.run, variant, scale)
            known = KNOWN.get((case.key, variant))
            cells[variant] = _cell(verdict) + (
                f" (known: {known})" if known and not verdict.passed else ""
            )
            state = "skip" if verdict.skipped else ("PASS" if verdict.passed else "FAIL")
            print(
                f"{case.key:>3} {variant:22} {state:4} {seconds:6.1f}s  {verdict.summary()}",
                flush=True,
            )
        rows.append((f"{case.key}. {case.title}", cells))
    total = time.monotonic() - started

    command = "python benchmarks/reliability.py " + shlex.join(sys.argv[1:])
    lines = [
        "# Reliability and security: measured",
        "",
        f"Recorded {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC with `{command.strip()}`"
        f" on {os.cpu_count()} cores, {total / 60:.0f} minutes; {scale.name} scale"
        + (f", reduced: {'; '.join(reduced)}" if reduced else "")
        + ".  The machine was shared and busy while this ran.",
        "",
        "Each case is a function in `tests/reliability/` that the test suite runs at CI"
        " scale; the targets and pass rules are in each case's docstring and code.",
        "",
    ]
    for title, cells in rows:
        lines.append(f"## {title}")
        lines.append("")
        lines.append("| engine | result |")
        lines.append("|---|---|")
        for variant, cell in cells.items():
            lines.append(f"| {variant} | {cell} |")
        lines.append("")
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out} in {total / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
