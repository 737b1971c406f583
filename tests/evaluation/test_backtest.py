"""`gatecheck backtest` on chDB: the unmatched-edges scenario breaks the last 3 hours before
AS_OF (edge_type=start->first_segment), so a backtest over the 8 hours before it has a
known bad stretch."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from gatecheck.cli import app
from gatecheck.evaluation.backtest import run_backtest

from ..conftest import AS_OF, PROJECT, evaluate, warehouse_env

runner = CliRunner()
HOUR = timedelta(hours=1)


def backtest(warehouse: Path, scenario: str, *args: str, config: Path = PROJECT) -> tuple[int, str, str]:
    result = runner.invoke(
        app,
        [
            "backtest",
            "--phase",
            "warehouse-release",
            "--config",
            str(config),
            "--until",
            AS_OF.isoformat(),
            *args,
        ],
        env=warehouse_env(warehouse, scenario),
    )
    return result.exit_code, result.stdout, result.stderr


def test_a_known_bad_stretch_is_found_with_its_group(warehouse: Path) -> None:
    code, out, err = backtest(
        warehouse, "unmatched-edges", "--since", "8h", "--step", "1h", "--format", "json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert len(report["steps"]) == 9
    edges = next(c for c in report["checks"] if c["suite"] == "unmatched_edges")
    # The last 3 hours are broken; a 1h window settled 10 min sees it from AS_OF-2h on.
    assert (edges["passed"], edges["failed"]) == (6, 3)
    assert edges["first_failing"].startswith((AS_OF - 2 * HOUR).strftime("%Y-%m-%dT%H:%M"))
    assert edges["last_failing"].startswith(AS_OF.strftime("%Y-%m-%dT%H:%M"))
    assert edges["longest_failing_steps"] == 3
    assert edges["worst_group"] == {"edge_type": "start->first_segment"}
    assert report["verdicts"] == {"go": 6, "no-go": 3, "inconclusive": 0, "rollback": 0}
    assert [s["verdict"] for s in report["steps"]] == ["go"] * 6 + ["no-go"] * 3
    (rate,) = edges["distributions"]
    assert rate["column"] == "unmatched_rate" and rate["threshold"] == "≤ 0.5 %" and rate["steps"] == 9
    assert rate["max"] > 0.005 >= rate["p50"]


def test_a_step_is_judged_as_run_as_of_judges_it(project_for) -> None:
    project = project_for("unmatched-edges")
    report = asyncio.run(run_backtest(project, "warehouse-release", AS_OF - 3 * HOUR, AS_OF, HOUR))
    assert {s.verdict.value for s in report.steps} == {"go", "no-go"}
    for step in report.steps:
        verdict = asyncio.run(evaluate(project, "warehouse-release", step.as_of))
        assert step.verdict is verdict.verdict
        assert [(c.suite, c.outcome) for c in step.checks] == [(c.suite, c.outcome) for c in verdict.checks]
        for mine, theirs in zip(step.checks, verdict.checks, strict=True):
            assert mine.observed == {f"{e.column or e.type}": e.observed_value for e in theirs.expectations}


def test_what_if_thresholds_flip_exactly_the_expected_steps(warehouse: Path, tmp_path: Path) -> None:
    thresholds = yaml.safe_load((PROJECT / "thresholds.yaml").read_text())
    thresholds["defaults"]["unmatched_edge_rate_max"] = 0.5
    proposed = tmp_path / "proposed.yaml"
    proposed.write_text(yaml.safe_dump(thresholds))
    code, out, err = backtest(
        warehouse, "unmatched-edges", "--since", "8h", "--thresholds", str(proposed), "--format", "json"
    )
    assert code == 0, err
    report = json.loads(out)
    flips = report["flips"]
    assert [f["as_of"][:16] for f in flips] == [
        (AS_OF - k * HOUR).strftime("%Y-%m-%dT%H:%M") for k in (2, 1, 0)
    ]
    assert all((f["verdict"], f["proposed"]) == ("no-go", "go") for f in flips)
    assert "unmatched_edges: unmatched_rate observed" in flips[0]["changes"][0]
    assert (
        "fail under unmatched_edge_rate_max=0.005 → pass under unmatched_edge_rate_max=0.5"
        in flips[0]["changes"][0]
    )
    assert report["proposed_verdicts"] == {"go": 9, "no-go": 0, "inconclusive": 0, "rollback": 0}
    code, text, _ = backtest(warehouse, "unmatched-edges", "--since", "8h", "--thresholds", str(proposed))
    assert "what-if: go 9, no-go 0, inconclusive 0, rollback 0" in text
    assert report["check_flips"] == []


def test_a_what_if_names_the_checks_that_flip_where_the_verdict_stays(warehouse: Path, tmp_path: Path) -> None:
    """unmatched_edges passes under the proposal but freshness_lag then fails: the last three
    steps stay NO-GO, and the report still says which checks changed there."""
    thresholds = yaml.safe_load((PROJECT / "thresholds.yaml").read_text())
    thresholds["defaults"]["unmatched_edge_rate_max"] = 0.5
    thresholds["defaults"]["freshness_lag_max_s"] = 0.001
    proposed = tmp_path / "proposed.yaml"
    proposed.write_text(yaml.safe_dump(thresholds))
    code, out, err = backtest(
        warehouse, "unmatched-edges", "--since", "8h", "--thresholds", str(proposed), "--format", "json"
    )
    assert code == 0, err
    report = json.loads(out)
    stayed = report["check_flips"]
    assert [f["as_of"][:16] for f in stayed] == [(AS_OF - k * HOUR).strftime("%Y-%m-%dT%H:%M") for k in (2, 1, 0)]
    assert all((f["verdict"], f["proposed"]) == ("no-go", "no-go") for f in stayed)
    changes = " | ".join(stayed[0]["changes"])
    assert "unmatched_edges: unmatched_rate observed" in changes and "fail under unmatched_edge_rate_max" in changes
    assert "freshness_lag: ingest_lag_s observed" in changes and "pass under freshness_lag_max_s" in changes
    assert [f["verdict"] for f in report["flips"]] == ["go"] * 6  # the others turn NO-GO
    code, text, _ = backtest(warehouse, "unmatched-edges", "--since", "8h", "--thresholds", str(proposed))
    assert "checks that change at 3 steps whose verdict stays:" in text


def test_a_what_if_of_a_threshold_bound_into_sql_is_refused(warehouse: Path, tmp_path: Path) -> None:
    thresholds = yaml.safe_load((PROJECT / "thresholds.yaml").read_text())
    thresholds["defaults"]["clock_skew_tolerance_s"] = 60
    proposed = tmp_path / "proposed.yaml"
    proposed.write_text(yaml.safe_dump(thresholds))
    code, _, err = backtest(warehouse, "healthy", "--since", "2h", "--thresholds", str(proposed))
    assert code == 2
    assert err.strip() == (
        "gatecheck: error: --thresholds: clock_skew_tolerance_s is bound into the query of freshness_lag: "
        "a what-if changes only thresholds the observed values are judged against"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "soon"], "--since/--step: "),
        (["--since", "2h", "--step", "3h"], "--step: 3h is longer than the range (2h)"),
        (["--since", "30d", "--step", "1m"], "--step: 43201 steps; at most 10000"),
        (["--since", "2h", "--phase", "nope"], "unknown phase 'nope'"),
        (
            ["--since", "2h", "--thresholds", "/nonexistent.yaml"],
            "--thresholds: /nonexistent.yaml is not a file",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(warehouse: Path, args: list[str], message: str) -> None:
    code, out, err = backtest(warehouse, "healthy", *args)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_the_chart_opens_offline_in_a_real_browser(warehouse: Path, tmp_path: Path) -> None:
    """Headless Chromium (Debian's package), no network: the page renders an SVG chart with
    the observed series and the threshold line of each expectation."""
    import re
    import subprocess

    from ..conftest import chromium

    browser = chromium()
    chart = tmp_path / "backtest.html"
    code, _, err = backtest(warehouse, "unmatched-edges", "--since", "8h", "--chart", str(chart))
    assert code == 0, err
    page = chart.read_text()
    assert not re.search(r"<script[^>]+src=", page)  # every script inline: it opens offline
    rendered = subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--proxy-server=127.0.0.1:9", "--virtual-time-budget=10000", "--dump-dom", chart.as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    dom = rendered.stdout
    assert "<svg" in dom, dom[:2000]
    assert "unmatched_edges: unmatched_rate" in dom  # a panel per expectation
    assert "mark-rule" in dom  # the threshold lines
    assert "mark-line" in dom and "mark-symbol" in dom  # the observed series and its steps
    # every panel has its own time axis, in UTC and 24-hour time (never "06 PM")
    panels = set(re.findall(r">((?:unmatched_edges|freshness_lag|rollup_parity|rollup_reconcile|demand_grain_parity|unattributed_sessions): \w+)", dom))
    assert {p.split(":")[0] for p in panels} == {"unmatched_edges", "freshness_lag", "rollup_parity", "rollup_reconcile", "demand_grain_parity", "unattributed_sessions"}
    assert dom.count(">as of (UTC)<") == len(panels), (dom.count(">as of (UTC)<"), panels)
    assert not re.search(r">\d\d? ?(AM|PM)<", dom)
    assert re.search(r">\d\d-\d\d \d\d:\d\d<", dom)  # a label such as 11-22 05:00
    # a categorical expectation (demand_grain_parity's `present`) is drawn as its outcome per step
    assert "demand_grain_parity: present (expect_column_values_to_be_in_set: outcome per step)" in dom


#: A value written into the warehouse by anyone who can send an event: closes the chart's
#: script and opens one of its own.
PLANTED = "</script><script>document.documentElement.setAttribute('data-pwned','1')</script>"


def test_a_warehouse_value_in_the_chart_is_data_never_script(
    warehouse: Path, config_copy: Path, tmp_path: Path, browser
) -> None:
    """An expectation whose observed value is the data itself (the most common value of a
    column) carries that text into the chart's inlined specification; a ``</script>`` in it
    ended the chart's script and ran the rest, in the browser of whoever opened the chart."""
    from gatecheck.sources.clickhouse.connection import ClickHouse, Target

    with ClickHouse() as clickhouse:
        connection = clickhouse.connect(Target.parse(f"chdb://{warehouse}", warehouse))
        connection.command("CREATE DATABASE IF NOT EXISTS chart_text")
        connection.command("DROP TABLE IF EXISTS chart_text.clients")
        connection.command("CREATE TABLE chart_text.clients (ts DateTime64(3, 'UTC'), client String) ENGINE = MergeTree ORDER BY ts")
        connection.command(
            "INSERT INTO chart_text.clients VALUES "
            + ", ".join(f"(toDateTime64('{AS_OF - k * HOUR / 4:%Y-%m-%d %H:%M:%S}', 3, 'UTC'), {{p:String}})" for k in range(12)),
            parameters={"p": PLANTED},
        )
    suite = {
        "name": "client_names", "source": "warehouse", "window": {"length": "1h"},
        "query": "SELECT client FROM clients WHERE ts >= {window_start:DateTime64(3)} AND ts < {window_end:DateTime64(3)}",
        "expectations": [{"type": "expect_column_most_common_value_to_be_in_set", "column": "client", "value_set": ["app"]}],
    }  # fmt: skip
    (config_copy / "suites" / "client_names.yaml").write_text(yaml.safe_dump(suite))
    (config_copy / "gates" / "client-names.yaml").write_text(
        yaml.safe_dump({"phase": "client-names", "environment": "staging", "checks": [{"suite": "client_names"}]})
    )
    chart = tmp_path / "chart.html"
    result = runner.invoke(
        app,
        ["backtest", "--phase", "client-names", "--config", str(config_copy), "--until", AS_OF.isoformat(),
         "--since", "2h", "--step", "1h", "--chart", str(chart)],
        env={"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database=chart_text"},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    page = chart.read_text()
    assert "client_names" in page and "data-pwned" in page  # the value is in the chart, as data
    found = browser.measure(
        chart.as_uri(),
        "JSON.stringify({pwned: document.documentElement.getAttribute('data-pwned'),"
        " spec: typeof spec === 'object' && JSON.stringify(spec).includes(\"setAttribute('data-pwned','1')\")})",
    )
    assert json.loads(found) == {"pwned": None, "spec": True}, found


def test_the_json_document_validates_against_the_shipped_schema(warehouse: Path) -> None:
    import jsonschema

    from gatecheck.schema import backtest_schema, shipped_backtest_schema

    assert shipped_backtest_schema() == backtest_schema(), (
        "regenerate: gatecheck schema --backtest > src/gatecheck/schema/backtest.schema.json"
    )
    code, out, err = backtest(warehouse, "unmatched-edges", "--since", "3h", "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    jsonschema.Draft202012Validator(shipped_backtest_schema()).validate(document)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(shipped_backtest_schema()).validate({**document, "verdicts": "many"})


def test_a_proposed_thresholds_file_is_checked_like_the_projects_own(warehouse: Path, tmp_path: Path) -> None:
    thresholds = yaml.safe_load((PROJECT / "thresholds.yaml").read_text())
    thresholds["defaults"]["unmatched_edge_rate_max"] = "lots"
    proposed = tmp_path / "proposed.yaml"
    proposed.write_text(yaml.safe_dump(thresholds))
    code, out, err = backtest(warehouse, "healthy", "--since", "2h", "--thresholds", str(proposed))
    assert code == 2 and out == ""
    assert err.startswith(
        f"gatecheck: error: --thresholds {proposed}: thresholds.yaml: defaults.unmatched_edge_rate_max: "
        "'lots' must be a finite number"
    ), err


def test_many_steps_in_one_union_all_query_give_each_steps_own_frame(project_for, monkeypatch) -> None:
    """A suite the one-pass rewrite refuses is asked for many steps in one query (the
    suite's SQL once per step, UNION ALL): each step's frame must be exactly the one its own
    query returns — rows, order, values and types — for every warehouse suite of the gate."""
    from gatecheck.evaluation.engine import Engine
    from gatecheck.evaluation.gate import SourcePool
    from gatecheck.evaluation.plan import plan_checks, query_parameters
    from gatecheck.sources.clickhouse import onepass

    monkeypatch.setattr(onepass, "one_pass", lambda sql, steps: None)  # as for a refused shape
    project = project_for("unmatched-edges")
    gate = project.gate("warehouse-release")
    thresholds = project.resolve_thresholds("warehouse-release")
    moments = [AS_OF - k * HOUR for k in range(5)]

    async def compare() -> int:
        compared = 0
        async with Engine(project, ledger=None) as engine:
            pool = SourcePool(project, gate.environment, engine.source_factory)
            try:
                for i, plan in enumerate(plan_checks(project, gate, AS_OF)):
                    if plan.suite.compare is not None or plan.suite.reconcile is not None:
                        continue  # asked side by side, step by step
                    source = pool.get(plan.suite.source)
                    plans = [plan_checks(project, gate, m)[i] for m in moments]
                    sets = [
                        query_parameters(p.suite, p.window, m, thresholds)
                        for p, m in zip(plans, moments, strict=True)
                    ]
                    together = await source.query_steps(plan.suite.query, sets)
                    assert together is not None
                    for frame, parameters in zip(together, sets, strict=True):
                        alone = await source.query(plan.suite.query, parameters)
                        pd.testing.assert_frame_equal(frame, alone)
                        compared += 1
            finally:
                await pool.aclose()
        return compared

    assert asyncio.run(compare()) == 4 * 5


def test_a_failed_batched_request_is_asked_again_step_by_step(project_for, monkeypatch) -> None:
    """When the one query of many steps fails, every step is fetched as `run` fetches it:
    the report is the same as when it succeeds (nothing lost, no step marked as an error)."""
    from gatecheck.errors import QueryError
    from gatecheck.sources.clickhouse import ClickHouseSource

    project = project_for("unmatched-edges")
    expected = asyncio.run(run_backtest(project, "warehouse-release", AS_OF - 3 * HOUR, AS_OF, HOUR))
    asked = []

    async def refuse(self, text, parameter_sets):
        asked.append(len(parameter_sets))
        raise QueryError("Code: 62. Max query size exceeded")

    monkeypatch.setattr(ClickHouseSource, "query_steps", refuse)
    again = asyncio.run(run_backtest(project, "warehouse-release", AS_OF - 3 * HOUR, AS_OF, HOUR))
    assert asked == [4] * 5  # one request per check (a comparison: its first side), refused
    assert again.model_dump() == expected.model_dump()
    assert again.verdicts == {"go": 1, "no-go": 3, "inconclusive": 0, "rollback": 0}


# Each ClickHouse suite of the reference project on a healthy warehouse and on the scenario
# that breaks it, with what that breakage looks like in its frame (so the comparison covers
# the failing rows too, not only healthy ones).
ONE_PASS_CASES = [
    ("freshness_lag", "healthy", None),
    ("freshness_lag", "stale-ingest", lambda f: (f["ingest_lag_s"] > 3600).any()),
    ("freshness_lag", "clock-skew", lambda f: (f["clock_skew_rate"] > 0).any()),
    ("rollup_parity", "rollup-drift", lambda f: (f["rel_diff"] > 0).any()),
    ("unattributed_sessions", "unattributed-spike", lambda f: (f["unattributed_rate"] > 0.1).any()),
    ("unmatched_edges", "unmatched-edges", lambda f: (f["unmatched"] > 0).any()),
]


@pytest.mark.parametrize(("name", "scenario", "broken"), ONE_PASS_CASES, ids=lambda v: v if isinstance(v, str) else "")
def test_a_warehouse_suite_answered_in_one_pass_gives_each_step_its_own_querys_frame(
    project_for, name, scenario, broken
) -> None:
    """The one-pass form (one scan of each table for every step) of every ClickHouse suite of
    the reference project — a table scope, partial aggregates handed to overlapping windows
    (1h windows every 20 minutes; a one-day lookback from as_of), a UNION ALL, a FULL OUTER
    JOIN of two windowed aggregates, an ungrouped aggregate's steps without data — gives
    every step exactly the frame its own query returns: rows, order, values and types."""
    from gatecheck.evaluation.engine import Engine
    from gatecheck.evaluation.gate import SourcePool
    from gatecheck.evaluation.plan import query_parameters, window_for
    from gatecheck.sources.clickhouse.onepass import one_pass, steps_of

    project = project_for(scenario)
    thresholds = project.resolve_thresholds("warehouse-release")
    suite = project.suites[name]
    chunks = [
        [AS_OF - timedelta(minutes=20) * k for k in range(12, -1, -1)],
        [AS_OF - HOUR * k for k in range(30, -1, -1)],
        [AS_OF + timedelta(days=1) + timedelta(minutes=20) * k for k in range(3)],  # no data yet
    ]

    async def compare() -> list[pd.DataFrame]:
        frames = []
        async with Engine(project, ledger=None) as engine:
            pool = SourcePool(project, "staging", engine.source_factory)
            try:
                source = pool.get(suite.source)
                for chunk in chunks:
                    sets = [
                        query_parameters(suite, window_for(m, suite.window.length, suite.window.settle), m, thresholds)
                        for m in chunk
                    ]
                    steps = steps_of(sets)
                    assert steps is not None and one_pass(suite.query, steps) is not None
                    together = await source.query_steps(suite.query, sets)
                    assert together is not None
                    for frame, parameters in zip(together, sets, strict=True):
                        alone = await source.query(suite.query, parameters)
                        pd.testing.assert_frame_equal(frame, alone, obj=f"{name} at {parameters}")
                        frames.append(frame)
            finally:
                await pool.aclose()
        return frames

    frames = asyncio.run(compare())
    assert len(frames) == 13 + 31 + 3
    assert sum(not f.empty for f in frames) >= 13 + 31 - 6  # the comparison saw data
    if broken is not None:
        assert any(broken(f) for f in frames if not f.empty)


def test_the_text_shows_values_in_their_thresholds_unit(warehouse: Path) -> None:
    """A share's worst value and distribution read in % like its threshold (0.1098 against
    ≤ 0.5 % before)."""
    code, text, err = backtest(warehouse, "unmatched-edges", "--since", "8h")
    assert code == 0, err
    worst = next(line for line in text.splitlines() if line.startswith("  worst: "))
    assert re.match(r"  worst: [\d.]+ % \(edge_type=", worst), worst
    rate = next(line for line in text.splitlines() if line.startswith("  unmatched_rate: min "))
    assert re.fullmatch(r"  unmatched_rate: min [\d.]+ %, p50 [\d.]+ %, p95 [\d.]+ %, max [\d.]+ % against ≤ 0\.5 % \(9 steps\)", rate), rate


def test_a_reconciliation_runs_at_every_step_with_its_own_rounds(warehouse: Path) -> None:
    """rollup_reconcile in a backtest: each step reconciles its own window (its own rounds),
    failing exactly where rollup_parity does — the steps whose window holds the drifted hour."""
    code, out, err = backtest(warehouse, "rollup-drift", "--since", "8h", "--step", "1h", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    checks = {c["suite"]: c for c in report["checks"]}
    reconciled, parity = checks["rollup_reconcile"], checks["rollup_parity"]
    assert reconciled["failed"] > 0 and reconciled["passed"] > 0
    assert (reconciled["failed"], reconciled["first_failing"], reconciled["last_failing"]) == (
        parity["failed"], parity["first_failing"], parity["last_failing"]
    )  # fmt: skip


def test_every_steps_reconciliation_buckets_are_compared_in_one_query(project_for) -> None:
    """rollup_reconcile's sides are on one ClickHouse source and their SQL takes the one-pass
    form: one query compares every step's buckets; a step with no differing bucket gets the
    frame its own reconciliation gives (each side's rows, nothing found), and only the steps
    holding the drifted hour are left to reconcile on their own."""
    from gatecheck.evaluation.engine import Engine
    from gatecheck.evaluation.gate import SourcePool, fetch
    from gatecheck.evaluation.plan import plan_checks
    from gatecheck.evaluation.reconcile_check import findings_of, reconcile_steps

    project = project_for("rollup-drift")
    gate = project.gate("warehouse-release")
    thresholds = project.resolve_thresholds("warehouse-release")
    moments = [AS_OF - k * HOUR for k in range(10, -1, -1)]
    (index,) = [i for i, p in enumerate(plan_checks(project, gate, AS_OF)) if p.suite.name == "rollup_reconcile"]
    plans = [plan_checks(project, gate, m)[index] for m in moments]

    async def both() -> tuple[list, list]:
        async with Engine(project, ledger=None) as engine:
            pool = SourcePool(project, gate.environment, engine.source_factory)
            try:
                together = await reconcile_steps(plans[0].suite, plans, moments, thresholds, pool)
                alone = [await fetch(p, m, thresholds, pool) for p, m in zip(plans, moments, strict=True)]
                return together, alone  # type: ignore[return-value]
            finally:
                await pool.aclose()

    together, alone = asyncio.run(both())
    assert together is not None and len(together) == len(moments)
    left = [k for k, frame in enumerate(together) if frame is None]
    drifted = [k for k, frame in enumerate(alone) if int(frame["changed"].iloc[0]) > 0]
    assert left == drifted and 0 < len(left) < len(moments)
    for k, frame in enumerate(together):
        if frame is not None:
            assert frame.to_dict("records") == alone[k].to_dict("records"), k
            assert findings_of(frame).rows == findings_of(alone[k]).rows  # type: ignore[union-attr]
