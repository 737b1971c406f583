"""Load: N concurrent clients read /metrics and the API while the service evaluates.

    .venv/bin/python bench/load.py [--clients 50] [--seconds 60] [--interval 1s] [--url URL]
    .venv/bin/python bench/load.py --open-loop [--rate 1] [--clients 50] [--interval 60s]

Closed loop (default): each client sends its next request when the previous one is
answered (throughput under contention). Open loop (--open-loop): each client sends --rate
requests a second on a fixed schedule whatever the answers do, half of them scraping
/metrics and half reading a phase's verdict, as Prometheus and dashboards do; a latency is
measured from the moment the request was due, so a stall counts in full (no coordinated
omission).

Without --url, starts `gatecheck demo --serve` as its own process (chDB warehouse,
nats-server bus and normalize exposition; every phase evaluated every --interval, so
evaluations run back to back for the whole measurement) and waits until every phase has a
verdict. Then, from this process, --clients concurrent HTTP clients on loopback, each with
its own connection, cycle for --seconds over GET /metrics, /api/v1/phases,
/api/v1/phases/{phase}/verdict, /api/v1/phases/{phase}/history?since=1h, /healthz and
/readyz. Prints requests served, errors, latency percentiles per endpoint and overall, and
the evaluations the service recorded meanwhile. Exit status 1 if any request failed or no
evaluation was recorded during the measurement. With --until-evaluated MAX the closed loop
goes on past --seconds until the service has recorded an evaluation (at most MAX seconds in
all): on a slow machine one round of evaluations can take longer than the measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from common import copy_config, percentile


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def served(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def failed(self) -> int:
        return sum(len(v) for v in self.errors.values())

    async def get(self, http: httpx.AsyncClient, label: str, path: str, since: float) -> None:
        """GET ``path``; its latency counted from ``since`` (time.monotonic), or its error."""
        try:
            response = await http.get(path)
            elapsed = time.monotonic() - since
            if response.status_code != 200:
                self.errors[label].append(f"HTTP {response.status_code}: {response.text[:120]}")
            else:
                self.latencies[label].append(elapsed)
        except httpx.HTTPError as exc:
            self.errors[label].append(f"{type(exc).__name__}: {exc}")


def endpoints(phases: list[str]) -> list[tuple[str, str]]:
    """(label, path) in the order a client cycles through them."""
    paths = [("/metrics", "/metrics"), ("/api/v1/phases", "/api/v1/phases")]
    for phase in phases:
        paths.append(("/api/v1/phases/{p}/verdict", f"/api/v1/phases/{phase}/verdict"))
        paths.append(("/api/v1/phases/{p}/history", f"/api/v1/phases/{phase}/history?since=1h"))
    paths += [("/healthz", "/healthz"), ("/readyz", "/readyz")]
    return paths


async def client(
    base: str, paths: list[tuple[str, str]], offset: int, stop: asyncio.Event, tally: Tally
) -> None:
    # One connection per client (a client of its own), as 50 separate scrapers would have.
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=1)) as http:
        i = offset
        while not stop.is_set():
            label, path = paths[i % len(paths)]
            i += 1
            await tally.get(http, label, path, time.monotonic())


async def evaluated_since(base: str, phases: list[str], start: datetime) -> bool:
    """Whether the service recorded an evaluation of any phase at or after ``start`` (not yet
    known when it does not answer: the caller asks again; the clients count its errors)."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for phase in phases:
            try:
                response = await http.get(f"/api/v1/phases/{phase}/history?since=1h")
            except httpx.HTTPError:
                return False
            if response.status_code == 200 and any(
                datetime.fromisoformat(r["recorded_at"]) >= start for r in response.json()
            ):
                return True
    return False


async def load(
    base: str, phases: list[str], clients: int, seconds: float, until_evaluated: float = 0.0
) -> tuple[Tally, float]:
    """The closed loop for ``seconds``; with ``until_evaluated``, on past them until the service
    has recorded an evaluation since the start, at most ``until_evaluated`` seconds in all (how
    long an evaluation takes depends on the machine, not on what is measured). The tally and
    the seconds it took."""
    tally = Tally()
    paths = endpoints(phases)
    stop = asyncio.Event()
    began, start = time.monotonic(), datetime.now(UTC)

    async def stopper() -> None:
        await asyncio.sleep(seconds)
        while until_evaluated and time.monotonic() - began < until_evaluated:
            if await evaluated_since(base, phases, start):
                break
            await asyncio.sleep(0.5)
        stop.set()

    await asyncio.gather(stopper(), *(client(base, paths, n, stop, tally) for n in range(clients)))
    return tally, time.monotonic() - began


async def scraper(
    http: httpx.AsyncClient, label: str, path: str, start: float, deadline: float, rate: float, tally: Tally
) -> None:
    """One open-loop client: a request every 1/rate s from ``start``, answered or not."""
    due, pending = start, set()
    while due < deadline:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        # Its latency counts from when it was due, not when it was sent.
        task = asyncio.create_task(tally.get(http, label, path, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
        due += 1 / rate
    await asyncio.gather(*pending)


async def open_loop(base: str, phases: list[str], clients: int, seconds: float, rate: float) -> Tally:
    tally = Tally()
    targets = []
    for n in range(clients):
        if n % 2 == 0:
            targets.append(("/metrics", "/metrics"))
        else:
            phase = phases[n % len(phases)]
            targets.append(("/api/v1/phases/{p}/verdict", f"/api/v1/phases/{phase}/verdict"))
    # Every client and its connection exist before the clock starts: setting up 50 clients
    # takes this process seconds, which must not be counted as the service's latency.
    https = [httpx.AsyncClient(base_url=base, timeout=30) for _ in range(clients)]
    try:
        await asyncio.gather(*(http.get("/healthz") for http in https))
        now = time.monotonic() + 0.5
        deadline = now + seconds
        await asyncio.gather(
            *(
                # spread over the first period, as independent scrapers are
                scraper(http, label, path, now + (n / clients) / rate, deadline, rate, tally)
                for n, (http, (label, path)) in enumerate(zip(https, targets, strict=True))
            )
        )
    finally:
        await asyncio.gather(*(http.aclose() for http in https))
    return tally


def evaluations_between(base: str, phases: list[str], start: datetime, end: datetime) -> int:
    count = 0
    for phase in phases:
        records = httpx.get(f"{base}/api/v1/phases/{phase}/history?since=1h", timeout=30).json()
        count += sum(start <= datetime.fromisoformat(r["recorded_at"]) <= end for r in records)
    return count


@contextmanager
def demo_service(interval: str) -> Iterator[str]:
    """`gatecheck demo --serve` in its own process, on a free port, in a temp directory."""
    from gatecheck.demo.bus import free_port

    with tempfile.TemporaryDirectory() as tmp:
        root = copy_config(Path(tmp), interval)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATECHECK_")}
        executable = shutil.which("gatecheck", path=str(Path(sys.executable).parent)) or "gatecheck"
        log = (root / "service.log").open("w")
        process = subprocess.Popen(
            [executable, "demo", "--config", str(root), "--serve", "--listen", f"127.0.0.1:{port}"],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()


def wait_until_evaluated(base: str, timeout: float = 180) -> list[str]:
    """Every phase has a verdict (the first round of evaluations is done); the phases."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            listed = httpx.get(f"{base}/api/v1/phases", timeout=5).json()
            if listed and all(p["verdict"] for p in listed if p["scheduled"]):
                return [p["phase"] for p in listed]
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the service at {base} did not evaluate every phase within {timeout:.0f} s")


def report(tally: Tally, seconds: float, clients: int, evaluations: int, mode: str = "") -> list[str]:
    lines = [
        f"{datetime.now(UTC):%Y-%m-%d} · {clients} concurrent clients{mode} for {seconds:.0f} s on loopback "
        "(a second process), while the service evaluates",
        f"requests served: {tally.served} ({tally.served / seconds:.0f}/s), errors: {tally.failed}",
        f"evaluations recorded during the run: {evaluations}",
        f"{'endpoint':<30} {'requests':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}",
    ]
    every = [x for values in tally.latencies.values() for x in values]
    rows = [*sorted(tally.latencies.items()), ("all", every)]
    for label, values in rows:
        ms = [v * 1000 for v in values]
        lines.append(
            f"{label:<30} {len(ms):>8} {percentile(ms, 0.5):>8.1f} {percentile(ms, 0.9):>8.1f} "
            f"{percentile(ms, 0.99):>8.1f} {max(ms, default=float('nan')):>8.1f}"
        )
    for label, errors in sorted(tally.errors.items()):
        lines.append(f"errors on {label}: {len(errors)}, first: {errors[0]}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--interval", default="1s", help="service.interval of the demo service")
    parser.add_argument("--url", help="an already running service (default: start the demo)")
    parser.add_argument("--open-loop", action="store_true", help="fixed-rate clients (see above)")
    parser.add_argument("--rate", type=float, default=1.0, help="open loop: requests a second per client")
    parser.add_argument(
        "--until-evaluated", type=float, default=0.0, metavar="MAX",
        help="closed loop: go on past --seconds until an evaluation is recorded, at most MAX s in all",
    )  # fmt: skip
    args = parser.parse_args()

    def measure(base: str) -> int:
        phases = wait_until_evaluated(base)
        start = datetime.now(UTC)
        if args.open_loop:
            tally = asyncio.run(open_loop(base, phases, args.clients, args.seconds, args.rate))
            seconds = args.seconds
        else:
            tally, seconds = asyncio.run(load(base, phases, args.clients, args.seconds, args.until_evaluated))
        end = datetime.now(UTC)
        evaluations = evaluations_between(base, phases, start, end)
        mode = f" (open loop, {args.rate:g}/s each, service every {args.interval})" if args.open_loop else ""
        print("\n".join(report(tally, seconds, args.clients, evaluations, mode)), flush=True)
        return 0 if tally.failed == 0 and tally.served > 0 and evaluations > 0 else 1

    if args.url:
        status = measure(args.url.rstrip("/"))
    else:
        with demo_service(args.interval) as base:
            status = measure(base)
    sys.exit(status)


if __name__ == "__main__":
    main()
