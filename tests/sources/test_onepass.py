"""The backtest's one-pass rewrite (``gatecheck.sources.clickhouse.onepass``) on chDB: for any rows and
any window shape it accepts, every step's frame equals the frame of that step's own query;
shapes it cannot prove equal are refused and asked step by step (``UNION ALL``), still equal."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatecheck.sources.clickhouse import ClickHouseSource, ClickHouseSourceConfig
from gatecheck.sources.clickhouse.connection import ClickHouse, Target
from gatecheck.sources.clickhouse.onepass import one_pass, steps_of

BASE = datetime(2026, 11, 20, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.fixture(scope="module")
def chdb(warehouse: Path) -> Iterator[tuple[ClickHouse, Any, str]]:
    """A table ``t`` in a database of its own in the session's chDB path (chDB embeds one
    path per process): the hub, a connection to that database, and its URL."""
    url = f"chdb://{warehouse}?database=onepass"
    with ClickHouse() as hub:
        hub.connect(Target.parse(f"chdb://{warehouse}", warehouse)).command(
            "CREATE DATABASE IF NOT EXISTS onepass"
        )
        connection = hub.connect(Target.parse(url, warehouse))
        connection.command("DROP TABLE IF EXISTS t")
        connection.command(
            "CREATE TABLE t (ts DateTime64(3), g String, v Int64) ENGINE = MergeTree ORDER BY ts"
        )
        yield hub, connection, url


def fill(connection: Any, rows: list[tuple[int, str, int]]) -> None:
    connection.command("TRUNCATE TABLE t")
    if rows:
        values = ", ".join(f"(fromUnixTimestamp64Milli(toInt64({ms})), '{g}', {v})" for ms, g, v in rows)
        connection.command(f"INSERT INTO t VALUES {values}")


def compare(hub: ClickHouse, url: str, sql: str, sets: list[dict[str, Any]]) -> list[pd.DataFrame]:
    """query_steps and each step's own query; asserts they are equal, returns the frames."""

    async def go() -> list[pd.DataFrame]:
        config = ClickHouseSourceConfig(type="clickhouse", url=url)
        source = ClickHouseSource("w", config, Path("/"), hub)
        together = await source.query_steps(sql, sets)
        assert together is not None and len(together) == len(sets)
        for frame, parameters in zip(together, sets, strict=True):
            alone = await source.query(sql, parameters)
            if alone.empty:  # no row: judged alike whatever columns the driver names
                assert frame.empty, parameters
            else:
                pd.testing.assert_frame_equal(frame, alone, obj=str(parameters))
        await source.close()
        return together

    return asyncio.run(go())


def step_sets(
    first_end: datetime, step: timedelta, length: timedelta, settle: timedelta, count: int, names: set[str]
):
    sets = []
    for k in range(count):
        end = first_end + k * step
        every = {"window_start": end - length, "window_end": end, "as_of": end + settle, "tolerance": 5}
        sets.append({n: every[n] for n in sorted(names)})
    return sets


LOWER = [
    "ts >= {window_start:DateTime64(3)}",
    "ts > {window_start:DateTime64(3)}",
    "{window_start:DateTime64(3)} <= ts",
    "ts > {as_of:DateTime64(3)} - INTERVAL 90 MINUTE",
    "ts + INTERVAL 10 MINUTE >= {window_start:DateTime64(3)}",
]
UPPER = [
    "ts < {window_end:DateTime64(3)}",
    "ts <= {window_end:DateTime64(3)}",
    "{window_end:DateTime64(3)} > ts",
    "ts <= {as_of:DateTime64(3)}",
    "ts + INTERVAL 1 HOUR <= {window_end:DateTime64(3)}",
]
SHAPES = {
    "grouped": "SELECT g, count() AS n, sum(v) AS total, max(ts) AS newest, "
    "dateDiff('millisecond', min(ts), {window_end:DateTime64(3)}) AS age_ms FROM t WHERE {where} "
    "GROUP BY g HAVING max(ts) >= {window_start:DateTime64(3)} - INTERVAL 1 DAY ORDER BY g",
    "ungrouped": "SELECT count() AS n, countIf(v > {tolerance:Int64}) AS big, "
    "if(count() = 0, -1, dateDiff('millisecond', max(ts), {as_of:DateTime64(3)})) AS lag_ms, "
    "quantileExact(0.5)(v) AS median FROM t WHERE {where}",
    "rows": "SELECT g, v, ts, {window_end:DateTime64(3)} AS step_end FROM t WHERE {where} ORDER BY ts, g, v",
    "union": "SELECT kind, n FROM (SELECT 'all' AS kind, count() AS n FROM t WHERE {where} "
    "UNION ALL SELECT g, count() FROM t WHERE {where} GROUP BY g) ORDER BY kind",
}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    # multiples of 10 minutes land on the steps' boundaries often; the others anywhere
    minutes=st.lists(
        st.one_of(st.integers(-20, 40).map(lambda m: m * 10), st.integers(-200, 400)), max_size=25
    ),
    shape=st.sampled_from(sorted(SHAPES)),
    lower=st.sampled_from(LOWER),
    upper=st.sampled_from(UPPER),
    step_min=st.sampled_from([20, 30, 60]),
    length_min=st.sampled_from([20, 60, 90]),
    settle_min=st.sampled_from([0, 15]),
    count=st.integers(2, 9),
    offset_ms=st.sampled_from([0, 1, -1, 500]),
)
def test_every_step_of_the_one_pass_form_equals_its_own_query(
    chdb, minutes, shape, lower, upper, step_min, length_min, settle_min, count, offset_ms
) -> None:
    """Rows on, just before and just after step boundaries (whole minutes ± 1 ms), windows
    longer and shorter than the step, strict and non-strict bounds either way round, a
    lookback from as_of, grouped, ungrouped (a row per step even without data), plain rows,
    and a UNION ALL of both."""
    hub, connection, url = chdb
    rows = [
        (int((BASE + m * MINUTE).timestamp() * 1000) + offset_ms * (i % 3 - 1), "ab"[i % 2], i)
        for i, m in enumerate(minutes)
    ]
    fill(connection, rows)
    sql = SHAPES[shape].replace("{where}", f"{lower} AND {upper} AND v >= 0")
    names = {n for n in ("window_start", "window_end", "as_of", "tolerance") if "{" + n + ":" in sql}
    sets = step_sets(
        BASE + 60 * MINUTE, step_min * MINUTE, length_min * MINUTE, settle_min * MINUTE, count, names
    )
    steps = steps_of(sets)
    assert steps is not None
    assert one_pass(sql, steps) is not None, sql
    compare(hub, url, sql, sets)


def test_every_bound_counts_the_rows_on_step_boundaries_as_its_own_query_does(chdb) -> None:
    """Every lower bound with every upper bound over rows every 5 minutes exactly, 1 ms before
    and 1 ms after (every step boundary holds rows): a strict bound read as non-strict, or a
    boundary row handed to the neighbouring step, changes a count."""
    hub, connection, url = chdb
    rows = [
        (int((BASE + m * MINUTE).timestamp() * 1000) + delta, "ab"[m % 2], m)
        for m in range(-120, 300, 5)
        for delta in (-1, 0, 1)
    ]
    fill(connection, rows)
    sets = step_sets(
        BASE + 60 * MINUTE, 20 * MINUTE, 60 * MINUTE, 15 * MINUTE, 8, {"window_start", "window_end", "as_of"}
    )
    seen = 0
    for lower in LOWER:
        for upper in UPPER:
            sql = f"SELECT g, count() AS n, sum(v) AS total FROM t WHERE {lower} AND {upper} GROUP BY g ORDER BY g"
            names = {n for n in ("window_start", "window_end", "as_of") if "{" + n + ":" in sql}
            steps = steps_of([{n: s[n] for n in names} for s in sets])
            assert steps is not None and one_pass(sql, steps) is not None, sql
            frames = compare(hub, url, sql, [{n: s[n] for n in names} for s in sets])
            seen += sum(not f.empty for f in frames)
    assert seen >= 0.9 * len(LOWER) * len(UPPER) * len(sets)  # the comparisons saw rows


def test_the_one_pass_form_holds_steps_without_any_row(chdb) -> None:
    """An empty table: an ungrouped aggregate still answers one row per step (count 0), a
    grouped one none."""
    hub, connection, url = chdb
    fill(connection, [])
    sets = step_sets(
        BASE, 60 * MINUTE, 60 * MINUTE, 0 * MINUTE, 4, {"window_start", "window_end", "as_of", "tolerance"}
    )
    ungrouped = SHAPES["ungrouped"].replace("{where}", f"{LOWER[0]} AND {UPPER[0]}")
    frames = compare(hub, url, ungrouped, sets)
    assert [f["n"].tolist() for f in frames] == [[0]] * 4
    grouped = SHAPES["grouped"].replace("{where}", f"{LOWER[0]} AND {UPPER[0]}")
    sets = [{k: v for k, v in s.items() if k in ("window_start", "window_end")} for s in sets]
    assert all(f.empty for f in compare(hub, url, grouped, sets))


REFUSED = {
    "LIMIT": "SELECT g, count() AS n FROM t WHERE {w} GROUP BY g ORDER BY g LIMIT 1",
    "a join ON": "SELECT a.g, a.n FROM (SELECT g, count() AS n FROM t WHERE {w} GROUP BY g) AS a "
    "JOIN (SELECT g FROM t GROUP BY g) AS b ON a.g = b.g ORDER BY a.g",
    "a time parameter inside an aggregate": "SELECT countIf(ts < {window_end:DateTime64(3)}) AS n "
    "FROM t WHERE ts >= {window_start:DateTime64(3)}",
    "BETWEEN": "SELECT count() AS n FROM t WHERE ts BETWEEN {window_start:DateTime64(3)} AND {window_end:DateTime64(3)}",
    "a subquery in WHERE": "SELECT count() AS n FROM t WHERE {w} AND g IN (SELECT g FROM t WHERE v > 2)",
    "a window function": "SELECT g, v, row_number() OVER (PARTITION BY g ORDER BY ts) AS r FROM t WHERE {w} "
    "ORDER BY g, v",
    "SELECT *": "SELECT * FROM t WHERE {w} ORDER BY ts, g, v",
    "an interval in months": "SELECT count() AS n FROM t WHERE ts >= {window_start:DateTime64(3)} - INTERVAL 1 MONTH "
    "AND ts < {window_end:DateTime64(3)}",
    "OR of time conditions": "SELECT count() AS n FROM t WHERE ts >= {window_start:DateTime64(3)} "
    "OR ts < {window_end:DateTime64(3)}",
    "positional GROUP BY": "SELECT g, count() AS n FROM t WHERE {w} GROUP BY 1 ORDER BY 1",
}


@pytest.mark.parametrize("why", sorted(REFUSED))
def test_a_shape_the_rewrite_cannot_prove_is_refused_and_asked_step_by_step(chdb, why) -> None:
    hub, connection, url = chdb
    fill(
        connection, [(int((BASE + m * MINUTE).timestamp() * 1000), "ab"[m % 2], m) for m in range(0, 300, 7)]
    )
    sql = REFUSED[why].replace("{w}", f"{LOWER[0]} AND {UPPER[0]}")
    sets = step_sets(
        BASE + 60 * MINUTE, 30 * MINUTE, 60 * MINUTE, 0 * MINUTE, 5, {"window_start", "window_end"}
    )
    steps = steps_of(sets)
    assert steps is not None
    assert one_pass(sql, steps) is None
    frames = compare(hub, url, sql, sets)  # UNION ALL of the suite's own query, each step equal
    assert any(not f.empty for f in frames)


def test_steps_of_only_evenly_spaced_time_parameters() -> None:
    sets = step_sets(
        BASE, 60 * MINUTE, 60 * MINUTE, 0 * MINUTE, 3, {"window_start", "window_end", "tolerance"}
    )
    steps = steps_of(sets)
    assert steps is not None
    assert (steps.count, steps.step_us, sorted(steps.first), steps.constants) == (
        3,
        3_600_000_000,
        ["window_end", "window_start"],
        {"tolerance": 5},
    )
    assert steps_of(sets[:1]) is None  # one step
    assert (
        steps_of([sets[0], sets[1], {**sets[2], "window_end": sets[2]["window_end"] + MINUTE}]) is None
    )  # uneven
    assert steps_of([sets[0], sets[1], {**sets[2], "tolerance": 6}]) is None  # a threshold that moves
    naive = [
        {k: v.replace(tzinfo=None) if isinstance(v, datetime) else v for k, v in s.items()} for s in sets
    ]
    assert steps_of(naive) is None
    assert steps_of(list(reversed(sets))) is None  # newest first
    assert steps_of([{**s, "window_end": s["window_end"] + timedelta(microseconds=5)} for s in sets]) is None
