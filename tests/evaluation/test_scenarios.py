"""Every demo scenario through the real gate on chDB: the verdict a release manager expects."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from gatecheck.results import Outcome, Requirement, SoakStatus, Verdict, VerdictState

from ..conftest import AS_OF, evaluate

WAREHOUSE_CHECKS = (
    "unmatched_edges", "freshness_lag", "rollup_parity", "rollup_reconcile", "demand_grain_parity",
    "unattributed_sessions",
)  # fmt: skip


def run(project, phase: str = "warehouse-release", **kwargs) -> Verdict:
    return asyncio.run(evaluate(project, phase, AS_OF, **kwargs))


def outcomes(verdict: Verdict) -> dict[str, Outcome]:
    return {c.suite: c.outcome for c in verdict.checks}


def failing_groups(verdict: Verdict, suite: str) -> list[tuple[str | None, dict[str, str], object]]:
    (check,) = [c for c in verdict.checks if c.suite == suite]
    return [(e.column, g.group, g.observed_value) for e in check.expectations for g in e.failing_groups]


def test_healthy_is_go_with_evidence(project_for) -> None:
    verdict = run(project_for("healthy"))
    assert verdict.verdict is VerdictState.GO
    assert outcomes(verdict) == dict.fromkeys(WAREHOUSE_CHECKS, Outcome.PASS)
    edges = next(c for c in verdict.checks if c.suite == "unmatched_edges")
    assert edges.evidence is not None and edges.evidence.observed_total >= 1500
    assert edges.window.end == AS_OF - timedelta(minutes=10)


@pytest.mark.parametrize(
    ("scenario", "suite", "column", "group"),
    [
        ("unmatched-edges", "unmatched_edges", "unmatched_rate", {"edge_type": "start->first_segment"}),
        (
            "stale-ingest",
            "freshness_lag",
            "ingest_lag_s",
            {"source_table": "stream_trace_events", "clock_domain": "all"},
        ),
        (
            "clock-skew",
            "freshness_lag",
            "clock_skew_rate",
            {"source_table": "stream_trace_events", "clock_domain": "runner"},
        ),
        (
            "rollup-drift",
            "rollup_parity",
            "rel_diff",
            {
                "hour": (AS_OF - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "gateway": "gw-iad-1",
                "region": "us-east",
                "pipeline": "text-to-image",
                "model_id": "sdxl-lightning",
                "present_in": "both",
            },
        ),
        ("unattributed-spike", "unattributed_sessions", "unattributed_rate", {}),
    ],
)
def test_each_defect_is_no_go_naming_the_exact_group(project_for, scenario, suite, column, group) -> None:
    verdict = run(project_for(scenario))
    assert verdict.verdict is VerdictState.NO_GO
    # One thing broken: exactly that check fails (a rollup's drift: both rollup checks), the
    # others still pass.
    expected = dict.fromkeys(WAREHOUSE_CHECKS, Outcome.PASS) | {suite: Outcome.FAIL}
    if scenario == "rollup-drift":
        expected["rollup_reconcile"] = Outcome.FAIL
    assert outcomes(verdict) == expected
    groups = failing_groups(verdict, suite)
    assert [(c, g) for c, g, _ in groups] == [(column, group)]
    assert suite in verdict.reasons[0]


def test_a_drifted_rollup_key_is_named_by_the_reconciliation(project_for) -> None:
    """rollup-drift counted 7 sessions twice in one hour and key: the reconciliation names
    that key as changed — nothing missing, extra or duplicated — having fetched only the rows
    of its differing bucket."""
    drift = run(project_for("rollup-drift"))
    (check,) = [c for c in drift.checks if c.suite == "rollup_reconcile"]
    found = check.reconciliation
    assert found is not None and found.hashing == "clickhouse"
    assert (found.missing, found.extra, found.changed, found.duplicated) == (0, 0, 1, 0)
    assert found.samples["changed"] == [{
        "hour": (AS_OF - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ"), "gateway": "gw-iad-1",
        "region": "us-east", "pipeline": "text-to-image", "model_id": "sdxl-lightning",
    }]  # fmt: skip
    fetched = [r for r in found.rounds if r.what == "rows"]
    assert len(fetched) == 1 and max(fetched[0].transferred.values()) < found.rows["rollup"]
    healthy = run(project_for("healthy"))
    (same,) = [c for c in healthy.checks if c.suite == "rollup_reconcile"]
    assert same.reconciliation is not None
    assert [r.what for r in same.reconciliation.rounds] == ["cells", "duplicates"]


def test_failure_values_are_the_observed_ones(project_for) -> None:
    stale = run(project_for("stale-ingest"))
    ((_, _, lag),) = failing_groups(stale, "freshness_lag")
    assert 1200 <= lag < 1205  # raw events stopped 20 minutes before as_of
    drift = run(project_for("rollup-drift"))
    (check,) = [c for c in drift.checks if c.suite == "rollup_parity"]
    (expectation,) = check.expectations
    assert expectation.thresholds[0].value == 0.001 and expectation.thresholds[0].provenance == "default"


def test_thin_traffic_is_inconclusive_never_go(project_for) -> None:
    verdict = run(project_for("thin-traffic"))
    assert verdict.verdict is VerdictState.INCONCLUSIVE
    result = outcomes(verdict)
    assert result["unmatched_edges"] is Outcome.INCONCLUSIVE
    assert result["unattributed_sessions"] is Outcome.INCONCLUSIVE
    assert Outcome.FAIL not in result.values()


def test_a_missing_warehouse_is_error_and_inconclusive(project_for, tmp_path: Path) -> None:
    project = project_for("healthy", extra={"GATECHECK_CLICKHOUSE_URL": f"chdb://{tmp_path / 'missing'}"})
    verdict = run(project)
    assert verdict.verdict is VerdictState.INCONCLUSIVE
    assert set(outcomes(verdict).values()) == {Outcome.ERROR}
    assert "does not exist" in (verdict.checks[0].reason or "")


def test_a_query_error_is_error_for_that_check_only(project_for, config_copy: Path) -> None:
    path = config_copy / "suites" / "unattributed_sessions.yaml"
    suite = yaml.safe_load(path.read_text())
    suite["query"] = suite["query"].replace("attribution_source", "attribution_src", 1)
    path.write_text(yaml.safe_dump(suite))
    verdict = run(project_for("healthy", root=config_copy))
    assert verdict.verdict is VerdictState.INCONCLUSIVE
    assert outcomes(verdict)["unattributed_sessions"] is Outcome.ERROR
    assert outcomes(verdict)["unmatched_edges"] is Outcome.PASS
    (check,) = [c for c in verdict.checks if c.suite == "unattributed_sessions"]
    assert "attribution_src" in (check.reason or "")


def test_requires_and_soak_need_recorded_history_or_explicit_assumptions(
    warehouse, live_warehouse, bus_for, metrics_url, postgres_for, e2e_for
) -> None:
    from gatecheck.config import load_project

    from ..conftest import PROJECT

    environ = {
        "GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={live_warehouse}",
        "GATECHECK_NATS_URL": bus_for("healthy"), "GATECHECK_NATS_PRODUCTION_URL": bus_for("healthy"),
        "GATECHECK_PROMETHEUS_URL": metrics_url,
        "GATECHECK_POSTGRES_URL": postgres_for("healthy", live=True),
        "GATECHECK_E2E_REPORTS": e2e_for("healthy", live=True),
    }
    project = load_project(PROJECT, environ=environ)
    plain = asyncio.run(evaluate(project, "staging-soak"))
    assert all(c.outcome is Outcome.PASS for c in plain.checks if c.role == "required"), plain.reasons
    assert plain.verdict is VerdictState.INCONCLUSIVE  # no recorded GO of staging-deploy, no soak
    assert not plain.requires[0].satisfied
    assert plain.soak is not None and not plain.soak.covered
    approved = asyncio.run(evaluate(project, "staging-soak", assume_approved=["staging-deploy"]))
    assert approved.requires[0].satisfied and approved.verdict is VerdictState.INCONCLUSIVE
    both = asyncio.run(
        evaluate(project, "staging-soak", assume_approved=["staging-deploy"], assume_soaked=True)
    )
    assert both.verdict is VerdictState.GO
    assert both.soak is not None and both.soak.assumed and both.soak.covered


def test_a_go_that_rests_on_an_assumption_does_not_satisfy_the_next_phase(tmp_path: Path) -> None:
    """`run --phase staging-soak --assume-soaked` once, recorded: the GO rests on the
    assumption. prod-predeploy (requires staging-soak) does not take it as earned — else one
    manual run would stand for the 48-hour soak in every later evaluation, the service's
    included, until a NO-GO. It says why and what to do; an earned GO of the same phase, or
    an explicit --assume-approved, satisfies it."""
    from gatecheck.evaluation.gate import _requirement
    from gatecheck.ledger.sqlite import SqliteLedger

    from .test_gate import result

    def soak_go(at: Any, assumed: bool, approved: bool = False) -> Verdict:
        return Verdict(
            phase="staging-soak", environment="staging", as_of=at, verdict=VerdictState.GO,
            reasons=["all 1 required checks passed"], checks=[result(Outcome.PASS)],
            requires=[Requirement(phase="staging-deploy", satisfied=True,
                                  reason="assumed approved (--assume-approved)" if approved else "GO recorded")],
            soak=SoakStatus(duration=timedelta(hours=48), max_gap=timedelta(minutes=30), covered=True,
                            assumed=assumed, reason="assumed" if assumed else "covered"),
            config_hash="c", gatecheck_version="test",
        )  # fmt: skip

    ledger = SqliteLedger(tmp_path / "l.db")

    def required() -> Requirement:
        return asyncio.run(_requirement("staging-soak", set(), ledger, AS_OF))

    ledger.record(soak_go(AS_OF - timedelta(hours=2), assumed=True, approved=True), 0.1)
    unmet = required()
    assert not unmet.satisfied
    assert unmet.reason == (
        "the latest GO of staging-soak, as of 2026-11-22T04:00:00Z, rests on its soak assumed covered "
        "(--assume-soaked) and staging-deploy assumed approved (--assume-approved), not on evidence: it "
        "needs a GO earned without them, or --assume-approved staging-soak"
    )
    explicit = asyncio.run(_requirement("staging-soak", {"staging-soak"}, ledger, AS_OF))
    assert explicit.satisfied
    ledger.record(soak_go(AS_OF - timedelta(hours=1), assumed=False), 0.1)
    assert required().satisfied  # earned


def test_an_invalidated_go_does_not_satisfy_the_next_phase(tmp_path: Path) -> None:
    """`gatecheck invalidate` on staging-soak's latest GO (its source was broken): the next
    phase's requires is unmet, naming who and why, until a newer GO — the invalidation
    through the CLI, on a real SQLite ledger. (Decisions hold for evaluations after them:
    the moments are now's.)"""
    from datetime import UTC, datetime

    from typer.testing import CliRunner

    from gatecheck.cli import app
    from gatecheck.evaluation.gate import _requirement
    from gatecheck.ledger.sqlite import SqliteLedger

    from ..conftest import PROJECT
    from .test_gate import result

    def go(at: Any) -> Verdict:
        return Verdict(
            phase="staging-soak", environment="staging", as_of=at, verdict=VerdictState.GO,
            reasons=["all 1 required checks passed"], checks=[result(Outcome.PASS)], config_hash="c",
            gatecheck_version="test",
        )  # fmt: skip

    ledger = SqliteLedger(tmp_path / "l.db")
    first = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    ledger.record(go(first), 0.1)
    done = CliRunner().invoke(
        app,
        ["invalidate", "--phase", "staging-soak", "--record", first.isoformat(), "--reason",
         "the bus exporter dropped DLQ counts", "--by", "bob", "--config", str(PROJECT)],
        env={"GATECHECK_HISTORY_URL": f"sqlite:///{tmp_path / 'l.db'}"},
    )  # fmt: skip
    assert done.exit_code == 0, done.output

    def required() -> Requirement:
        now = datetime.now(UTC)
        trail = ledger.audit(["staging-soak"], None, ["record-invalidated"])
        return asyncio.run(_requirement("staging-soak", set(), ledger, now, trail=trail))

    unmet = required()
    assert not unmet.satisfied
    stamp = first.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert unmet.reason.startswith(f"the latest GO of staging-soak, as of {stamp}, no longer holds: invalidated by bob at ")
    assert unmet.reason.endswith(" (the bus exporter dropped DLQ counts): it needs a newer GO")
    ledger.record(go(first + timedelta(hours=1)), 0.1)
    assert required().satisfied





@pytest.mark.parametrize(("scenario", "verdict", "broken"), [
    ("healthy", "go", None), ("stale-ingest", "no-go", "freshness_lag"), ("unmatched-edges", "no-go", "unmatched_edges"),
])  # fmt: skip
def test_a_served_demos_warehouse_lives_on_and_keeps_its_one_broken_thing(
    warehouse: Path, scenario: str, verdict: str, broken: str | None
) -> None:
    """The served demo's warehouse is built on to 24 h past its start: judged 12 h later it is
    still fresh (healthy: GO) and each scenario still has its one broken thing."""
    import asyncio
    from datetime import timedelta

    from gatecheck.config import load_project
    from gatecheck.demo.reference import build_reference
    from gatecheck.sources.clickhouse.connection import ClickHouse, Target

    from ..conftest import AS_OF, PROJECT, evaluate

    database = "served_" + scenario.replace("-", "_")
    with ClickHouse() as clickhouse:
        connection = clickhouse.connect(Target.parse(f"chdb://{warehouse}", warehouse))
        build_reference(connection, database, AS_OF, scenario, until=AS_OF + timedelta(hours=24))
    project = load_project(PROJECT, environ={"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={database}"})
    for hours in (0, 12):
        judged = asyncio.run(evaluate(project, "warehouse-release", AS_OF + timedelta(hours=hours)))
        assert judged.verdict.value == verdict, (hours, judged.reasons)
        assert [c.suite for c in judged.checks if c.outcome.value != "pass"] == ([broken] if broken else [])
