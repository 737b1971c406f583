from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gatecheck.cli import app
from gatecheck.config import expand_env, load_project, resolve_thresholds
from gatecheck.errors import ConfigError
from gatecheck.sources.clickhouse import sql_problems

from ..conftest import PROJECT

runner = CliRunner()


def edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_the_shipped_configuration_is_valid() -> None:
    project = load_project(PROJECT, environ={})
    assert {"warehouse-release", "staging-deploy", "staging-soak"} <= set(project.gates)
    assert {"unmatched_edges", "freshness_lag", "rollup_parity", "unattributed_sessions"} <= set(
        project.suites
    )
    result = runner.invoke(app, ["validate", "--config", str(PROJECT)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok:")


def test_shipped_defaults_are_the_documented_ones() -> None:
    defaults = load_project(PROJECT, environ={}).thresholds.defaults
    assert defaults == defaults | {
        "unmatched_edge_rate_max": 0.005,
        "unmatched_edges_min_evidence": 100,
        "freshness_lag_max_s": 300,
        "event_lag_p99_max_s": 600,
        "clock_skew_tolerance_s": 5,
        "clock_skew_rate_max": 0.001,
        "rollup_parity_rel_tol": 0.001,
        "unattributed_session_rate_max": 0.02,
        "sessions_min_evidence": 50,
        "fallback_events_max": 0,
        "core_hot_share_min": 1.0,
        "dlq_messages_max": 0,
        "consumer_pending_max": 1000,
        "hrv_messages_min_evidence": 100,
        "success_rate_min": 0.999,
        "p95_latency_max_ms": 500,
        "schema_failures_per_s_max": 0.1,
        "dlq_rollback_per_min": 10,
    }


def test_threshold_resolution_phase_over_environment_over_default() -> None:
    from gatecheck.config import ThresholdsConfig

    thresholds = ThresholdsConfig(
        defaults={"lag": 300, "p95": 500},
        environments={"production": {"lag": 120}},
        phases={"canary-10": {"lag": 60}},
    )
    staging = resolve_thresholds(thresholds, "staging", "warehouse-release")
    assert (staging["lag"].value, staging["lag"].provenance) == (300, "default")
    production = resolve_thresholds(thresholds, "production", "prod-soak")
    assert (production["lag"].value, production["lag"].provenance) == (120, "environment")
    assert production["lag"].key == "thresholds.yaml: environments.production.lag"
    canary = resolve_thresholds(thresholds, "production", "canary-10")
    assert (canary["lag"].value, canary["lag"].provenance) == (60, "phase")
    assert (canary["p95"].value, canary["p95"].provenance) == (500, "default")


def test_env_expansion_uses_the_variable_then_the_default() -> None:
    data = {"a": "${X:-fallback}", "b": ["${Y}"], "c": "plain"}
    assert expand_env(data, {"Y": "y"}, "f") == {"a": "fallback", "b": ["y"], "c": "plain"}
    assert expand_env(data, {"X": "x", "Y": "y"}, "f")["a"] == "x"
    with pytest.raises(ConfigError, match="Y is not set"):
        expand_env(data, {}, "gatecheck.yaml")


def test_a_misspelt_environment_variable_is_refused_never_replaced_by_the_default() -> None:
    """GATECHECK_CLICKHOUSE_ULR set for production while the file reads
    GATECHECK_CLICKHOUSE_URL: the default (the embedded warehouse) would be judged in its
    place. A set variable one edit away (a letter swapped, added, left out or changed, or the
    case) from an unset one is refused, exit 2, one line naming both; a name the file reads
    itself, a digit apart (DB_HOST1/DB_HOST2) or much longer is another name."""
    prod = "clickhouse://prod-ch:8123/db"
    for misspelt in ("GATECHECK_CLICKHOUSE_ULR", "GATECHECK_CLICKHOSE_URL", "gatecheck_clickhouse_url"):
        result = runner.invoke(app, ["validate", "--config", str(PROJECT)], env={misspelt: prod})
        assert result.exit_code == 2, (misspelt, result.output)
        line = (
            "gatecheck.yaml: environments.staging.sources.warehouse.url: environment variable "
            f"GATECHECK_CLICKHOUSE_URL is not set, but {misspelt} is (misspelt?): set "
            "GATECHECK_CLICKHOUSE_URL, or its default is judged instead"
        )
        assert line in result.output and "Traceback" not in result.output, result.output
        assert prod not in result.output
    data = {"a": "${DB_HOST1:-h1}", "b": "${GATECHECK_NATS_URL:-n}", "c": "${GATECHECK_NATS_URLS:-m}"}
    unrelated = {"DB_HOST2": "x", "GATECHECK_NATS_PRODUCTION_URL": "y", "GATECHECK_NATS_URLS": "z"}
    # GATECHECK_NATS_URLS is one edit from GATECHECK_NATS_URL, but the file reads it itself
    assert expand_env(data, unrelated, "f", {"DB_HOST1", "GATECHECK_NATS_URL", "GATECHECK_NATS_URLS"}) == {
        "a": "h1", "b": "n", "c": "z",
    }  # fmt: skip
    with pytest.raises(ConfigError, match="Y_URL is not set, but MY_URLL is"):
        expand_env({"u": "${MY_URL}"}, {"MY_URLL": "x"}, "f")  # no default: named too
    assert runner.invoke(app, ["validate", "--config", str(PROJECT)], env={"GATECHECK_CLICKHOUSE_URL": prod}).exit_code == 0


def test_a_retention_shorter_than_a_gate_reads_back_is_refused(config_copy: Path) -> None:
    """history.retention must keep what every gate reads: prod-soak's 7-day soak and 7-day SLO
    windows, a learned band's training plus its window. Shorter: exit 2 naming the gate and
    what it reads; long enough: valid. Under 1d it is refused on its own."""

    def with_retention(value: str) -> str:
        edit(config_copy / "gatecheck.yaml", lambda d: d["history"].update(retention=value))
        result = runner.invoke(app, ["validate", "--config", str(config_copy)])
        return result.output if result.exit_code else "ok"

    assert "gatecheck.yaml: history.retention: 7d is shorter than the 7d30m gate prod-soak reads back " \
        "for its soak (duration + max_gap)" in with_retention("7d")  # fmt: skip
    assert with_retention("8d") == "ok"
    assert "retention lasts at least 1d" in with_retention("12h")
    edit(
        config_copy / "gates" / "warehouse-release.yaml",
        lambda d: d["checks"][0].update(learned={"column": "unmatched_rate", "training": "28d"}),
    )
    said = with_retention("8d")
    assert "history.retention: 8d is shorter than the 28d1h gate warehouse-release reads back for the " \
        "learned band of unmatched_edges (training + window)" in said, said  # fmt: skip
    assert with_retention("29d") == "ok"


def test_environment_values_cannot_change_the_structure() -> None:
    expanded = expand_env({"url": "${U}"}, {"U": "a: {b: c}"}, "f")
    assert expanded == {"url": "a: {b: c}"}


# Each bad configuration: (file to change, change, text the one error line must contain).
BAD_CONFIGS = {
    "a word where a number belongs (no exponent hint)": (
        "thresholds.yaml",
        lambda d: d["defaults"].update(unmatched_edge_rate_max="five"),
        "thresholds.yaml: defaults.unmatched_edge_rate_max: 'five' must be a finite number: suites/",
    ),
    "an exponent YAML 1.1 reads as text": (
        "thresholds.yaml",
        lambda d: d["defaults"].update(unmatched_edge_rate_max="5e-3"),
        "thresholds.yaml: defaults.unmatched_edge_rate_max: '5e-3' must be a finite number (YAML reads 5e-3 as "
        "text: write it with a dot, e.g. 1.0e-3): suites/",
    ),
    "chDB ledger on another path than the warehouse": (
        "gatecheck.yaml",
        lambda d: d["history"].update(url="chdb://.gatecheck/ledger"),
        "gatecheck.yaml: chDB embeds one engine per process, on one path, but these name 2: ",
    ),
    "a CA for a ClickHouse URL without TLS": (
        "gatecheck.yaml",
        lambda d: d["environments"]["staging"]["sources"]["warehouse"].update(
            url="clickhouse://gatecheck@127.0.0.1:8123/analytics", ca_cert="ca.pem"
        ),
        "gatecheck.yaml: environments.staging.sources.warehouse: ca_cert verifies a TLS server: it needs a "
        "clickhouses:// URL",
    ),
    "ClickHouse SQL syntax error": (
        "suites/unmatched_edges.yaml",
        lambda d: d.update(query=d["query"].replace("count() AS edges,", "count() AS edges,, (")),
        "suites/unmatched_edges.yaml: query: SQL syntax error at line ",
    ),
    "PostgreSQL SQL syntax error": (
        "suites/db_writes.yaml",
        lambda d: d.update(query=d["query"].replace("SELECT", "SELECT (", 1)),
        "suites/db_writes.yaml: query: SQL syntax error at line ",
    ),
    "unknown key in gatecheck.yaml": (
        "gatecheck.yaml",
        lambda d: d["environments"]["staging"]["sources"]["warehouse"].update(urll="x"),
        "gatecheck.yaml: environments.staging.sources.warehouse.urll: unknown key (did you mean 'url'?) (allowed: url, timeout, type, password, ca_cert)",
    ),
    "unknown source type": (
        "gatecheck.yaml",
        lambda d: d["environments"]["staging"]["sources"]["warehouse"].update(type="mysql"),
        "gatecheck.yaml: environments.staging.sources.warehouse",
    ),
    "bad URL scheme": (
        "gatecheck.yaml",
        lambda d: d["environments"]["production"]["sources"]["warehouse"].update(url="${BAD_SCHEME_URL}"),
        "gatecheck.yaml: environments.production.sources.warehouse.url: URL scheme must be one of chdb://, clickhouse://, clickhouses:// (got 'mysql://u:***@h/db')",
    ),
    "phase does not match the file name": (
        "gates/staging-deploy.yaml",
        lambda d: d.update(phase="staging-deploy-2"),
        "gates/staging-deploy.yaml: phase: 'staging-deploy-2' must match the file name 'staging-deploy'",
    ),
    "bad duration": (
        "gatecheck.yaml",
        lambda d: d["service"].update(interval="5 minutes"),
        "gatecheck.yaml: service.interval: expected a duration",
    ),
    "worker memory ceiling too small": (
        "gatecheck.yaml",
        lambda d: d["service"].update(worker={"memory_limit_mib": 10}),
        "gatecheck.yaml: service.worker.memory_limit_mib: Input should be greater than or equal to 64 (got 10)",
    ),
    "unknown worker key": (
        "gatecheck.yaml",
        lambda d: d["service"].update(worker={"deadlin": "5m"}),
        "gatecheck.yaml: service.worker.deadlin: unknown key (did you mean 'deadline'?) (allowed: deadline, memory_limit_mib, recycle_after)",
    ),
    "worker deadline under a second": (
        "gatecheck.yaml",
        lambda d: d["service"].update(worker={"deadline": "0s"}),
        "gatecheck.yaml: service.worker.deadline: deadline must be at least 1s",
    ),
    "a lease on a ledger replicas cannot share": (
        "gatecheck.yaml",
        lambda d: d["service"].update(lease={"ttl": "15s"}),
        "gatecheck.yaml: service.lease: replicas share a PostgreSQL ledger; history.url is not postgresql://",
    ),
    "a lease too short to renew": (
        "gatecheck.yaml",
        lambda d: d["service"].update(lease={"ttl": "1s"}),
        "gatecheck.yaml: service.lease.ttl: ttl must be at least 2s",
    ),
    "unknown lease key": (
        "gatecheck.yaml",
        lambda d: d["service"].update(lease={"tll": "15s"}),
        "gatecheck.yaml: service.lease.tll: unknown key (did you mean 'ttl'?)",
    ),
    "unknown key in a gate": (
        "gates/staging-soak.yaml",
        lambda d: d.update(windw="1h"),
        "gates/staging-soak.yaml: windw: unknown key (did you mean 'window'?) (allowed: phase, environment",
    ),
    "unknown suite in a gate": (
        "gates/warehouse-release.yaml",
        lambda d: d["checks"].append({"suite": "no_such_suite"}),
        "gates/warehouse-release.yaml: checks[6].suite: unknown suite 'no_such_suite'",
    ),
    "unknown required phase": (
        "gates/staging-soak.yaml",
        lambda d: d.update(requires=["staging-deplyo"]),
        "gates/staging-soak.yaml: requires[0]: unknown phase 'staging-deplyo'",
    ),
    "unknown environment": (
        "gates/staging-deploy.yaml",
        lambda d: d.update(environment="stagin"),
        "gates/staging-deploy.yaml: environment: unknown environment 'stagin'",
    ),
    "unknown source in a suite": (
        "suites/unattributed_sessions.yaml",
        lambda d: d.update(source="warehous"),
        "suites/unattributed_sessions.yaml: source: unknown source 'warehous'",
    ),
    "a comparison with one side": (
        "suites/demand_grain_parity.yaml",
        lambda d: d["compare"]["sides"].pop("pipeline_grain"),
        "suites/demand_grain_parity.yaml: compare.sides: a comparison has exactly two sides (got 1)",
    ),
    "an unknown source on one side of a comparison": (
        "suites/demand_grain_parity.yaml",
        lambda d: d["compare"]["sides"]["pipeline_grain"].update(source="warehous"),
        "suites/demand_grain_parity.yaml: compare.sides.pipeline_grain.source: unknown source 'warehous'",
    ),
    "a comparison side's evidence on a column it does not compare": (
        "suites/demand_grain_parity.yaml",
        lambda d: d["compare"]["sides"]["model_grain"]["evidence"].update(column="rows"),
        "suites/demand_grain_parity.yaml: compare: sides.model_grain.evidence.column: 'rows' is not one of the compared values",
    ),
    "a source beside a comparison": (
        "suites/demand_grain_parity.yaml",
        lambda d: d.update(source="warehouse"),
        "suites/demand_grain_parity.yaml: source: a comparison suite names them per side",
    ),
    "$PARAMETER with no value": (
        "suites/unattributed_sessions.yaml",
        lambda d: d["expectations"][0].update(max_value={"$PARAMETER": "unattributed_rate_maximum"}),
        "suites/unattributed_sessions.yaml: $PARAMETER 'unattributed_rate_maximum' has no value",
    ),
    "unknown expectation type": (
        "suites/unattributed_sessions.yaml",
        lambda d: d["expectations"][0].update(type="expect_column_values_to_be_betwen"),
        "suites/unattributed_sessions.yaml: expectations[0]: unknown Great Expectations expectation type",
    ),
    "bad SQL parameter name": (
        "suites/unattributed_sessions.yaml",
        lambda d: d.update(query=d["query"].replace("{window_end:", "{window-end:")),
        "suites/unattributed_sessions.yaml: query: bad parameter name {window-end:",
    ),
    # a moment is bound to the millisecond: ClickHouse's DateTime fails every run, and
    # PostgreSQL's date silently starts the window at midnight
    "a moment as DateTime": (
        "suites/unattributed_sessions.yaml",
        lambda d: d.update(query=d["query"].replace("{window_end:DateTime64(3)}", "{window_end:DateTime}")),
        "suites/unattributed_sessions.yaml: query: {window_end:DateTime}: DateTime does not fit window_end, a "
        "moment to the millisecond: write {window_end:DateTime64(3)} (it compares with a column of any time type)",
    ),
    "a moment as date": (
        "suites/db_writes.yaml",
        lambda d: d.update(query=d["query"].replace("{as_of:timestamptz}", "{as_of:date}")),
        "suites/db_writes.yaml: query: {as_of:date}: date does not fit as_of, a moment to the millisecond: "
        "write {as_of:timestamptz} (it compares with a column of any time type)",
    ),
    "unknown SQL parameter": (
        "suites/unattributed_sessions.yaml",
        lambda d: d.update(query=d["query"].replace("{window_end:", "{window_stop:")),
        "suites/unattributed_sessions.yaml: query: parameter {window_stop} is neither",
    ),
    "a write statement": (
        "suites/unattributed_sessions.yaml",
        lambda d: d.update(query="INSERT INTO session_facts SELECT * FROM session_facts"),
        "suites/unattributed_sessions.yaml: query: must be a single SELECT",
    ),
    # A second statement ("SELECT 1; DROP TABLE …") is refused by ClickHouse's own parser at run
    # time (the SELECT * FROM (…) wrapper), not by a hand-written lexer here: see
    # tests/sources/test_clickhouse.py::test_a_second_statement_is_refused_by_the_engine.
    "SQL on a NATS source": (
        "suites/soak_criteria.yaml",
        lambda d: d.update(query="SELECT 1 AS hrv_messages"),
        "suites/soak_criteria.yaml: query: source 'bus' is a NATS source, so the query must be a mapping",
    ),
    "derived column with an unknown name": (
        "suites/soak_criteria.yaml",
        lambda d: d["query"]["derive"].update(core_hot_share="core_hot_hrv_messages / hrv_mesages"),
        "suites/soak_criteria.yaml: query: derive.core_hot_share: unknown name(s) hrv_mesages",
    ),
    "derived column that is not arithmetic": (
        "suites/soak_criteria.yaml",
        lambda d: d["query"]["derive"].update(core_hot_share="__import__('os').getcwd()"),
        "suites/soak_criteria.yaml: query.derive: derived column 'core_hot_share': only names, numbers",
    ),
    "unknown key in a NATS query": (
        "suites/stream_topology.yaml",
        lambda d: d["query"]["streams"][0].update(subject=["x"]),
        "suites/stream_topology.yaml: query.streams[0].subject: unknown key (did you mean 'subjects'?) (allowed: name, subjects)",
    ),
    "unknown phase in thresholds": (
        "thresholds.yaml",
        lambda d: d.update(phases={"canary-1O": {"p95_latency_max_ms": 700}}),
        "thresholds.yaml: phases.canary-1O: unknown phase",
    ),
    "NaN threshold": (
        "thresholds.yaml",
        lambda d: d["defaults"].update(unmatched_edge_rate_max=float("nan")),
        "thresholds.yaml: defaults.unmatched_edge_rate_max: must be a finite number",
    ),
    "threshold too large": (
        "thresholds.yaml",
        lambda d: d["phases"].setdefault("canary-10", {}).update(fallback_events_max=10**400),
        "thresholds.yaml: phases.canary-10.fallback_events_max: must be at most 1e+15 in magnitude",
    ),
    "infinite evidence minimum": (
        "suites/rollup_parity.yaml",
        lambda d: d.update(evidence={"column": "x", "min_total": float("inf")}),
        "suites/rollup_parity.yaml: evidence.min_total: must be a finite number",
    ),
    "NaN literal bound": (
        "suites/unattributed_sessions.yaml",
        lambda d: d["expectations"][0].update(max_value=float("nan")),
        "suites/unattributed_sessions.yaml: expectations[0]: max_value: must be a finite number (got nan)",
    ),
    "key with a newline": (
        "gates/staging-soak.yaml",
        lambda d: d.update({"win\ndow": "1h"}),
        "gates/staging-soak.yaml: 'win\\ndow': unknown key",
    ),
    "wrong type": (
        "gates/staging-soak.yaml",
        lambda d: d["checks"][0].update(required="maybe"),
        "gates/staging-soak.yaml: checks[0].required: Input should be a valid boolean",
    ),
    # A threshold nothing uses would be ignored and the gate judged by another value (issue 13).
    "misspelt phase override": (
        "thresholds.yaml",
        lambda d: d["phases"]["canary-10"].update(p95_latency_max_msx=d["phases"]["canary-10"].pop("p95_latency_max_ms")),
        "thresholds.yaml: phases.canary-10.p95_latency_max_msx: no suite uses a threshold of this name (did you mean 'p95_latency_max_ms'?)",
    ),
    "misspelt default": (
        "thresholds.yaml",
        lambda d: d["defaults"].update(fallback_event_max=5),
        "thresholds.yaml: defaults.fallback_event_max: no suite uses a threshold of this name (did you mean 'fallback_events_max'?)",
    ),
    "phase override of a threshold the phase never uses": (
        "thresholds.yaml",
        lambda d: d["phases"]["canary-10"].update(rollup_parity_rel_tol=0.5),
        "thresholds.yaml: phases.canary-10.rollup_parity_rel_tol: no suite of gate 'canary-10' (gates/canary-10.yaml) uses this threshold, so this value would change nothing",
    ),
    "environment override no gate of it uses": (
        "thresholds.yaml",
        lambda d: d["environments"].update(staging={"stream_replicaz": 2}),
        "thresholds.yaml: environments.staging.stream_replicaz: no suite uses a threshold of this name (did you mean 'stream_replicas'?)",
    ),
    # A threshold must fit where it is used, for every phase that runs the suite.
    "a bound that is not a number": (
        "thresholds.yaml",
        lambda d: d["defaults"].update(unmatched_edge_rate_max="lots"),
        "thresholds.yaml: defaults.unmatched_edge_rate_max: 'lots' must be a finite number: suites/unmatched_edges.yaml uses it in expectations[0] (expect_column_values_to_be_between) as max_value (for phases canary-10, canary-100, canary-50, prod-soak, staging-soak, warehouse-release)",
    ),
    "a phase's bound that is not a number": (
        "thresholds.yaml",
        lambda d: d["phases"]["canary-10"].update(p95_latency_max_ms="750ms"),
        "thresholds.yaml: phases.canary-10.p95_latency_max_ms: '750ms' must be a finite number: suites/normalize_slo.yaml uses it in expectations[1] (expect_column_values_to_be_between) as max_value (for phase canary-10)",
    ),
    "an evidence minimum that is negative": (
        "thresholds.yaml",
        lambda d: d["defaults"].update(unmatched_edges_min_evidence=-5),
        "thresholds.yaml: defaults.unmatched_edges_min_evidence: -5 must be a finite number, at least 0: suites/unmatched_edges.yaml uses it in evidence.min_total",
    ),
    # reconciliations
    "a reconcile side on a Prometheus source": (
        "suites/rollup_reconcile.yaml",
        lambda d: d["reconcile"]["sides"]["rollup"].update(source="metrics"),
        "suites/rollup_reconcile.yaml: reconcile.sides.rollup.source: 'metrics' is a Prometheus source; a reconcile side reads ClickHouse, PostgreSQL or NATS",
    ),
    "a NATS reconcile side without messages": (
        "suites/hrv_db_integrity.yaml",
        lambda d: d["reconcile"]["sides"]["bus"].update(query={"counts": [{"name": "m", "stream": "AA_CORE_HOT"}]}),
        "suites/hrv_db_integrity.yaml: reconcile.sides.bus.query: SQL returning the keys and values, or for a NATS source messages:",
    ),
    "a NATS reconcile side that does not read a compared column": (
        "suites/hrv_db_integrity.yaml",
        lambda d: d["reconcile"]["sides"]["bus"]["query"]["messages"]["columns"].pop("user_id"),
        "suites/hrv_db_integrity.yaml: reconcile.sides.bus.query.messages.columns: no user_id (every key and value column is read from the message)",
    ),
    "a message column read from nowhere": (
        "suites/hrv_db_integrity.yaml",
        lambda d: d["reconcile"]["sides"]["bus"]["query"]["messages"]["columns"].update(user_id="body:athlete_id"),
        "column 'user_id': 'body:athlete_id' is not header:NAME, payload:FIELD[.FIELD…], sequence, time or subject",
    ),
    "a reconcile side's lag longer than the check's settle": (
        "suites/hrv_db_integrity.yaml",
        lambda d: d["reconcile"]["sides"]["database"].update(lag="30s"),
        "gates/staging-soak.yaml: checks[8]: suite hrv_db_integrity: reconcile.sides.database.lag 30s is longer "
        "than the settle 0s (its window.settle): side database is read to the window's end plus its lag, not "
        "all written when judged — settle at least the lag",
    ),
    "a reconcile lag on both sides": (
        "suites/hrv_db_integrity.yaml",
        lambda d: [side.update(lag="5s") for side in d["reconcile"]["sides"].values()],
        "suites/hrv_db_integrity.yaml: reconcile: lag on both sides: give it on the side whose rows are written "
        "after the other's",
    ),
    "a negative reconcile lag": (
        "suites/hrv_db_integrity.yaml",
        lambda d: d["reconcile"]["sides"]["database"].update(lag="-5s"),
        "suites/hrv_db_integrity.yaml: reconcile.sides.database.lag:",
    ),
    "a key column of an unknown type": (
        "suites/rollup_reconcile.yaml",
        lambda d: d["reconcile"]["keys"].update(hour="datetime"),
        "suites/rollup_reconcile.yaml: reconcile.keys.hour: Input should be 'text', 'integer', 'number', 'timestamp' or 'boolean'",
    ),
    "a reconciliation with a compare block too": (
        "suites/rollup_reconcile.yaml",
        lambda d: d.update(compare={"values": ["sessions"], "sides": {
            name: {"source": side["source"], "query": side["query"]} for name, side in d["reconcile"]["sides"].items()
        }}),
        "compare and reconcile: a suite is one kind",
    ),
    "messages in a suite that is not a reconciliation": (
        "suites/soak_criteria.yaml",
        lambda d: d.update(query={"messages": {"stream": "AA_CORE_HOT", "subject": "x", "columns": {"id": "sequence"}}}),
        "suites/soak_criteria.yaml: query.messages: a NATS subject's messages are read only by a reconcile: side",
    ),
    "a reconcile side's minimum that is not a number": (
        "thresholds.yaml",
        lambda d: d["defaults"].update(rollup_keys_min_evidence="many"),
        "thresholds.yaml: defaults.rollup_keys_min_evidence: 'many' must be a finite number, at least 0: suites/rollup_reconcile.yaml uses it in reconcile.sides.facts.min_rows",
    ),
    # a suite twice in a gate: which entry's required? (the advisory one could have won)
    "a suite twice among a gate's checks": (
        "gates/staging-soak.yaml",
        lambda d: d["checks"].append({"suite": "soak_criteria", "required": False}),
        "gates/staging-soak.yaml: checks[13]: suite 'soak_criteria' is already checks[1]: a suite is one check of a gate",
    ),
    "a rollback suite twice": (
        "gates/warehouse-release.yaml",
        lambda d: d.update(rollback=[{"suite": "freshness_lag"}, {"suite": "freshness_lag", "window": "1m"}]),
        "gates/warehouse-release.yaml: rollback[1]: suite 'freshness_lag' is already rollback[0]",
    ),
    "a soak of 0s (covered by the evaluation alone)": (
        "gates/staging-soak.yaml",
        lambda d: d.update(soak={"duration": "0s", "max_gap": "30m"}),
        "gates/staging-soak.yaml: soak.duration: must be longer than 0s",
    ),
    # a max_gap as long as the soak: two evaluations at its ends cover it, nothing watched between
    "a soak's max_gap not shorter than the soak": (
        "gates/staging-soak.yaml",
        lambda d: d.update(soak={"duration": "1h", "max_gap": "2h"}),
        "gates/staging-soak.yaml: soak.max_gap: 2h is not shorter than soak.duration 1h: two evaluations at its "
        "ends would cover it, with nothing watched between",
    ),
    "a soak's max_gap of 0s": (
        "gates/staging-soak.yaml",
        lambda d: d.update(soak={"duration": "48h", "max_gap": "0"}),
        "gates/staging-soak.yaml: soak.max_gap: must be longer than 0s",
    ),
    "a gate window of 0s": (
        "gates/warehouse-release.yaml",
        lambda d: d.update(window="0s"),
        "gates/warehouse-release.yaml: window: must be longer than 0s",
    ),
    "a check window of 0s": (
        "gates/warehouse-release.yaml",
        lambda d: d["checks"][0].update(window="0m"),
        "gates/warehouse-release.yaml: checks[0].window: must be longer than 0s",
    ),
    # URLs a driver cannot read: refused where they are written (the traceback that a
    # PostgreSQL ledger's raised printed its password), never echoing the password
    "a PostgreSQL ledger URL libpq cannot read": (
        "gatecheck.yaml",
        lambda d: d["history"].update(url="${LEDGER_URL}"),
        "gatecheck.yaml: history.url: not a PostgreSQL URL libpq reads (invalid percent-encoded token) (got 'postgresql://gatecheck:***@127.0.0.1:5432/ledger')",
    ),
    "a PostgreSQL source URL with an option libpq does not know": (
        "gatecheck.yaml",
        lambda d: d["environments"]["staging"]["sources"]["database"].update(url="${DATABASE_URL}"),
        "gatecheck.yaml: environments.staging.sources.database.url: not a PostgreSQL URL libpq reads (invalid URI query parameter: \"sslmod\") (got 'postgresql://u:***@db/app?sslmod=require')",
    ),
    "a source URL with a broken IPv6 host": (
        "gatecheck.yaml",
        lambda d: d["environments"]["staging"]["sources"]["warehouse"].update(url="${WAREHOUSE_URL}"),
        "gatecheck.yaml: environments.staging.sources.warehouse.url: not a URL: Invalid IPv6 URL (got 'clickhouse://u:***@[::1/db')",
    ),
    # a threshold is what the gate is reviewed by: one from the environment no review sees
    # (and, expanded, text: '0' was refused as "not a finite number")
    "a threshold from the environment": (
        "thresholds.yaml",
        lambda d: d["defaults"].update(fallback_events_max="${FALLBACK_MAX:-0}"),
        "thresholds.yaml: defaults.fallback_events_max: ${FALLBACK_MAX:-0} takes a threshold from the "
        "environment, where no review sees it: write the value here (per environment under environments:, "
        "per phase under phases:)",
    ),
    "a suite's SQL naming an environment variable": (
        "suites/unattributed_sessions.yaml",
        lambda d: d.update(query=d["query"].replace("FROM session_facts", "FROM ${SESSIONS_TABLE:-session_facts}")),
        "suites/unattributed_sessions.yaml: query: ${SESSIONS_TABLE:-session_facts} is not expanded: a suite is "
        "the same in every environment",
    ),
    # a credential written in gatecheck.yaml is one in the repository's history
    "a password written in a source URL": (
        "gatecheck.yaml",
        lambda d: d["environments"]["staging"]["sources"]["database"].update(url="postgresql://u:Sup3rSecret@db/app"),
        "gatecheck.yaml: environments.staging.sources.database.url: a credential written in the file (reviewed and "
        "committed, so in the repository's history): give it from the environment, \"${VAR}\", or a file "
        "(password_file, url_file)",
    ),
    "a password written as a URL's default": (
        "gatecheck.yaml",
        lambda d: d["history"].update(url="${GATECHECK_HISTORY_URL:-postgresql://g:Sup3rSecret@db/ledger}"),
        "gatecheck.yaml: history.url: a credential written in the file",
    ),
    "a NATS token written in a cluster's URLs": (
        "gatecheck.yaml",
        lambda d: d["environments"]["production"]["sources"]["bus"].update(url="nats://a:4222,nats://Sup3rToken@b:4222"),
        "gatecheck.yaml: environments.production.sources.bus.url: a credential written in the file",
    ),
    "a token written as a query parameter": (
        "gatecheck.yaml",
        lambda d: d["environments"]["staging"]["sources"]["warehouse"].update(url="clickhouse://h/db?password=Sup3r"),
        "gatecheck.yaml: environments.staging.sources.warehouse.url: a credential written in the file",
    ),
    "a password written as a field": (
        "gatecheck.yaml",
        lambda d: d["environments"]["staging"]["sources"]["metrics"].update(password="Sup3rSecret"),
        "gatecheck.yaml: environments.staging.sources.metrics.password: a credential written in the file",
    ),
    "a source URL's port out of range": (
        "gatecheck.yaml",
        lambda d: d["environments"]["production"]["sources"]["bus"].update(url="nats://a:4222,nats://b:99999"),
        "gatecheck.yaml: environments.production.sources.bus.url: not a URL: Port out of range 0-65535",
    ),
    "a count of runs that is 0": (
        "thresholds.yaml",
        lambda d: d["defaults"].update(e2e_consecutive_min=0),
        "thresholds.yaml: defaults.e2e_consecutive_min: 0 must be a whole number, at least 1: suites/e2e_consecutive.yaml uses it in query.newest (for phase staging-soak)",
    ),
    "a count of runs with a fraction": (
        "thresholds.yaml",
        lambda d: d["phases"]["staging-deploy"].update(e2e_consecutive_min=1.5),
        "thresholds.yaml: phases.staging-deploy.e2e_consecutive_min: 1.5 must be a whole number, at least 1: suites/e2e_consecutive.yaml uses it in query.newest (for phase staging-deploy)",
    ),
    # A query that answers a row whatever its window holds proves nothing by its row: an empty
    # window read max() as 0 in ClickHouse, and the gate was GO on no data at all.
    "an aggregate without GROUP BY and no evidence": (
        "suites/freshness_lag.yaml",
        lambda d: d.pop("evidence"),
        "suites/freshness_lag.yaml: evidence: the query answers a row even when its window holds no data "
        "(it aggregates without GROUP BY, or reads no table), so an empty window would pass: declare evidence:",
    ),
    "a compared side that aggregates without GROUP BY and no evidence": (
        "suites/demand_grain_parity.yaml",
        lambda d: (
            d["compare"]["sides"]["model_grain"].pop("evidence"),
            d["compare"]["sides"]["model_grain"].update(
                query="SELECT toStartOfHour(now()) AS hour, '' AS gateway, '' AS region, '' AS pipeline, "
                "sum(sessions) AS sessions FROM network_demand_hourly"
            ),
        ),
        "suites/demand_grain_parity.yaml: compare.sides.model_grain.evidence: the query answers a row even when",
    ),
    "a PostgreSQL coalesce over an aggregate and no evidence": (
        "suites/hrv_row_quality.yaml",
        lambda d: (
            d.pop("evidence"),
            d.update(query="SELECT coalesce(max(ln_rmssd), 3) AS ln_rmssd_max FROM hrv_readings "
                           "WHERE created_at >= {window_start:timestamptz}"),
        ),
        "suites/hrv_row_quality.yaml: evidence: the query answers a row even when its window holds no data",
    ),
    "a SQL parameter that is not a number": (
        "thresholds.yaml",
        lambda d: d["defaults"].update(clock_skew_tolerance_s=[5]),
        "thresholds.yaml: defaults.clock_skew_tolerance_s: [5] must be a finite number: suites/freshness_lag.yaml uses it in query parameter {clock_skew_tolerance_s:Float64}",
    ),
    "a cycle of requires": (
        "gates/staging-predeploy.yaml",
        lambda d: d.update(requires=["staging-soak"]),
        "gates/staging-deploy.yaml: requires: staging-deploy → staging-predeploy → staging-soak → "
        "staging-deploy is a cycle: none of these phases can be GO (each waits on the next)",
    ),
    "a minimum above the maximum (two thresholds swapped, say)": (
        "suites/unmatched_edges.yaml",
        lambda d: d["expectations"][0].update(min_value=0.01),
        "suites/unmatched_edges.yaml: expectations[0] (expect_column_values_to_be_between): min_value 0.01 is "
        "above max_value unmatched_edge_rate_max = 0.005 (thresholds.yaml: defaults.unmatched_edge_rate_max): "
        "no value can pass, the check could only fail (for phases ",
    ),
    "a minimum equal to the maximum with a strict side": (
        "suites/unmatched_edges.yaml",
        lambda d: d["expectations"][0].update(min_value=0.005, strict_max=True),
        "min_value 0.005 equals max_value unmatched_edge_rate_max = 0.005 (thresholds.yaml: "
        "defaults.unmatched_edge_rate_max) and strict_max is true: no value can pass",
    ),
}


#: URLs with a password, from the environment (written in gatecheck.yaml, a credential is
#: refused before anything reads it): each message must still hide the password.
SECRET_URLS = {
    "BAD_SCHEME_URL": "mysql://u:pw@h/db",
    "LEDGER_URL": "postgresql://gatecheck:Sup3r%ZZsecret@127.0.0.1:5432/ledger",
    "DATABASE_URL": "postgresql://u:Sup3rSecret@db/app?sslmod=require",
    "WAREHOUSE_URL": "clickhouse://u:Sup3rSecret@[::1/db",
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_configuration_is_one_clear_line_and_exit_2(case: str, config_copy: Path) -> None:
    name, change, expected = BAD_CONFIGS[case]
    edit(config_copy / name, change)
    for command in (["validate"], ["run", "--phase", "warehouse-release"]):
        result = runner.invoke(app, [*command, "--config", str(config_copy)], env=SECRET_URLS)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert expected in lines[0], lines[0]
        assert lines[0].startswith("gatecheck: error: ")
        assert "Traceback" not in result.output and "Sup3r" not in result.output


@pytest.mark.parametrize(
    "bounds",
    [{"min_value": 0.005}, {"min_value": 0.001, "strict_min": True, "strict_max": True}, {"min_value": 0.0}],
)
def test_a_range_some_value_can_pass_is_taken(bounds: dict, config_copy: Path) -> None:
    """The passing side of "a minimum above the maximum": equal bounds hold that one value."""
    edit(config_copy / "suites" / "unmatched_edges.yaml", lambda d: d["expectations"][0].update(bounds))
    result = runner.invoke(app, ["validate", "--config", str(config_copy)])
    assert result.exit_code == 0, result.output


def test_a_service_interval_no_soak_can_be_covered_by_is_said(config_copy: Path) -> None:
    """A soaking phase the service runs less often than its soak's max_gap is never GO from
    the service's evaluations alone: `validate` says so (a note: a slow phase may be meant),
    for each such phase, naming the key; an interval shorter than every max_gap, or phases
    without a soak, say nothing."""
    from gatecheck.config.checks import unsoakable

    def notes() -> list[str]:
        result = runner.invoke(app, ["validate", "--config", str(config_copy)])
        assert result.exit_code == 0, result.output
        return [line for line in result.stderr.splitlines() if "max_gap" in line]

    edit(config_copy / "gatecheck.yaml", lambda d: d["service"].update(interval="29m"))
    assert notes() == []
    edit(config_copy / "gatecheck.yaml", lambda d: d["service"].update(intervals={"staging-soak": "30m"}))
    assert notes() == [
        "gatecheck: note: gatecheck.yaml: service.intervals.staging-soak: 30m is not shorter than the soak's "
        "max_gap 30m in gates/staging-soak.yaml: evaluations 30m apart break the soak every time, so the "
        "service alone never makes staging-soak GO"
    ]
    edit(config_copy / "gatecheck.yaml", lambda d: d["service"].update(interval="1h", intervals={}))
    assert [n.split(" in ")[1].split(":")[0] for n in notes()] == ["gates/prod-soak.yaml", "gates/staging-soak.yaml"]
    project = load_project(config_copy, environ={})
    assert [n.rsplit(" ", 2)[1] for n in unsoakable(project, ["canary-10", "staging-soak"])] == ["staging-soak"]


def test_each_cycle_of_requires_is_found_once_in_a_walk_as_long_as_the_file() -> None:
    """Every cycle closed by a `requires`, from its first phase by name; a chain (however
    many phases require all the earlier ones) is none, and is walked in its size, not in
    the number of its paths (2^n)."""
    from types import SimpleNamespace

    from gatecheck.config.checks import requires_cycles

    def project(requires: dict[str, list[str]]) -> SimpleNamespace:
        return SimpleNamespace(gates={p: SimpleNamespace(requires=r) for p, r in requires.items()})

    cycles = {"c": ["a"], "a": ["b"], "b": ["c", "x"], "d": ["d", "a"], "f": ["e"], "e": ["f"], "x": []}
    assert requires_cycles(project(cycles)) == [["a", "b", "c"], ["e", "f"]]
    dense = {f"p{i:03d}": [f"p{j:03d}" for j in range(i)] for i in range(300)}  # 2^299 paths
    assert requires_cycles(project(dense)) == []
    dense["p000"] = ["p299"]
    assert ["p000", "p299"] in requires_cycles(project(dense))


def test_credentials_from_the_environment_are_taken(config_copy: Path) -> None:
    """The passing side of "a credential written in the file": each form, from ``${VAR}``."""

    def from_environment(d: dict) -> None:
        staging = d["environments"]["staging"]["sources"]
        staging["database"]["url"] = "postgresql://u:${PG_PASSWORD}@db/app"
        staging["metrics"]["password"] = "${PROMETHEUS_PASSWORD}"
        staging["warehouse"]["url"] = "clickhouse://h/db?password=${CH_PASSWORD}"
        d["environments"]["production"]["sources"]["bus"]["url"] = "nats://a:4222,nats://${NATS_TOKEN}@b:4222"

    edit(config_copy / "gatecheck.yaml", from_environment)
    env = {"PG_PASSWORD": "p", "PROMETHEUS_PASSWORD": "p", "CH_PASSWORD": "p", "NATS_TOKEN": "t"}
    result = runner.invoke(app, ["validate", "--config", str(config_copy)], env=env)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("unmatched_edges", lambda d: d.pop("evidence")),  # GROUP BY: no rows when no data
        ("freshness_lag", lambda d: d.update(evidence="none")),  # it fails an empty window itself
        ("freshness_lag", lambda d: d.update(evidence={"column": "events", "min_total": 0})),
    ],
)
def test_a_query_whose_rows_are_its_data_needs_no_evidence_and_none_is_a_choice(
    name: str, change, config_copy: Path
) -> None:
    edit(config_copy / "suites" / f"{name}.yaml", change)
    result = runner.invoke(app, ["validate", "--config", str(config_copy)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("sql", "dialect", "always"),
    [
        ("SELECT max(lag) AS worst FROM t WHERE ts >= {window_start:DateTime64(3)}", "clickhouse", True),
        ("SELECT countIf(bad) / count() AS rate, quantile(0.99)(lag) AS p99 FROM t", "clickhouse", True),
        ("SELECT k, count() AS n FROM t GROUP BY k", "clickhouse", False),
        ("SELECT k, sum(v) AS s FROM t GROUP BY k WITH TOTALS", "clickhouse", True),
        ("SELECT max(v) AS worst FROM t GROUP BY ALL", "clickhouse", True),  # nothing to group by: one row
        ("SELECT k, max(v) AS worst FROM t GROUP BY ALL", "clickhouse", False),
        ("SELECT max(v) AS worst FROM t HAVING count() > 0", "clickhouse", False),
        ("SELECT x FROM t WHERE ts > {as_of:DateTime64(3)}", "clickhouse", False),
        ("SELECT x, count() OVER () AS n FROM t", "clickhouse", False),  # a window function keeps the rows
        ("SELECT 0 AS worst", "clickhouse", True),
        ("SELECT (SELECT max(x) FROM t) AS worst", "clickhouse", True),
        ("SELECT number FROM numbers(3)", "clickhouse", True),
        ("SELECT worst FROM (SELECT max(x) AS worst FROM t FINAL)", "clickhouse", True),
        ("SELECT x FROM t FINAL", "clickhouse", False),
        ("WITH w AS (SELECT max(x) AS worst FROM t) SELECT worst FROM w", "clickhouse", True),
        ("WITH w AS (SELECT x FROM t) SELECT x FROM w", "clickhouse", False),
        ("SELECT x FROM t UNION ALL SELECT count() FROM u", "clickhouse", True),
        ("SELECT a.x FROM (SELECT max(x) AS x FROM t) AS a JOIN u AS b ON a.x = b.x", "clickhouse", False),
        ("SELECT a.x FROM (SELECT max(x) AS x FROM t) AS a LEFT JOIN u AS b ON a.x = b.x", "clickhouse", True),
        ("SELECT coalesce(max(x), 0) AS worst FROM t WHERE ts >= NULL", "postgres", True),
        ("SELECT count(*) FILTER (WHERE bad) AS n FROM t", "postgres", True),
        ("SELECT k, count(*) AS n FROM t GROUP BY k", "postgres", False),
        ("SELECT x FROM generate_series(1, 3) AS x", "postgres", True),
    ],
)
def test_which_queries_answer_a_row_without_data(sql: str, dialect: str, always: bool) -> None:
    from gatecheck.sources.sqltext import answers_a_row_without_data

    assert answers_a_row_without_data(sql, dialect) is always


@pytest.mark.parametrize(
    ("sql_type", "value", "problem"),
    [
        ("UInt32", 5.5, "must be a whole number, at least 0"),
        ("UInt32", -1, "must be a whole number, at least 0"),
        ("Nullable(Int64)", 0.5, "must be a whole number"),
        ("Int64", -1, None),
        ("UInt8", 0, None),
    ],
)
def test_a_whole_number_sql_parameter_is_refused_a_fraction_or_below_0_if_unsigned(
    config_copy: Path, sql_type: str, value: float, problem: str | None
) -> None:
    """ClickHouse refuses a fraction for an integer placeholder (and a negative one for an
    unsigned) only when the query runs: a check errored in every phase. It is refused first."""
    edit(
        config_copy / "suites" / "freshness_lag.yaml",
        lambda d: d.update(query=d["query"].replace("clock_skew_tolerance_s:Float64", f"clock_skew_tolerance_s:{sql_type}")),
    )
    edit(config_copy / "thresholds.yaml", lambda d: d["defaults"].update(clock_skew_tolerance_s=value))
    result = runner.invoke(app, ["validate", "--config", str(config_copy)])
    if problem is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        f"gatecheck: error: thresholds.yaml: defaults.clock_skew_tolerance_s: {value} {problem}: "
        f"suites/freshness_lag.yaml uses it in query parameter {{clock_skew_tolerance_s:{sql_type}}} "
        "(for phases canary-10, canary-100, canary-50, prod-soak, staging-deploy, staging-soak, warehouse-release)"
    )


@pytest.mark.parametrize(
    ("name", "anchor", "twice", "line"),
    [
        # the second value, looser, was the one judged, and validate said ok
        ("thresholds.yaml", "  dlq_messages_max: 0", "  dlq_messages_max: 5\n", "defaults"),
        ("thresholds.yaml", "    stream_replicas: 3", "    stream_replicas: 1\n", "environments.production"),
        ("gates/staging-soak.yaml", "window:", "window: 5m\n", "the gate"),
        ("suites/soak_criteria.yaml", "    max_value: {$PARAMETER: dlq_messages_max}",
         "    max_value: 1000\n", "an expectation"),
    ],
)  # fmt: skip
def test_a_key_written_twice_in_one_mapping_is_refused(
    config_copy: Path, name: str, anchor: str, twice: str, line: str
) -> None:
    """YAML keeps a key's last value, silently: a second `dlq_messages_max: 5` under the first
    loosened the gate (in the defaults, an environment, a gate or an expectation). A key written
    twice in one mapping is refused, naming both lines."""
    path = config_copy / name
    lines = path.read_text().splitlines(keepends=True)
    (at,) = [i for i, text in enumerate(lines) if text.startswith(anchor)]
    key = anchor.strip().split(":")[0]
    lines.insert(at + 1, twice)
    path.write_text("".join(lines))
    result = runner.invoke(app, ["validate", "--config", str(config_copy)])
    assert result.exit_code == 2, (line, result.output)
    column = len(twice) - len(twice.lstrip()) + 1
    assert result.stderr.strip() == (
        f"gatecheck: error: {name}: line {at + 2}, column {column}: invalid YAML: the key {key!r} is written "
        f"twice in one mapping (first on line {at + 1}); YAML would keep only the last value"
    )


def test_a_merge_key_may_still_be_overridden(config_copy: Path) -> None:
    """`<<: *base` and then one of its keys is what a merge is for: not a key written twice."""
    path = config_copy / "thresholds.yaml"
    text = path.read_text().replace("  production:\n", "  production: &production\n", 1)
    text = text.replace("phases:\n", "phases:\n  canary-100:\n    <<: *production\n    stream_replicas: 5\n", 1)
    path.write_text(text)
    result = runner.invoke(app, ["validate", "--config", str(config_copy)])
    assert result.exit_code == 0, result.output
    from gatecheck.config import load_project

    resolved = load_project(config_copy).resolve_thresholds("canary-100")
    assert resolved["stream_replicas"].value == 5


def test_invalid_yaml_names_the_line(config_copy: Path) -> None:
    (config_copy / "gates" / "staging-soak.yaml").write_text("phase: staging-soak\nchecks: [\n")
    result = runner.invoke(app, ["validate", "--config", str(config_copy)])
    assert result.exit_code == 2
    assert "gates/staging-soak.yaml: line" in result.stderr and "invalid YAML" in result.stderr


def test_every_problem_is_listed_at_once(config_copy: Path) -> None:
    edit(config_copy / "gates/staging-soak.yaml", lambda d: d.update(windw="1h"))
    edit(config_copy / "suites/rollup_parity.yaml", lambda d: d.update(sourc="x"))
    result = runner.invoke(app, ["validate", "--config", str(config_copy)])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 2


def test_missing_config_directory_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "--config", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "gatecheck.yaml: not found" in result.stderr


def test_secrets_in_urls_are_not_echoed(config_copy: Path) -> None:
    edit(
        config_copy / "gatecheck.yaml",
        lambda d: d["environments"]["staging"]["sources"]["warehouse"].update(
            url=["clickhouse://u:hunter2@host:8123/db"]
        ),
    )
    result = runner.invoke(app, ["validate", "--config", str(config_copy)])
    assert result.exit_code == 2
    assert "hunter2" not in result.output


@pytest.mark.parametrize(
    "url",
    [
        "host=db user=gc password=hunter2 dbname=app",  # libpq's keyword form
        "host=db user=gc password='hunter2 hunter2' dbname=app",
        "host=db user=gc password = 'hunter2\\'s' dbname=app",
    ],
)
@pytest.mark.parametrize("where", ["history", "source"])
def test_a_password_in_a_keyword_connection_string_is_not_echoed(config_copy: Path, url: str, where: str) -> None:
    """libpq also reads `host=… password=…`; gatecheck wants a URL and says so — without the
    password (it printed the string whole: `unsupported scheme in 'host=db … password=hunter2 …'`)."""
    env = {}
    if where == "history":
        env["GATECHECK_HISTORY_URL"] = url
    else:
        edit(
            config_copy / "gatecheck.yaml",
            lambda d: d["environments"]["staging"]["sources"]["warehouse"].update(url=url),
        )
    result = runner.invoke(app, ["run", "--phase", "staging-deploy", "--config", str(config_copy)], env=env)
    assert result.exit_code == 2, result.output
    assert "hunter2" not in result.output
    assert re.search(r"password\s*=\s*\*\*\* dbname=app", result.output)  # said, and the rest shown


def test_redact_hides_each_form_a_secret_takes_in_a_connection_string() -> None:
    from gatecheck.errors import redact

    assert redact("postgresql://u:s3cret@h/db?sslpassword=k3y&sslmode=require") == (
        "postgresql://u:***@h/db?sslpassword=***&sslmode=require"
    )
    assert redact("host=h user=u password=s3cret dbname=d") == "host=h user=u password=*** dbname=d"
    assert redact("(got 'host=h password='s 3cret' dbname=d')") == "(got 'host=h password=*** dbname=d')"
    assert redact("PGPASSWORD=s3cret psql") == "PGPASSWORD=*** psql"
    # words, and names that only end like a secret's, are left alone
    assert redact("password authentication failed for user gc") == "password authentication failed for user gc"
    assert redact("sources.db.url: host=h user=u dbname=d") == "sources.db.url: host=h user=u dbname=d"


@pytest.mark.parametrize(
    ("sql", "ok"),
    [
        ("SELECT 1", True),
        ("  -- leading comment\nWITH 1 AS x SELECT x", True),
        ("SELECT ';' AS semicolon_in_a_string;", True),
        ("SELECT 1 /* a; b */", True),
        ("DROP TABLE t", False),
    ],
)
def test_sql_static_checks(sql: str, ok: bool) -> None:
    # A second statement ("SELECT 1; SELECT 2") is the engine's to refuse: see
    # tests/sources/test_clickhouse.py::test_a_second_statement_is_refused_by_the_engine.
    assert (sql_problems(sql) == []) is ok


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("gatecheck.yaml", "environments: &a {staging: [*a]}\n", "recursive anchor"),
        (
            "gates/hostile.yaml",
            "a: &a [x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n"
                for p, c in zip("abcdefgh", "bcdefghi", strict=True)
            ),
            "YAML aliases",
        ),
        ("gates/hostile.yaml", "phase: x\n" + "k" * 1_100_000 + ": 1\n", "the limit is"),
    ],
)
def test_hostile_yaml_is_a_clean_config_error(config_copy: Path, name: str, text: str, message: str) -> None:
    (config_copy / name).write_text(text)
    result = runner.invoke(app, ["validate", "--config", str(config_copy)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("share", [0, 0.0, -0.5, 1.5])
def test_a_mostly_that_would_judge_nothing_or_cannot_be_a_share_is_refused(config_copy: Path, share: float) -> None:
    """`mostly: 0` passes any values (Great Expectations accepts it) and `mostly: 7` only fails
    when the data arrives: written in the suite or as a threshold, both are refused before
    anything runs, naming where."""
    suite = config_copy / "suites/unmatched_edges.yaml"
    edit(suite, lambda d: d["expectations"][0].update(mostly=share))
    for command in (["validate"], ["run", "--phase", "warehouse-release"]):
        result = runner.invoke(app, [*command, "--config", str(config_copy)])
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().splitlines() == [
            "gatecheck: error: suites/unmatched_edges.yaml: expectations[0]: mostly: must be a number above 0 "
            f"and at most 1 (at 0, any values would pass) (got {share!r})"
        ]
    edit(suite, lambda d: d["expectations"][0].update(mostly={"$PARAMETER": "edges_mostly"}))
    edit(config_copy / "thresholds.yaml", lambda d: d["defaults"].update(edges_mostly=share))
    result = runner.invoke(app, ["validate", "--config", str(config_copy)])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        f"gatecheck: error: thresholds.yaml: defaults.edges_mostly: {share!r} must be a number above 0 and at "
        "most 1 (at 0, any values would pass): suites/unmatched_edges.yaml uses it in expectations[0] "
        "(expect_column_values_to_be_between) as mostly (for phases "
    ), line


@pytest.mark.parametrize("share", [1, 0.95, {"$PARAMETER": "edges_mostly"}])
def test_a_mostly_that_is_a_share_is_accepted(config_copy: Path, share: object) -> None:
    edit(config_copy / "suites/unmatched_edges.yaml", lambda d: d["expectations"][0].update(mostly=share))
    edit(config_copy / "thresholds.yaml", lambda d: d["defaults"].update(edges_mostly=0.99))
    if not isinstance(share, dict):
        edit(config_copy / "thresholds.yaml", lambda d: d["defaults"].pop("edges_mostly"))
    result = runner.invoke(app, ["validate", "--config", str(config_copy)])
    assert result.exit_code == 0, result.output


def test_a_value_set_threshold_must_be_a_list(config_copy: Path) -> None:
    def use_parameter(d: dict) -> None:
        d["expectations"][3]["value_set"] = {"$PARAMETER": "stream_storage"}

    edit(config_copy / "suites/stream_topology.yaml", use_parameter)
    edit(config_copy / "thresholds.yaml", lambda d: d["defaults"].update(stream_storage=["file"]))
    assert runner.invoke(app, ["validate", "--config", str(config_copy)]).exit_code == 0
    edit(config_copy / "thresholds.yaml", lambda d: d["defaults"].update(stream_storage="file"))
    result = runner.invoke(app, ["validate", "--config", str(config_copy)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "gatecheck: error: thresholds.yaml: defaults.stream_storage: 'file' must be a list: "
        "suites/stream_topology.yaml uses it in expectations[3] (expect_column_values_to_be_in_set) "
        "as value_set (for phases canary-10, canary-100, canary-50, prod-predeploy, prod-soak, staging-deploy, "
        "staging-predeploy, staging-soak)"
    ]


def test_validate_lists_problems_of_every_file_at_once_one_line_each(config_copy: Path) -> None:
    """A broken gatecheck.yaml hides neither a Great Expectations kwarg problem in a suite nor
    a threshold problem; each is one line naming its file and key."""
    edit(config_copy / "gatecheck.yaml", lambda d: d.update(servic={}))
    edit(config_copy / "suites/unmatched_edges.yaml", lambda d: d["expectations"][0].update(mostly="most"))
    edit(config_copy / "suites/rollup_parity.yaml", lambda d: d["expectations"].append({"type": "expect_column_values_to_be_betwen", "column": "x"}))
    edit(config_copy / "thresholds.yaml", lambda d: d["defaults"].update(fallback_event_max=5))
    for command in (["validate"], ["run", "--phase", "warehouse-release"]):
        result = runner.invoke(app, [*command, "--config", str(config_copy)])
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert lines == [
            "gatecheck: error: gatecheck.yaml: servic: unknown key (did you mean 'service'?) (allowed: environments, history, service, notify)",
            "gatecheck: error: suites/rollup_parity.yaml: expectations[1]: unknown Great Expectations expectation type 'expect_column_values_to_be_betwen' (did you mean 'expect_column_values_to_be_between'?)",
            "gatecheck: error: suites/unmatched_edges.yaml: expectations[0]: mostly: value is not a valid float",
            "gatecheck: error: thresholds.yaml: defaults.fallback_event_max: no suite uses a threshold of this name (did you mean 'fallback_events_max'?)",
        ], lines


def test_a_ledger_directory_that_does_not_exist_is_an_error(
    config_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gatecheck.demo.bus import free_port

    monkeypatch.setenv("GATECHECK_NATS_URL", f"nats://127.0.0.1:{free_port()}")
    missing = tmp_path / "nonexistent" / "dir"
    monkeypatch.setenv("GATECHECK_HISTORY_URL", f"sqlite:///{missing}/h.db")
    for command in (["run", "--phase", "staging-predeploy"], ["history", "--phase", "staging-predeploy"]):
        result = runner.invoke(app, [*command, "--config", str(config_copy)])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"the directory {missing} of the ledger" in lines[0], lines
    assert not missing.parent.exists()  # nothing created: the soak history was not silently reset

    # gatecheck's own default directory is created; so is the file in an existing directory.
    monkeypatch.delenv("GATECHECK_HISTORY_URL")
    result = runner.invoke(app, ["run", "--phase", "staging-predeploy", "--config", str(config_copy)])
    assert result.exit_code == 3, result.output  # the bus is down: inconclusive, and recorded
    assert (config_copy / ".gatecheck" / "history.db").is_file()
    monkeypatch.setenv("GATECHECK_HISTORY_URL", f"sqlite:///{tmp_path}/h.db")
    assert runner.invoke(app, ["run", "--phase", "staging-predeploy", "--config", str(config_copy)]).exit_code == 3
    assert (tmp_path / "h.db").is_file()


def test_a_value_set_from_thresholds_yaml_judges_and_reports(config_copy: Path) -> None:
    """A list threshold (value_set) is used by Great Expectations and shown with provenance."""
    import pandas as pd

    from gatecheck.evaluation.gate import judge
    from gatecheck.evaluation.plan import window_for
    from gatecheck.results import Outcome

    edit(config_copy / "suites/stream_topology.yaml", lambda d: d["expectations"][3].update(value_set={"$PARAMETER": "stream_storage"}))
    edit(config_copy / "thresholds.yaml", lambda d: d["defaults"].update(stream_storage=["file"]))
    project = load_project(config_copy, environ={})
    suite = project.suites["stream_topology"]
    thresholds = project.resolve_thresholds("staging-predeploy")
    frame = pd.DataFrame({"kind": ["stream"], "stream": ["AA_DLQ"], "consumer": [""], "exists": [True], "storage": ["memory"]})
    base = {"suite": suite.name, "source": "bus", "role": "required", "window": window_for(datetime.now(UTC), timedelta(minutes=1), timedelta(0))}
    result = judge(suite, frame, thresholds, base)
    storage = next(e for e in result.expectations if e.column == "storage")
    assert storage.outcome is Outcome.FAIL
    assert (storage.thresholds[0].name, storage.thresholds[0].value, storage.thresholds[0].provenance) == ("stream_storage", "file", "default")


def test_aliases_that_expand_too_far_are_refused_before_loading(config_copy: Path) -> None:
    """Few aliases can stand for millions of nodes (each level doubling the last): the
    expansion, not only the count of aliases, is bounded; a modest anchor still loads."""
    lines = ["x0: &x0 [lol]"] + [f"x{i}: &x{i} [*x{i - 1}, *x{i - 1}]" for i in range(1, 22)]
    (config_copy / "gatecheck.yaml").write_text("\n".join(lines) + "\n")
    # Refused by the count before the file is loaded: loading would build millions of nodes.
    with pytest.raises(ConfigError, match=r"gatecheck.yaml: YAML aliases \(\*name\) expand to more than 10,000 nodes"):
        load_project(config_copy, environ={})
    # A modest anchor, as a person writes one, still loads and resolves.
    (config_copy / "gatecheck.yaml").write_text((PROJECT / "gatecheck.yaml").read_text())
    thresholds = config_copy / "thresholds.yaml"
    thresholds.write_text(
        thresholds.read_text()
        .replace(
            "  canary-50: {core_hot_share_min: 0.45, fallback_events_max: 1000000000}\n",
            "  canary-50: &wide {core_hot_share_min: 0.45, fallback_events_max: 1000000000}\n"
            "  canary-100: *wide\n",
        )
    )
    project = load_project(config_copy, environ={})
    assert project.resolve_thresholds("canary-100")["core_hot_share_min"].value == 0.45


def test_validate_names_every_cross_file_problem_at_once(config_copy: Path) -> None:
    """A gate with an unknown environment and an unknown suite: both lines, not the first."""
    gate = yaml.safe_load((config_copy / "gates" / "warehouse-release.yaml").read_text())
    gate["environment"] = "stagin"
    gate["checks"][0]["suite"] = "unmatched_edge"
    (config_copy / "gates" / "warehouse-release.yaml").write_text(yaml.safe_dump(gate))
    result = runner.invoke(app, ["validate", "--config", str(config_copy)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert any("environment: unknown environment 'stagin'" in line and "did you mean 'staging'" in line for line in lines)
    assert any("checks[0].suite: unknown suite 'unmatched_edge'" in line for line in lines), lines


def test_a_bad_duration_names_the_value_once(config_copy: Path) -> None:
    suite = yaml.safe_load((config_copy / "suites" / "unmatched_edges.yaml").read_text())
    suite["window"]["length"] = "1hour"
    (config_copy / "suites" / "unmatched_edges.yaml").write_text(yaml.safe_dump(suite))
    result = runner.invoke(app, ["validate", "--config", str(config_copy)])
    assert result.exit_code == 2
    (line,) = [line for line in result.stderr.splitlines() if "window.length" in line]
    assert line.count("'1hour'") == 1, line


def _documented_blocks() -> list[tuple[str, int, str]]:
    """Every ```yaml block of the README and docs/: (file, index, text)."""
    import re

    from ..conftest import REPO

    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for index, block in enumerate(re.findall(r"```yaml\n(.*?)```", path.read_text(), re.S)):
            found.append((str(path.relative_to(REPO)), index, block))
    return found


#: Blocks that are not gatecheck configuration (a rollout controller's, quoted for how it
#: calls gatecheck) — each named, so a new block is never skipped silently.
NOT_GATECHECK = ({"successCondition", "failureCondition", "provider"}, {"webhooks"})


@pytest.mark.parametrize(("doc", "index", "block"), _documented_blocks(), ids=lambda v: str(v)[:20])
def test_every_configuration_block_of_the_docs_validates(doc: str, index: int, block: str, config_copy: Path) -> None:
    """A complete configuration block as a user copies it — a gatecheck.yaml part, a gate, a
    suite, thresholds — dropped into the reference project validates (illustrative fragments
    with "..." are left out, and so are partial suite snippets without a name)."""
    from gatecheck.config.loading import _LOADER

    data = yaml.load(block, Loader=_LOADER)  # the way gatecheck reads it (YAML 1.2 booleans)
    import re

    if "..." in re.sub(r"#.*", "", block) or not isinstance(data, dict) or set(data) in NOT_GATECHECK:
        pytest.skip("an illustrative fragment or another tool's configuration")
    if "phase" in data:
        (config_copy / "gates" / f"{data['phase']}.yaml").write_text(block)
    elif "name" in data:
        (config_copy / "suites" / f"{data['name']}.yaml").write_text(block)
    elif "defaults" in data:
        (config_copy / "thresholds.yaml").write_text(block)
    elif {"compare", "reconcile", "slo", "query", "expectations"} >= set(data):
        pytest.skip("the part of a suite that a paragraph explains")
    else:
        project = yaml.safe_load((config_copy / "gatecheck.yaml").read_text())

        def merge(into: dict, extra: dict) -> None:  # a block adds to the file, as a person merges it
            for key, value in extra.items():
                if isinstance(value, dict) and isinstance(into.get(key), dict):
                    merge(into[key], value)
                else:
                    into[key] = value

        merge(project, data)
        (config_copy / "gatecheck.yaml").write_text(yaml.safe_dump(project) + "\n")
        text = (config_copy / "gatecheck.yaml").read_text()
        (config_copy / "gatecheck.yaml").write_text(text.replace("'on':", "on:"))  # as a person writes it
        (config_copy / "secrets").mkdir()
        (config_copy / "secrets" / "incident-hook").write_text("https://hooks.example/incident\n")
    result = runner.invoke(
        app, ["validate", "--config", str(config_copy)],
        env={"SLACK_WEBHOOK_URL": "https://hooks.example/slack", "GATECHECK_API_TOKEN": "t",
             "GATECHECK_CLICKHOUSE_PASSWORD": "p"},
    )  # fmt: skip
    assert result.exit_code == 0, f"{doc} block {index}: {result.output}"


def test_an_unset_notify_variable_stops_only_serve(config_copy: Path) -> None:
    """Only `serve` sends notifications: an unset ${SLACK_WEBHOOK_URL} in notify: no longer
    stops run, explain, phases and validate (validate says what serve will need)."""
    project = yaml.safe_load((config_copy / "gatecheck.yaml").read_text())
    project["notify"] = [{"name": "slack", "kind": "slack", "url": "${SLACK_WEBHOOK_URL}"}]
    (config_copy / "gatecheck.yaml").write_text(yaml.safe_dump(project))
    env = {"SLACK_WEBHOOK_URL": ""}  # unset (empty counts as unset)
    for command in (["phases"], ["explain", "--phase", "staging-soak"]):
        result = runner.invoke(app, [*command, "--config", str(config_copy)], env=env)
        assert result.exit_code == 0, (command, result.output)
    validated = runner.invoke(app, ["validate", "--config", str(config_copy)], env=env)
    assert validated.exit_code == 0, validated.output
    assert validated.stderr.strip() == (
        "gatecheck: note: gatecheck.yaml: notify[0].url: environment variable SLACK_WEBHOOK_URL is not set "
        "and has no default — `gatecheck serve` needs it to notify"
    )
    served = runner.invoke(app, ["serve", "--config", str(config_copy)], env=env)
    assert served.exit_code == 2
    assert served.stderr.strip() == (
        "gatecheck: error: gatecheck.yaml: notify[0].url: environment variable SLACK_WEBHOOK_URL is not set "
        "and has no default"
    )
    # set, every command has the target
    loaded = load_project(config_copy, environ={"SLACK_WEBHOOK_URL": "https://hooks.example/x"})
    assert [t.name for t in loaded.config.notify] == ["slack"] and loaded.notify_unresolved == ()


def test_a_file_changed_between_two_loads_is_read_as_it_is_now(config_copy: Path) -> None:
    """Parsed files are kept by their text, so a second load of an unchanged project is cheap;
    a changed file is parsed again, and what one load made of a file is not what the next gets."""
    before = load_project(config_copy)
    thresholds = config_copy / "thresholds.yaml"
    text = thresholds.read_text()
    document = yaml.safe_load(text)
    document["defaults"]["freshness_lag_max_s"] = 4321
    thresholds.write_text(yaml.safe_dump(document))
    after = load_project(config_copy)
    assert before.thresholds != after.thresholds
    assert after.thresholds.defaults["freshness_lag_max_s"] == 4321
    thresholds.write_text(text)
    assert load_project(config_copy).thresholds == before.thresholds
