"""`gatecheck explain`: the windows, queries and thresholds a run would use, without a source."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gatecheck.cli import app
from gatecheck.evaluation.explain import explain
from gatecheck.sources.clickhouse.connection import ClickHouse, Target

from ..conftest import AS_OF, PROJECT, evaluate

runner = CliRunner()
AS_OF_TEXT = AS_OF.isoformat()

#: What every ClickHouse query asks at each limit: an error, never part of the answer.
THROW = (
    "timeout_overflow_mode='throw', read_overflow_mode='throw', result_overflow_mode='throw', "
    "group_by_overflow_mode='throw', sort_overflow_mode='throw', set_overflow_mode='throw', "
    "distinct_overflow_mode='throw', join_overflow_mode='throw', transfer_overflow_mode='throw', "
    "read_overflow_mode_leaf='throw'"
)


def test_the_explained_queries_are_what_a_run_sends(project_for, warehouse: Path) -> None:
    """Each explained SQL, sent with the explained parameter values to the real warehouse,
    returns exactly the rows the engine's evaluation of the same phase judged."""
    project = project_for("rollup-drift")
    document = explain(project, "warehouse-release", AS_OF)
    verdict = asyncio.run(evaluate(project, "warehouse-release", AS_OF))
    judged = {check.suite: check.rows for check in verdict.checks}
    assert judged["rollup_parity"] > 0
    with ClickHouse() as clickhouse:
        target = Target.parse(f"chdb://{warehouse}?database=rollup_drift", warehouse)
        connection = clickhouse.connect(target)
        for check in document["checks"]:
            if check["reconcile"] is not None:
                continue  # its rounds: test_reconciliation_rounds_are_explained_as_sent
            rows = []
            for request in check["query"]["requests"]:  # a comparison: one per side
                assert request["text"].startswith("SELECT * FROM (\n")
                assert request["text"].endswith(
                    ") LIMIT 10001 SETTINGS readonly=1, max_execution_time=30, " + THROW
                )
                sent = {p["name"]: p["sent"] for p in request["parameters"]}
                rows.append(len(connection.query_df(request["text"], sent)))
            if check["compare"] is None:
                assert rows == [judged[check["suite"]]], check["suite"]
            else:  # each side's keys, joined: every key is a row of the judged frame
                assert len(rows) == 2 and max(rows) <= judged[check["suite"]] <= sum(rows), check["suite"]
                assert [r["what"].split(":")[0] for r in check["query"]["requests"]] == [
                    "side model_grain (warehouse)", "side pipeline_grain (warehouse)"
                ]
    # The failing hour the engine found is inside the explained window.
    (parity,) = [c for c in document["checks"] if c["suite"] == "rollup_parity"]
    failing = next(c for c in verdict.checks if c.suite == "rollup_parity")
    assert failing.outcome.value == "fail"
    assert parity["window"]["start"] == failing.window.start.isoformat().replace("+00:00", "Z")
    assert parity["window"]["end"] == failing.window.end.isoformat().replace("+00:00", "Z")


def test_reconciliation_rounds_are_explained_as_sent(project_for, warehouse: Path) -> None:
    """A reconciliation's first round, sent as explained, answers the digest cells the
    engine's run compared (rows per side); the later rounds are shown with the keys or buckets
    still to be found; the one-line summary names its hashing and its kinds."""
    project = project_for("rollup-drift")
    document = explain(project, "warehouse-release", AS_OF, check="rollup_reconcile")
    verdict = asyncio.run(evaluate(project, "warehouse-release", AS_OF))
    (found,) = [c.reconciliation for c in verdict.checks if c.suite == "rollup_reconcile"]
    assert found is not None
    (check,) = document["checks"]
    assert check["source"] == {"name": "warehouse", "type": "reconciliation"}
    assert "cityHash64" in check["reconcile"] and "missing = on facts only" in check["reconcile"]
    requests = check["query"]["requests"]
    # both sides on one source: one query a round over both, compared in the engine
    assert [r["what"].split(":")[0] for r in requests] == ["sides facts and rollup (warehouse)"] * 6
    with ClickHouse() as clickhouse:
        connection = clickhouse.connect(Target.parse(f"chdb://{warehouse}?database=rollup_drift", warehouse))
        first = requests[0]
        sent = {p["name"]: p["sent"] for p in first["parameters"]}
        answer = connection.query_df(first["text"], sent)
        assert int(answer["gc_t0"].iloc[0]) == found.rows["facts"] and int(answer["gc_t1"].iloc[0]) == found.rows["rollup"]
        differing = answer[
            (answer["gc_n0"] != answer["gc_n1"])
            | (answer["gc_k0"] != answer["gc_k1"])
            | (answer["gc_h0"] != answer["gc_h1"])
            | (answer["gc_x0"] != answer["gc_x1"])
        ]
        # the drifted hour and key: its row on each side, each in one cell of three parts
        assert len(differing) == found.rounds[0].differing == 6
        assert [r.what for r in found.rounds] == ["cells", "duplicates", "rows"]
        twice = requests[1]  # each side's keys written twice: none
        assert connection.query_df(twice["text"], {p["name"]: p["sent"] for p in twice["parameters"]}).empty
    assert "<the differing keys' hashes>" in requests[2]["text"]
    assert all("<the differing buckets>" in r["text"] for r in requests[4:])


def test_a_side_asked_apart_explains_its_digest_and_duplicates_as_sent(postgres_for) -> None:
    """hrv_db_integrity's database side (the bus is read apart): its digest and duplicates
    questions, sent to PostgreSQL as explained, answer every row of the window once in each
    part of the digest and the keys written twice; the bucket rounds follow, for a
    difference too large to decode."""
    import psycopg

    from gatecheck.config import load_project

    url = postgres_for("db-duplicates", live=True)  # a row per bus message, now
    project = load_project(
        PROJECT, environ={"GATECHECK_POSTGRES_URL": url, "GATECHECK_NATS_URL": "nats://127.0.0.1:1"}
    )
    from datetime import UTC, datetime, timedelta

    # the live rows are stamped from now to 20 minutes ahead: a window ending after them
    as_of = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    (check,) = explain(project, "staging-soak", as_of, check="hrv_db_integrity")["checks"]
    requests = [r for r in check["query"]["requests"] if r["what"].startswith("side database")]
    assert [r["what"].split(": ", 1)[1].split(",")[0] for r in requests] == [
        "round 1: the difference digest",
        "round 2",
        "last",
        "else (too many differences for the digest) round 2: rows and hash sum per bucket of 13 bits — query (READ ONLY transaction",
        "each later round",
        "last: the rows of the differing buckets — query (READ ONLY transaction",
    ]
    with psycopg.connect(url) as connection:

        def sent(request: dict[str, Any]) -> list[tuple[Any, ...]]:
            parameters = {p["name"]: p["sent"] for p in request["parameters"]}
            return connection.execute(request["text"], parameters).fetchall()

        window = {p["name"]: p["sent"] for p in requests[0]["parameters"]}
        rows, keys = connection.execute(
            "SELECT count(*), count(DISTINCT message_id) FROM hrv_readings WHERE source_stream = 'AA_CORE_HOT'"
            " AND source_subject = 'athlete-ally.hrv.raw-received'"
            " AND created_at >= %(window_start)s::timestamptz AND created_at < %(window_end)s::timestamptz",
            window,
        ).fetchone()
        cells = sent(requests[0])
        assert rows > keys > 0
        for part in range(3):  # every row in one cell of each part
            assert sum(n for cell, n, *_ in cells if part * 512 <= cell < (part + 1) * 512) == rows
        assert len(sent(requests[1])) == rows - keys == 40  # db-duplicates: 40 messages written twice
    # as many keys as one answer holds (10,000 rows), not max_rows (50,000): one more than a
    # side may name, so that naming that many says there are more
    assert "HAVING count(*) > 1\nLIMIT 10000\n" in requests[1]["text"]


def test_windows_and_thresholds_name_where_they_came_from() -> None:
    result = runner.invoke(
        app, ["explain", "--phase", "canary-10", "--config", str(PROJECT), "--as-of", AS_OF_TEXT, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["as_of"] == "2026-11-22T06:00:00Z"
    checks = {c["suite"]: c for c in document["checks"]}
    slo = checks["normalize_slo"]
    # p95_latency_max_ms is overridden for canary-10 only.
    (p95,) = [e for e in slo["expectations"] if e["column"] == "p95_latency_ms"]
    assert p95["max_value"] == {
        "value": 750,
        "threshold": "p95_latency_max_ms",
        "provenance": "phase",
        "key": "thresholds.yaml: phases.canary-10.p95_latency_max_ms",
    }
    rollback = checks["rollback_triggers"]
    assert rollback["role"] == "rollback"
    assert rollback["window"]["length"] == "5m"
    assert rollback["window"]["length_from"] == "suites/rollback_triggers.yaml: window.length"
    assert rollback["window"]["end"] == "2026-11-22T06:00:00Z"
    (measure, *_) = rollback["query"]["requests"]
    assert measure["parameters"] == [
        {"name": "time", "type": "", "sent": f"{AS_OF.timestamp():.3f}", "means": "2026-11-22T06:00:00Z"}
    ]
    # Every check of the gate, its rollback suites last.
    assert [c["role"] for c in document["checks"]][-1] == "rollback"


def test_an_ors_extra_questions_to_prometheus_are_explained() -> None:
    """An expression with `or` asks more than its query: whether each metric is known, whether
    every target declaring it was up, whether a job that reported it is still scraped, and which labels the metric's series carry (a renamed
    label would read as 0)."""
    result = runner.invoke(
        app, ["explain", "--phase", "canary-10", "--check", "service_triggers", "--config", str(PROJECT),
              "--as-of", AS_OF_TEXT, "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (check,) = json.loads(result.stdout)["checks"]
    extra = {r["what"]: r["text"] for r in check["query"]["requests"] if not r["what"].startswith("measure ")}
    span = f"start={AS_OF.timestamp() - 600:.3f}&end={AS_OF.timestamp():.3f}"
    metrics = [
        "ingest_http_requests_total", "kube_pod_container_status_restarts_total",
        "kube_pod_container_status_waiting_reason",
    ]  # fmt: skip
    assert extra == {
        "metrics an `or` may read as absent: each declared by a target or stored in the window, "
        "and no target declaring it that the expression reads down": "; ".join(
            f"GET /api/v1/metadata?metric={metric} (and its family), else /api/v1/series?match[]={metric}&{span}; "
            f"if a target was down at time={AS_OF.timestamp():.3f} (up == 0, asked once), "
            f"GET /api/v1/targets/metadata?metric={metric} (and its family): a target declaring it that the "
            "expression may read was down is an error; "
            f"count by (job) (last_over_time({metric}[…])) and on(job) count by (job) (last_over_time(up[…])) "
            "at the end, and if a job reported it, GET /api/v1/targets?state=active: a job that reported it "
            "with no target active now is an error"
            for metric in metrics
        ),
        "labels an `or`'s matchers need: carried by the metric's series in the window": "; ".join(
            f"GET /api/v1/labels?match[]={metric}&{span}" for metric in metrics
        ),
        "that the server was scraping where the ranges begin (no target's up then, while one's is at the end, "
        "is an error)": (  # the service triggers' longest range is 5m
            f"GET /api/v1/query?query=count(last_over_time(up[5m]))&time={AS_OF.timestamp() - 300:.3f} "
            f"(2026-11-22T05:55:00Z), and if empty &time={AS_OF.timestamp():.3f}"
        ),
        "the server's retention, once per evaluation (a window begun before it is an error)": (
            "GET /api/v1/status/runtimeinfo (storageRetention; its Date header: the server's clock)"
        ),
    }


def test_a_per_check_window_and_a_threshold_in_the_sql_are_traced() -> None:
    document = explain(_project(), "staging-soak", AS_OF)
    checks = {c["suite"]: c for c in document["checks"]}
    edges = checks["unmatched_edges"]["window"]
    assert edges == {
        "start": "2026-11-22T04:50:00Z",
        "end": "2026-11-22T05:50:00Z",
        "length": "1h",
        "length_from": "gates/staging-soak.yaml: checks[2].window",
        "settle": "10m",
        "settle_from": "suites/unmatched_edges.yaml: window.settle",
    }
    assert checks["freshness_lag"]["window"]["length_from"] == "gates/staging-soak.yaml: window"
    (request,) = checks["freshness_lag"]["query"]["requests"]
    tolerance = next(p for p in request["parameters"] if p["name"] == "clock_skew_tolerance_s")
    assert tolerance == {
        "name": "clock_skew_tolerance_s",
        "type": "Float64",
        "sent": "5",
        "provenance": "default",
        "key": "thresholds.yaml: defaults.clock_skew_tolerance_s",
    }
    bus = checks["soak_criteria"]["query"]
    assert bus["sent_to"] == "NATS at nats://127.0.0.1:4222"
    assert [r["what"] for r in bus["requests"]][:2] == ["consumer info", "count fallback_events"]
    assert "[2026-11-20T06:00:00Z, 2026-11-22T06:00:00Z)" in bus["requests"][1]["text"]


def _project():
    from gatecheck.config import load_project

    return load_project(PROJECT, environ={})


def test_explain_touches_no_source_and_prints_no_secret(tmp_path: Path) -> None:
    """Unreachable sources and a password in the URL: explain still answers, fast, and the
    password is nowhere in its output."""
    env = {
        "GATECHECK_CLICKHOUSE_URL": "clickhouse://gate:s3cret-pw@192.0.2.1:8123/prod",
        "GATECHECK_NATS_URL": "nats://user:nats-s3cret@192.0.2.1:4222", "GATECHECK_NATS_PRODUCTION_URL": "nats://user:nats-s3cret@192.0.2.1:4222",
        "GATECHECK_PROMETHEUS_URL": "http://prom:prom-s3cret@192.0.2.1:9090",
    }
    for fmt in ("text", "json"):
        result = runner.invoke(
            app, ["explain", "--phase", "staging-soak", "--config", str(PROJECT), "--format", fmt], env=env
        )
        assert result.exit_code == 0, result.output
        assert "s3cret" not in result.output
        assert "ClickHouse at 192.0.2.1:8123, database prod" in result.output
        assert "nats://user:***@192.0.2.1:4222" in result.output


def test_explain_text_shows_the_query_with_its_bound_values() -> None:
    result = runner.invoke(
        app,
        ["explain", "--phase", "warehouse-release", "--check", "unmatched_edges", "--config", str(PROJECT),
         "--as-of", AS_OF_TEXT],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("warehouse-release [staging] as of 2026-11-22T06:00:00Z")
    assert sum(line.startswith("unmatched_edges — required check on warehouse") for line in lines) == 1
    assert "freshness_lag" not in result.stdout  # --check: that check alone
    assert "           ) LIMIT 10001 SETTINGS readonly=1, max_execution_time=30, " + THROW in lines
    start = f"{(AS_OF.timestamp() - 4200):.3f}"
    assert f"           with window_start DateTime64(3) = {start}  = 2026-11-22T04:50:00Z" in lines
    assert any(
        line.startswith("             max_value = 0.005  (unmatched_edge_rate_max, default: thresholds.yaml")
        for line in lines
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--phase", "staging-soak", "--check", "nope"],
         "gatecheck: error: --check: gate staging-soak has no check 'nope' (its checks: stream_topology, "
         "soak_criteria, unmatched_edges, freshness_lag, rollup_parity, unattributed_sessions, db_writes, "
         "hrv_row_quality, hrv_db_integrity, e2e_consecutive, normalize_slo, normalize_success_slo, normalize_latency_slo, rollback_triggers, service_triggers)"),
        (["--phase", "nope"], "gatecheck: error: unknown phase 'nope' (known phases: staging-predeploy, "
         "staging-deploy, staging-soak, prod-predeploy, canary-10, canary-50, canary-100, prod-soak, warehouse-release)"),
        (["--phase", "staging-soak", "--as-of", "yesterday"], None),
    ],
)  # fmt: skip
def test_explain_refuses_bad_input_in_one_line(args: list[str], message: str | None) -> None:
    result = runner.invoke(app, ["explain", "--config", str(PROJECT), *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gatecheck: error: ")
    if message is not None:
        assert lines == [message]


def test_estimate_shows_a_pruned_and_an_unpruned_request(warehouse: Path, unprunable: str) -> None:
    """--estimate asks ClickHouse, read-only, for each request's plan: unmatched_edges reads
    one granule range of lifecycle_edges by its sort key, in one day's part; on the schema
    without partitions and skip indexes unattributed_sessions reads every row of
    session_facts (ordered by session_id: a time window cannot prune it), on the shipped
    schema the granules its skip index on session_start_ts keeps (read with FINAL, where
    ClickHouse uses skip indexes, not the partition key)."""
    args = ["explain", "--phase", "warehouse-release", "--config", str(PROJECT), "--as-of", AS_OF_TEXT]

    def estimates(database: str) -> dict[str, Any]:
        env = {"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={database}"}
        result = runner.invoke(app, [*args, "--estimate", "--format", "json"], env=env)
        assert result.exit_code == 0, result.output
        return {c["suite"]: c["estimate"] for c in json.loads(result.stdout)["checks"]}

    with ClickHouse() as clickhouse:
        connection = clickhouse.connect(Target.parse(f"chdb://{warehouse}", warehouse))
        total, copied = (
            int(connection.query_df(f"SELECT count() AS n FROM {database}.session_facts")["n"].iloc[0])
            for database in ("healthy", unprunable)
        )
    shipped = estimates("healthy")
    (edges,) = shipped["unmatched_edges"]
    used = {i["index"]: i for i in edges["indexes"] if i["table"] == "healthy.lifecycle_edges"}
    assert used["PrimaryKey"]["keys"] == ["from_ts"] and used["PrimaryKey"]["granules"] == 1
    assert (
        used["MinMax"]["keys"] == ["from_ts"] and used["MinMax"]["granules"] < used["MinMax"]["of"]
    )  # a day's part
    (sessions,) = shipped["unattributed_sessions"]
    (table,) = sessions["tables"]
    assert table["table"] == "healthy.session_facts" and 0 < table["rows"] < total / 3
    (skip,) = [i for i in sessions["indexes"] if i["index"] == "Skip"]  # under FINAL: the skip index
    assert skip["keys"] == ["session_start_ts_minmax"] and skip["granules"] < skip["of"]
    ((table,),) = [e["tables"] for e in estimates(unprunable)["unattributed_sessions"]]
    assert table["table"] == f"{unprunable}.session_facts" and table["rows"] == copied
    env = {"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database=healthy"}
    text = runner.invoke(app, [*args, "--estimate", "--check", "unmatched_edges"], env=env).stdout
    assert "estimate   healthy.lifecycle_edges: " in text and "PrimaryKey (from_ts) selects 1/" in text
    assert "MinMax (from_ts) selects " in text


def test_estimate_on_postgresql_names_each_scan(postgres_for) -> None:
    env = {"GATECHECK_POSTGRES_URL": postgres_for("healthy")}
    result = runner.invoke(
        app,
        ["explain", "--phase", "staging-deploy", "--check", "db_writes", "--config", str(PROJECT),
         "--as-of", AS_OF_TEXT, "--estimate", "--format", "json"],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    checks = json.loads(result.stdout)["checks"]  # db_writes: a check and a rollback trigger
    assert {c["suite"] for c in checks} == {"db_writes"}
    (estimate,) = checks[0]["estimate"]
    assert {scan["table"] for scan in estimate["scans"]} == {"hrv_readings"}
    assert all(scan["scan"].endswith("Scan") for scan in estimate["scans"])


def test_a_threshold_in_the_second_sides_sql_is_bound_in_the_joint_queries(
    config_copy: Path, warehouse: Path
) -> None:
    """Both sides on one source ask one query a round: a threshold only the second side's
    SQL names is resolved (with its provenance) and sent, as a run sends it."""
    import yaml

    from gatecheck.config import load_project

    from ..conftest import warehouse_env

    path = config_copy / "suites" / "rollup_reconcile.yaml"
    suite = yaml.safe_load(path.read_text())
    rollup = suite["reconcile"]["sides"]["rollup"]
    rollup["query"] = rollup["query"].rstrip() + "\n  AND sessions >= {reconcile_missing_max:UInt64}\n"
    path.write_text(yaml.safe_dump(suite))
    project = load_project(config_copy, environ=warehouse_env(warehouse, "rollup-drift"))
    document = explain(project, "warehouse-release", AS_OF, check="rollup_reconcile")
    (check,) = document["checks"]
    first = check["query"]["requests"][0]
    bound = {p["name"]: p for p in first["parameters"]}
    assert bound["reconcile_missing_max"]["sent"] == "0" and bound["reconcile_missing_max"]["provenance"] == "default"
    verdict = asyncio.run(evaluate(project, "warehouse-release", AS_OF))
    (run,) = [c for c in verdict.checks if c.suite == "rollup_reconcile"]
    assert run.reconciliation is not None and run.reconciliation.changed == 1
