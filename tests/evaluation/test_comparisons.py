"""Comparison suites through the real gate: the shipped ``demand_grain_parity`` (two queries on
chDB), ``hrv_db_integrity`` (nats-server vs PostgreSQL) and ``canary_latency_vs_baseline``
(the normalize service's histogram by track, scraped and on a real Prometheus) — pass, a key
missing on either side, a difference beyond tolerance, too little evidence on one side, one
side's source down — and the reports and metrics that show both sides."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from gatecheck._values import number
from gatecheck.config import load_project
from gatecheck.demo.reference import build_reference
from gatecheck.results import CheckResult, Outcome, Verdict, VerdictState
from gatecheck.sources.clickhouse.connection import ClickHouse, Target

from ..conftest import AS_OF, PROJECT, evaluate

HOUR = timedelta(hours=1)


def check_of(verdict: Verdict, suite: str) -> CheckResult:
    (check,) = [c for c in verdict.checks if c.suite == suite]
    return check


@pytest.fixture(scope="module")
def demand_db(warehouse: Path) -> Callable[[str, list[str]], str]:
    """A healthy reference warehouse in a database of its own, changed by ``statements``
    (``{db}`` is the database) → the ClickHouse URL of that database."""
    built: dict[str, str] = {}

    def make(name: str, statements: list[str]) -> str:
        if name not in built:
            database = f"demand_{name}"
            with ClickHouse() as hub:
                connection = hub.connect(Target.parse(f"chdb://{warehouse}", warehouse))
                build_reference(connection, database, AS_OF, "healthy")
                for statement in statements:
                    connection.command(statement.replace("{db}", f"`{database}`"))
            built[name] = f"chdb://{warehouse}?database={database}"
        return built[name]

    return make


def demand_verdict(url: str, root: Path = PROJECT, extra: dict[str, str] | None = None) -> Verdict:
    project = load_project(root, environ={"GATECHECK_CLICKHOUSE_URL": url, **(extra or {})})
    return asyncio.run(evaluate(project, "warehouse-release", AS_OF))


TWO_HOURS_AGO = f"toDateTime('{(AS_OF - 2 * HOUR).strftime('%Y-%m-%d %H:00:00')}', 'UTC')"


def test_the_grains_adding_up_pass_with_both_sides_totals(project_for) -> None:
    verdict = asyncio.run(evaluate(project_for("healthy"), "warehouse-release", AS_OF))
    check = check_of(verdict, "demand_grain_parity")
    assert check.outcome is Outcome.PASS, check.reason
    assert check.source == "warehouse"
    model, pipeline = check.sides
    assert (model.side, pipeline.side) == ("model_grain", "pipeline_grain")
    assert model.values["sessions"] == pipeline.values["sessions"] and model.values["sessions"] > 2000
    assert check.evidence is not None and check.evidence.column == "model_grain_sessions"


def test_demand_drift_names_the_missing_key_and_the_difference_with_both_sides(project_for) -> None:
    verdict = asyncio.run(evaluate(project_for("demand-drift"), "warehouse-release", AS_OF))
    assert verdict.verdict is VerdictState.NO_GO
    assert {c.suite: c.outcome for c in verdict.checks if c.outcome is not Outcome.PASS} == {
        "demand_grain_parity": Outcome.FAIL
    }
    check = check_of(verdict, "demand_grain_parity")
    rel, present = check.expectations
    missing_hour = (AS_OF - 2 * HOUR).replace(minute=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    doubled_hour = (AS_OF - 4 * HOUR).replace(minute=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    (gone,) = present.failing_groups
    assert gone.group == {
        "hour": missing_hour, "gateway": "gw-fra-1", "region": gone.group["region"],
        "pipeline": "text-to-image", "present": "model_grain only",
    }  # fmt: skip
    assert gone.values["pipeline_grain_sessions"] is None and gone.values["model_grain_sessions"] > 0
    by_hour = {g.group["hour"]: g for g in rel.failing_groups}
    assert set(by_hour) == {missing_hour, doubled_hour}
    doubled = by_hour[doubled_hour]
    assert doubled.group["gateway"] == "gw-iad-1" and doubled.group["present"] == "both"
    assert doubled.values["sessions_diff"] == -5
    assert doubled.values["pipeline_grain_sessions"] == doubled.values["model_grain_sessions"] + 5
    # the report shows the key, both sides' values and the difference
    assert "model_grain_sessions" in (check.reason or "") and "sessions_diff -5" in (check.reason or "")


def test_a_key_missing_on_the_model_grain_fails_naming_it(demand_db) -> None:
    url = demand_db(
        "model_missing",
        [
            f"ALTER TABLE {{db}}.network_demand_hourly DELETE WHERE hour = {TWO_HOURS_AGO} "
            "AND gateway = 'gw-sin-1' SETTINGS mutations_sync = 1"
        ],
    )
    check = check_of(demand_verdict(url), "demand_grain_parity")
    assert check.outcome is Outcome.FAIL
    _, present = check.expectations
    assert {g.group["present"] for g in present.failing_groups} == {"pipeline_grain only"}
    assert {g.group["gateway"] for g in present.failing_groups} == {"gw-sin-1"}


def test_a_difference_within_the_tolerance_passes_and_beyond_it_fails(demand_db, config_copy: Path) -> None:
    url = demand_db(
        "one_more",
        [
            f"INSERT INTO {{db}}.network_demand_hourly SELECT {TWO_HOURS_AGO}, 'gw-iad-1', 'us-east', "
            "'text-to-image', 'sdxl-lightning', 1, 5.0"
        ],
    )
    check = check_of(demand_verdict(url), "demand_grain_parity")
    assert check.outcome is Outcome.FAIL  # the default tolerance is 0
    (group,) = check.expectations[0].failing_groups
    assert group.values["sessions_diff"] == 1
    thresholds = yaml.safe_load((config_copy / "thresholds.yaml").read_text())
    thresholds["defaults"]["demand_grain_rel_tol"] = 0.05  # one session in ~100: within 5%
    (config_copy / "thresholds.yaml").write_text(yaml.safe_dump(thresholds))
    assert check_of(demand_verdict(url, config_copy), "demand_grain_parity").outcome is Outcome.PASS


def test_too_little_evidence_on_one_side_is_inconclusive_however_the_keys_differ(demand_db) -> None:
    url = demand_db(
        "thin_pipeline",
        ["ALTER TABLE {db}.network_demand_pipeline_hourly DELETE WHERE gateway != 'gw-iad-1' "
         "OR pipeline != 'text-to-image' SETTINGS mutations_sync = 1",
         "ALTER TABLE {db}.network_demand_pipeline_hourly UPDATE sessions = 1 WHERE 1 SETTINGS mutations_sync = 1"],
    )  # fmt: skip
    verdict = demand_verdict(url)
    check = check_of(verdict, "demand_grain_parity")
    assert check.outcome is Outcome.INCONCLUSIVE
    assert check.evidence is not None and check.evidence.column == "pipeline_grain_sessions"
    assert check.evidence.observed_total is not None and check.evidence.observed_total < 50
    assert "too little evidence: pipeline_grain_sessions" in (check.reason or "")
    assert verdict.verdict is VerdictState.INCONCLUSIVE


# --------------------------------------------------------------------------- hrv_db_integrity


@pytest.fixture
def integrity_config(config_copy: Path) -> Path:
    """The shipped configuration with a gate running only hrv_db_integrity over 48 hours."""
    (config_copy / "gates" / "integrity.yaml").write_text(
        yaml.safe_dump(
            {
                "phase": "integrity",
                "environment": "staging",
                "window": "48h",
                "checks": [{"suite": "hrv_db_integrity"}],
            }
        )
    )
    return config_copy


def integrity(root: Path, bus: str, database: str, as_of=None) -> CheckResult:
    project = load_project(
        root,
        environ={
            "GATECHECK_NATS_URL": bus,
            "GATECHECK_NATS_PRODUCTION_URL": bus,
            "GATECHECK_POSTGRES_URL": database,
        },
    )
    return check_of(asyncio.run(evaluate(project, "integrity", as_of)), "hrv_db_integrity")


def test_every_bus_message_with_its_row_passes(integrity_config, bus_for, postgres_for) -> None:
    check = integrity(integrity_config, bus_for("healthy"), postgres_for("healthy", live=True))
    assert check.outcome is Outcome.PASS, check.reason
    assert check.source == "bus vs database"
    bus, database = check.sides
    assert (bus.side, bus.source, database.side, database.source) == ("bus", "bus", "database", "database")
    assert bus.values == {"rows": 240.0} and database.values == {"rows": 240.0}
    found = check.reconciliation
    assert found is not None and found.hashing == "portable" and found.keys == ["message_id"]
    assert (found.missing, found.extra, found.changed, found.duplicated) == (0, 0, 0, 0)
    # matching digests cost only their cells: no row of the database crossed
    assert [(r.what, r.differing) for r in found.rounds] == [("cells", 0), ("duplicates", 0)]
    assert found.rounds[1].transferred == {"bus": 0, "database": 0}


def test_messages_without_rows_fail_naming_them(integrity_config, bus_for, postgres_for) -> None:
    check = integrity(integrity_config, bus_for("healthy"), postgres_for("db-missing", live=True))
    assert check.outcome is Outcome.FAIL
    found = check.reconciliation
    assert found is not None and (found.missing, found.extra, found.changed, found.duplicated) == (
        40,
        0,
        0,
        0,
    )
    assert found.samples["missing"][:2] == [{"message_id": "bus-000200"}, {"message_id": "bus-000201"}]
    assert len(found.samples["missing"]) == 10  # the suite's sample size (default)
    assert "message_id: missing bus-000200, bus-000201, bus-000202 (+37 more)" in (check.reason or "")
    assert [e.column for e in check.expectations if e.outcome is Outcome.FAIL] == ["missing"]


def test_equal_counts_of_missing_and_duplicated_rows_are_no_go(
    integrity_config, bus_for, postgres_for
) -> None:
    """40 messages never written and 40 written twice: as many rows as messages (a count
    comparison's GO), and by key both kinds, each named."""
    check = integrity(integrity_config, bus_for("healthy"), postgres_for("db-duplicates", live=True))
    assert check.outcome is Outcome.FAIL
    assert [s.values["rows"] for s in check.sides] == [240.0, 240.0]
    found = check.reconciliation
    assert found is not None and (found.missing, found.duplicated, found.extra, found.changed) == (
        40,
        40,
        0,
        0,
    )
    assert found.samples["duplicated"][0] == {"message_id": "bus-000000"}
    assert sorted(e.column for e in check.expectations if e.outcome is Outcome.FAIL) == [
        "duplicated",
        "missing",
    ]


def test_a_database_without_any_row_of_the_window_fails(integrity_config, bus_for, postgres_for) -> None:
    # built at AS_OF (days ago): nothing written in the window the bus has messages in
    check = integrity(integrity_config, bus_for("healthy"), postgres_for("healthy"))
    assert check.outcome is Outcome.FAIL
    assert [s.values["rows"] for s in check.sides] == [240.0, 0.0]
    assert check.reconciliation is not None and check.reconciliation.missing == 240


def test_a_window_before_the_traffic_is_too_little_evidence_on_the_bus(
    integrity_config, bus_for, postgres_for
) -> None:
    from datetime import UTC, datetime

    before = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=49)
    check = integrity(integrity_config, bus_for("healthy"), postgres_for("healthy", live=True), before)
    assert check.outcome is Outcome.INCONCLUSIVE
    assert check.evidence is not None and check.evidence.column == "bus_rows"
    assert "too little evidence: bus_rows" in (check.reason or "")


def test_more_messages_than_the_side_may_read_is_inconclusive(
    integrity_config, bus_for, postgres_for
) -> None:
    """The bus side reads at most max_messages: more in the window is inconclusive, never a
    judgement of the first part."""
    path = integrity_config / "suites" / "hrv_db_integrity.yaml"
    suite = yaml.safe_load(path.read_text())
    suite["reconcile"]["sides"]["bus"]["query"]["messages"]["max_messages"] = 100
    path.write_text(yaml.safe_dump(suite))
    check = integrity(integrity_config, bus_for("healthy"), postgres_for("healthy", live=True))
    assert check.outcome is Outcome.INCONCLUSIVE
    assert (check.reason or "").startswith("side bus: source bus: messages of athlete-ally.hrv.raw-received")
    assert "240 in the window, more than max_messages (100)" in (check.reason or "")


@pytest.mark.parametrize("down", ["pipeline_grain", "bus", "database"])
def test_a_sides_source_down_is_an_error_naming_that_side(
    down: str, project_for, warehouse, config_copy: Path, integrity_config, bus_for, postgres_for
) -> None:
    """One side's source cannot be reached — a ClickHouse server (demand_grain_parity's
    pipeline grain), the bus or the database (hrv_db_integrity): the check is an error naming
    that side and its source, the other side still answered, and gatecheck_source_up says
    which source was down (never the pair's label)."""
    from gatecheck.demo.bus import free_port
    from gatecheck.service.core import source_answers

    if down == "pipeline_grain":
        suite = yaml.safe_load((PROJECT / "suites" / "demand_grain_parity.yaml").read_text())
        suite["compare"]["sides"]["pipeline_grain"]["source"] = "old_warehouse"
        (config_copy / "suites" / "demand_grain_parity.yaml").write_text(yaml.safe_dump(suite))
        project_file = yaml.safe_load((config_copy / "gatecheck.yaml").read_text())
        for environment in project_file["environments"].values():
            environment["sources"]["old_warehouse"] = {
                "type": "clickhouse",
                "url": "clickhouse://127.0.0.1:9/default",
            }
        (config_copy / "gatecheck.yaml").write_text(yaml.safe_dump(project_file))
        verdict = demand_verdict(f"chdb://{warehouse}?database=healthy", config_copy)
        check = check_of(verdict, "demand_grain_parity")
        assert check.outcome is Outcome.ERROR
        assert check.source == "warehouse vs old_warehouse"
        assert (check.reason or "").startswith("side pipeline_grain: source old_warehouse:")
        assert [(s.side, s.source, s.source_available) for s in check.sides] == [
            ("model_grain", "warehouse", True),
            ("pipeline_grain", "old_warehouse", False),
        ]
        assert verdict.verdict is VerdictState.INCONCLUSIVE
        answered, reasons = source_answers(verdict)  # what gatecheck_source_up reports
        assert answered[("staging", "warehouse")] is True and answered[("staging", "old_warehouse")] is False
        assert ("staging", "warehouse vs old_warehouse") not in answered
        assert reasons[("staging", "old_warehouse")].startswith("side pipeline_grain: source old_warehouse:")
        return
    bus = f"nats://127.0.0.1:{free_port()}" if down == "bus" else bus_for("healthy")
    database = (
        f"postgresql://postgres@127.0.0.1:{free_port()}/normalize" if down == "database"
        else postgres_for("healthy", live=True)
    )  # fmt: skip
    check = integrity(integrity_config, bus, database)
    assert check.outcome is Outcome.ERROR
    assert (check.reason or "").startswith(f"side {down}: source {down}:")
    assert {s.side: s.source_available for s in check.sides} == {
        "bus": down != "bus", "database": down != "database"
    }  # fmt: skip


# --------------------------------------------------------------------------- canary_latency_vs_baseline


@pytest.fixture
def canary_config(config_copy: Path) -> Path:
    """The shipped configuration with a gate running only canary_latency_vs_baseline."""
    gate = {
        "phase": "canary-only",
        "environment": "production",
        "checks": [{"suite": "canary_latency_vs_baseline"}],
    }
    (config_copy / "gates" / "canary-only.yaml").write_text(yaml.safe_dump(gate))
    return config_copy


def canary(root: Path, metrics: str, as_of=None) -> CheckResult:
    project = load_project(root, environ={"GATECHECK_PROMETHEUS_URL": metrics})
    return check_of(asyncio.run(evaluate(project, "canary-only", as_of)), "canary_latency_vs_baseline")


@pytest.fixture
def exposition() -> Callable[..., str]:
    """The demo's normalize exposition for a scenario, served → its scrape+http URL."""
    from gatecheck.demo.metrics import Exposition, normalize_registry

    servers: list[Exposition] = []

    def serve(scenario: str, messages: int = 2000) -> str:
        servers.append(Exposition(normalize_registry(scenario, messages)))
        return servers[-1].url

    yield serve
    for server in servers:
        server.close()


def test_a_canary_as_fast_as_its_baseline_passes(canary_config, exposition) -> None:
    check = canary(canary_config, exposition("healthy"))
    assert check.outcome is Outcome.PASS, check.reason
    (expectation,) = check.expectations
    assert expectation.observed_value is not None and expectation.observed_value > 0.3  # p-value
    sides = {s.side: s.values for s in check.sides}
    assert sides["canary"]["n"] == 200 and sides["baseline"]["n"] == 1800
    assert check.evidence is not None and check.evidence.column == "canary_n" and check.evidence.sufficient


def test_a_slower_canary_fails_with_both_p95s_the_direction_and_the_p_value(
    canary_config, exposition
) -> None:
    check = canary(canary_config, exposition("canary-slow"))
    assert check.outcome is Outcome.FAIL
    (expectation,) = check.expectations
    assert expectation.observed_value is not None and expectation.observed_value < 0.001
    sides = {s.side: s.values for s in check.sides}
    assert sides["canary"]["p95"] > sides["baseline"]["p95"] + 0.1  # bucket midpoints
    assert check.comparison is not None and check.comparison.startswith(
        "canary p95 0.375 vs baseline 0.175, higher"
    )
    assert (check.reason or "").endswith(check.comparison)


def test_too_few_canary_samples_is_inconclusive(canary_config, exposition) -> None:
    check = canary(canary_config, exposition("canary-slow", messages=300))  # 30 on the canary
    assert check.outcome is Outcome.INCONCLUSIVE
    assert check.evidence is not None and check.evidence.column == "canary_n"
    assert check.evidence.observed_total == 30 and not check.evidence.sufficient


def test_the_metrics_source_down_is_an_error(canary_config) -> None:
    from gatecheck.demo.bus import free_port

    check = canary(canary_config, f"http://127.0.0.1:{free_port()}")
    assert check.outcome is Outcome.ERROR
    assert {s.source_available for s in check.sides} == {False}
    assert (check.reason or "").startswith("source metrics:")  # both sides alike: said once


def test_on_a_real_prometheus_a_slower_canary_fails_and_an_equal_one_passes(
    canary_config, prometheus
) -> None:
    from ..prometheus_history import as_of, quiet_as_of

    slow = canary(canary_config, prometheus, as_of("canary-slow"))
    assert slow.outcome is Outcome.FAIL, slow.reason
    equal = canary(canary_config, prometheus, as_of("slo-met"))
    assert equal.outcome is Outcome.PASS, equal.reason
    assert {s.side: s.values["n"] for s in equal.sides} == {"canary": 7200, "baseline": 72000}
    quiet = canary(canary_config, prometheus, quiet_as_of())
    assert quiet.outcome is Outcome.INCONCLUSIVE


# --------------------------------------------------------------------------- reports and metrics


def test_the_phase_page_and_metrics_show_both_sides_of_a_failing_comparison(project_for) -> None:
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from gatecheck.render.html import PhaseInfo, PhasePage, render_phase, timeline
    from gatecheck.service.collector import VerdictCollector

    verdict = asyncio.run(evaluate(project_for("demand-drift"), "warehouse-release", AS_OF))
    check = check_of(verdict, "demand_grain_parity")
    model, pipeline = check.sides

    page = render_phase(
        PhasePage(PhaseInfo.of_verdict(verdict), verdict, timeline([], AS_OF, AS_OF)), AS_OF, None
    )
    assert "<th>model_grain_sessions</th><th>pipeline_grain_sessions</th><th>sessions_diff</th>" in page
    assert '<td class="side-value">-5</td>' in page  # the doubled key's difference
    assert (
        f"model_grain (warehouse) sessions {number(model.values['sessions'])}" in page
    )  # 3600, never 3600.0

    state = SimpleNamespace(verdict=verdict, last_error=None, duration_s=0.5)
    service = SimpleNamespace(
        states={"warehouse-release": state},
        interval=lambda phase: timedelta(minutes=5),
        source_up={},
        notifier=None,
        scheduling=True,
    )
    registry = CollectorRegistry()
    registry.register(VerdictCollector(service))  # type: ignore[arg-type]
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    exported = {
        (s.labels["side"], s.labels["source"], s.labels["value"]): s.value
        for s in families["gatecheck_comparison_side_value"].samples
        if s.labels["suite"] == "demand_grain_parity" and s.labels["phase"] == "warehouse-release"
    }
    assert exported == {
        ("model_grain", "warehouse", "sessions"): model.values["sessions"],
        ("pipeline_grain", "warehouse", "sessions"): pipeline.values["sessions"],
    }
    assert model.values["sessions"] != pipeline.values["sessions"]


def test_the_backtest_asks_each_side_once_for_all_steps_and_judges_each_step_as_run(
    project_for, monkeypatch
) -> None:
    """demand-drift over 8 hourly steps: both sides of demand_grain_parity in one request
    each (the one-pass form of each side's SQL), joined per step — every step's outcome and
    failing groups (with both sides' values) those of `run --as-of` at that step."""
    from gatecheck.evaluation.backtest import run_backtest
    from gatecheck.sources.clickhouse import ClickHouseSource

    project = project_for("demand-drift")
    asked: list[tuple[str, int]] = []
    original = ClickHouseSource.query_steps

    async def counting(self, text, parameter_sets):
        asked.append((text.split("FROM")[1].split()[0], len(parameter_sets)))
        return await original(self, text, parameter_sets)

    monkeypatch.setattr(ClickHouseSource, "query_steps", counting)
    report = asyncio.run(run_backtest(project, "warehouse-release", AS_OF - 7 * HOUR, AS_OF, HOUR))
    assert ("network_demand_hourly", 8) in asked and ("network_demand_pipeline_hourly", 8) in asked
    outcomes = []
    for step in report.steps:
        (mine,) = [c for c in step.checks if c.suite == "demand_grain_parity"]
        theirs = check_of(
            asyncio.run(evaluate(project, "warehouse-release", step.as_of)), "demand_grain_parity"
        )
        assert mine.outcome is theirs.outcome, step.as_of
        assert mine.observed == {f"{e.column or e.type}": e.observed_value for e in theirs.expectations}
        outcomes.append(theirs.outcome)
    assert Outcome.FAIL in outcomes and Outcome.PASS in outcomes  # the drifted hours enter the window


def test_the_keys_found_reach_the_page_the_markdown_and_a_notification(
    integrity_config, bus_for, postgres_for
) -> None:
    """What the reconciliation found, where people read it: the phase page, the markdown
    report and the notification's text name the missing and duplicated message ids."""
    from gatecheck.render.html import render_verdict_page
    from gatecheck.render.verdict import render_markdown
    from gatecheck.results import VerdictState
    from gatecheck.service.notify import message_text

    project = load_project(integrity_config, environ={
        "GATECHECK_NATS_URL": bus_for("healthy"), "GATECHECK_NATS_PRODUCTION_URL": bus_for("healthy"),
        "GATECHECK_POSTGRES_URL": postgres_for("db-duplicates", live=True),
    })  # fmt: skip
    verdict: Verdict = asyncio.run(evaluate(project, "integrity"))
    assert verdict.verdict is VerdictState.NO_GO
    page = render_verdict_page(verdict)
    assert "by message_id: missing 40, extra 0, changed 0, duplicated 40" in page
    assert "duplicated: bus-000000, bus-000001" in page
    markdown = render_markdown(verdict)
    assert "missing: bus-000200, bus-000201" in markdown
    text = message_text(None, verdict, "http://gatecheck/phases/integrity")
    assert "message_id: missing bus-000200, bus-000201, bus-000202 (+37 more)" in text
    assert "· duplicated bus-000000, bus-000001, bus-000002 (+37 more)" in text


# --------------------------------------------------------------------------- a count or sample that is not a number


def against_baseline(
    config_copy: Path, warehouse: Path, database: str, tables: list[str], name: str, compare: dict[str, Any],
    side: str,
) -> tuple[Verdict, CheckResult]:  # fmt: skip
    """A suite ``name`` comparing the canary track with the baseline (``compare``'s test, the
    worse direction higher, at least 50 samples; each side ``side`` with its track) in a gate
    of its own on chDB's ``database``, made anew by the statements ``tables`` (``{db}`` is
    the database), judged at AS_OF: the verdict and the check."""
    with ClickHouse() as hub:
        connection = hub.connect(Target.parse(f"chdb://{warehouse}", warehouse))
        connection.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        for statement in tables:
            connection.command(statement.replace("{db}", database))
    suite = {
        "name": name,
        "window": {"length": "1h", "settle": "0s"},
        "compare": {
            **compare, "worse": "higher", "min_samples": 50,
            "sides": {t: {"source": "warehouse", "query": side.format(track=t)} for t in ("canary", "baseline")},
        },
        "expectations": [{"type": "expect_column_values_to_be_between", "column": "p_value", "min_value": 0.05}],
    }  # fmt: skip
    # the first side is the one judged worse or not: the file's order (not sorted)
    (config_copy / "suites" / f"{name}.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    gate = {"phase": "against-baseline", "environment": "staging", "checks": [{"suite": name}]}
    (config_copy / "gates" / "against-baseline.yaml").write_text(yaml.safe_dump(gate))
    environ = {"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={database}"}
    verdict = asyncio.run(evaluate(load_project(config_copy, environ=environ), "against-baseline", AS_OF))
    return verdict, check_of(verdict, name)


@pytest.mark.parametrize(
    ("canary", "outcome", "said"),
    [
        ("(3, 1000)", Outcome.PASS, None),
        ("(60, 1000)", Outcome.FAIL, None),
        # the wrong GO this guards against: a NULL error count was read as no error at all
        (
            "(NULL, 1000)",
            Outcome.ERROR,
            "comparison: canary: errors is not a number (NULL or text) in 1 of 1 rows",
        ),
        (
            "(5, NULL)",
            Outcome.ERROR,
            "comparison: canary: requests is not a number (NULL or text) in 1 of 1 rows",
        ),
        ("(NULL, NULL)", Outcome.INCONCLUSIVE, None),  # a sum over no traffic: no evidence
    ],
)
def test_a_proportion_with_a_count_that_is_not_a_number_is_never_a_pass(
    canary: str, outcome: Outcome, said: str | None, warehouse: Path, config_copy: Path
) -> None:
    """`test: proportions` on chDB: the canary's error rate against the baseline's (5 in
    1,000). A count that is NULL beside the other is an error naming the side and the column,
    never 0 errors; a row with neither count is no traffic (too few samples: inconclusive)."""
    tables = [
        "CREATE OR REPLACE TABLE {db}.track_totals "
        "(track String, errors Nullable(UInt64), requests Nullable(UInt64)) ENGINE = Memory",
        f"INSERT INTO {{db}}.track_totals VALUES ('baseline', 5, 1000), ('canary', {canary[1:]}",
    ]
    compare = {"test": "proportions", "hits": "errors", "total": "requests"}
    side = "SELECT errors, requests FROM track_totals WHERE track = '{track}'"
    database = f"rates_{abs(hash(canary)) % 10**8}"
    verdict, check = against_baseline(
        config_copy, warehouse, database, tables, "error_rate_vs_baseline", compare, side
    )
    assert check.outcome is outcome, check
    if said is not None:
        assert (check.reason or "").startswith(said), check.reason
    assert verdict.verdict is {Outcome.PASS: VerdictState.GO, Outcome.FAIL: VerdictState.NO_GO}.get(
        outcome, VerdictState.INCONCLUSIVE
    )


def test_a_side_with_more_samples_than_an_answer_holds_is_an_error_never_judged_on_part(
    warehouse: Path, config_copy: Path
) -> None:
    """`test: mann-whitney` over raw samples on chDB: the canary has 12,000 latencies, the
    first 10,000 as fast as the baseline's and the last 2,000 slow. A source reads at most
    10,001 rows of an answer, so the test ran on the fast ones alone and passed (GO for a
    canary whose p95 is 500 ms). More rows than an answer holds is an error naming the side."""
    tables = [
        "CREATE OR REPLACE TABLE {db}.latencies (n UInt64, track String, ms Float64) ENGINE = MergeTree ORDER BY n",
        "INSERT INTO {db}.latencies SELECT number, 'canary', if(number < 10000, 10 + number % 10, 500) "
        "FROM numbers(12000)",
        "INSERT INTO {db}.latencies SELECT 100000 + number, 'baseline', 10 + number % 10 FROM numbers(2000)",
    ]
    compare = {"test": "mann-whitney", "samples": "ms"}
    side = "SELECT ms FROM latencies WHERE track = '{track}' ORDER BY n"
    verdict, check = against_baseline(
        config_copy, warehouse, "samples_cut", tables, "latency_samples_vs_baseline", compare, side
    )
    assert check.outcome is Outcome.ERROR, check
    assert (check.reason or "").startswith("comparison: canary: its query answered more than 10000 rows"), (
        check.reason
    )
    assert verdict.verdict is VerdictState.INCONCLUSIVE
