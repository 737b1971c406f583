"""gatecheck's windows are gatecheck's clock's. On a host whose clock runs an hour behind its
sources', every window ends an hour early: the last hour's data lies after it, a freshness
check finds the newest row it does see seconds old, and a count misses the last hour's dead
letters. Each source server's clock is read with its answers (PostgreSQL's clock_timestamp(),
Prometheus's Date header, NATS's stream info `ts`, a ClickHouse server's now64()), and a clock
more than MAX_CLOCK_SKEW away makes that source's checks errors, never judged.

The host's clock is put an hour behind with libfaketime, for a gatecheck process only: the
servers (the embedded PostgreSQL, nats-server, Prometheus) keep the machine's. (ClickHouse
here is chDB, inside gatecheck's own process and on its clock: a server's is not tried.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..conftest import PROJECT, faketime

BEHIND = {"FAKETIME_DONT_FAKE_MONOTONIC": "1"}  # timeouts keep measuring real seconds


def test_a_host_clock_an_hour_behind_its_sources_is_never_go(
    config_copy: Path, bus_for, postgres_for, e2e_for
) -> None:
    """The Phase B checks of the bus and the database, GO on the machine's clock: an hour
    behind, each is an error naming the source whose clock disagrees."""
    (config_copy / "gates" / "clocks.yaml").write_text(
        "phase: clocks\nenvironment: staging\nchecks:\n"
        + "".join(f"  - suite: {suite}\n" for suite in ("stream_topology", "soak_criteria", "db_writes", "hrv_row_quality"))
    )
    env = {
        **os.environ, **BEHIND,
        "GATECHECK_NATS_URL": bus_for("healthy"), "GATECHECK_NATS_PRODUCTION_URL": bus_for("healthy"),
        "GATECHECK_POSTGRES_URL": postgres_for("healthy", live=True),
        "GATECHECK_E2E_REPORTS": e2e_for("healthy", live=True),
    }  # fmt: skip
    command = [
        sys.executable, "-m", "gatecheck.cli", "run", "--phase", "clocks", "--config", str(config_copy),
        "--no-record", "--format", "json",
    ]  # fmt: skip
    on_time = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert on_time.returncode == 0, on_time.stdout[-2000:] + on_time.stderr  # GO on the machine's clock
    behind = subprocess.run([*faketime(), *command], env=env, capture_output=True, text=True, timeout=120)
    assert behind.returncode == 3, behind.stdout[-2000:] + behind.stderr
    document = json.loads(behind.stdout)
    assert document["verdict"] == "inconclusive"
    reasons = {c["suite"]: (c["outcome"], c["reason"] or "") for c in document["checks"]}
    where = {"stream_topology": "NATS at 127.0.0.1:", "soak_criteria": "NATS at 127.0.0.1:",
             "db_writes": "PostgreSQL", "hrv_row_quality": "PostgreSQL"}  # fmt: skip
    for suite, source in where.items():
        outcome, reason = reasons[suite]
        assert outcome == "error", (suite, reason)
        assert source in reason and "'s clock reads " in reason, (suite, reason)
        assert "1h ahead of gatecheck's" in reason and "more than the 2m two clocks may differ" in reason, reason


def test_a_prometheus_an_hour_ahead_of_gatecheck_is_an_error(prometheus: str) -> None:
    script = (
        "import asyncio, sys\n"
        "from datetime import UTC, datetime, timedelta\n"
        "from pathlib import Path\n"
        "from gatecheck.errors import QueryError\n"
        "from gatecheck.sources.prometheus.api import PrometheusSource\n"
        "from gatecheck.sources.prometheus.promql import PrometheusSourceConfig\n"
        "source = PrometheusSource('metrics', PrometheusSourceConfig(type='prometheus', url=sys.argv[1]), Path('.'))\n"
        "end = datetime.now(UTC)\n"
        "async def ask():\n"
        "    try:\n"
        "        await source.query('vector(1)', {'window_start': end - timedelta(minutes=5), 'window_end': end})\n"
        "        print('answered')\n"
        "    except QueryError as exc:\n"
        "        print(exc)\n"
        "    finally:\n"
        "        await source.close()\n"
        "asyncio.run(ask())\n"
    )
    env = {**os.environ, **BEHIND}
    on_time = subprocess.run([sys.executable, "-c", script, prometheus], env=env, capture_output=True, text=True, timeout=60)
    assert on_time.stdout.strip() == "answered", on_time.stdout + on_time.stderr
    behind = subprocess.run(
        [*faketime(), sys.executable, "-c", script, prometheus], env=env, capture_output=True, text=True, timeout=60
    )
    said = behind.stdout.strip()
    assert said.startswith(f"Prometheus at {prometheus}'s clock reads "), said + behind.stderr
    assert "1h ahead of gatecheck's" in said, said


def test_check_sources_names_a_server_whose_clock_disagrees(
    tmp_path: Path, bus_for, postgres_for, e2e_for, prometheus: str
) -> None:
    """`check-sources` (what an operator runs before a gate) says it first: each server whose
    clock is an hour from gatecheck's is a problem line; on the machine's clock, none."""
    env = {
        **os.environ, **BEHIND,
        "GATECHECK_CLICKHOUSE_URL": f"chdb://{tmp_path / 'none'}",  # not judged here
        "GATECHECK_NATS_URL": bus_for("healthy"), "GATECHECK_NATS_PRODUCTION_URL": bus_for("healthy"),
        "GATECHECK_POSTGRES_URL": postgres_for("healthy", live=True),
        "GATECHECK_E2E_REPORTS": e2e_for("healthy", live=True),
        "GATECHECK_PROMETHEUS_URL": prometheus,
    }  # fmt: skip
    command = [sys.executable, "-m", "gatecheck.cli", "check-sources", "--config", str(PROJECT), "--format", "json"]

    def clocks(prefix: list[str]) -> dict[str, list[str]]:
        done = subprocess.run([*prefix, *command], env=env, capture_output=True, text=True, timeout=120)
        listed = json.loads(done.stdout)
        return {
            f"{s['environment']}/{s['source']}": [p for p in s["problems"] if "'s clock reads " in p]
            for s in listed
            if s["source"] in ("bus", "database", "metrics")
        }

    assert all(found == [] for found in clocks([]).values()), clocks([])
    behind = clocks(faketime())
    for source in ("staging/bus", "staging/database", "staging/metrics"):
        (said,) = behind[source]
        assert "1h ahead of gatecheck's" in said, (source, said)
