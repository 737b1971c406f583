"""Every shipped ClickHouse request against the length of the warehouse's history: what it
reads at --short hours and at --long hours of the same traffic, side by side.

    .venv/bin/python bench/history.py [--short 50] [--long 2000] [--rate 600] [--repeat 5]

Builds the reference warehouse twice in one chDB engine, at one ``as_of`` and the demo's rate
(--rate sessions an hour): --short hours of history in one database, --long hours in another
(the same rows for the hours both hold; background merges settled with ``OPTIMIZE … FINAL``,
as a server's would be). Then, for every request of every shipped gate (reference and minimal
projects; a comparison's sides apart; each distinct window once), at that ``as_of``:

* rows and marks ClickHouse will read after partition, primary-key and skip-index pruning
  (``EXPLAIN ESTIMATE``, summed over the tables the request reads),
* the median time of --repeat runs of the request as gatecheck sends it,

for both histories and the ratio long / short. The goal (issue "A production ClickHouse"):
rows read at 2,000 hours ≤ 1.5× rows read at 50 hours for every request — the cost grows
with the window, not with the history. The script exits 1 when a request misses it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gatecheck.config import load_project
from gatecheck.demo.reference import SESSIONS_PER_HOUR, TABLES, build_reference
from gatecheck.durations import format_duration
from gatecheck.evaluation.plan import plan_checks, query_parameters
from gatecheck.shipped import project_path
from gatecheck.sources.clickhouse import ClickHouseSource, ClickHouseSourceConfig
from gatecheck.sources.clickhouse.connection import ClickHouse, Target

AS_OF = datetime(2026, 11, 22, 13, 20, tzinfo=UTC)  # mid-day: day partitions only partly filled
GOAL = 1.5


@dataclass(frozen=True)
class Request:
    label: str  # suite[.side] @ window
    query: str
    parameters: dict[str, Any]


def shipped_requests() -> list[Request]:
    """Each distinct ClickHouse request of the shipped gates at ``AS_OF``."""
    found: dict[tuple[str, str], Request] = {}
    for name in ("reference", "minimal"):
        root = project_path(name)
        project = load_project(
            root, environ={k: v for k, v in os.environ.items() if not k.startswith("GATECHECK_")}
        )
        for phase in sorted(project.gates):
            gate = project.gate(phase)
            sources = project.config.environments[gate.environment].sources
            thresholds = project.resolve_thresholds(phase)
            for plan in plan_checks(project, gate, AS_OF):
                for prefix, unit in plan.suite.units():
                    if sources[unit.source].type != "clickhouse":
                        continue
                    side = f".{prefix.split('.')[2]}" if prefix else ""
                    window = format_duration(plan.window.length)
                    if plan.window.settle:
                        window += f" (settle {format_duration(plan.window.settle)})"
                    label = f"{plan.suite.name}{side} @ {window}"
                    parameters = query_parameters(unit, plan.window, AS_OF, thresholds)
                    found.setdefault((label, unit.query), Request(label, unit.query, parameters))
    return sorted(found.values(), key=lambda r: r.label)


@dataclass
class Figures:
    rows: int
    marks: int
    seconds: float


async def measure(source: ClickHouseSource, request: Request, repeat: int) -> Figures:
    plan = await source.estimate(request.query, request.parameters)
    assert plan is not None
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await source.query(request.query, request.parameters)
        times.append(time.perf_counter() - started)
    return Figures(
        rows=sum(t["rows"] for t in plan["tables"]),
        marks=sum(t["marks"] for t in plan["tables"]),
        seconds=statistics.median(times),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=50, help="hours of history, the baseline")
    parser.add_argument("--long", type=int, default=2000, help="hours of history, the long one")
    parser.add_argument("--rate", type=int, default=SESSIONS_PER_HOUR, help="sessions an hour")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each request, median")
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp()) / "warehouse"
    requests = shipped_requests()
    with ClickHouse() as clickhouse:
        target = Target.parse(f"chdb://{path}", path)
        connection = clickhouse.connect(target, create=True)
        built = {}
        for hours in (args.short, args.long):
            started = time.perf_counter()
            counts = build_reference(
                connection, f"h{hours}", AS_OF, "healthy", sessions_per_hour=args.rate, hours=hours
            )
            for table in TABLES:
                connection.command(f"OPTIMIZE TABLE h{hours}.{table} FINAL")
            built[hours] = (counts, time.perf_counter() - started)

        async def run() -> dict[int, list[Figures]]:
            out: dict[int, list[Figures]] = {}
            for hours in (args.short, args.long):
                source = ClickHouseSource(
                    "warehouse",
                    ClickHouseSourceConfig(type="clickhouse", url=f"chdb://{path}?database=h{hours}"),
                    path.parent,
                    clickhouse,
                )
                try:
                    out[hours] = [await measure(source, r, args.repeat) for r in requests]
                finally:
                    await source.close()
            return out

        figures = asyncio.run(run())

    short, long = args.short, args.long
    print(
        f"{datetime.now(UTC):%Y-%m-%d} · as_of {AS_OF:%Y-%m-%d %H:%M}Z · {args.rate} sessions/h · "
        f"{short} h vs {long} h of history · EXPLAIN ESTIMATE after pruning · median of {args.repeat} runs"
    )
    for hours in (short, long):
        counts, seconds = built[hours]
        rows = ", ".join(f"{t} {n:,}" for t, n in counts.items())
        print(f"  {hours} h: {rows} (built in {seconds:.1f} s)")
    width = max(len(r.label) for r in requests) + 2
    print(
        f"  {'request':<{width}}{f'rows {short} h':>13}{f'rows {long} h':>14}{'ratio':>8}"
        f"{f'marks {short} h':>14}{f'marks {long} h':>15}{'ratio':>8}"
        f"{f'ms {short} h':>10}{f'ms {long} h':>11}{'ratio':>8}"
    )
    missed = []
    for index, request in enumerate(requests):
        a, b = figures[short][index], figures[long][index]
        rows_ratio = b.rows / a.rows if a.rows else float("inf") if b.rows else 1.0
        marks_ratio = b.marks / a.marks if a.marks else float("inf") if b.marks else 1.0
        if rows_ratio > GOAL:
            missed.append(request.label)
        print(
            f"  {request.label:<{width}}{a.rows:>13,}{b.rows:>14,}{rows_ratio:>7.2f}x"
            f"{a.marks:>14,}{b.marks:>15,}{marks_ratio:>7.2f}x"
            f"{a.seconds * 1000:>10.1f}{b.seconds * 1000:>11.1f}{b.seconds / a.seconds:>7.2f}x"
        )
    if missed:
        print(f"  goal ≤ {GOAL}x rows missed by {len(missed)} of {len(requests)}: {', '.join(missed)}")
        return 1
    print(f"  goal ≤ {GOAL}x rows: met by all {len(requests)} requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
