"""What the answers Great Expectations gave stay in a long-lived process (the service's worker):
a suite whose frames have 10,000 rows, judged on a new frame each time, bounded by the number
of answers kept alone (the baseline: 512) against that and a memory budget for their frames
(64 MiB, the default). Each in a fresh process: the resident memory it gained (after a
garbage collection and ``malloc_trim``, as the worker does after each evaluation) and the
answers it kept after N validations.

    .venv/bin/python bench/answers_memory.py [--validations 600] [--rows 10000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime

CHILD = r"""
import gc, json, sys
import numpy as np, pandas as pd
from gatecheck.config import load_project
from gatecheck.evaluation import validation
from common import PROJECT
from gatecheck.service.worker import _trim_heap as trim

memory, count, rows = (int(a) for a in sys.argv[1:4])
validation.ANSWERS = validation.Answers(memory=memory, rows=rows if memory else 0)  # 0: none kept
project = load_project(PROJECT)
suite, thresholds = project.suites["freshness_lag"], project.resolve_thresholds("staging-deploy")
validator = validation.Validator()

def rss():
    gc.collect()
    trim()  # as the worker does after each evaluation: freed pages go back to the system
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

def frame(i):
    return pd.DataFrame({
        "source_table": [f"table-{k % 50}-{i}" for k in range(rows)],
        "clock_domain": [f"domain-{k}" for k in range(rows)],
        "events": np.arange(rows, dtype="uint64") + i,
        "ingest_lag_s": np.full(rows, 1.0) + i,
        "late_arrival_p99_s": np.full(rows, 2.0),
        "clock_skew_rate": np.zeros(rows),
    })

validation.validate_frame(suite, frame(0), thresholds, validator)
before = rss()
for i in range(1, count + 1):
    validation.validate_frame(suite, frame(i), thresholds, validator)
print(json.dumps({"gained": rss() - before, "kept": len(validation.ANSWERS),
                  "kept_mib": validation.ANSWERS.kept_bytes / 2**20}))
"""


def run(memory: int, count: int, rows: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(memory), str(count), str(rows)],
        capture_output=True, text=True, check=True, cwd=sys.path[0],
    )  # fmt: skip
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validations", type=int, default=600, help="new frames judged (default 600)")
    parser.add_argument("--rows", type=int, default=10_000, help="rows a frame (default 10000)")
    args = parser.parse_args()
    baseline = run(2**62, args.validations, args.rows)
    this = run(64 * 2**20, args.validations, args.rows)
    none = run(0, args.validations, args.rows)
    when = f"{datetime.now(UTC):%Y-%m-%d}"
    print(f"{when} · {args.validations} new frames of {args.rows} rows judged in one process")
    for label, found in (
        ("512 answers at most (baseline)", baseline),
        ("and 64 MiB of frames (now)", this),
        ("none kept", none),
    ):
        print(
            f"  {label:34} RSS +{found['gained']:6.0f} MiB   {found['kept']:4.0f} answers kept "
            f"({found['kept_mib']:.0f} MiB of frames)"
        )
    print(f"  baseline / now: memory gained {baseline['gained'] / this['gained']:.1f}x")


if __name__ == "__main__":
    main()
