"""Deterministic Prometheus history for the tests: OpenMetrics text → TSDB blocks (promtool).

Scenarios lie in separate time segments of one TSDB, so one Prometheus server serves them
all; a test picks a scenario by evaluating at its segment's ``as_of``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SEGMENT = timedelta(minutes=70)
STEP_S = 15

#: scenario → (segment index, per-15s behaviour)
SCENARIOS = {
    "slo-met": 0,
    "ratio-998": 1,
    "p95-high": 2,
    "dlq-spike": 3,
    # Series that never got a sample, as a prometheus_client exporter leaves them: every
    # message fails (no success series), and no dead letter or fallback was ever counted.
    "all-failing": 4,
    # Healthy traffic, but the dlq, fallback and schema_invalid series were never created.
    "never-counted": 5,
    # The remaining rollback triggers (service_triggers), each in the last 10 minutes.
    "crashloop": 6,
    "ingest-5xx": 7,
    "lookup-failures": 8,
    # The canary's share of the traffic (track="canary") processed slower than the baseline.
    "canary-slow": 9,
    # Healthy traffic, and two labelled counters that get their first increment 2 minutes
    # before the end: 30 answers of 502 between two scrapes, one fallback to the legacy
    # stream. Their series appear with those values (no sample of them before).
    "first-burst": 10,
    # Healthy traffic, and a target scraped for the first time 2 minutes before the end: an
    # ingest replica that has run for weeks (job "fresh", 1,000 answers of 500 since it
    # started, none in the window).
    "newly-scraped": 11,
    # Healthy traffic, and a new ingest pod (job "canary-pod", its process started 3 minutes
    # before the end, first scraped 2 minutes before): 30 answers of 503 before its first scrape.
    "new-pod": 12,
}
BUCKETS = ("0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf")
FAST = (120, 200, 290, 298, 300, 300, 300)  # cumulative per step: p95 ≈ 240 ms
SLOW = (20, 50, 100, 200, 290, 300, 300)  # p95 ≈ 970 ms
#: The canary's tenth of the traffic (track="canary"), beside the baseline's: same shapes.
FAST_CANARY = (12, 20, 29, 30, 30, 30, 30)
SLOW_CANARY = (2, 5, 10, 20, 29, 30, 30)


def as_of(scenario: str) -> datetime:
    """The end of a scenario's segment: evaluate there."""
    return T0 + timedelta(hours=3) * SCENARIOS[scenario] + SEGMENT


def quiet_as_of() -> datetime:
    """A time with no samples in the last hours."""
    return T0 + timedelta(hours=3) * len(SCENARIOS) + timedelta(hours=2)


# ------------------------------------------------------------------ scrape-source equivalence

#: One snapshot of a service, the way the scrape source and a Prometheus that scraped it once
#: both see it: every series' value at SNAPSHOT_AT; counters and histograms also carry their
#: `_created` time (prometheus_client exports it), at which they were 0.
SNAPSHOT_AT = T0 + timedelta(hours=20)
_RECENT = SNAPSHOT_AT - timedelta(seconds=120)  # created inside a 5m range
_LONG_AGO = SNAPSHOT_AT - timedelta(hours=2)  # created before it
#: family → (type, created, [(sample name, labels, value)])
SNAPSHOT: dict[str, tuple[str, datetime | None, list[tuple[str, str, float]]]] = {
    "jobs": ("counter", _RECENT, [
        ("jobs_total", 'queue="a",result="ok"', 90), ("jobs_total", 'queue="b",result="ok"', 6),
        ("jobs_total", 'queue="a",result="failed"', 4),
    ]),
    "queue_depth": ("gauge", None, [
        ("queue_depth", 'queue="a"', 7), ("queue_depth", 'queue="b"', 2.5),
    ]),
    "work_seconds": ("histogram", _RECENT, [
        ("work_seconds_bucket", 'le="0.1"', 50), ("work_seconds_bucket", 'le="0.5"', 90),
        ("work_seconds_bucket", 'le="1.0"', 100), ("work_seconds_bucket", 'le="+Inf"', 100),
        ("work_seconds_count", "", 100), ("work_seconds_sum", "", 21.5),
    ]),
    "old_jobs": ("counter", _LONG_AGO, [("old_jobs_total", 'queue="a"', 500)]),
}  # fmt: skip


def snapshot_exposition() -> str:
    """The snapshot as the service exposes it (text format 0.0.4, as prometheus_client)."""
    lines: list[str] = []
    for family, (kind, created, samples) in SNAPSHOT.items():
        name = f"{family}_total" if kind == "counter" else family
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{n}{{{labels}}} {value}" if labels else f"{n} {value}" for n, labels, value in samples)
        if created is not None:
            lines.append(f"# TYPE {family}_created gauge")
            seen: set[str] = set()
            for _, labels, _ in samples:
                base = ",".join(p for p in labels.split(",") if p and not p.startswith("le="))
                if base not in seen:
                    seen.add(base)
                    rendered = f"{family}_created{{{base}}}" if base else f"{family}_created"
                    lines.append(f"{rendered} {created.timestamp()}")
    return "\n".join(lines) + "\n"


def _snapshot_openmetrics() -> list[str]:
    """The same snapshot in Prometheus's TSDB: each series' one scraped sample at
    SNAPSHOT_AT, plus a counter's zero sample at its created time (what Prometheus's
    created-timestamp zero ingestion stores; the Debian 2.42 server predates that flag)."""
    lines: list[str] = []
    at = int(SNAPSHOT_AT.timestamp())
    for family, (kind, created, samples) in SNAPSHOT.items():
        lines.append(f"# TYPE {family} {kind}")
        for name, labels, value in samples:
            rendered = f"{name}{{{labels}}}" if labels else name
            if created is not None:
                lines.append(f"{rendered} 0 {int(created.timestamp())}")
            lines.append(f"{rendered} {value:g} {at}")
    return lines


def openmetrics() -> str:
    series: dict[tuple[str, str], list[tuple[float, int]]] = {}

    def add(name: str, labels: str, value: float, ts: int) -> None:
        series.setdefault((name, labels), []).append((value, ts))

    totals: dict[tuple[str, str], float] = {}

    def bump(name: str, labels: str, increment: float, ts: int) -> None:
        key = (name, labels)
        totals[key] = totals.get(key, 0.0) + increment
        add(name, labels, totals[key], ts)

    for scenario, index in SCENARIOS.items():
        start = T0 + timedelta(hours=3) * index
        for step in range(int(SEGMENT.total_seconds()) // STEP_S + 1):
            ts = int(start.timestamp()) + step * STEP_S
            errors = 0.6 if scenario == "ratio-998" else (1.0 if step % 10 == 0 else 0.0)
            if scenario == "all-failing":
                bump("normalize_hrv_messages_total", 'result="schema_invalid"', 300, ts)
            elif scenario == "never-counted":
                bump("normalize_hrv_messages_total", 'result="success"', 300, ts)
            else:
                bump("normalize_hrv_messages_total", 'result="success"', 300, ts)
                bump("normalize_hrv_messages_total", 'result="error"', errors, ts)
                bump("normalize_hrv_messages_total", 'result="schema_invalid"', 0, ts)
                dlq = 5 if scenario == "dlq-spike" else 0
                bump("normalize_hrv_messages_total", 'result="dlq"', dlq, ts)
                bump("dlq_messages_total", 'subject="dlq.normalize.hrv.raw-received"', dlq, ts)
                bump("event_bus_stream_fallback_total", "", 0, ts)
            late = step * STEP_S >= SEGMENT.total_seconds() - 600  # the segment's last 10 minutes
            pod = 'namespace="athlete-ally",pod="normalize-0",container="normalize"'
            looping = scenario == "crashloop" and late
            if looping:  # kube-state-metrics ≥ 2.0: a waiting reason's series only while it waits
                add("kube_pod_container_status_waiting_reason", f'{pod},reason="CrashLoopBackOff"', 1, ts)
            bump("kube_pod_container_status_restarts_total", pod, 1 if looping and step % 4 == 0 else 0, ts)
            route = 'route="/ingest/hrv",method="POST"'
            bump("ingest_http_requests_total", f'{route},status="201"', 300, ts)
            if scenario == "ingest-5xx" and late:
                bump("ingest_http_requests_total", f'{route},status="503"', 2, ts)
            add("up", "", 1, ts)  # the target the series above come from, scraped
            last_two_minutes = step * STEP_S >= SEGMENT.total_seconds() - 120
            if scenario == "newly-scraped" and last_two_minutes:
                add("up", 'job="fresh"', 1, ts)
                add("process_start_time_seconds", 'job="fresh"', (T0 - timedelta(days=30)).timestamp(), ts)
                add("ingest_http_requests_total", f'job="fresh",{route},status="500"', 1000, ts)
            if scenario == "new-pod" and last_two_minutes:
                started = start + SEGMENT - timedelta(minutes=3)
                add("up", 'job="canary-pod"', 1, ts)
                add("process_start_time_seconds", 'job="canary-pod"', started.timestamp(), ts)
                add("ingest_http_requests_total", f'job="canary-pod",{route},status="503"', 30, ts)
            if scenario == "first-burst" and step * STEP_S >= SEGMENT.total_seconds() - 120:
                add("ingest_http_requests_total", f'{route},status="502"', 30, ts)
                add("event_bus_stream_fallback_total", 'stream="ATHLETE_ALLY_EVENTS"', 1, ts)
            lookups = 1 if scenario == "lookup-failures" and late else 0
            bump("normalize_consumer_lookup_failures_total", "", lookups, ts)
            baseline = SLOW if scenario == "p95-high" else FAST
            canary = SLOW_CANARY if scenario in ("p95-high", "canary-slow") else FAST_CANARY
            for track, cumulative in (("baseline", baseline), ("canary", canary)):
                for le, count in zip(BUCKETS, cumulative, strict=True):
                    bump("normalize_hrv_processing_seconds_bucket", f'track="{track}",le="{le}"', count, ts)
                bump("normalize_hrv_processing_seconds_count", f'track="{track}"', cumulative[-1], ts)
                bump("normalize_hrv_processing_seconds_sum", f'track="{track}"', 0.2 * cumulative[-1], ts)

    families = {
        "normalize_hrv_messages": "counter",
        "dlq_messages": "counter",
        "event_bus_stream_fallback": "counter",
        "normalize_hrv_processing_seconds": "histogram",
        "kube_pod_container_status_waiting_reason": "gauge",
        "kube_pod_container_status_restarts": "counter",
        "ingest_http_requests": "counter",
        "normalize_consumer_lookup_failures": "counter",
        "up": "gauge",
        "process_start_time_seconds": "gauge",
    }
    lines: list[str] = []
    for family, kind in families.items():
        lines.append(f"# TYPE {family} {kind}")
        for (name, labels), samples in series.items():
            if not (name == family or name.startswith(family + "_")):
                continue
            rendered = f"{name}{{{labels}}}" if labels else name
            lines.extend(f"{rendered} {value:g} {ts}" for value, ts in samples)
    lines.extend(_snapshot_openmetrics())
    lines.extend(_slo_openmetrics())
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ an error budget's history

#: Eight days of an SLI, one sample a minute: ``slo_requests_total{code="ok"|"error"}``. Every
#: minute 1,000 requests, 0.5 of them errors (a burn rate of 0.5 at a 99.9% objective), except:
SLO_START = T0 + timedelta(days=2)
#: a 5-minute spike (20 errors a minute: burn 20) ending here — 7 days and 1 hour in;
SLO_SPIKE_END = SLO_START + timedelta(days=7, hours=1)
#: 70 minutes at 20 errors a minute ending here, 8 hours later;
SLO_SUSTAINED_END = SLO_SPIKE_END + timedelta(hours=8, minutes=70)
#: then 2 hours as usual, and 30 minutes of low traffic (10 requests a minute, no errors) ending here.
SLO_LOW_END = SLO_SUSTAINED_END + timedelta(hours=2, minutes=30)


def slo_minute(minute_end: datetime) -> tuple[float, float]:
    """(requests, errors) in the minute that ends at ``minute_end``."""
    if SLO_SPIKE_END - timedelta(minutes=5) < minute_end <= SLO_SPIKE_END:
        return 1000, 20
    if SLO_SUSTAINED_END - timedelta(minutes=70) < minute_end <= SLO_SUSTAINED_END:
        return 1000, 20
    if SLO_LOW_END - timedelta(minutes=30) < minute_end <= SLO_LOW_END:
        return 10, 0
    return 1000, 0.5


def _slo_openmetrics() -> list[str]:
    ok = error = 0.0
    ok_lines, error_lines = [], []
    moment = SLO_START
    while moment <= SLO_LOW_END + timedelta(minutes=10):
        if moment > SLO_START:
            requests, errors = slo_minute(moment)
            ok, error = ok + requests - errors, error + errors
        at = int(moment.timestamp())
        ok_lines.append(f'slo_requests_total{{code="ok"}} {ok!r} {at}')
        error_lines.append(f'slo_requests_total{{code="error"}} {error!r} {at}')
        moment += timedelta(minutes=1)
    # Sloth's recording rules for two of the windows, around the sustained stretch's end: an
    # error ratio of 0.03 (burn 30), not the 0.02 the counters give: a test can tell them apart.
    recorded = []
    for window in ("5m", "1h"):
        recorded.append(f"# TYPE slo:sli_error:ratio_rate{window} gauge")
        moment = SLO_SUSTAINED_END - timedelta(minutes=10)
        while moment <= SLO_SUSTAINED_END + timedelta(minutes=10):
            recorded.append(f'slo:sli_error:ratio_rate{window}{{sloth_slo="requests"}} 0.03 {int(moment.timestamp())}')
            moment += timedelta(minutes=1)
    return ["# TYPE slo_requests counter", *ok_lines, *error_lines, *recorded]
