"""Memory over a long run: the service evaluating every phase back to back, as a process
of its own (`gatecheck demo --serve`, `service.interval: 1s`), for --evaluations evaluations.

    .venv/bin/python bench/soak.py [--evaluations 5000] [--warmup 500]

Samples the resident memory (VmRSS) of the serving process and of its evaluation worker
every 100 evaluations (counted in the ledger) and prints the least-squares slope, in KiB per
evaluation, with its standard error, over the samples after --warmup — for each process
separately. A worker replaced during the run (it should not be) is reported.

Two readings per 100 evaluations: the resident memory at that moment (`sample`: it includes
whatever the evaluations in flight hold, so it scatters by a few MiB), and the least resident
memory seen in those 100 evaluations, read four times a second (`floor`: what the process
keeps between evaluations). Memory that is kept grows both; the floor sees it with less
scatter.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from common import copy_config


def rss_kib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def worker_of(pid: int) -> int | None:
    """The serving process's evaluation worker: its child running multiprocessing's spawn."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    for child in children:
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"multiprocessing.spawn" in command or b"spawn_main" in command:
            return int(child)
    return None


def slope(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares slope of (evaluations, KiB) in KiB per evaluation, and its standard error
    (the samples scatter by a few MiB with the evaluation in flight when each is taken)."""
    n = len(points)
    if n < 3:
        return float("nan"), float("nan")
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    if not den:
        return float("nan"), float("nan")
    b = num / den
    residual = sum((y - mean_y - b * (x - mean_x)) ** 2 for x, y in points)
    return b, (residual / (n - 2) / den) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=500)
    args = parser.parse_args()
    gatecheck = str(Path(sys.executable).parent / "gatecheck")
    with tempfile.TemporaryDirectory() as tmp:
        root = copy_config(Path(tmp) / "config", interval="1s")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATECHECK_")}
        env["GATECHECK_LOG_LEVEL"] = "warning"
        with open(root / "service.log", "w") as log:
            process = subprocess.Popen(
                [gatecheck, "demo", "--config", str(root), "--serve", "--listen", "127.0.0.1:0"],
                cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        ledger = root / ".gatecheck" / "history.db"
        started = time.monotonic()
        samples: dict[str, list[tuple[int, float]]] = {
            f"{who} {kind}": [] for who in ("serving", "worker") for kind in ("sample", "floor")
        }
        low: dict[str, float] = {}  # the least resident memory of each process since the last mark
        workers: set[int] = set()
        next_mark = 0
        try:
            while True:
                if process.poll() is not None:
                    sys.exit(f"the service exited: {(root / 'service.log').read_text()[-2000:]}")
                count = 0
                if ledger.exists():
                    with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=5) as db:
                        count = db.execute("SELECT count(*) FROM evaluations").fetchone()[0]
                worker = worker_of(process.pid)
                if worker is not None:
                    workers.add(worker)
                now = {"serving": rss_kib(process.pid), "worker": rss_kib(worker) if worker else None}
                for name, rss in now.items():
                    if rss is not None:
                        low[name] = min(low.get(name, rss), rss)
                if count >= next_mark and now["serving"] is not None and now["worker"] is not None:
                    line = f"{count:6d} evaluations  {time.monotonic() - started:6.0f}s"
                    for name, rss in now.items():
                        samples[f"{name} sample"].append((count, rss))
                        samples[f"{name} floor"].append((count, low[name]))
                        line += f"  {name} {rss / 1024:6.1f} MiB (floor {low[name] / 1024:6.1f})"
                    print(line, flush=True)
                    low = {}
                    next_mark = count - count % 100 + 100
                if count >= args.evaluations:
                    break
                time.sleep(0.25)
        finally:
            process.terminate()
            process.wait(timeout=60)
        elapsed = time.monotonic() - started
        print(f"\n{datetime.now(UTC):%Y-%m-%d} · {count} evaluations in {elapsed:.0f} s "
              f"({count / elapsed:.1f}/s), every phase back to back (demo environment)")
        for name, points in samples.items():
            after = [(x, y) for x, y in points if x >= args.warmup]
            if not after:
                continue
            growth = (after[-1][1] - after[0][1]) / 1024
            first, last = after[0][1] / 1024, after[-1][1] / 1024
            per_evaluation, error = slope(after)
            print(
                f"{name:15s} RSS {first:6.1f} → {last:6.1f} MiB after {args.warmup} evaluations "
                f"({growth:+.1f} MiB); slope {per_evaluation:+.2f} ± {error:.2f} KiB per evaluation"
            )
        print(f"worker processes seen: {len(workers)} (1 = never replaced)")


if __name__ == "__main__":
    main()
