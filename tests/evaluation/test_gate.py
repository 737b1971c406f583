"""Gate logic: verdict precedence, advisory checks, requires and soak (no source needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gatecheck.durations import parse_as_of
from gatecheck.errors import ConfigError
from gatecheck.evaluation.decide import check_outcome, decide, undecided_reason, waiting_on
from gatecheck.evaluation.plan import window_for
from gatecheck.results import (
    CheckResult,
    EvidenceResult,
    ExpectationResult,
    Outcome,
    Requirement,
    SoakStatus,
    Threshold,
    Verdict,
    VerdictState,
)

WINDOW = window_for(datetime(2026, 11, 22, 6, tzinfo=UTC), timedelta(hours=1), timedelta(minutes=10))


def result(outcome: Outcome, role: str = "required", name: str = "s") -> CheckResult:
    return CheckResult(
        suite=name, source="warehouse", role=role, outcome=outcome, window=WINDOW, reason=outcome.value
    )


def test_window_is_closed_and_settled() -> None:
    assert WINDOW.start == datetime(2026, 11, 22, 4, 50, tzinfo=UTC)
    assert WINDOW.end == datetime(2026, 11, 22, 5, 50, tzinfo=UTC)


def test_all_required_pass_is_go() -> None:
    verdict, _reasons = decide([result(Outcome.PASS), result(Outcome.PASS)], [], None)
    assert verdict is VerdictState.GO


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([Outcome.PASS, Outcome.FAIL], VerdictState.NO_GO),
        ([Outcome.PASS, Outcome.INCONCLUSIVE], VerdictState.INCONCLUSIVE),
        ([Outcome.PASS, Outcome.ERROR], VerdictState.INCONCLUSIVE),
        ([Outcome.FAIL, Outcome.ERROR], VerdictState.NO_GO),
    ],
)
def test_required_outcomes(outcomes: list[Outcome], expected: VerdictState) -> None:
    assert decide([result(o) for o in outcomes], [], None)[0] is expected


def test_rollback_takes_precedence_over_everything() -> None:
    checks = [
        result(Outcome.FAIL),
        result(Outcome.ERROR),
        result(Outcome.FAIL, role="rollback", name="triggers"),
    ]
    verdict, reasons = decide(checks, [], None)
    assert verdict is VerdictState.ROLLBACK
    assert reasons == ["rollback trigger fired: triggers — fail"]


def test_a_rollback_check_that_errored_blocks_go() -> None:
    checks = [result(Outcome.PASS), result(Outcome.ERROR, role="rollback")]
    assert decide(checks, [], None)[0] is VerdictState.INCONCLUSIVE


def test_advisory_checks_never_change_the_verdict() -> None:
    for outcome in Outcome:
        assert (
            decide([result(Outcome.PASS), result(outcome, role="advisory")], [], None)[0] is VerdictState.GO
        )


def test_only_advisory_checks_cannot_give_go() -> None:
    assert decide([result(Outcome.PASS, role="advisory")], [], None)[0] is VerdictState.INCONCLUSIVE


def test_unmet_requirement_and_uncovered_soak_are_inconclusive() -> None:
    missing = Requirement(phase="staging-deploy", satisfied=False, reason="no recorded GO")
    verdict, reasons = decide([result(Outcome.PASS)], [missing], None)
    assert verdict is VerdictState.INCONCLUSIVE and "staging-deploy" in reasons[0]
    soak = SoakStatus(duration=timedelta(hours=48), max_gap=timedelta(minutes=30), covered=False, reason="0s")
    assert decide([result(Outcome.PASS)], [], soak)[0] is VerdictState.INCONCLUSIVE
    met = Requirement(phase="staging-deploy", satisfied=True, reason="assumed")
    assert decide([result(Outcome.PASS)], [met], None)[0] is VerdictState.GO


def undecided(phase: str, reasons: list[str], requires: list[Requirement] = ()) -> Verdict:
    return Verdict(
        phase=phase, environment="production", as_of=datetime(2026, 11, 22, 6, tzinfo=UTC),
        verdict=VerdictState.INCONCLUSIVE, reasons=reasons, checks=[result(Outcome.PASS)],
        requires=list(requires), config_hash="abc", gatecheck_version="test",
    )  # fmt: skip


def test_an_undecided_phase_says_what_it_waits_on() -> None:
    soak = undecided("staging-soak", ["soak not covered: 0s of 48h covered"])
    assert waiting_on(soak) is None  # a wait of its own
    unmet = Requirement(phase="staging-soak", satisfied=False, reason="no recorded GO of staging-soak")
    waits = undecided("prod-predeploy", ["requires staging-soak: no recorded GO of staging-soak"], [unmet])
    assert waiting_on(waits) == "staging-soak"
    # an unmet requirement that is not its first reason: its first reason is its own
    own = undecided("prod-predeploy", ["stream_topology: no rows", "requires staging-soak: …"], [unmet])
    assert waiting_on(own) is None
    met = Requirement(phase="staging-soak", satisfied=True, reason="GO of staging-soak recorded")
    assert waiting_on(undecided("p", ["requires staging-soak: …"], [met])) is None
    assert waiting_on(undecided("p", [])) is None

    assert undecided_reason("staging-soak", soak, soak) == (
        "no recorded GO of staging-soak (only INCONCLUSIVE): soak not covered: 0s of 48h covered"
    )
    assert undecided_reason("prod-predeploy", waits, soak) == (
        "no recorded GO of prod-predeploy, waiting on staging-soak: soak not covered: 0s of 48h covered"
    )
    # a root that failed: its reason comes last, so a page splits it into its failing groups
    from gatecheck.render.describe import split_reason

    failed = undecided(
        "canary-10",
        [
            "required check failed: stream_topology — replicas must be ≥ 3 (stream_replicas, environment): "
            "stream=AA_CORE_HOT: observed 1; stream=AA_DLQ: observed 1"
        ],
    ).model_copy(update={"verdict": VerdictState.NO_GO})
    headline, groups = split_reason(f"requires canary-50: {undecided_reason('canary-50', waits, failed)}")
    assert headline.startswith(
        "requires canary-50: no recorded GO of canary-50, waiting on canary-10: required"
    )
    assert groups == ["stream=AA_CORE_HOT: observed 1", "stream=AA_DLQ: observed 1"]


def test_as_of_parsing() -> None:
    assert parse_as_of("2026-11-22T06:00:00Z") == datetime(2026, 11, 22, 6, tzinfo=UTC)
    assert parse_as_of("2026-11-22T07:00:00+01:00") == datetime(2026, 11, 22, 6, tzinfo=UTC)
    assert parse_as_of("2026-11-22 06:00") == datetime(2026, 11, 22, 6, tzinfo=UTC)
    with pytest.raises(ConfigError, match="--as-of"):
        parse_as_of("yesterday")


def _expectation(outcome: Outcome, column: str = "c") -> ExpectationResult:
    return ExpectationResult(
        type="expect_column_values_to_be_between",
        column=column,
        outcome=outcome,
        observed_value=1,
        reason=outcome.value,
    )


def _evidence(sufficient: bool) -> EvidenceResult:
    minimum = Threshold(
        name="m", value=10, bound="min", provenance="default", key="thresholds.yaml: defaults.m"
    )
    return EvidenceResult(
        column="n", observed_total=20 if sufficient else 3, min_total=minimum, sufficient=sufficient
    )


@pytest.mark.parametrize(
    ("outcomes", "evidence", "expected"),
    [
        # A definite failure is a failure, whatever the other expectations did.
        ([Outcome.FAIL, Outcome.ERROR], None, Outcome.FAIL),
        ([Outcome.ERROR, Outcome.FAIL, Outcome.INCONCLUSIVE], True, Outcome.FAIL),
        ([Outcome.FAIL, Outcome.PASS], True, Outcome.FAIL),
        # Without a failure: an error is an error, missing values are inconclusive.
        ([Outcome.PASS, Outcome.ERROR, Outcome.INCONCLUSIVE], None, Outcome.ERROR),
        ([Outcome.PASS, Outcome.INCONCLUSIVE], None, Outcome.INCONCLUSIVE),
        # Below the minimum evidence a crossed bound is not yet a finding.
        ([Outcome.FAIL], False, Outcome.INCONCLUSIVE),
        ([Outcome.PASS], False, Outcome.INCONCLUSIVE),
        ([Outcome.PASS, Outcome.PASS], True, Outcome.PASS),
    ],
)
def test_check_outcome(outcomes: list[Outcome], evidence: bool | None, expected: Outcome) -> None:
    expectations = [_expectation(o, f"c{i}") for i, o in enumerate(outcomes)]
    outcome, reason = check_outcome(expectations, None if evidence is None else _evidence(evidence))
    assert outcome is expected
    if expected is Outcome.FAIL and len({*outcomes} - {Outcome.PASS, Outcome.FAIL}):
        assert "also not judged" in (reason or "")  # the errors are listed beside the failure


def test_an_evaluation_stopped_before_its_checks_ran_leaves_no_coroutine_never_awaited() -> None:
    """A SIGTERM can stop an evaluation after its checks' tasks exist but before they first
    ran. Each check's coroutine was made by the caller and handed to the task: never awaited,
    Python warned of it on stderr when it was collected — a line in the stopping service's
    JSON log that is not JSON (tests/service/test_service_process.py saw it once). The check's
    coroutine is now made inside its task, so a task stopped first never makes it."""
    import asyncio
    import gc
    import warnings

    from gatecheck.evaluation import gate

    ran: list[int] = []

    async def check() -> None:
        ran.append(1)

    async def stopped_at_once() -> None:
        jobs = [gate._timed(None, check, None) for _ in range(3)]  # type: ignore[arg-type]
        evaluation = asyncio.ensure_future(gate.every(jobs))
        await asyncio.sleep(0)  # every() made the checks' tasks; none has run
        evaluation.cancel()
        with pytest.raises(asyncio.CancelledError):
            await evaluation

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(stopped_at_once())
        gc.collect()
    assert ran == []
    assert not [w for w in caught if "never awaited" in str(w.message)], [str(w.message) for w in caught]


def test_an_approval_naming_a_release_holds_only_for_that_canarys_requests() -> None:
    """A request naming its canary (Flagger's checksum, Argo's revision) takes only an approval
    of that release: one of another canary, or of none, was given without it in sight (an
    approval of the morning's release passed the afternoon's). An evaluation naming no release
    (a CLI run, the schedule) takes any, as before."""
    from types import SimpleNamespace

    from gatecheck.evaluation.decide import approval_of
    from gatecheck.ledger.audit import AuditEvent

    at = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)

    def approved(minutes: int, release: str | None = None) -> AuditEvent:
        return AuditEvent(
            at=at + timedelta(minutes=minutes), kind="approved", phase="prod", by="heidi", reason="signed off",
            group={"release": release} if release else {}, until=at + timedelta(hours=24),
        )  # fmt: skip

    gate = SimpleNamespace(approval="required", phase="prod")
    ledger = object()  # a ledger is configured; the trail is handed in
    now = at + timedelta(hours=1)

    def judged(trail: list[AuditEvent], release: str | None):  # type: ignore[no-untyped-def]
        return approval_of(gate, trail, None, ledger, now, release)  # type: ignore[arg-type]

    of_none, of_a = [approved(0)], [approved(0, "5d4f8b9c7-1")]
    assert judged(of_none, None).satisfied
    assert judged(of_a, None).satisfied  # the schedule names no canary
    assert judged(of_a, "5d4f8b9c7-1").reason == (
        "approved by heidi at 2026-11-22T06:00:00Z for release 5d4f8b9c7-1: signed off"
    )
    refused = judged(of_none, "7d0ae9786c")
    assert not refused.satisfied and refused.reason == (
        "no approval of prod for release 7d0ae9786c in force: the one by heidi at 2026-11-22T06:00:00Z is "
        "of no release, given without this canary in sight (gatecheck approve --phase prod --release 7d0ae9786c)"
    )
    other = judged(of_a, "7d0ae9786c")
    assert not other.satisfied and "is of release 5d4f8b9c7-1" in other.reason
    # the canary's own approval stands even when a newer one is of another release
    assert judged([approved(0, "7d0ae9786c"), approved(5, "5d4f8b9c7-1")], "7d0ae9786c").satisfied
    assert not judged([], "7d0ae9786c").satisfied and judged([], "7d0ae9786c").reason == (
        "no approval of prod in force (gatecheck approve --phase prod --release 7d0ae9786c)"
    )
