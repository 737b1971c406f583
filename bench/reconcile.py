"""Benchmark: reconciliation by key, pushed down, against pulling both sides into Python.

    .venv/bin/python bench/reconcile.py [--rows 10M] [--pg-rows 1M] [--planted 100] [--repeat 3]
    .venv/bin/python bench/reconcile.py --first-bits 12,14,16,18,20   # the one-source pair only
    .venv/bin/python bench/reconcile.py --parts                       # each pass's cost on one side
    .venv/bin/python bench/reconcile.py --identical 10K,1M,10M       # one source, nothing differs

Two pairs of sides with the same records and planted differences — ``--planted`` of each
kind: missing (on the first side only), extra (on the second only), changed (an athlete
and a score), duplicated (written twice on the second side):

- chDB against chDB, ``--rows`` records a side (native hashing: ``cityHash64``), each side
  asked on its own and, as sides on one source are, both in one query a round that compares
  the buckets in the engine;
- chDB against the embedded PostgreSQL, ``--pg-rows`` a side (portable hashing: MD5).

For each pair it prints: whether every planted key was found and nothing else; the rows
that crossed from the sources (bucket answers and fetched rows) against the rows compared;
the reconciliation's time (median of ``--repeat``) against one full scan of each side (a
``count`` that reads every compared column of every row) as a ratio; and the naive route —
both sides' rows pulled into pandas and compared there — as a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from gatecheck.demo.database import EmbeddedPostgres
from gatecheck.evaluation.reconcile import (
    DIGEST_PART,
    DIGEST_PARTS,
    JointPair,
    SqlForm,
    SqlSide,
    decode_key,
    hashing_for,
    reconcile,
)
from gatecheck.sources.clickhouse import ClickHouseSource, ClickHouseSourceConfig
from gatecheck.sources.clickhouse.connection import ClickHouse, Target
from gatecheck.sources.postgresql import PostgreSQLSource, PostgreSQLSourceConfig

KEYS = {"id": "text"}
VALUES = {"athlete": "text", "score": "number", "seen": "timestamp"}
KINDS = ("missing", "extra", "changed", "duplicated")


def planted(rows: int, count: int) -> dict[str, list[int]]:
    """The record numbers of each kind of difference, spread over the table."""
    stride = rows // (4 * count + 1)
    numbers = [stride * (k + 1) for k in range(4 * count)]
    return {
        "missing": numbers[0::4],
        "extra": [rows + k for k in range(count)],
        "changed": numbers[1::4],
        "duplicated": numbers[2::4],
    }


def _in(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers))


def clickhouse_tables(admin: Any, rows: int, plant: dict[str, list[int]], suffix: str) -> tuple[str, str]:
    admin.command("CREATE DATABASE IF NOT EXISTS bench_reconcile")
    a, b = f"bench_reconcile.a_{suffix}", f"bench_reconcile.b_{suffix}"
    for table in (a, b):
        admin.command(f"DROP TABLE IF EXISTS {table}")
        admin.command(
            f"CREATE TABLE {table} (id String, athlete String, score Float64, seen DateTime64(3, 'UTC')) "
            "ENGINE = MergeTree ORDER BY id"
        )
    columns = (
        "concat('msg-', toString(number)), concat('ath-', toString(number % 37)), (number % 400) / 8, "
        "toDateTime64('2026-11-01 00:00:00', 3, 'UTC') + toIntervalMillisecond(number * 1001)"
    )
    admin.command(f"INSERT INTO {a} SELECT {columns} FROM numbers({rows})")
    changed = (
        f"concat('msg-', toString(number)), if(number IN ({_in(plant['changed'])}), 'someone', "
        f"concat('ath-', toString(number % 37))), (number % 400) / 8, "
        "toDateTime64('2026-11-01 00:00:00', 3, 'UTC') + toIntervalMillisecond(number * 1001)"
    )
    admin.command(
        f"INSERT INTO {b} SELECT {changed} FROM numbers({rows + len(plant['extra'])}) "
        f"WHERE number NOT IN ({_in(plant['missing'])})"
    )
    admin.command(
        f"INSERT INTO {b} SELECT {columns} FROM numbers({rows}) WHERE number IN ({_in(plant['duplicated'])})"
    )
    return f"SELECT id, athlete, score, seen FROM {a}", f"SELECT id, athlete, score, seen FROM {b}"


def postgresql_table(url: str, rows: int, plant: dict[str, list[int]]) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS bench_b")
        connection.execute(
            "CREATE TABLE bench_b (id text, athlete text, score numeric(10,3), seen timestamptz)"
        )
        connection.execute(
            "INSERT INTO bench_b SELECT 'msg-' || n, "
            "CASE WHEN n = ANY(%s) THEN 'someone' ELSE 'ath-' || n %% 37 END, (n %% 400) / 8.0, "
            "timestamptz '2026-11-01 00:00:00+00' + n * interval '1001 milliseconds' "
            "FROM generate_series(0, %s) AS n WHERE NOT n = ANY(%s)",
            [plant["changed"], rows + len(plant["extra"]) - 1, plant["missing"]],
        )
        connection.execute(
            "INSERT INTO bench_b SELECT 'msg-' || n, 'ath-' || n %% 37, (n %% 400) / 8.0, "
            "timestamptz '2026-11-01 00:00:00+00' + n * interval '1001 milliseconds' "
            "FROM unnest(%s::int[]) AS n",
            [plant["duplicated"]],
        )
        connection.execute("VACUUM ANALYZE bench_b")
    return "SELECT id, athlete, score, seen FROM bench_b"


async def timed_reconcile(first: Any, second: SqlSide | None, **options: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    outcome = await reconcile(first, second, sample=10_000, max_rows=1_000_000, **options)
    return outcome, time.perf_counter() - started


def scan_sql(side: SqlSide) -> str:
    """One full scan of a side: every compared column of every row read, nothing returned."""
    if side.form.dialect == "clickhouse":
        return f"SELECT count() AS n FROM ({side.sql}) WHERE NOT ignore(id, athlete, score, seen)"
    return f"SELECT count(*) AS n FROM ({side.sql}) AS s WHERE s IS NOT NULL"


async def full_scan(side: SqlSide) -> float:
    started = time.perf_counter()
    await side.source.query(scan_sql(side), {})
    return time.perf_counter() - started


def pulled(first: SqlSide, second: SqlSide, clients: dict[str, Any]) -> tuple[dict[str, set[str]], float]:
    """The naive route: both sides' rows into pandas, compared there."""
    import pandas as pd

    started = time.perf_counter()
    frames = []
    for side in (first, second):
        if side.form.dialect == "clickhouse":
            frame = clients["clickhouse"].query_df(side.sql)
        else:
            import psycopg

            with psycopg.connect(clients["postgresql"]) as connection:
                frame = pd.DataFrame(
                    connection.execute(side.sql).fetchall(), columns=["id", "athlete", "score", "seen"]
                )
        frame["score"] = frame["score"].astype(float).round(6)
        frame["seen"] = pd.to_datetime(frame["seen"], utc=True)
        frames.append(frame)
    a, b = frames
    counts_a, counts_b = a["id"].value_counts(), b["id"].value_counts()
    duplicated = set(counts_a[counts_a > 1].index) | set(counts_b[counts_b > 1].index)
    missing = set(a["id"]) - set(b["id"])
    extra = set(b["id"]) - set(a["id"])
    joined = a.drop_duplicates().merge(b.drop_duplicates(), on="id", how="inner", suffixes=("_a", "_b"))
    differs = (
        (joined["athlete_a"] != joined["athlete_b"])
        | (joined["score_a"] != joined["score_b"])
        | (joined["seen_a"] != joined["seen_b"])
    )
    changed = set(joined.loc[differs, "id"])
    return {
        "missing": missing,
        "extra": extra,
        "changed": changed,
        "duplicated": duplicated,
    }, time.perf_counter() - started


def check(outcome: Any, plant: dict[str, list[int]]) -> bool:
    found = {kind: {decode_key(k, ["id"])["id"] for k in keys} for kind, keys in outcome.samples.items()}
    expected = {kind: {f"msg-{n}" for n in numbers} for kind, numbers in plant.items()}
    return found == expected and outcome.counts == {k: len(v) for k, v in expected.items()}


def report(
    label: str,
    rows: int,
    plant: dict[str, list[int]],
    first: SqlSide,
    second: SqlSide,
    repeat: int,
    clients: dict[str, Any],
    joint: JointPair | None = None,
) -> None:
    """One pair's figures; ``joint``: both sides asked together on their one source."""
    asked: tuple[Any, SqlSide | None] = (joint, None) if joint is not None else (first, second)

    async def run() -> tuple[Any, list[float], list[float], Any, list[float]]:
        outcome, _ = await timed_reconcile(*asked)  # warm-up
        times = []
        for _ in range(repeat):
            outcome, took = await timed_reconcile(*asked)
            times.append(took)
        scans = []
        for _ in range(repeat):
            scans.append(await full_scan(first) + await full_scan(second))
        # the baseline: bucket rounds only (no difference digest)
        buckets, bucket_times = None, []
        for _ in range(repeat):
            buckets, took = await timed_reconcile(*asked, digest_part=0)
            bucket_times.append(took)
        return outcome, times, scans, buckets, bucket_times

    outcome, times, scans, buckets, bucket_times = asyncio.run(run())
    compared = sum(outcome.rows.values())
    naive_sets, naive_time = pulled(first, second, clients)
    naive_right = naive_sets == {kind: {f"msg-{n}" for n in numbers} for kind, numbers in plant.items()}
    took, scan = statistics.median(times), statistics.median(scans)
    rounds = [r.what for r in outcome.rounds]
    print(f"\n{label}: {rows:,} records a side, {len(plant['missing'])} planted of each kind")
    print(f"  found every planted key and nothing else: {check(outcome, plant)} (counts {outcome.counts})")
    print(
        f"  rounds: {rounds.count('cells')} digest, {rounds.count('duplicates')} duplicates, "
        f"{rounds.count('buckets')} bucket rounds, {rounds.count('rows')} fetches; rows crossed "
        f"{outcome.transferred:,} of {compared:,} compared = {outcome.transferred / compared:.3%}"
    )
    print(f"  reconcile {took:.3f} s vs one full scan of each side {scan:.3f} s: {took / scan:.2f}x")
    if buckets is not None:
        before = statistics.median(bucket_times)
        print(
            f"  baseline, bucket rounds only (digest_part=0): found right {check(buckets, plant)}; "
            f"rows crossed "
            f"{buckets.transferred:,} = {buckets.transferred / compared:.3%} "
            f"({buckets.transferred / max(1, outcome.transferred):.1f}x the digest's); {before:.3f} s "
            f"({before / took:.2f}x the digest's time)"
        )
    print(
        f"  pull both sides into pandas and compare: {naive_time:.3f} s (right: {naive_right}): "
        f"{naive_time / took:.1f}x the reconciliation"
    )


def sweep(
    joint: JointPair,
    first: SqlSide,
    second: SqlSide,
    bits: list[int],
    plant: dict[str, list[int]],
    repeat: int,
) -> None:
    """The one-source pair's bucket rounds (the digests off) with each first round's bits:
    fewer bits, more rounds; more, more bucket answers in the first."""

    async def run() -> None:
        scans = [await full_scan(first) + await full_scan(second) for _ in range(repeat)]
        scan = statistics.median(scans)
        print(f"\none full scan of each side: {scan:.3f} s (median of {repeat})")
        print("| first bits | time / full scans | rows crossed | rounds | found exactly the planted keys |")
        print("|---|---|---|---|---|")
        for b in bits:
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                outcome = await reconcile(
                    joint, sample=10_000, max_rows=1_000_000, first_bits=b, digest_part=0
                )
                times.append(time.perf_counter() - started)
            took = statistics.median(times)
            rounds = [r.what for r in outcome.rounds]
            crossed = outcome.transferred / sum(outcome.rows.values())
            asked = f"{rounds.count('buckets')} bucket rounds + {rounds.count('rows')} fetch"
            right = check(outcome, plant)
            print(f"| {b} | {took:.3f} s = {took / scan:.1f}x | {crossed:.3%} | {asked} | {right} |")

    asyncio.run(run())


def identical(work: Path, hub: Any, admin: Any, sizes: list[int], repeat: int) -> None:
    """Both sides on one source and nothing differing (a gate's GO, the common case): the
    digests (one query over both sides, then each side's duplicated keys) against the bucket
    rounds (one query answering only the differing buckets: here none), as sent by a gate."""

    async def timed(pair: JointPair, **options: Any) -> tuple[float, list[str]]:
        times, rounds = [], []
        for _ in range(repeat):
            started = time.perf_counter()
            outcome = await reconcile(pair, **options)
            times.append(time.perf_counter() - started)
            rounds = [r.what for r in outcome.rounds]
        return statistics.median(times), rounds

    config = ClickHouseSourceConfig(type="clickhouse", url=f"chdb://{work / 'chdb'}", timeout="600s")
    print(f"\nboth sides on one source, identical (median of {repeat})")
    print("| records a side | digests | bucket rounds | digests / buckets |")
    print("|---|---|---|---|")
    for rows in sizes:
        sql, _ = clickhouse_tables(admin.client, rows, planted(rows, 0), f"same{rows}")
        form = SqlForm("clickhouse", "clickhouse", KEYS, VALUES, 3)
        pair = JointPair(("a", "b"), ClickHouseSource("a", config, work, hub), (sql, sql), {}, form)
        digests, by_digest = asyncio.run(timed(pair))
        buckets, by_buckets = asyncio.run(timed(pair, digest_part=0))
        assert by_digest == ["cells", "duplicates"] and by_buckets == ["buckets"], (by_digest, by_buckets)
        print(f"| {rows:,} | {digests:.3f} s | {buckets:.3f} s | {digests / buckets:.2f}x |")


def alternatives(form: SqlForm, sql: str) -> dict[str, str]:
    """Other ways to ask ClickHouse for the keys written more than once, tried and not kept:
    by the key columns (plain, and in the table's order: the bench tables are ordered by the
    key) or by their order, and folded into the digest's pass (a fourth part of cells by key
    hash, a distinct count in each; or a distinct count in each row cell)."""
    keys = ", ".join(f"`{k}`" for k in form.keys)
    hashed = f"SELECT {form.key_hash()} AS gc_kh, {form.row_hash()} AS gc_rh FROM ({sql}) AS s1"
    digest = form.digest_sql(sql, DIGEST_PART)
    cells, check = form._digest_terms(DIGEST_PART)  # the digest's own cells and check
    part, rows = DIGEST_PART, DIGEST_PARTS * DIGEST_PART
    in_row_cells = f"gc_cell < {rows}"
    fourth = (
        f"SELECT gc_cell, countIf({in_row_cells}) AS n, sumIf(gc_kh, {in_row_cells}) AS k, "
        f"sumIf(gc_rh, {in_row_cells}) AS h, sumIf({check}, {in_row_cells}) AS x, "
        f"countIf(NOT {in_row_cells}) - uniqExactIf(gc_kh, NOT {in_row_cells}) AS d\n"
        f"FROM ({hashed}) AS s2\n"
        f"ARRAY JOIN [{', '.join([*cells, f'{rows} + bitAnd(gc_kh, {part - 1})'])}] AS gc_cell\n"
        "GROUP BY gc_cell"
    )
    per_cell = digest.replace(" AS gc_check\n", " AS gc_check, count() - uniqExact(gc_kh) AS gc_d\n", 1)
    assert per_cell != digest, "the digest's form changed: update the per-cell alternative"
    return {
        "not kept: keys written more than once, by the key columns": (
            f"SELECT {keys} FROM ({sql}) AS s1 GROUP BY {keys} HAVING count() > 1 LIMIT 1000"
        ),
        "not kept: the same in the table's order (`optimize_aggregation_in_order`)": (
            f"SELECT {keys} FROM ({sql}) AS s1 GROUP BY {keys} HAVING count() > 1 LIMIT 1000 "
            "SETTINGS optimize_aggregation_in_order = 1"
        ),
        "not kept: a key equal to the one before it (`lagInFrame` over the key order)": (
            f"SELECT count() AS n FROM (SELECT {keys}, lagInFrame(({keys})) OVER "
            f"(ORDER BY {keys} ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS gc_before "
            f"FROM ({sql}) AS s1) AS s2 WHERE ({keys}) = gc_before"
        ),
        "not kept: the digest with a fourth part by key hash counting distinct keys": fourth,
        "not kept: the digest with a distinct count of keys in every cell": per_cell,
    }


def parts(label: str, side: SqlSide, repeat: int) -> None:
    """What each pass a side answers costs, against one full scan of it: the floor under the
    reconciliation's time (its digest and its duplicates question each hash every row)."""
    form, sql = side.form, side.sql
    count = "count()" if form.dialect == "clickhouse" else "count(*)"
    distinct = "uniqExact(k)" if form.dialect == "clickhouse" else "count(DISTINCT k)"

    async def timed(query: str) -> float:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            await side.source.query(query, {})
            times.append(time.perf_counter() - started)
        return min(times)

    async def run() -> None:
        scan = await timed(scan_sql(side))
        print(f"\n{label}: one full scan {scan:.3f} s (best of {repeat})")
        print("| pass over every row | time | against the scan |")
        print("|---|---|---|")
        key, row = form.key_hash(), form.row_hash()

        def over(select: str, outer: str) -> str:
            return f"SELECT {outer} FROM (SELECT {select} FROM ({sql}) AS s1) AS s2"

        passes = {
            "the row hash, summed": over(f"{row} AS r", "sum(r) AS s"),
            "the key hash and the row hash, summed": over(
                f"{key} AS k, {row} AS r", "sum(k) AS k, sum(r) AS s"
            ),
            "rows beyond one per key (a distinct count of key hashes)": over(
                f"{key} AS k", f"{count} - {distinct} AS d"
            ),
            f"the difference digest ({DIGEST_PARTS} x {DIGEST_PART} cells)": form.digest_sql(
                sql, DIGEST_PART
            ),
            "the keys written more than once": form.duplicates_sql(sql, 1_000),
        }
        if form.dialect == "clickhouse":
            passes.update(alternatives(form, sql))
        for what, query in passes.items():
            took = await timed(query)
            print(f"| {what} | {took:.3f} s | {took / scan:.2f}x |")

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", default="10M")
    parser.add_argument("--pg-rows", default="1M")
    parser.add_argument("--planted", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--first-bits",
        metavar="B,B,…",
        help="only the one-source chDB pair, once per first round of B bits (e.g. 12,14,16,18,20): "
        "time against the full scans, rows crossed, rounds",
    )
    parser.add_argument(
        "--identical",
        metavar="N,N,…",
        help="only both sides on one source with nothing differing, at each size (e.g. 10K,1M,10M): "
        "the digests against the bucket rounds",
    )
    parser.add_argument(
        "--parts",
        action="store_true",
        help="one side of each engine: the time of each pass a side answers (its hashes, the "
        "digest, the duplicates question; on ClickHouse also the ways of asking for the keys "
        "written twice that were not kept) against one full scan of it",
    )
    args = parser.parse_args()

    def count(text: str) -> int:
        return int(
            float(text.rstrip("MK"))
            * (1_000_000 if text.endswith("M") else 1000 if text.endswith("K") else 1)
        )

    rows, pg_rows = count(args.rows), count(args.pg_rows)
    work = Path(tempfile.mkdtemp(prefix="gatecheck-bench-reconcile-"))
    hub = ClickHouse()
    target = Target.parse(f"chdb://{work / 'chdb'}?database=default", work)
    admin = hub.connect(target, create=True)
    if args.identical:
        try:
            identical(work, hub, admin, [count(size) for size in args.identical.split(",")], args.repeat)
        finally:
            hub.close()
        return
    postgres = EmbeddedPostgres(work / "postgres").start()
    try:
        url = postgres.fresh_url("bench")
        config = ClickHouseSourceConfig(type="clickhouse", url=f"chdb://{work / 'chdb'}", timeout="600s")

        def ch(name: str, sql: str, hashing: str) -> SqlSide:
            source = ClickHouseSource(name, config, work, hub)
            return SqlSide(name, source, sql, {}, SqlForm("clickhouse", hashing, KEYS, VALUES, 3))  # type: ignore[arg-type]

        plant = planted(rows, args.planted)
        started = time.perf_counter()
        a_sql, b_sql = clickhouse_tables(admin.client, rows, plant, "big")
        print(f"built chDB sides of {rows:,} records in {time.perf_counter() - started:.1f} s")
        native = hashing_for(("clickhouse", "clickhouse"))
        a_side, b_side = ch("a", a_sql, native), ch("b", b_sql, native)
        clients = {"clickhouse": admin.client}
        if args.first_bits:
            joint = JointPair(("a", "b"), a_side.source, (a_sql, b_sql), {}, a_side.form)
            sweep(joint, a_side, b_side, [int(b) for b in args.first_bits.split(",")], plant, args.repeat)
            return
        if args.parts:
            parts(f"chDB, {rows:,} records a side (cityHash64)", a_side, args.repeat)
        else:
            report(
                "chDB vs chDB, each side asked on its own", rows, plant, a_side, b_side, args.repeat, clients
            )
            joint = JointPair(("a", "b"), a_side.source, (a_sql, b_sql), {}, a_side.form)
            report("chDB vs chDB, one source: compared in the engine", rows, plant, a_side, b_side,
                   args.repeat, clients, joint)  # fmt: skip

        plant = planted(pg_rows, args.planted)
        a_sql, _ = clickhouse_tables(admin.client, pg_rows, plant, "small")
        pg_sql = postgresql_table(url, pg_rows, plant)
        portable = hashing_for(("clickhouse", "postgresql"))
        pg_config = PostgreSQLSourceConfig(type="postgresql", url=url, timeout="600s")
        pg_side = SqlSide(
            "b",
            PostgreSQLSource("b", pg_config, work),
            pg_sql,
            {},
            SqlForm("postgresql", portable, KEYS, VALUES, 3),
        )
        if args.parts:
            parts(f"chDB, {pg_rows:,} records (portable MD5)", ch("a", a_sql, portable), args.repeat)
            parts(f"PostgreSQL, {pg_rows:,} records (portable MD5)", pg_side, args.repeat)
            return
        report(
            "chDB vs PostgreSQL", pg_rows, plant, ch("a", a_sql, portable), pg_side, args.repeat,
            {"clickhouse": admin.client, "postgresql": url},
        )  # fmt: skip
    finally:
        hub.close()
        postgres.stop()


if __name__ == "__main__":
    main()
