"""The demo's normalize-service exposition: prometheus_client on a free loopback port.

The normalize service's metrics the reference suites read —
``normalize_hrv_messages_total{result,subject,stream,durable}``,
``dlq_messages_total{subject}``, ``normalize_hrv_processing_seconds`` (histogram) and
``event_bus_stream_fallback_total`` — filled with the traffic of one scenario, as if the
service had started at the beginning of the window (what the scrape source assumes).
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app

#: How often a serving loop looks for a stop: ``close()`` returns within it (the standard
#: library's default, half a second, is what every stop would wait).
STOP_POLL_S = 0.02

METRICS_SCENARIOS = ("slo-breach", "dlq-spike", "crashloop", "ingest-5xx", "canary-slow")
_LABELS = {
    "subject": "athlete-ally.hrv.raw-received",
    "stream": "AA_CORE_HOT",
    "durable": "normalize-hrv-durable",
}
_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_POD = {"namespace": "athlete-ally", "pod": "normalize-7d9f-0", "container": "normalize"}


def normalize_registry(scenario: str = "healthy", messages: int = 2000) -> CollectorRegistry:
    """A registry holding one scenario's normalize-service counters: the traffic of the five
    minutes before now (see :class:`NormalizeService`)."""
    service = NormalizeService(scenario)
    service.add(messages, minutes=5)
    return service.registry


class NormalizeService:
    """One scenario's normalize-service metrics, which traffic is added to as it happens (a
    served demo adds each tick's; :func:`normalize_registry` five minutes at once).

    healthy: 0.05% errors, p95 ≈ 120 ms. ``slo-breach``: HRV processing stopped — every
    message fails schema validation, latency p95 > 1 s. ``dlq-spike``: 40 dead letters a
    minute. ``canary-slow``: the canary's tenth of the messages 300 ms slower than the
    baseline's. ``crashloop``: the container restarted 6 times every 5 minutes; ``ingest-5xx``:
    30 answers of 503 on ``/ingest/hrv`` every 5 minutes; ``dlq``: 3 dead letters every 5.
    """

    #: Per minute, by scenario: dead letters, container restarts, 503 answers.
    DEAD_PER_MINUTE: ClassVar[dict[str, float]] = {"dlq-spike": 40.0, "dlq": 0.6}
    RESTARTS_PER_MINUTE: ClassVar[dict[str, float]] = {"crashloop": 1.2}
    FAILED_REQUESTS_PER_MINUTE: ClassVar[dict[str, float]] = {"ingest-5xx": 6.0}

    def __init__(self, scenario: str = "healthy") -> None:
        self.scenario = scenario
        self.registry = registry = CollectorRegistry()
        self.processed = Counter(
            "normalize_hrv_messages", "HRV messages processed by the normalize service, by result.",
            ["result", "subject", "stream", "durable"], registry=registry,
        )  # fmt: skip
        self.dlq = Counter(
            "dlq_messages", "Messages sent to the DLQ, by subject.", ["subject"], registry=registry
        )
        self.latency = Histogram(
            "normalize_hrv_processing_seconds", "Processing time of one HRV message, by track.",
            ["track"], buckets=_BUCKETS, registry=registry,
        )  # fmt: skip
        fallback = Counter(
            "event_bus_stream_fallback", "Publishes that fell back to the legacy stream.", registry=registry
        )
        # Present from the start, at zero: a series that exists says "none happened".
        if scenario != "slo-breach":
            self.processed.labels(result="schema_invalid", **_LABELS)
        self.processed.labels(result="dlq", **_LABELS)
        self.dlq.labels(subject="dlq.normalize.hrv.raw-received")
        # The bus `fallback` scenario's legacy message comes from a publisher that never had the
        # multi-stream client (no fallback counted): it is a NO-GO on the bus, not a rollback.
        fallback.inc(0)
        self._service_health()

    def add(self, messages: int, minutes: float) -> None:
        """``messages`` HRV messages processed over ``minutes``, with the scenario's defect."""
        scenario = self.scenario
        # A tenth of the messages go through the canary (track="canary"), the rest the baseline:
        # the same latencies on both tracks, but for canary-slow's canary (+300 ms).
        tracks = {"canary": messages // 10, "baseline": messages - messages // 10}
        if scenario == "slo-breach":
            self.processed.labels(result="schema_invalid", **_LABELS).inc(messages)
            for track, count in tracks.items():
                for i in range(count):
                    self.latency.labels(track=track).observe(0.8 + (i % 10) * 0.1)
        else:
            errors = messages / 2000  # 0.05%: one in 2000 (a fraction of one, for a tick's few)
            self.processed.labels(result="success", **_LABELS).inc(messages - errors)
            self.processed.labels(result="error", **_LABELS).inc(errors)
            for track, count in tracks.items():
                slower = 0.3 if scenario == "canary-slow" and track == "canary" else 0.0
                for i in range(count):
                    self.latency.labels(track=track).observe(0.03 + (i % 20) * 0.005 + slower)  # 30-125 ms
        dead = self.DEAD_PER_MINUTE.get(scenario, 0.0) * minutes
        self.processed.labels(result="dlq", **_LABELS).inc(dead)
        self.dlq.labels(subject="dlq.normalize.hrv.raw-received").inc(dead)
        self.restarts.labels(**_POD).inc(self.RESTARTS_PER_MINUTE.get(scenario, 0.0) * minutes)
        self.requests.labels(route="/ingest/hrv", method="POST", status="201").inc(messages)
        failed = self.FAILED_REQUESTS_PER_MINUTE.get(scenario, 0.0) * minutes
        if failed:
            self.requests.labels(route="/ingest/hrv", method="POST", status="503").inc(failed)

    def _service_health(self) -> None:
        """The series the remaining rollback triggers read (``service_triggers``): in a cluster
        they come from kube-state-metrics and the ingest service; the demo serves them in the
        same exposition."""
        registry = self.registry
        waiting = Gauge(
            "kube_pod_container_status_waiting_reason", "kube-state-metrics: a container waiting, by reason.",
            ["namespace", "pod", "container", "reason"], registry=registry,
        )  # fmt: skip
        if self.scenario == "crashloop":  # kube-state-metrics ≥ 2.0: a series only while it waits
            waiting.labels(reason="CrashLoopBackOff", **_POD).set(1)
        self.restarts = Counter(
            "kube_pod_container_status_restarts", "kube-state-metrics: container restarts.",
            ["namespace", "pod", "container"], registry=registry,
        )  # fmt: skip
        self.restarts.labels(**_POD)
        self.requests = Counter(
            "ingest_http_requests", "The ingest service's HTTP requests, by route, method and status.",
            ["route", "method", "status"], registry=registry,
        )  # fmt: skip
        lookups = Counter(
            "normalize_consumer_lookup_failures",
            'Times the normalize service logged "Failed to find HRV consumer on any available stream".',
            registry=registry,
        )
        lookups.inc(0)


class Exposition:
    """A registry served on ``/metrics`` at 127.0.0.1 in a daemon thread, on a port the system
    picked when the server bound it (a port chosen beforehand can be taken meanwhile).
    prometheus_client's own WSGI app and threading server, as its ``start_http_server`` builds
    them, in a loop that notices ``close()`` at once."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._server = make_server(
            "127.0.0.1", 0, make_wsgi_app(registry), ThreadingWSGIServer, handler_class=_Quiet
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": STOP_POLL_S}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """The exposition as a metrics source's URL."""
        return f"scrape+http://127.0.0.1:{self._server.server_port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Quiet(WSGIRequestHandler):
    """No access log line per scrape."""

    def log_message(self, *args: Any) -> None:
        pass
