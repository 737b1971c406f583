"""Soak coverage of `prod-soak` (7 days at 5-minute intervals = 2,016 records) from the ledger:
the stored facts (`Ledger.soak_points`, one indexed query of three columns) against the old
route, re-validating every recorded verdict document of the window.

    .venv/bin/python bench/soak_ledger.py [--records 2016] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import PROJECT

from gatecheck.config import load_project
from gatecheck.evaluation.decide import soak_coverage
from gatecheck.evaluation.plan import window_for
from gatecheck.ledger import ClickHouseLedger, Ledger, SqliteLedger
from gatecheck.results import (
    CheckResult,
    EvidenceResult,
    ExpectationResult,
    FailingGroup,
    Outcome,
    Threshold,
    Verdict,
    VerdictState,
    checks_failed,
)

PHASE = "prod-soak"
AS_OF = datetime(2026, 11, 22, 6, tzinfo=UTC)
INTERVAL = timedelta(minutes=5)


def document(as_of: datetime, failing: bool) -> Verdict:
    """A verdict the size of a real prod-soak one: every check of the gate with its suite's
    expectations, thresholds with provenance, and a few groups per expectation."""
    project = load_project(PROJECT, environ={})
    gate = project.gate(PHASE)
    thresholds = project.resolve_thresholds(PHASE)
    checks = []
    for role, refs in (("required", gate.checks), ("rollback", gate.rollback)):
        for ref in refs:
            suite = project.suites[ref.suite]
            expectations = []
            for spec in suite.expectations:
                found = [
                    Threshold(name=t.name, value=t.value, bound="max", provenance=t.provenance, key=t.key)
                    for name, value in spec.kwargs.items()
                    if isinstance(value, dict)
                    and (t := thresholds.get(value.get("$PARAMETER", ""))) is not None
                ]
                groups = [FailingGroup(group={"group": f"g{i}"}, observed_value=0.5 + i) for i in range(3)]
                outcome = Outcome.FAIL if failing else Outcome.PASS
                expectations.append(
                    ExpectationResult(
                        type=spec.type, column=spec.kwargs.get("column"), outcome=outcome,
                        observed_value=0.25, thresholds=found, failing_groups=groups if failing else [],
                    )
                )  # fmt: skip
            evidence = EvidenceResult(
                column="n", observed_total=1000,
                min_total=Threshold(name="m", value=100, bound="min", provenance="default", key="k"),
                sufficient=True,
            )  # fmt: skip
            checks.append(
                CheckResult(
                    suite=suite.name, description=suite.description, source=suite.source,
                    role=role,  # type: ignore[arg-type]
                    window=window_for(as_of, timedelta(hours=1), timedelta(minutes=10)),
                    outcome=Outcome.FAIL if failing else Outcome.PASS, source_available=True, rows=4,
                    evidence=evidence, expectations=expectations,
                )
            )  # fmt: skip
    return Verdict(
        phase=PHASE, environment="production", description=gate.description, as_of=as_of,
        verdict=VerdictState.NO_GO if failing else VerdictState.GO, reasons=["bench"], checks=checks,
        config_hash="bench", gatecheck_version="bench",
    )  # fmt: skip


def fill(ledger: Ledger, records: int) -> None:
    good, bad = document(AS_OF, False), document(AS_OF, True)
    for i in range(records):
        moment = AS_OF - INTERVAL * (records - 1 - i)
        template = bad if i % 97 == 0 else good
        ledger.record(template.model_copy(update={"as_of": moment}), 0.5)


def old_route(ledger: Ledger, since: datetime) -> list[tuple[datetime, bool, bool]]:
    """What soak coverage did before: every record's document, re-validated."""
    records = ledger.history(PHASE, since, AS_OF)
    return [(r.as_of, r.checks_passed, checks_failed(r.to_verdict())) for r in records]


def timed(call, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2016)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    duration, max_gap = timedelta(days=7), timedelta(minutes=30)
    since = AS_OF - duration - max_gap
    print(
        f"{datetime.now(UTC):%Y-%m-%d} · {PHASE}: {args.records} records at 5-minute intervals"
        f" · median of {args.repeat}"
    )
    print(f"{'ledger':<8} {'old route':>11} {'stored facts':>13} {'old/new':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        ledgers: list[tuple[str, Ledger]] = [
            ("sqlite", SqliteLedger(Path(tmp) / "h.db")),
            ("chdb", ClickHouseLedger(f"chdb://{tmp}/chdb?database=bench", Path(tmp))),
        ]
        for name, ledger in ledgers:
            fill(ledger, args.records)
            old_s, old_points = timed(lambda ledger=ledger: old_route(ledger, since), args.repeat)
            new_s, new_points = timed(
                lambda ledger=ledger: ledger.soak_points(PHASE, since, AS_OF), args.repeat
            )
            assert old_points == new_points, "the two routes must agree"
            status = soak_coverage(new_points, AS_OF, duration, max_gap)  # type: ignore[arg-type]
            print(
                f"{name:<8} {old_s * 1000:>9.1f}ms {new_s * 1000:>11.1f}ms {old_s / new_s:>7.1f}x"
                f"   ({status.reason})"
            )
            ledger.close()


if __name__ == "__main__":
    main()
