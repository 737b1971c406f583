"""``gatecheck import keptn-slo``: SLO and SLI files in Keptn v1's format (as its quality-gate
examples write them: relative and absolute pass criteria, a warning, an objective only
recorded, a total score, the SLI provider's placeholders) become suites and gate checks that
validate and judge on a real Prometheus; what gatecheck cannot judge is refused in one line."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gatecheck.cli import app
from gatecheck.config import load_project
from gatecheck.results import Outcome, VerdictState

from ..conftest import evaluate
from ..prometheus_history import SLO_SPIKE_END, SLO_SUSTAINED_END

SLO = """\
spec_version: "1.0"
comparison:
  compare_with: "several_results"
  include_result_with_score: "pass"
  number_of_comparison_results: 3
  aggregate_function: "p90"
objectives:
  - sli: "error_rate"
    key_sli: true
    pass:             # below 1%, whatever earlier results were
      - criteria:
          - "<0.01"
    warning:          # above 0.1% is worth a look
      - criteria:
          - "<=0.001"
  - sli: "throughput"
    pass:             # within half of the earlier results either way
      - criteria:
          - "<=+50%"
          - ">=-50%"
  - sli: "requests_total"   # fetched and kept by Keptn, not judged
total_score:
  pass: "90%"
  warning: "75%"
"""

SLI = """\
spec_version: '1.0'
indicators:
  error_rate: sum(rate(slo_requests_total{code="$LABEL.code"}[$DURATION_SECONDS])) / sum(rate(slo_requests_total[$DURATION_SECONDS]))
  throughput: sum(rate(slo_requests_total[$DURATION_SECONDS])) * 60
  requests_total: sum(slo_requests_total)
"""


def cli(root: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["import", "keptn-slo", *args, "--config", str(root)])


def files(tmp_path: Path, slo: str = SLO, sli: str = SLI) -> tuple[str, str]:
    (tmp_path / "slo.yaml").write_text(slo)
    (tmp_path / "sli.yaml").write_text(sli)
    return str(tmp_path / "slo.yaml"), str(tmp_path / "sli.yaml")


def test_keptn_objectives_become_suites_and_checks_that_judge_on_prometheus(
    config_copy: Path, tmp_path: Path, prometheus: str
) -> None:
    slo, sli = files(tmp_path)
    result = cli(config_copy, slo, "--sli", sli, "--set", "LABEL.code=error", "--write")
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (config_copy / "suites").glob("keptn_*.yaml"))
    assert written == ["keptn_error_rate.yaml", "keptn_error_rate_warning.yaml", "keptn_throughput.yaml"]
    suite = yaml.safe_load((config_copy / "suites" / "keptn_error_rate.yaml").read_text())
    assert suite["query"] == (
        'sum(rate(slo_requests_total{code="error"}[$window])) / sum(rate(slo_requests_total[$window]))'
    )
    assert suite["expectations"] == [
        {
            "type": "expect_column_values_to_be_between",
            "column": "value",
            "max_value": 0.01,
            "strict_max": True,
        }
    ]
    checks = yaml.safe_load(result.stdout.split("# add to a gate's checks:\n", 1)[1])["checks"]
    assert checks == [
        {"suite": "keptn_error_rate"},
        {"suite": "keptn_error_rate_warning", "required": False},
        {"suite": "keptn_throughput",
         "baseline": {"column": "value", "max_ratio": 1.5, "min_ratio": 0.5, "last": 3, "quantile": 0.9, "min_records": 3}},
    ]  # fmt: skip
    notes = result.stderr.splitlines()
    assert any("total_score: gatecheck has no score" in n for n in notes)
    assert any("requests_total has no criteria: Keptn only records it; not imported" in n for n in notes)
    gate = {"phase": "keptn-check", "environment": "staging", "checks": checks}
    (config_copy / "gates" / "keptn-check.yaml").write_text(yaml.safe_dump(gate))
    validated = CliRunner().invoke(app, ["validate", "--config", str(config_copy)])
    assert validated.exit_code == 0, validated.output
    project = load_project(config_copy, environ={"GATECHECK_PROMETHEUS_URL": prometheus})
    quiet = asyncio.run(evaluate(project, "keptn-check", SLO_SPIKE_END - timedelta(hours=1)))
    burning = asyncio.run(evaluate(project, "keptn-check", SLO_SUSTAINED_END))
    outcomes = {c.suite: c.outcome for c in quiet.checks}
    # 0.05% errors: under 1%, and under the warning's 0.1%; no earlier results to compare with
    assert outcomes == {"keptn_error_rate": Outcome.PASS, "keptn_error_rate_warning": Outcome.PASS,
                        "keptn_throughput": Outcome.INCONCLUSIVE}  # fmt: skip
    assert quiet.verdict is VerdictState.INCONCLUSIVE  # a relative criterion without history is no pass
    # 2% errors for an hour: the pass criterion fails (NO-GO), the warning shows
    assert burning.verdict is VerdictState.NO_GO
    assert {c.suite: c.outcome for c in burning.checks}["keptn_error_rate_warning"] is Outcome.FAIL


@pytest.mark.parametrize(
    ("slo", "sli", "extra", "problem"),
    [
        (SLO, SLI, [], "indicators.error_rate: the SLI names $LABEL.code: give its value with --set LABEL.code=..."),
        (SLO, "spec_version: '1.0'\nindicators: {}\n", ["--set", "LABEL.code=error"],
         "indicators.error_rate: no PromQL for the SLI (known: )"),
        (SLO.replace('      - criteria:\n          - "<0.01"\n',
                     '      - criteria:\n          - "<0.01"\n      - criteria:\n          - "<0.02"\n'),
         SLI, ["--set", "LABEL.code=error"], "objectives[0].pass: 2 criteria groups, of which Keptn needs one to hold (OR)"),
        (SLO.replace('"<0.01"', '"below 0.01"'), SLI, ["--set", "LABEL.code=error"],
         "objectives[0].pass[0].criteria[0]: 'below 0.01': not a Keptn criterion"),
        (SLO.replace('"<=0.001"', '"<=+5%"'), SLI, ["--set", "LABEL.code=error"],
         "objectives[0].warning[0].criteria: a relative warning criterion"),
        (SLO.replace('"p90"', '"p99"'), SLI, ["--set", "LABEL.code=error"],
         "comparison.aggregate_function: 'p99': one of avg, p90, p95"),
        # YAML keeps a key's last value: the second, looser criterion would have been imported
        (SLO.replace('          - "<0.01"\n', '          - "<0.01"\n    pass:\n      - criteria:\n          - "<0.5"\n'),
         SLI, ["--set", "LABEL.code=error"],
         "the key 'pass' is written twice in one mapping (first on line 10)"),
    ],
)  # fmt: skip
def test_what_gatecheck_cannot_judge_is_refused_in_one_line(
    config_copy: Path, tmp_path: Path, slo: str, sli: str, extra: list[str], problem: str
) -> None:
    slo_path, sli_path = files(tmp_path, slo, sli)
    result = cli(config_copy, slo_path, "--sli", sli_path, *extra, "--write")
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("gatecheck: error:")]
    assert result.exit_code == 2 and len(errors) == 1 and problem in errors[0], result.output
    assert not list((config_copy / "suites").glob("keptn_*.yaml"))  # nothing written


def test_a_single_result_comparison_with_the_service_placeholders(config_copy: Path, tmp_path: Path) -> None:
    """The shape of Keptn's quality-gate tutorial (written here, not copied): compare with the
    single last result by its average, one objective with a relative and an absolute pass
    criterion and a warning, the SLI's job named from $SERVICE-$PROJECT-$STAGE."""
    slo = """\
spec_version: "0.1.1"
comparison:
  compare_with: "single_result"
  include_result_with_score: "pass"
  aggregate_function: "avg"
  number_of_comparison_results: 1
objectives:
  - sli: "latency_p95"
    key_sli: false
    pass:
      - criteria:
          - "<=+10%"
          - "<600"
    warning:
      - criteria:
          - "<=800"
total_score:
  pass: "90%"
  warning: "75%"
"""
    sli = """\
spec_version: '1.0'
indicators:
  latency_p95: histogram_quantile(0.95, sum by(le) (rate(http_latency_ms_bucket{job="$SERVICE-$PROJECT-$STAGE"}[$DURATION_SECONDS])))
"""
    slo_path, sli_path = files(tmp_path, slo, sli)
    result = cli(
        config_copy, slo_path, "--sli", sli_path, "--set", "SERVICE=normalize", "--set", "PROJECT=athlete",
        "--set", "STAGE=staging",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.stdout))
    suite, warning, gate = documents
    assert suite["query"] == (
        'histogram_quantile(0.95, sum by(le) (rate(http_latency_ms_bucket{job="normalize-athlete-staging"}[$window])))'
    )
    assert suite["expectations"] == [
        {
            "type": "expect_column_values_to_be_between",
            "column": "value",
            "max_value": 600.0,
            "strict_max": True,
        }
    ]
    assert warning["expectations"][0]["max_value"] == 800.0 and "strict_max" not in warning["expectations"][0]
    # single_result: the last passing evaluation, one needed; avg of one is that one
    assert gate["checks"][0] == {
        "suite": "keptn_latency_p95",
        "baseline": {"column": "value", "max_ratio": 1.1, "last": 1, "quantile": 0.5, "min_records": 1},
    }
    assert not any(
        "median stands in" in line for line in result.stderr.splitlines()
    )  # one result: no average
