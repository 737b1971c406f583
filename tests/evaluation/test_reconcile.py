"""Reconciliation by key on real engines: chDB (clickhouse-connect's chDB backend) and the
embedded PostgreSQL, each side hashing its own rows; the findings against the true sets of
missing, extra, changed and duplicated keys."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gatecheck.config import load_project
from gatecheck.evaluation.reconcile import (
    JointPair,
    MemorySide,
    SqlForm,
    SqlSide,
    canonical_row,
    classify,
    decode_key,
    hashing_for,
    reconcile,
)
from gatecheck.results import VerdictState
from gatecheck.sources.clickhouse import ClickHouseSource, ClickHouseSourceConfig
from gatecheck.sources.clickhouse.connection import ClickHouse, Target
from gatecheck.sources.postgresql import PostgreSQLSource, PostgreSQLSourceConfig

KEYS = {"id": "text"}
VALUES = {"athlete": "text", "score": "number", "seen": "timestamp", "ok": "boolean", "n": "integer"}
NAMES = [*KEYS, *VALUES]
# The same records in different types on each engine: Float32 against numeric(12,4), Int16
# against integer, DateTime64(3) in another zone against timestamptz.
CH_DDL = (
    "id Nullable(String), athlete Nullable(String), score Nullable(Float32), "
    "seen Nullable(DateTime64(3, 'Asia/Kolkata')), ok Nullable(Bool), n Nullable(Int16)"
)
CH_DDL_WIDE = (
    "id Nullable(String), athlete Nullable(String), score Nullable(Decimal(18, 6)), "
    "seen Nullable(DateTime64(6, 'UTC')), ok Nullable(UInt8), n Nullable(Int64)"
)
PG_DDL = "id text, athlete text, score numeric(12,4), seen timestamptz, ok boolean, n integer"

Record = tuple[Any, ...]
counter = itertools.count()


@pytest.fixture(scope="module")
def hub(warehouse: Path) -> Iterator[tuple[ClickHouse, Path]]:
    clickhouse = ClickHouse()
    yield clickhouse, warehouse
    clickhouse.close()


@pytest.fixture(scope="module")
def pg_url(postgres_server: Any) -> str:
    return str(postgres_server.fresh_url("reconcile"))


class Engines:
    """Tables of records on chDB and PostgreSQL, and sides reading them."""

    def __init__(self, hub: ClickHouse, warehouse: Path, pg_url: str) -> None:
        self.hub, self.warehouse, self.pg_url = hub, warehouse, pg_url
        self.admin = hub.connect(Target.parse(f"chdb://{warehouse}?database=default", Path(".")))

    def table(self, engine: str, records: list[Record], ddl: str | None = None) -> str:
        name = f"rc_{next(counter)}"
        if engine == "clickhouse":
            self.admin.client.command("CREATE DATABASE IF NOT EXISTS reconcile")
            self.admin.client.command(
                f"CREATE TABLE reconcile.{name} ({ddl or CH_DDL}) ENGINE = MergeTree ORDER BY tuple()"
            )
            if records:
                self.admin.client.insert(f"reconcile.{name}", [list(r) for r in records], column_names=NAMES)
            return f"SELECT * FROM reconcile.{name}"
        import psycopg

        with psycopg.connect(self.pg_url, autocommit=True) as connection:
            connection.execute(f"CREATE TABLE {name} ({ddl or PG_DDL})")
            with connection.cursor() as cursor, cursor.copy(f"COPY {name} FROM STDIN") as copy:
                for record in records:
                    copy.write_row(record)
        return f"SELECT * FROM {name}"

    def side(self, name: str, engine: str, sql: str, hashing: str) -> SqlSide:
        if engine == "clickhouse":
            source: Any = ClickHouseSource(
                name,
                ClickHouseSourceConfig(type="clickhouse", url=f"chdb://{self.warehouse}"),
                Path("."),
                self.hub,
            )
        else:
            source = PostgreSQLSource(
                name, PostgreSQLSourceConfig(type="postgresql", url=self.pg_url), Path(".")
            )
        return SqlSide(name, source, sql, {}, SqlForm(engine, hashing, KEYS, VALUES, 4))  # type: ignore[arg-type]

    def pair(
        self, engines: tuple[str, str], first: list[Record], second: list[Record], joint: bool = False,
        **options: Any,
    ) -> tuple[Any, SqlSide, SqlSide]:  # fmt: skip
        """Reconcile ``first`` against ``second``; ``joint``: both on one source, each round one
        query over both."""
        hashing = hashing_for(engines)
        a = self.side("a", engines[0], self.table(engines[0], first), hashing)
        b = self.side("b", engines[1], self.table(engines[1], second), hashing)

        async def run() -> Any:
            try:
                if joint:
                    assert engines[0] == engines[1]
                    both = JointPair(("a", "b"), a.source, (a.sql, b.sql), {}, a.form)
                    return await reconcile(both, sample=1000, **options)
                return await reconcile(a, b, sample=1000, **options)
            finally:
                for side in (a, b):
                    await side.source.close()

        return asyncio.run(run()), a, b


@pytest.fixture
def engines(hub: tuple[ClickHouse, Path], pg_url: str) -> Engines:
    return Engines(hub[0], hub[1], pg_url)


def record(i: int, **changes: Any) -> Record:
    base = {
        "id": f"msg-{i:05d}",
        "athlete": f"ath-{i % 37:03d}",
        "score": Decimal(f"{(i % 400) / 8:.4f}"),  # exact in Float32 and numeric alike
        "seen": datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=97 * i, milliseconds=i % 1000),
        "ok": i % 3 == 0,
        "n": i % 1000 - 500,
    }
    base.update(changes)
    return tuple(base[c] for c in NAMES)


def truth(first: list[Record], second: list[Record]) -> dict[str, set[str]]:
    """The true sets by key, computed on the records themselves (ids as they are)."""

    def rows(records: list[Record]) -> dict[Any, list[Record]]:
        grouped: dict[Any, list[Record]] = {}
        for r in records:
            grouped.setdefault(r[0], []).append(r)
        return grouped

    a, b = rows(first), rows(second)

    def same(x: list[Record], y: list[Record]) -> bool:
        return {canonical_row(r, [*KEYS.values(), *VALUES.values()], 4) for r in x} == {
            canonical_row(r, [*KEYS.values(), *VALUES.values()], 4) for r in y
        }

    return {
        "missing": {k for k in a if k not in b},
        "extra": {k for k in b if k not in a},
        "changed": {k for k in a if k in b and not same(a[k], b[k])},
        "duplicated": {k for k in {*a, *b} if len(a.get(k, [])) > 1 or len(b.get(k, [])) > 1},
    }


def found_sets(outcome: Any) -> dict[str, set[str | None]]:
    return {kind: {decode_key(k, ["id"])["id"] for k in keys} for kind, keys in outcome.samples.items()}


# ---------------------------------------------------------------- the canonical form


@pytest.mark.parametrize("ddl", [CH_DDL, CH_DDL_WIDE], ids=["float32-kolkata", "decimal-utc"])
def test_the_canonical_form_hashes_alike_in_clickhouse_postgresql_and_python(
    engines: Engines, ddl: str
) -> None:
    """Every type across engines: text with non-ASCII and the empty string, numbers as Float32
    or Decimal against numeric, timestamps stored in another zone, booleans as Bool or UInt8,
    NULL in every column — the same canonical key and row hash from ClickHouse, PostgreSQL
    and gatecheck's own hashing of a NATS side."""
    records = [
        record(1),
        record(2, id="é ü ß", athlete=""),
        record(3, athlete=None, score=None, seen=None, ok=None, n=None),
        record(4, id=None),
        record(5, score=Decimal("-0.1250"), seen=datetime(1999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
        record(6, seen=datetime(2026, 6, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))),
    ]
    if ddl == CH_DDL_WIDE:
        records = [(*r[:4], None if r[4] is None else int(r[4]), *r[5:]) for r in records]
    ch = engines.side("ch", "clickhouse", engines.table("clickhouse", records, ddl), "portable")
    pg = engines.side("pg", "postgresql", engines.table("postgresql", records), "portable")
    memory = MemorySide.of("nats", [list(r) for r in records], KEYS, VALUES, 4)

    async def rows() -> list[list[tuple[str, int]]]:
        try:
            return [sorted(await s.rows(0, [0])) for s in (ch, pg, memory)]  # type: ignore[attr-defined]
        finally:
            await ch.source.close()
            await pg.source.close()

    from_ch, from_pg, from_python = asyncio.run(rows())
    assert from_ch == from_pg == from_python
    assert {decode_key(k, ["id"])["id"] for k, _ in from_ch} == {r[0] for r in records}
    assert len({h for _, h in from_ch}) == len(records)  # every row its own hash


def test_each_type_is_compared_at_its_declared_precision() -> None:
    """Numbers to the suite's decimals (half to even, as the engines round a double),
    timestamps to the microsecond in UTC, whatever zone they were written in; NULL is not
    the empty text."""
    from gatecheck.evaluation.reconcile import canonical_value

    assert canonical_value(Decimal("1.500"), "number", 4) == canonical_value(1.5, "number", 4) == "15000"
    assert canonical_value(1.00004, "number", 4) == canonical_value(1.0, "number", 4)
    assert canonical_value(1.0001, "number", 4) != canonical_value(1.0, "number", 4)
    moment = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert (
        canonical_value(moment, "timestamp", 0)
        == canonical_value(moment.astimezone(timezone(timedelta(hours=-5))), "timestamp", 0)
        == canonical_value("2026-01-01T12:00:00Z", "timestamp", 0)
        == str(1767268800 * 1_000_000)
    )
    assert canonical_value(True, "boolean", 0) == canonical_value("true", "boolean", 0) == "1"
    assert canonical_row([None], ["text"], 0) != canonical_row([""], ["text"], 0)
    assert canonical_row(["a,1:b"], ["text"], 0) != canonical_row(["a", "b"], ["text", "text"], 0)
    with pytest.raises(ValueError, match="not an integer"):
        canonical_value(1.5, "integer", 0)


# Columns holding what their declared types cannot: n (integer) a double, score (number, 4
# decimals) doubles beyond 9.2e14, ok (boolean) an integer.
CH_DDL_LOOSE = (
    "id Nullable(String), athlete Nullable(String), score Nullable(Float64), "
    "seen Nullable(DateTime64(3, 'UTC')), ok Nullable(Int32), n Nullable(Float64)"
)
PG_DDL_LOOSE = "id text, athlete text, score float8, seen timestamptz, ok integer, n float8"
UNFIT = [
    ("n", {"n": 1.5}, {"n": 1.0}, "column n: a value that is not a 64-bit integer"),
    ("n", {"n": 2.0**64}, {"n": 2.0**64 + 2**20}, "column n: a value that is not a 64-bit integer"),
    ("score", {"score": 1e15}, {"score": 2e15}, "column score: a value beyond ±9.2e14 at 4 decimals"),
    ("ok", {"ok": 2}, {"ok": 1}, "column ok: a value that is not a boolean"),
]


@pytest.mark.parametrize("pair", [("clickhouse", "clickhouse"), ("postgresql", "postgresql"),
                                  ("clickhouse", "postgresql")], ids=["ch-ch", "pg-pg", "ch-pg"])  # fmt: skip
def test_a_value_its_declared_type_cannot_hold_is_an_error_never_equal(
    engines: Engines, pair: tuple[str, str]
) -> None:
    """An engine's cast would make the two values one — ClickHouse's toInt64 makes 1.5 and 1.0
    both 1 and every number beyond 64 bits -2^63, PostgreSQL's ::bigint rounds 1.5 to 2,
    either reads 2 as true — and two sides that differ would reconcile as equal. Each side
    refuses such a value, naming the column, as gatecheck's own hashing of a NATS side does;
    the same values within the types reconcile (the changed key is found)."""

    def ddl(engine: str) -> str:
        return CH_DDL_LOOSE if engine == "clickhouse" else PG_DDL_LOOSE

    def pair_of(first: list[Record], second: list[Record]) -> Any:
        hashing = hashing_for(pair)
        a = engines.side("a", pair[0], engines.table(pair[0], first, ddl(pair[0])), hashing)
        b = engines.side("b", pair[1], engines.table(pair[1], second, ddl(pair[1])), hashing)

        async def run() -> Any:
            try:
                return await reconcile(a, b, sample=10)
            finally:
                await a.source.close()
                await b.source.close()

        return asyncio.run(run())

    def loose(i: int, **changes: Any) -> Record:
        return record(i, **{"score": float(record(i)[2]), "ok": int(record(i)[4]), **changes})

    same = [loose(i) for i in range(5)]
    for column, first, second, words in UNFIT:
        with pytest.raises(Exception, match=re.escape(words)) as raised:  # each engine's own error type
            pair_of([*same, loose(9, **first)], [*same, loose(9, **second)])
        assert "Traceback" not in str(raised.value), column
        with pytest.raises(ValueError, match=r"not an integer|beyond|not a boolean"):
            MemorySide.of("nats", [list(loose(9, **first))], KEYS, VALUES, 4)
    fitting = pair_of([*same, loose(9, n=2.0, score=1e14, ok=1)], [*same, loose(9, n=1.0, score=1e14, ok=1)])
    assert found_sets(fitting)["changed"] == {"msg-00009"}
    assert sum(fitting.counts.values()) == 1


def test_a_multi_column_key_is_read_back_by_bytes() -> None:
    """Each field's size counts bytes: a key whose first column holds characters of more than
    one byte is read back column by column (the samples), not shifted into the next field."""
    names = ["a", "b", "c", "d"]
    values = ["日本語", None, "xyz", "w,1:"]
    assert decode_key(canonical_row(values, ["text"] * 4, 0), names) == dict(zip(names, values, strict=True))


# ---------------------------------------------------------------- findings


PAIRS = [("clickhouse", "postgresql"), ("clickhouse", "clickhouse"), ("postgresql", "postgresql")]


@pytest.mark.parametrize("pair", PAIRS, ids=["-".join(p) for p in PAIRS])
def test_identical_sides_cost_only_their_digests(engines: Engines, pair: tuple[str, str]) -> None:
    """Two sides asked apart: their difference digests (3 × 512 cells at most a side) and the
    keys more than once (none) — never a row; with the digest off, one round of buckets."""
    records = [record(i) for i in range(500)]
    outcome, a, b = engines.pair(pair, records, list(reversed(records)))
    assert outcome.counts == {"missing": 0, "extra": 0, "changed": 0, "duplicated": 0}
    assert outcome.rows == {"a": 500, "b": 500}
    assert [(r.what, r.differing) for r in outcome.rounds] == [("cells", 0), ("duplicates", 0)]
    assert a.requests == b.requests == 2
    assert 0 < outcome.rounds[0].transferred["a"] <= 3 * 512 and outcome.rounds[1].transferred == {
        "a": 0,
        "b": 0,
    }
    buckets, a, b = engines.pair(pair, records, list(reversed(records)), digest_part=0)
    assert [r.what for r in buckets.rounds] == ["buckets"] and a.requests == b.requests == 1
    assert buckets.transferred <= 2 * 500 and buckets.counts == outcome.counts


@pytest.mark.parametrize("engine", ["clickhouse", "postgresql"])
def test_two_sides_on_one_source_compare_their_digests_and_buckets_in_the_engine(
    engines: Engines, engine: str
) -> None:
    """Both sides on one source: one query compares the digests where the data is —
    identical sides answer one row (the totals), never a cell; a difference answers its
    cells only, then the rows of its key cross. The bucket rounds (when the digests do not
    decode) compare in the engine too: identical sides answer one row, a difference its bucket."""
    records = [record(i) for i in range(500)]
    one_off = [record(i, athlete="x") if i == 250 else r for i, r in enumerate(records)]
    same, _, _ = engines.pair((engine, engine), records, records, joint=True)
    assert same.rows == {"a": 500, "b": 500} and same.counts["changed"] == 0
    assert [(r.what, r.transferred) for r in same.rounds] == [
        ("cells", {"both": 1}),
        ("duplicates", {"a": 0, "b": 0}),
    ]
    changed, _, _ = engines.pair((engine, engine), records, one_off, joint=True)
    assert changed.counts == {"missing": 0, "extra": 0, "changed": 1, "duplicated": 0}
    assert changed.rows == {"a": 500, "b": 500}
    assert [r.what for r in changed.rounds] == ["cells", "duplicates", "rows"]
    # the changed record's two rows, each in one cell of each of three parts (and the one row
    # that carries the totals, unless it is one of those)
    assert changed.rounds[0].differing == 6 and changed.rounds[0].transferred["both"] in (6, 7)
    assert changed.rounds[2].transferred == {"a": 1, "b": 1}
    empty, _, _ = engines.pair((engine, engine), [], [], joint=True)
    assert empty.rows == {"a": 0, "b": 0} and empty.counts["missing"] == 0

    same, _, _ = engines.pair((engine, engine), records, records, joint=True, digest_part=0)
    assert same.rows == {"a": 500, "b": 500} and same.counts["changed"] == 0
    assert [(r.what, r.transferred) for r in same.rounds] == [("buckets", {"both": 1})]
    changed, _, _ = engines.pair((engine, engine), records, one_off, joint=True, digest_part=0)
    assert changed.counts == {"missing": 0, "extra": 0, "changed": 1, "duplicated": 0}
    # its bucket (and the one row that carries the totals, unless it is that bucket)
    assert [r.what for r in changed.rounds] == ["buckets", "rows"]
    assert changed.rounds[0].transferred["both"] in (1, 2)
    assert changed.rounds[1].transferred == {"a": 1, "b": 1}


JOINT = [("clickhouse", "clickhouse", True), ("postgresql", "postgresql", True)]
PAIRS_AND_JOINT = [(*p, False) for p in PAIRS] + JOINT


@pytest.mark.parametrize(
    "pair", PAIRS_AND_JOINT, ids=["-".join(p[:2]) + ("-one-source" if p[2] else "") for p in PAIRS_AND_JOINT]
)
@pytest.mark.parametrize("split", [False, True], ids=["one-round", "split-rounds"])
def test_every_kind_of_difference_is_found_by_key(
    engines: Engines, pair: tuple[str, str, bool], split: bool
) -> None:
    """Missing, extra, changed (a value, a NULL against a value), duplicated on either side,
    a NULL key — exactly the true sets, whether the differing buckets are fetched at once or
    split over several rounds first."""
    first = [record(i) for i in range(600)]
    second = [record(i) for i in range(600) if i % 50 != 7]  # 12 missing
    second += [record(i) for i in range(1000, 1009)]  # 9 extra
    second = [record(i, athlete="someone") if i % 61 == 3 else r for i, r in enumerate(second)]  # changed
    second = [record(i, score=None) if i == 100 else r for i, r in enumerate(second)]  # NULL vs a value
    second += [record(i) for i in (5, 6, 8)]  # duplicated on the second side
    first += [record(20), record(20, athlete="other")]  # duplicated (and different) on the first
    first += [record(9999, id=None)]  # a NULL key, on one side only
    both_null = record(3, athlete=None, score=None, seen=None, ok=None, n=None)
    first = [both_null if r[0] == "msg-00003" else r for r in first]  # NULLs alike: not changed
    second = [both_null if r[0] == "msg-00003" else r for r in second]
    # split: the bucket rounds (the digest off), several of them
    options = {"first_bits": 2, "fetch_rows": 16, "max_buckets": 8, "digest_part": 0} if split else {}
    outcome, _, _ = engines.pair(pair[:2], first, second, joint=pair[2], **options)
    expected = truth(first, second)
    assert found_sets(outcome) == expected
    assert outcome.counts == {kind: len(keys) for kind, keys in expected.items()}
    assert None in expected["missing"] and expected["changed"] and expected["duplicated"]
    assert "msg-00003" not in expected["changed"]
    buckets = [r for r in outcome.rounds if r.what == "buckets"]
    assert (len(buckets) > 2) is split
    # the digests decode, whether the sides are asked apart or together: no bucket round
    assert (not buckets) is (not split)
    assert not outcome.capped


@pytest.mark.parametrize(
    "pair", PAIRS_AND_JOINT, ids=["-".join(p[:2]) + ("-one-source" if p[2] else "") for p in PAIRS_AND_JOINT]
)
@pytest.mark.parametrize("split", [False, True], ids=["one-round", "split-rounds"])
def test_a_key_written_twice_alike_on_both_sides_is_duplicated(
    engines: Engines, pair: tuple[str, str, bool], split: bool
) -> None:
    """The same record twice on each side: every bucket's rows and hash sums agree, yet the
    key is duplicated — each bucket also counts its rows beyond one per key, so that bucket
    is asked about. (Hypothesis's random examples found it reported as nothing.)"""
    twice = [record(i) for i in range(300)] + [record(42)]
    options = {"first_bits": 2, "fetch_rows": 16, "max_buckets": 8, "digest_part": 0} if split else {}
    outcome, _, _ = engines.pair(pair[:2], twice, list(reversed(twice)), joint=pair[2], **options)
    assert found_sets(outcome) == {
        "missing": set(),
        "extra": set(),
        "changed": set(),
        "duplicated": {"msg-00042"},
    }
    assert outcome.counts == {"missing": 0, "extra": 0, "changed": 0, "duplicated": 1}


EMPTY_PAIRS = [(*p, False) for p in PAIRS[:2]] + JOINT


@pytest.mark.parametrize(
    "pair", EMPTY_PAIRS, ids=["-".join(p[:2]) + ("-one-source" if p[2] else "") for p in EMPTY_PAIRS]
)
def test_empty_sides(engines: Engines, pair: tuple[str, str, bool]) -> None:
    """No rows on either side, or on one: nothing differs, or every key is on one side only
    (a side with no row has no cell in its digest: on one source, its sums are zeros)."""
    records = [record(i) for i in range(30)]
    nothing, _, _ = engines.pair(pair[:2], [], [], joint=pair[2])
    assert nothing.counts == {"missing": 0, "extra": 0, "changed": 0, "duplicated": 0}
    assert nothing.rows == {"a": 0, "b": 0}
    one_empty, _, _ = engines.pair(pair[:2], records, [], joint=pair[2])
    assert one_empty.counts["missing"] == 30 and one_empty.rows == {"a": 30, "b": 0}
    other_empty, _, _ = engines.pair(pair[:2], [], records, joint=pair[2])
    assert other_empty.counts["extra"] == 30 and other_empty.rows == {"a": 0, "b": 30}
    assert [r.what for r in other_empty.rounds] == ["cells", "duplicates", "rows"]


def test_more_differing_rows_than_max_rows_are_lower_bounds(engines: Engines) -> None:
    records = [record(i) for i in range(400)]
    outcome, _, _ = engines.pair(("clickhouse", "postgresql"), records, [], max_rows=100, fetch_rows=50)
    assert outcome.capped
    assert 0 < outcome.counts["missing"] <= 100


def test_a_difference_costs_its_digest_cells_and_its_keys_rows_only(engines: Engines) -> None:
    """On a bigger pair of sides asked apart, what crosses is each side's digest (at most 3 ×
    512 cells, whatever the rows) and the rows of the differing keys — exactly those."""
    first = [record(i) for i in range(20_000)]
    second = [record(i, athlete="x") if i % 2000 == 0 else r for i, r in enumerate(first)]
    outcome, _, _ = engines.pair(("clickhouse", "postgresql"), first, second)
    assert outcome.counts["changed"] == 10
    assert [r.what for r in outcome.rounds] == ["cells", "duplicates", "rows"]
    assert outcome.rounds[0].differing > 0 and all(
        n <= 3 * 512 for n in outcome.rounds[0].transferred.values()
    )
    assert outcome.rounds[2].transferred == {"a": 10, "b": 10}  # the ten keys' rows, a side
    assert outcome.transferred <= 2 * 3 * 512 + 20


def test_more_differences_than_the_digest_holds_fall_back_to_bucket_rounds(engines: Engines) -> None:
    """A digest too small for the differences does not decode: the bucket rounds find them,
    the same sets, and the side's messages or rows are counted once."""
    first = [record(i) for i in range(3000)]
    second = [record(i, athlete="x") if i % 10 == 0 else r for i, r in enumerate(first)]  # 300 changed
    outcome, _, _ = engines.pair(("clickhouse", "postgresql"), first, second, digest_part=64)
    assert [r.what for r in outcome.rounds][:2] == ["cells", "buckets"]
    assert found_sets(outcome) == truth(first, second) and outcome.counts["changed"] == 300
    assert outcome.rows == {"a": 3000, "b": 3000}


@pytest.mark.parametrize(
    ("pair", "joint"),
    [
        (("clickhouse", "clickhouse"), False),
        (("clickhouse", "clickhouse"), True),
        (("clickhouse", "postgresql"), False),
    ],
    ids=["chdb-apart", "chdb-joint", "chdb-postgresql"],
)
def test_more_differing_buckets_than_one_answer_holds_lose_none(
    engines: Engines, pair: tuple[str, str], joint: bool
) -> None:
    """14,000 rows of no record beside 5 records never written: a round's buckets, split,
    outnumber the rows one request may answer (a source stops reading at MAX_ROWS + 1). The
    answers were cut there without a word and the buckets past the cut compared as equal: 29
    missing of 50 reported, found by the lag benchmark. Each request now asks for no more
    than one answer holds, and every key is found."""
    first = [record(i) for i in range(20_000)]
    second = [r for i, r in enumerate(first) if i % 4000 != 7] + [record(100_000 + i) for i in range(14_000)]
    outcome, _, _ = engines.pair(pair, first, second, joint=joint)
    assert not outcome.capped
    assert outcome.counts == {"missing": 5, "extra": 14_000, "changed": 0, "duplicated": 0}
    assert found_sets(outcome)["missing"] == {f"msg-{i:05d}" for i in range(20_000) if i % 4000 == 7}


def test_keys_written_many_times_alike_on_both_sides_are_fetched_in_answers_that_hold_them(
    engines: Engines,
) -> None:
    """3,500 keys written three times alike on both sides: the digests agree, each side names
    them, and their rows — 10,500 a side, more than one answer holds — are fetched in halves
    until each answer holds its rows; every key is duplicated, none lost."""
    first = [record(i) for i in range(5_000)] + [record(i) for i in range(3_500)] * 2
    outcome, _, _ = engines.pair(("clickhouse", "clickhouse"), first, list(first))
    assert not outcome.capped
    assert outcome.counts == {"missing": 0, "extra": 0, "changed": 0, "duplicated": 3_500}
    fetches = [r for r in outcome.rounds if r.what == "rows"]
    assert len(fetches) >= 2 and all(max(r.transferred.values()) <= 10_000 for r in fetches)


def test_a_differing_bucket_costs_its_rows_only(engines: Engines) -> None:
    """On a bigger pair of sides, what crosses is the bucket answers and the differing
    buckets' rows: well under the rows compared."""
    first = [record(i) for i in range(20_000)]
    second = [record(i, athlete="x") if i % 2000 == 0 else r for i, r in enumerate(first)]
    outcome, _, _ = engines.pair(("clickhouse", "clickhouse"), first, second, fetch_rows=200, digest_part=0)
    assert outcome.counts["changed"] == 10
    fetched = sum(sum(r.transferred.values()) for r in outcome.rounds if r.what == "rows")
    assert 20 <= fetched <= 400  # the differing buckets' rows, not the 40,000
    # bucket answers are at most 2^13 a side per round, whatever the rows (bench/reconcile.py
    # measures the share at 10 M rows)
    bucket_rounds = [r for r in outcome.rounds if r.what == "buckets"]
    assert all(max(r.transferred.values()) <= 8192 for r in bucket_rounds)


# ---------------------------------------------------------------- the property


def _tables() -> st.SearchStrategy[tuple[list[Record], list[Record]]]:
    keys = st.lists(st.integers(0, 80), min_size=0, max_size=40, unique=True)

    @st.composite
    def build(draw: Callable[..., Any]) -> tuple[list[Record], list[Record]]:
        base = draw(keys)
        first = [record(i) for i in base]
        dropped = set(draw(st.lists(st.sampled_from(base), max_size=8, unique=True))) if base else set()
        second = [record(i) for i in base if i not in dropped]
        second += [record(100 + i) for i in draw(st.lists(st.integers(0, 20), max_size=5, unique=True))]
        changes = draw(st.lists(st.sampled_from(base), max_size=5, unique=True)) if base else []
        second = [
            record(int(r[0][4:]), athlete="changed") if r[0] and int(r[0][4:]) in changes else r
            for r in second
        ]
        for side in (first, second):
            if side and draw(st.booleans()):
                side.append(draw(st.sampled_from(side)))  # a duplicate
        if draw(st.booleans()):
            first.append(record(500, id=None))
        return first, second

    return build()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(  # found by a random run: one key twice, alike, on both sides
    tables=([record(0), record(0)], [record(0), record(0)]),
    first_bits=1,
    fetch_rows=50,
    how="clickhouse-postgresql",
    digest_part=0,
)
@example(  # the same through the digests: the duplicates' own question finds it
    tables=([record(0), record(0)], [record(0), record(0)]),
    first_bits=1,
    fetch_rows=50,
    how="clickhouse-postgresql",
    digest_part=512,
)
@example(
    tables=([record(0), record(0)], [record(0), record(0)]),
    first_bits=20,
    fetch_rows=1,
    how="clickhouse-one-source",
    digest_part=512,
)
@given(
    tables=_tables(), first_bits=st.integers(1, 20), fetch_rows=st.integers(1, 50),
    how=st.sampled_from(["clickhouse-postgresql", "clickhouse-one-source"]),
    digest_part=st.sampled_from([0, 1, 4, 512]),
)  # fmt: skip
def test_the_reported_sets_are_the_true_sets(
    engines: Engines, tables: tuple[list[Record], list[Record]], first_bits: int, fetch_rows: int, how: str,
    digest_part: int,
) -> None:  # fmt: skip
    """For random pairs of tables with random differences — on chDB against PostgreSQL, and
    both on one chDB compared in the engine, with random bucket sizes so any number of rounds
    happens, and digests from too small to decode (the bucket rounds then) to the default —
    the keys reported of each kind are exactly the true ones."""
    first, second = tables
    engines_pair = (
        ("clickhouse", "postgresql") if how == "clickhouse-postgresql" else ("clickhouse", "clickhouse")
    )
    outcome, _, _ = engines.pair(
        engines_pair,
        first,
        second,
        joint=how == "clickhouse-one-source",
        first_bits=first_bits,
        fetch_rows=fetch_rows,
        max_buckets=16,
        digest_part=digest_part,
    )
    assert found_sets(outcome) == truth(first, second)
    assert outcome.rows == {"a": len(first), "b": len(second)}


def test_classify_counts_a_key_once_per_kind() -> None:
    counts, samples = classify([("1:a", 1), ("1:a", 1), ("1:b", 2)], [("1:a", 1), ("1:c", 3)], sample=1)
    assert counts == {"missing": 1, "extra": 1, "changed": 0, "duplicated": 1}
    assert samples == {"missing": ["1:b"], "extra": ["1:c"], "changed": [], "duplicated": ["1:a"]}


# ---------------------------------------------------------------- a NATS side


def publish(
    url: str, stream: str, messages: list[tuple[str | None, dict[str, Any]]]
) -> tuple[datetime, datetime]:
    """A stream of its own on the test's nats-server, and messages with a ``Msg-Id`` header
    (None: no header) and a JSON payload; the window around them."""
    import json

    from gatecheck.demo.bus import connect_bus

    async def go() -> tuple[datetime, datetime]:
        from nats.js.api import StreamConfig

        connection = await connect_bus(url)
        try:
            js = connection.jetstream()
            await js.add_stream(StreamConfig(name=stream, subjects=[f"{stream.lower()}.>"]))
            start = datetime.now(UTC) - timedelta(seconds=1)
            for header, payload in messages:
                await js.publish(
                    f"{stream.lower()}.hrv", json.dumps(payload).encode(), stream=stream,
                    headers={"Msg-Id": header} if header is not None else None,
                )  # fmt: skip
            return start, datetime.now(UTC) + timedelta(seconds=1)
        finally:
            await connection.close()

    return asyncio.run(go())


def nats_side(
    url: str, stream: str, window: tuple[datetime, datetime], max_messages: int = 1000
) -> MemorySide:
    from gatecheck.sources.nats import NatsQuery, NatsSource, NatsSourceConfig

    query = NatsQuery.model_validate({"messages": {
        "stream": stream, "subject": f"{stream.lower()}.hrv", "max_messages": max_messages,
        "columns": {"id": "header:Msg-Id", "athlete": "payload:reading.athlete", "score": "payload:score",
                    "seen": "payload:seen", "ok": "payload:ok", "n": "sequence"},
    }})  # fmt: skip
    source = NatsSource("bus", NatsSourceConfig(type="nats", url=url), Path("."))

    async def read() -> list[list[Any]]:
        try:
            return await source.records(query, {"window_start": window[0], "window_end": window[1]}, NAMES)
        finally:
            await source.close()

    rows = asyncio.run(read())
    return MemorySide.of(
        "bus", rows, KEYS, {k: v for k, v in VALUES.items() if k != "n"} | {"n": "integer"}, 4
    )


def test_a_nats_subject_keyed_by_a_header_reconciles_with_postgresql(
    engines: Engines, nats_server: Any
) -> None:
    """nats-server against PostgreSQL: the key from a header, values from nested payload
    fields and the stream sequence — a message without the header is a NULL key, a row with
    another athlete is changed, a message never written is missing, a row written twice is
    duplicated."""
    records = [record(i) for i in range(1, 41)]
    messages: list[tuple[str | None, dict[str, Any]]] = [
        (r[0], {"reading": {"athlete": r[1]}, "score": float(r[2]), "seen": r[3].isoformat(), "ok": r[4]})
        for r in records
    ]
    messages.append((None, {"reading": {"athlete": "x"}, "score": 1.0, "seen": None, "ok": True}))
    window = publish(nats_server.url, "RC_HEADER", messages)
    # the database's rows: the stream's sequences as n (1…), as the bus side reads them
    rows = [(*r[:5], seq) for seq, r in enumerate(records, start=1)]
    rows = [r for r in rows if r[0] != "msg-00007"]  # never written
    rows = [(*r[:1], "someone", *r[2:]) if r[0] == "msg-00011" else r for r in rows]  # another athlete
    rows.append(rows[0])  # written twice
    bus = nats_side(nats_server.url, "RC_HEADER", window)
    database = engines.side("database", "postgresql", engines.table("postgresql", rows), "portable")

    async def run() -> Any:
        try:
            return await reconcile(bus, database, sample=100)  # type: ignore[arg-type]
        finally:
            await database.source.close()

    outcome = asyncio.run(run())
    assert outcome.rows == {"bus": 41, "database": 40}
    assert found_sets(outcome) == {
        "missing": {"msg-00007", None}, "extra": set(), "changed": {"msg-00011"}, "duplicated": {"msg-00001"}
    }  # fmt: skip
    # every message crossed once, when it was read; the database sent bucket answers and rows
    assert outcome.rounds[0].transferred["bus"] == 41


def test_half_a_character_in_a_message_is_read_as_a_replacement_character(nats_server: Any) -> None:
    """JSON may write half a UTF-16 surrogate pair (``"\\ud800"``) and Python reads it as a
    lone surrogate, which UTF-8 cannot hold: a key or value of such a message made the check
    an internal error (a frame, a hash, every output and the ledger need UTF-8). It is read as
    U+FFFD, the rest of the text kept."""
    import sqlite3

    published = [
        ("m1", {"reading": {"athlete": "bad-\ud800-x"}, "score": 1.0}),
        ("m2", {"reading": {"athlete": "😀"}}),
    ]
    from gatecheck.sources.nats import NatsQuery, NatsSource, NatsSourceConfig

    window = publish(nats_server.url, "RC_SURROGATE", published)
    query = NatsQuery.model_validate({"messages": {
        "stream": "RC_SURROGATE", "subject": "rc_surrogate.hrv", "columns": {"athlete": "payload:reading.athlete"},
    }})  # fmt: skip
    source = NatsSource("bus", NatsSourceConfig(type="nats", url=nats_server.url), Path("."))

    async def read() -> list[list[Any]]:
        try:
            return await source.records(
                query, {"window_start": window[0], "window_end": window[1]}, ["athlete"]
            )
        finally:
            await source.close()

    athletes = sorted(str(row[0]) for row in asyncio.run(read()))
    assert athletes == ["bad-\ufffd-x", "😀"], athletes
    sqlite3.connect(":memory:").execute("SELECT ?, ?", athletes)  # (a lone surrogate: UnicodeEncodeError)


def test_more_messages_than_max_messages_reads_none(nats_server: Any) -> None:
    from gatecheck.sources.nats import TooMuchToRead

    window = publish(nats_server.url, "RC_CAP", [(f"m{i}", {"score": i}) for i in range(12)])
    with pytest.raises(TooMuchToRead, match=r"12 in the window, more than max_messages \(10\)"):
        nats_side(nats_server.url, "RC_CAP", window, max_messages=10)


def test_a_message_removed_between_the_count_and_the_read_is_an_error_never_a_shorter_window(
    nats_server: Any,
) -> None:
    """The window's messages are counted, then read with an ordered consumer, which skips what
    is gone. A message removed in between (a deletion here; max_age reaching the window's start
    does the same) left the read one short, stopped by the first message after the window:
    four of five messages answered as the whole window, and a message never written to the
    database, unread, was no missing record."""
    import json

    from gatecheck.demo.bus import connect_bus
    from gatecheck.errors import QueryError
    from gatecheck.sources.nats import NatsMessages, NatsSource, NatsSourceConfig

    stream = "RC_REMOVED"
    window_start, window_end = publish(nats_server.url, stream, [(f"m{i}", {"score": i}) for i in range(5)])
    # the window ends when publishing returned, after the fifth message was stored: the next
    # one, published after, is stored at or after that moment (one clock), outside it
    window_end -= timedelta(seconds=1)

    async def after_the_window_and_remove(sequence: int | None) -> None:
        connection = await connect_bus(nats_server.url)
        try:
            js = connection.jetstream()
            if sequence is None:
                await js.publish(f"{stream.lower()}.hrv", json.dumps({"score": 9}).encode(), stream=stream)
            else:
                await js.delete_msg(stream, sequence)
        finally:
            await connection.close()

    asyncio.run(after_the_window_and_remove(None))  # a message after the window
    spec = NatsMessages.model_validate(
        {"stream": stream, "subject": f"{stream.lower()}.hrv", "columns": {"score": "payload:score"}}
    )

    async def read(remove: bool) -> list[list[Any]]:
        source = NatsSource("bus", NatsSourceConfig(type="nats", url=nats_server.url), Path("."))
        counted = source._count

        async def count_then_remove(*args: Any) -> int:
            found = await counted(*args)
            if remove:
                await after_the_window_and_remove(2)  # the second message, once counted
            return found

        source._count = count_then_remove  # type: ignore[method-assign]
        try:
            return await source.messages(spec, window_start, window_end, ["score"])
        finally:
            await source.close()

    assert [row[0] for row in asyncio.run(read(remove=False))] == [0, 1, 2, 3, 4]
    with pytest.raises(
        QueryError, match=r"5 counted in the window, only 4 left to read: messages were removed"
    ):
        asyncio.run(read(remove=True))


def test_hashed_keys_name_no_key() -> None:
    """hash_keys: the samples carry each key's MD5, never the key (keys that are personal
    data stay out of documents, pages and notifications)."""
    from gatecheck.evaluation.reconcile_check import _shown_key

    key = canonical_row(["athlete@example.com"], ["text"], 0)
    hidden = _shown_key(key, {"email": "text"}, 0, hashed=True)
    assert list(hidden) == ["key_md5"] and len(hidden["key_md5"]) == 16
    assert "athlete@example.com" not in str(hidden)
    assert _shown_key(key, {"email": "text"}, 0, hashed=False) == {"email": "athlete@example.com"}
    moment = canonical_row([datetime(2026, 12, 4, 9, tzinfo=UTC), 1.25], ["timestamp", "number"], 2)
    assert _shown_key(moment, {"hour": "timestamp", "minutes": "number"}, 2, hashed=False) == {
        "hour": "2026-12-04T09:00:00Z", "minutes": "1.25"
    }  # fmt: skip


def test_the_difference_of_two_digests_is_peeled_to_the_rows_on_one_side_only() -> None:
    """Pure: rows on one side only come back by key hash (+1 first side, -1 second); a row
    three times on one side against once on the other is not one row's difference — the
    digest does not decode (None), and the bucket rounds answer instead."""
    from gatecheck.evaluation.reconcile import HASH_BITS, Cells, digest_cells, digest_check, md5_60, peel

    def digest(rows: list[tuple[int, int]], part: int) -> Cells:
        cells: Cells = {}
        for kh, rh in rows:
            for cell in digest_cells(rh, part):
                n, k, h, x = cells.get(cell, (0, 0, 0, 0))
                cells[cell] = (n + 1, (k + kh) % 2**64, (h + rh) % 2**64, (x + digest_check(rh)) % 2**64)
        return cells

    rows = [(md5_60(f"k{i}"), md5_60(f"r{i}")) for i in range(1000)]
    assert all(kh < 2**HASH_BITS for kh, _ in rows)
    first, second = rows[:-3], rows[3:]  # 3 rows on each side only
    assert peel(digest(first, 64), digest(second, 64), 64) == {
        **{kh: 1 for kh, _ in rows[:3]},
        **{kh: -1 for kh, _ in rows[-3:]},
    }
    assert peel(digest(rows, 64), digest(rows, 64), 64) == {}
    thrice = [*rows, rows[0], rows[0]]
    assert peel(digest(thrice, 64), digest(rows, 64), 64) is None
    # more differences than the cells hold: not decoded, never a partial answer
    assert peel(digest(rows, 4), digest([], 4), 4) is None
    # a third of the cells' worth of differences, many trials: each decodes to exactly them (a
    # cell holding several rows whose sums pass for one row's would peel a row that is not there)
    for trial in range(20):
        common = [(md5_60(f"k{trial}-{i}"), md5_60(f"r{trial}-{i}")) for i in range(2000)]
        only_a = [(md5_60(f"a{trial}-{i}"), md5_60(f"ra{trial}-{i}")) for i in range(250)]
        only_b = [(md5_60(f"b{trial}-{i}"), md5_60(f"rb{trial}-{i}")) for i in range(250)]
        assert peel(digest(common + only_a, 512), digest(common + only_b, 512), 512) == {
            **{kh: 1 for kh, _ in only_a},
            **{kh: -1 for kh, _ in only_b},
        }


# ------------------------------------------------------------- a side written after the other

LAG_AS_OF = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LAG_MESSAGES = "SELECT id FROM lag_messages WHERE stored_at >= {window_start:timestamptz} AND stored_at < {window_end:timestamptz}"
LAG_ROWS = "SELECT id FROM lag_rows WHERE created_at >= {window_start:timestamptz} AND created_at < {window_end:timestamptz}"


def _lag_project(root: Path, url: str, lag: str | None, late_first: bool, settle: str = "30s") -> Any:
    """A project with one gate judging ``lag_messages`` (stored_at) against ``lag_rows``
    (created_at, written up to 25 s later) on one PostgreSQL source: window 1h, settle 30s."""
    from tests.conftest import copy_config

    config = copy_config(root)
    rows = {"source": "database", "query": LAG_ROWS, **({"lag": lag} if lag else {})}
    sides = {"messages": {"source": "database", "query": LAG_MESSAGES}, "rows": rows}
    if late_first:
        sides = {"rows": rows, "messages": sides["messages"]}
    suite = {
        "name": "write_lag",
        "window": {"length": "1h", "settle": settle},
        "reconcile": {"keys": {"id": "text"}, "sides": sides},
        "expectations": [
            {"type": "expect_column_values_to_be_between", "column": kind, "max_value": 0}
            for kind in ("missing", "extra", "changed", "duplicated")
        ],
    }
    (config / "suites" / "write_lag.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    (config / "gates" / "write-lag.yaml").write_text(
        "phase: write-lag\nenvironment: staging\nchecks:\n  - suite: write_lag\n"
    )
    return load_project(config, environ={"GATECHECK_POSTGRES_URL": url})


@pytest.mark.parametrize("late_first", [False, True], ids=["late-second", "late-first"])
def test_a_side_written_up_to_its_lag_later_is_judged_without_false_edges(
    postgres_server: Any, tmp_path: Path, late_first: bool
) -> None:
    """A service writes each row up to 25 s after its message was stored (created_at =
    now()). Cut by one window, the messages of its last 25 s read as missing and the rows of
    its first 25 s as extra, every evaluation; with ``lag: 30s`` on the rows' side only the
    message never written and the row of no message are found."""
    import psycopg

    from tests.conftest import evaluate

    url = postgres_server.fresh_url("gc_write_lag")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE lag_messages (id text, stored_at timestamptz)")
        connection.execute("CREATE TABLE lag_rows (id text, created_at timestamptz)")
        start = LAG_AS_OF - timedelta(hours=1, minutes=2)
        for k in range(0, 62 * 6 + 1):  # a message every 10 s from 1h02m before as_of to as_of
            stored = start + timedelta(seconds=10 * k)
            connection.execute("INSERT INTO lag_messages VALUES (%s, %s)", [f"m-{k}", stored])
            if k != 200:  # m-200 (11:31:20) never written
                connection.execute(
                    "INSERT INTO lag_rows VALUES (%s, %s)", [f"m-{k}", stored + timedelta(seconds=25)]
                )
        connection.execute("INSERT INTO lag_rows VALUES ('stray', %s)", [LAG_AS_OF - timedelta(minutes=20)])
    mapped = {"missing": "extra", "extra": "missing"} if late_first else {}

    def keys(verdict: Any) -> dict[str, set[str | None]]:
        check = next(c for c in verdict.checks if c.suite == "write_lag")
        assert check.reconciliation is not None, check.reason
        return {
            mapped.get(kind, kind): {key["id"] for key in found}
            for kind, found in check.reconciliation.samples.items()
            if found
        }

    cut = asyncio.run(evaluate(_lag_project(tmp_path / "cut", url, None, late_first), "write-lag", LAG_AS_OF))
    edges = keys(cut)
    # without a lag, both sides on one source: one query a round, the first the digests
    joint = next(c for c in cut.checks if c.suite == "write_lag").reconciliation
    assert joint is not None
    assert (joint.rounds[0].what, list(joint.rounds[0].transferred)) == ("cells", ["both"])
    assert cut.verdict is VerdictState.NO_GO
    # the window is [10:59:30, 11:59:30): the messages of 11:59:10 and 11:59:20 have their rows
    # after it ends, the messages of the rows of 10:59:35 and 10:59:45 were stored before it starts
    assert edges["missing"] == {"m-200", "m-367", "m-368"} and edges["extra"] == {"m-7", "m-8", "stray"}
    lagged = asyncio.run(
        evaluate(_lag_project(tmp_path / "lag", url, "30s", late_first), "write-lag", LAG_AS_OF)
    )
    check = next(c for c in lagged.checks if c.suite == "write_lag")
    assert lagged.verdict is VerdictState.NO_GO and keys(lagged) == {"missing": {"m-200"}, "extra": {"stray"}}
    found = check.reconciliation
    assert found is not None and found.late == "rows" and found.lag == timedelta(seconds=30)
    # each side's rows in the window itself: 360 messages, 359 of their rows and the stray one
    assert found.rows == {"messages": 360, "rows": 360}
    from gatecheck.render.describe import reconciliation_lines

    late_kinds = "extra, changed, duplicated" if late_first else "missing, changed, duplicated"
    assert (
        f"rows lags messages by up to 30s: rows read to the window's end + 30s for {late_kinds}; "
        f"messages from its start - 30s for {'missing' if late_first else 'extra'}"
    ) in reconciliation_lines(found)
    assert {tuple(r.decides) for r in found.rounds} == (
        {("extra", "changed", "duplicated"), ("missing",)}
        if late_first
        else {("missing", "changed", "duplicated"), ("extra",)}
    )
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DELETE FROM lag_rows WHERE id = 'stray'")
        connection.execute(
            "INSERT INTO lag_rows VALUES ('m-200', %s)", [datetime(2026, 3, 2, 11, 31, 40, tzinfo=UTC)]
        )
    held_project = _lag_project(tmp_path / "held", url, "30s", late_first)
    held = asyncio.run(evaluate(held_project, "write-lag", LAG_AS_OF))
    assert held.verdict is VerdictState.GO, [c.reason for c in held.checks]
    # a backtest judges each step as run does: GO with the lag, the edges' NO-GO without it
    from gatecheck.evaluation.backtest import run_backtest

    since = LAG_AS_OF - timedelta(minutes=20)
    cut_again = _lag_project(tmp_path / "cut-again", url, None, late_first)
    for project, verdict in ((held_project, "go"), (cut_again, "no-go")):
        report = asyncio.run(run_backtest(project, "write-lag", since, LAG_AS_OF, timedelta(minutes=10)))
        assert {k: v for k, v in report.verdicts.items() if v} == {verdict: 3}, report.verdicts


def test_explain_shows_each_sides_windows_in_both_reconciliations_of_a_lag(tmp_path: Path) -> None:
    from gatecheck.evaluation.explain import explain

    project = _lag_project(tmp_path / "config", "postgresql://gatecheck@/db?host=/nonexistent", "30s", False)
    (check,) = explain(project, "write-lag", LAG_AS_OF)["checks"]
    assert "rows lags messages by up to 30s" in check["reconcile"]
    windows: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for request in check["query"]["requests"]:
        side, which = re.match(r"side (\w+) \(database\): (reconciliation \d of 2)", request["what"]).groups()
        sent = {p["name"]: p["sent"] for p in request["parameters"]}
        windows.setdefault((side, which), set()).add((sent["window_start"], sent["window_end"]))
    # every request of one side in one reconciliation over one window: asked apart, not jointly
    assert windows == {
        ("messages", "reconciliation 1 of 2"): {("2026-03-02T10:59:30Z", "2026-03-02T11:59:30Z")},
        ("rows", "reconciliation 1 of 2"): {("2026-03-02T10:59:30Z", "2026-03-02T12:00:00Z")},
        ("messages", "reconciliation 2 of 2"): {("2026-03-02T10:59:00Z", "2026-03-02T11:59:30Z")},
        ("rows", "reconciliation 2 of 2"): {("2026-03-02T10:59:30Z", "2026-03-02T11:59:30Z")},
    }


def test_a_nats_subjects_rows_written_later_in_postgresql_are_found_within_the_lag(
    nats_server: Any, postgres_server: Any, tmp_path: Path
) -> None:
    """nats-server against PostgreSQL, the shipped pair: each row written 40 s after the
    last message was published (so 40 s and more after its own), the window ending after every
    message and before every row. Cut by the window, every message is missing; with
    ``lag: 100s`` on the database side (however long publishing took, up to a minute), only
    the one never written — read from the stream over the window and the 100 s before it."""
    import psycopg

    from tests.conftest import copy_config, evaluate

    published = [(None, {"message_id": f"lag-{k}"}) for k in range(20)]
    _, end = publish(nats_server.url, "RC_LAG", published)  # every message stored before `end`
    url = postgres_server.fresh_url("gc_nats_lag")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE lag_rows (message_id text, created_at timestamptz)")
        for k in range(20):
            if k != 7:
                connection.execute(
                    "INSERT INTO lag_rows VALUES (%s, %s)", [f"lag-{k}", end + timedelta(seconds=40)]
                )
    as_of = end + timedelta(seconds=100)  # the window ends at `end`; within the clock skew allowed

    def judged(lag: str | None) -> tuple[Any, Any]:
        database: dict[str, Any] = {
            "source": "database",
            "query": "SELECT message_id FROM lag_rows WHERE created_at >= {window_start:timestamptz} "
            "AND created_at < {window_end:timestamptz}",
        }
        if lag:
            database["lag"] = lag
        suite = {
            "name": "bus_lag",
            "window": {"length": "10m", "settle": "100s"},
            "reconcile": {
                "keys": {"message_id": "text"},
                "sides": {
                    "bus": {"source": "bus", "query": {"messages": {
                        "stream": "RC_LAG", "subject": "rc_lag.hrv", "columns": {"message_id": "payload:message_id"},
                    }}},
                    "database": database,
                },
            },
            "expectations": [
                {"type": "expect_column_values_to_be_between", "column": kind, "max_value": 0}
                for kind in ("missing", "extra", "changed", "duplicated")
            ],
        }  # fmt: skip
        config = copy_config(tmp_path / (lag or "cut"))
        (config / "suites" / "bus_lag.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
        (config / "gates" / "bus-lag.yaml").write_text(
            "phase: bus-lag\nenvironment: staging\nchecks:\n  - suite: bus_lag\n"
        )
        project = load_project(
            config, environ={"GATECHECK_POSTGRES_URL": url, "GATECHECK_NATS_URL": nats_server.url}
        )
        verdict = asyncio.run(evaluate(project, "bus-lag", as_of))
        (check,) = [c for c in verdict.checks if c.suite == "bus_lag"]
        assert check.reconciliation is not None, check.reason
        return verdict, check.reconciliation

    verdict, found = judged(None)
    assert verdict.verdict is VerdictState.NO_GO and (found.missing, found.extra) == (20, 0)
    verdict, found = judged("100s")
    assert verdict.verdict is VerdictState.NO_GO
    assert (found.missing, found.extra, found.changed, found.duplicated) == (1, 0, 0, 0)
    assert found.samples["missing"] == [{"message_id": "lag-7"}]
    assert found.rows == {"bus": 20, "database": 0}  # each side's rows in the window itself


def test_a_gates_joint_reconciliation_with_more_differences_than_one_answer_holds_counts_them_all(
    postgres_server: Any, tmp_path: Path
) -> None:
    """Both sides on one source, judged through a gate: 14,000 rows of no record beside 5
    records never written. The gate's joint pair was not taken for one (its first round asked
    8,192 buckets, not 2^20) and its fetch was sized by one side's rows while answering both
    sides': answers over 10,000 rows were cut, and 3,870 missing were reported of 3,522 in the
    lag benchmark. Every key is counted, none twice."""
    import psycopg

    from tests.conftest import evaluate

    url = postgres_server.fresh_url("gc_joint_many")
    start = LAG_AS_OF - timedelta(minutes=50)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE lag_messages (id text, stored_at timestamptz)")
        connection.execute("CREATE TABLE lag_rows (id text, created_at timestamptz)")
        connection.execute(
            "INSERT INTO lag_messages SELECT 'm-' || k, %s + k * interval '100 ms' FROM generate_series(0, 19999) k",
            [start],
        )
        connection.execute(
            "INSERT INTO lag_rows SELECT 'm-' || k, %s + k * interval '100 ms' FROM generate_series(0, 19999) k "
            "WHERE k %% 4000 != 7",
            [start],
        )
        connection.execute(
            "INSERT INTO lag_rows SELECT 'stray-' || k, %s + k * interval '100 ms' FROM generate_series(0, 13999) k",
            [start],
        )
    verdict = asyncio.run(
        evaluate(_lag_project(tmp_path / "config", url, None, False), "write-lag", LAG_AS_OF)
    )
    (check,) = [c for c in verdict.checks if c.suite == "write_lag"]
    found = check.reconciliation
    assert found is not None and not found.capped, check.reason
    assert (found.missing, found.extra, found.changed, found.duplicated) == (5, 14_000, 0, 0)
    assert found.rows == {"messages": 20_000, "rows": 33_995}
    # far more differences than the digests hold (they do not decode), then more differing
    # buckets of 2^20 than one answer holds: asked again at 2^13, then split
    assert [(r.what, r.bits) for r in found.rounds[:2]] == [("cells", 9), ("buckets", 13)]


def test_explains_estimate_reads_each_lagged_side_over_the_widest_of_its_windows(
    postgres_server: Any, tmp_path: Path
) -> None:
    """The cost shown before it is paid: with ``lag: 20m`` each side reads 80 minutes, not the
    window's 60 (the late side on to its end + 20m, the early side from its start - 20m), and
    ``explain --estimate`` asks the planner about those."""
    import psycopg

    from gatecheck.evaluation.explain import explain

    url = postgres_server.fresh_url("gc_lag_estimate")
    with psycopg.connect(url, autocommit=True) as connection:
        for table, column in (("lag_messages", "stored_at"), ("lag_rows", "created_at")):
            connection.execute(f"CREATE TABLE {table} (id text, {column} timestamptz)")
            connection.execute(
                f"INSERT INTO {table} SELECT 'm-' || k, %s + k * interval '1 second' FROM generate_series(0, 10799) k",
                [LAG_AS_OF - timedelta(hours=3)],
            )
            connection.execute(f"ANALYZE {table}")
    project = _lag_project(tmp_path / "config", url, "20m", False, settle="20m")
    (check,) = explain(project, "write-lag", LAG_AS_OF, estimate=True)["checks"]
    rows = [estimate["rows"] for estimate in check["estimate"]]
    # 4,800 rows each (80 minutes at one a second); 3,600 over the window alone
    assert len(rows) == 2 and all(4_400 <= n <= 5_200 for n in rows), check["estimate"]
