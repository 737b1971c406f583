"""Sizing the backtest's missing speed-up: one suite's steps in ONE pass over its table.

    .venv/bin/python bench/backtest_onepass.py [--days 30] [--edges 10M]

Not a product path: `unattributed_sessions`' SQL rewritten by hand so that every session is
counted into each hourly step whose window holds its start (`ARRAY JOIN` of the steps,
`GROUP BY step`), against the suite's own query sent once per step — side by side, with the
ratio, and every step's counts compared (they must be equal). It sizes what a generic rewrite
of a suite's windowed SQL (issue "Backtest", its ≥ 20× goal) would gain.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backtest import count
from common import PROJECT

from gatecheck.checkplan import plan_checks, query_parameters
from gatecheck.clickhouse import ClickHouse, Target
from gatecheck.config import load_project
from gatecheck.demo.reference import build_reference
from gatecheck.sources.clickhouse import format_parameter, wrap_readonly

AS_OF = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
STEP_MS = 3_600_000


def one_pass(steps: int, first_end_ms: int, length_ms: int) -> str:
    """The suite's counts for every step: a session starting at t belongs to step k (window
    [end_k - length, end_k), end_k = first_end + k·1h) for k in
    (⌊(t - first_end)/1h⌋, ⌊(t - first_end + length)/1h⌋]."""
    t = "toUnixTimestamp64Milli(session_start_ts)"
    return f"""
    SELECT step, count() AS sessions,
           countIf(attribution_source = 'unattributed') AS unattributed,
           countIf(attribution_source = 'mapped_window') AS mapped_window
    FROM session_facts FINAL
    ARRAY JOIN arrayFilter(k -> k >= 0 AND k < {steps},
        range(toInt64(floor(({t} - {first_end_ms}) / {STEP_MS})) + 1,
              toInt64(floor(({t} - {first_end_ms} + {length_ms}) / {STEP_MS})) + 1)) AS step
    WHERE session_start_ts >= toDateTime64({(first_end_ms - length_ms) / 1000}, 3, 'UTC')
    GROUP BY step ORDER BY step
    """


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--edges", default="10M")
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
        project = load_project(PROJECT, environ={**os.environ, "GATECHECK_CLICKHOUSE_URL": f"chdb://{path}"})
        gate = project.gate("warehouse-release")
        thresholds = project.resolve_thresholds("warehouse-release")
        steps = args.days * 24 + 1
        moments = [AS_OF - timedelta(hours=k) for k in range(steps)]
        index = [p.suite.name for p in plan_checks(project, gate, AS_OF)].index("unattributed_sessions")
        plans = [plan_checks(project, gate, m)[index] for m in moments]
        suite = plans[0].suite
        started = time.perf_counter()
        separate = {}
        for moment, plan in zip(moments, plans, strict=True):
            bound = {
                k: format_parameter(v)
                for k, v in query_parameters(suite, plan.window, moment, thresholds).items()
            }
            separate[moment] = connection.query_df(wrap_readonly(suite.query, 600), bound)
        separate_s = time.perf_counter() - started
        window = plans[-1].window  # the oldest step's
        started = time.perf_counter()
        frame = connection.query_df(
            one_pass(steps, int(window.end.timestamp() * 1000), int(window.length.total_seconds() * 1000))
        )
        one_s = time.perf_counter() - started
        differing = 0
        for row in frame.itertuples():
            alone = separate[moments[steps - 1 - int(row.step)]]
            if (int(alone["sessions"].iloc[0]), int(alone["unattributed"].iloc[0])) != (
                row.sessions,
                row.unattributed,
            ):
                differing += 1
        differing += steps - len(frame)
    print(
        f"{datetime.now(UTC):%Y-%m-%d} · unattributed_sessions · {args.days} days at 1h "
        f"({steps} steps) · {edges:,} edges"
    )
    print(
        f"  the suite's query once per step:   {separate_s:8.2f} s  ({separate_s / steps * 1000:.1f} ms/step)"
    )
    print(f"  one pass for every step (by hand): {one_s:8.3f} s")
    print(f"  ratio:                             {separate_s / one_s:8.0f}x   steps differing: {differing}")


if __name__ == "__main__":
    main()
