"""Benchmark: the status pages server-side, 9 phases with 2,000 ledger records each.

    .venv/bin/python bench/pages.py [--records 2000] [--repeat 30]

Evaluates warehouse-release once on a chDB reference warehouse (a real verdict document,
four checks), records copies of it for each of the 9 reference phases — --records per phase
over the last 7 days, verdicts cycling GO / NO-GO / INCONCLUSIVE / ROLLBACK — into a SQLite
ledger, then times, side by side:

- the chain page (`GET /`) rendered server-side: the ledger reads of every phase (its latest
  verdict and its timeline) and the template, cold (every read from the ledger) and as the
  service serves it (its reads kept for a few seconds);
- `GET /` and `GET /phases/warehouse-release` through the service's ASGI app;
- the baseline: `GET /api/v1/phases`, the JSON listing of the same chain.

and prints each against the 50 ms budget of issue "status page". No request evaluates.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from common import PROJECT

from gatecheck.config import load_project
from gatecheck.demo.reference import build_reference
from gatecheck.evaluation.engine import Engine
from gatecheck.ledger import SqliteLedger
from gatecheck.render.html import render_chain
from gatecheck.results import VerdictState
from gatecheck.service.app import create_app
from gatecheck.service.core import Service
from gatecheck.sources.clickhouse.connection import ClickHouse, Target

BUDGET_MS = 50.0


class NoEvaluations:
    async def evaluate(self, phase: str, **_: object) -> object:
        raise AssertionError("a page started an evaluation")

    async def aclose(self) -> None:
        return None


def timed(call: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``call`` in ms."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = Path(tmp) / "warehouse"
        with ClickHouse() as clickhouse:
            build_reference(
                clickhouse.connect(Target.parse(f"chdb://{warehouse}", warehouse), create=True),
                "default",
                now,
                "unmatched-edges",
            )
        ledger_path = Path(tmp) / "history.db"
        environ = {
            **os.environ,
            "GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}",
            "GATECHECK_HISTORY_URL": f"sqlite:///{ledger_path}",
        }
        project = load_project(PROJECT, environ=environ)

        async def one() -> object:
            async with Engine(project, ledger=None) as engine:
                return (await engine.evaluate("warehouse-release", now, record=False)).verdict

        verdict = asyncio.run(one())
        ledger = SqliteLedger(ledger_path)
        states = list(VerdictState)
        started = time.perf_counter()
        step = timedelta(days=7) / args.records
        for gate in project.chain():
            for k in range(args.records):
                copy = verdict.model_copy(  # type: ignore[attr-defined]
                    update={
                        "phase": gate.phase,
                        "environment": gate.environment,
                        "as_of": now - step * (args.records - k),
                        "verdict": states[(k // 50) % len(states)],
                    }
                )
                ledger.record(copy, 0.2)
        print(
            f"{datetime.now(UTC):%Y-%m-%d} · status pages · {len(project.gates)} phases × {args.records} "
            f"records ({time.perf_counter() - started:.1f}s to record)"
        )
        service = Service(project, ledger, [], engine=NoEvaluations())  # type: ignore[arg-type]

        def cold() -> None:
            service._page_reads.clear()
            render_chain(service.chain_cards(now), now, 60)

        def warm() -> None:
            render_chain(service.chain_cards(now), now, 60)

        figures = {
            "chain page, every ledger read (cold)": timed(cold, args.repeat),
            "chain page, as served (reads kept 5 s)": timed(warm, args.repeat),
        }
        async def http() -> dict[str, float]:
            transport = httpx.ASGITransport(app=create_app(service))
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                found: dict[str, float] = {}
                for label, path in (
                    ("GET /", "/"),
                    ("GET /phases/warehouse-release", "/phases/warehouse-release"),
                    ("GET /api/v1/phases (baseline)", "/api/v1/phases"),
                ):
                    times = []
                    for _ in range(args.repeat):
                        service._page_reads.clear()
                        started = time.perf_counter()
                        response = await client.get(path)
                        times.append((time.perf_counter() - started) * 1000)
                        assert response.status_code == 200, response.text[:300]
                    found[label + " (cold)"] = statistics.median(times)
                return found

        figures.update(asyncio.run(http()))
        for label, ms in figures.items():
            print(f"  {label:<48} {ms:8.1f} ms   {ms / BUDGET_MS:5.2f}x of the 50 ms budget")


if __name__ == "__main__":
    main()
