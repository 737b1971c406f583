"""Benchmark: `gatecheck backtest` of warehouse-release vs separate `run --as-of` evaluations.

    .venv/bin/python bench/backtest.py [--edges 10M] [--days 30] [--step 1h] [--sample 24]

Builds a warehouse with --days of traffic (--edges lifecycle edges in all, events, sessions
and rollups with them) in chDB, runs the backtest over the range at --step, then evaluates
--sample of the same steps one by one through the engine in the same process (what 720
`run --as-of` evaluations would cost, without the interpreter start-up of each), extrapolates
that to every step, and prints both with their ratio. It also checks that every sampled
step's verdict is the one the backtest gave.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import PROJECT

from gatecheck.config import load_project
from gatecheck.demo.reference import build_reference
from gatecheck.durations import format_duration, parse_duration
from gatecheck.evaluation.backtest import run_backtest
from gatecheck.evaluation.engine import Engine
from gatecheck.sources.clickhouse.connection import ClickHouse, Target

AS_OF = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def count(text: str) -> int:
    text = text.upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("KM")) * scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", default="10M")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--step", default="1h")
    parser.add_argument("--sample", type=int, default=24, help="steps evaluated one by one")
    args = parser.parse_args()
    edges, step = count(args.edges), parse_duration(args.step)
    hours = args.days * 24 + 2
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "warehouse"
        started = time.perf_counter()
        with ClickHouse() as clickhouse:
            connection = clickhouse.connect(Target.parse(f"chdb://{path}", path), create=True)
            per_hour = max(1, edges // (3 * hours))
            rows = build_reference(
                connection, "default", AS_OF, "healthy", sessions_per_hour=per_hour, hours=hours
            )
        built = time.perf_counter() - started
        project = load_project(PROJECT, environ={**os.environ, "GATECHECK_CLICKHOUSE_URL": f"chdb://{path}"})
        since = AS_OF - timedelta(days=args.days)

        async def go() -> tuple[float, object, float, int]:
            # Both sides are timed with Great Expectations already imported (seconds, once
            # per process): what is compared is the evaluations' cost.
            from gatecheck.evaluation.validation import warm_up

            warm_up()
            started = time.perf_counter()
            report = await run_backtest(project, "warehouse-release", since, AS_OF, step)
            backtest_s = time.perf_counter() - started
            steps = report.steps
            sample = steps[:: max(1, len(steps) // args.sample)][: args.sample]
            mismatches = 0
            async with Engine(project, ledger=None) as engine:
                await engine.warm_up()
                started = time.perf_counter()
                for item in sample:
                    evaluation = await engine.evaluate("warehouse-release", item.as_of, record=False)
                    mismatches += evaluation.verdict.verdict is not item.verdict
                each_s = (time.perf_counter() - started) / len(sample)
            return backtest_s, report, each_s, mismatches

        backtest_s, report, each_s, mismatches = asyncio.run(go())
    steps = len(report.steps)  # type: ignore[attr-defined]
    separate_s = each_s * steps
    print(
        f"{datetime.now(UTC):%Y-%m-%d} · warehouse-release · {args.days} days at {format_duration(step)} "
        f"({steps} steps) · {edges:,} edges ({sum(rows.values()):,} rows built in {built:.1f}s)"
    )
    per_step = backtest_s / steps * 1000
    print(f"  backtest, every step:              {backtest_s:8.1f} s  ({per_step:.0f} ms/step)")
    print(
        f"  separate evaluations (extrapolated from {args.sample}): {separate_s:8.1f} s  "
        f"({each_s * 1000:.0f} ms/evaluation)"
    )
    print(f"  ratio separate / backtest:         {separate_s / backtest_s:8.1f}x  (goal ≥ 20x)")
    print(f"  sampled verdicts differing from the backtest: {mismatches} of {args.sample}")
    print(f"  verdicts: {report.verdicts}")  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
