"""What one warm evaluation of a warehouse gate costs in a long-lived process (the service's
worker, a test session): CPU and wall time per evaluation, median of N, with the work that is
the same every evaluation kept (the default) against done again each time (the baseline).

The reference warehouse (the demo's 50 hours) is built in a temporary chDB directory; the
gate is `warehouse-release` (six ClickHouse checks), evaluated N times in one engine without
recording. The baseline clears, before each evaluation, what the process keeps across them:
which tables each query reads (sqlglot, for the TTL check).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import PROJECT

from gatecheck.config import load_project
from gatecheck.demo.reference import build_reference
from gatecheck.evaluation.engine import Engine
from gatecheck.sources.clickhouse import _tables_read
from gatecheck.sources.clickhouse.connection import ClickHouse, Target


async def measure(project: object, phase: str, count: int, cold: bool) -> tuple[float, float]:
    """(CPU, wall) medians in seconds over ``count`` evaluations after three to warm up."""
    cpus, walls = [], []
    async with Engine(project, ledger=None) as engine:  # type: ignore[arg-type]
        for index in range(count + 3):
            if cold:
                _tables_read.cache_clear()
            started, cpu = time.perf_counter(), time.process_time()
            await engine.evaluate(phase, record=False)
            if index >= 3:
                walls.append(time.perf_counter() - started)
                cpus.append(time.process_time() - cpu)
    return statistics.median(cpus), statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=25, help="per run (default 25)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each (default 3)")
    args = parser.parse_args()
    import logging

    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as directory:
        warehouse = Path(directory) / "warehouse"
        as_of = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        with ClickHouse() as clickhouse:
            build_reference(
                clickhouse.connect(Target.parse(f"chdb://{warehouse}", warehouse), create=True),
                "default",
                as_of,
            )
        project = load_project(PROJECT, environ={"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}"})
        runs = f"{args.evaluations} warm evaluations a run, {args.rounds} runs each"
        print(f"{datetime.now(UTC):%Y-%m-%d} · warehouse-release on chDB · {runs}")
        kept, again = [], []
        for _ in range(args.rounds):  # alternating, so the machine's drift falls on both
            again.append(asyncio.run(measure(project, "warehouse-release", args.evaluations, cold=True)))
            kept.append(asyncio.run(measure(project, "warehouse-release", args.evaluations, cold=False)))
        for name, runs in (("each evaluation again (baseline)", again), ("kept for the process", kept)):
            cpu = statistics.median(r[0] for r in runs) * 1000
            wall = statistics.median(r[1] for r in runs) * 1000
            print(f"  {name:<34} CPU {cpu:6.1f} ms   wall {wall:6.1f} ms")
        ratio_cpu = statistics.median(r[0] for r in again) / statistics.median(r[0] for r in kept)
        ratio_wall = statistics.median(r[1] for r in again) / statistics.median(r[1] for r in kept)
        print(f"  baseline / kept: CPU {ratio_cpu:.2f}x, wall {ratio_wall:.2f}x")


if __name__ == "__main__":
    main()
