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
from gatecheck.config.models import Deadline, FailAfter, PassAfter
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
def test_k_of_n_failures(earlier: list[Outcome | None], now: Outcome, expected: Outcome, account: str | None) -> None:
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
def test_consecutive_failures(earlier: list[Outcome], now: Outcome, expected: Outcome, account: str | None) -> None:
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
def test_consecutive_passes(earlier: list[Outcome], now: Outcome, expected: Outcome, account: str | None) -> None:
    judged = accumulate(check(now), None, PassAfter(consecutive=3), earlier)
    assert (judged.outcome, judged.accumulation) == (expected, account)


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
        "inconclusive since 2026-03-02T01:00:00Z (2h), longer than the gate's deadline of 2h: no-go", "x"
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
    assert reasons == ["all 1 required checks passed", "shadow check fail, not enforced: new_rule — it was fail"]
    trigger = check(F, role="rollback", suite="new_trigger").model_copy(update={"shadow": True})
    assert decide([check(P), trigger], [], None)[0] is VerdictState.GO
    # shadow checks alone cannot earn a GO
    assert decide([shadow.model_copy(update={"outcome": P})], [], None)[0] is VerdictState.INCONCLUSIVE


# ------------------------------------------------------------------ on real evaluations

#: One reading per hour, at its middle; the check fails above 10. Hour k is judged as of T0 + (k+1)h.
READINGS = [20, 5, 20, 20, 5, 5, 5, 5, None, None, None, None, 5]


@pytest.fixture(scope="module")
def readings(warehouse: Path) -> str:
    """The hourly readings in chDB (an hour of None has none): the database's name."""
    from gatecheck.sources.clickhouse.connection import ClickHouse, Target

    with ClickHouse() as clickhouse:
        connection = clickhouse.connect(Target.parse(f"chdb://{warehouse}", warehouse))
        connection.command("CREATE DATABASE IF NOT EXISTS overtime")
        connection.command("DROP TABLE IF EXISTS overtime.readings")
        connection.command(
            "CREATE TABLE overtime.readings (ts DateTime64(3, 'UTC'), v Float64, shadow Float64) "
            "ENGINE = MergeTree ORDER BY ts"
        )
        rows = ", ".join(
            f"(toDateTime64('{T0 + k * HOUR + HOUR / 2:%Y-%m-%d %H:%M:%S}', 3, 'UTC'), {v}, {30 if k % 3 == 0 else 0})"
            for k, v in enumerate(READINGS)
            if v is not None
        )
        connection.command(f"INSERT INTO overtime.readings VALUES {rows}")
    return "overtime"


def overtime_project(root: Path, gate: dict[str, Any]) -> Path:
    for column in ("v", "shadow"):
        suite = {
            "name": f"reading_{column}",
            "source": "warehouse",
            "window": {"length": "1h"},
            "query": f"SELECT max({column}) AS worst, count() AS n FROM readings\n"
                     "WHERE ts >= {window_start:DateTime64(3)} AND ts < {window_end:DateTime64(3)}",
            "evidence": {"column": "n", "min_total": 1},
            "expectations": [
                {"type": "expect_column_values_to_be_between", "column": "worst", "max_value": 10}
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
    return SqliteLedger(Path(url.removeprefix("sqlite:///"))) if url.startswith("sqlite") else PostgresLedger(url)


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
        (the(v, "reading_v").outcome, the(v, "reading_v").measured, the(v, "reading_v").reason) for v in verdicts
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
    assert [s.inconclusive_since for s in report.steps] == [v.deadline.since if v.deadline else None for v in verdicts]


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
    env = {"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={readings}", "GATECHECK_HISTORY_URL": url}
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
    code, out, err = cli("shadow-report", "--phase", "overtime", "--since", "1d", "--as-of", "2026-03-02T09:00:00Z")
    assert "reading_shadow (required, shadow): judged 8 times, would have blocked 4 (50.0%)" in out
    assert "with a ROLLBACK 0 · with an enforced failure 2 · alone 2" in out
    # the command records who and why, and refuses what is not a shadow check
    code, out, err = cli("enforce", "--phase", "overtime", "--check", "reading_shadow", "--reason", "ok", "--by", "bob")
    assert code == 0 and "check-enforced" in out and "reading_shadow" in out, err
    code, out, err = cli("enforce", "--phase", "overtime", "--check", "reading_v", "--reason", "ok", "--by", "bob")
    assert code == 2 and err.strip() == "gatecheck: error: --check: reading_v is enforced in overtime already (it has no enforce: false)"
    code, out, err = cli("enforce", "--phase", "overtime", "--check", "reading_shadw", "--reason", "ok", "--by", "bob")
    assert code == 2 and "did you mean 'reading_shadow'" in err and len(err.strip().splitlines()) == 1


def test_the_shadow_report_tells_rollbacks_from_enforced_failures_from_alone() -> None:
    def document(verdict: str, checks: list[CheckResult]) -> dict[str, Any]:
        return {"verdict": verdict, "as_of": "2026-03-02T01:00:00Z", "checks": [c.model_dump(mode="json") for c in checks]}

    shadow = check(F, suite="new").model_copy(update={"shadow": True})
    found = shadow_report([
        document("rollback", [check(P), check(F, role="rollback", suite="t"), shadow]),
        document("no-go", [check(F), shadow]),
        document("go", [check(P), shadow]),
        document("go", [check(P), shadow.model_copy(update={"outcome": P})]),
        document("go", [check(P)]),
    ])  # fmt: skip
    (one,) = found
    assert (one.judged, one.would_block, one.with_rollback, one.with_enforced_failure, len(one.alone)) == (4, 3, 1, 1, 1)
