"""Benchmark: a cold `gatecheck run`, split by stage, and `gatecheck run --url`.

    .venv/bin/python bench/cli.py [--repeat 3]

Builds the demo warehouse in a temp directory, then for `--repeat` fresh interpreters times
each stage of `gatecheck run --phase warehouse-release`: interpreter start, imports,
configuration, source queries, Great Expectations validation (first use includes its
import), rendering. Then starts the service in-process and times `gatecheck run --url`
(a fresh interpreter each) against it. Prints medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from common import copy_config

# Runs in the child: times every stage and prints them as JSON.
CHILD = r"""
import time, json, sys
t0 = time.perf_counter()
import asyncio
from gatecheck import cli
from gatecheck.evaluation import gate
from gatecheck.evaluation import validation as runner
from gatecheck.sources import clickhouse
t1 = time.perf_counter()
from gatecheck.config import load_project
project = load_project(sys.argv[1])
t2 = time.perf_counter()
spent = {"queries": 0.0, "validation": 0.0}
original_query, original_judge = clickhouse.ClickHouseSource.query, gate.judge
async def timed_query(self, *a, **k):
    s = time.perf_counter()
    try:
        return await original_query(self, *a, **k)
    finally:
        spent["queries"] += time.perf_counter() - s
def timed_judge(*a, **k):
    s = time.perf_counter()
    try:
        return original_judge(*a, **k)
    finally:
        spent["validation"] += time.perf_counter() - s
clickhouse.ClickHouseSource.query = timed_query
gate.judge = timed_judge
from gatecheck.evaluation.engine import Engine
async def through_engine():
    async with Engine(project, ledger=None) as engine:
        return (await engine.evaluate("warehouse-release", record=False)).verdict
verdict = asyncio.run(through_engine())
t3 = time.perf_counter()
from gatecheck.render import render
render(verdict, "text")
t4 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "configuration": t2 - t1, "evaluate": t3 - t2,
                  "queries": spent["queries"], "validation": spent["validation"], "rendering": t4 - t3,
                  "verdict": verdict.verdict.value}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from gatecheck.config import load_project
    from gatecheck.demo.bus import free_port
    from gatecheck.demo.reference import build_reference
    from gatecheck.ledger import SqliteLedger
    from gatecheck.service.core import Service
    from gatecheck.service.server import make_server, run_service
    from gatecheck.sources.clickhouse.connection import ClickHouse, Target

    with tempfile.TemporaryDirectory() as tmp:
        root = copy_config(Path(tmp))
        with ClickHouse() as clickhouse:
            connection = clickhouse.connect(Target.parse("chdb://.gatecheck/warehouse", root), create=True)
            build_reference(connection, "default", datetime.now(UTC).replace(microsecond=0))
        env = {
            "PATH": str(Path(sys.executable).parent),
            "GATECHECK_HISTORY_URL": f"sqlite:///{root / 'h.db'}",
        }
        stages: dict[str, list[float]] = {}
        walls, interpreter = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            bare = subprocess.run([sys.executable, "-c", "pass"], check=True)
            interpreter.append(time.perf_counter() - started)
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(root)],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            walls.append(time.perf_counter() - started)
            for stage, value in json.loads(done.stdout.strip().splitlines()[-1]).items():
                if stage != "verdict":
                    stages.setdefault(stage, []).append(value)
            assert bare.returncode == 0

        # gatecheck run --url against an in-process service (its first evaluation done)
        project = load_project(root, environ={"GATECHECK_HISTORY_URL": f"sqlite:///{root / 'h.db'}"})
        service = Service(project, SqliteLedger(root / "h.db"), ["warehouse-release"])
        port = free_port()
        server = make_server(service, "127.0.0.1", port)
        thread = threading.Thread(target=lambda: asyncio.run(run_service(service, server)), daemon=True)
        thread.start()
        while not service.states["warehouse-release"].verdict:
            time.sleep(0.1)
        gatecheck = str(Path(sys.executable).parent / "gatecheck")
        url_runs = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            subprocess.run(
                [gatecheck, "run", "--phase", "warehouse-release", "--url", f"http://127.0.0.1:{port}"],
                capture_output=True, env=env, check=False,
            )  # fmt: skip
            url_runs.append(time.perf_counter() - started)
        light: dict[str, list[float]] = {}
        for label, argv in (
            ("--help", ["--help"]),
            ("phases", ["phases", "--config", str(root)]),
            ("history", ["history", "--phase", "warehouse-release", "--config", str(root)]),
            ("status --url", ["status", "--url", f"http://127.0.0.1:{port}"]),
        ):
            for _ in range(args.repeat):
                started = time.perf_counter()
                subprocess.run([gatecheck, *argv], capture_output=True, env=env, check=False)
                light.setdefault(label, []).append(time.perf_counter() - started)
        server.should_exit = True
        thread.join(timeout=30)

    median = statistics.median
    print(f"{datetime.now(UTC):%Y-%m-%d} · cold `gatecheck run --phase warehouse-release` (chDB demo data)")
    print(f"  wall time (fresh interpreter): {median(walls) * 1000:7.0f} ms")
    print(f"  interpreter start:             {median(interpreter) * 1000:7.0f} ms")
    for stage in ("imports", "configuration", "evaluate", "queries", "validation", "rendering"):
        note = {"queries": "  (inside evaluate)", "validation": "  (inside evaluate; first use imports GE)"}
        print(f"  {stage + ':':<31}{median(stages[stage]) * 1000:7.0f} ms{note.get(stage, '')}")
    print(f"`gatecheck run --url` against a running service: {median(url_runs) * 1000:.0f} ms")
    for label, runs in light.items():
        print(f"`gatecheck {label}` (cold): {median(runs) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
