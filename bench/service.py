"""Benchmark: the service evaluating every phase every second against the demo environment.

    .venv/bin/python bench/service.py [--seconds 300]

Builds the demo warehouse (chDB), bus (nats-server) and normalize exposition in a temp
directory, runs `gatecheck serve` in-process with `service.interval: 1s` for --seconds while
a client scrapes /metrics once a second, then prints evaluations done, p50/p99 evaluation
latency (from the ledger), /metrics scrape latency, and resident memory at start and end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from common import copy_config, percentile

from gatecheck.config import load_project
from gatecheck.demo.bus import NatsServer, free_port, prepare_bus
from gatecheck.demo.metrics import normalize_registry, serve_registry
from gatecheck.demo.reference import build_reference
from gatecheck.ledger import SqliteLedger
from gatecheck.service.core import Service
from gatecheck.service.server import make_server, run_service
from gatecheck.sources.clickhouse.connection import ClickHouse, Target


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = copy_config(Path(tmp) / "config", interval="1s")
        warehouse = root / ".gatecheck" / "warehouse"
        with (
            ClickHouse() as clickhouse,
            NatsServer(root / ".gatecheck" / "nats") as bus,
        ):
            connection = clickhouse.connect(Target.parse(f"chdb://{warehouse}", root), create=True)
            build_reference(connection, "default", datetime.now(UTC).replace(microsecond=0))
            prepare_bus(bus.url, "healthy")
            metrics_port = free_port()
            exposition = serve_registry(normalize_registry("healthy"), metrics_port)
            environ = {
                "GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}",
                "GATECHECK_NATS_URL": bus.url,
                "GATECHECK_PROMETHEUS_URL": f"scrape+http://127.0.0.1:{metrics_port}/metrics",
                "GATECHECK_HISTORY_URL": f"sqlite:///{root / 'history.db'}",
            }
            project = load_project(root, environ=environ)
            ledger = SqliteLedger(root / "history.db")
            phases = [g.phase for g in project.chain()]
            service = Service(project, ledger, phases)
            port = free_port()
            server = make_server(service, "127.0.0.1", port)
            thread = threading.Thread(target=lambda: asyncio.run(run_service(service, server)), daemon=True)
            rss_start = rss_mib()
            thread.start()
            base = f"http://127.0.0.1:{port}"
            while True:  # the service listens once Great Expectations is imported
                try:
                    httpx.get(f"{base}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            scrape_times: list[float] = []
            errors = 0
            deadline = time.monotonic() + args.seconds
            rss_after_warmup = None
            with httpx.Client(timeout=10) as client:
                while time.monotonic() < deadline:
                    try:
                        started = time.perf_counter()
                        response = client.get(f"{base}/metrics")
                        scrape_times.append(time.perf_counter() - started)
                        errors += response.status_code != 200
                    except httpx.HTTPError:
                        errors += 1
                    if rss_after_warmup is None and time.monotonic() > deadline - args.seconds + 30:
                        rss_after_warmup = rss_mib()
                    time.sleep(1)
            rss_end = rss_mib()
            server.should_exit = True
            thread.join(timeout=30)
            exposition.shutdown()  # type: ignore[attr-defined]
            durations = [r.duration_s for phase in phases for r in ledger.history(phase)]
            today = f"{datetime.now(UTC):%Y-%m-%d}"
            print(f"{today} · {len(phases)} phases every 1 s for {args.seconds} s (demo environment)")
            print(f"evaluations recorded: {len(durations)}  ({len(durations) / args.seconds:.1f}/s)")
            print(
                f"evaluation latency: p50 {percentile(durations, 0.5) * 1000:.0f} ms, "
                f"p99 {percentile(durations, 0.99) * 1000:.0f} ms"
            )
            p50, p99 = statistics.median(scrape_times) * 1000, percentile(scrape_times, 0.99) * 1000
            scrapes = f"{len(scrape_times)} scrapes, {errors} errors"
            print(f"/metrics scrape: {scrapes}, p50 {p50:.1f} ms, p99 {p99:.1f} ms")
            warm = f", after 30 s warm-up {rss_after_warmup:.0f} MiB" if rss_after_warmup else ""
            print(f"resident memory: start {rss_start:.0f} MiB{warm}, end {rss_end:.0f} MiB")


if __name__ == "__main__":
    main()
