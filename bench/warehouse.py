"""Benchmark: each warehouse suite's SQL alone vs the gate around it vs the naive route.

    .venv/bin/python bench/warehouse.py [--edges 1M,10M] [--big] [--repeat 3]

For each scale (lifecycle edges; events, sessions and rollups scale with them) and each
warehouse suite, prints (a) the suite's SQL alone in chDB, (b) `evaluate()` of a gate with
only that suite (query + Great Expectations + verdict), both the median of --repeat runs
after a warm-up, their ratio, and (c) the naive route a Great Expectations user might
take — pull the window's raw rows into pandas and run row-level expectations — as a ratio
against (b), for windows up to --naive-max rows. --big adds the 100M-edge step.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from gatecheck.config import load_project
from gatecheck.demo.reference import HOURS, build_reference
from gatecheck.evaluation.engine import Engine
from gatecheck.evaluation.plan import window_for
from gatecheck.evaluation.validation import Validator
from gatecheck.shipped import project_path
from gatecheck.sources.clickhouse import format_parameter, wrap_readonly
from gatecheck.sources.clickhouse.connection import ClickHouse, Target

REPO = Path(__file__).resolve().parents[1]
PROJECT = project_path("reference")  # the reference project: the repository's top level
AS_OF = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
SUITES = ("unmatched_edges", "freshness_lag", "rollup_parity", "unattributed_sessions")
_RANGE = "{col} >= {{s:DateTime64(3)}} AND {col} < {{e:DateTime64(3)}}"
# The naive route: the window's raw rows of the suite's main table, then row-level GE.
NAIVE: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "unmatched_edges": (
        "SELECT edge_type, to_event_id FROM lifecycle_edges WHERE " + _RANGE.format(col="from_ts"),
        [{"type": "expect_column_values_to_not_be_null", "column": "to_event_id", "mostly": 0.995}],
    ),
    "freshness_lag": (
        "SELECT clock_domain, event_ts, ingest_ts FROM stream_trace_events WHERE "
        + _RANGE.format(col="event_ts"),
        [
            {
                "type": "expect_column_pair_values_a_to_be_greater_than_b",
                "column_A": "ingest_ts",
                "column_B": "event_ts",
                "or_equal": True,
                "mostly": 0.999,
            }
        ],
    ),
    "rollup_parity": (
        "SELECT session_id, gateway FROM session_facts FINAL WHERE " + _RANGE.format(col="session_start_ts"),
        [{"type": "expect_column_values_to_be_unique", "column": "session_id"}],
    ),
    "unattributed_sessions": (
        "SELECT toString(attribution_source) AS attribution_source FROM session_facts FINAL WHERE "
        + _RANGE.format(col="session_start_ts"),
        [
            {
                "type": "expect_column_values_to_be_in_set",
                "column": "attribution_source",
                "value_set": ["direct", "mapped_window"],
                "mostly": 0.98,
            }
        ],
    ),
}


async def through_engine(project: Any, phase: str) -> Any:
    """One evaluation through the engine, as the CLI and the service run it (not recorded)."""
    async with Engine(project, ledger=None) as engine:
        return (await engine.evaluate(phase, AS_OF, record=False)).verdict


def parse_count(text: str) -> int:
    text = text.strip().upper()
    factor = {"K": 1_000, "M": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("KM")) * factor)


def median_time(action: Callable[[], object], repeat: int) -> float:
    action()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def write_config(config: Path) -> None:
    config.mkdir()
    (config / "gatecheck.yaml").write_text((PROJECT / "gatecheck.yaml").read_text())
    thresholds = yaml.safe_load((PROJECT / "thresholds.yaml").read_text())
    thresholds["phases"] = {}
    (config / "thresholds.yaml").write_text(yaml.safe_dump(thresholds))
    (config / "suites").mkdir()
    (config / "gates").mkdir()
    for suite in SUITES:
        (config / "suites" / f"{suite}.yaml").write_text((PROJECT / "suites" / f"{suite}.yaml").read_text())
        gate = {"phase": phase_of(suite), "environment": "staging", "checks": [{"suite": suite}]}
        (config / "gates" / f"{gate['phase']}.yaml").write_text(yaml.safe_dump(gate))


def phase_of(suite: str) -> str:
    return "only-" + suite.replace("_", "-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", default="1M,10M", help="lifecycle edges per scale, comma-separated")
    parser.add_argument("--big", action="store_true", help="add the 100M-edge scale")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--naive-max", type=int, default=5_000_000, help="largest raw window to pull")
    args = parser.parse_args()
    scales = [parse_count(s) for s in args.edges.split(",")] + ([100_000_000] if args.big else [])
    gx, batch_definition = Validator().context()
    from great_expectations.expectations.registry import get_expectation_impl

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config"
        write_config(config)
        warehouse = Path(tmp) / "warehouse"
        project = load_project(
            config, environ={"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database=bench"}
        )
        print(
            f"{datetime.now(UTC):%Y-%m-%d} · {HOURS} h of traffic · median of {args.repeat} after a warm-up"
        )
        header = (
            f"{'edges':>6} {'suite':<22} {'window rows':>12} {'SQL':>9} {'gate':>9} {'gate/SQL':>9}"
            f" {'naive':>10} {'naive/gate':>10}"
        )
        print(header)
        print("-" * len(header))
        with ClickHouse() as clickhouse:
            # The baseline: the same clickhouse-connect chDB client the source uses, called directly.
            connection = clickhouse.connect(
                Target.parse(f"chdb://{warehouse}?database=bench", warehouse), create=True
            )
            for edges in scales:
                started = time.perf_counter()
                build_reference(
                    connection, "bench", AS_OF, "healthy", sessions_per_hour=max(1, edges // (3 * HOURS))
                )
                built = time.perf_counter() - started
                for suite_name in SUITES:
                    suite = project.suites[suite_name]
                    phase = phase_of(suite_name)
                    thresholds = project.resolve_thresholds(phase)
                    window = window_for(AS_OF, suite.window.length, suite.window.settle)
                    values: dict[str, Any] = {
                        "window_start": window.start,
                        "window_end": window.end,
                        "as_of": AS_OF,
                    }
                    params = {
                        k: format_parameter(values[k] if k in values else thresholds[k].value)
                        for k in suite.query_parameters()
                    }
                    sql = wrap_readonly(str(suite.query), 60)

                    def raw_query(sql: str = sql, params: dict[str, str] = params) -> None:
                        connection.query_df(sql, params)

                    raw = median_time(raw_query, args.repeat)
                    gate = median_time(
                        lambda phase=phase: asyncio.run(through_engine(project, phase)), args.repeat
                    )
                    naive_sql, naive_expectations = NAIVE[suite_name]
                    naive_params = {"s": format_parameter(window.start), "e": format_parameter(window.end)}
                    counted = connection.query_df(f"SELECT count() AS n FROM ({naive_sql})", naive_params)
                    rows = int(counted["n"].iloc[0])
                    if rows <= args.naive_max:

                        def naive(
                            sql: str = naive_sql,
                            spec: list[dict[str, Any]] = naive_expectations,
                            bound: dict[str, str] = naive_params,
                        ) -> None:
                            frame = connection.query_df(sql, bound)
                            built_expectations = [
                                get_expectation_impl(e["type"])(**{k: v for k, v in e.items() if k != "type"})
                                for e in spec
                            ]
                            batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
                            batch.validate(gx.ExpectationSuite(name="naive", expectations=built_expectations))

                        naive_s = median_time(naive, 1)
                        naive_text, ratio = f"{naive_s * 1000:8.0f}ms", f"{naive_s / gate:9.1f}x"
                    else:
                        naive_text, ratio = f"{'skipped':>10}", f"{'—':>10}"
                    print(
                        f"{edges // 1_000_000:>5}M {suite_name:<22} {rows:>12,} {raw * 1000:7.1f}ms "
                        f"{gate * 1000:7.1f}ms {gate / raw:8.1f}x {naive_text} {ratio}"
                    )
                print(f"{'':>6} (built {edges:,} edges and their events, sessions, rollups in {built:.1f}s)")


if __name__ == "__main__":
    main()
