"""Verdicts over time: accumulation rules, deadlines and shadow checks.

The rules are pure functions, tested on plain outcomes first; then on real evaluations — a
chDB table of hourly readings judged hour by hour and recorded in SQLite and PostgreSQL
ledgers — where each step's verdict must be what the rule says, and a backtest over the same
hours must give exactly what the recorded runs gave."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from gatecheck.config import load_project
from gatecheck.config.models import Baseline, Deadline, FailAfter, Learned, PassAfter
from gatecheck.evaluation.decide import decide
from gatecheck.evaluation.engine import Engine
from gatecheck.evaluation.overtime import accumulate, apply_deadline, shadow_report
from gatecheck.evaluation.plan import window_for
from gatecheck.ledger import Ledger, SqliteLedger
from gatecheck.ledger.audit import AuditEvent
from gatecheck.ledger.postgresql import PostgresLedger
from gatecheck.results import CheckResult, Outcome, Verdict, VerdictState

from ..ledger.test_ledger import fresh_database

HOUR = timedelta(hours=1)
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
P, F, I = Outcome.PASS, Outcome.FAIL, Outcome.INCONCLUSIVE  # noqa: E741


def check(outcome: Outcome, role: str = "required", suite: str = "s") -> CheckResult:
    return CheckResult(
        suite=suite, source="warehouse", role=role, outcome=outcome, reason=f"it was {outcome.value}",
        window=window_for(T0, HOUR, timedelta(0)),
    )  # fmt: skip


# ------------------------------------------------------------------ the rules, pure


@pytest.mark.parametrize(
    ("earlier", "now", "expected", "account"),
    [
        # exactly k of n: fails, and says so
        ([F, P, F, P], F, F, "3 of the last 5 evaluations failed"),
        # k - 1 of n with this one failing: no GO on a failing check, but not a failure yet
        ([P, P, F, P], F, I, "2 of the last 5 evaluations failed; it fails at 3 of 5"),
        # this one passed but k of the last n failed: it still fails until they age out
        ([F, F, F, P], P, F, "3 of the last 5 evaluations failed (this one pass)"),
        # the failures aged out: only the last n count
        ([F, F, F, P, P, P, P], P, P, None),
        # a gap: an evaluation without the check (None) or inconclusive is no failure
        ([F, None, I, F], P, P, None),
        # fewer evaluations than n so far: k failures among them still fail
        ([F, F], F, F, "3 of the last 3 evaluations failed"),
    ],
)
def test_k_of_n_failures(
    earlier: list[Outcome | None], now: Outcome, expected: Outcome, account: str | None
) -> None:
    judged = accumulate(check(now), FailAfter(failures=3, of=5), None, earlier)
    assert judged.outcome is expected
    assert judged.accumulation == account
    assert judged.measured is now
    if expected is F and now is F:
        assert judged.reason == f"{account}: it was fail"  # the reason names the rule, then why


@pytest.mark.parametrize(
    ("earlier", "now", "expected", "account"),
    [
        ([P, F, F], F, F, "the last 3 evaluations failed"),
        ([F, P, F], F, I, "2 consecutive evaluations failed; it fails after 3"),
        ([F, F, I], F, I, "1 consecutive evaluation failed; it fails after 3"),  # broken by an inconclusive
        ([F, F, F], P, P, None),
    ],
)
def test_consecutive_failures(
    earlier: list[Outcome], now: Outcome, expected: Outcome, account: str | None
) -> None:
    judged = accumulate(check(now), FailAfter(consecutive=3), None, earlier)
    assert (judged.outcome, judged.accumulation) == (expected, account)


@pytest.mark.parametrize(
    ("earlier", "now", "expected", "account"),
    [
        ([F, P, P], P, P, "passed the last 3 evaluations"),
        ([P, F, P], P, I, "passed 2 consecutive evaluations; it passes after 3"),
        ([], P, I, "passed 1 consecutive evaluation; it passes after 3"),
        ([P, P, P], F, F, None),  # pass_after never softens a failure
    ],
)
def test_consecutive_passes(
    earlier: list[Outcome], now: Outcome, expected: Outcome, account: str | None
) -> None:
    judged = accumulate(check(now), None, PassAfter(consecutive=3), earlier)
    assert (judged.outcome, judged.accumulation) == (expected, account)


def test_passes_judged_by_another_gate_definition_earn_no_pass_after_run_and_failures_still_count() -> None:
    """A threshold tightened after two passes: those passes were judged by another gate, so
    `pass_after: {consecutive: 3}` starts again; a failure under the old gate still fails
    `fail_after` (failures are never forgotten by a change)."""
    from gatecheck.evaluation.overtime import earlier_outcomes

    def document(outcome: Outcome, digest: str) -> dict[str, Any]:
        return {"gate_digest": digest, "checks": [check(outcome).model_dump(mode="json")]}

    documents = [document(P, "old"), document(P, "old"), document(P, "now")]
    earlier = earlier_outcomes(documents, "s", "required", "now")
    assert earlier == [None, None, P]
    judged = accumulate(check(P), None, PassAfter(consecutive=3), earlier)
    assert (judged.outcome, judged.accumulation) == (I, "passed 2 consecutive evaluations; it passes after 3")
    # The same passes under today's gate (or recorded before digests were kept) earn it.
    same = earlier_outcomes([document(P, "now"), document(P, ""), document(P, "now")], "s", "required", "now")
    assert accumulate(check(P), None, PassAfter(consecutive=3), same).outcome is P
    failed = earlier_outcomes([document(F, "old"), document(F, "old")], "s", "required", "now")
    assert failed == [F, F]
    assert accumulate(check(F), FailAfter(consecutive=3), None, failed).outcome is F


def test_invalidated_evaluations_count_neither_as_passes_nor_as_failures() -> None:
    """Evaluations a person invalidated (`gatecheck invalidate`) are no evidence either way:
    two invalidated passes earn no `pass_after` run, two invalidated failures bring no
    `fail_after` closer; the others count as before."""
    from gatecheck.evaluation.overtime import earlier_outcomes

    moments = [T0 + k * HOUR for k in range(3)]

    def documents(outcome: Outcome) -> list[dict[str, Any]]:
        return [
            {"as_of": at.isoformat().replace("+00:00", "Z"), "checks": [check(outcome).model_dump(mode="json")]}
            for at in moments
        ]

    void = {moments[0], moments[1]}
    passes = earlier_outcomes(documents(P), "s", "required", invalidated=void)
    assert passes == [None, None, P]
    assert accumulate(check(P), None, PassAfter(consecutive=4), passes).outcome is I
    assert accumulate(check(P), None, PassAfter(consecutive=4), earlier_outcomes(documents(P), "s", "required")).outcome is P
    failures = earlier_outcomes(documents(F), "s", "required", invalidated=void)
    assert failures == [None, None, F]
    assert accumulate(check(F), FailAfter(consecutive=3), None, failures).outcome is I
    assert accumulate(check(F), FailAfter(consecutive=3), None, earlier_outcomes(documents(F), "s", "required")).outcome is F


def test_passes_before_a_release_was_deployed_earn_no_pass_after_run() -> None:
    """`pass_after: {consecutive: 3}` asks three passes of what is deployed: two passes of the
    release before (`gatecheck deployed` since) and this one were three, and the new release's
    first evaluation passed on them. Its failures still count, as a gate change leaves them."""
    from gatecheck.evaluation.overtime import earlier_outcomes

    moments = [T0 + k * HOUR for k in range(3)]

    def documents(outcome: Outcome) -> list[dict[str, Any]]:
        return [
            {"as_of": at.isoformat().replace("+00:00", "Z"), "checks": [check(outcome).model_dump(mode="json")]}
            for at in moments
        ]

    deployed = moments[2] - HOUR / 2  # between the second and the third
    passes = earlier_outcomes(documents(P), "s", "required", deployed_at=deployed)
    assert passes == [None, None, P]
    judged = accumulate(check(P), None, PassAfter(consecutive=3), passes)
    assert (judged.outcome, judged.accumulation) == (I, "passed 2 consecutive evaluations; it passes after 3")
    assert accumulate(check(P), None, PassAfter(consecutive=3), earlier_outcomes(documents(P), "s", "required")).outcome is P
    assert earlier_outcomes(documents(F), "s", "required", deployed_at=deployed) == [F, F, F]


def test_an_unreadable_ledger_leaves_a_rule_unjudged_never_passed() -> None:
    problem = "cannot read the history ledger: database is locked"
    failed = accumulate(check(F), FailAfter(failures=2, of=3), None, problem)
    assert failed.outcome is I and failed.reason == f"failed, but {problem}: it was fail"
    passed = accumulate(check(P), None, PassAfter(consecutive=2), problem)
    assert passed.outcome is I and passed.reason == f"passed, but {problem}"
    # a rule that needs no earlier evaluation judges without them
    assert accumulate(check(F), FailAfter(consecutive=1), None, problem).outcome is F


def test_a_misconfigured_rule_is_refused_in_one_line(config_copy: Path) -> None:
    from gatecheck.errors import ConfigError

    cases = [
        ({"fail_after": {"failures": 3}}, "failures and of go together"),
        ({"fail_after": {"failures": 4, "of": 3}}, "failures (4) cannot exceed of (3)"),
        ({"fail_after": {"failures": 1, "of": 2, "consecutive": 2}}, "give either failures and of"),
        ({"fail_after": {"consecutive": 0}}, "greater than or equal to 1"),
        ({"pass_after": {"consecutive": 101}}, "less than or equal to 100"),
        ({"required": False, "enforce": False}, "enforce: false on an advisory check"),
        ({"fail_after": {"within": "2h", "consecutive": 2}}, "within"),
    ]
    path = config_copy / "gates" / "staging-soak.yaml"
    original = yaml.safe_load(path.read_text())
    for change, problem in cases:
        gate = json.loads(json.dumps(original))
        gate["checks"][0].update(change)
        path.write_text(yaml.safe_dump(gate))
        with pytest.raises(ConfigError) as caught:
            load_project(config_copy, environ={})
        found = [p for p in caught.value.problems if "staging-soak" in p]
        assert len(found) == 1 and problem in found[0], (change, caught.value.problems)
        assert "checks[0]" in found[0]
    gate = json.loads(json.dumps(original))
    gate["deadline"] = {"inconclusive_for": "2h", "then": "page"}
    path.write_text(yaml.safe_dump(gate))
    with pytest.raises(ConfigError, match=r"deadline\.then"):
        load_project(config_copy, environ={})


def test_a_deadline_escalates_an_inconclusive_that_lasts() -> None:
    rule = Deadline(inconclusive_for=2 * HOUR, then="no-go")
    now = T0 + 3 * HOUR
    # inconclusive since 1h ago: not yet
    verdict, reasons, status = apply_deadline(rule, VerdictState.INCONCLUSIVE, ["x"], now, now - HOUR)
    assert verdict is VerdictState.INCONCLUSIVE and reasons == ["x"]
    assert status is not None and status.since == now - HOUR and not status.passed
    # exactly 2h: escalated, and the reason says since when
    verdict, reasons, status = apply_deadline(rule, VerdictState.INCONCLUSIVE, ["x"], now, now - 2 * HOUR)
    assert verdict is VerdictState.NO_GO and status is not None and status.passed
    assert reasons == [
        "inconclusive since 2026-03-02T01:00:00Z (2h), longer than the gate's deadline of 2h: no-go",
        "x",
    ]
    rollback = Deadline(inconclusive_for=HOUR, then="rollback")
    assert apply_deadline(rollback, VerdictState.INCONCLUSIVE, [], now, T0)[0] is VerdictState.ROLLBACK
    notify = Deadline(inconclusive_for=HOUR, then="notify")
    verdict, reasons, status = apply_deadline(notify, VerdictState.INCONCLUSIVE, [], now, T0)
    assert verdict is VerdictState.INCONCLUSIVE and status is not None and status.passed
    assert reasons[-1].endswith("the notify targets are told")
    # a decided verdict has no deadline; a first inconclusive starts the clock now
    assert apply_deadline(rule, VerdictState.GO, [], now, T0) == (VerdictState.GO, [], None)
    status = apply_deadline(rule, VerdictState.INCONCLUSIVE, [], now, None)[2]
    assert status is not None and status.since == now and not status.passed


def test_a_shadow_check_never_changes_the_verdict_and_is_said() -> None:
    shadow = check(F, suite="new_rule").model_copy(update={"shadow": True})
    verdict, reasons = decide([check(P), shadow], [], None)
    assert verdict is VerdictState.GO
    assert reasons == [
        "all 1 required checks passed",
        "shadow check fail, not enforced: new_rule — it was fail",
    ]
    trigger = check(F, role="rollback", suite="new_trigger").model_copy(update={"shadow": True})
    assert decide([check(P), trigger], [], None)[0] is VerdictState.GO
    # shadow checks alone cannot earn a GO
    assert decide([shadow.model_copy(update={"outcome": P})], [], None)[0] is VerdictState.INCONCLUSIVE


# ------------------------------------------------------------------ on real evaluations

#: One reading per hour, at its middle; the check fails above 10. Hour k is judged as of T0 + (k+1)h.
READINGS = [20, 5, 20, 20, 5, 5, 5, 5, None, None, None, None, 5]
#: Another column of the same rows, for a baseline (the suite's own limit is 1000).
LEVELS = [4, 6, 5, 5, 20, 5, 7, 8, None, None, None, None, 5]


@pytest.fixture(scope="module")
def readings(warehouse: Path) -> str:
    """The hourly readings in chDB (an hour of None has none): the database's name."""
    from gatecheck.sources.clickhouse.connection import ClickHouse, Target

    with ClickHouse() as clickhouse:
        connection = clickhouse.connect(Target.parse(f"chdb://{warehouse}", warehouse))
        connection.command("CREATE DATABASE IF NOT EXISTS overtime")
        connection.command("DROP TABLE IF EXISTS overtime.readings")
        connection.command(
            "CREATE TABLE overtime.readings (ts DateTime64(3, 'UTC'), v Float64, shadow Float64, level Float64) "
            "ENGINE = MergeTree ORDER BY ts"
        )
        rows = ", ".join(
            f"(toDateTime64('{T0 + k * HOUR + HOUR / 2:%Y-%m-%d %H:%M:%S}', 3, 'UTC'), {v}, {30 if k % 3 == 0 else 0}, {level})"
            for k, (v, level) in enumerate(zip(READINGS, LEVELS, strict=True))
            if v is not None
        )
        connection.command(f"INSERT INTO overtime.readings VALUES {rows}")
    return "overtime"


def overtime_project(root: Path, gate: dict[str, Any]) -> Path:
    for column, limit in (("v", 10), ("shadow", 10), ("level", 1000)):
        suite = {
            "name": f"reading_{column}",
            "source": "warehouse",
            "window": {"length": "1h"},
            "query": f"SELECT max({column}) AS worst, count() AS n FROM readings\n"
                     "WHERE ts >= {window_start:DateTime64(3)} AND ts < {window_end:DateTime64(3)}",
            "evidence": {"column": "n", "min_total": 1},
            "expectations": [
                {"type": "expect_column_values_to_be_between", "column": "worst", "max_value": limit}
            ],
        }  # fmt: skip
        (root / "suites" / f"reading_{column}.yaml").write_text(yaml.safe_dump(suite))
    (root / "gates" / "overtime.yaml").write_text(
        yaml.safe_dump({"phase": "overtime", "environment": "staging", **gate})
    )
    return root


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return fresh_database(request, tmp_path)


def open_ledger(url: str) -> Ledger:
    return (
        SqliteLedger(Path(url.removeprefix("sqlite:///")))
        if url.startswith("sqlite")
        else PostgresLedger(url)
    )


def run_hours(project: Any, ledger: Ledger, hours: range) -> list[Verdict]:
    """``run --as-of`` at the end of each hour, in order, each recorded as it is judged."""

    async def go() -> list[Verdict]:
        found = []
        async with Engine(project, ledger=ledger, close_ledger=False) as engine:
            for k in hours:
                found.append((await engine.evaluate("overtime", T0 + (k + 1) * HOUR)).verdict)
        return found

    return asyncio.run(go())


def backtest_hours(project: Any, hours: range) -> Any:
    from gatecheck.evaluation.backtest import run_backtest

    first, last = T0 + (hours.start + 1) * HOUR, T0 + hours.stop * HOUR
    return asyncio.run(run_backtest(project, "overtime", first, last, HOUR))


def the(verdict: Verdict, suite: str) -> CheckResult:
    (found,) = [c for c in verdict.checks if c.suite == suite]
    return found


def test_k_of_n_and_consecutive_passes_over_recorded_evaluations_equal_the_backtest(
    config_copy: Path, warehouse: Path, readings: str, ledger_url: str
) -> None:
    gate = {
        "checks": [
            {"suite": "reading_v", "fail_after": {"failures": 2, "of": 3}, "pass_after": {"consecutive": 2}},
        ]
    }
    environ = {"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={readings}"}
    project = load_project(overtime_project(config_copy, gate), environ=environ)
    ledger = open_ledger(ledger_url)
    try:
        verdicts = run_hours(project, ledger, range(8))
        records = ledger.history("overtime")
    finally:
        ledger.close()
    # measured: F P F F P P P P; 2 of the last 3 fail; a pass needs the last 2 passed
    assert [the(v, "reading_v").measured for v in verdicts] == [F, P, F, F, P, P, P, P]
    assert [v.verdict.value for v in verdicts] == [
        "inconclusive",  # 1 of 1 failed: not yet
        "inconclusive",  # passed, but only 1 in a row
        "no-go",  # 2 of the last 3
        "no-go",
        "no-go",  # this one passed, 2 of the last 3 failed still
        "go",  # 1 of the last 3 failed, and the last 2 passed
        "go",
        "go",
    ]
    assert the(verdicts[4], "reading_v").reason == "2 of the last 3 evaluations failed (this one pass)"
    assert verdicts[1].reasons == [
        "required check inconclusive: reading_v — passed 1 consecutive evaluation; it passes after 2"
    ]
    assert verdicts[5].reasons == ["all 1 required checks passed"]
    assert len(records) == 8 and [r.verdict for r in records] == [v.verdict for v in verdicts]
    # the backtest replays the same rules over its own steps: the same at every step
    report = backtest_hours(project, range(8))
    assert [s.verdict for s in report.steps] == [v.verdict for v in verdicts]
    assert [(s.checks[0].outcome, s.checks[0].measured, s.checks[0].reason) for s in report.steps] == [
        (the(v, "reading_v").outcome, the(v, "reading_v").measured, the(v, "reading_v").reason)
        for v in verdicts
    ]


def test_a_deadline_crossing_and_a_shadow_check_over_recorded_evaluations(
    config_copy: Path, warehouse: Path, readings: str, ledger_url: str
) -> None:
    """Hours 8 to 11 have no reading (inconclusive: no evidence); the deadline of 2h turns the
    third of them into NO-GO, and the fourth stays NO-GO (the clock runs from the first); hour
    12 has a reading again: GO. The shadow check fails every third hour and never blocks."""
    gate = {
        "deadline": {"inconclusive_for": "2h", "then": "no-go"},
        "checks": [{"suite": "reading_v"}, {"suite": "reading_shadow", "enforce": False}],
    }
    environ = {"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={readings}"}
    project = load_project(overtime_project(config_copy, gate), environ=environ)
    ledger = open_ledger(ledger_url)
    try:
        verdicts = run_hours(project, ledger, range(5, 13))
    finally:
        ledger.close()
    assert [v.verdict.value for v in verdicts] == [
        "go", "go", "go", "inconclusive", "inconclusive", "no-go", "no-go", "go"
    ]  # fmt: skip
    first_gap = T0 + 9 * HOUR  # hour 8 judged as of 9:00
    assert verdicts[5].reasons[0] == (
        "inconclusive since 2026-03-02T09:00:00Z (2h), longer than the gate's deadline of 2h: no-go"
    )
    assert [v.deadline.since if v.deadline else None for v in verdicts] == [
        None, None, None, first_gap, first_gap, first_gap, first_gap, None
    ]  # fmt: skip
    # the shadow check failed at hours 6 and 9 (every third hour): shown, never blocking
    shadow = [the(v, "reading_shadow") for v in verdicts]
    assert all(c.shadow for c in shadow)
    assert [c.outcome for c in shadow] == [P, F, P, I, I, I, I, F]
    assert "shadow check fail, not enforced: reading_shadow" in verdicts[1].reasons[-1]
    report = backtest_hours(project, range(5, 13))
    assert [s.verdict for s in report.steps] == [v.verdict for v in verdicts]
    assert [s.inconclusive_since for s in report.steps] == [
        v.deadline.since if v.deadline else None for v in verdicts
    ]


def test_enforcing_a_shadow_check_is_a_recorded_decision_and_shadow_report_counts_it(
    config_copy: Path, warehouse: Path, readings: str, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from gatecheck.cli import app

    gate = {
        "checks": [{"suite": "reading_v"}, {"suite": "reading_shadow", "enforce": False}],
    }
    root = overtime_project(config_copy, gate)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    env = {
        "GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={readings}",
        "GATECHECK_HISTORY_URL": url,
    }
    project = load_project(root, environ=env)

    def cli(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(app, [*args, "--config", str(root)], env=env)
        return result.exit_code, result.stdout, result.stderr

    ledger = open_ledger(url)
    try:
        # hours 0..6: reading_v fails at 0, 2, 3 (no-go); the shadow fails at 0, 3, 6
        run_hours(project, ledger, range(7))
        # a decision recorded at 7:30 turns it on: hour 12 (as of 13:00) blocks on it
        ledger.append_audit([
            AuditEvent(at=T0 + 7.5 * HOUR, kind="check-enforced", phase="overtime", check="reading_shadow",
                       by="alice", reason="quiet for a week")
        ])  # fmt: skip
        before, after = run_hours(project, ledger, range(6, 7)), run_hours(project, ledger, range(12, 13))
    finally:
        ledger.close()
    assert the(before[0], "reading_shadow").shadow and before[0].verdict is VerdictState.GO
    enforced = the(after[0], "reading_shadow")
    assert not enforced.shadow and enforced.enforced_by == "alice at 2026-03-02T07:30:00Z: quiet for a week"
    assert after[0].verdict is VerdictState.NO_GO
    code, out, err = cli("shadow-report", "--phase", "overtime", "--since", "1d", "--as-of", "2026-03-02T09:00:00Z",
                         "--format", "json")  # fmt: skip
    assert code == 0, err
    (found,) = json.loads(out)["checks"]
    # judged 8 times as a shadow (hours 0-6, and hour 6 twice); it would have blocked at 0, 3, 6, 6:
    # beside reading_v's failures at 0 and 3, alone at 6 (twice)
    assert {k: found[k] for k in ("suite", "judged", "would_block", "with_rollback", "with_enforced_failure", "alone")} == {
        "suite": "reading_shadow", "judged": 8, "would_block": 4, "with_rollback": 0, "with_enforced_failure": 2, "alone": 2,
    }  # fmt: skip
    assert found["alone_at"][0]["verdict"] == "go" and found["alone_at"][0]["instead"] == "no-go"
    code, out, err = cli(
        "shadow-report", "--phase", "overtime", "--since", "1d", "--as-of", "2026-03-02T09:00:00Z"
    )
    assert "reading_shadow (required, shadow): judged 8 times, would have blocked 4 (50.0%)" in out
    assert "with a ROLLBACK 0 · with an enforced failure 2 · alone 2" in out
    # the command records who and why, and refuses what is not a shadow check
    code, out, err = cli(
        "enforce", "--phase", "overtime", "--check", "reading_shadow", "--reason", "ok", "--by", "bob"
    )
    assert code == 0 and "check-enforced" in out and "reading_shadow" in out, err
    code, out, err = cli(
        "enforce", "--phase", "overtime", "--check", "reading_v", "--reason", "ok", "--by", "bob"
    )
    assert (
        code == 2
        and err.strip()
        == "gatecheck: error: --check: reading_v is enforced in overtime already (it has no enforce: false)"
    )
    code, out, err = cli(
        "enforce", "--phase", "overtime", "--check", "reading_shadw", "--reason", "ok", "--by", "bob"
    )
    assert code == 2 and "did you mean 'reading_shadow'" in err and len(err.strip().splitlines()) == 1


def test_the_shadow_report_tells_rollbacks_from_enforced_failures_from_alone() -> None:
    def document(verdict: str, checks: list[CheckResult]) -> dict[str, Any]:
        return {
            "verdict": verdict,
            "as_of": "2026-03-02T01:00:00Z",
            "checks": [c.model_dump(mode="json") for c in checks],
        }

    shadow = check(F, suite="new").model_copy(update={"shadow": True})
    found = shadow_report([
        document("rollback", [check(P), check(F, role="rollback", suite="t"), shadow]),
        document("no-go", [check(F), shadow]),
        document("go", [check(P), shadow]),
        document("go", [check(P), shadow.model_copy(update={"outcome": P})]),
        document("go", [check(P)]),
    ])  # fmt: skip
    (one,) = found
    assert (one.judged, one.would_block, one.with_rollback, one.with_enforced_failure, len(one.alone)) == (
        4,
        3,
        1,
        1,
        1,
    )


# ------------------------------------------------------------------ baselines


def test_a_baseline_from_the_last_passing_evaluations_then_pinned_and_invalidated(
    config_copy: Path, warehouse: Path, readings: str, ledger_url: str
) -> None:
    """The level's baseline: 1.5 × the median of its last 3 passing evaluations, from at least
    2. Levels 4, 6, 5, 5, 20, 5, 7, 8 hour by hour."""
    from typer.testing import CliRunner

    from gatecheck.cli import app

    rule = {"column": "worst", "last": 3, "quantile": 0.5, "max_ratio": 1.5, "min_records": 2}
    gate = {"checks": [{"suite": "reading_level", "baseline": rule}]}
    env = {
        "GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={readings}",
        "GATECHECK_HISTORY_URL": ledger_url,
    }
    root = overtime_project(config_copy, gate)
    project = load_project(root, environ=env)
    ledger = open_ledger(ledger_url)
    try:
        verdicts = run_hours(project, ledger, range(7))
    finally:
        ledger.close()
    checks = [the(v, "reading_level") for v in verdicts]
    assert [v.verdict.value for v in verdicts] == [
        "inconclusive",  # no history yet
        "inconclusive",  # 1 passing evaluation, 2 needed
        "go",  # median(4, 6) = 5: 5 <= 7.5
        "go",
        "no-go",  # median(6, 5, 5) = 5: 20 > 7.5
        "go",  # the failure is not in the baseline: median(6, 5, 5)
        "go",  # median(5, 5, 5) x 1.5 = 7.5 >= 7
    ]
    assert checks[0].reason == "worst: too little history: 0 passing evaluations with a value, need 2"
    assert checks[4].reason == (
        "worst (≤ 1.5 × the median of its last 3 passing evaluations) must be ≤ 7.5 (baseline, history): observed 20"
    )
    bound = checks[4].history
    assert bound is not None and bound.kind == "baseline"
    # every output names the rule and the evaluations it rests on
    from gatecheck.render.verdict import render

    for fmt in ("text", "markdown", "html"):
        shown = render(verdicts[4], fmt)
        assert (
            "baseline: worst ≤ 1.5 × the median of its last 3 passing evaluations — from 3 evaluations "
            "(2026-03-02T02:00:00Z … 2026-03-02T04:00:00Z)"
        ) in shown.replace("&lt;", "<").replace("&gt;", ">"), fmt
    assert bound.records == [T0 + 2 * HOUR, T0 + 3 * HOUR, T0 + 4 * HOUR]  # the evaluations it rests on
    assert (bound.groups[0].reference, bound.groups[0].high) == (5, 7.5)

    def cli(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(app, [*args, "--config", str(root)], env=env)
        return result.exit_code, result.stdout, result.stderr

    def dated(kind: str) -> None:
        """A decision holds from the moment it is recorded (today): the same decision dated
        before the hour judged, as if it had been recorded then."""
        ledger = open_ledger(ledger_url)
        try:
            (event,) = [e for e in ledger.audit(["overtime"]) if e.kind == kind]
            ledger.append_audit([event.model_copy(update={"at": T0 + 7 * HOUR})])
        finally:
            ledger.close()

    def hour_seven() -> Verdict:
        ledger = open_ledger(ledger_url)
        try:
            return run_hours(project, ledger, range(7, 8))[0]
        finally:
            ledger.close()

    # hour 6's 7 invalidated (a load test): hour 7's 8 against the median of hours 2, 3 and 5
    code, out, err = cli("invalidate", "--phase", "overtime", "--record", "2026-03-02T07:00:00Z",
                         "--reason", "load test", "--by", "bob")  # fmt: skip
    assert code == 0 and "record-invalidated" in out and "record as of 2026-03-02T07:00:00Z" in out, err
    dated("record-invalidated")
    invalidated = the(hour_seven(), "reading_level")
    assert invalidated.outcome is F and invalidated.history is not None
    assert invalidated.history.records == [T0 + 3 * HOUR, T0 + 4 * HOUR, T0 + 6 * HOUR]
    assert invalidated.history.left_out == {"invalidated": 1}
    # pinned to hour 1's 6: 1.5 x 6 = 9, and 8 passes
    code, out, err = cli("pin", "--phase", "overtime", "--check", "reading_level", "--record", "2026-03-02T02:00:00Z",
                         "--reason", "the release before the regression", "--by", "alice")  # fmt: skip
    assert code == 0 and "baseline-pinned" in out and "record as of 2026-03-02T02:00:00Z" in out, err
    dated("baseline-pinned")
    after = hour_seven()
    pinned = the(after, "reading_level")
    assert after.verdict is VerdictState.GO, pinned.reason
    assert pinned.history is not None and pinned.history.kind == "pinned"
    assert pinned.history.records == [T0 + 2 * HOUR] and pinned.history.groups[0].high == 9
    assert pinned.history.pinned_by == "alice at 2026-03-02T07:00:00Z: the release before the regression"
    # the pinned evaluation invalidated afterwards (that release was bad after all): no
    # reference, the check is inconclusive until another is pinned
    code, out, err = cli("invalidate", "--phase", "overtime", "--record", "2026-03-02T02:00:00Z",
                         "--reason", "its data was partial", "--by", "carol")  # fmt: skip
    assert code == 0, err
    ledger = open_ledger(ledger_url)
    try:
        (event,) = [
            e for e in ledger.audit(["overtime"], kinds=["record-invalidated"])
            if e.group.get("record", "").startswith("2026-03-02T02")
        ]
        ledger.append_audit([event.model_copy(update={"at": T0 + 7 * HOUR})])
    finally:
        ledger.close()
    void = the(hour_seven(), "reading_level")
    assert void.outcome is I and void.history is not None and void.history.kind == "pinned"
    assert void.history.groups[0].reason == (
        "the pinned evaluation was invalidated (gatecheck invalidate): pin another one"
    )
    # and it cannot be pinned again: one line, exit 2
    code, out, err = cli("pin", "--phase", "overtime", "--check", "reading_level", "--record", "2026-03-02T02:00:00Z",
                         "--reason", "again", "--by", "alice")  # fmt: skip
    assert code == 2 and "--record: the evaluation as of 2026-03-02T02:00:00Z was invalidated by carol at " in err
    assert err.strip().endswith("(its data was partial): pin another one")
    # a record that does not exist, a check without a baseline: one line, exit 2
    code, out, err = cli("invalidate", "--phase", "overtime", "--record", "2026-03-02T03:30:00Z",
                         "--reason", "x", "--by", "bob")  # fmt: skip
    assert code == 2 and err.strip() == (
        "gatecheck: error: --record: no evaluation of overtime as of 2026-03-02T03:30:00Z on record "
        "(gatecheck history --phase overtime lists them)"
    )
    code, out, err = cli("pin", "--phase", "overtime", "--check", "reading_lvl", "--record", "2026-03-02T02:00:00Z",
                         "--reason", "x", "--by", "bob")  # fmt: skip
    assert code == 2 and "has no baseline in gate overtime (did you mean 'reading_level'?)" in err


def test_a_baseline_learns_only_from_values_measured_as_they_are_now(
    config_copy: Path, warehouse: Path, readings: str, tmp_path: Path
) -> None:
    """The level's query changed to report thousands (a unit change): the values recorded
    before were measured another way, so the baseline has too little history — before, hour
    4's regression (20, four times the level) read 0.02 and passed 1.5 × the old median 5."""
    rule = {"column": "worst", "last": 3, "quantile": 0.5, "max_ratio": 1.5, "min_records": 2}
    root = overtime_project(config_copy, {"checks": [{"suite": "reading_level", "baseline": rule}]})
    env = {"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={readings}"}
    ledger = SqliteLedger(tmp_path / "l.db")
    verdicts = run_hours(load_project(root, environ=env), ledger, range(4))
    assert [v.verdict.value for v in verdicts] == ["inconclusive", "inconclusive", "go", "go"]
    measured = the(verdicts[-1], "reading_level").tracked
    assert measured is not None and len(measured.measure) == 64

    suite_file = root / "suites" / "reading_level.yaml"
    suite_file.write_text(suite_file.read_text().replace("max(level) AS worst", "max(level) / 1000 AS worst"))
    (redefined,) = run_hours(load_project(root, environ=env), ledger, range(4, 5))
    check_ = the(redefined, "reading_level")
    assert redefined.verdict is VerdictState.INCONCLUSIVE, check_.reason
    assert check_.history is not None and check_.history.left_out == {"redefined": 4}
    assert check_.reason == "worst: too little history: 0 passing evaluations with a value, need 2"
    assert check_.tracked is not None and check_.tracked.measure not in ("", measured.measure)
    # A record pinned before the change was measured another way too: no reference, never a pass.
    ledger.append_audit([
        AuditEvent(
            at=T0 + 4 * HOUR, kind="baseline-pinned", phase="overtime", check="reading_level",
            group={"record": (T0 + 3 * HOUR).isoformat()}, by="alice", reason="the good release",
        )
    ])  # fmt: skip
    (pinned,) = run_hours(load_project(root, environ=env), ledger, range(5, 6))
    check_ = the(pinned, "reading_level")
    assert pinned.verdict is VerdictState.INCONCLUSIVE, check_.reason
    assert check_.history is not None and check_.history.kind == "pinned"
    assert check_.history.groups[0].reason == (
        "the pinned evaluation was measured another way (the suite's query, groups or window changed since): "
        "pin a newer one"
    )


def test_a_baseline_with_accumulation_in_the_backtest_equals_run(
    config_copy: Path, warehouse: Path, readings: str, tmp_path: Path
) -> None:
    rule = {"column": "worst", "last": 3, "max_ratio": 1.5, "min_records": 2}
    gate = {"checks": [{"suite": "reading_level", "baseline": rule, "fail_after": {"failures": 1, "of": 2}}]}
    environ = {"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={readings}"}
    project = load_project(overtime_project(config_copy, gate), environ=environ)
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        verdicts = run_hours(project, ledger, range(8))
    finally:
        ledger.close()
    report = backtest_hours(project, range(8))
    assert [s.verdict for s in report.steps] == [v.verdict for v in verdicts]
    assert [s.checks[0].reason for s in report.steps] == [the(v, "reading_level").reason for v in verdicts]
    assert [v.verdict.value for v in verdicts][4:6] == ["no-go", "no-go"]  # 1 of the last 2 failed


def test_what_a_bound_from_history_leaves_out_and_why() -> None:
    """Invalidated by a person, a ROLLBACK until the next GO, a waived failure, a window an SLO
    correction or the rule's own exclusion reaches into."""
    from gatecheck.evaluation.history_bounds import past_of_documents
    from gatecheck.results import GroupValue, Tracked, Waiver

    def document(hour: int, verdict: str, **update: Any) -> dict[str, Any]:
        moment = T0 + hour * HOUR
        found = check(P, suite="level").model_copy(
            update={"window": window_for(moment, HOUR, timedelta(0)),
                    "tracked": Tracked(column="worst", groups=[GroupValue(group={}, value=float(hour))]), **update}
        )  # fmt: skip
        return {"as_of": moment.isoformat(), "verdict": verdict, "checks": [found.model_dump(mode="json")]}

    waiver = Waiver(id="W1", check="level", reason="r", by="b", since=T0, until=T0 + 30 * HOUR)
    from gatecheck.config.models import ExcludedStretch

    stretch = ExcludedStretch.model_validate(
        {"from": T0 + 8 * HOUR + HOUR / 2, "to": T0 + 9 * HOUR, "reason": "load test"}
    )
    documents = [
        document(1, "go"),
        document(2, "go"),  # invalidated
        document(3, "rollback"),
        document(4, "no-go"),  # still rolling back: no GO since
        document(5, "go"),
        document(6, "no-go", outcome=F, waiver=waiver),
        document(7, "go"),  # its window [6:00, 7:00) overlaps the correction
        document(8, "go"),  # its window [7:00, 8:00): untouched
        document(9, "go"),  # its window [8:00, 9:00) overlaps the excluded stretch
    ]
    past = past_of_documents(
        documents, "level", "required", invalidated={T0 + 2 * HOUR},
        corrections=[(T0 + 6 * HOUR + HOUR / 2, T0 + 6 * HOUR + HOUR * 3 / 4)], excluded=[stretch],
    )  # fmt: skip
    assert [p.left_out for p in past] == [
        None, "invalidated", "rollback", "rollback", None, "waived", "corrected", None, "excluded"
    ]  # fmt: skip
    assert [p.passed for p in past] == [True, True, True, True, True, False, True, True, True]


# ------------------------------------------------------------------ learned thresholds

DAY = timedelta(days=24 * 60 * 60 / 86400)
JUDGED = T0 + 10 * DAY  # day 10: judged against days 0-9
T1 = datetime(2026, 4, 1, tzinfo=UTC)  # four days of six-hourly steps, for the backtest
SIX = timedelta(hours=6)


def six_hourly(k: int) -> float:
    """Step k's value (as of T1 + 6h x k): 100 at noon, 10 otherwise, a little noise; the
    noon of day 2 is an incident (500) the rule excludes."""
    moment = T1 + k * SIX
    if moment == T1 + 2 * DAY + 12 * HOUR:
        return 500.0
    return (100.0 if moment.hour == 12 else 10.0) + (k % 2)


@pytest.fixture(scope="module")
def seasonal(warehouse: Path, readings: str) -> str:
    """The judged values on day 10 (102 in the hour before 13:00 and before 04:00) and the
    six-hourly series (each value in the hour before its step)."""
    from gatecheck.sources.clickhouse.connection import ClickHouse, Target

    rows = [(JUDGED + 12.5 * HOUR, 102.0), (JUDGED + 3.5 * HOUR, 102.0)]
    rows += [(T1 + k * SIX - HOUR / 2, six_hourly(k)) for k in range(16)]
    with ClickHouse() as clickhouse:
        connection = clickhouse.connect(Target.parse(f"chdb://{warehouse}", warehouse))
        connection.command("DROP TABLE IF EXISTS overtime.seasonal")
        connection.command(
            "CREATE TABLE overtime.seasonal (ts DateTime64(3, 'UTC'), v Float64) ENGINE = MergeTree ORDER BY ts"
        )
        values = ", ".join(f"(toDateTime64('{ts:%Y-%m-%d %H:%M:%S}', 3, 'UTC'), {v})" for ts, v in rows)
        connection.command(f"INSERT INTO overtime.seasonal VALUES {values}")
    return readings


def seasonal_project(root: Path, learned: dict[str, Any]) -> Path:
    suite = {
        "name": "seasonal_level",
        "source": "warehouse",
        "window": {"length": "1h"},
        "query": "SELECT max(v) AS worst, count() AS n FROM seasonal\n"
                 "WHERE ts >= {window_start:DateTime64(3)} AND ts < {window_end:DateTime64(3)}",
        "evidence": {"column": "n", "min_total": 1},
        "expectations": [{"type": "expect_column_values_to_be_between", "column": "worst", "max_value": 1000}],
    }  # fmt: skip
    (root / "suites" / "seasonal_level.yaml").write_text(yaml.safe_dump(suite))
    gate = {
        "phase": "overtime",
        "environment": "staging",
        "checks": [{"suite": "seasonal_level", "learned": learned}],
    }
    (root / "gates" / "overtime.yaml").write_text(yaml.safe_dump(gate))
    return root


def recorded_history(ledger: Ledger) -> None:
    """Ten days of hourly evaluations of seasonal_level, as the service would have recorded
    them: 100 ± 1 in the hour before 13:00, 10 ± 1 otherwise; on days 3 to 7 the noon hour
    was an incident (500) that rolled back, until the next hour's GO."""
    from gatecheck.results import GroupValue, Tracked

    for day in range(10):
        for hour in range(24):
            as_of = T0 + day * DAY + hour * HOUR
            noise = day % 3 - 1
            incident = hour == 13 and 3 <= day <= 7
            value = 500.0 if incident else (100.0 if hour == 13 else 10.0) + noise
            found = CheckResult(
                suite="seasonal_level", source="warehouse", role="required", outcome=P, rows=1,
                window=window_for(as_of, HOUR, timedelta(0)),
                tracked=Tracked(column="worst", groups=[GroupValue(group={}, value=value)]),
            )  # fmt: skip
            ledger.record(
                Verdict(
                    phase="overtime", environment="staging", as_of=as_of, reasons=["history"], checks=[found],
                    verdict=VerdictState.ROLLBACK if incident else VerdictState.GO, config_hash="h",
                    gatecheck_version="test",
                ),
                0.01,
            )  # fmt: skip


def test_a_learned_band_per_hour_of_day_leaves_the_incident_out(
    config_copy: Path, warehouse: Path, seasonal: str, ledger_url: str
) -> None:
    learned = {"column": "worst", "season": "hour_of_day", "training": "10d", "spread": 3, "min_records": 5}
    environ = {"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={seasonal}"}
    project = load_project(seasonal_project(config_copy, learned), environ=environ)
    ledger = open_ledger(ledger_url)
    try:
        recorded_history(ledger)

        async def judge(as_of: datetime) -> Verdict:
            async with Engine(project, ledger=ledger, close_ledger=False) as engine:
                return (await engine.evaluate("overtime", as_of, record=False)).verdict

        noon, night = asyncio.run(judge(JUDGED + 13 * HOUR)), asyncio.run(judge(JUDGED + 4 * HOUR))
        short = load_project(seasonal_project(config_copy, {**learned, "training": "2d"}), environ=environ)

        async def judge_short() -> Verdict:
            async with Engine(short, ledger=ledger, close_ledger=False) as engine:
                return (await engine.evaluate("overtime", JUDGED + 13 * HOUR, record=False)).verdict

        little = asyncio.run(judge_short())
    finally:
        ledger.close()
    # noon: the 5 quiet noons (99, 100, 101, 101, 99; median 100, MAD 1) — the 5 incident noons
    # rolled back and are left out, else the median would be 300: 102 is inside 100 ± 4.45
    found = the(noon, "seasonal_level")
    assert noon.verdict is VerdictState.GO, found.reason
    bound = found.history
    assert bound is not None and bound.kind == "learned" and bound.left_out == {"rollback": 5}
    assert bound.rule == "within the median ± 3 × MAD of its last 10d at 13:00-13:59 UTC"
    assert len(bound.records) == 5 and all(r.hour == 13 for r in bound.records)
    (group,) = bound.groups
    assert group.reference == 100 and group.low == pytest.approx(100 - 3 * 1.4826)
    assert group.high == pytest.approx(100 + 3 * 1.4826) and group.records == 5
    # 04:00: the same 102 against 10 ± 4.45 of the quiet hours
    assert night.verdict is VerdictState.NO_GO
    assert the(night, "seasonal_level").reason == (
        "worst (within the median ± 3 × MAD of its last 10d at 04:00-04:59 UTC) must be "
        "≥ 5.552 (learned band, history), ≤ 14.45 (learned band, history): observed 102"
    )
    # two days of training hold two noons: too little history is inconclusive, never a pass
    assert little.verdict is VerdictState.INCONCLUSIVE
    assert the(little, "seasonal_level").reason == (
        "worst: too little history: 2 evaluations in its last 48h at 13:00-13:59 UTC, need 5"
    )


def bound_plan(window: Any, **rule: Any) -> Any:
    """A plan of one check with a bound from history (its suite is never read by the bound)."""
    from gatecheck.evaluation.plan import CheckPlan

    return CheckPlan(
        suite=None,  # type: ignore[arg-type]
        role="required", window=window, length_from="", settle_from="", where="gates/x.yaml: checks[0]", **rule,
    )  # fmt: skip


def test_a_learned_band_never_trains_on_the_window_it_judges() -> None:
    from gatecheck.evaluation.history_bounds import Past, judge_history
    from gatecheck.results import GroupValue, Tracked

    rule = Learned.model_validate({"column": "worst", "min_records": 3, "spread": 1, "min_change": 2})
    window = window_for(T0 + 10 * HOUR, HOUR, timedelta(0))
    plan = bound_plan(window, learned=rule)
    current = check(P).model_copy(
        update={
            "window": window,
            "tracked": Tracked(column="worst", groups=[GroupValue(group={}, value=13.0)]),
        }
    )

    def past(hour: float, value: float) -> Past:
        end = T0 + hour * HOUR
        return Past(end, end - HOUR, end, P, {(): value}, None, True)

    # three earlier windows of 10; the one ending at 9:30 overlaps [9:00, 10:00): left out
    judged = judge_history(
        current, plan, [past(7, 10), past(8, 10), past(9, 10), past(9.5, 1000)], T0 + 10 * HOUR
    )
    assert judged.history is not None and len(judged.history.records) == 3
    # MAD 0: the band is the minimum change, 10 ± 2: 13 is outside
    assert judged.outcome is F and (judged.history.groups[0].low, judged.history.groups[0].high) == (8, 12)


def test_a_learned_band_in_the_backtest_equals_run_at_every_step(
    config_copy: Path, warehouse: Path, seasonal: str, tmp_path: Path
) -> None:
    learned = {
        "column": "worst", "season": "hour_of_day", "training": "4d", "spread": 3, "min_change": 5,
        "min_records": 2, "exclude": [{"from": "2026-04-03T11:00:00Z", "to": "2026-04-03T12:00:00Z", "reason": "incident"}],
    }  # fmt: skip
    environ = {"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={seasonal}"}
    project = load_project(seasonal_project(config_copy, learned), environ=environ)
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")

    async def go() -> list[Verdict]:
        found = []
        async with Engine(project, ledger=ledger, close_ledger=False) as engine:
            for k in range(16):
                found.append((await engine.evaluate("overtime", T1 + k * SIX)).verdict)
        return found

    try:
        verdicts = asyncio.run(go())
    finally:
        ledger.close()
    from gatecheck.evaluation.backtest import run_backtest

    report = asyncio.run(run_backtest(project, "overtime", T1, T1 + 15 * SIX, SIX))
    assert [s.verdict for s in report.steps] == [v.verdict for v in verdicts]
    assert [s.checks[0].reason for s in report.steps] == [the(v, "seasonal_level").reason for v in verdicts]
    # two days of each hour to learn from: days 0 and 1 inconclusive, day 2's noon incident
    # fails against 100 ± 5 and is excluded after; day 3 passes
    assert [v.verdict.value for v in verdicts] == ["inconclusive"] * 8 + ["go", "go", "no-go", "go"] + [
        "go"
    ] * 4


def test_a_baseline_is_per_group_and_names_the_group_outside_it() -> None:
    from gatecheck.evaluation.history_bounds import Past, judge_history
    from gatecheck.results import GroupValue, Tracked

    rule = Baseline.model_validate({"column": "lag_s", "last": 3, "max_ratio": 2, "min_records": 2})
    window = window_for(T0 + 10 * HOUR, HOUR, timedelta(0))
    plan = bound_plan(window, baseline=rule)
    eu, us, ap = (("region", "eu"),), (("region", "us"),), (("region", "ap"),)

    def past(hour: int, values: dict[Any, float]) -> Past:
        end = T0 + hour * HOUR
        return Past(end, end - HOUR, end, P, values, None, True)

    history = [past(6, {eu: 10, us: 100}), past(7, {eu: 12, us: 110}), past(8, {eu: 11, us: 90})]
    current = check(P).model_copy(update={"window": window, "tracked": Tracked(column="lag_s", groups=[
        GroupValue(group={"region": "eu"}, value=30), GroupValue(group={"region": "us"}, value=150),
        GroupValue(group={"region": "ap"}, value=5),
    ])})  # fmt: skip
    judged = judge_history(current, plan, history, T0 + 10 * HOUR)
    assert judged.outcome is F
    assert judged.reason == (
        "lag_s (≤ 2 × the median of its last 3 passing evaluations) is outside its baseline: "
        "region=eu: observed 30 s, expected 22 s"
    )
    assert judged.history is not None
    by_group = {tuple(g.group.items()): (g.outcome, g.reference, g.high) for g in judged.history.groups}
    assert by_group == {eu: (F, 11, 22), us: (P, 100, 200), ap: (I, None, None)}  # ap: no history


def test_a_negative_baseline_is_bounded_by_its_size_never_turned_over() -> None:
    """A tracked value below zero (a net change, a balance): max_ratio 1.5 and min_ratio 0.5 of
    a median of -10 allow -15 … -5 — by the reference's size, as for a positive one (10: 5 …
    15). A product gave -5 … -15: the reference itself failed and -100 passed the upper bound."""
    from gatecheck.evaluation.history_bounds import Past, judge_history
    from gatecheck.results import GroupValue, Tracked

    rule = Baseline.model_validate(
        {"column": "net", "last": 3, "max_ratio": 1.5, "min_ratio": 0.5, "min_records": 2}
    )
    window = window_for(T0 + 10 * HOUR, HOUR, timedelta(0))
    plan = bound_plan(window, baseline=rule)

    def past(hour: int, value: float) -> Past:
        end = T0 + hour * HOUR
        return Past(end, end - HOUR, end, P, {(): value}, None, True)

    def judged(history: list[Past], value: float) -> Any:
        current = check(P).model_copy(
            update={"window": window, "tracked": Tracked(column="net", groups=[GroupValue(group={}, value=value)])}
        )
        return judge_history(current, plan, history, T0 + 10 * HOUR)

    for sign in (1, -1):
        history = [past(6, sign * 9), past(7, sign * 10), past(8, sign * 11)]
        bound = judged(history, sign * 10).history
        assert bound is not None
        ((group,),) = [bound.groups]
        assert (group.reference, group.low, group.high) == (sign * 10, sign * 10 - 5, sign * 10 + 5)
        assert judged(history, sign * 10).outcome is P  # the reference itself
        assert judged(history, sign * 10 - 6).outcome is F and judged(history, sign * 10 + 6).outcome is F
    assert judged([past(6, -9), past(7, -10), past(8, -11)], -100).outcome is F


def test_explain_says_every_rule_over_time(config_copy: Path) -> None:
    from typer.testing import CliRunner

    from gatecheck.cli import app

    gate = {
        "deadline": {"inconclusive_for": "2h", "then": "rollback"},
        "checks": [
            {"suite": "reading_v", "fail_after": {"failures": 3, "of": 5}, "pass_after": {"consecutive": 2}},
            {"suite": "reading_level", "baseline": {"column": "worst", "max_ratio": 1.5, "quantile": 0.9}},
            {"suite": "reading_shadow", "enforce": False, "fail_after": {"consecutive": 2},
             "learned": {"column": "worst", "season": "hour_of_day", "min_change": 0.5}},
        ],
    }  # fmt: skip
    root = overtime_project(config_copy, gate)
    result = CliRunner().invoke(
        app, ["explain", "--phase", "overtime", "--config", str(root), "--as-of", "2026-03-02T05:00:00Z"]
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith(("over time", "deadline"))]
    assert lines == [
        "deadline   inconclusive for 2h, then rollback (ledger)",
        "over time  fails while 3 of the last 5 evaluations failed (ledger)",
        "over time  passes after 2 consecutive passing evaluations (ledger)",
        "over time  baseline: worst ≤ 1.5 × the p90 of its last 20 passing evaluations (or a pinned one), at least 5 (ledger)",
        "over time  shadow check (enforce: false): judged and recorded, never changes the verdict (ledger)",
        "over time  fails after 2 consecutive failing evaluations (ledger)",
        "over time  learned band: worst within the median ± 3 × MAD (at least 0.5) of its last 28d per hour of day, "
        "at least 8 evaluations (ledger)",
    ]


def test_accumulation_over_a_ledger_with_a_gap_and_an_inconclusive_evaluation(
    config_copy: Path, warehouse: Path, readings: str, ledger_url: str
) -> None:
    """Recorded histories, then a real evaluation of hour 3 (a failing reading) under
    ``fail_after {failures: 2, of: 3}``: after a failure, an evaluation without the check and an
    inconclusive one, it is 1 of the last 3 — inconclusive; after a failure and five hours with
    no evaluation at all (the service was down), it is 2 of the last 2 — a failure."""
    rule = {"suite": "reading_v", "fail_after": {"failures": 2, "of": 3}}
    root = overtime_project(config_copy, {"checks": [rule]})
    gap = {"phase": "overtime-gap", "environment": "staging", "checks": [rule]}
    (root / "gates" / "overtime-gap.yaml").write_text(yaml.safe_dump(gap))
    environ = {"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={readings}"}
    project = load_project(root, environ=environ)

    def recorded(phase: str, hour: float, checks: list[CheckResult]) -> Verdict:
        state = VerdictState.NO_GO if any(c.outcome is F for c in checks) else VerdictState.INCONCLUSIVE
        return Verdict(
            phase=phase, environment="staging", as_of=T0 + hour * HOUR, verdict=state, reasons=["history"],
            checks=checks, config_hash="h", gatecheck_version="test",
        )  # fmt: skip

    def reading(outcome: Outcome, hour: float) -> CheckResult:
        return check(outcome, suite="reading_v").model_copy(
            update={"window": window_for(T0 + hour * HOUR, HOUR, timedelta(0))}
        )

    ledger = open_ledger(ledger_url)
    try:
        ledger.record(recorded("overtime", 1, [reading(F, 1)]), 0.1)
        ledger.record(recorded("overtime", 2, [check(P, suite="another_check")]), 0.1)  # no reading_v
        ledger.record(recorded("overtime", 3, [reading(I, 3)]), 0.1)
        ledger.record(recorded("overtime-gap", -2, [reading(F, -2)]), 0.1)  # then nothing for 5 hours

        async def judge(phase: str) -> Verdict:
            async with Engine(project, ledger=ledger, close_ledger=False) as engine:
                return (await engine.evaluate(phase, T0 + 4 * HOUR, record=False)).verdict

        after_gaps, after_downtime = asyncio.run(judge("overtime")), asyncio.run(judge("overtime-gap"))
    finally:
        ledger.close()
    found = the(after_gaps, "reading_v")
    assert (found.measured, found.outcome) == (F, I)
    assert found.accumulation == "1 of the last 3 evaluations failed; it fails at 2 of 3"
    found = the(after_downtime, "reading_v")
    assert (found.measured, found.outcome) == (F, F)
    assert found.accumulation == "2 of the last 2 evaluations failed"
    assert after_downtime.verdict is VerdictState.NO_GO
