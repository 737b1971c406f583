"""What the demo waits for before production's bus can take streams: its three-node JetStream
cluster started on a new store (what `gatecheck demo` does since 2026-12-07) against one started
on the store an earlier run's cluster left (the baseline: each demo run in the same directory
before). Wall seconds from launching the nodes until a stream with 3 replicas can be placed,
median of N alternating runs.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from gatecheck.demo.bus import NatsCluster


def started(store: Path) -> float:
    """Seconds until the cluster on ``store`` can place a 3-replica stream (then stopped)."""
    began = time.perf_counter()
    cluster = NatsCluster(store).start()
    took = time.perf_counter() - began
    cluster.stop()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="of each (default 3)")
    args = parser.parse_args()
    new, kept = [], []
    with tempfile.TemporaryDirectory() as directory:
        store = Path(directory) / "nats-cluster"
        started(store)  # an earlier run's cluster: its JetStream state stays in the store
        for _ in range(args.runs):
            kept.append(started(store))  # the baseline: started again on that state
            shutil.rmtree(store)  # what the demo does now
            new.append(started(store))
    baseline, this = statistics.median(kept), statistics.median(new)
    print(f"{datetime.now(UTC):%Y-%m-%d} · the demo's 3-node JetStream cluster, ready for a 3-replica stream")
    print(f"  {'on the store an earlier run left (baseline)':46s} {baseline:6.2f} s   runs {listed(kept)}")
    print(f"  {'on a new store (the demo now)':46s} {this:6.2f} s   runs {listed(new)}")
    print(f"  baseline / this: {baseline / this:.1f}x")


def listed(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
