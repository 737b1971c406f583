"""The embedded engine's own memory per query: each ClickHouse suite of a gate, asked again and
again with a moving window as the service asks it, with the engine's defaults and with the
settings gatecheck's embedded clients use — side by side, as ClickHouse's `MemoryTracking`
(`system.metrics`) bytes per query.

    .venv/bin/python bench/engine_memory.py [--gate warehouse-release] [--queries 1000] [--rounds 3]

A cache keyed by a query *with its parameters* grows by a few hundred bytes with every query of
a gate (its windows move, so no entry is used again): this is where the evaluation worker's
memory went (`soak.py`). `MemoryTracking` is the engine's count of the bytes it holds, so it
sees such growth in a thousand queries where resident memory needs thousands of evaluations;
it jumps now and then by a thread's untracked remainder (up to a few MiB), so each figure is
the median of --rounds rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import PROJECT

from gatecheck.config import ResolvedThreshold, SuiteConfig, load_project
from gatecheck.demo.reference import build_reference
from gatecheck.evaluation.plan import query_parameters, window_for
from gatecheck.sources.clickhouse import ClickHouseSourceConfig, format_parameter, wrap_readonly
from gatecheck.sources.clickhouse.connection import (
    EMBEDDED_SETTINGS,
    ClickHouse,
    Connection,
    Target,
)

#: The engine's defaults for what gatecheck's embedded clients turn off.
DEFAULTS = ", " + ", ".join(f"{name}=1" for name in EMBEDDED_SETTINGS)


def tracked(connection: Connection) -> int:
    frame = connection.query_df("SELECT value FROM system.metrics WHERE metric = 'MemoryTracking'")
    return int(frame["value"].iloc[0])


def ask(
    connection: Connection,
    suite: SuiteConfig,
    thresholds: Mapping[str, ResolvedThreshold],
    as_of: datetime,
    steps: int,
    count: int,
    extra: str,
) -> int:
    """Ask the suite's query ``count`` times, its window 7 s earlier each time (as the service
    asks it, never twice with the same parameters); returns the steps taken so far."""
    for step in range(steps + 1, steps + count + 1):
        moment = as_of - timedelta(seconds=7 * step)
        window = window_for(moment, suite.window.length, suite.window.settle)
        parameters = query_parameters(suite, window, moment, thresholds)
        sql = wrap_readonly(str(suite.query), 30) + extra
        connection.query_df(sql, {k: format_parameter(v) for k, v in parameters.items()})
    return steps + count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gate", default="warehouse-release")
    parser.add_argument("--queries", type=int, default=1000, help="queries per round (default 1000)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    as_of = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with tempfile.TemporaryDirectory() as tmp, ClickHouse() as hub:
        url = f"chdb://{Path(tmp) / 'warehouse'}"
        connection = hub.connect(Target.parse(url, Path(tmp)), create=True)
        build_reference(connection, "default", as_of, "healthy")
        project = load_project(PROJECT, environ={**os.environ, "GATECHECK_CLICKHOUSE_URL": url})
        thresholds = project.resolve_thresholds(args.gate)
        gate = project.gate(args.gate)
        sources = project.config.environments[gate.environment].sources
        suites = [  # each ClickHouse query of the gate: a suite's, or a comparison side's
            unit
            for check in gate.checks
            for _, unit in project.suites[check.suite].units()
            if isinstance(sources.get(unit.source), ClickHouseSourceConfig) and isinstance(unit.query, str)
        ]
        print(f"{datetime.now(UTC):%Y-%m-%d} · {args.gate}: {args.queries} queries a round, "
              f"windows moving 7 s a query, median of {args.rounds} rounds · bytes per query")  # fmt: skip
        print(f"{'query':34s} {'engine defaults':>16s} {'gatecheck':>10s} {'ratio':>8s}")
        steps = 0
        for suite in suites:
            figures: dict[str, list[float]] = {"defaults": [], "gatecheck": []}
            for extra in (DEFAULTS, ""):  # warm-up: the first queries of a shape allocate for good
                steps = ask(connection, suite, thresholds, as_of, steps, 100, extra)
            for _ in range(args.rounds):
                for mode, extra in (("defaults", DEFAULTS), ("gatecheck", "")):
                    before = tracked(connection)
                    steps = ask(connection, suite, thresholds, as_of, steps, args.queries, extra)
                    figures[mode].append((tracked(connection) - before) / args.queries)
            old, new = statistics.median(figures["defaults"]), statistics.median(figures["gatecheck"])
            ratio = f"{old / new:7.0f}x" if new > 1 else "   flat"
            print(f"{suite.name:34s} {old:+14.1f} B {new:+8.1f} B {ratio}", flush=True)


if __name__ == "__main__":
    main()
