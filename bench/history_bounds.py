"""A learned threshold's reading of history: 28 days of `prod-soak` at 5-minute intervals
(8,064 records, each the size of a real verdict, one check tracking a column in 4 groups),
judged per hour of day — reading the records, marking what is left out, learning the band —
against the soak coverage read from the same ledger (stored facts, one indexed query) and
against a baseline of the last 20 passing evaluations (the newest 200 records).

    .venv/bin/python bench/history_bounds.py [--records 8064] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import PROJECT
from soak_ledger import AS_OF, INTERVAL, PHASE, document, timed

from gatecheck.config import load_project
from gatecheck.config.models import Baseline, Learned
from gatecheck.evaluation.gate import _from_history
from gatecheck.evaluation.plan import plan_checks, window_for
from gatecheck.ledger import Ledger, SqliteLedger
from gatecheck.ledger.postgresql import PostgresLedger
from gatecheck.results import GroupValue, Outcome, Tracked

TRACKED = "freshness_lag"


def fill(ledger: Ledger, records: int) -> None:
    template = document(AS_OF, False)
    for i in range(records):
        moment = AS_OF - INTERVAL * (records - i)
        window = window_for(moment, timedelta(hours=1), timedelta(minutes=10))
        checks = [
            c.model_copy(
                update={
                    "window": window,
                    "tracked": Tracked(
                        column="ingest_lag_s",
                        groups=[
                            GroupValue(group={"table": f"t{g}"}, value=10.0 + (i % 12) + g) for g in range(4)
                        ],
                    ),
                }
            )
            if c.suite == TRACKED
            else c.model_copy(update={"window": window})
            for c in template.checks
        ]
        ledger.record(template.model_copy(update={"as_of": moment, "checks": checks}), 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=8064)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    project = load_project(PROJECT, environ={})
    gate = project.gate(PHASE)
    learned = Learned.model_validate({"column": "ingest_lag_s", "season": "hour_of_day", "training": "28d"})
    baseline = Baseline.model_validate({"column": "ingest_lag_s", "max_ratio": 1.5})
    print(
        f"{datetime.now(UTC):%Y-%m-%d} · {PHASE}: {args.records} records at 5-minute intervals,"
        f" {TRACKED} tracked in 4 groups · median of {args.repeat}"
    )
    print(
        f"{'ledger':<11} {'learned':>9} {'baseline':>9} {'soak facts':>11} {'learned/soak':>13}"
        f" {'read: column':>10} {'documents':>12} {'doc/column':>10}"
    )
    since = AS_OF - timedelta(days=7, minutes=30)  # the soak's span
    start = AS_OF - timedelta(days=28, hours=1, minutes=10)  # the learned band's
    with tempfile.TemporaryDirectory() as tmp:
        ledgers: list[tuple[str, Ledger]] = [("sqlite", SqliteLedger(Path(tmp) / "h.db"))]
        try:
            from gatecheck.demo.database import EmbeddedPostgres

            server = EmbeddedPostgres(Path(tmp) / "pg")
            server.start()
            ledgers.append(("postgresql", PostgresLedger(str(server.url("bench")))))
        except Exception as exc:  # the figures of SQLite still stand
            print(f"(no PostgreSQL: {exc})")
            server = None
        for name, ledger in ledgers:
            fill(ledger, args.records)
            figures = []
            for rule in (learned, baseline):
                plans = plan_checks(project, gate, AS_OF)
                index = next(
                    k for k, p in enumerate(plans) if p.suite.name == TRACKED and p.role == "required"
                )
                key = "learned" if rule is learned else "baseline"
                plans[index] = plans[index].__class__(**{**plans[index].__dict__, key: rule})
                current = document(AS_OF, False).checks
                current[index] = current[index].model_copy(
                    update={"tracked": Tracked(column="ingest_lag_s", groups=[
                        GroupValue(group={"table": f"t{g}"}, value=12.0) for g in range(4)
                    ])}
                )  # fmt: skip

                def judge(ledger: Ledger = ledger, plans: list = plans, current: list = current) -> object:
                    return asyncio.run(_from_history(ledger, PHASE, plans, current, [], AS_OF, None))

                seconds, found = timed(judge, args.repeat)
                judged = found[index]  # type: ignore[index]
                assert judged.history is not None and judged.outcome is Outcome.PASS, judged.reason
                figures.append((seconds, len(judged.history.records)))
            soak_s, _ = timed(lambda ledger=ledger: ledger.soak_points(PHASE, since, AS_OF), args.repeat)
            # the same records read from the documents (the contract's fallback): the old route
            stored_s, stored = timed(
                lambda ledger=ledger: ledger.tracked_history(PHASE, start, AS_OF), args.repeat
            )
            documents_s, documents = timed(
                lambda ledger=ledger: Ledger.tracked_history(ledger, PHASE, start, AS_OF), args.repeat
            )
            assert stored == documents, "the two routes must agree"
            (learned_s, learned_n), (baseline_s, baseline_n) = figures
            print(
                f"{name:<11} {learned_s * 1000:>7.0f}ms {baseline_s * 1000:>7.0f}ms {soak_s * 1000:>9.1f}ms"
                f" {learned_s / soak_s:>12.0f}x {stored_s * 1000:>8.0f}ms {documents_s * 1000:>10.0f}ms"
                f" {documents_s / stored_s:>9.1f}x   (learned from {learned_n} records of its hour,"
                f" baseline from {baseline_n})"
            )
            ledger.close()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
