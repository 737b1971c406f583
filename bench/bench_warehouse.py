"""Benchmark: the warehouse gate on chDB at growing traffic, and where the time goes.

    .venv/bin/python bench/bench_warehouse.py [--scales 600,6000,60000] [--repeat 3]

Prints, per scale: rows generated, build time, the median wall time of a whole evaluation
(all checks: source queries plus GE validation; GE is imported and warmed up first) and the
size of each check's frame. Rows never reach Python: each
suite returns a handful of aggregate rows whatever the table size.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from gatecheck.config import load_project
from gatecheck.demo.reference import HOURS, build_reference
from gatecheck.gate import evaluate
from gatecheck.runner import _ge
from gatecheck.sources.clickhouse import embedded_session

REPO = Path(__file__).resolve().parents[1]
AS_OF = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="600,6000,60000", help="sessions per hour, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--phase", default="warehouse-release")
    args = parser.parse_args()
    _ge()  # import Great Expectations and build its context outside the timings
    with tempfile.TemporaryDirectory() as tmp, embedded_session(Path(tmp) / "wh", create=True) as session:
        print(f"phase {args.phase}, {HOURS} h of traffic, median of {args.repeat} evaluations")
        for scale in (int(s) for s in args.scales.split(",")):
            started = time.perf_counter()
            counts = build_reference(session, "bench", AS_OF, "healthy", sessions_per_hour=scale)
            built = time.perf_counter() - started
            project = load_project(
                REPO, environ={"GATECHECK_CLICKHOUSE_URL": f"chdb://{Path(tmp) / 'wh'}?database=bench"}
            )
            totals, verdict = [], None
            for _ in range(args.repeat):
                started = time.perf_counter()
                verdict = asyncio.run(evaluate(project, args.phase, AS_OF))
                totals.append(time.perf_counter() - started)
            assert verdict is not None
            rows = sum(counts.values())
            print(
                f"{scale:>7} sessions/h  {rows:>11,} rows  build {built:6.2f}s  "
                f"evaluate {statistics.median(totals):6.3f}s  verdict {verdict.verdict.value}  "
                f"frame rows {', '.join(f'{c.suite}={c.rows}' for c in verdict.checks)}"
            )


if __name__ == "__main__":
    main()
