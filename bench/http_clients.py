"""Benchmark: what an HTTP source's client costs before it sends anything.

    .venv/bin/python bench/http_clients.py [--clients 200] [--repeat 5]

Every scrape, Prometheus query source, probe request, JUnit listing and notification builds
an httpx client. Side by side, in CPU time per client (median of --repeat runs):

- the baseline: ``httpx.AsyncClient()`` as the sources built it, which loads the CA bundle
  into a new TLS context every time;
- ``httpx.AsyncClient(verify=verified_tls())``: the process's one context
  (``gatecheck.sources._http.verified_tls``), loaded once;
- and one whole Prometheus source as gatecheck builds it (its client included).

No request is sent: the figure is the set-up alone, paid once per source per evaluation.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path


def per_client(build: Callable[[], object], clients: int, repeat: int) -> float:
    """Median CPU seconds per ``build()`` over ``repeat`` runs of ``clients`` builds."""
    runs = []
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(clients):
            build()
        runs.append((time.process_time() - started) / clients)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import httpx

    from gatecheck.sources._http import verified_tls
    from gatecheck.sources.prometheus.api import PrometheusSource
    from gatecheck.sources.prometheus.promql import PrometheusSourceConfig

    verified_tls()  # loaded once, as the first source of a process does
    config = PrometheusSourceConfig(type="prometheus", url="https://prometheus.example:9090", timeout="5s")
    each = {
        "httpx.AsyncClient() (a new TLS context)": lambda: httpx.AsyncClient(),
        "httpx.AsyncClient(verify=verified_tls())": lambda: httpx.AsyncClient(verify=verified_tls()),
        "PrometheusSource (as gatecheck builds it)": lambda: PrometheusSource("metrics", config, Path(".")),
    }
    baseline = None
    print(f"{time.strftime('%Y-%m-%d')} · CPU per client, median of {args.repeat} × {args.clients}")
    for name, build in each.items():
        seconds = per_client(build, args.clients, args.repeat)
        baseline = baseline or seconds
        print(f"  {name:<45} {seconds * 1000:8.3f} ms   baseline / this: {baseline / seconds:6.1f}x")


if __name__ == "__main__":
    main()
