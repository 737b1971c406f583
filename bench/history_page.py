"""What a page of `GET /api/v1/phases/{phase}/history` costs where the ledger is read: every
record of the page read with its document and built into a verdict to be summarized (the
baseline: what the endpoint did before 2026-12-07, the records then pickled from the
evaluation worker to the serving process) against each stored document summarized as its row
is read (`Ledger.summaries`). Peak Python memory (tracemalloc), CPU and the bytes that cross
between the processes, side by side on one ledger; then, with `--serve`, a real `gatecheck
serve` on that ledger under concurrent requests: the serving process's and the worker's peak
RSS.

    .venv/bin/python bench/history_page.py [--records 5000] [--repeat 3] [--serve 32]

The ledger: SQLite, ``--records`` copies of a real `warehouse-release` verdict (~10 KB, from
an evaluation of the reference warehouse on chDB), 5 minutes apart.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from common import PROJECT, copy_config

from gatecheck._values import document_time
from gatecheck.config import load_project
from gatecheck.demo.reference import build_reference
from gatecheck.evaluation.engine import Engine
from gatecheck.ledger import Record, SqliteLedger
from gatecheck.results import Outcome
from gatecheck.sources.clickhouse.connection import ClickHouse, Target

PHASE = "warehouse-release"


def summary_as_before(record: Record) -> dict[str, Any]:
    """The endpoint's summary before 2026-12-07: the whole verdict built from the document."""
    whole = record.to_verdict()
    return {
        "phase": record.phase,
        "environment": record.environment,
        "as_of": document_time(record.as_of),
        "verdict": record.verdict.value,
        "checks_passed": record.checks_passed,
        "duration_s": round(record.duration_s, 3),
        "config_hash": record.config_hash,
        "gatecheck_version": record.gatecheck_version,
        "recorded_at": document_time(record.recorded_at),
        "not_passed": {c.suite: c.outcome.value for c in whole.checks if c.outcome is not Outcome.PASS},
        "waivers": sorted({c.waiver.id for c in whole.checks if c.waiver is not None}),
        "requested_by": whole.requested_by.model_dump() if whole.requested_by is not None else None,
    }


def measured(call: Callable[[], Any], repeat: int) -> tuple[float, float, int]:
    """(peak traced MiB, CPU ms, pickled bytes of the answer), medians of ``repeat``."""
    peaks, cpus, sizes = [], [], []
    for _ in range(repeat):
        tracemalloc.start()
        cpu = time.process_time()
        answer = call()
        cpus.append((time.process_time() - cpu) * 1000)
        peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
        tracemalloc.stop()
        sizes.append(len(pickle.dumps(answer)))
        del answer
    return statistics.median(peaks), statistics.median(cpus), int(statistics.median(sizes))


def served(root: Path, environ: dict[str, str], concurrent: int, records: int, days: int) -> None:
    """A `gatecheck serve` on the ledger, ``concurrent`` requests for a whole page at once."""
    log = root / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gatecheck.cli", "serve", "--config", str(root / "config"),
             "--listen", "127.0.0.1:0"],
            env=environ, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        base = ""
        deadline = time.monotonic() + 120
        while not base and time.monotonic() < deadline:
            for line in log.read_text().splitlines():
                if " serving " in line and "http://" in line:
                    base = "http://" + line.split("http://", 1)[1].split()[0].rstrip(",")
            time.sleep(0.2)
        if not base:
            raise SystemExit(f"gatecheck serve did not start:\n{log.read_text()[-2000:]}")
        worker = subprocess.run(["pgrep", "-f", "forkserver"], capture_output=True, text=True).stdout.split()
        pids = [process.pid, *[int(p) for p in worker]]
        peak = dict.fromkeys(pids, 0)
        started = {p: rss(p) for p in pids}
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                for pid in pids:
                    peak[pid] = max(peak[pid], rss(pid))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        url = f"{base}/api/v1/phases/{PHASE}/history?since={days}d&limit={records}"

        async def ask() -> list[int]:
            async with httpx.AsyncClient(timeout=600) as client:
                answers = await asyncio.gather(*[client.get(url) for _ in range(concurrent)])
                refused = [a for a in answers if a.status_code != 200]
                if refused:
                    first = refused[0]
                    raise SystemExit(f"{len(refused)} answered {first.status_code}: {first.text[:300]}")
                return [len(a.content) for a in answers]

        began = time.perf_counter()
        try:
            sizes = asyncio.run(ask())
        finally:
            done.set()
            watcher.join()
        took = time.perf_counter() - began
        print(f"  served: {concurrent} requests at once for {records} records: {len(sizes)} answered 200 "
              f"({sizes[0] / 1e6:.1f} MB each) in {took:.1f} s")  # fmt: skip
        for pid in pids:
            name = "serving process" if pid == process.pid else f"worker side (pid {pid})"
            print(f"    {name:<28} RSS {started[pid]:6.0f} MiB before, peak {peak[pid]:6.0f} MiB")
    finally:
        process.terminate()
        process.wait(timeout=60)


def rss(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000, help="in the ledger and the page (default 5000)")
    parser.add_argument("--repeat", type=int, default=3, help="median of (default 3)")
    parser.add_argument(
        "--serve", type=int, default=0, metavar="N", help="N concurrent requests to a real service"
    )
    args = parser.parse_args()
    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        warehouse, ledger_path = root / "warehouse", root / "history.db"
        with ClickHouse() as clickhouse:
            build_reference(
                clickhouse.connect(Target.parse(f"chdb://{warehouse}", warehouse), create=True),
                "default",
                now,
            )
        environ = {
            **os.environ,
            "GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}",
            "GATECHECK_HISTORY_URL": f"sqlite:///{ledger_path}",
        }
        project = load_project(PROJECT, environ=environ)

        async def one() -> Any:
            async with Engine(project, ledger=None) as engine:
                return (await engine.evaluate(PHASE, now, record=False)).verdict

        verdict = asyncio.run(one())
        ledger = SqliteLedger(ledger_path)
        for k in range(args.records):
            ledger.record(
                verdict.model_copy(update={"as_of": now - timedelta(minutes=5) * (args.records - k)}), 0.2
            )
        size = len(verdict.model_dump_json())
        days = min(365, args.records * 5 // 1440 + 1)  # every record: 5 minutes apart
        since = now - timedelta(days=days)
        baseline = measured(
            lambda: [summary_as_before(r) for r in ledger.history(PHASE, since, None, None, args.records)],
            args.repeat,
        )
        # what crossed from the worker before: the records themselves
        crossed = len(pickle.dumps(ledger.history(PHASE, since, None, None, args.records)))
        this = measured(lambda: ledger.summaries(PHASE, since, None, args.records), args.repeat)
        print(
            f"{datetime.now(UTC):%Y-%m-%d} · history page of {args.records} records "
            f"({size / 1000:.1f} KB documents), SQLite, median of {args.repeat}"
        )
        print(f"  {'':44} {'peak memory':>12} {'CPU':>10} {'crossing':>12}")
        print(f"  {'records built into verdicts (baseline)':44} {baseline[0]:9.1f} MiB {baseline[1]:7.0f} ms "
              f"{crossed / 2**20:8.1f} MiB")  # fmt: skip
        print(f"  {'each document summarized as read (now)':44} {this[0]:9.1f} MiB {this[1]:7.0f} ms "
              f"{this[2] / 2**20:8.1f} MiB")  # fmt: skip
        print(f"  baseline / now: memory {baseline[0] / this[0]:.1f}x, CPU {baseline[1] / this[1]:.1f}x, "
              f"crossing {crossed / this[2]:.1f}x")  # fmt: skip
        if args.serve:
            copy_config(root / "config", interval="24h")
            served(root, environ, args.serve, args.records, days)


if __name__ == "__main__":
    main()
