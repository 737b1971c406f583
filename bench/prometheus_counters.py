"""What counting a counter from its zero costs a Prometheus server: each shipped Prometheus
measure as written (the baseline) against the form the Prometheus source sends
(``counted_from_zero``: a series with no sample in the day before a range counts its last
value), on a real server (Debian's ``prometheus``) over generated history — every series
present from the start, so both forms must give the same answers.

    .venv/bin/python bench/prometheus_counters.py [--pods 50] [--days 5] [--repeat 7] [--guards]

``--guards``: instead, each measure as sent against the questions the source asks before it
is judged — whether the server held samples where its ranges begin (``SCRAPED`` at
``reads_from``), and for each metric an ``or`` reads, which jobs reported it in the window
(the first query of ``exporters_gone``) — on the same server, side by side.
"""

from __future__ import annotations

import argparse
import math
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml
from common import PROJECT

from gatecheck.sources.prometheus.api import SCRAPED, fallback_metrics
from gatecheck.sources.prometheus.promql import counted_from_zero, promql_seconds, reads_from, render_promql

STEP_S = 60
BUCKETS = ("0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf")
CUMULATIVE = (120, 200, 290, 298, 300, 300, 300)


def history(pods: int, days: int, end: datetime) -> str:
    """OpenMetrics: per pod, the series the shipped Prometheus suites read, one sample a minute."""
    steps = days * 86_400 // STEP_S
    start = int(end.timestamp()) - steps * STEP_S
    families: dict[str, tuple[str, list[str]]] = {
        "normalize_hrv_messages": ("counter", []),
        "dlq_messages": ("counter", []),
        "event_bus_stream_fallback": ("counter", []),
        "ingest_http_requests": ("counter", []),
        "normalize_consumer_lookup_failures": ("counter", []),
        "kube_pod_container_status_restarts": ("counter", []),
        "kube_pod_container_status_waiting_reason": ("gauge", []),
        "normalize_hrv_processing_seconds": ("histogram", []),
        # the target the series come from (no job or instance label, as the series)
        "up": ("gauge", [f"up 1 {start + k * STEP_S}" for k in range(steps + 1)]),
    }
    for pod in range(pods):
        p = f'pod="normalize-{pod}"'
        series: list[tuple[str, str, str, float]] = [
            ("normalize_hrv_messages", "normalize_hrv_messages_total", f'{p},result="success"', 300),
            ("normalize_hrv_messages", "normalize_hrv_messages_total", f'{p},result="error"', 0.1),
            ("normalize_hrv_messages", "normalize_hrv_messages_total", f'{p},result="dlq"', 0),
            ("dlq_messages", "dlq_messages_total", f'{p},subject="dlq.normalize.hrv.raw-received"', 0),
            ("event_bus_stream_fallback", "event_bus_stream_fallback_total", p, 0),
            ("ingest_http_requests", "ingest_http_requests_total",
             f'{p},route="/ingest/hrv",status="201"', 300),
            ("normalize_consumer_lookup_failures", "normalize_consumer_lookup_failures_total", p, 0),
            ("kube_pod_container_status_restarts", "kube_pod_container_status_restarts_total",
             f'{p},container="normalize"', 0),
        ]  # fmt: skip
        for track in ("baseline", "canary"):
            for le, count in zip(BUCKETS, CUMULATIVE, strict=True):
                series.append((
                    "normalize_hrv_processing_seconds", "normalize_hrv_processing_seconds_bucket",
                    f'{p},track="{track}",le="{le}"', count,
                ))  # fmt: skip
            series.append(("normalize_hrv_processing_seconds", "normalize_hrv_processing_seconds_count",
                           f'{p},track="{track}"', 300))  # fmt: skip
            series.append(("normalize_hrv_processing_seconds", "normalize_hrv_processing_seconds_sum",
                           f'{p},track="{track}"', 60))  # fmt: skip
        for family, name, labels, per_step in series:
            families[family][1].extend(
                f"{name}{{{labels}}} {per_step * k:g} {start + k * STEP_S}" for k in range(steps + 1)
            )
        families["kube_pod_container_status_waiting_reason"][1].extend(
            f"kube_pod_container_status_waiting_reason"
            f'{{{p},container="normalize",reason="CrashLoopBackOff"}} 0 {start + k * STEP_S}'
            for k in range(steps + 1)
        )
    lines: list[str] = []
    for family, (kind, samples) in families.items():
        lines.append(f"# TYPE {family} {kind}")
        lines.extend(samples)
    return "\n".join(lines) + "\n# EOF\n"


def shipped_measures() -> list[tuple[str, str, timedelta]]:
    """(suite.measure, PromQL, window) of every shipped suite on the metrics source."""
    found = []
    for path in sorted((PROJECT / "suites").glob("*.yaml")):
        suite = yaml.safe_load(path.read_text())
        if suite.get("source") != "metrics" or not isinstance(suite.get("query"), dict):
            continue
        length = timedelta(seconds=promql_seconds(str(suite.get("window", {}).get("length", "1h"))))
        for measure, promql in (suite["query"].get("measures") or {}).items():
            found.append((f"{suite['name']}.{measure}", promql, length))
    # an error budget's burn over three days (the SLO suites build theirs from their spec)
    found.append((
        "slo burn, 72h",
        'sum(rate(normalize_hrv_messages_total{result="error"}[$window])) '
        "/ sum(rate(normalize_hrv_messages_total[$window]))",
        timedelta(hours=72),
    ))  # fmt: skip
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--guards", action="store_true", help="the source's questions against each measure")
    args = parser.parse_args()
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        raise SystemExit("needs Debian's prometheus package (prometheus and promtool)")
    end = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data.om").write_text(history(args.pods, args.days, end))
        subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics",
             str(root / "data.om"), str(root / "tsdb")],
            check=True, capture_output=True,
        )  # fmt: skip
        (root / "data.om").unlink()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        (root / "prometheus.yml").write_text("global: {}\n")
        server = subprocess.Popen(
            ["prometheus", f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=100y"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        BASE.append(base)
        try:
            with httpx.Client(timeout=60) as client:
                for _ in range(300):
                    try:
                        if client.get(f"{base}/-/ready").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.1)
                series = args.pods * (8 + 1 + 2 * (len(BUCKETS) + 2))
                print(
                    f"{datetime.now(UTC):%Y-%m-%d} · {series} series, {args.days} days at {STEP_S}s "
                    f"({series * (args.days * 86_400 // STEP_S + 1):,} samples), median of {args.repeat}"
                )
                if not args.guards:
                    print(f"  {'measure':58} {'as written':>11} {'from zero':>11} {'ratio':>7}  same answer")

                peaks: list[tuple[str, int, int]] = []

                def peak(promql: str) -> int:
                    """The most samples the query held at once (query.max-samples bounds it)."""
                    params = {"query": promql, "time": f"{end.timestamp():.3f}", "stats": "all"}
                    stats = client.get(f"{base}/api/v1/query", params=params).json()["data"].get("stats", {})
                    return int(stats.get("samples", {}).get("peakSamples", -1))

                def ask(promql: str) -> tuple[float, list[tuple[str, float]]]:
                    times, answer = [], []
                    for _ in range(args.repeat):
                        began = time.perf_counter()
                        body = client.get(
                            f"{base}/api/v1/query", params={"query": promql, "time": f"{end.timestamp():.3f}"}
                        ).json()
                        times.append(time.perf_counter() - began)
                        if body.get("status") != "success":
                            raise SystemExit(f"{promql}: {body}")
                        answer = sorted(
                            (str(sorted(r["metric"].items())), float(r["value"][1]))
                            for r in body["data"]["result"]
                        )
                    return statistics.median(times), answer

                if args.guards:
                    guards(args, end, ask)
                    return
                ratios = []
                for name, promql, length in shipped_measures():
                    rendered = render_promql(
                        promql, {"window_start": end - length, "window_end": end, "as_of": end}
                    )
                    before, plain = ask(rendered)
                    after, zeroed = ask(counted_from_zero(rendered))
                    same = len(plain) == len(zeroed) and all(
                        a[0] == b[0] and math.isclose(a[1], b[1], rel_tol=1e-9, abs_tol=1e-12)
                        for a, b in zip(plain, zeroed, strict=True)
                    )
                    ratios.append(after / before)
                    peaks.append((name, peak(rendered), peak(counted_from_zero(rendered))))
                    print(
                        f"  {name[:58]:58} {before * 1000:9.1f}ms {after * 1000:9.1f}ms "
                        f"{after / before:6.2f}x  {same}"
                    )
                print(f"  geometric mean of the ratios: {statistics.geometric_mean(ratios):.2f}x")
                name, before_peak, after_peak = max(peaks, key=lambda p: p[2])
                print(
                    f"  most samples held at once (query.max-samples bounds it): {name} "
                    f"{before_peak:,} as written, {after_peak:,} from zero"
                )
        finally:
            server.terminate()
            server.wait(timeout=30)


def guards(args: argparse.Namespace, end: datetime, ask: object) -> None:
    """Each measure as sent against the questions asked before it is judged (median times)."""
    assert callable(ask)
    print(f"  {'measure':58} {'as sent':>11} {'questions':>11} {'ratio':>7}")
    ratios, sent_total, asked_total = [], 0.0, 0.0
    for name, promql, length in shipped_measures():
        parameters = {"window_start": end - length, "window_end": end, "as_of": end}
        rendered = render_promql(promql, parameters)
        sent, _ = ask(counted_from_zero(rendered))
        asked = 0.0
        earliest = reads_from(end - length, end, [rendered])
        if earliest is not None:  # the coverage question, at the earliest time read (end: not asked again)
            asked += ask_at(args, SCRAPED, earliest)
        seconds = max(1, round(length.total_seconds()))
        for metric in sorted(fallback_metrics(promql)):
            asked += ask(
                f"count by (job) (last_over_time({metric}[{seconds}s]))"
                f" and on(job) count by (job) (last_over_time(up[{seconds}s]))"
            )[0]
        ratios.append(asked / sent)
        sent_total, asked_total = sent_total + sent, asked_total + asked
        print(f"  {name[:58]:58} {sent * 1000:9.1f}ms {asked * 1000:9.1f}ms {asked / sent:6.2f}x")
    print(f"  all measures: {sent_total * 1000:.0f} ms as sent, {asked_total * 1000:.0f} ms of questions "
          f"({asked_total / sent_total:.2f}x)")


def ask_at(args: argparse.Namespace, promql: str, at: datetime) -> float:
    """The median time of ``promql`` at ``at`` (the bench's server, as ``ask`` does at the end)."""
    times = []
    with httpx.Client(timeout=60) as client:
        for _ in range(args.repeat):
            began = time.perf_counter()
            params = {"query": promql, "time": f"{at.timestamp():.3f}"}
            body = client.get(f"{BASE[0]}/api/v1/query", params=params)
            times.append(time.perf_counter() - began)
            if body.json().get("status") != "success":
                raise SystemExit(f"{promql}: {body.text}")
    return statistics.median(times)


BASE: list[str] = []


if __name__ == "__main__":
    main()
