"""Benchmark: what a process pays before it evaluates — Great Expectations' import and the
project's configuration.

    .venv/bin/python bench/startup.py [--repeat 5] [--loads 50]

Side by side, in CPU time (median of --repeat):

- importing Great Expectations as it imports itself (the baseline), against
  ``gatecheck.evaluation.ge``, which defers what GE imports and gatecheck never uses through
  it (altair, scipy.stats) to first use — each in a fresh process, as every CLI run, demo and
  service fork server pays it;
- loading the reference project (``load_project``) with every YAML file parsed (the
  baseline: the cache cleared before each load) against loading it unchanged, its parsed
  trees kept by their text (each caller gets a copy);
- a process's way to its first verdict of ``warehouse-release`` over a chDB warehouse of the
  reference schema (imports, the project loaded, the evaluation), then ``--evaluations N``
  more: Great Expectations imported with the garbage collector running and its objects left
  to it (the baseline, as before 2026-12-07) against ``gatecheck.evaluation.ge``, which
  imports it with the collector paused and freezes what the import leaves.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

IMPORT = "import time\nstarted = time.process_time()\n{statement}\nprint(time.process_time() - started)\n"


def import_cpu(statement: str, repeat: int) -> float:
    """Median CPU seconds of ``statement`` in a fresh interpreter."""
    runs = []
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, "-c", IMPORT.format(statement=statement)],
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(float(done.stdout.strip()))
    return statistics.median(runs)


def load_cpu(loads: int, repeat: int) -> tuple[float, float]:
    """(median CPU seconds of a load of the reference project with every file parsed, of a
    load of it unchanged with the parsed trees kept), after a first load in the process."""
    code = (
        "import time\n"
        "from gatecheck.config import load_project\n"
        "from gatecheck.config.loading import _parsed\n"
        "from gatecheck.shipped import project_path\n"
        "root = project_path('reference')\n"
        "load_project(root, environ={})\n"
        "started = time.process_time()\n"
        f"for _ in range({loads}):\n"
        "    _parsed.cache_clear()\n"
        "    load_project(root, environ={})\n"
        "parsed = time.process_time() - started\n"
        "started = time.process_time()\n"
        f"for _ in range({loads}):\n"
        "    load_project(root, environ={})\n"
        f"print(parsed / {loads}, (time.process_time() - started) / {loads})\n"
    )
    parsed, kept = [], []
    for _ in range(repeat):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        one, other = map(float, done.stdout.split())
        parsed.append(one)
        kept.append(other)
    return statistics.median(parsed), statistics.median(kept)


EVALUATE = """
import time
started = time.process_time()
import asyncio, gc, sys, tempfile
from datetime import UTC, datetime
from pathlib import Path
if sys.argv[1] == "collected":  # as before: GE imported with the collector running, nothing frozen
    from gatecheck._deferred import deferring
    with deferring("altair", "scipy.stats"):
        import great_expectations
from gatecheck.evaluation.ge import gx
if sys.argv[1] == "collected":
    gc.unfreeze()
from gatecheck.config import load_project
from gatecheck.demo.reference import build_reference
from gatecheck.evaluation.engine import Engine
from gatecheck.shipped import project_path
from gatecheck.sources.clickhouse.connection import ClickHouse, Target
imported = time.process_time() - started
as_of = datetime(2026, 11, 22, 6, tzinfo=UTC)
path = Path(tempfile.mkdtemp()) / "warehouse"
with ClickHouse() as clickhouse:
    connection = clickhouse.connect(Target.parse(f"chdb://{path}", path), create=True)
    build_reference(connection, "healthy", as_of, "healthy")
url = f"chdb://{path}?database=healthy"
started = time.process_time()
project = load_project(project_path("reference"), environ={"GATECHECK_CLICKHOUSE_URL": url})
loaded = time.process_time() - started
async def run(n):
    async with Engine(project) as engine:
        started = time.process_time()
        await engine.evaluate("warehouse-release", as_of, record=False)  # connections, first uses
        first = time.process_time() - started
        started = time.process_time()
        for _ in range(n):
            await engine.evaluate("warehouse-release", as_of, record=False)
        return first, (time.process_time() - started) / n
first, later = asyncio.run(run(int(sys.argv[2])))
print(imported + loaded + first, later)
"""


def evaluation_cpu(how: str, evaluations: int, repeat: int) -> tuple[float, float]:
    """Median CPU seconds from a process's start to its first verdict of warehouse-release
    (imports, the project loaded, the evaluation; the warehouse's build left out) and of each
    later evaluation, GE imported and its objects ``how``."""
    firsts, laters = [], []
    for _ in range(repeat):
        command = [sys.executable, "-c", EVALUATE, how, str(evaluations)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        first, later = map(float, done.stdout.strip().splitlines()[-1].split())
        firsts.append(first)
        laters.append(later)
    return statistics.median(firsts), statistics.median(laters)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--loads", type=int, default=50)
    parser.add_argument("--evaluations", type=int, default=20)
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d')} · CPU, median of {args.repeat} fresh processes")
    plain = import_cpu("import great_expectations", args.repeat)
    deferred = import_cpu("from gatecheck.evaluation.ge import gx", args.repeat)
    rows = [("import great_expectations", plain, plain, "s")]
    rows.append(("import gatecheck.evaluation.ge (deferring)", deferred, plain, "s"))
    parsed, kept = load_cpu(args.loads, args.repeat)
    rows.append(("load_project(reference), every file parsed", parsed, parsed, "ms"))
    rows.append(("load_project(reference), unchanged, kept", kept, parsed, "ms"))
    collected = evaluation_cpu("collected", args.evaluations, args.repeat)
    frozen = evaluation_cpu("frozen", args.evaluations, args.repeat)
    rows.append(("to a first verdict, GE's objects collected", collected[0], collected[0], "s"))
    rows.append(("to a first verdict, GE's objects frozen", frozen[0], collected[0], "s"))
    rows.append(("each later evaluation, collected", collected[1], collected[1], "ms"))
    rows.append(("each later evaluation, frozen", frozen[1], collected[1], "ms"))
    for name, value, baseline, unit in rows:
        shown = f"{value:7.3f} s " if unit == "s" else f"{value * 1000:7.1f} ms"
        print(f"  {name:<46}{shown}   baseline / this: {baseline / value:4.1f}x")


if __name__ == "__main__":
    main()
