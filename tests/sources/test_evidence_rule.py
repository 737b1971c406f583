"""The evidence rule (gatecheck.sources.sqltext.answers_a_row_without_data) against the
engines themselves: each query runs on a window that holds no rows, on chDB and on the
embedded PostgreSQL, and the rule must say "answers a row without data" exactly when the
engine answered one. A query the rule missed needed no ``evidence:`` and was GO on an empty
window (its one row of zeros passed every bound)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from gatecheck.sources import SOURCE_TYPES
from gatecheck.sources.clickhouse.connection import ClickHouse, Target

from ..conftest import AS_OF
from .test_clickhouse import query as ask_clickhouse
from .test_clickhouse import source as clickhouse_source
from .test_postgresql import ask as ask_postgresql
from .test_postgresql import source as postgresql_source

CLICKHOUSE_WINDOW = "ts >= {window_start:DateTime64(3)} AND ts < {window_end:DateTime64(3)}"
POSTGRESQL_WINDOW = "ts >= {window_start:timestamptz} AND ts < {window_end:timestamptz}"

#: Queries over an empty window, each answered by the engine with a row or none.
CLICKHOUSE = [
    "SELECT max(x) AS worst FROM t WHERE {w}",
    "SELECT k, max(x) AS worst FROM t WHERE {w} GROUP BY k",
    # the empty grouping set is a row of aggregates over no rows
    "SELECT k, count() AS n FROM t WHERE {w} GROUP BY GROUPING SETS ((k), ())",
    "SELECT count() AS n FROM t WHERE {w} GROUP BY GROUPING SETS (())",
    "SELECT k, count() AS n FROM t WHERE {w} GROUP BY GROUPING SETS ((k))",
    "SELECT k, count() AS n FROM t WHERE {w} GROUP BY GROUPING SETS ((k), ()) HAVING count() > 0",
    # ClickHouse's ROLLUP, CUBE and a constant key answer nothing without rows
    "SELECT k, count() AS n FROM t WHERE {w} GROUP BY ROLLUP(k)",
    "SELECT k, count() AS n FROM t WHERE {w} GROUP BY CUBE(k)",
    "SELECT k, count() AS n FROM t WHERE {w} GROUP BY k WITH ROLLUP",
    "SELECT max(x) AS worst FROM t WHERE {w} GROUP BY tuple()",
    "SELECT max(x) AS worst FROM t WHERE {w} GROUP BY ()",
    # a HAVING keeps the one row unless it asks for a row
    "SELECT max(x) AS worst FROM t WHERE {w} HAVING count() > 0",
    "SELECT max(x) AS worst FROM t WHERE {w} HAVING 0 < count() AND worst < 5",
    "SELECT max(x) AS worst FROM t WHERE {w} HAVING countIf(x > 1) >= 1",
    "SELECT max(x) AS worst FROM t WHERE {w} HAVING count() != 0",
    "SELECT max(x) AS worst FROM t WHERE {w} HAVING worst < 100",
    "SELECT max(x) AS worst FROM t WHERE {w} HAVING count() > 0 OR worst < 5",
    "SELECT max(x) AS worst FROM t WHERE {w} HAVING count() >= 0",
    # filled rows are rows without data; a fill with one end only fills nothing
    "SELECT toStartOfHour(ts) AS h, count() AS n FROM t WHERE {w} GROUP BY h ORDER BY h"
    " WITH FILL FROM toStartOfHour(toDateTime({window_start:DateTime64(3)})) TO toDateTime({window_end:DateTime64(3)}) STEP INTERVAL 1 HOUR",
    "SELECT toStartOfHour(ts) AS h, count() AS n FROM t WHERE {w} GROUP BY h ORDER BY h"
    " WITH FILL FROM toStartOfHour(toDateTime({window_start:DateTime64(3)})) STEP INTERVAL 1 HOUR",
    "SELECT dummy AS d FROM system.one WHERE {window_start:DateTime64(3)} < {window_end:DateTime64(3)}",
]
POSTGRESQL = [
    "SELECT coalesce(max(x), 0) AS worst FROM t WHERE {w}",
    "SELECT k, max(x) AS worst FROM t WHERE {w} GROUP BY k",
    # PostgreSQL's GROUP BY (), ROLLUP and CUBE all hold the empty grouping set
    "SELECT coalesce(max(x), 0) AS worst FROM t WHERE {w} GROUP BY ()",
    "SELECT k, count(*) AS n FROM t WHERE {w} GROUP BY ROLLUP (k)",
    "SELECT k, count(*) AS n FROM t WHERE {w} GROUP BY CUBE (k)",
    "SELECT k, count(*) AS n FROM t WHERE {w} GROUP BY DISTINCT ROLLUP (k)",
    "SELECT k, count(*) AS n FROM t WHERE {w} GROUP BY GROUPING SETS ((k), ())",
    "SELECT k, count(*) AS n FROM t WHERE {w} GROUP BY GROUPING SETS (ROLLUP (k))",
    "SELECT k, count(*) AS n FROM t WHERE {w} GROUP BY GROUPING SETS ((k))",
    "SELECT k, x, count(*) AS n FROM t WHERE {w} GROUP BY k, ROLLUP (x)",
    "SELECT k, count(*) AS n FROM t WHERE {w} GROUP BY ROLLUP (k) HAVING count(*) > 0",
    "SELECT coalesce(max(x), 0) AS worst FROM t WHERE {w} HAVING count(*) >= 1",
    "SELECT coalesce(max(x), 0) AS worst FROM t WHERE {w} HAVING coalesce(max(x), 0) < 5",
    "SELECT 1 AS one FROM t WHERE {w} HAVING true",
]


@pytest.fixture(scope="module")
def empty_clickhouse(warehouse: Path) -> str:
    with ClickHouse() as clickhouse:
        connection = clickhouse.connect(Target.parse(f"chdb://{warehouse}", warehouse))
        connection.command("CREATE DATABASE IF NOT EXISTS evidence_rule")
        connection.command(
            "CREATE TABLE IF NOT EXISTS evidence_rule.t (k String, x Float64, ts DateTime64(3, 'UTC'))"
            " ENGINE = MergeTree ORDER BY ts"
        )
    return f"chdb://{warehouse}?database=evidence_rule"


@pytest.fixture(scope="module")
def empty_postgresql(postgres_server) -> str:
    url = postgres_server.fresh_url("evidence_rule")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE t (k text, x double precision, ts timestamptz)")
    return url


WINDOW = {"window_start": AS_OF.replace(hour=0), "window_end": AS_OF}


@pytest.mark.parametrize("template", CLICKHOUSE)
def test_clickhouse_queries_are_judged_as_chdb_answers_them(empty_clickhouse: str, template: str) -> None:
    sql = template.replace("{w}", CLICKHOUSE_WINDOW)
    answered = len(ask_clickhouse(clickhouse_source(empty_clickhouse), sql, **WINDOW)) > 0  # type: ignore[arg-type]
    rule = SOURCE_TYPES["clickhouse"].rows_without_data
    assert rule is not None
    assert rule(sql) is answered, f"chDB answered {'a row' if answered else 'no row'} to {sql}"


@pytest.mark.parametrize("template", POSTGRESQL)
def test_postgresql_queries_are_judged_as_postgresql_answers_them(
    empty_postgresql: str, template: str
) -> None:
    sql = template.replace("{w}", POSTGRESQL_WINDOW)
    answered = len(ask_postgresql(postgresql_source(empty_postgresql), sql, WINDOW)) > 0
    rule = SOURCE_TYPES["postgresql"].rows_without_data
    assert rule is not None
    assert rule(sql) is answered, f"PostgreSQL answered {'a row' if answered else 'no row'} to {sql}"


# ---------------------------------------------------------------- random shapes against chDB

from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_PROJECTIONS = st.sampled_from(
    ["max(x) AS a", "count() AS a", "countIf(x > 1) AS a", "k AS a", "x AS a", "1 AS a", "sum(x) AS a",
     "any(k) AS a", "uniqExact(k) AS a", "coalesce(max(x), 0) AS a", "max(x) OVER () AS a",
     "k AS a, max(x) AS b", "'c' AS a, count() AS b", "toStartOfHour(ts) AS a, count() AS b"]
)  # fmt: skip
_GROUPS = st.sampled_from(
    ["", " GROUP BY k", " GROUP BY ALL", " GROUP BY tuple()", " GROUP BY k WITH TOTALS",
     " GROUP BY GROUPING SETS ((k), ())", " GROUP BY ROLLUP(k)", " GROUP BY k WITH CUBE"]
)  # fmt: skip
_HAVING = st.sampled_from(
    ["", " HAVING count() > 0", " HAVING count() >= 0", " HAVING max(x) < 100", " HAVING count() != 0 AND 1"]
)
_FROM = st.sampled_from(["t", "(SELECT * FROM t)", "(SELECT max(x) AS x, any(k) AS k, any(ts) AS ts FROM t)"])
_OUTER = st.sampled_from(["{q}", "SELECT a FROM ({q})", "{q} UNION ALL SELECT x FROM t", "WITH w AS ({q}) SELECT a FROM w"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(projection=_PROJECTIONS, source=_FROM, group=_GROUPS, having=_HAVING, outer=_OUTER)
# found by this test: GROUP BY ALL over a constant groups by nothing once HAVING aggregates
@example(projection="1 AS a", source="t", group=" GROUP BY ALL", having=" HAVING count() >= 0", outer="{q}")
def test_no_query_chdb_answers_over_an_empty_window_passes_for_one_that_does_not(
    empty_clickhouse: str, projection: str, source: str, group: str, having: str, outer: str
) -> None:
    """Random shapes: the rule may be unsure (say "a row" where chDB answers none), never the
    other way — a query answering a row over nothing taken for one whose rows are its data."""
    inner = f"SELECT {projection} FROM {source} WHERE {CLICKHOUSE_WINDOW}{group}{having}"
    sql = outer.replace("{q}", inner)
    try:
        answered = len(ask_clickhouse(clickhouse_source(empty_clickhouse), sql, **WINDOW)) > 0  # type: ignore[arg-type]
    except Exception:  # a shape the engine refuses (an aggregate in GROUP BY, …): nothing to judge
        return
    rule = SOURCE_TYPES["clickhouse"].rows_without_data
    assert rule is not None
    assert rule(sql) or not answered, f"chDB answered a row to {sql}"


_PG_PROJECTIONS = st.sampled_from(
    ["max(x) AS a", "count(*) AS a", "count(*) FILTER (WHERE x > 1) AS a", "k AS a", "x AS a", "1 AS a",
     "sum(x) AS a", "coalesce(max(x), 0) AS a", "max(x) OVER () AS a", "k AS a, max(x) AS b"]
)  # fmt: skip
_PG_GROUPS = st.sampled_from(
    ["", " GROUP BY k", " GROUP BY ()", " GROUP BY ROLLUP (k)", " GROUP BY CUBE (k)",
     " GROUP BY GROUPING SETS ((k), ())", " GROUP BY k, ROLLUP (x)", " GROUP BY 1"]
)  # fmt: skip
_PG_HAVING = st.sampled_from(["", " HAVING count(*) > 0", " HAVING count(*) >= 0", " HAVING max(x) < 100"])
_PG_FROM = st.sampled_from(["t", "(SELECT * FROM t) AS s", "(SELECT max(x) AS x, max(k) AS k, max(ts) AS ts FROM t) AS s"])
_PG_OUTER = st.sampled_from(["{q}", "SELECT a FROM ({q}) AS o", "WITH w AS ({q}) SELECT a FROM w"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(projection=_PG_PROJECTIONS, source=_PG_FROM, group=_PG_GROUPS, having=_PG_HAVING, outer=_PG_OUTER)
def test_no_query_postgresql_answers_over_an_empty_window_passes_for_one_that_does_not(
    empty_postgresql: str, projection: str, source: str, group: str, having: str, outer: str
) -> None:
    """The same for PostgreSQL: unsure may say "a row", never the other way."""
    inner = f"SELECT {projection} FROM {source} WHERE {POSTGRESQL_WINDOW}{group}{having}"
    sql = outer.replace("{q}", inner)
    try:
        answered = len(ask_postgresql(postgresql_source(empty_postgresql), sql, WINDOW)) > 0
    except Exception:  # a shape PostgreSQL refuses (a column neither grouped nor aggregated, …)
        return
    rule = SOURCE_TYPES["postgresql"].rows_without_data
    assert rule is not None
    assert rule(sql) or not answered, f"PostgreSQL answered a row to {sql}"
