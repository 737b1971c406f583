"""Throughput of the service's answers, measured by wrk (a non-Python load generator: Debian's
`wrk` package), /healthz as the reference.

    .venv/bin/python bench/throughput.py [--seconds 10] [--connections 50] [--interval 1s]

Starts `gatecheck demo --serve` (every phase evaluated every --interval, so evaluations run
while wrk measures) unless --url names a running service, waits for every phase's verdict,
then runs `wrk -t2 -c50 -dNs --latency` against /healthz, /metrics and one verdict, and prints
requests a second, p50 / p99 latency and each endpoint's throughput as a share of /healthz's.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from datetime import UTC, datetime

from load import demo_service, wait_until_evaluated


def wrk(url: str, seconds: int, connections: int) -> tuple[float, str, str]:
    done = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)", done.stdout, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", done.stdout, re.M)
    return rate, p50.group(1) if p50 else "?", p99.group(1) if p99 else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--interval", default="1s")
    parser.add_argument("--url")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")

    def measure(base: str) -> None:
        phases = wait_until_evaluated(base)
        paths = ["/healthz", "/metrics", f"/api/v1/phases/{phases[2]}/verdict"]
        print(
            f"{datetime.now(UTC):%Y-%m-%d} · wrk -t2 -c{args.connections} -d{args.seconds}s per endpoint, "
            f"service evaluating every phase every {args.interval}"
        )
        print(f"{'endpoint':<40} {'req/s':>9} {'p50':>9} {'p99':>9} {'of /healthz':>12}")
        reference = None
        for path in paths:
            rate, p50, p99 = wrk(base + path, args.seconds, args.connections)
            reference = reference or rate
            print(f"{path:<40} {rate:>9.0f} {p50:>9} {p99:>9} {rate / reference:>11.0%}")

    if args.url:
        measure(args.url.rstrip("/"))
    else:
        with demo_service(args.interval) as base:
            measure(base)


if __name__ == "__main__":
    main()
