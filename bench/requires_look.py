"""What the service's look at `requires` costs now that a required GO must still rest on what
it required, up the chain (2026-12-07): every scheduled phase's GO judged again, each link of
the chain judged once for the whole look (a shared ``gate.Look``) against each phase's
requirements judged on their own (no sharing: every phase re-reads the chain above it), side
by side on one ledger, as a ratio; and an evaluation's own look (one phase, its chain above).

    .venv/bin/python bench/requires_look.py [--repeat 20] [--backend sqlite|postgresql]

The ledger: a GO of every phase of the reference chain, each recording the requirements it
met, as the service records them. ``postgresql``: the embedded PostgreSQL server.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import PROJECT

from gatecheck.config import load_project
from gatecheck.evaluation.gate import Look, requirement_at
from gatecheck.ledger import Ledger, open_ledger
from gatecheck.results import Requirement, Verdict, VerdictState


def fill(ledger: Ledger, project: object, chain: list[str]) -> None:
    as_of = datetime.now(UTC) - timedelta(minutes=5)
    for i, phase in enumerate(chain):
        gate = project.gates[phase]  # type: ignore[attr-defined]
        met = [Requirement(phase=r, satisfied=True, reason=f"GO of {r} recorded") for r in gate.requires]
        verdict = Verdict(
            phase=phase, environment=gate.environment, as_of=as_of + timedelta(seconds=i),
            verdict=VerdictState.GO, reasons=["bench"], checks=[], config_hash="bench",
            gatecheck_version="bench", requires=met,
        )  # fmt: skip
        ledger.record(verdict, 0.1)


async def look(project: object, ledger: Ledger, chain: list[str], shared: bool) -> tuple[float, int]:
    """One look over every phase's requirements; seconds and how many requirements were asked."""
    memo = Look() if shared else None
    began = time.perf_counter()
    asked = 0
    for phase in chain:
        for required in project.gates[phase].requires:  # type: ignore[attr-defined]
            found = await requirement_at(project, phase, required, ledger, datetime.now(UTC), None, memo=memo)  # type: ignore[arg-type]
            assert found.satisfied, found.reason
            asked += 1
    return time.perf_counter() - began, asked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    project = load_project(PROJECT, environ={"GATECHECK_CLICKHOUSE_URL": "chdb:///nonexistent"})
    chain = [g.phase for g in project.chain()]
    with tempfile.TemporaryDirectory() as scratch:
        server = None
        if args.backend == "postgresql":
            from gatecheck.demo.database import EmbeddedPostgres

            server = EmbeddedPostgres(Path(scratch) / "pg").start()
            url = server.fresh_url("bench_requires")
        else:
            url = f"sqlite:///{Path(scratch) / 'l.db'}"
        try:
            ledger = open_ledger(url, Path(scratch))
            fill(ledger, project, chain)

            async def run() -> dict[str, list[float]]:
                times: dict[str, list[float]] = {"shared": [], "apart": [], "one": []}
                for _ in range(args.repeat):
                    for shared, key in ((True, "shared"), (False, "apart")):
                        took, _ = await look(project, ledger, chain, shared)
                        times[key].append(took)
                    began = time.perf_counter()  # an evaluation of the last phase: its chain above
                    last = chain[-2]  # prod-soak (warehouse-release stands alone)
                    for required in project.gates[last].requires:
                        await requirement_at(project, last, required, ledger, datetime.now(UTC), None)
                    times["one"].append(time.perf_counter() - began)
                return times

            times = asyncio.run(run())
            ledger.close()
        finally:
            if server is not None:
                server.stop()
    asked = sum(len(project.gates[p].requires) for p in chain)
    shared, apart, one = (statistics.median(times[k]) for k in ("shared", "apart", "one"))
    what = f"the reference chain ({len(chain)} phases, {asked} requirements)"
    print(f"{args.backend} ledger, {what}, median of {args.repeat}:")
    print(f"  the service's look, each link once (gate.Look shared): {shared * 1000:.1f} ms")
    ratio = apart / shared
    print(f"  each phase's requirements on their own (no sharing):   {apart * 1000:.1f} ms = {ratio:.1f}x")
    print(f"  an evaluation of {chain[-2]}: its requirement up the chain: {one * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
