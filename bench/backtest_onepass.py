"""The backtest's one-pass rewrite, suite by suite: every step in one query vs the suite's own
query once per step.

    .venv/bin/python bench/backtest_onepass.py [--days 30] [--edges 10M] [--sample 48]

For each ClickHouse suite of `warehouse-release`, on a warehouse of --days of traffic: the
steps (1h) asked the way the backtest asks them (`ClickHouseSource.query_steps`, which runs
the one-pass form of `gatecheck/sources/onepass.py`), against the suite's own query for
--sample of the steps one by one (extrapolated to every step), side by side with the ratio.
Every sampled step's frame is compared with the one-pass frame of that step (they must be
equal; empty answers compare as empty), on tables whose background merges are settled first
(`OPTIMIZE … FINAL`: a read without FINAL of a ReplacingMergeTree otherwise sees rows come
and go between the two sides).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from backtest import count
from common import PROJECT

from gatecheck.config import load_project
from gatecheck.demo.reference import build_reference
from gatecheck.evaluation.plan import query_parameters, window_for
from gatecheck.sources.clickhouse import ClickHouseSource, ClickHouseSourceConfig
from gatecheck.sources.clickhouse.connection import ClickHouse, Target
from gatecheck.sources.clickhouse.onepass import one_pass, steps_of

AS_OF = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
SUITES = ("unmatched_edges", "freshness_lag", "rollup_parity", "unattributed_sessions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--edges", default="10M")
    parser.add_argument("--sample", type=int, default=48, help="steps asked one by one")
    args = parser.parse_args()
    edges, hours = count(args.edges), args.days * 24 + 2
    path = Path(tempfile.mkdtemp()) / "warehouse"
    with ClickHouse() as clickhouse:
        connection = clickhouse.connect(Target.parse(f"chdb://{path}", path), create=True)
        build_reference(
            connection,
            "default",
            AS_OF,
            "healthy",
            sessions_per_hour=max(1, edges // (3 * hours)),
            hours=hours,
        )
        # Background merges of the ReplacingMergeTree change what a read without FINAL sees
        # (freshness_lag's newest ingest_ts of session_facts) between the two sides: settle
        # them first, so a difference is the rewrite's.
        for table in ("session_facts", "lifecycle_edges", "stream_trace_events", "network_demand_hourly"):
            connection.command(f"OPTIMIZE TABLE default.{table} FINAL")
        project = load_project(PROJECT, environ={**os.environ, "GATECHECK_CLICKHOUSE_URL": f"chdb://{path}"})
        thresholds = project.resolve_thresholds("warehouse-release")
        moments = [AS_OF - timedelta(days=args.days) + timedelta(hours=k) for k in range(args.days * 24 + 1)]
        source = ClickHouseSource(
            "warehouse",
            ClickHouseSourceConfig(type="clickhouse", url=f"chdb://{path}"),
            path.parent,
            clickhouse,
        )
        print(
            f"{datetime.now(UTC):%Y-%m-%d} · {args.days} days at 1h ({len(moments)} steps) · "
            f"{edges:,} edges · one-by-one extrapolated from {args.sample} steps"
        )
        print(f"  {'suite':<24}{'one by one':>12}{'one pass':>11}{'ratio':>9}  differing")

        async def measure(name: str) -> None:
            suite = project.suites[name]
            sets = [
                query_parameters(
                    suite, window_for(m, suite.window.length, suite.window.settle), m, thresholds
                )
                for m in moments
            ]
            steps = steps_of(sets)
            assert steps is not None and one_pass(suite.query, steps) is not None, name
            started = time.perf_counter()
            together = await source.query_steps(suite.query, sets)
            one_s = time.perf_counter() - started
            assert together is not None
            sample = list(range(0, len(sets), max(1, len(sets) // args.sample)))[: args.sample]
            differing = 0
            started = time.perf_counter()
            alone = [await source.query(suite.query, sets[k]) for k in sample]
            each_s = (time.perf_counter() - started) / len(sample)
            for k, frame in zip(sample, alone, strict=True):
                if frame.empty or together[k].empty:
                    differing += frame.empty != together[k].empty
                    continue
                try:
                    pd.testing.assert_frame_equal(together[k], frame)
                except AssertionError as exc:
                    if os.environ.get("DEBUG"):
                        print(k, exc, together[k], frame, sep="\n")
                    differing += 1
            separate_s = each_s * len(sets)
            print(
                f"  {name:<24}{separate_s:>10.2f} s{one_s:>9.3f} s{separate_s / one_s:>8.0f}x  "
                f"{differing} of {len(sample)}"
            )

        async def run() -> None:
            for name in SUITES:
                await measure(name)
            await source.close()

        asyncio.run(run())


if __name__ == "__main__":
    main()
