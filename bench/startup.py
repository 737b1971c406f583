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
  trees kept by their text (each caller gets a copy).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--loads", type=int, default=50)
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d')} · CPU, median of {args.repeat} fresh processes")
    plain = import_cpu("import great_expectations", args.repeat)
    deferred = import_cpu("from gatecheck.evaluation.ge import gx", args.repeat)
    rows = [("import great_expectations", plain, plain, "s")]
    rows.append(("import gatecheck.evaluation.ge (deferring)", deferred, plain, "s"))
    parsed, kept = load_cpu(args.loads, args.repeat)
    rows.append(("load_project(reference), every file parsed", parsed, parsed, "ms"))
    rows.append(("load_project(reference), unchanged, kept", kept, parsed, "ms"))
    for name, value, baseline, unit in rows:
        shown = f"{value:7.3f} s " if unit == "s" else f"{value * 1000:7.1f} ms"
        print(f"  {name:<46}{shown}   baseline / this: {baseline / value:4.1f}x")


if __name__ == "__main__":
    main()
