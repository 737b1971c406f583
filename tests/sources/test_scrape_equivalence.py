"""The scrape source answers exactly what a Prometheus server answers, or refuses.

One exposition (tests/prometheus_history.py, SNAPSHOT) goes to the scrape source as text and
to the real Prometheus server (Debian's package) as what one scrape of it stores. Every
construct the scrape source accepts must give Prometheus's answer, series for series; every
construct it cannot answer from one snapshot is refused by `gatecheck validate` with one line
that says to use a Prometheus server.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gatecheck.cli import app
from gatecheck.errors import QueryError
from gatecheck.shipped import project_path
from gatecheck.sources.prometheus.scrape import evaluate_snapshot, parse_exposition, scrape_problems

from ..conftest import local_http
from ..prometheus_history import SNAPSHOT_AT, snapshot_exposition

#: Every construct of the scrape source's subset (docs/configuration.md), on the snapshot.
ACCEPTED = [
    "jobs_total",
    'jobs_total{result="ok"}',
    'jobs_total{queue!="a"}',
    'jobs_total{result=~"ok|failed", queue!~"b"}',
    'jobs_total{result=~"o.*"}',
    "nothing_here_total",
    "sum(jobs_total)",
    "sum by (result) (jobs_total)",
    "sum(jobs_total) by (queue)",
    "sum without (queue) (jobs_total)",
    "min by (queue) (queue_depth)",
    "max(queue_depth)",
    "avg(queue_depth)",
    "count(jobs_total)",
    "count by (queue) (jobs_total)",
    'sum(jobs_total{result="ok"}) / sum(jobs_total)',
    'jobs_total{result="ok"} / jobs_total{result="ok"}',
    "queue_depth * 2 + 1",
    "-queue_depth",
    "queue_depth - queue_depth / 4",
    "(1 + 2) * 3",
    "1 / 0",
    "queue_depth / 0",
    "sum(jobs_total) - sum(jobs_total)",
    "vector(3)",
    "sum(nothing_here_total) or vector(0)",
    "sum(nothing_here_total) or sum(jobs_total) * 0",
    'sum(jobs_total{result="ok"}) or vector(1)',
    "histogram_quantile(0.95, sum by (le) (work_seconds_bucket))",
    "histogram_quantile(0.5, work_seconds_bucket)",
    "histogram_quantile(0.99, work_seconds_bucket) * 1000",
    "rate(jobs_total[5m])",
    "increase(jobs_total[5m])",
    'sum(rate(jobs_total{result="ok"}[5m])) / sum(rate(jobs_total[5m]))',
    "sum by (queue) (increase(jobs_total[3m]))",
    "histogram_quantile(0.9, sum by (le) (rate(work_seconds_bucket[5m]))) * 1000",
    "sum(increase(work_seconds_count[5m]))",
    "rate(work_seconds_sum[5m]) / rate(work_seconds_count[5m])",
    '(sum(rate(failed_total[5m])) or sum(rate(jobs_total[5m])) * 0) * 60',
]

#: What one snapshot cannot answer: refused before anything runs.
REFUSED = {
    "irate(jobs_total[5m])": "irate()",
    "delta(queue_depth[5m])": "delta()",
    "count_over_time(jobs_total[5m])": "count_over_time()",
    "quantile_over_time(0.9, queue_depth[5m])": "quantile_over_time()",
    "max_over_time(queue_depth[5m])": "max_over_time()",
    "min_over_time((sum(rate(jobs_total[1m])) * 60)[5m:30s])": "min_over_time()",
    "(sum(jobs_total))[5m:1m]": "a subquery",
    "rate(sum(jobs_total)[5m:1m])": "rate() of an expression",
    "queue_depth[5m]": "a range outside rate() or increase()",
    "jobs_total offset 5m": "'offset'",
    "rate(jobs_total[5m] offset 1m)": "'offset'",
    "jobs_total @ 1767297600": "'@' (another time than the snapshot's)",
    "queue_depth > 1": "'>'",
    "jobs_total and queue_depth": "'and'",
    "jobs_total unless queue_depth": "'unless'",
    "topk(2, jobs_total)": "topk() is not supported",
    "absent(jobs_total)": "absent() is not supported",
    "time() - 1": "time() is not supported",
}


@pytest.fixture(scope="module")
def samples() -> list[tuple[str, dict[str, str], float]]:
    return parse_exposition(snapshot_exposition())


def prometheus_answer(url: str, promql: str) -> float | dict[frozenset[tuple[str, str]], float]:
    body = local_http.get(
        f"{url}/api/v1/query", params={"query": promql, "time": f"{SNAPSHOT_AT.timestamp():.3f}"}, timeout=10
    ).json()
    assert body["status"] == "success", body
    data = body["data"]
    if data["resultType"] == "scalar":
        return float(data["result"][1])
    return {
        frozenset((k, v) for k, v in item["metric"].items() if k != "__name__"): float(item["value"][1])
        for item in data["result"]
    }


def same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return a == pytest.approx(b, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("promql", ACCEPTED)
def test_the_scrape_source_gives_prometheus_answer(promql: str, samples: Any, prometheus: str) -> None:
    assert scrape_problems(promql) == [], "accepted by validate"
    ours = evaluate_snapshot(promql, samples, SNAPSHOT_AT.timestamp())
    theirs = prometheus_answer(prometheus, promql)
    if isinstance(theirs, float):
        assert isinstance(ours, float) and same(ours, theirs), (ours, theirs)
        return
    ours_vector = {frozenset(): ours} if isinstance(ours, float) else ours
    assert set(ours_vector) == set(theirs), (ours_vector, theirs)
    for labels, value in theirs.items():
        assert same(ours_vector[labels], value), (dict(labels), ours_vector[labels], value)


def test_a_counter_created_before_the_range_is_refused_where_prometheus_has_no_answer(
    samples: Any, prometheus: str
) -> None:
    """old_jobs_total counts since two hours before the snapshot: its increase over 5 minutes
    is unknown. Prometheus has no answer (one sample in the range); the scrape source says why."""
    assert prometheus_answer(prometheus, "increase(old_jobs_total[5m])") == {}
    with pytest.raises(QueryError, match=r"counts since .*before the 5m range began.*use a Prometheus server"):
        evaluate_snapshot("increase(old_jobs_total[5m])", samples, SNAPSHOT_AT.timestamp())
    # Over a range that reaches back to its creation, both know it.
    assert prometheus_answer(prometheus, "increase(old_jobs_total[3h])") == {frozenset({("queue", "a")}): 500.0}
    assert evaluate_snapshot("increase(old_jobs_total[3h])", samples, SNAPSHOT_AT.timestamp()) == {
        frozenset({("queue", "a")}): 500.0
    }


@pytest.mark.parametrize("promql", sorted(REFUSED))
def test_what_one_snapshot_cannot_answer_is_refused(promql: str) -> None:
    problems = scrape_problems(promql)
    assert len(problems) == 1, problems
    assert REFUSED[promql] in problems[0]
    assert "use a Prometheus server" in problems[0]


def test_validate_refuses_a_suite_the_scrape_source_cannot_answer(config_copy: Path) -> None:
    path = config_copy / "suites" / "normalize_slo.yaml"
    suite = yaml.safe_load(path.read_text())
    suite["query"]["measures"]["p95_latency_ms"] = "max_over_time(normalize_hrv_latency_seconds[$window]) * 1000"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    env = {"GATECHECK_PROMETHEUS_URL": "scrape+http://127.0.0.1:9/metrics"}
    result = CliRunner().invoke(app, ["validate", "--config", str(config_copy)], env=env)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines  # one line, however many gates use the suite
    assert lines == [
        "gatecheck: error: suites/normalize_slo.yaml: query.measures.p95_latency_ms: source 'metrics' is a "
        "scrape source in environments 'production', 'staging': max_over_time(): one snapshot cannot "
        "answer it; use a Prometheus server (http(s)://) for it"
    ]
    # The shipped suites are all within the subset: the demo validates on a scrape source.
    shipped = CliRunner().invoke(app, ["validate", "--config", str(project_path("reference"))], env=env)
    assert shipped.exit_code == 0, shipped.output
