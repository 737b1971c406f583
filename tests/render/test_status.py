"""`gatecheck status` (the chain at a glance) and `gatecheck report` (the status update)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gatecheck._values import number
from gatecheck.cli import app
from gatecheck.ledger import SqliteLedger
from gatecheck.results import CheckResult, Outcome, SoakStatus, Verdict, VerdictState, Window

from ..conftest import PROJECT

runner = CliRunner()
NOW = datetime.now(UTC).replace(microsecond=0)


def recorded(phase: str, state: VerdictState, reasons: list[str], soak: SoakStatus | None = None) -> Verdict:
    window = Window(start=NOW - timedelta(hours=1), end=NOW, length=timedelta(hours=1), settle=timedelta(0))
    outcome = Outcome.PASS if state is VerdictState.GO else Outcome.INCONCLUSIVE
    check = CheckResult(
        suite="stream_topology", source="bus", role="required", outcome=outcome, window=window
    )
    return Verdict(
        phase=phase, environment="staging", as_of=NOW, verdict=state, reasons=reasons, checks=[check],
        soak=soak, config_hash="h", gatecheck_version="t",
    )  # fmt: skip


def test_status_shows_the_next_phase_and_why_it_is_blocked(isolated_history: Path) -> None:
    ledger = SqliteLedger(isolated_history)
    ledger.record(recorded("staging-predeploy", VerdictState.GO, ["all 1 required checks passed"]), 0.1)
    ledger.record(recorded("staging-deploy", VerdictState.GO, ["all 3 required checks passed"]), 0.1)
    soak = SoakStatus(
        duration=timedelta(hours=48), max_gap=timedelta(minutes=30), covered=False,
        coverage=timedelta(hours=10), reason="10h of 48h covered",
    )  # fmt: skip
    ledger.record(
        recorded("staging-soak", VerdictState.INCONCLUSIVE, ["soak not covered: 10h of 48h covered"], soak),
        0.1,
    )
    result = runner.invoke(app, ["status", "--config", str(PROJECT), "--format", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["next"] == "staging-soak"
    by_phase = {p["phase"]: p for p in document["phases"]}
    assert by_phase["staging-deploy"]["verdict"] == "go" and by_phase["staging-deploy"]["blocked_by"] is None
    assert by_phase["staging-soak"]["blocked_by"] == "soak not covered: 10h of 48h covered"
    assert by_phase["staging-soak"]["soak_coverage_s"] == 36000
    assert by_phase["prod-predeploy"]["verdict"] is None
    text = runner.invoke(app, ["status", "--config", str(PROJECT)]).stdout
    assert "→  staging-soak" in text and "10h of 48h" in text and "next: staging-soak" in text


def test_status_says_a_go_taken_back_and_makes_its_phase_the_next(isolated_history: Path, tmp_path: Path) -> None:
    """staging-deploy's latest GO invalidated (`gatecheck invalidate`): `status` says who took
    it back and why, marks it withdrawn and names it the next phase to clear — the ledger's
    way and a service's (`--url`, its /api/v1/phases) alike."""
    from gatecheck.config import load_project
    from gatecheck.service.core import Service

    from ..conftest import serving

    ledger = SqliteLedger(isolated_history)
    ledger.record(recorded("staging-predeploy", VerdictState.GO, ["all 1 required checks passed"]), 0.1)
    ledger.record(recorded("staging-deploy", VerdictState.GO, ["all 3 required checks passed"]), 0.1)
    done = runner.invoke(app, ["invalidate", "--phase", "staging-deploy", "--record", NOW.isoformat(),
                               "--reason", "its probe hit the wrong service", "--by", "bob", "--config", str(PROJECT)])  # fmt: skip
    assert done.exit_code == 0, done.output

    def check(document: dict) -> None:
        assert document["next"] == "staging-deploy"
        deploy = {p["phase"]: p for p in document["phases"]}["staging-deploy"]
        assert deploy["withdrawn"].startswith("invalidated by bob at ")
        assert deploy["withdrawn"].endswith(" (its probe hit the wrong service)")

    check(json.loads(runner.invoke(app, ["status", "--config", str(PROJECT), "--format", "json"]).stdout))
    text = runner.invoke(app, ["status", "--config", str(PROJECT)]).stdout
    assert "go (withdrawn)" in text and "(its probe hit the wrong service): this GO no longer holds" in text
    # the status update says it among the blockers, and holds the phase instead of promoting it
    update = runner.invoke(app, ["report", "--phase", "staging-deploy", "--config", str(PROJECT)]).stdout
    blockers = update.split("### 🔴 Blockers")[1].split("###")[0]
    assert "- this GO no longer holds: invalidated by bob at " in blockers and "- none" not in blockers
    assert "- hold `staging-deploy`: its latest GO was taken back; it needs a newer one" in update
    assert "promote" not in update
    # the phase's history marks the record, and only that one
    listed = runner.invoke(app, ["history", "--phase", "staging-deploy", "--config", str(PROJECT)]).stdout
    assert "  go (invalidated)  " in listed
    other = runner.invoke(app, ["history", "--phase", "staging-predeploy", "--config", str(PROJECT)]).stdout
    assert "invalidated" not in other and "  go  " in other
    service = Service(load_project(PROJECT, environ={}), ledger, [])
    with serving(service) as (base, _):
        check(json.loads(runner.invoke(app, ["status", "--url", base, "--format", "json"]).stdout))


def test_report_without_a_record_is_a_clear_error() -> None:
    result = runner.invoke(app, ["report", "--phase", "canary-10", "--config", str(PROJECT)])
    assert result.exit_code == 2
    assert "no recorded evaluation of canary-10" in result.stderr


@pytest.mark.parametrize("scenario", ["healthy", "fallback", "dlq"])
def test_status_update_numbers_equal_the_json_observed_values(
    scenario: str, warehouse: Path, live_warehouse: str, bus_for, metrics_url: str, postgres_for, e2e_for
) -> None:
    env = {
        "GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={live_warehouse}",
        "GATECHECK_NATS_URL": bus_for(scenario), "GATECHECK_NATS_PRODUCTION_URL": bus_for(scenario),
        "GATECHECK_PROMETHEUS_URL": metrics_url,
        "GATECHECK_POSTGRES_URL": postgres_for("healthy", live=True),
        "GATECHECK_E2E_REPORTS": e2e_for("healthy", live=True),
    }
    args = ["run", "--phase", "staging-soak", "--config", str(PROJECT), "--assume-approved", "staging-deploy"]
    run = runner.invoke(app, [*args, "--assume-soaked", "--format", "json"], env=env)
    document = json.loads(run.stdout)
    report = runner.invoke(app, ["report", "--phase", "staging-soak", "--config", str(PROJECT)], env=env)
    assert report.exit_code == 0, report.output
    text = report.stdout

    def observed(column: str) -> float:
        for check in document["checks"]:
            for expectation in check["expectations"]:
                if expectation["column"] == column:
                    return expectation["observed_value"]
        raise AssertionError(column)

    # the one number formatter: no float noise, a share as a percentage with 4 significant digits
    assert f"| Messages on AA_CORE_HOT | ≥ 100 % | {number(observed('core_hot_share'), '%')} |" in text
    assert f"| DLQ messages in the window | ≤ 0 | {number(observed('dlq_messages'))} |" in text
    assert f"| Success rate | ≥ 99.9 % | {number(observed('success_ratio'), '%')} |" in text
    assert f"| Fallback events | ≤ 0 | {number(observed('fallback_events'))} |" in text
    assert f"| p95 latency (ms) | ≤ 500 | {number(observed('p95_latency_ms'))} |" in text
    assert f"verdict **{document['verdict'].upper()}**" in text
    if scenario == "healthy":
        assert "### 🔴 Blockers\n- none" in text and "promote: `staging-soak` is GO" in text
    else:
        blocker = text.split("### 🔴 Blockers\n")[1].split("\n\n")[0]
        assert "`soak_criteria` (required)" in blocker
        assert "hold `staging-soak`" in text


def test_the_status_update_never_says_none_above_an_issue_and_names_each_role() -> None:
    """"⚠️ Issues: none" followed by "soak: 0s of 48h covered" contradicted itself; a suite that
    is both a required check and a rollback trigger was listed as passed twice, alike."""
    from datetime import timedelta

    from gatecheck.render.status import render_status_update
    from gatecheck.results import SoakStatus

    from ..service.test_notify import verdict as made

    base = made(VerdictState.INCONCLUSIVE)
    check = base.checks[0]
    verdict = base.model_copy(update={
        "checks": [check, check.model_copy(update={"role": "rollback"})],
        "soak": SoakStatus(duration=timedelta(hours=48), max_gap=timedelta(minutes=30), covered=False,
                           reason="0s of 48h covered"),
    })  # fmt: skip
    text = render_status_update(verdict, [], verdict.as_of)
    issues = text.split("### ⚠️ Issues\n")[1].split("\n\n")[0].splitlines()
    assert issues == ["- soak: 0s of 48h covered"]
    completed = text.split("### ✅ Completed\n")[1].split("\n\n")[0].splitlines()
    assert completed == ["- `events_arriving` passed (required)", "- `events_arriving` passed (rollback trigger)"]


def test_a_teams_own_project_gets_a_plain_title_and_its_own_metrics() -> None:
    """`report` on a project that is not the Phase B runbook was titled "Phase B status update"
    and showed an empty Metrics table."""
    from gatecheck.render.status import render_status_update

    from ..service.test_notify import verdict as made

    verdict = made(VerdictState.NO_GO)
    text = render_status_update(verdict, [], verdict.as_of)
    assert text.startswith(f"## Status update — {verdict.phase}\n") and "Phase B" not in text
    metrics = text.split("### 📊 Metrics\n\n")[1].split("\n\n")[0].splitlines()
    assert metrics[:2] == ["| Metric | Target | Current |", "|---|---|---|"]
    assert "| `events_arriving` newest_age_s | ≤ 300 s (newest_event_age_max_s, default) | 912 s |" in metrics
    bare = verdict.model_copy(update={"checks": [c.model_copy(update={"expectations": []}) for c in verdict.checks]})
    assert "Metrics" not in render_status_update(bare, [], verdict.as_of)  # never an empty table
