"""normalize_slo and rollback_triggers on a real Prometheus with deterministic history."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from gatecheck.config import load_project
from gatecheck.demo.bus import free_port
from gatecheck.errors import QueryError, SourceUnavailable
from gatecheck.results import Outcome, Verdict, VerdictState
from gatecheck.sources.prometheus.api import PrometheusSource
from gatecheck.sources.prometheus.promql import PrometheusSourceConfig, PromQuery, render_promql

from ..conftest import evaluate
from ..prometheus_history import as_of, quiet_as_of


@pytest.fixture
def prom_config(config_copy: Path) -> Path:
    gate = {
        "phase": "prom-check",
        "environment": "staging",
        "window": "1h",
        "checks": [{"suite": "normalize_slo"}],
        "rollback": [{"suite": "rollback_triggers"}],
    }
    (config_copy / "gates" / "prom-check.yaml").write_text(yaml.safe_dump(gate))
    return config_copy


def judge(config: Path, url: str, moment: datetime) -> Verdict:
    project = load_project(config, environ={"GATECHECK_PROMETHEUS_URL": url})
    return asyncio.run(evaluate(project, "prom-check", moment))


def check(verdict: Verdict, suite: str):
    return next(c for c in verdict.checks if c.suite == suite)


def observed(verdict: Verdict, suite: str, column: str) -> object:
    return next(e for e in check(verdict, suite).expectations if e.column == column).observed_value


def test_slo_met_is_go(prom_config: Path, prometheus: str) -> None:
    verdict = judge(prom_config, prometheus, as_of("slo-met"))
    assert verdict.verdict is VerdictState.GO, verdict.reasons
    assert observed(verdict, "normalize_slo", "success_ratio") == pytest.approx(1 - 0.1 / 300.1, rel=1e-6)
    assert 200 < observed(verdict, "normalize_slo", "p95_latency_ms") < 250
    assert observed(verdict, "rollback_triggers", "dlq_per_min_sustained") == 0
    # The gate's window is for its checks; the rollback suite keeps its own 5 minutes.
    assert check(verdict, "rollback_triggers").window.length == timedelta(minutes=5)
    assert check(verdict, "normalize_slo").window.length == timedelta(hours=1)


def test_success_ratio_998_is_no_go(prom_config: Path, prometheus: str) -> None:
    verdict = judge(prom_config, prometheus, as_of("ratio-998"))
    assert verdict.verdict is VerdictState.NO_GO
    assert observed(verdict, "normalize_slo", "success_ratio") == pytest.approx(300 / 300.6, rel=1e-6)
    assert "success_ratio must be ≥ 99.9 %" in verdict.reasons[0]


def test_p95_above_500ms_is_no_go(prom_config: Path, prometheus: str) -> None:
    verdict = judge(prom_config, prometheus, as_of("p95-high"))
    assert verdict.verdict is VerdictState.NO_GO
    assert observed(verdict, "normalize_slo", "p95_latency_ms") > 900
    assert [e.column for e in check(verdict, "normalize_slo").expectations if e.outcome is Outcome.FAIL] == [
        "p95_latency_ms"
    ]


def test_dlq_spike_is_rollback(prom_config: Path, prometheus: str) -> None:
    verdict = judge(prom_config, prometheus, as_of("dlq-spike"))
    assert verdict.verdict is VerdictState.ROLLBACK
    assert observed(verdict, "rollback_triggers", "dlq_per_min_sustained") == pytest.approx(20)
    assert verdict.reasons[0].startswith("rollback trigger fired: rollback_triggers")


def test_no_samples_is_inconclusive(prom_config: Path, prometheus: str) -> None:
    verdict = judge(prom_config, prometheus, quiet_as_of())
    assert verdict.verdict is VerdictState.INCONCLUSIVE
    assert check(verdict, "normalize_slo").outcome is Outcome.INCONCLUSIVE
    assert check(verdict, "rollback_triggers").outcome is Outcome.INCONCLUSIVE


def test_nothing_succeeded_is_zero_not_no_value(prom_config: Path, prometheus: str) -> None:
    """Every message fails: the success series does not exist. That is a ratio of 0 and no
    success at all (NO-GO, and the 'processing stopped' rollback fires), never 'no value'."""
    verdict = judge(prom_config, prometheus, as_of("all-failing"))
    assert verdict.verdict is VerdictState.ROLLBACK, verdict.reasons
    assert observed(verdict, "normalize_slo", "success_ratio") == 0
    assert observed(verdict, "normalize_slo", "success_messages") == 0
    assert observed(verdict, "normalize_slo", "schema_failures_per_s") == pytest.approx(20)
    assert check(verdict, "normalize_slo").outcome is Outcome.FAIL
    assert observed(verdict, "rollback_triggers", "success_messages_5m") == 0
    # No dead letter and no fallback was ever counted: 0, with traffic as the evidence.
    assert observed(verdict, "rollback_triggers", "dlq_per_min_sustained") == 0
    assert observed(verdict, "rollback_triggers", "fallback_increase") == 0


def test_series_never_created_are_zero_when_traffic_flows(prom_config: Path, prometheus: str) -> None:
    """Healthy traffic whose dlq, fallback and schema_invalid counters were never incremented
    (so never exported): each is 0, and the gate is GO instead of INCONCLUSIVE."""
    verdict = judge(prom_config, prometheus, as_of("never-counted"))
    assert verdict.verdict is VerdictState.GO, verdict.reasons
    assert observed(verdict, "normalize_slo", "schema_failures_per_s") == 0
    assert observed(verdict, "normalize_slo", "success_ratio") == 1
    assert observed(verdict, "rollback_triggers", "dlq_per_min_sustained") == 0
    assert observed(verdict, "rollback_triggers", "fallback_increase") == 0


def test_a_renamed_counter_behind_an_or_is_never_a_quiet_rollback_trigger(prom_config: Path, prometheus: str) -> None:
    """The service renamed its DLQ counter: rollback_triggers' `or` would read the old name's
    absence as 0 dead letters and the gate GO; the check is an error naming it instead."""
    suite = prom_config / "suites" / "rollback_triggers.yaml"
    suite.write_text(suite.read_text().replace("dlq_messages_total", "dlq_messsages_total"))
    verdict = judge(prom_config, prometheus, as_of("never-counted"))
    assert verdict.verdict is not VerdictState.GO
    found = check(verdict, "rollback_triggers")
    assert found.outcome is Outcome.ERROR
    assert "metric dlq_messsages_total is unknown to Prometheus" in (found.reason or "")


def test_prometheus_down_is_error_and_inconclusive(prom_config: Path) -> None:
    verdict = judge(prom_config, f"http://127.0.0.1:{free_port()}", as_of("slo-met"))
    assert verdict.verdict is VerdictState.INCONCLUSIVE
    assert {c.outcome for c in verdict.checks} == {Outcome.ERROR}
    assert all(c.source_available is False for c in verdict.checks)


def source(url: str, **extra: object) -> PrometheusSource:
    return PrometheusSource("metrics", PrometheusSourceConfig(type="prometheus", url=url, **extra), Path("."))


def ask(src: PrometheusSource, query: object, moment: datetime):
    parameters = {"window_start": moment - timedelta(hours=1), "window_end": moment, "as_of": moment}

    async def go() -> object:
        try:
            return await src.query(query, parameters)
        finally:
            await src.close()

    return asyncio.run(go())


def test_a_promql_syntax_error_carries_prometheus_message(prometheus: str) -> None:
    with pytest.raises(QueryError, match=r"bad_data: .*parse error"):
        ask(source(prometheus), "sum(rate(normalize_hrv_messages_total[$window])", as_of("slo-met"))


def test_text_query_frame_has_a_column_per_label_plus_value(prometheus: str) -> None:
    frame = ask(
        source(prometheus),
        "sum by (result) (increase(normalize_hrv_messages_total[$window]))",
        as_of("slo-met"),
    )
    assert list(frame.columns) == ["result", "value"]
    assert list(frame["result"]) == ["dlq", "error", "schema_invalid", "success"]
    success = float(frame.loc[frame["result"] == "success", "value"].iloc[0])
    assert success == pytest.approx(300 * 240, rel=0.01)  # 240 steps of 15 s in the hour


def test_measures_join_and_nan_is_null(prometheus: str) -> None:
    query = PromQuery(
        measures={"zero_over_zero": "sum(rate(dlq_messages_total[$window])) / 0", "absent": "nope_total"}
    )
    frame = ask(source(prometheus), query, as_of("slo-met"))
    assert len(frame) == 1 and frame["zero_over_zero"].isna().all() and frame["absent"].isna().all()


def test_an_or_reads_a_metric_as_zero_only_when_prometheus_knows_it(prometheus: str) -> None:
    """`… or vector(0)` turns a missing series into 0: right for a family a target declares
    but never incremented (the metadata API lists it) or one with series in the window,
    wrong for a renamed metric — that is an error naming it, never a 0 that passes."""
    moment = as_of("never-counted")
    declared = ask(source(prometheus), "sum(rate(dlq_messages_total[$window])) or vector(0)", moment)
    assert list(declared["value"]) == [0]  # declared, never incremented
    stored = ask(source(prometheus), "sum(rate(normalize_hrv_processing_seconds_count[$window])) or vector(0)", moment)
    assert float(stored["value"].iloc[0]) > 0  # not declared by any target, but stored in the window
    with pytest.raises(QueryError, match=r"^metric dlq_mesages_total is unknown to Prometheus at .*: nothing declares it"):
        ask(source(prometheus), "sum(rate(dlq_mesages_total[$window])) or vector(0)", moment)
    renamed = PromQuery(measures={"dlq": "sum(rate(aa_dlq_messages_total[$window])) or vector(0)"})
    with pytest.raises(QueryError, match=r"^dlq: metric aa_dlq_messages_total is unknown"):
        ask(source(prometheus), renamed, moment)
    # Without `or`, absence stays NULL: no evidence, as before (no extra question asked).
    assert ask(source(prometheus), "sum(rate(aa_dlq_messages_total[$window]))", moment).empty


def test_an_or_never_reads_a_matcher_on_a_renamed_label_as_zero(prometheus: str) -> None:
    """An exporter upgrade renamed a label (`result` → `reslt` here, as `status` → `code`
    happens): `…{reslt="dlq"} or … * 0` selected nothing and read 0 dead letters where there
    were 5 a step. A matcher only a series with the label can meet must name a label the
    metric's series carry in the window; otherwise the check is an error naming it. A matcher
    that a series without the label meets (`!=`, `=~".*"`) asks nothing."""
    moment = as_of("dlq-spike")

    def dlq(matcher: str) -> object:
        promql = (
            f"sum(rate(normalize_hrv_messages_total{{{matcher}}}[$window]))"
            " or sum(rate(normalize_hrv_messages_total[$window])) * 0"
        )
        return ask(source(prometheus), PromQuery(measures={"dlq": promql}), moment)

    assert float(dlq('result="dlq"')["dlq"].iloc[0]) > 0
    with pytest.raises(QueryError) as caught:
        dlq('reslt="dlq"')
    assert re.fullmatch(
        r'dlq: no series of normalize_hrv_messages_total at Prometheus at \S+ carries the label of reslt="dlq" '
        r"\(its labels: result\), so the matcher selects nothing and the expression's `or` "
        r"would read that as a value — renamed\?",
        str(caught.value),
    ), str(caught.value)
    with pytest.raises(QueryError, match=r'carries the label of reslt=~"d.q"'):
        dlq('reslt=~"d.q"')
    assert float(dlq('reslt!="x"')["dlq"].iloc[0]) > 0  # met by every series: nothing asked
    # a counter with no series in the window, matched on a label it has: 0, as before
    assert list(ask(source(prometheus), "sum(rate(dlq_messages_total{subject=\"x\"}[$window])) or vector(0)",
                    as_of("never-counted"))["value"]) == [0]  # fmt: skip


def test_unreachable_and_credentials_are_not_leaked() -> None:
    with pytest.raises(SourceUnavailable) as caught:
        ask(
            source(f"http://user:hunter2@127.0.0.1:{free_port()}", bearer_token="t0k3n"),
            "up",
            as_of("slo-met"),
        )
    assert "hunter2" not in str(caught.value) and "t0k3n" not in str(caught.value)
    assert str(caught.value).endswith(": connection refused") and "Errno" not in str(caught.value)


def test_placeholders_render() -> None:
    moment = as_of("slo-met")
    parameters = {
        "window_start": moment - timedelta(hours=1),
        "window_end": moment,
        "as_of": moment + timedelta(minutes=5),
    }
    rendered = render_promql("rate(x[$window]) @ $window_end offset $settle # $window_s", parameters)
    assert rendered == f"rate(x[3600s]) @ {moment.timestamp():.3f} offset 300s # 3600"


def test_the_documented_prometheus_suite_example_works(config_copy: Path, prometheus: str) -> None:
    from ..conftest import REPO

    text = (REPO / "docs" / "sources" / "prometheus.md").read_text()
    section = text[text.index("# Prometheus suites") :]
    start = section.index("```yaml") + len("```yaml")
    example = section[start : section.index("```", start)]
    suite = yaml.safe_load(example)
    (config_copy / "suites" / f"{suite['name']}.yaml").write_text(example)
    gate = {"phase": "readme-prom", "environment": "staging", "checks": [{"suite": suite["name"]}]}
    (config_copy / "gates" / "readme-prom.yaml").write_text(yaml.safe_dump(gate))
    project = load_project(config_copy, environ={"GATECHECK_PROMETHEUS_URL": prometheus})
    assert asyncio.run(evaluate(project, "readme-prom", as_of("slo-met"))).verdict is VerdictState.GO
    assert asyncio.run(evaluate(project, "readme-prom", as_of("ratio-998"))).verdict is VerdictState.NO_GO


def test_a_suite_of_one_promql_text_gets_its_window(config_copy: Path, prometheus: str) -> None:
    """``query:`` as one PromQL expression (not ``measures``): the frame is its labels plus
    ``value``, judged over the window like any suite (it once got no window at all)."""
    suite = {
        "name": "hrv_messages_text",
        "source": "metrics",
        "window": {"length": "1h"},
        "query": "sum by (result) (increase(normalize_hrv_messages_total[$window]))",
        "groups": ["result"],
        "expectations": [{"type": "expect_column_values_to_be_between", "column": "value", "max_value": 100_000}],
    }
    (config_copy / "suites" / "hrv_messages_text.yaml").write_text(yaml.safe_dump(suite))
    gate = {"phase": "text-prom", "environment": "staging", "checks": [{"suite": "hrv_messages_text"}]}
    (config_copy / "gates" / "text-prom.yaml").write_text(yaml.safe_dump(gate))
    project = load_project(config_copy, environ={"GATECHECK_PROMETHEUS_URL": prometheus})
    verdict = asyncio.run(evaluate(project, "text-prom", as_of("slo-met")))
    (result,) = verdict.checks
    assert result.outcome is Outcome.PASS, result.reason
    assert result.rows == 4  # success, error, schema_invalid, dlq
    assert result.window.end == as_of("slo-met")
    suite["expectations"][0]["max_value"] = 1000  # success: 300 a step, 240 steps an hour
    (config_copy / "suites" / "hrv_messages_text.yaml").write_text(yaml.safe_dump(suite))
    project = load_project(config_copy, environ={"GATECHECK_PROMETHEUS_URL": prometheus})
    (failed,) = asyncio.run(evaluate(project, "text-prom", as_of("slo-met"))).checks
    assert failed.outcome is Outcome.FAIL
    assert [g.group for g in failed.expectations[0].failing_groups] == [{"result": "success"}]


@pytest.fixture
def triggers_config(config_copy: Path) -> Path:
    gate = {
        "phase": "prom-triggers",
        "environment": "staging",
        "window": "1h",
        "checks": [{"suite": "normalize_slo"}],
        "rollback": [{"suite": "service_triggers"}],
    }
    (config_copy / "gates" / "prom-triggers.yaml").write_text(yaml.safe_dump(gate))
    return config_copy


@pytest.mark.parametrize(
    ("scenario", "fired", "observed_value"),
    [
        ("slo-met", None, None),
        ("crashloop", "crashlooping_containers", 1),
        ("crashloop", "container_restarts", 5),  # one every minute for the last 5 minutes
        ("ingest-5xx", "ingest_5xx", 40),  # 2 per 15 s for 5 minutes
        ("lookup-failures", "consumer_lookup_failures", 20),
        # a series created by the burst it counts: increase() alone reads 0
        ("first-burst", "ingest_5xx", 30),
        # a target scraped for the first time: its counters' values say nothing of the window
        ("newly-scraped", None, None),
        # ... unless its process started inside the window: a new pod's counters started at 0
        ("new-pod", "ingest_5xx", 30),
    ],
)
def test_the_remaining_rollback_triggers_fire_and_stay_quiet(
    triggers_config: Path, prometheus: str, scenario: str, fired: str | None, observed_value: float | None
) -> None:
    project = load_project(triggers_config, environ={"GATECHECK_PROMETHEUS_URL": prometheus})
    verdict = asyncio.run(evaluate(project, "prom-triggers", as_of(scenario)))
    triggers = check(verdict, "service_triggers")
    failing = {e.column for e in triggers.expectations if e.outcome is Outcome.FAIL}
    if fired is None:
        assert triggers.outcome is Outcome.PASS and verdict.verdict is VerdictState.GO, verdict.reasons
        assert {e.column: e.observed_value for e in triggers.expectations} == {
            "crashlooping_containers": 0, "container_restarts": 0, "ingest_5xx": 0, "consumer_lookup_failures": 0,
        }  # fmt: skip
        return
    assert verdict.verdict is VerdictState.ROLLBACK and fired in failing
    assert observed(verdict, "service_triggers", fired) == pytest.approx(observed_value, rel=0.15)


def test_a_fallback_counted_by_the_series_it_creates_is_a_rollback(prom_config: Path, prometheus: str) -> None:
    """A labelled counter has no series until its first increment; its series appears with
    it (``{stream="ATHLETE_ALLY_EVENTS"} 1``), and Prometheus's ``increase()`` counts from that
    first sample: 0 fallback events, the rollback trigger quiet. A series with no sample in
    the day before the range counts from the zero it started at."""
    verdict = judge(prom_config, prometheus, as_of("first-burst"))
    assert verdict.verdict is VerdictState.ROLLBACK, verdict.reasons
    assert observed(verdict, "rollback_triggers", "fallback_increase") == 1
    # the series that existed before the range still count their increase: the rest is as healthy
    assert observed(verdict, "rollback_triggers", "dlq_per_min_sustained") == 0
    assert observed(verdict, "rollback_triggers", "success_messages_5m") == pytest.approx(6000, rel=0.05)
    assert check(verdict, "normalize_slo").outcome is Outcome.PASS


def test_counted_from_zero_rewrites_only_a_rate_or_increase_of_a_plain_selector() -> None:
    from gatecheck.sources.prometheus.promql import counted_from_zero

    assert counted_from_zero('sum(increase(x_total{a="b"}[300s]))') == (
        'sum(((((last_over_time(x_total{a="b"}[300s]) unless last_over_time(x_total{a="b"}[1d] offset 300s))'
        " and on(job, instance) (last_over_time(up[1d] offset 300s) or process_start_time_seconds > time() - 300)) * 1)"
        ' or increase(x_total{a="b"}[300s])))'
    )
    assert counted_from_zero("rate(x_total[5m])") == (
        "((((last_over_time(x_total[5m]) unless last_over_time(x_total[1d] offset 5m))"
        " and on(job, instance) (last_over_time(up[1d] offset 5m) or process_start_time_seconds > time() - 300)) / 300)"
        " or rate(x_total[5m]))"
    )
    for unchanged in (
        "irate(x_total[5m])", "increase(x_total[5m] offset 1h)", "rate(x_total[5m:1m])",
        'sum(x{job="rate(y_total[5m])"})', "delta(x[5m])", "sum(x_total)",
    ):  # fmt: skip
        assert counted_from_zero(unchanged) == unchanged
    # explain shows the query as each source sends it: a server gets the rewritten form, a
    # scrape source (which counts from _created itself) the text as written
    from gatecheck.sources.prometheus import explain_query

    moment = as_of("first-burst")
    parameters = {"window_start": moment - timedelta(minutes=5), "window_end": moment, "as_of": moment}
    shown = {
        url: explain_query(
            "metrics", PrometheusSourceConfig(type="prometheus", url=url), "sum(increase(x_total[$window]))",
            parameters, Path("."),
        )["requests"][0]["text"]
        for url in ("http://127.0.0.1:9090", "scrape+http://127.0.0.1:9100/metrics")
    }  # fmt: skip
    assert shown["http://127.0.0.1:9090"] == counted_from_zero("sum(increase(x_total[300s]))")
    assert shown["scrape+http://127.0.0.1:9100/metrics"] == "sum(increase(x_total[300s]))"


def test_an_infinite_ratio_is_never_a_pass(config_copy: Path, prometheus: str) -> None:
    """x/0 answers +Inf in PromQL: a minimum of 0.99 would pass on it."""
    suite = {
        "name": "inf_ratio", "source": "metrics", "window": {"length": "1h"},
        "query": {"measures": {"ratio": "sum(rate(normalize_hrv_messages_total[$window])) / 0"}},
        "expectations": [{"type": "expect_column_values_to_be_between", "column": "ratio", "min_value": 0.99}],
    }  # fmt: skip
    (config_copy / "suites" / "inf_ratio.yaml").write_text(yaml.safe_dump(suite))
    gate = {"phase": "inf-prom", "environment": "staging", "checks": [{"suite": "inf_ratio"}]}
    (config_copy / "gates" / "inf-prom.yaml").write_text(yaml.safe_dump(gate))
    project = load_project(config_copy, environ={"GATECHECK_PROMETHEUS_URL": prometheus})
    verdict = asyncio.run(evaluate(project, "inf-prom", as_of("slo-met")))
    assert verdict.verdict is VerdictState.INCONCLUSIVE
    (result,) = verdict.checks
    assert result.outcome is Outcome.ERROR and "+inf" in result.expectations[0].reason


def test_series_alike_but_for_their_name_are_all_kept(prometheus: str) -> None:
    """Two series that differ only by __name__ are both judged (the name a group value):
    folding them let a passing one hide a failing one."""
    frame = ask(
        source(prometheus),
        '{__name__=~"event_bus_stream_fallback_total|normalize_consumer_lookup_failures_total"}',
        as_of("slo-met"),
    )
    assert "__name__" in frame.columns
    assert set(frame["__name__"]) == {"event_bus_stream_fallback_total", "normalize_consumer_lookup_failures_total"}


def test_join_series_never_drops_one() -> None:
    from gatecheck.sources.prometheus.api import join_series

    kept = join_series([("value", [({"__name__": "a", "job": "x"}, 0.5), ({"__name__": "b", "job": "x"}, 1.0)])], 10)
    assert sorted(zip(kept["__name__"], kept["value"], strict=True)) == [("a", 0.5), ("b", 1.0)]
    plain = join_series([("value", [({"__name__": "a", "job": "x"}, 0.5), ({"__name__": "a", "job": "y"}, 1.0)])], 10)
    assert list(plain.columns) == ["job", "value"]
    with pytest.raises(QueryError, match="two series with the same labels"):
        join_series([("value", [({"job": "x"}, 0.5), ({"job": "x"}, 1.0)])], 10)
    with pytest.raises(QueryError, match="more than the 1"):
        join_series([("value", [({"job": "x"}, 0.5), ({"job": "y"}, 1.0)])], 1)


@pytest.mark.parametrize("raw", [True, None, {"v": 1}, "yes", [1]])
def test_a_sample_that_is_not_a_number_is_an_error(raw: object) -> None:
    from gatecheck.sources.prometheus.api import sample_value

    with pytest.raises(QueryError, match="not a number"):
        sample_value(raw)


def test_sample_values_as_prometheus_writes_them() -> None:
    from gatecheck.sources.prometheus.api import sample_value

    assert sample_value("0.5") == 0.5 and sample_value("NaN") is None
    assert sample_value("+Inf") == float("inf") and sample_value(3) == 3.0


def test_a_partial_answer_is_an_error_never_judged(
    prom_config: Path, prometheus: str, prometheus_partial: str
) -> None:
    """The same history, behind a Prometheus whose remote-read store is unreachable: every
    answer is "success" with a warning that part of the data is missing. The gate that is GO
    on the whole answer is judged on none of the partial one: each check is an error quoting
    Prometheus's warning (a failure still fails: the rollback check's errors stay errors)."""
    whole = judge(prom_config, prometheus, as_of("slo-met"))
    assert whole.verdict is VerdictState.GO
    partial = judge(prom_config, prometheus_partial, as_of("slo-met"))
    assert partial.verdict is VerdictState.INCONCLUSIVE
    for suite in ("normalize_slo", "rollback_triggers"):
        found = check(partial, suite)
        assert found.outcome is Outcome.ERROR, found
        assert "Prometheus answered with a warning, so the answer may be partial: remote_read:" in (found.reason or "")
        assert "connection refused" in (found.reason or "")


def test_a_window_begun_before_the_servers_retention_is_an_error(tmp_path: Path) -> None:
    """A real Prometheus keeping a day of samples: a window of two days would be counted on
    the one day it still holds (a 30-day error budget judged on the 15 days a default
    Prometheus keeps, the bad days forgotten). It is an error naming the retention; a window
    inside it is asked as before."""
    from datetime import UTC

    from ..conftest import launch_prometheus

    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 1m}\n")
    process, url = launch_prometheus(tmp_path, "1d")
    try:
        now = datetime.now(UTC)

        def ask(back: timedelta):  # type: ignore[no-untyped-def]
            source = PrometheusSource("metrics", PrometheusSourceConfig(type="prometheus", url=url), Path("."))

            async def go():  # type: ignore[no-untyped-def]
                try:
                    return await source.query("vector(1)", {"window_start": now - back, "window_end": now})
                finally:
                    await source.close()

            return asyncio.run(go())

        with pytest.raises(QueryError, match=r"reaches back 48h, beyond the 1d Prometheus at http://127\.0\.0\.1:\d+ keeps: the samples before .* are gone"):
            ask(timedelta(days=2))
        assert ask(timedelta(hours=23))["value"].tolist() == [1.0]
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_a_new_server_and_a_down_exporter_are_never_read_as_zero(tmp_path: Path) -> None:
    """Dead letters counted by their own exporter, traffic by the normalize service, a real
    Prometheus scraping both (and another job declaring the same family).

    The server is new: it holds seconds, and `increase(…[1h])` of a counter the service had
    counted before is 0 — the count of the seconds it holds, judged as the hour (a Prometheus
    whose storage was lost in a restart answers the same). An error naming where the range
    begins, until the server holds it.

    With the DLQ exporter down, Prometheus still lists its family (a down target's metadata
    stays), so `sum(rate(dlq_messages_total[5s])) or sum(rate(normalize_hrv_messages_total[5s])) * 0`
    answered 0 dead letters a minute — a pass while nothing reported them. Now an error naming
    the exporter, once its `up` is 0; asked as before while it is up, and when the one down is
    another job's that the selector leaves out. Taken out of the configuration (as a pod
    evicted from service discovery), the exporter leaves no `up` at 0: its series stop and the
    `or` read 0 again. An error naming the job that reported it, while no target of it is active."""
    import signal
    import time
    from datetime import UTC

    from prometheus_client import CollectorRegistry, Counter

    from gatecheck.demo.metrics import Exposition

    from ..conftest import launch_prometheus, local_http

    def declaring(dead: int = 0) -> CollectorRegistry:
        registry = CollectorRegistry()
        letters = Counter("dlq_messages", "dead letters", ["subject"], registry=registry)  # declared
        if dead:
            letters.labels("athlete-ally.hrv.raw-received").inc(dead)  # a series, before the window
        return registry

    traffic = CollectorRegistry()
    Counter("normalize_hrv_messages", "processed", ["result"], registry=traffic).labels("success").inc(5)
    exporters = {"dlq": Exposition(declaring(1)), "normalize": Exposition(traffic), "other": Exposition(declaring())}
    targets = {job: e.url.removeprefix("scrape+http://").removesuffix("/metrics") for job, e in exporters.items()}
    jobs = "".join(f"  - job_name: {job}\n    static_configs: [{{targets: ['{t}']}}]\n" for job, t in targets.items())
    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 1s}\nscrape_configs:\n" + jobs)
    process, url = launch_prometheus(tmp_path, "1d")
    fallback = "or sum(rate(normalize_hrv_messages_total[5s])) * 0) * 60"
    anywhere = f"(sum(rate(dlq_messages_total[5s])) {fallback}"
    of_dlq = f'(sum(rate(dlq_messages_total{{job="dlq"}}[5s])) {fallback}'

    def answered(promql: str) -> list[str]:
        found = local_http.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()["data"]["result"]
        return [r["value"][1] for r in found]

    def wait_for(promql: str, values: list[str]) -> None:
        deadline = time.monotonic() + 60
        while answered(promql) != values:
            assert time.monotonic() < deadline, f"{promql} never answered {values}"
            time.sleep(0.2)

    def ask_now(query: str):  # type: ignore[no-untyped-def]
        now = datetime.now(UTC)
        return _ask_over(url, query, now - timedelta(minutes=5), now)

    def down(job: str) -> str:
        return (
            rf"^metric dlq_messages_total: its exporter {re.escape(targets[job])} \(job {job}\) at Prometheus at "
            r"http://.* was down at .* \(up 0\), so the expression's `or` would read what it did not report as a value"
        )

    def uncovered() -> str:
        return (
            r"^Prometheus at http://\S+ holds no sample of any target's up in the 5m before \S+, where the "
            r"query's range begins: it was not scraping then \(a new server, its storage lost in a restart, "
            r"or down\), so the range would be judged on the samples since"
        )

    hour = "sum(increase(normalize_hrv_messages_total[1h]))"
    try:
        wait_for("count(up == 1)", ["3"])
        wait_for("count(rate(normalize_hrv_messages_total[5s]))", ["1"])  # two scrapes of traffic
        assert answered(hour) == ["0"]  # Prometheus's count: the seconds it holds, as the hour
        with pytest.raises(QueryError, match=uncovered()):
            ask_now(hour)
        wait_for("count(last_over_time(up[5m] offset 6s))", ["3"])  # it holds the 5s ranges below
        assert ask_now(anywhere)["value"].tolist() == [0.0]  # all up, no dead letter: 0, as before
        exporters["other"].close()
        wait_for('up{job="other"}', ["0"])
        assert ask_now(of_dlq)["value"].tolist() == [0.0]  # another job's exporter: left out
        with pytest.raises(QueryError, match=down("other")):
            ask_now(anywhere)  # it may hold dead letters of this sum
        exporters["dlq"].close()
        wait_for('up{job="dlq"}', ["0"])
        with pytest.raises(QueryError, match=down("dlq")):
            ask_now(of_dlq)
        # Both taken out of service discovery (scaled to 0): Prometheus drops their targets,
        # their up and their metadata; the dead letters' series stop, and the `or` read 0.
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s}\nscrape_configs:\n"
            f"  - job_name: normalize\n    static_configs: [{{targets: ['{targets['normalize']}']}}]\n"
        )
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while len(local_http.get(f"{url}/api/v1/targets", params={"state": "active"}, timeout=5)
                  .json()["data"]["activeTargets"]) != 1:  # fmt: skip
            assert time.monotonic() < deadline, "Prometheus kept the removed targets"
            time.sleep(0.2)
        wait_for(of_dlq, ["0"])  # Prometheus's own answer: no dead letter
        with pytest.raises(QueryError, match=r"^metric dlq_messages_total: job dlq reported it in the window, but "
                           r"Prometheus at http://\S+ scrapes no target of it at \S+: its exporter is gone"):
            ask_now(of_dlq)
        assert ask_now(f'(sum(rate(dlq_messages_total{{job="other"}}[5s])) {fallback}')["value"].tolist() == [0.0]
    finally:
        process.terminate()
        process.wait(timeout=20)
        exporters["normalize"].close()


def _ask_over(url: str, query: str, start: datetime, end: datetime):  # type: ignore[no-untyped-def]
    src = source(url)

    async def go():  # type: ignore[no-untyped-def]
        try:
            return await src.query(query, {"window_start": start, "window_end": end, "as_of": end})
        finally:
            await src.close()

    return asyncio.run(go())


def test_how_far_back_a_query_reads_and_when_a_server_that_held_nothing_then_is_an_error() -> None:
    """The earliest sample a query reads: its longest range, each subquery's range added (a
    range inside one is read from every step), its longest offset; an instant selector reads
    no range, a range in a label value is text, and an `@` (a fixed time) falls back to the
    window's start. A server with no `up` there but one at the end held nothing then; one
    with no `up` at either (fed by federation or remote write) is not judged this way."""
    from datetime import UTC

    from gatecheck.sources.prometheus.api import uncovered
    from gatecheck.sources.prometheus.promql import reach_seconds, reads_from

    assert reach_seconds("sum(increase(fallback_total[48h]))") == 48 * 3600
    assert reach_seconds("increase(a[1h]) / increase(b[1h30m])") == 5400
    assert reach_seconds("max_over_time(rate(a[5m])[1h:1m])") == 3600 + 300
    assert reach_seconds("rate(a[5m] offset 1h) - rate(a[5m] offset -1h)") == 300 + 3600
    assert reach_seconds('sum(nats_stream_messages{stream="[1d]"})') == 0
    assert reach_seconds("increase(a[1h] @ 1700000000)") is None
    end = datetime(2026, 1, 2, tzinfo=UTC)
    start = end - timedelta(hours=6)
    assert reads_from(start, end, ["sum(a)", "rate(b[5m])", "increase(c[2h])"]) == end - timedelta(hours=2)
    assert reads_from(start, end, ["sum(a)", "nats_consumer_num_pending"]) is None
    assert reads_from(start, end, ["rate(b[5m])", "increase(c[1h] @ 1700000000)"]) == start
    problem = uncovered("Prometheus at http://p:9090", end - timedelta(hours=2), True)
    assert problem is not None and str(problem).startswith(
        "Prometheus at http://p:9090 holds no sample of any target's up in the 5m before "
        "2026-01-01T22:00:00Z, where the query's range begins"
    )
    assert uncovered("Prometheus at http://p:9090", end, False) is None  # no up at all: not judged


def test_which_declaring_targets_an_expression_may_read() -> None:
    """A down target blocks an `or` only if a selector of the metric may read it: each matcher
    on a label the target carries (job, instance, relabeled ones) must admit it; a matcher on
    another label is the metric's own and excludes no target; a bare name reads every target."""
    from gatecheck.sources.prometheus.api import metric_selectors, target_may_be_read

    expression = (
        'sum(rate(x_total{job=~"dlq|dl2", status="5xx"}[5m])) or sum(x_total{job!~"web.*"}) * 0 '
        'or sum(rate(y_total{job="q\\"t"}[5m]))'
    )
    selectors = metric_selectors(expression, "x_total")
    assert selectors == [[("job", "=~", "dlq|dl2"), ("status", "=", "5xx")], [("job", "!~", "web.*")]]
    assert metric_selectors(expression, "y_total") == [[("job", "=", 'q"t')]]
    assert metric_selectors("sum(rate(x_total[5m])) or vector(0)", "x_total") == [[]]

    def target(job: str) -> dict[str, str]:
        return {"job": job, "instance": "10.0.0.1:9100"}

    assert target_may_be_read(target("dl2"), selectors[:1])  # status is the metric's label: no say
    assert not target_may_be_read(target("web"), selectors[:1])
    assert target_may_be_read(target("api"), selectors)  # the second selector reads every job but web*
    assert not target_may_be_read(target("web-2"), selectors)
    assert target_may_be_read(target("web"), [[]])
    assert target_may_be_read(target("web"), [[("job", "=~", "(unclosed")]])  # Python cannot read it: no say
