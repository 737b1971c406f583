"""`gatecheck check-sources`: real sources (chDB, nats-server, Prometheus, an exposition)."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gatecheck.cli import app
from gatecheck.demo.bus import free_port
from gatecheck.sources.sqltext import column_problems, tables_and_columns, time_filtered_columns

from ..conftest import PROJECT

runner = CliRunner()

#: The smoke probe's ingest service (the demo's, on a loopback port), for the staging checks.
INGEST: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def ingest_service() -> Iterator[str]:
    from gatecheck.demo.ingest import IngestService

    service = IngestService("postgresql://unused").start()  # check-sources never posts
    INGEST["url"] = service.url
    yield service.url
    service.stop()


def environment(
    warehouse: Path, bus: str, metrics: str, postgres: str, e2e: str = "file:///nonexistent", database: str = "healthy"
) -> dict[str, str]:
    return {
        "GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={database}",
        "GATECHECK_NATS_URL": bus, "GATECHECK_NATS_PRODUCTION_URL": bus,
        "GATECHECK_PROMETHEUS_URL": metrics,
        "GATECHECK_POSTGRES_URL": postgres,
        "GATECHECK_E2E_REPORTS": e2e,
        "GATECHECK_INGEST_URL": INGEST.get("url", "http://127.0.0.1:4101"),
    }


def test_every_source_ready_is_exit_0(warehouse: Path, bus_for, metrics_url: str, postgres_for, e2e_for) -> None:
    env = environment(warehouse, bus_for("healthy"), metrics_url, postgres_for(), e2e_for())
    result = runner.invoke(app, ["check-sources", "--config", str(PROJECT), "-e", "staging"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 6, lines
    by_source = {line.split()[1]: line for line in lines}
    assert "answered 404 (no probe sent)" in by_source["staging/ingest"]  # a GET of its URL, never a probe
    assert by_source["staging/warehouse"].startswith("ok ")
    assert "ClickHouse 26." in by_source["staging/warehouse"]
    # unmatched_edges, freshness_lag, rollup_parity, unattributed_sessions: 4 tables.
    assert "checked 5 tables, " in by_source["staging/warehouse"]
    assert "NATS 2." in by_source["staging/bus"]
    assert "checked 4 streams, 1 consumer named" in by_source["staging/bus"]
    assert "an exposition (no server)" in by_source["staging/metrics"]
    assert "PostgreSQL 18." in by_source["staging/database"]
    assert "checked 1 table, " in by_source["staging/database"]  # hrv_readings
    assert "checked 6 reports" in by_source["staging/e2e"]


def test_json_names_versions_latency_and_the_suites(warehouse: Path, bus_for, prometheus: str, postgres_for) -> None:
    env = environment(warehouse, bus_for("healthy"), prometheus, postgres_for())
    result = runner.invoke(
        app, ["check-sources", "--config", str(PROJECT), "-e", "production", "--format", "json"], env=env
    )
    assert result.exit_code == 0, result.output
    documents = {d["source"]: d for d in json.loads(result.stdout)}
    assert documents["metrics"]["version"].startswith("Prometheus ")  # the real server's build info
    assert documents["metrics"]["latency_ms"] > 0
    assert "rollback_triggers" in documents["metrics"]["suites"]
    assert documents["bus"]["problems"] == []
    assert {d["environment"] for d in documents.values()} == {"production"}
    # every metric the production suites name has series on this server (the series API)
    assert documents["metrics"]["problems"] == []
    assert documents["metrics"]["checked"].startswith("reachable, ") and " metrics the suites use" in documents["metrics"]["checked"]


def test_a_metric_the_suites_name_but_the_server_lacks_is_a_problem(
    warehouse: Path, bus_for, prometheus: str, postgres_for, config_copy: Path
) -> None:
    """"checked reachable" said nothing of the metrics: a renamed one read nothing at run time."""
    path = config_copy / "suites" / "rollback_triggers.yaml"
    suite = yaml.safe_load(path.read_text())
    suite["query"]["measures"] = {
        name: promql.replace("dlq_messages_total", "dlq_mesages_total") for name, promql in suite["query"]["measures"].items()
    }
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    env = environment(warehouse, bus_for("healthy"), prometheus, postgres_for())
    result = runner.invoke(app, ["check-sources", "--config", str(config_copy), "-e", "production"], env=env)
    assert result.exit_code == 3, result.output
    problems = [line for line in result.stdout.splitlines() if line.startswith("problem: production/metrics")]
    assert problems == [
        "problem: production/metrics: metric dlq_mesages_total has no series on this server (used by rollback_triggers)"
    ]


@pytest.mark.parametrize(
    ("promql", "names"),
    [
        ('sum(rate(normalize_hrv_messages_total{result="success"}[$window])) / sum(rate(normalize_hrv_messages_total[$window]))',
         {"normalize_hrv_messages_total"}),
        ("histogram_quantile(0.95, sum by (le) (rate(normalize_hrv_processing_seconds_bucket[5m]))) * 1000",
         {"normalize_hrv_processing_seconds_bucket"}),
        ("max_over_time(dlq_messages_total[10m:1m]) offset 5m", {"dlq_messages_total"}),
        ('count({__name__=~"a|b"})', set()),
        ("up == bool 1 and on(job) x:y:z", {"up", "x:y:z"}),
        ('label_replace(up, "a", "$1", "job", "(.*)")', {"up"}),
    ],
)  # fmt: skip
def test_the_metric_names_a_promql_expression_selects(promql: str, names: set[str]) -> None:
    from gatecheck.sources.prometheus.api import metric_names

    assert metric_names(promql) == names


def test_a_missing_table_and_column_are_named(
    warehouse: Path, bus_for, metrics_url: str, config_copy: Path, postgres_for, e2e_for
) -> None:
    path = config_copy / "suites" / "unmatched_edges.yaml"
    suite = yaml.safe_load(path.read_text())
    suite["query"] = suite["query"].replace("FROM lifecycle_edges", "FROM lifecycle_edgez")
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    path = config_copy / "suites" / "unattributed_sessions.yaml"
    suite = yaml.safe_load(path.read_text())
    suite["query"] = suite["query"].replace("session_start_ts >=", "session_start_tz >=")
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    path = config_copy / "suites" / "db_writes.yaml"
    suite = yaml.safe_load(path.read_text())
    suite["query"] = suite["query"].replace("max(created_at)", "max(written_at)")
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    env = environment(warehouse, bus_for("healthy"), metrics_url, postgres_for(), e2e_for())
    result = runner.invoke(app, ["check-sources", "--config", str(config_copy), "-e", "staging"], env=env)
    assert result.exit_code == 3, result.output
    problems = [line for line in result.stdout.splitlines() if line.startswith("problem:")]
    assert problems == [
        "problem: staging/warehouse: table healthy.lifecycle_edgez does not exist (read by unmatched_edges)",
        "problem: staging/warehouse: column session_start_tz is not in healthy.session_facts "
        "(used by unattributed_sessions)",
        "problem: staging/database: column written_at is not in public.hrv_readings (used by db_writes)",
    ]
    assert result.stdout.splitlines()[0].startswith("problem ")


def test_a_missing_stream_and_an_unreachable_source(
    warehouse: Path, bus_for, metrics_url: str, postgres_for, e2e_for
) -> None:
    env = environment(warehouse, bus_for("missing-stream"), metrics_url, postgres_for(), e2e_for())
    result = runner.invoke(app, ["check-sources", "--config", str(PROJECT), "-e", "staging"], env=env)
    assert result.exit_code == 3
    problems = [line for line in result.stdout.splitlines() if line.startswith("problem:")]
    assert problems == ["problem: staging/bus: stream AA_DLQ does not exist (named by soak_criteria, stream_topology)"]
    down = environment(warehouse, f"nats://127.0.0.1:{free_port()}", metrics_url, postgres_for(), e2e_for())
    result = runner.invoke(app, ["check-sources", "--config", str(PROJECT), "-e", "staging"], env=down)
    assert result.exit_code == 3
    assert any(line.startswith("unreachable  staging/bus ") for line in result.stdout.splitlines())
    assert any(
        re.fullmatch(r"problem: staging/bus: cannot reach NATS at 127\.0\.0\.1:\d+: connection refused", line)
        for line in result.stdout.splitlines()
    ), result.stdout


def test_an_unknown_environment_is_a_usage_error() -> None:
    result = runner.invoke(app, ["check-sources", "--config", str(PROJECT), "-e", "qa"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "gatecheck: error: --environment: unknown environment 'qa' (known: staging, production)"
    )


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT a, count() AS n FROM t WHERE ts >= {s:DateTime} GROUP BY a", {("db", "t"): {"a", "ts"}}),
        # an alias is not a column; a column named like another scope's alias still is
        ("SELECT x FROM (SELECT toStartOfHour(ts) AS x FROM t GROUP BY x) WHERE x > 1", {("db", "t"): {"ts"}}),
        # WITH names and lambda arguments are the query's own
        ("WITH {a:DateTime} AS cut SELECT arrayMap(v -> v + 1, vals) AS m FROM t WHERE ts < cut",
         {("db", "t"): {"vals", "ts"}}),
        # qualified columns go to their table; a database-qualified table keeps its database
        ("SELECT l.k, r.v FROM t AS l INNER JOIN other.u AS r ON l.k = r.k",
         {("db", "t"): {"k"}, ("other", "u"): {"k", "v"}}),
        ("SELECT count() FROM t", {("db", "t"): set()}),
    ],
)  # fmt: skip
def test_tables_and_columns_a_query_reads(sql: str, expected: dict[tuple[str, str], set[str]]) -> None:
    assert tables_and_columns(sql, "db") == expected


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # both bounds; a condition without a time parameter is not the window's
        ("SELECT count() FROM t WHERE ts >= {window_start:DateTime64(3)} AND ts < {window_end:DateTime64(3)} "
         "AND kind = 'a'", {("db", "t"): {"ts"}}),
        # through a WITH name, an offset and BETWEEN; each scope's own table
        ("WITH {as_of:DateTime64(3)} AS now SELECT 1 FROM t WHERE ingest_ts > now - INTERVAL 1 DAY "
         "UNION ALL SELECT 2 FROM u WHERE hour BETWEEN {window_start:DateTime64(3)} AND now",
         {("db", "t"): {"ingest_ts"}, ("db", "u"): {"hour"}}),
        # a parameter that is not a time one bounds nothing; a table read without a window
        ("SELECT count() FROM t WHERE lag > {lag_max:Float64}", {("db", "t"): set()}),
        # a join: a bare column's table is not known, so nothing is claimed
        ("SELECT count() FROM t JOIN u USING k WHERE ts >= {window_start:DateTime64(3)}",
         {("db", "t"): set(), ("db", "u"): set()}),
    ],
)  # fmt: skip
def test_the_columns_a_query_bounds_by_its_window(
    sql: str, expected: dict[tuple[str, str], set[str]]
) -> None:
    assert time_filtered_columns(sql, "db") == expected


def test_the_shipped_suites_read_only_what_the_reference_schema_has() -> None:
    """No false alarm on the reference warehouse: every column found is in the schema."""
    from gatecheck.demo.reference import SCHEMA

    schema_text = "\n".join(SCHEMA)
    for path in sorted((PROJECT / "suites").glob("*.yaml")):
        suite = yaml.safe_load(path.read_text())
        paired = suite.get("compare") or suite.get("reconcile")
        queries = [suite] if paired is None else list(paired["sides"].values())
        for (_, table), columns in (
            found
            for one in queries
            if one["source"] == "warehouse"
            for found in tables_and_columns(one["query"], "default").items()
        ):
            assert f".{table} (" in schema_text, (path.name, table)
            for column in columns:
                assert f" {column} " in schema_text or f"({column} " in schema_text or f"\n      {column} " in schema_text, (path.name, column)
    assert column_problems({("d", "t"): {"c": {"s"}}}, {("d", "t"): {"s"}}, {("d", "t"): {"c"}}) == []


@pytest.mark.parametrize(
    ("command", "spinner", "report"),
    [
        (["check-sources"], "checking sources: waiting on staging/warehouse", "unreachable  staging/warehouse"),
        (["run", "--phase", "release", "--no-record"], "evaluating release: waiting on warehouse", "INCONCLUSIVE"),
    ],
)
def test_a_slow_source_shows_a_spinner_on_a_terminal_only(
    tmp_path: Path, command: list[str], spinner: str, report: str
) -> None:
    """A ClickHouse server that accepts and never answers: on a terminal the spinner names the
    source while it waits; through a pipe, only the report."""
    with _silent_server() as port:
        _spinner_case(tmp_path, port, command, spinner, report)


def _spinner_case(tmp_path: Path, port: int, command: list[str], spinner: str, report: str) -> None:
    root = tmp_path / "p"
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    project = yaml.safe_load((root / "gatecheck.yaml").read_text())
    project["environments"]["staging"]["sources"]["warehouse"] = {
        "type": "clickhouse", "url": f"clickhouse://127.0.0.1:{port}/default", "timeout": "1s"
    }  # fmt: skip
    (root / "gatecheck.yaml").write_text(yaml.safe_dump(project))
    gatecheck = shutil.which("gatecheck", path=str(Path(sys.executable).parent))
    assert gatecheck
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECHECK_")}
    env.update(TERM="xterm", COLUMNS="120")
    main, secondary = pty.openpty()
    process = subprocess.Popen(
        [gatecheck, *command, "--config", str(root)], stdin=secondary, stdout=secondary,
        stderr=secondary, env=env, cwd=tmp_path,
    )  # fmt: skip
    os.close(secondary)
    seen = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    process.wait(timeout=30)
    os.close(main)
    text = seen.decode(errors="replace")
    assert spinner in text, text
    assert report in text
    if command[0] == "run":
        return  # the same spinner as check-sources (progress.Waiting.shown): one pipe test suffices
    piped = subprocess.run(
        [gatecheck, *command, "--config", str(root)], capture_output=True, text=True, env=env, cwd=tmp_path,
        timeout=30,
    )  # fmt: skip
    assert piped.returncode == 3
    assert "waiting on" not in piped.stdout + piped.stderr
    assert report in piped.stdout


@contextlib.contextmanager
def _silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers; on exit the listener, the thread
    and every accepted connection are closed (the thread is joined first: a connection it
    accepts while closing is closed too, never left to the garbage collector)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []

    def hold() -> None:  # accept, never answer; stop when the listener closes
        with contextlib.suppress(OSError):
            while True:
                held.append(listener.accept()[0])

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listener.close()
        thread.join(timeout=10)
        for connection in held:
            connection.close()


def test_a_suite_whose_sql_cannot_be_parsed_is_one_problem_line_of_the_probe() -> None:
    """check-sources never crashes on a suite's SQL (sqlglot's traceback and "internal error"
    before): the probe says which suite and where, beside the suites it could read."""
    from types import SimpleNamespace

    from gatecheck.sources.sqltext import ColumnsUsed

    broken = SimpleNamespace(name="broken", query="SELECT count() AS n FROM t WHERE (")
    fine = SimpleNamespace(name="fine", query="SELECT count() AS n FROM t")
    used = ColumnsUsed.of([broken, fine], "db")
    probe = used.probe("ClickHouse 25.1", 1.0, {("db", "t"): {"n"}})
    (problem,) = probe.problems
    assert problem.startswith("suite broken: SQL syntax error at line 1, column 34 of the query")
    assert used.readers == {("db", "t"): {"fine"}}


def test_a_window_that_prunes_nothing_is_named_with_what_to_do(
    warehouse: Path, unprunable: str, bus_for, metrics_url: str, postgres_for, e2e_for
) -> None:
    """On the schema before partitions and skip indexes, every suite bounding a column that
    is in no key or index reads whole tables: one line each, naming the column. The shipped
    schema (the healthy database: exit 0 above) prunes every suite's window."""
    env = environment(
        warehouse, bus_for("healthy"), metrics_url, postgres_for(), e2e_for(), database=unprunable
    )
    result = runner.invoke(app, ["check-sources", "--config", str(PROJECT), "-e", "staging"], env=env)
    assert result.exit_code == 3, result.output
    problems = sorted(line for line in result.stdout.splitlines() if line.startswith("problem: "))
    assert problems == [
        "problem: staging/warehouse: freshness_lag reads all 120k rows of stream_trace_events for a 1h window "
        "(ingest_ts is not in its sort key, partition or a skip index)",
        "problem: staging/warehouse: freshness_lag reads all 30k rows of session_facts for a 1h window "
        "(ingest_ts is not in its sort key, partition or a skip index)",
        "problem: staging/warehouse: freshness_lag reads all 90k rows of lifecycle_edges for a 1h window "
        "(ingest_ts is not in its sort key, partition or a skip index)",
        "problem: staging/warehouse: rollup_parity reads all 30k rows of session_facts for a 6h window "
        "(session_start_ts is not in its sort key, partition or a skip index)",
        "problem: staging/warehouse: rollup_reconcile.facts reads all 30k rows of session_facts for a 6h "
        "window (session_start_ts is not in its sort key, partition or a skip index)",
        "problem: staging/warehouse: unattributed_sessions reads all 30k rows of session_facts for a 1h "
        "window (session_start_ts is not in its sort key, partition or a skip index)",
    ], result.stdout
    assert result.stdout.splitlines()[0].startswith("problem ")  # the warehouse's own line


def test_the_stream_a_reconciliation_reads_must_exist(
    warehouse: Path, bus_for, metrics_url: str, postgres_for, e2e_for, config_copy: Path
) -> None:
    path = config_copy / "suites" / "hrv_db_integrity.yaml"
    suite = yaml.safe_load(path.read_text())
    suite["reconcile"]["sides"]["bus"]["query"]["messages"]["stream"] = "AA_CORE_HOTT"
    path.write_text(yaml.safe_dump(suite))
    env = environment(warehouse, bus_for("healthy"), metrics_url, postgres_for(), e2e_for())
    result = runner.invoke(app, ["check-sources", "--config", str(config_copy), "-e", "staging"], env=env)
    assert result.exit_code == 3
    problems = [line for line in result.stdout.splitlines() if line.startswith("problem:")]
    assert problems == ["problem: staging/bus: stream AA_CORE_HOTT does not exist (named by hrv_db_integrity.bus)"]
