"""Benchmark: a reconciliation whose second side is written after the first (a side's ``lag``)
against the same check cut by one window, on one chDB warehouse.

    .venv/bin/python bench/reconcile_lag.py [--rows 2M] [--repeat 3]

``messages`` holds ``--rows`` records over two hours (``stored_at``); ``rows`` holds one row
per record written 0–25 s after it (``created_at``), but for 100 records never written (50
of them in the hour judged) and 100 rows of no record (all in it). A gate judges the last
hour (settle 30 s) by ``id``:

- **cut by the window** (the baseline): both sides on one source, one query a round
  comparing the buckets in the engine — and every record near the window's edges reported;
- **with ``lag: 30s``** on ``rows``: two reconciliations, each side asked apart over its own
  windows — only the planted keys reported.

It prints each one's time (median of ``--repeat``, through the engine as ``gatecheck run``
evaluates), the ratio, and the counts each reports.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from gatecheck.config import load_project
from gatecheck.evaluation.engine import Engine
from gatecheck.shipped import project_path
from gatecheck.sources.clickhouse.connection import ClickHouse, Target

AS_OF = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PLANTED = 100


def build(path: Path, rows: int) -> None:
    """The two tables: ``rows`` records evenly over the two hours before AS_OF."""
    start = AS_OF - timedelta(hours=2)
    spacing_ms = 2 * 3600 * 1000 / rows
    with ClickHouse() as clickhouse:
        connection = clickhouse.connect(Target.parse(f"chdb://{path}", path), create=True)
        connection.command("CREATE DATABASE IF NOT EXISTS lag")
        for table, column in (("messages", "stored_at"), ("rows", "created_at")):
            connection.command(
                f"CREATE TABLE lag.{table} (id String, {column} DateTime64(3, 'UTC')) "
                f"ENGINE = MergeTree ORDER BY {column}"
            )
        begin = f"toDateTime64('{start:%Y-%m-%d %H:%M:%S}', 3, 'UTC')"
        stored = f"{begin} + toIntervalMillisecond(toUInt64(number * {spacing_ms}))"
        connection.command(
            f"INSERT INTO lag.messages SELECT concat('m-', toString(number)), {stored} FROM numbers({rows})"
        )
        # written 0-25 s later; every (rows / PLANTED)-th record never written
        never = f"number % {rows // PLANTED} = {rows // PLANTED // 2}"
        connection.command(
            f"INSERT INTO lag.rows SELECT concat('m-', toString(number)), "
            f"{stored} + toIntervalMillisecond(number * 7919 % 25000) FROM numbers({rows}) "
            f"WHERE NOT ({never})"
        )
        stray_start = AS_OF - timedelta(minutes=50)
        stray = f"toDateTime64('{stray_start:%Y-%m-%d %H:%M:%S}', 3, 'UTC') + toIntervalSecond(number * 20)"
        connection.command(
            f"INSERT INTO lag.rows SELECT concat('stray-', toString(number)), {stray} FROM numbers({PLANTED})"
        )
        connection.command("OPTIMIZE TABLE lag.messages FINAL")
        connection.command("OPTIMIZE TABLE lag.rows FINAL")


def project(root: Path, warehouse: Path, lag: str | None) -> Any:
    """The reference project with one more gate: ``lag`` judged by ``id``."""
    shutil.copytree(project_path("reference"), root)
    window = "{window_start:DateTime64(3)} AND COLUMN < {window_end:DateTime64(3)}"
    rows: dict[str, Any] = {
        "source": "warehouse",
        "query": f"SELECT id FROM lag.rows WHERE created_at >= {window.replace('COLUMN', 'created_at')}",
    }
    if lag:
        rows["lag"] = lag
    messages = f"SELECT id FROM lag.messages WHERE stored_at >= {window.replace('COLUMN', 'stored_at')}"
    suite = {
        "name": "lagged",
        "window": {"length": "1h", "settle": "30s"},
        "reconcile": {
            "keys": {"id": "text"},
            "max_rows": 1_000_000,
            "sides": {
                "messages": {"source": "warehouse", "query": messages},
                "rows": rows,
            },
        },
        "expectations": [
            {"type": "expect_column_values_to_be_between", "column": kind, "max_value": 0}
            for kind in ("missing", "extra", "changed", "duplicated")
        ],
    }
    (root / "suites" / "lagged.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    (root / "gates" / "lag.yaml").write_text("phase: lag\nenvironment: staging\nchecks:\n  - suite: lagged\n")
    return load_project(root, environ={"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}"})


async def timed(loaded: Any, repeat: int) -> tuple[float, Any]:
    times, found = [], None
    async with Engine(loaded) as engine:
        await engine.evaluate("lag", AS_OF, record=False)  # connections, first uses
        for _ in range(repeat):
            started = time.perf_counter()
            evaluation = await engine.evaluate("lag", AS_OF, record=False)
            times.append(time.perf_counter() - started)
            (check,) = [c for c in evaluation.verdict.checks if c.suite == "lagged"]
            found = check.reconciliation
    return statistics.median(times), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="2M")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    text = args.rows.upper()
    rows = int(float(text[:-1]) * {"K": 1e3, "M": 1e6}[text[-1]]) if text[-1] in "KM" else int(text)
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = Path(tmp) / "warehouse"
        started = time.perf_counter()
        build(warehouse, rows)
        print(f"{time.strftime('%Y-%m-%d')} · {rows:,} records over 2 h, window 1h settle 30s "
              f"(built in {time.perf_counter() - started:.1f} s), median of {args.repeat}")  # fmt: skip
        results = {}
        for label, lag in (("cut by the window (baseline)", None), ("lag: 30s", "30s")):
            took, found = asyncio.run(timed(project(Path(tmp) / (lag or "cut"), warehouse, lag), args.repeat))
            results[label] = took
            counts = ", ".join(
                f"{k} {getattr(found, k)}" for k in ("missing", "extra", "changed", "duplicated")
            )
            print(f"  {label:<30} {took:7.3f} s   rows {found.rows}   {counts}")
        baseline, lagged = results.values()
        print(
            f"  ratio lag / baseline: {lagged / baseline:.2f}x (planted: {PLANTED} missing, {PLANTED} extra)"
        )


if __name__ == "__main__":
    main()
