"""``slo:`` suites on a real Prometheus over promtool-backfilled series (tests/prometheus_history.py:
eight days of an SLI, one sample a minute). Every figure below is worked out by hand from
those samples: 1,000 requests a minute, 0.5 errors a minute as usual (a burn rate of 0.5 at
99.9%), a 5-minute spike and a 70-minute stretch at 20 errors a minute (burn 20), then 30
minutes of 10 requests a minute."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from gatecheck.config import load_project
from gatecheck.errors import ConfigError
from gatecheck.ledger import SqliteLedger
from gatecheck.ledger.audit import EVERY_PHASE, AuditEvent
from gatecheck.results import CheckResult, Outcome, Verdict, VerdictState

from ..conftest import evaluate
from ..prometheus_history import SLO_LOW_END, SLO_SPIKE_END, SLO_SUSTAINED_END

SLI = {
    "measures": {
        "good": 'sum(increase(slo_requests_total{code="ok"}[$window]))',
        "total": "sum(increase(slo_requests_total[$window]))",
    }
}
WEEK = timedelta(days=7)


def slo_project(root: Path, **slo: Any) -> Path:
    suite = {
        "name": "requests_slo",
        "description": "99.9% of requests succeed over 7 days",
        "source": "metrics",
        "window": {"length": "7d"},
        "query": SLI,
        "slo": {"objective": 99.9, **slo},
    }
    (root / "suites" / "requests_slo.yaml").write_text(yaml.safe_dump(suite))
    gate = {"phase": "slo-check", "environment": "staging", "checks": [{"suite": "requests_slo"}]}
    (root / "gates" / "slo-check.yaml").write_text(yaml.safe_dump(gate))
    return root


def judge(root: Path, url: str, moment: datetime, ledger: SqliteLedger | None = None) -> Verdict:
    project = load_project(root, environ={"GATECHECK_PROMETHEUS_URL": url})
    return asyncio.run(evaluate(project, "slo-check", moment, ledger=ledger))


def the_check(verdict: Verdict) -> CheckResult:
    (found,) = [c for c in verdict.checks if c.suite == "requests_slo"]
    return found


def burns(check: CheckResult) -> dict[str, tuple[float | None, float | None, bool | None]]:
    assert check.slo is not None
    return {r.rule: (r.long.burn, r.short.burn, r.firing) for r in check.slo.rules}


def test_a_short_spike_alone_does_not_fire_a_two_window_rule(config_copy: Path, prometheus: str) -> None:
    """At the spike's end the 5-minute window burns at 20 (above page-fast's 14.4) but the
    hour around it at 2.125: no rule fires, the budget holds — a pass, with every figure."""
    check = the_check(judge(slo_project(config_copy), prometheus, SLO_SPIKE_END))
    assert check.outcome is Outcome.PASS, check.reason
    found = check.slo
    assert found is not None
    # 7 days: 10,080,000 requests; errors 10,075 minutes x 0.5 + 5 x 20 = 5,137.5
    assert found.window.total == pytest.approx(10_080_000)
    assert found.window.total - found.window.good == pytest.approx(5_137.5)
    assert found.window.burn == pytest.approx(5_137.5 / 10_080_000 / 0.001)
    assert found.budget_remaining == pytest.approx(1 - 5_137.5 / 10_080.0)
    assert burns(check) == {
        # 1h: (55 x 0.5 + 100) / 60,000; 5m: 100 / 5,000
        "page-fast": (pytest.approx(127.5 / 60), pytest.approx(20.0), False),
        # 6h: (355 x 0.5 + 100) / 360,000; 30m: (25 x 0.5 + 100) / 30,000
        "page-slow": (pytest.approx(277.5 / 360), pytest.approx(112.5 / 30), False),
        # 3d: (4,315 x 0.5 + 100) / 4,320,000; 6h as above
        "ticket": (pytest.approx(2_257.5 / 4_320), pytest.approx(277.5 / 360), False),
    }
    # at the hour's burn (2.125) the budget left would be gone in remaining x 7 days / 2.125
    assert found.exhaustion_s == pytest.approx((1 - 5_137.5 / 10_080.0) * WEEK.total_seconds() / 2.125)
    firing = {e.column: e.outcome for e in check.expectations}
    assert firing == {"firing": Outcome.PASS, "budget_remaining": Outcome.PASS}


def test_a_sustained_burn_fires_the_fast_page_rule_and_names_it(config_copy: Path, prometheus: str) -> None:
    check = the_check(judge(slo_project(config_copy), prometheus, SLO_SUSTAINED_END))
    assert check.outcome is Outcome.FAIL
    assert burns(check)["page-fast"] == (pytest.approx(20.0), pytest.approx(20.0), True)
    # 6h: (70 x 20 + 290 x 0.5) / 360,000 = burn 4.29 < 6, though its 30 minutes burn at 20
    assert burns(check)["page-slow"] == (pytest.approx(1_545 / 360), pytest.approx(20.0), False)
    assert check.reason is not None and "scope=page-fast" in check.reason
    found = check.slo
    assert found is not None
    # 7 days: 1,400 + 100 + 10,005 x 0.5 errors
    assert found.window.total - found.window.good == pytest.approx(6_502.5)
    assert found.budget_remaining == pytest.approx(1 - 6_502.5 / 10_080.0)


def test_low_traffic_is_inconclusive_never_a_pass(config_copy: Path, prometheus: str) -> None:
    """The last 5 minutes hold 50 requests, fewer than the 100 a window needs: page-fast
    cannot be judged, so the check is inconclusive though nothing else is wrong."""
    check = the_check(judge(slo_project(config_copy), prometheus, SLO_LOW_END))
    assert check.outcome is Outcome.INCONCLUSIVE
    assert (
        check.reason == "too few events: the 5m window has 50 events, fewer than the 100 an SLO window needs"
    )
    assert burns(check)["page-fast"][2] is None
    # a lower minimum judges it: all windows have enough
    lowered = the_check(judge(slo_project(config_copy, min_events=10), prometheus, SLO_LOW_END))
    assert lowered.outcome is Outcome.PASS, lowered.reason


def test_a_correction_leaves_its_stretch_out_of_the_budget(
    config_copy: Path, prometheus: str, tmp_path: Path
) -> None:
    """A correction over the 70 bad minutes takes out their 70,000 requests and 1,400 errors
    in every window that covers them; a correction recorded after the as_of changes nothing
    (an evaluation at a fixed as_of is reproducible)."""
    ledger = SqliteLedger(tmp_path / "ledger.db")
    recorded = SLO_SUSTAINED_END - timedelta(minutes=1)
    ledger.append_audit(
        [
            AuditEvent(
                at=recorded, kind="slo-corrected", phase=EVERY_PHASE, check="requests_slo",
                group={"from": (SLO_SUSTAINED_END - timedelta(minutes=70)).isoformat(),
                       "to": SLO_SUSTAINED_END.isoformat()},
                until=SLO_SUSTAINED_END, by="alice", reason="INC-42: a bad deploy, rolled back",
            ),
            AuditEvent(
                at=SLO_SUSTAINED_END + timedelta(hours=1), kind="slo-corrected", phase=EVERY_PHASE,
                check="requests_slo",
                group={"from": (SLO_SUSTAINED_END - timedelta(days=6)).isoformat(),
                       "to": SLO_SUSTAINED_END.isoformat()},
                until=SLO_SUSTAINED_END, by="mallory", reason="recorded later",
            ),
        ]
    )  # fmt: skip
    check = the_check(judge(slo_project(config_copy), prometheus, SLO_SUSTAINED_END, ledger))
    found = check.slo
    assert found is not None
    assert [(c.by, c.reason) for c in found.corrections] == [("alice", "INC-42: a bad deploy, rolled back")]
    assert found.window.total == pytest.approx(10_080_000 - 70_000)
    assert found.window.total - found.window.good == pytest.approx(6_502.5 - 1_400)
    # the hour and the 5 and 30 minutes lie inside the correction: no events left to judge
    assert burns(check)["page-fast"] == (None, None, None)
    assert burns(check)["page-slow"] == (pytest.approx(145 / 290), None, None)
    assert check.outcome is Outcome.INCONCLUSIVE
    assert check.reason is not None and check.reason.startswith("too few events: the 1h window has 0 events")


def test_the_same_as_of_gives_the_same_document(config_copy: Path, prometheus: str) -> None:
    root = slo_project(config_copy)
    first, second = (judge(root, prometheus, SLO_SUSTAINED_END) for _ in range(2))
    assert json.dumps(first.model_dump(mode="json"), sort_keys=True) == json.dumps(
        second.model_dump(mode="json"), sort_keys=True
    )


def test_prometheus_down_is_an_error_naming_the_source(config_copy: Path) -> None:
    from gatecheck.demo.bus import free_port

    check = the_check(judge(slo_project(config_copy), f"http://127.0.0.1:{free_port()}", SLO_SPIKE_END))
    assert check.outcome is Outcome.ERROR and check.source_available is False
    assert check.reason is not None and check.reason.startswith("source metrics: ")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"slo": {"objective": 100}}, "slo.objective"),
        (
            {
                "slo": {
                    "objective": 99.9,
                    "burn_rates": [{"name": "x", "long": "5m", "short": "1h", "factor": 2}],
                }
            },
            "short must be positive and shorter than long",
        ),
        ({"slo": {"objective": 99.9, "min_events": -1}}, "a minimum number of events cannot be negative"),
        ({"query": {"measures": {"good": "up"}}}, "an SLO on Prometheus names two measures, good and total"),
        ({"source": "bus"}, "an SLO counts its events in Prometheus, ClickHouse, PostgreSQL"),
        ({"evidence": {"column": "total", "min_total": 1}}, "an SLO suite's minimum is slo.min_events"),
    ],
)
def test_a_misconfigured_slo_is_refused_in_one_line(
    config_copy: Path, change: dict[str, Any], problem: str
) -> None:
    root = slo_project(config_copy)
    path = root / "suites" / "requests_slo.yaml"
    suite = yaml.safe_load(path.read_text())
    if change.get("source") == "bus":
        suite["query"] = {"streams": [{"name": "AA_CORE_HOT"}]}
    path.write_text(yaml.safe_dump({**suite, **change}))
    with pytest.raises(ConfigError) as caught:
        load_project(root, environ={})
    assert problem in str(caught.value)


def test_an_slo_suite_without_expectations_judges_the_defaults() -> None:
    from gatecheck.config.models import SuiteConfig

    suite = SuiteConfig.model_validate(
        {
            "name": "s",
            "source": "metrics",
            "window": {"length": "7d"},
            "query": SLI,
            "slo": {"objective": 99.5},
        }
    )
    assert [e.kwargs["column"] for e in suite.expectations] == ["firing", "budget_remaining"]
    assert suite.slo is not None and suite.slo.budget == pytest.approx(0.005)
    # null is "none of its own"; any other value is judged as given, never replaced by the
    # defaults (Hypothesis found `expectations: 0` loading as the defaults)
    given = {
        "name": "s",
        "source": "metrics",
        "window": {"length": "7d"},
        "query": SLI,
        "slo": {"objective": 99.5},
    }
    assert len(SuiteConfig.model_validate({**given, "expectations": None}).expectations) == 2
    for wrong in (0, False, "", [], {}):
        with pytest.raises(ValueError, match="expectations"):
            SuiteConfig.model_validate({**given, "expectations": wrong})


def test_gatecheck_correct_records_a_correction_and_refuses_a_bad_one_in_one_line(
    config_copy: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from gatecheck.cli import app

    root = slo_project(config_copy)
    env = {"GATECHECK_HISTORY_URL": f"sqlite:///{tmp_path / 'ledger.db'}"}

    def cli(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(app, [*args, "--config", str(root)], env=env)
        return result.exit_code, result.stdout, result.stderr

    code, out, err = cli(
        "correct", "--slo", "requests_slo", "--from", "2026-11-20T02:00:00Z", "--to", "2026-11-20T03:30:00+00:00",
        "--reason", "planned maintenance", "--by", "alice",
    )  # fmt: skip
    assert code == 0, err
    assert (
        "slo-corrected     *  -  requests_slo (left out: 2026-11-20T02:00:00Z to 2026-11-20T03:30:00Z)" in out
    )
    code, out, err = cli("audit", "--phase", "slo-check", "--since", "30d", "--format", "json")
    (event,) = json.loads(out)
    assert (event["kind"], event["phase"], event["check"], event["by"]) == (
        "slo-corrected",
        "*",
        "requests_slo",
        "alice",
    )
    assert event["group"] == {"from": "2026-11-20T02:00:00+00:00", "to": "2026-11-20T03:30:00+00:00"}
    bad = [
        (["--slo", "request_slo"], "--slo: no SLO suite 'request_slo' (did you mean 'requests_slo'?)"),
        (["--slo", "requests_slo", "--from", "yesterday"], "--from: 'yesterday' is not an ISO 8601 time"),
        (
            ["--slo", "requests_slo", "--to", "2026-11-20T01:00:00Z"],
            "--to: 2026-11-20T01:00:00Z is not after --from",
        ),
        (["--slo", "requests_slo", "--to", "2026-12-30T00:00:00Z"], "a correction leaves out at most 30d"),
        (["--slo", "requests_slo", "--by", " "], "--by: say who decides"),
    ]
    for change, problem in bad:
        options = {
            "--slo": "",
            "--from": "2026-11-20T02:00:00Z",
            "--to": "2026-11-20T03:00:00Z",
            "--reason": "r",
            "--by": "b",
        }
        options.update(dict(zip(change[::2], change[1::2], strict=True)))
        code, out, err = cli("correct", *[x for pair in options.items() for x in pair])
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and problem in lines[0], (change, err)
    code, out, _ = cli("audit", "--since", "30d", "--format", "json")
    assert len(json.loads(out)) == 1  # nothing written by the refused ones


def test_the_budget_reads_the_same_in_the_terminal_markdown_and_the_phase_page(
    config_copy: Path, prometheus: str
) -> None:
    from gatecheck.render.html import PhaseInfo, PhasePage, render_phase, timeline
    from gatecheck.render.verdict import render_markdown, render_text

    verdict = judge(slo_project(config_copy), prometheus, SLO_SUSTAINED_END)
    left = f"{1 - 6_502.5 / 10_080.0:.1%}"
    expected = [
        f"objective 99.9%: {left} of the 7d error budget left (6,502.5 bad of 10,080,000 events)",
        "page-fast (over 14.4x in both): 1h burn 20, 5m burn 20 — firing",
        "page-slow (over 6x in both): 6h burn 4.29, 30m burn 20",
    ]
    text = render_text(verdict, width=200)
    markdown = render_markdown(verdict)
    page = render_phase(
        PhasePage(PhaseInfo.of_verdict(verdict), verdict, timeline([], SLO_SUSTAINED_END, SLO_SUSTAINED_END)),
        SLO_SUSTAINED_END, None,
    )  # fmt: skip
    for line in expected:
        assert line in text and line in markdown and line in page, line
    gone = "at the current burn the budget left is gone in 2h58m52s"  # 0.354911 x 7 days / 20
    assert gone in text


def test_the_service_exports_the_budget_burn_rates_and_firing_rules(
    config_copy: Path, prometheus: str
) -> None:
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from gatecheck.service.collector import VerdictCollector

    verdict = judge(slo_project(config_copy), prometheus, SLO_SUSTAINED_END)
    service = SimpleNamespace(
        states={"slo-check": SimpleNamespace(verdict=verdict, last_error=None, duration_s=0.5)},
        interval=lambda phase: timedelta(minutes=5), source_up={}, notifier=None, scheduling=True,
    )  # fmt: skip
    registry = CollectorRegistry()
    registry.register(VerdictCollector(service))  # type: ignore[arg-type]
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    (budget,) = families["gatecheck_slo_budget_remaining"].samples
    assert budget.labels == {"phase": "slo-check", "slo": "requests_slo"}
    assert budget.value == pytest.approx(1 - 6_502.5 / 10_080.0)
    burn = {
        (s.labels["rule"], s.labels["window"]): s.value for s in families["gatecheck_slo_burn_rate"].samples
    }
    assert burn[("page-fast", "1h")] == pytest.approx(20) and burn[("page-slow", "6h")] == pytest.approx(
        1_545 / 360
    )
    assert len(burn) == 6
    firing = {s.labels["rule"]: s.value for s in families["gatecheck_slo_rule_firing"].samples}
    assert firing == {"page-fast": 1.0, "page-slow": 0.0, "ticket": 0.0}


# ------------------------------------------------------------------ OpenSLO v1

#: The specification's inline-SLI example (README, "SLI"), its ratioMetric on Prometheus as in
#: the specification's ratioMetric example, pointed at this test's series.
OPENSLO_INLINE = """
apiVersion: openslo/v1
kind: SLO
metadata:
  name: foo-slo
  displayName: Foo SLO
spec:
  service: foo
  budgetingMethod: Occurrences
  timeWindow:
    - duration: 1w
      isRolling: true
  indicator:
    metadata:
      name: foo-error
      displayName: Foo Error
    spec:
      ratioMetric:
        counter: true
        good:
          metricSource:
            type: Prometheus
            metricSourceRef: prometheus-datasource
            spec:
              query: sum(slo_requests_total{code="ok"})
        total:
          metricSource:
            type: Prometheus
            metricSourceRef: prometheus-datasource
            spec:
              query: slo_requests_total
  objectives:
    - displayName: Foo Total Errors
      target: 0.999
"""

#: The same SLO with its SLI by reference (kind: SLI), its source a DataSource, and bad/total.
OPENSLO_REFERENCED = """
apiVersion: openslo/v1
kind: DataSource
metadata:
  name: prometheus-datasource
spec:
  type: Prometheus
  connectionDetails: {url: "http://prometheus:9090"}
---
apiVersion: openslo/v1
kind: SLI
metadata:
  name: foo-errors
spec:
  ratioMetric:
    counter: false
    bad:
      metricSource:
        metricSourceRef: prometheus-datasource
        spec:
          query: sum(increase(slo_requests_total{code="error"}[{{.window}}]))
    total:
      metricSource:
        metricSourceRef: prometheus-datasource
        spec:
          query: sum(increase(slo_requests_total[{{.window}}]))
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: foo-slo-by-ref
spec:
  service: foo
  indicatorRef: foo-errors
  budgetingMethod: Occurrences
  timeWindow:
    - duration: 7d
      isRolling: true
  objectives:
    - targetPercent: 99.9
"""


@pytest.mark.parametrize("document", [OPENSLO_INLINE, OPENSLO_REFERENCED], ids=["inline", "referenced"])
def test_an_openslo_slo_imports_and_judges_what_the_suite_written_by_hand_does(
    config_copy: Path, prometheus: str, tmp_path: Path, document: str
) -> None:
    from typer.testing import CliRunner

    from gatecheck.cli import app

    path = tmp_path / "slo.yaml"
    path.write_text(document)
    result = CliRunner().invoke(app, ["import-openslo", str(path), "--write", "--config", str(config_copy)])
    assert result.exit_code == 0, result.output
    (written,) = (config_copy / "suites").glob("foo_slo*.yaml")
    assert result.stdout == f"wrote {written}\n"
    suite = yaml.safe_load(written.read_text())
    assert suite["window"] == {"length": "7d"} and suite["slo"] == {"objective": 99.9}
    gate = {"phase": "slo-check", "environment": "staging", "checks": [{"suite": suite["name"]}]}
    (config_copy / "gates" / "slo-check.yaml").write_text(yaml.safe_dump(gate))
    project = load_project(config_copy, environ={"GATECHECK_PROMETHEUS_URL": prometheus})
    (check,) = asyncio.run(evaluate(project, "slo-check", SLO_SUSTAINED_END)).checks
    assert check.outcome is Outcome.FAIL and check.slo is not None
    assert check.slo.window.total - check.slo.window.good == pytest.approx(6_502.5)
    assert burns(check)["page-fast"] == (pytest.approx(20.0), pytest.approx(20.0), True)
    again = CliRunner().invoke(app, ["import-openslo", str(path), "--write", "--config", str(config_copy)])
    assert again.exit_code == 2 and "exist already: nothing written" in again.stderr


SPEC_DATADOG = OPENSLO_INLINE.replace("type: Prometheus", "type: Datadog")
SPEC_THRESHOLD = """
apiVersion: openslo/v1
kind: SLO
metadata: {name: search-slo}
spec:
  service: web-shop
  indicator:
    metadata: {name: search-latency}
    spec:
      thresholdMetric:
        metricSource: {type: Any, spec: {}}
  timeWindow: [{duration: 2w, isRolling: true}]
  budgetingMethod: Occurrences
  objectives: [{displayName: Good experience, op: lt, value: 500, target: 0.99}]
"""


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (
            SPEC_DATADOG,
            "SLO foo-slo: spec.indicator.spec.ratioMetric.total.metricSource: type Datadog: "
            "gatecheck reads an SLI from Prometheus",
        ),
        (SPEC_THRESHOLD, "SLO search-slo: spec.indicator: only a ratioMetric"),
        (
            OPENSLO_INLINE.replace("Occurrences", "Timeslices"),
            "spec.budgetingMethod: 'Timeslices': only Occurrences",
        ),
        (OPENSLO_INLINE.replace("duration: 1w", "duration: 1M"), "spec.timeWindow[0].duration: '1M'"),
        (
            OPENSLO_INLINE.replace("isRolling: true", "isRolling: false"),
            "a calendar-aligned window needs calendar.startTime and calendar.timeZone",
        ),
        (
            OPENSLO_INLINE.replace(
                "isRolling: true", "calendar: {startTime: 2026-01-06 00:00:00, timeZone: UTC}"
            ),
            "calendar.startTime: 2026-01-06 00:00:00: a week starts at midnight on a Monday",
        ),
        (
            OPENSLO_INLINE.replace(
                "isRolling: true", "calendar: {startTime: 2026-01-01 00:00:00, timeZone: UTC}"
            ).replace("duration: 1w", "duration: 1Q"),
            "a calendar window is 1w or 1M here",
        ),
        (
            OPENSLO_INLINE.replace('sum(slo_requests_total{code="ok"})', "rate(x[5m]) / 2"),
            "counter: true needs a metric selector",
        ),
        (OPENSLO_INLINE.replace("target: 0.999", "target: 1.5"), "the target lies in (0, 1)"),
        (
            OPENSLO_REFERENCED.replace("indicatorRef: foo-errors", "indicatorRef: nope"),
            "no kind: SLI named 'nope'",
        ),
        (
            OPENSLO_INLINE.replace("openslo/v1", "openslo/v1alpha"),
            "apiVersion 'openslo/v1alpha': expected openslo/v1",
        ),
    ],
)
def test_what_openslo_says_that_gatecheck_cannot_judge_is_refused_in_one_line(
    tmp_path: Path, config_copy: Path, document: str, problem: str
) -> None:
    from typer.testing import CliRunner

    from gatecheck.cli import app

    path = tmp_path / "slo.yaml"
    path.write_text(document)
    result = CliRunner().invoke(app, ["import-openslo", str(path), "--write", "--config", str(config_copy)])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and problem in lines[0], result.stderr
    assert not list((config_copy / "suites").glob("foo*")) and not list(
        (config_copy / "suites").glob("search*")
    )


def test_a_backtest_judges_each_step_as_run_does_and_charts_the_budget(
    config_copy: Path, prometheus: str, tmp_path: Path
) -> None:
    """Each step counts its own windows (an SLO's frame is not its SLI's answer: never asked
    in one request for all steps); the budget left is a panel of the chart over time."""
    from gatecheck.evaluation.backtest import run_backtest
    from gatecheck.render.backtest import chart_page

    root = slo_project(config_copy)
    project = load_project(root, environ={"GATECHECK_PROMETHEUS_URL": prometheus})
    step = SLO_SUSTAINED_END - SLO_SPIKE_END
    report = asyncio.run(run_backtest(project, "slo-check", SLO_SPIKE_END, SLO_SUSTAINED_END, step))
    assert [s.as_of for s in report.steps] == [SLO_SPIKE_END, SLO_SUSTAINED_END]
    assert [s.verdict.value for s in report.steps] == ["go", "no-go"]
    budget = [s.checks[0].observed["budget_remaining"] for s in report.steps]
    assert budget == [pytest.approx(1 - 5_137.5 / 10_080.0), pytest.approx(1 - 6_502.5 / 10_080.0)]
    (summary,) = report.checks
    assert {d.column for d in summary.distributions} >= {"budget_remaining", "firing"}
    (tmp_path / "chart.html").write_text(chart_page(report), encoding="utf-8")
    page = (tmp_path / "chart.html").read_text()
    assert "budget_remaining" in page and "0.3549" in page


# ------------------------------------------------------------------ an SLI in SQL (chDB)

SQL_AS_OF = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sql_events(warehouse: Path) -> str:
    """Eight days of events in chDB before SQL_AS_OF: 100 a minute (each at its minute's
    middle), 20 of them bad in each of the last 60 minutes. The database's name."""
    from gatecheck.sources.clickhouse.connection import ClickHouse, Target

    with ClickHouse() as clickhouse:
        connection = clickhouse.connect(Target.parse(f"chdb://{warehouse}", warehouse))
        connection.command("CREATE DATABASE IF NOT EXISTS slo_sql")
        connection.command("DROP TABLE IF EXISTS slo_sql.events")
        connection.command(
            "CREATE TABLE slo_sql.events (ts DateTime64(3, 'UTC'), bad UInt8) ENGINE = MergeTree ORDER BY ts"
        )
        connection.command(
            "INSERT INTO slo_sql.events SELECT "
            f"toDateTime64('{SQL_AS_OF:%Y-%m-%d %H:%M:%S}', 3, 'UTC') - toIntervalSecond(intDiv(number, 100) * 60 + 30), "
            "intDiv(number, 100) < 60 AND number % 100 < 20 FROM numbers(100 * 1440 * 8)"
        )
    return "slo_sql"


def sql_project(root: Path) -> Path:
    suite = {
        "name": "events_slo",
        "source": "warehouse",
        "window": {"length": "7d"},
        "query": "SELECT countIf(NOT bad) AS good, count() AS total FROM events\n"
                 "WHERE ts >= {window_start:DateTime64(3)} AND ts < {window_end:DateTime64(3)}",
        "slo": {"objective": 99},
    }  # fmt: skip
    (root / "suites" / "events_slo.yaml").write_text(yaml.safe_dump(suite))
    gate = {"phase": "sql-slo", "environment": "staging", "checks": [{"suite": "events_slo"}]}
    (root / "gates" / "sql-slo.yaml").write_text(yaml.safe_dump(gate))
    return root


def test_an_sli_in_sql_is_counted_in_clickhouse_and_a_backtest_asks_each_step(
    config_copy: Path, warehouse: Path, sql_events: str
) -> None:
    from gatecheck.evaluation.backtest import run_backtest

    environ = {"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={sql_events}"}
    project = load_project(sql_project(config_copy), environ=environ)
    (check,) = asyncio.run(evaluate(project, "sql-slo", SQL_AS_OF)).checks
    assert check.outcome is Outcome.FAIL and check.slo is not None
    # 7 days: 1,008,000 events, 1,200 bad (60 minutes x 20): burn 0.119 at a 1% budget
    assert (check.slo.window.total, check.slo.window.good) == (1_008_000, 1_008_000 - 1_200)
    assert check.slo.budget_remaining == pytest.approx(1 - 1_200 / 1_008_000 / 0.01)
    # the hour and the 5 minutes: 20 bad in 100 — burn 20 in both; 30 minutes too, 6 hours 3.33
    assert burns(check)["page-fast"] == (pytest.approx(20), pytest.approx(20), True)
    assert burns(check)["page-slow"] == (pytest.approx(1_200 / 36_000 / 0.01), pytest.approx(20), False)
    # a backtest: the step 2 hours before saw none of the bad minutes; each step asked alone
    # (ClickHouse answers many steps of a suite's SQL in one request: never an SLO's)
    report = asyncio.run(
        run_backtest(project, "sql-slo", SQL_AS_OF - timedelta(hours=2), SQL_AS_OF, timedelta(hours=2))
    )
    assert [s.verdict.value for s in report.steps] == ["go", "no-go"]
    assert [s.checks[0].observed["budget_remaining"] for s in report.steps] == [
        pytest.approx(1.0), pytest.approx(1 - 1_200 / 1_008_000 / 0.01)
    ]  # fmt: skip


def test_good_beyond_total_is_an_error_never_a_full_budget(
    config_copy: Path, warehouse: Path, sql_events: str
) -> None:
    """An SLI whose good counts other events than its total (here every event, against the
    bad-free hour's) was taken as all good: a full budget, a pass. Beyond the extrapolation
    of two increase() measures (1%), it is an error naming the window."""
    root = sql_project(config_copy)
    suite = yaml.safe_load((root / "suites" / "events_slo.yaml").read_text())
    where = "FROM events\nWHERE ts >= {window_start:DateTime64(3)} AND ts < {window_end:DateTime64(3)}"
    suite["query"] = f"SELECT count() AS good, countIf(NOT bad) AS total {where}"  # the two swapped
    (root / "suites" / "events_slo.yaml").write_text(yaml.safe_dump(suite))
    environ = {"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={sql_events}"}
    (check,) = asyncio.run(evaluate(load_project(root, environ=environ), "sql-slo", SQL_AS_OF)).checks
    assert check.outcome is Outcome.ERROR, check
    # the longest window beyond the margin, whichever answered first: 7d and 3d hold the bad
    # hour among so many good ones that good passes total by less than 1%; 6h by 3.4%
    assert re.search(
        r"the window 6h ending \S+: good 36000 is more than total 34800: good events are some "
        r"of the events — the SLI's two queries count different things",
        check.reason or "",
    ), check.reason
    # within the extrapolation's tolerance (0.1% over): judged, good taken as at most total
    suite["query"] = f"SELECT count() AS good, count() * 0.999 AS total {where}"
    (root / "suites" / "events_slo.yaml").write_text(yaml.safe_dump(suite))
    (judged,) = asyncio.run(evaluate(load_project(root, environ=environ), "sql-slo", SQL_AS_OF)).checks
    assert judged.outcome is Outcome.PASS, judged


def test_an_sli_answering_a_row_per_event_is_an_error_never_a_sum_of_the_first_rows(
    config_copy: Path, warehouse: Path, sql_events: str
) -> None:
    """An SLI that answers a row per event (good 0 or 1, total 1) instead of counting them: a
    source reads at most 10,001 rows, so a window of more events summed its oldest 10,001 —
    the 7-day budget read from 10,001 of 1,008,000 events, none of the last hour's bad ones
    (the short windows, under 10,000 events, still fired here; bad events older than an hour
    would have passed). More rows than an answer holds is an error naming the window."""
    root = sql_project(config_copy)
    suite = yaml.safe_load((root / "suites" / "events_slo.yaml").read_text())
    suite["query"] = (
        "SELECT NOT bad AS good, 1 AS total FROM events\n"
        "WHERE ts >= {window_start:DateTime64(3)} AND ts < {window_end:DateTime64(3)} ORDER BY ts"
    )
    (root / "suites" / "events_slo.yaml").write_text(yaml.safe_dump(suite))
    environ = {"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={sql_events}"}
    verdict = asyncio.run(evaluate(load_project(root, environ=environ), "sql-slo", SQL_AS_OF))
    (check,) = verdict.checks
    assert check.outcome is Outcome.ERROR, check
    assert "the SLI answered more than 10000 rows" in (check.reason or ""), check.reason
    assert verdict.verdict is VerdictState.INCONCLUSIVE


def test_an_overspent_budget_and_unjudged_windows_read_plainly() -> None:
    """The words for the cases the figures above do not reach: a budget used many times over,
    a window without enough events, a correction."""
    from gatecheck.config.models import SloConfig
    from gatecheck.evaluation.slo import findings_of, slo_frame
    from gatecheck.render.describe import slo_lines
    from gatecheck.results import SloCorrection

    config = SloConfig(objective=99.9)
    counted = {span: (0.0, 2_000.0) for span in (timedelta(days=2), *(
        w for r in config.burn_rates for w in (r.long, r.short)))}  # fmt: skip
    counted[timedelta(minutes=5)] = (0.0, 40.0)
    correction = SloCorrection(start=SQL_AS_OF - timedelta(hours=1), end=SQL_AS_OF, reason="INC-7", by="bob")
    found = findings_of(slo_frame(config, timedelta(days=2), counted, 100, [correction]))
    assert found is not None
    assert slo_lines(found) == [
        "objective 99.9%: the 48h error budget is spent: 1,000x of it used (2,000 bad of 2,000 events)",
        "  page-fast (over 14.4x in both): 1h burn 1,000, 5m burn 1,000 (too few events: 40) — not judged",
        "  page-slow (over 6x in both): 6h burn 1,000, 30m burn 1,000 — firing",
        "  ticket (over 1x in both): 72h burn 1,000, 6h burn 1,000 — firing",
        "left out: 2026-03-01T11:00:00Z to 2026-03-01T12:00:00Z — INC-7 (bob)",
    ]


def test_sloths_recording_rules_are_used_where_they_exist(config_copy: Path, prometheus: str) -> None:
    """The history holds Sloth's slo:sli_error:ratio_rate5m and ratio_rate1h at 0.03 around
    the sustained stretch's end (the counters say 0.02): page-fast's windows read them (burn
    30, marked recorded); the others have no rule and are counted (page-slow's 6 hours 4.29)."""
    root = slo_project(
        config_copy, recorded_error_ratio='slo:sli_error:ratio_rate$window_name{sloth_slo="requests"}'
    )
    check = the_check(judge(root, prometheus, SLO_SUSTAINED_END))
    assert burns(check)["page-fast"] == (pytest.approx(30.0), pytest.approx(30.0), True)
    assert burns(check)["page-slow"] == (pytest.approx(1_545 / 360), pytest.approx(20.0), False)
    assert check.slo is not None
    fast = check.slo.rules[0]
    assert (fast.long.recorded, fast.short.recorded, check.slo.rules[1].long.recorded) == (True, True, False)
    assert fast.long.total == pytest.approx(60_000)  # the events are counted all the same
    from gatecheck.render.describe import slo_lines

    assert (
        "  page-fast (over 14.4x in both): 1h burn 30 (recorded), 5m burn 30 (recorded) — firing"
        in slo_lines(check.slo)
    )
    # where no rule was recorded at that time (the spike's end), every window is counted
    spike = the_check(judge(root, prometheus, SLO_SPIKE_END))
    assert burns(spike)["page-fast"] == (pytest.approx(127.5 / 60), pytest.approx(20.0), False)


def test_a_recorded_ratio_outside_zero_to_one_or_on_another_source_is_refused(
    config_copy: Path, prometheus: str
) -> None:
    root = slo_project(config_copy, recorded_error_ratio="vector(1.5) + 0 * vector($window_s) # $window_name")
    check = the_check(judge(root, prometheus, SLO_SUSTAINED_END))
    assert check.outcome is Outcome.ERROR
    assert check.reason == "source metrics: slo.recorded_error_ratio: 1.5 is not a ratio between 0 and 1"
    with pytest.raises(ConfigError, match=r"recorded_error_ratio names its window as \$window_name"):
        load_project(slo_project(config_copy, recorded_error_ratio="slo:sli_error:ratio_rate5m"), environ={})


def test_the_phase_consumption_counts_from_the_start_a_controller_names(
    config_copy: Path, prometheus: str
) -> None:
    """A rollout controller's request names when its rollout began: the bad events since then
    (the 70 minutes at 20 a minute: 1,400) over the 7-day window's budget (0.1% of 10,080,000),
    and the start is recorded with the requester."""
    from gatecheck.evaluation.engine import Engine
    from gatecheck.results import Requester

    project = load_project(slo_project(config_copy), environ={"GATECHECK_PROMETHEUS_URL": prometheus})
    began = SLO_SUSTAINED_END - timedelta(minutes=70)
    asker = Requester(controller="argo-rollouts", name="normalize", started=began)

    async def go() -> Verdict:
        async with Engine(project, ledger=None) as engine:
            return (
                await engine.evaluate("slo-check", SLO_SUSTAINED_END, requested_by=asker, record=False)
            ).verdict

    verdict = asyncio.run(go())
    found = the_check(verdict).slo
    assert found is not None and found.phase_since == began
    assert found.phase_consumed == pytest.approx(1_400 / 10_080)
    assert verdict.requested_by is not None and verdict.requested_by.started == began
    # a start before the 7-day window (a rollout paused for weeks, a bogus one): counted from
    # the window's start — the window's own consumption — never weeks or decades of events
    for began in (SLO_SUSTAINED_END - timedelta(days=30), datetime(1972, 1, 2, tzinfo=UTC)):
        asker = Requester(controller="argo-rollouts", name="normalize", started=began)
        found = the_check(asyncio.run(go())).slo
        assert found is not None and found.phase_since == SLO_SUSTAINED_END - timedelta(days=7)
        assert found.budget_remaining is not None
        assert found.phase_consumed == pytest.approx(1 - found.budget_remaining)


def test_a_correction_through_the_api_is_the_same_record_and_needs_the_token(
    config_copy: Path, tmp_path: Path
) -> None:
    import httpx

    from gatecheck.service.app import create_app
    from gatecheck.service.core import Service

    project = load_project(slo_project(config_copy), environ={})
    service = Service(project, SqliteLedger(tmp_path / "l.db"), [], api_token="s3cret")
    bearer = {"Authorization": "Bearer s3cret"}
    body = {
        "from": "2026-11-20T02:00:00Z",
        "to": "2026-11-20T03:30:00Z",
        "reason": "maintenance",
        "by": "alice",
    }

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return [
                await client.post("/api/v1/slos/requests_slo/corrections", json=body),
                await client.post(
                    "/api/v1/slos/requests_slo/corrections", json={**body, "from": "x"}, headers=bearer
                ),
                await client.post("/api/v1/slos/nope/corrections", json=body, headers=bearer),
                await client.post("/api/v1/slos/requests_slo/corrections", json=body, headers=bearer),
                await client.get("/api/v1/audit", params={"phase": "slo-check", "since": "30d"}),
            ]

    denied, bad_time, unknown, made, trail = asyncio.run(go())
    assert denied.status_code == 401
    assert (bad_time.status_code, bad_time.json()["detail"]) == (
        422,
        "from: 'x' is not an ISO 8601 time (e.g. 2026-11-22T06:00:00Z)",
    )
    assert unknown.status_code == 422 and unknown.json()["detail"].startswith("slo: no SLO suite 'nope'")
    assert made.status_code == 201 and made.json()["kind"] == "slo-corrected"
    (event,) = trail.json()
    assert (event["check"], event["phase"], event["group"]["from"]) == (
        "requests_slo",
        "*",
        "2026-11-20T02:00:00+00:00",
    )


def test_a_calendar_period_starts_on_monday_or_the_first_in_its_time_zone() -> None:
    from zoneinfo import ZoneInfo

    from gatecheck.config.models import SloConfig

    end = datetime(
        2026, 3, 29, 12, 0, tzinfo=UTC
    )  # a Sunday; Europe/Berlin changed to summer time at 01:00 UTC
    assert SloConfig(objective=99, calendar="week").period_start(end) == datetime(2026, 3, 23, tzinfo=UTC)
    berlin = SloConfig(objective=99, calendar="month", time_zone="Europe/Berlin").period_start(end)
    assert (
        berlin
        == datetime(2026, 3, 1, tzinfo=ZoneInfo("Europe/Berlin"))
        == datetime(2026, 2, 28, 23, tzinfo=UTC)
    )
    # a window ending at a period's first instant covers the period before it
    assert SloConfig(objective=99, calendar="month").period_start(
        datetime(2026, 4, 1, tzinfo=UTC)
    ) == datetime(2026, 3, 1, tzinfo=UTC)
    assert SloConfig(objective=99).period_start(end) is None
    with pytest.raises(ValueError, match="time_zone 'Mars/Olympus': not an IANA time zone"):
        SloConfig(objective=99, calendar="week", time_zone="Mars/Olympus")


@pytest.mark.parametrize(
    ("zone", "minutes"),
    [
        ("UTC", 7_810),  # Monday 2026-01-05 00:00 UTC to Saturday 10:10 UTC: 5d 10h10m
        ("Asia/Tokyo", 8_350),  # Monday 00:00 in Tokyo is Sunday 15:00 UTC: 5d 19h10m
    ],
)
def test_a_calendar_slo_counts_its_budget_from_the_start_of_the_week(
    config_copy: Path, prometheus: str, zone: str, minutes: int
) -> None:
    check = the_check(
        judge(slo_project(config_copy, calendar="week", time_zone=zone), prometheus, SLO_SUSTAINED_END)
    )
    found = check.slo
    assert found is not None and found.calendar == "week"
    assert found.window.length == timedelta(minutes=minutes)
    bad = 100 + 1_400 + 0.5 * (minutes - 75)  # the spike, the sustained stretch, the usual half a minute
    assert found.window.total == pytest.approx(1_000 * minutes)
    assert found.window.total - found.window.good == pytest.approx(bad)
    assert found.budget_remaining == pytest.approx(1 - bad / (1_000 * minutes) / 0.001)
    from gatecheck.render.describe import slo_lines

    assert slo_lines(found)[0].startswith(
        f"objective 99.9%: {found.budget_remaining:.1%} of the week to date ("
    )


def test_an_openslo_calendar_week_imports_as_a_calendar_slo(
    config_copy: Path, prometheus: str, tmp_path: Path
) -> None:
    """OpenSLO's calendar-aligned window (a week from a Monday, in its time zone) becomes a
    calendar SLO: the budget counts from Monday 00:00 in Tokyo (8,350 minutes by the end of
    the sustained stretch), as the suite written by hand does."""
    from typer.testing import CliRunner

    from gatecheck.cli import app

    document = OPENSLO_INLINE.replace(
        "isRolling: true",
        "isRolling: false\n      calendar: {startTime: 2026-01-05 00:00:00, timeZone: Asia/Tokyo}",
    )
    path = tmp_path / "slo.yaml"
    path.write_text(document)
    result = CliRunner().invoke(app, ["import-openslo", str(path), "--write", "--config", str(config_copy)])
    assert result.exit_code == 0, result.output
    suite = yaml.safe_load((config_copy / "suites" / "foo_slo.yaml").read_text())
    assert suite["slo"] == {"objective": 99.9, "calendar": "week", "time_zone": "Asia/Tokyo"}
    gate = {"phase": "slo-check", "environment": "staging", "checks": [{"suite": "foo_slo"}]}
    (config_copy / "gates" / "slo-check.yaml").write_text(yaml.safe_dump(gate))
    project = load_project(config_copy, environ={"GATECHECK_PROMETHEUS_URL": prometheus})
    (check,) = asyncio.run(evaluate(project, "slo-check", SLO_SUSTAINED_END)).checks
    assert check.slo is not None and check.slo.window.length == timedelta(minutes=8_350)
    assert check.slo.window.total == pytest.approx(8_350_000)
