"""The scrape source against real expositions served by prometheus_client on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Histogram

from gatecheck.config import load_project
from gatecheck.demo.bus import free_port
from gatecheck.demo.metrics import Exposition, normalize_registry
from gatecheck.errors import QueryError, SourceUnavailable
from gatecheck.results import Outcome, VerdictState
from gatecheck.sources.prometheus.promql import PrometheusSourceConfig, PromQuery
from gatecheck.sources.prometheus.scrape import ScrapeSource

from ..conftest import evaluate


@pytest.fixture
def serve() -> Iterator[object]:
    servers: list[Exposition] = []

    def start(registry: CollectorRegistry) -> str:
        servers.append(Exposition(registry))
        return servers[-1].url

    yield start
    for server in servers:
        server.close()


def ask(url: str, query: object, window: timedelta = timedelta(minutes=5)):
    src = ScrapeSource("metrics", PrometheusSourceConfig(type="prometheus", url=url, timeout="2s"), Path("."))
    now = datetime.now(UTC)  # a snapshot is the present: the window ends now
    parameters = {"window_start": now - window, "window_end": now, "as_of": now}

    async def go() -> object:
        try:
            return await src.query(query, parameters)
        finally:
            await src.close()

    return asyncio.run(go())


def test_counters_histograms_and_aggregations(serve) -> None:
    registry = CollectorRegistry()
    requests = Counter("jobs", "Jobs.", ["result", "queue"], registry=registry)
    requests.labels(result="ok", queue="a").inc(90)
    requests.labels(result="ok", queue="b").inc(6)
    requests.labels(result="failed", queue="a").inc(4)
    latency = Histogram("work_seconds", "Work.", buckets=(0.1, 0.5, 1.0), registry=registry)
    for value in [0.05] * 50 + [0.3] * 40 + [0.8] * 10:
        latency.observe(value)
    url = serve(registry)
    frame = ask(
        url,
        PromQuery(
            measures={
                "ok_ratio": 'sum(increase(jobs_total{result="ok"}[$window])) / sum(increase(jobs_total[$window]))',
                "ok_per_s": 'sum(rate(jobs_total{result=~"o.*"}[$window]))',
                "p95": "histogram_quantile(0.95, sum by (le) (rate(work_seconds_bucket[$window])))",
                "missing_or_zero": 'sum(jobs_total{result="skipped"}) or (sum(jobs_total) * 0)',
            }
        ),
    )
    row = frame.iloc[0]
    assert row["ok_ratio"] == pytest.approx(0.96)
    assert row["ok_per_s"] == pytest.approx(96 / 300)  # a counter is read as its increase over the window
    assert row["p95"] == pytest.approx(0.5 + 0.5 * (95 - 90) / 10)  # Prometheus's linear interpolation
    assert row["missing_or_zero"] == 0
    by_queue = ask(url, "sum by (queue) (jobs_total)")
    assert list(by_queue["queue"]) == ["a", "b"] and list(by_queue["value"]) == [94, 6]


@pytest.fixture
def scrape_gate(config_copy: Path) -> Path:
    gate = {
        "phase": "scrape-check",
        "environment": "staging",
        "checks": [{"suite": "normalize_slo"}],
        "rollback": [{"suite": "rollback_triggers"}],
    }
    (config_copy / "gates" / "scrape-check.yaml").write_text(yaml.safe_dump(gate))
    return config_copy


@pytest.mark.parametrize(
    ("scenario", "verdict", "fired"),
    [("healthy", VerdictState.GO, None), ("slo-breach", VerdictState.ROLLBACK, "success_messages_5m"),
     ("dlq-spike", VerdictState.ROLLBACK, "dlq_per_min_sustained")],
)  # fmt: skip
def test_demo_expositions_through_the_suites(serve, scrape_gate: Path, scenario: str, verdict, fired) -> None:
    url = serve(normalize_registry(scenario))
    project = load_project(scrape_gate, environ={"GATECHECK_PROMETHEUS_URL": url})
    result = asyncio.run(evaluate(project, "scrape-check"))
    assert result.verdict is verdict, result.reasons
    rollback = next(c for c in result.checks if c.suite == "rollback_triggers")
    failed = [e.column for e in rollback.expectations if e.outcome is Outcome.FAIL]
    assert failed == ([fired] if fired else [])


def test_errors(serve) -> None:
    url = serve(normalize_registry("healthy"))
    with pytest.raises(QueryError, match="expected"):
        ask(url, "sum(rate(normalize_hrv_messages_total[5m])")
    with pytest.raises(QueryError, match=r"'\^': one snapshot cannot answer it"):
        ask(url, "normalize_hrv_messages_total ^ 2")
    with pytest.raises(QueryError, match=r"unsupported PromQL at ' # comment'"):
        ask(url, "normalize_hrv_messages_total # comment")
    with pytest.raises(QueryError, match=r"'offset' .*one snapshot cannot answer it; use a Prometheus server"):
        ask(url, "normalize_hrv_messages_total offset 5m")
    with pytest.raises(SourceUnavailable, match=r"cannot reach the exposition at http://127\.0\.0\.1:"):
        ask(f"scrape+http://127.0.0.1:{free_port()}/metrics", "up")
    empty = ask(url, "nothing_here_total")
    assert empty.empty  # no series: no evidence


def test_an_or_reads_a_metric_as_zero_only_when_the_exposition_declares_it(serve) -> None:
    """A family declared with no series yet (a counter with labels never incremented) is 0
    through `or`; a name the exposition does not declare (renamed) is an error naming it."""
    registry = CollectorRegistry()
    Counter("dlq_messages", "Dead letters.", ["subject"], registry=registry)
    url = serve(registry)
    assert list(ask(url, "sum(rate(dlq_messages_total[5m])) or vector(0)")["value"]) == [0]
    with pytest.raises(QueryError, match=r"^metric dlq_mesages_total is unknown to the exposition at .*nothing declares it"):
        ask(url, "sum(rate(dlq_mesages_total[5m])) or vector(0)")
    assert ask(url, "sum(rate(dlq_mesages_total[5m]))").empty  # without `or`: no evidence, as before


def test_an_or_never_reads_a_matcher_on_a_renamed_label_as_zero(serve) -> None:
    """A label the exposition's series of the metric do not carry (renamed by an exporter
    upgrade) in a matcher only such a series can meet is an error naming it, never a 0."""
    registry = CollectorRegistry()
    Counter("dlq_messages", "Dead letters.", ["subject"], registry=registry).labels("dlq.a").inc(3)
    url = serve(registry)
    assert list(ask(url, 'sum(dlq_messages_total{subject="dlq.a"}) or vector(0)')["value"]) == [3]
    with pytest.raises(QueryError, match=r'^no series of dlq_messages_total at the exposition at .* carries the label of subjct="dlq\.a" \(its labels: subject\)'):
        ask(url, 'sum(dlq_messages_total{subjct="dlq.a"}) or vector(0)')
    assert list(ask(url, 'sum(dlq_messages_total{subjct!="x"}) or vector(0)')["value"]) == [3]


def test_a_window_that_ended_in_the_past_is_refused(serve) -> None:
    """A snapshot is the present: judging a window that ended ten minutes ago from it would
    be answering about another time."""
    url = serve(normalize_registry("healthy"))
    src = ScrapeSource("metrics", PrometheusSourceConfig(type="prometheus", url=url, timeout="2s"), Path("."))
    end = datetime.now(UTC) - timedelta(minutes=10)
    parameters = {"window_start": end - timedelta(minutes=5), "window_end": end, "as_of": end}

    async def go() -> object:
        try:
            return await src.query("sum(normalize_hrv_messages_total)", parameters)
        finally:
            await src.close()

    with pytest.raises(QueryError, match=r"a snapshot is the present.*use a Prometheus server"):
        asyncio.run(go())


def test_a_counter_older_than_the_range_is_answered_from_the_scrape_remembered_at_its_start() -> None:
    """A service scrapes at every evaluation: the increase over [at - 5m, at] of a counter
    created before the range is its value now minus its value at the scrape 5 minutes ago —
    what a Prometheus server computes from the same two samples — never an error for as long
    as the service runs; without that scrape, or across a reset, it is refused as before."""
    from gatecheck.sources.prometheus.scrape import ScrapeMemory, evaluate_snapshot

    def exposition(value: float, created: float) -> list[tuple[str, dict[str, str], float]]:
        return [("jobs_total", {"queue": "a"}, value), ("jobs_created", {"queue": "a"}, created)]

    memory = ScrapeMemory()
    earlier = lambda moment, tolerance: memory.near("svc", moment, tolerance)  # noqa: E731
    memory.remember("svc", 1_000.0, exposition(100, created=10.0), {"jobs_total"})
    answer = evaluate_snapshot("sum(increase(jobs_total[5m]))", exposition(160, created=10.0), 1_300.0, earlier)
    assert answer == {frozenset(): 60.0}
    rate = evaluate_snapshot("sum(rate(jobs_total[5m]))", exposition(160, created=10.0), 1_300.0, earlier)
    assert rate == {frozenset(): 0.2}
    # A scrape 10 s into the range: the 290 s it saw, extrapolated to the range (Prometheus's way).
    late = ScrapeMemory()
    late.remember("svc", 1_010.0, exposition(100, created=10.0), {"jobs_total"})
    found = evaluate_snapshot(
        "sum(increase(jobs_total[5m]))", exposition(158, created=10.0), 1_300.0, lambda m, t: late.near("svc", m, t)
    )
    assert found == {frozenset(): pytest.approx(60.0)}
    with pytest.raises(QueryError, match="no scrape from the range's start is remembered"):
        evaluate_snapshot("increase(jobs_total[5m])", exposition(160, created=10.0), 1_300.0)
    with pytest.raises(QueryError, match="no scrape from the range's start"):  # the counter was reset
        evaluate_snapshot("increase(jobs_total[5m])", exposition(5, created=900.0), 1_300.0 + 900, earlier)
    with pytest.raises(QueryError, match="no scrape from the range's start"):  # too far from the start
        evaluate_snapshot("increase(jobs_total[1h])", exposition(160, created=10.0), 5_000.0, earlier)


def test_the_scrape_memory_is_bounded() -> None:
    from gatecheck.sources.prometheus.scrape import ScrapeMemory

    memory = ScrapeMemory(keep_s=3600, spacing_s=20)
    sample = [("x_total", {}, 1.0), ("x_created", {}, 0.0)]
    for second in range(0, 7200, 5):  # a scrape every 5 s for 2 h
        memory.remember("svc", float(second), sample, {"x_total"})
    kept = memory.moments("svc")
    assert kept[-1] > 7195 - 20 and len(kept) <= 3600 // 20 + 1 and kept[0] >= 7195 - 3600


def test_the_scrape_memory_keeps_only_the_counters_read_over_a_range_and_at_most_its_bound() -> None:
    """Of each scrape, the memory keeps the series of the counters that the queries asked of the
    target read over a range (rate, increase) — a counter another query asks for later is kept
    from then on — and never more than ``max_values`` series values: the oldest scrapes go
    first, and a range that began before the oldest one kept is refused, not guessed. Before,
    every counter series of every scrape was kept for six hours (an exposition of thousands of
    series held millions of values in the service's worker)."""
    from gatecheck.sources.prometheus.scrape import ScrapeMemory, evaluate_snapshot, ranged_counters

    assert ranged_counters(
        'histogram_quantile(0.95, sum by (le) (rate(lat_bucket{a="b"}[5m]))) '
        "+ sum(increase(jobs_total[1h])) / sum(rate ( errors_total [5m])) + sum(up) + sum(rated_total)"
    ) == {"lat_bucket", "jobs_total", "errors_total"}

    def exposition(value: float, series: int = 3) -> list[tuple[str, dict[str, str], float]]:
        found: list[tuple[str, dict[str, str], float]] = []
        for k in range(series):
            for name in ("jobs", "other"):
                found += [(f"{name}_total", {"k": str(k)}, value), (f"{name}_created", {"k": str(k)}, 10.0)]
        return found

    memory = ScrapeMemory(max_values=12)
    memory.remember("svc", 1_000.0, exposition(100), ranged_counters("sum(increase(jobs_total[5m]))"))
    found = memory.near("svc", 1_000.0, 1.0)
    assert found is not None and {name for name, _ in found[1]} == {"jobs_total"} and len(found[1]) == 3
    earlier = lambda moment, tolerance: memory.near("svc", moment, tolerance)  # noqa: E731
    assert evaluate_snapshot("sum(increase(jobs_total[5m]))", exposition(160), 1_300.0, earlier) == {
        frozenset(): 180.0
    }
    with pytest.raises(QueryError, match="no scrape from the range's start is remembered"):
        evaluate_snapshot("sum(increase(other_total[5m]))", exposition(160), 1_300.0, earlier)
    memory.remember("svc", 1_100.0, exposition(110), {"other_total"})  # asked for now: kept from now
    found = memory.near("svc", 1_100.0, 1.0)
    assert found is not None and {name for name, _ in found[1]} == {"jobs_total", "other_total"}
    # 3 + 6 values kept; the next scrape's 6 pass max_values=12: the oldest scrape goes
    memory.remember("svc", 1_200.0, exposition(120), set())
    assert memory.moments("svc") == [1_100.0, 1_200.0]
    with pytest.raises(QueryError, match="no scrape from the range's start is remembered"):
        evaluate_snapshot("sum(increase(jobs_total[5m]))", exposition(160), 1_300.0, earlier)
    assert evaluate_snapshot("sum(increase(jobs_total[5m]))", exposition(160), 1_400.0, earlier) == {
        frozenset(): pytest.approx(150.0)
    }


def test_a_service_answers_a_counter_older_than_the_range_from_its_second_scrape_on(serve) -> None:
    """Through the source, as `gatecheck serve`'s worker asks it (one memory across its
    evaluations): a counter created long before the range is refused at the first scrape (no
    earlier one), and answered from the next on, from the first one's value. Before, a refused
    answer's scrape was never remembered, so every later one was refused too: the check stayed
    an ERROR for as long as the service ran. Only the counter read over a range is kept."""
    from prometheus_client.core import CounterMetricFamily

    from gatecheck.sources.prometheus.scrape import ScrapeMemory

    shown = {"value": 100.0}

    class Counters:
        def collect(self) -> Iterator[CounterMetricFamily]:
            for name in ("jobs", "other"):
                family = CounterMetricFamily(name, f"{name} (long running)", labels=["queue"])
                family.add_metric(["a"], shown["value"], created=1_000_000.0)  # 1970: before any range
                yield family

    registry = CollectorRegistry()
    registry.register(Counters())
    url = serve(registry)
    memory = ScrapeMemory()
    config = PrometheusSourceConfig(type="prometheus", url=url, timeout="2s")
    query = PromQuery(measures={"jobs": "sum(increase(jobs_total[30s]))"})

    async def ask_again() -> object:
        source = ScrapeSource("metrics", config, Path("."), memory)
        now = datetime.now(UTC)
        try:
            return await source.query(query, {"window_start": now - timedelta(seconds=30), "window_end": now, "as_of": now})
        finally:
            await source.close()

    with pytest.raises(QueryError, match="no scrape from the range's start is remembered"):
        asyncio.run(ask_again())
    shown["value"] = 160.0
    frame = asyncio.run(ask_again())  # within 30 s of the first: the increase since, over the range
    assert list(frame.columns) == ["jobs"] and frame["jobs"].iloc[0] >= 60.0
    target = url.removeprefix("scrape+")
    first = memory.near(target, memory.moments(target)[0], 0.1)
    assert first is not None and list(first[1]) == [("jobs_total", frozenset({("queue", "a")}))]


def test_https_verifies_with_the_processs_one_tls_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over https:// a scrape verifies the server: a certificate a private CA signed is refused
    until SSL_CERT_FILE names that CA (as httpx reads it). However many clients the sources
    open, the CA bundle is loaded once per process: it cost ~20 ms of CPU per client."""
    import http.server
    import ssl

    from gatecheck.sources._http import verified_tls

    from ..tls import certificates, tls_server

    authority, certificate, key = certificates(tmp_path)
    body = b"# TYPE jobs counter\njobs_total 7\n"

    class Exposes(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = tls_server(Exposes, certificate, key)
    url = f"scrape+https://localhost:{server.server_address[1]}/metrics"
    loads: list[object] = []
    default_context = ssl.create_default_context

    def counted(*args: object, **kwargs: object) -> ssl.SSLContext:
        loads.append(kwargs)
        return default_context(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    try:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        verified_tls.cache_clear()
        with pytest.raises(SourceUnavailable, match="certificate verify failed"):
            ask(url, "sum(jobs_total)")
        monkeypatch.setenv("SSL_CERT_FILE", str(authority))
        verified_tls.cache_clear()  # the environment is read on first use: a new process
        loads.clear()
        for _ in range(3):
            assert list(ask(url, "sum(jobs_total)")["value"]) == [7]
        assert loads == [{"cafile": str(authority)}]  # one load for three sources
    finally:
        verified_tls.cache_clear()  # later tests build the context from their own environment
        server.shutdown()
        server.server_close()
