"""Reconciliation: two sides' records matched by key, computed in the sources.

A ``reconcile:`` suite names two sides, each a keyed query (one row per record: the key
columns and the compared columns) on ClickHouse, PostgreSQL or NATS JetStream. Nothing pulls
the rows into Python:

1. Each SQL side hashes every row in the source — the key's hash ``kh`` (60 bits) and the
   whole row's hash ``rh`` (60 bits) — and answers, per bucket (the top bits of ``kh``), its
   row count, the sum of ``rh`` (mod 2^64; a sum, not a XOR, so a row written twice
   changes it) and its rows beyond one per key (a key written twice alike on both sides
   leaves the counts and sums equal).
2. Buckets whose (count, sum) agree on both sides, with no key more than once, cost only
   that answer. Buckets that differ
   are split again — only their rows are hashed into finer buckets (more bits of ``kh``) —
   for a bounded number of rounds, until the differing buckets hold few enough rows.
3. Those rows cross, as (canonical key, ``rh``) pairs, and are classified: a key on the
   first side only is *missing*, on the second side only *extra*, on both with other values
   *changed*, more than once on a side *duplicated*.

Before the buckets, each side answers a **difference digest** (an invertible Bloom lookup
table): 3 × 512 cells, each row added to one cell of each part — its count, the sum of its
key hashes and of its row hashes. The two digests subtracted hold only the rows on one side;
cells holding one such row give it, and taking it out frees others (:func:`peel`). When that
empties every cell, the differing rows' key hashes are known: with the keys each side holds
more than once (its own question), only their rows cross — a cost that grows with the
differences, not with the rows. When it does not (more differences than the cells hold), the
bucket rounds above run. Both sides on one source answer in one query a round, compared in
the engine: only the differing cells (or buckets) cross.

The hashes must agree across engines, so each value is first written in one canonical form
(:func:`canonical_text` and its SQL twins, docs/reconcile.md "Canonical form"): by its
declared type — text as is, integers in decimal, numbers as integers of 10^-decimals,
timestamps as UTC microseconds since the epoch, booleans ``1``/``0`` — each field
``<bytes>:<text>`` (NULL: ``-``), fields joined by ``,``. ``portable`` hashing (sides on
different engines, or a NATS side) is MD5 of that text: the first 15 hex digits, in every
engine and in Python alike. Two ClickHouse sides hash natively (``cityHash64`` of the typed
canonical values), two PostgreSQL sides with ``hashtextextended``: faster, and still equal on
both sides of the same engine.

A NATS side cannot compute in the stream: its window's messages are read (an ordered
consumer, at most ``max_messages``, else the check is inconclusive) and hashed here, then
answer the same questions as a SQL side.

Why one module of ~1,100 lines: the canonical form, its SQL twins in each dialect, the sides
that answer digest, bucket and row questions and the rounds that ask them must change together — a
hash computed one way in one engine and another way in the other reports every key changed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol

from gatecheck.sources.base import MAX_ROWS

if TYPE_CHECKING:
    import pandas as pd

    from gatecheck.sources.base import QueryParameters, Source

Hashing = Literal["portable", "clickhouse", "postgresql"]
Dialect = Literal["clickhouse", "postgresql", "nats"]

#: Bits of a key's hash: the first 15 hex digits of an MD5.
HASH_BITS = 60
_MASK60 = (1 << HASH_BITS) - 1
_MOD = 1 << 64
_INT64 = 1 << 63  # a canonical integer's bound: ClickHouse and PostgreSQL compute in 64 bits
#: The texts of a boolean value (lowercased), as both engines and Python accept them.
_BOOLEAN_TEXTS = "('true', 'false', 't', 'f', '1', '0')"
#: Buckets asked for in one request (a request answers at most MAX_ROWS rows).
MAX_BUCKETS = 8192
FIRST_BITS = 13
#: Rows of differing buckets fetched in one request.
FETCH_ROWS = 8000
#: The difference digest: each row is added to one cell in each of three parts of
#: ``DIGEST_PART`` cells (a power of two, at most 2^20), chosen by 20-bit slices of its row hash.
DIGEST_PART = 512
DIGEST_PARTS = 3
KINDS = ("missing", "extra", "changed", "duplicated")


# ---------------------------------------------------------------- the canonical form


def _scaled(value: Any, decimals: int) -> int:
    """A number as an integer of 10^-decimals, rounded half to even (as the engines round a
    double)."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    scaled = round(number * 10**decimals)
    if abs(scaled) >= _INT64:
        raise ValueError(f"{value!r} is beyond ±9.2e{18 - decimals} at {decimals} decimals: lower decimals")
    return scaled


def canonical_value(value: Any, kind: str, decimals: int) -> str | None:
    """One value in its canonical text (None for NULL), as the SQL forms write it."""
    import pandas as pd

    if value is None or value is pd.NaT or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if kind == "text":
        return value if isinstance(value, str) else str(value)
    if kind == "integer":
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, float | Decimal) and value != int(value):
            raise ValueError(f"{value!r} is not an integer")
        if abs(int(value)) >= _INT64:
            raise ValueError(f"{value!r} is beyond a 64-bit integer")
        return str(int(value))
    if kind == "number":
        return str(_scaled(value, decimals))
    if kind == "timestamp":
        moment = _moment(value)
        delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
        return str((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)
    if kind == "boolean":
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered not in ("true", "false", "1", "0", "t", "f"):
                raise ValueError(f"{value!r} is not a boolean")
            return "1" if lowered in ("true", "1", "t") else "0"
        if value not in (0, 1):  # True and False are 1 and 0; 2 is no boolean
            raise ValueError(f"{value!r} is not a boolean")
        return "1" if value else "0"
    raise ValueError(f"unknown column type {kind!r}")


def _moment(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        raise ValueError(f"{value!r} is not a timestamp")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def field_text(text: str | None) -> str:
    """A field of the serialization: ``<bytes>:<text>``, NULL ``-`` (no two rows' fields
    can run into each other)."""
    return "-" if text is None else f"{len(text.encode())}:{text}"


def canonical_row(values: Iterable[Any], types: Iterable[str], decimals: int) -> str:
    return ",".join(field_text(canonical_value(v, t, decimals)) for v, t in zip(values, types, strict=True))


def md5_60(text: str) -> int:
    """The first 15 hex digits of the text's MD5, as an integer (the portable hash)."""
    return int(hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()[:15], 16)


def digest_cells(rh: int, part: int) -> tuple[int, ...]:
    """The digest cells of a row whose hash is ``rh``: one in each part, from 20-bit slices
    of the hash (as the SQL of each engine computes them)."""
    return tuple(j * part + ((rh >> (20 * j)) & (part - 1)) for j in range(DIGEST_PARTS))


def digest_check(rh: int) -> int:
    """A row's check value in its digest cells: bits of its row hash mixed by shifts and XORs,
    which do not add up — several rows' sums never pass for one row's (as the SQL computes)."""
    return rh ^ (rh >> 7) ^ ((rh << 3) & _MASK60)


def peel(first: Cells, second: Cells, part: int) -> dict[int, int] | None:
    """The key hashes of the rows on one side only — a row on the first side and not the
    second counts +1, the other way -1 — from two sides' digests, or None when the difference
    cannot be decoded (too many differences for the cells, a row more than twice as often
    on one side): the digests subtracted, every cell holding exactly one row's difference
    gives that row (its key hash and row hash sums; its row hash names its cells, which
    must include this one), which is taken out of its other cells, until none is left. Only
    a difference peeled to the last cell is an answer."""
    diff: dict[int, list[int]] = {}
    for cell in set(first) | set(second):
        a, b = first.get(cell, _EMPTY), second.get(cell, _EMPTY)
        value = [a[0] - b[0], *((x - y) % _MOD for x, y in zip(a[1:], b[1:], strict=True))]
        if any(value):
            diff[cell] = value
    found: dict[int, int] = {}
    queue = [cell for cell, value in diff.items() if value[0] in (1, -1)]
    # each peel takes one row's difference out; more peels than that is a cycle
    budget = sum(abs(value[0]) for value in diff.values()) + len(diff)
    while queue:
        cell = queue.pop()
        held = diff.get(cell)
        if held is None or held[0] not in (1, -1):
            continue
        sign = held[0]
        kh, rh, check = (x if sign == 1 else (-x) % _MOD for x in held[1:])
        cells = digest_cells(rh, part)
        if kh > _MASK60 or rh > _MASK60 or cell not in cells or check != digest_check(rh):
            continue  # more than one row's difference: another peel may free it
        budget -= 1
        if budget < 0:
            return None
        found[kh] = found.get(kh, 0) + sign
        for other in cells:
            left = diff.setdefault(other, [0, 0, 0, 0])
            left[0] -= sign
            for i, x in ((1, kh), (2, rh), (3, check)):
                left[i] = (left[i] - sign * x) % _MOD
            if not any(left):
                del diff[other]
            elif left[0] in (1, -1):
                queue.append(other)
    return None if diff else found


def decode_key(text: str, names: list[str]) -> dict[str, str | None]:
    """A canonical key back into its columns' canonical texts (for the samples)."""
    out: dict[str, str | None] = {}
    raw = text.encode()  # sizes count bytes
    position = 0
    for name in names:
        if raw.startswith(b"-", position):
            out[name] = None
            position += 2
            continue
        colon = raw.index(b":", position)
        end = colon + 1 + int(raw[position:colon])
        out[name] = raw[colon + 1 : end].decode()
        position = end + 1
    return out


# ---------------------------------------------------------------- SQL of each engine


def _unfit(column: str, kind: str, decimals: int) -> str:
    """What an error says of a value that does not fit its column's declared type (the engines
    would otherwise truncate, wrap or round it into another record's value)."""
    if kind == "number":
        return f"column {column}: a value beyond ±9.2e{18 - decimals} at {decimals} decimals (lower decimals)"
    if kind == "integer":
        return f"column {column}: a value that is not a 64-bit integer (declare it number)"
    return f"column {column}: a value that is not a boolean (0, 1, true, false)"


def _ch_value(column: str, kind: str, decimals: int) -> str:
    """A column's value in its canonical ClickHouse type (NULL stays NULL). A value that does
    not fit the type is an error (``throwIf``), never truncated or wrapped: ``toInt64`` makes
    1.5 and 1.0 both 1, and every number beyond 64 bits the same -2^63."""
    x = f"`{column}`"

    def unless(value: str, bad: str) -> str:
        return f"{value} + throwIf(ifNull({bad}, 0), '{_unfit(column, kind, decimals)}')"

    scaled = f"round(toFloat64({x}) * {10**decimals})"
    not_boolean = f"lower(toString({x})) NOT IN {_BOOLEAN_TEXTS}"
    return {
        "text": f"toString({x})",
        "integer": f"toInt64({unless(f'toInt64({x})', f'toFloat64({x}) != toFloat64(toInt64({x}))')})",
        "number": f"toInt64({unless(f'toInt64({scaled})', f'abs({scaled}) >= {float(_INT64)!r}')})",
        "timestamp": f"toUnixTimestamp64Micro(toDateTime64({x}, 6, 'UTC'))",
        "boolean": f"toUInt8({unless(f'toUInt8(toBool({x}))', not_boolean)})",
    }[kind]


def _ch_text(column: str, kind: str, decimals: int) -> str:
    """The canonical text of a column's value, in ClickHouse."""
    value = _ch_value(column, kind, decimals)
    return value if kind == "text" else f"toString({value})"


def _ch_typed(column: str, kind: str, decimals: int) -> tuple[str, str]:
    """(is NULL, the value in its canonical ClickHouse type) for native hashing."""
    zero = "''" if kind == "text" else "0"
    return f"isNull(`{column}`)", f"ifNull({_ch_value(column, kind, decimals)}, {zero})"


def _pg_text(column: str, kind: str, decimals: int) -> str:
    """The canonical text of a column's value, in PostgreSQL. A value that does not fit the
    declared type is an error: casting a text that says so (and holds the value, so the
    planner cannot fold it) to the type fails with it; out of range, ``bigint`` fails itself."""
    x = f'"{column}"'
    refused = f"('gatecheck: {_unfit(column, kind, decimals)}: ' || ({x})::text)"
    if kind == "text":
        return f"({x})::text"
    if kind == "integer":  # ::bigint alone rounds 1.5 to 2 (and says "out of range", naming nothing)
        whole = f"({x})::numeric = trunc(({x})::numeric) AND abs(({x})::numeric) < {_INT64}"
        return f"((CASE WHEN {whole} THEN ({x})::numeric ELSE {refused}::numeric END)::bigint)::text"
    if kind == "number":  # beyond bigint: 'bigint out of range', naming no column
        scaled = f"round(({x})::float8 * {10**decimals})"
        fits = f"abs({scaled}) < {float(_INT64)!r}"
        return f"((CASE WHEN {fits} THEN {scaled} ELSE {refused}::float8 END)::bigint)::text"
    if kind == "timestamp":
        return f"(round(extract(epoch from {x}) * 1000000)::bigint)::text"
    # boolean (NULL stays NULL): ::boolean alone reads 2 and 'yes' as true
    boolean = f"lower(({x})::text) IN {_BOOLEAN_TEXTS}"
    return f"(CASE WHEN {boolean} THEN (({x})::boolean)::int ELSE {refused}::int END)::text"


def _serialization(dialect: str, columns: Mapping[str, str], decimals: int) -> str:
    if dialect == "clickhouse":
        fields = [
            f"ifNull(concat(toString(length({t})), ':', {t}), '-')"
            for t in (_ch_text(c, k, decimals) for c, k in columns.items())
        ]
        return fields[0] if len(fields) == 1 else "concat(" + ", ',', ".join(fields) + ")"
    fields = [
        f"coalesce(octet_length({t})::text || ':' || {t}, '-')"
        for t in (_pg_text(c, k, decimals) for c, k in columns.items())
    ]
    return " || ',' || ".join(fields)


@dataclass(frozen=True)
class SqlForm:
    """How one SQL side hashes its rows."""

    dialect: Literal["clickhouse", "postgresql"]
    hashing: Hashing
    keys: dict[str, str]
    values: dict[str, str]
    decimals: int

    def key_text(self) -> str:
        return _serialization(self.dialect, self.keys, self.decimals)

    def _hash(self, columns: Mapping[str, str]) -> str:
        if self.hashing == "clickhouse":
            parts = [p for c, k in columns.items() for p in _ch_typed(c, k, self.decimals)]
            return f"bitShiftRight(cityHash64({', '.join(parts)}), 4)"
        text = _serialization(self.dialect, columns, self.decimals)
        if self.hashing == "postgresql":
            return f"(hashtextextended({text}, 0) & {_MASK60})"
        if self.dialect == "clickhouse":
            return f"bitShiftRight(reinterpretAsUInt64(reverse(substring(MD5({text}), 1, 8))), 4)"
        return f"('x' || substr(md5({text}), 1, 15))::bit(60)::bigint"

    def key_hash(self) -> str:
        return self._hash(self.keys)

    def row_hash(self) -> str:
        return self._hash({**self.keys, **self.values})

    def _shift(self, expression: str, bits: int) -> str:
        if self.dialect == "clickhouse":
            return f"bitShiftRight({expression}, {HASH_BITS - bits})"
        return f"({expression} >> {HASH_BITS - bits})"

    def _within(self, kh: str, bits: int, prefixes: list[int] | str | None) -> str:
        """``WHERE`` the key hash's top ``bits`` are one of ``prefixes`` (a text: a
        placeholder for ``gatecheck explain``)."""
        if prefixes is None:
            return ""
        listed = prefixes if isinstance(prefixes, str) else ", ".join(map(str, sorted(prefixes)))
        return f"\nWHERE {self._shift(kh, bits)} IN ({listed})"

    def buckets_sql(self, user_sql: str, bits: int, within: tuple[int, list[int] | str] | None) -> str:
        """Per bucket of ``bits`` bits of the key hash: rows, the sum of row hashes and the rows
        beyond one per key (a key written twice: identical on both sides, the sums agree), over
        the rows in ``within`` (bits, prefixes) or all of them."""
        body = user_sql.strip().rstrip(";")
        count = "count()" if self.dialect == "clickhouse" else "count(*)"
        distinct = "uniqExact(gc_kh)" if self.dialect == "clickhouse" else "count(DISTINCT gc_kh)"
        where = "" if within is None else self._within("gc_kh", within[0], within[1])
        return (
            f"SELECT {self._shift('gc_kh', bits)} AS gc_bucket, {count} AS gc_rows, sum(gc_rh) AS gc_hash,\n"
            f"       {count} - {distinct} AS gc_dups\n"
            f"FROM (SELECT {self.key_hash()} AS gc_kh, {self.row_hash()} AS gc_rh\n"
            f"      FROM (\n{body}\n) AS gc_side) AS gc_hashed{where}\n"
            "GROUP BY gc_bucket"
        )

    def _digest_terms(self, part: int) -> tuple[list[str], str]:
        """A row's cell in each part of a digest of ``part`` cells a part, and its check value
        (:func:`digest_cells`, :func:`digest_check`), from its row hash ``gc_rh``."""
        if self.dialect == "clickhouse":
            cells = [
                f"{j * part} + bitAnd(bitShiftRight(gc_rh, {20 * j}), {part - 1})"
                for j in range(DIGEST_PARTS)
            ]
            check = (
                f"bitXor(bitXor(gc_rh, bitShiftRight(gc_rh, 7)), bitAnd(bitShiftLeft(gc_rh, 3), {_MASK60}))"
            )
            return cells, check
        cells = [f"({j * part} + ((gc_rh >> {20 * j}) & {part - 1}))" for j in range(DIGEST_PARTS)]
        return cells, f"(gc_rh # (gc_rh >> 7) # ((gc_rh << 3) & {_MASK60}))"

    def digest_sql(self, user_sql: str, part: int) -> str:
        """The difference digest: per cell, its rows, the sum of their key hashes and of
        their row hashes (each row in one cell of each of three parts: :func:`digest_cells`)."""
        body = user_sql.strip().rstrip(";")
        hashed = (
            f"FROM (SELECT {self.key_hash()} AS gc_kh, {self.row_hash()} AS gc_rh\n"
            f"      FROM (\n{body}\n) AS gc_side) AS gc_hashed\n"
        )
        terms, check = self._digest_terms(part)
        if self.dialect == "clickhouse":
            cells = ", ".join(terms)
            return (
                "SELECT gc_cell, count() AS gc_rows, sum(gc_kh) AS gc_ksum, sum(gc_rh) AS gc_hash,\n"
                f"       sum({check}) AS gc_check\n"
                f"{hashed}ARRAY JOIN [{cells}] AS gc_cell\nGROUP BY gc_cell"
            )
        # OFFSET 0: PostgreSQL keeps the hashed rows as a subquery, else it computes each row's
        # hashes once per expression that uses them. The three parts are three grouping sets of
        # one pass (a cell outside the set grouped is NULL): 1.3 s against 1.8 s for each row
        # joined to its three cells, at 1 M rows (bench/README.md, 2026-12-06)
        hashed = hashed.replace(") AS gc_side) AS gc_hashed", ") AS gc_side OFFSET 0) AS gc_hashed")
        cells = ", ".join(f"{term} AS gc_c{j}" for j, term in enumerate(terms))
        parts = [f"gc_c{j}" for j in range(DIGEST_PARTS)]
        return (
            f"SELECT coalesce({', '.join(parts)}) AS gc_cell, count(*) AS gc_rows, sum(gc_kh) AS gc_ksum,\n"
            "       sum(gc_rh) AS gc_hash, sum(gc_check) AS gc_check\n"
            f"FROM (SELECT gc_kh, gc_rh, {check} AS gc_check,\n       {cells}\n"
            f"{hashed}) AS gc_parts\n"
            f"GROUP BY GROUPING SETS ({', '.join(f'({p})' for p in parts)})"
        )

    def joint_digest_sql(self, sqls: tuple[str, str], part: int) -> str:
        """Both sides' difference digests (:meth:`digest_sql`) in one query, compared in the
        engine: only the cells whose (rows, key hash sum, row hash sum, check sum) differ come
        back (and one more row, so each side's total rows — the last two columns — always do)."""
        sums = ("gc_n", "gc_k", "gc_h", "gc_x")
        named = ("gc_rows", "gc_ksum", "gc_hash", "gc_check")

        def side(s: int) -> str:
            # this side's sums in its columns, zeros in the other side's
            columns = ", ".join(
                f"{n if t == s else 0} AS {c}{t}" for t in (0, 1) for c, n in zip(sums, named, strict=True)
            )
            return f"SELECT gc_cell, {columns} FROM (\n{self.digest_sql(sqls[s], part)}\n) AS gc_digest{s}"

        # a cell one side has no row in is absent from its digest: its sums are 0 (each side's
        # digests tagged and added up by cell: no join, whose key column for a row of one side
        # only differs between ClickHouse's analyzers)
        listed = ", ".join(f"{c}{s}" for s in (0, 1) for c in sums)
        added = ", ".join(f"sum({c}{s}) AS {c}{s}" for s in (0, 1) for c in sums)
        totals = ", ".join(
            f"sum(CASE WHEN gc_cell < {part} THEN gc_n{s} ELSE 0 END) OVER () AS gc_t{s}" for s in (0, 1)
        )
        differ = " OR ".join(f"{c}0 != {c}1" for c in sums)
        return (
            f"SELECT gc_cell, {listed}, gc_t0, gc_t1 FROM (\n"
            f"  SELECT gc_cell, {listed},\n         {totals},\n         row_number() OVER () AS gc_first\n"
            f"  FROM (SELECT gc_cell, {added}\n"
            f"        FROM ({side(0)}\n              UNION ALL\n              {side(1)}) AS gc_tagged\n"
            "        GROUP BY gc_cell) AS gc_cells\n"
            ") AS gc_compared\n"
            f"WHERE {differ} OR gc_first = 1"
        )

    def joint_duplicates_sql(self, sqls: tuple[str, str], limit: int) -> str:
        """Both sides' keys on more than one row (:meth:`duplicates_sql`, each side at most
        ``limit``), in one query: side (0, 1), key hash."""
        first, second = (
            f"SELECT {s} AS gc_s, gc_kh FROM (\n{self.duplicates_sql(sql, limit)}\n) AS gc_twice{s}"
            for s, sql in enumerate(sqls)
        )
        return f"{first}\nUNION ALL\n{second}"

    def duplicates_sql(self, user_sql: str, limit: int) -> str:
        """The hashes of the keys on more than one row (at most ``limit``)."""
        body = user_sql.strip().rstrip(";")
        count = "count()" if self.dialect == "clickhouse" else "count(*)"
        return (
            f"SELECT gc_kh FROM (SELECT {self.key_hash()} AS gc_kh FROM (\n{body}\n) AS gc_side) AS gc_keys\n"
            f"GROUP BY gc_kh HAVING {count} > 1\nLIMIT {int(limit)}"
        )

    def joint_buckets_sql(
        self,
        sqls: tuple[str, str],
        bits: int,
        within: tuple[int, list[int] | str] | None,
        step: str | None = None,
    ) -> str:
        """Both sides' buckets in one query, compared in the engine: only the buckets whose
        (rows, hash sum) differ, or that hold a key more than once on a side, come back (and
        one more row, so each side's total rows — the last two columns — always do). ``step``:
        the sides' column naming the step of a query of many steps — then every step's buckets
        and totals apart, the step first."""
        first, second = (sql.strip().rstrip(";") for sql in sqls)
        where = "" if within is None else self._within("gc_kh", within[0], within[1])
        bucket = self._shift("gc_kh", bits)
        if self.dialect == "clickhouse":
            per_side = (
                "countIf(gc_s = 0) AS gc_n0, sumIf(gc_rh, gc_s = 0) AS gc_h0, "
                "gc_n0 - uniqExactIf(gc_kh, gc_s = 0) AS gc_d0, "
                "countIf(gc_s = 1) AS gc_n1, sumIf(gc_rh, gc_s = 1) AS gc_h1, "
                "gc_n1 - uniqExactIf(gc_kh, gc_s = 1) AS gc_d1"
            )
        else:
            per_side = (
                "count(*) FILTER (WHERE gc_s = 0) AS gc_n0, "
                "coalesce(sum(gc_rh) FILTER (WHERE gc_s = 0), 0) AS gc_h0, "
                "count(*) FILTER (WHERE gc_s = 0) - count(DISTINCT gc_kh) FILTER (WHERE gc_s = 0) AS gc_d0, "
                "count(*) FILTER (WHERE gc_s = 1) AS gc_n1, "
                "coalesce(sum(gc_rh) FILTER (WHERE gc_s = 1), 0) AS gc_h1, "
                "count(*) FILTER (WHERE gc_s = 1) - count(DISTINCT gc_kh) FILTER (WHERE gc_s = 1) AS gc_d1"
            )
        hashed = f"{self.key_hash()} AS gc_kh, {self.row_hash()} AS gc_rh"
        by, over = "", "()"
        if step is not None:
            hashed = f"{step} AS gc_step, {hashed}"
            by, over = "gc_step, ", "(PARTITION BY gc_step)"
        return (
            f"SELECT {by}gc_bucket, gc_n0, gc_h0, gc_d0, gc_n1, gc_h1, gc_d1, gc_t0, gc_t1 FROM (\n"
            f"  SELECT {by}gc_bucket, gc_n0, gc_h0, gc_d0, gc_n1, gc_h1, gc_d1,\n"
            f"         sum(gc_n0) OVER {over} AS gc_t0, sum(gc_n1) OVER {over} AS gc_t1,\n"
            f"         row_number() OVER {over} AS gc_first\n"
            f"  FROM (SELECT {by}{bucket} AS gc_bucket, {per_side}\n"
            f"        FROM (SELECT 0 AS gc_s, {hashed} FROM (\n{first}\n) AS gc_first_side\n"
            f"              UNION ALL\n"
            f"              SELECT 1 AS gc_s, {hashed} FROM (\n{second}\n) AS gc_second_side)\n"
            f"        AS gc_hashed{where}\n"
            f"        GROUP BY {by}gc_bucket) AS gc_buckets\n"
            ") AS gc_compared\n"
            "WHERE gc_n0 != gc_n1 OR gc_h0 != gc_h1 OR gc_d0 > 0 OR gc_d1 > 0 OR gc_first = 1"
        )

    def joint_rows_sql(self, sqls: tuple[str, str], bits: int, prefixes: list[int] | str) -> str:
        """Both sides' rows in the buckets ``prefixes``: side (0, 1), canonical key, row hash."""
        first, second = (sql.strip().rstrip(";") for sql in sqls)
        within = self._within(self.key_hash(), bits, prefixes)
        return (
            f"SELECT 0 AS gc_s, {self.key_text()} AS gc_key, {self.row_hash()} AS gc_rh\n"
            f"FROM (\n{first}\n) AS gc_first_side{within}\n"
            f"UNION ALL SELECT 1 AS gc_s, {self.key_text()} AS gc_key, {self.row_hash()} AS gc_rh\n"
            f"FROM (\n{second}\n) AS gc_second_side{within}"
        )

    def rows_sql(self, user_sql: str, bits: int, prefixes: list[int] | str) -> str:
        """The rows in the buckets ``prefixes`` of ``bits`` bits: canonical key, row hash."""
        body = user_sql.strip().rstrip(";")
        return (
            f"SELECT {self.key_text()} AS gc_key, {self.row_hash()} AS gc_rh\n"
            f"FROM (\n{body}\n) AS gc_side{self._within(self.key_hash(), bits, prefixes)}"
        )


def hashing_for(dialects: tuple[str, str]) -> Hashing:
    """Native hashing when both sides are the same SQL engine, else the portable MD5."""
    first, second = dialects
    if first == second and first in ("clickhouse", "postgresql"):
        return first  # type: ignore[return-value]
    return "portable"


# ---------------------------------------------------------------- sides

#: A side's answer to a round: bucket → (rows, sum of row hashes mod 2^64, rows beyond one
#: per key).
Buckets = dict[int, tuple[int, int, int]]
#: A side's difference digest: cell → (rows, sums of key hashes, of row hashes and of their
#: check values :func:`digest_check`, mod 2^64).
Cells = dict[int, tuple[int, int, int, int]]
_NONE = (0, 0, 0)
_EMPTY = (0, 0, 0, 0)


class Side(Protocol):
    name: str

    async def buckets(self, bits: int, within: tuple[int, list[int]] | None) -> Buckets:
        """bucket → (rows, sum of row hashes mod 2^64, rows beyond one per key)."""

    async def rows(self, bits: int, prefixes: list[int]) -> list[tuple[str, int]]:
        """(canonical key, row hash) of every row in those buckets."""

    async def digest(self, part: int) -> Cells:
        """The side's difference digest (:meth:`SqlForm.digest_sql`)."""

    async def duplicates(self, limit: int) -> list[int]:
        """The hashes of keys on more than one row, at most ``limit``."""

    def crossed(self, answered: int, first: bool) -> int:
        """Rows that crossed from the source for an answer of ``answered`` rows (``first``:
        the first round's)."""


class AnswerCut(Exception):
    """A request answered more rows than a source reads (it stops at ``MAX_ROWS`` + 1): the
    rest were never read, so the answer cannot be compared as whole. Not a GatecheckError: it
    passes the sides' error wrapping to the rounds, which ask in smaller requests."""


class _Asking:
    """Rounds asked of one SQL source with one set of parameters, counted."""

    def __init__(self, source: Source, parameters: QueryParameters, form: SqlForm) -> None:
        self.source = source
        self.parameters = parameters
        self.form = form
        self.requests = 0

    async def _ask(self, sql: str) -> pd.DataFrame:
        self.requests += 1
        frame = await self.source.query(sql, self.parameters)
        if len(frame) > MAX_ROWS:
            raise AnswerCut(f"a request answered more than {MAX_ROWS} rows")
        return frame


class SqlSide(_Asking):
    """A ClickHouse or PostgreSQL side: every round is one query in the source."""

    def __init__(
        self, name: str, source: Source, sql: str, parameters: QueryParameters, form: SqlForm
    ) -> None:
        super().__init__(source, parameters, form)
        self.name = name
        self.sql = sql

    async def buckets(self, bits: int, within: tuple[int, list[int]] | None) -> Buckets:
        frame = await self._ask(self.form.buckets_sql(self.sql, bits, within))
        if frame.empty:  # no rows: the driver may not even name the columns
            return {}
        columns = (frame["gc_bucket"], frame["gc_rows"], frame["gc_hash"], frame["gc_dups"])
        return {int(b): (int(n), int(h) % _MOD, int(d)) for b, n, h, d in zip(*columns, strict=True)}

    async def rows(self, bits: int, prefixes: list[int]) -> list[tuple[str, int]]:
        frame = await self._ask(self.form.rows_sql(self.sql, bits, prefixes))
        if frame.empty:
            return []
        return [(str(k), int(h)) for k, h in zip(frame["gc_key"], frame["gc_rh"], strict=True)]

    async def digest(self, part: int) -> Cells:
        frame = await self._ask(self.form.digest_sql(self.sql, part))
        if frame.empty:
            return {}
        columns = (frame["gc_cell"], frame["gc_rows"], frame["gc_ksum"], frame["gc_hash"], frame["gc_check"])
        return {
            int(c): (int(n), int(k) % _MOD, int(h) % _MOD, int(x) % _MOD)
            for c, n, k, h, x in zip(*columns, strict=True)
        }

    async def duplicates(self, limit: int) -> list[int]:
        frame = await self._ask(self.form.duplicates_sql(self.sql, limit))
        return [] if frame.empty else [int(k) for k in frame["gc_kh"]]

    def crossed(self, answered: int, first: bool) -> int:
        return answered


class MemorySide:
    """A side whose rows are in hand (a NATS subject's messages, read once): hashed here in
    the portable form, answering the same questions."""

    def __init__(self, name: str, records: list[tuple[str, int, int]]) -> None:
        self.name = name
        self.records = records  # (canonical key, key hash, row hash)
        self.requests = 0

    @classmethod
    def of(
        cls, name: str, rows: list[list[Any]], keys: Mapping[str, str], values: Mapping[str, str],
        decimals: int,
    ) -> MemorySide:  # fmt: skip
        """``rows``: each record's key values then compared values, in the columns' order."""
        records = []
        key_types, value_types = list(keys.values()), list(values.values())
        count = len(key_types)
        for row in rows:
            key = canonical_row(row[:count], key_types, decimals)
            whole = key + ("," + canonical_row(row[count:], value_types, decimals) if value_types else "")
            records.append((key, md5_60(key), md5_60(whole)))
        return cls(name, records)

    async def buckets(self, bits: int, within: tuple[int, list[int]] | None) -> Buckets:
        self.requests += 1
        allowed = None if within is None else (within[0], set(within[1]))
        found: Buckets = {}
        keys: dict[int, set[int]] = {}
        for _, kh, rh in self.records:
            if allowed is not None and kh >> (HASH_BITS - allowed[0]) not in allowed[1]:
                continue
            bucket = kh >> (HASH_BITS - bits)
            n, h, d = found.get(bucket, _NONE)
            seen = keys.setdefault(bucket, set())
            found[bucket] = (n + 1, (h + rh) % _MOD, d + (kh in seen))
            seen.add(kh)
        return found

    async def rows(self, bits: int, prefixes: list[int]) -> list[tuple[str, int]]:
        self.requests += 1
        wanted = set(prefixes)
        return [(k, rh) for k, kh, rh in self.records if kh >> (HASH_BITS - bits) in wanted]

    async def digest(self, part: int) -> Cells:
        self.requests += 1
        cells: Cells = {}
        for _, kh, rh in self.records:
            check = digest_check(rh)
            for cell in digest_cells(rh, part):
                n, k, h, x = cells.get(cell, _EMPTY)
                cells[cell] = (n + 1, (k + kh) % _MOD, (h + rh) % _MOD, (x + check) % _MOD)
        return cells

    async def duplicates(self, limit: int) -> list[int]:
        self.requests += 1
        seen: dict[int, int] = {}
        for _, kh, _ in self.records:
            seen[kh] = seen.get(kh, 0) + 1
        return [kh for kh, n in seen.items() if n > 1][:limit]

    def crossed(self, answered: int, first: bool) -> int:
        """Every message crossed once, when it was read; nothing after."""
        return len(self.records) if first else 0


# ---------------------------------------------------------------- the rounds


@dataclass
class Round:
    what: Literal["cells", "duplicates", "buckets", "rows"]
    bits: int
    asked: int  # buckets asked about (0: all)
    differing: int
    transferred: dict[str, int]
    decides: tuple[str, ...] = ()  # the kinds its reconciliation counts (empty: every kind)


@dataclass
class Found:
    rows: dict[str, int]
    counts: dict[str, int]
    samples: dict[str, list[str]]  # kind → canonical keys
    rounds: list[Round] = field(default_factory=list)
    capped: bool = False

    @property
    def transferred(self) -> int:
        return sum(sum(r.transferred.values()) for r in self.rounds)


class SidesFailed(Exception):
    """Both sides' requests of one round failed: each one's error."""

    def __init__(self, errors: list[BaseException]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


async def _both(first: Any, second: Any) -> tuple[Any, Any]:
    """Both sides' answers to one round, asked at once; a failure raises it (both: SidesFailed)."""
    import asyncio

    answers = list(await asyncio.gather(first, second, return_exceptions=True))
    a, b = answers
    errors = [r for r in answers if isinstance(r, BaseException)]
    if len(errors) == 2:
        raise SidesFailed(errors)
    if errors:
        raise errors[0]
    return a, b


def _cut(exc: BaseException) -> bool:
    """Whether a round failed only because its answers were cut (one side's or both)."""
    if isinstance(exc, SidesFailed):
        return all(isinstance(e, AnswerCut) for e in exc.errors)
    return isinstance(exc, AnswerCut)


def _differing(a: Buckets, b: Buckets) -> list[int]:
    """The buckets whose rows or hash sums differ, or that hold a key more than once on a side."""
    return sorted(
        k
        for k in set(a) | set(b)
        if a.get(k, _NONE)[:2] != b.get(k, _NONE)[:2] or a.get(k, _NONE)[2] or b.get(k, _NONE)[2]
    )


@dataclass
class Answer:
    """One round's bucket answers of both sides (a joint pair: the differing buckets only),
    the rows that crossed from each, and each side's rows in all (the first round's)."""

    first: Buckets
    second: Buckets
    crossed: dict[str, int]
    totals: dict[str, int] | None = None


@dataclass
class Digests:
    """Both sides' difference digests (a joint pair: only the cells that differ, and one
    more), the rows that crossed for them, and each side's rows in all."""

    first: Cells
    second: Cells
    crossed: dict[str, int]
    totals: dict[str, int]


class Pair(Protocol):
    """Both sides of a reconciliation, asked together. ``joint``: one query a round over both
    sides, answering only the differing buckets (or cells) and both sides' rows in one answer."""

    names: tuple[str, str]
    joint: bool

    async def buckets(self, bits: int, within: tuple[int, list[int]] | None, first: bool) -> Answer: ...

    async def rows(
        self, bits: int, prefixes: list[int]
    ) -> tuple[list[tuple[str, int]], list[tuple[str, int]], dict[str, int]]: ...

    async def digest(self, part: int) -> Digests: ...

    async def duplicates(self, limit: int) -> tuple[list[int], list[int], dict[str, int]]: ...


class SeparatePair:
    """Two sides each asked on its own (both at once)."""

    joint = False

    def __init__(self, first: Side, second: Side) -> None:
        self.first, self.second = first, second
        self.names = (first.name, second.name)

    def _crossed(self, a: Sized, b: Sized, first: bool) -> dict[str, int]:
        """Rows that crossed from each side for answers ``a`` and ``b`` (``first``: the first
        question asked of the sides)."""
        return {
            self.first.name: self.first.crossed(len(a), first),
            self.second.name: self.second.crossed(len(b), first),
        }

    async def buckets(self, bits: int, within: tuple[int, list[int]] | None, first: bool) -> Answer:
        a, b = await _both(self.first.buckets(bits, within), self.second.buckets(bits, within))
        totals = {
            self.first.name: sum(v[0] for v in a.values()),
            self.second.name: sum(v[0] for v in b.values()),
        }
        return Answer(a, b, self._crossed(a, b, first), totals)

    async def rows(
        self, bits: int, prefixes: list[int]
    ) -> tuple[list[tuple[str, int]], list[tuple[str, int]], dict[str, int]]:
        got_a, got_b = await _both(self.first.rows(bits, prefixes), self.second.rows(bits, prefixes))
        return got_a, got_b, self._crossed(got_a, got_b, False)

    async def digest(self, part: int) -> Digests:
        a, b = await _both(self.first.digest(part), self.second.digest(part))
        # every row is in one cell of each part: a part's counts add up to the side's rows
        totals = {
            name: sum(v[0] for c, v in cells.items() if c < part)
            for name, cells in zip(self.names, (a, b), strict=True)
        }
        return Digests(a, b, self._crossed(a, b, True), totals)

    async def duplicates(self, limit: int) -> tuple[list[int], list[int], dict[str, int]]:
        a, b = await _both(self.first.duplicates(limit), self.second.duplicates(limit))
        return a, b, self._crossed(a, b, False)


class JointPair(_Asking):
    """Two SQL sides on one source: each round is one query over both (``UNION ALL``) that
    compares the buckets in the engine and answers only those that differ — so a round can
    ask for many more, finer buckets, and what crosses is the differences."""

    #: Buckets of the first round: only differing ones come back, so as fine as useful.
    FIRST_BITS = 20
    joint = True

    def __init__(
        self, names: tuple[str, str], source: Source, sqls: tuple[str, str], parameters: QueryParameters,
        form: SqlForm,
    ) -> None:  # fmt: skip
        super().__init__(source, parameters, form)
        self.names = names
        self.sqls = sqls

    async def buckets(self, bits: int, within: tuple[int, list[int]] | None, first: bool) -> Answer:
        frame = await self._ask(self.form.joint_buckets_sql(self.sqls, bits, within))
        a: Buckets = {}
        b: Buckets = {}
        totals = {name: 0 for name in self.names}
        for row in frame.itertuples(index=False):
            bucket, n0, h0, d0, n1, h1, d1, t0, t1 = (int(v) for v in row)
            totals = {self.names[0]: t0, self.names[1]: t1}
            if (n0, h0 % _MOD) != (n1, h1 % _MOD) or d0 or d1:
                if n0:
                    a[bucket] = (n0, h0 % _MOD, d0)
                if n1:
                    b[bucket] = (n1, h1 % _MOD, d1)
        # one row per differing bucket carries both sides' answers
        return Answer(a, b, {"both": len(frame)}, totals)

    async def rows(
        self, bits: int, prefixes: list[int]
    ) -> tuple[list[tuple[str, int]], list[tuple[str, int]], dict[str, int]]:
        frame = await self._ask(self.form.joint_rows_sql(self.sqls, bits, prefixes))
        found: tuple[list[tuple[str, int]], list[tuple[str, int]]] = ([], [])
        for side, key, rh in frame.itertuples(index=False):
            found[int(side)].append((str(key), int(rh)))
        return found[0], found[1], {self.names[0]: len(found[0]), self.names[1]: len(found[1])}

    async def digest(self, part: int) -> Digests:
        frame = await self._ask(self.form.joint_digest_sql(self.sqls, part))
        a: Cells = {}
        b: Cells = {}
        totals = {name: 0 for name in self.names}
        for row in frame.itertuples(index=False):
            cell, n0, k0, h0, x0, n1, k1, h1, x1, t0, t1 = (int(v) for v in row)
            totals = {self.names[0]: t0, self.names[1]: t1}
            if n0 or k0 or h0 or x0:
                a[cell] = (n0, k0 % _MOD, h0 % _MOD, x0 % _MOD)
            if n1 or k1 or h1 or x1:
                b[cell] = (n1, k1 % _MOD, h1 % _MOD, x1 % _MOD)
        # one row per differing cell carries both sides' sums
        return Digests(a, b, {"both": len(frame)}, totals)

    async def duplicates(self, limit: int) -> tuple[list[int], list[int], dict[str, int]]:
        """Each side's keys on more than one row, each side its own limit: one query."""
        frame = await self._ask(self.form.joint_duplicates_sql(self.sqls, limit))
        found: tuple[list[int], list[int]] = ([], [])
        for side, kh in frame.itertuples(index=False):
            found[int(side)].append(int(kh))
        return found[0], found[1], {self.names[0]: len(found[0]), self.names[1]: len(found[1])}


async def reconcile(
    first: Side | Pair,
    second: Side | None = None,
    *,
    sample: int = 10,
    max_rows: int = 50_000,
    max_rounds: int = 6,
    first_bits: int | None = None,
    fetch_rows: int = FETCH_ROWS,
    max_buckets: int = MAX_BUCKETS,
    digest_part: int = DIGEST_PART,
) -> Found:
    """Match two sides' records by key (``first`` and ``second``, or ``first`` a
    :class:`Pair`), asking only about buckets that differ: ``first_bits`` bits of the key
    hash at first (13; a joint pair 20); a round's differing buckets are split into at most
    ``max_buckets`` finer ones until they hold at most ``fetch_rows`` rows (or ``max_rounds``
    rounds were asked), then their rows are fetched — at most ``max_rows`` a side, else the
    counts are lower bounds (``capped``).

    The sides first exchange their difference digests (``digest_part`` cells a part; 0:
    never; a joint pair compares them in the engine and answers the differing cells): when the
    difference decodes (:func:`peel`), the keys it names and the keys more than once on a side
    are the only rows fetched — what crosses grows with the differences, not with the rows.
    When it does not decode (more differences than the cells hold), the bucket rounds above
    run."""
    pair: Pair = first if second is None else SeparatePair(first, second)  # type: ignore[assignment,arg-type]
    if first_bits is None:
        first_bits = JointPair.FIRST_BITS if pair.joint else FIRST_BITS
    name_a, name_b = pair.names
    rounds: list[Round] = []
    digested = False
    if digest_part:
        found = await _by_digest(pair, digest_part, rounds, sample, max_rows, fetch_rows)
        if found is not None:
            return found
        digested = True
    bits = first_bits
    try:
        answer = await pair.buckets(bits, None, not digested)
    except (AnswerCut, SidesFailed) as exc:
        # more differing buckets than one answer holds (a joint pair answers only those):
        # asked again at the bits whose every bucket one answer holds, then split
        if not _cut(exc) or bits <= FIRST_BITS:
            raise
        bits = FIRST_BITS
        answer = await pair.buckets(bits, None, not digested)
    a, b = answer.first, answer.second
    rows = answer.totals or {name_a: 0, name_b: 0}
    differing = _differing(a, b)
    rounds.append(Round("buckets", bits, 0, len(differing), answer.crossed))
    while differing and sum(r.what == "buckets" for r in rounds) < max_rounds and bits < HASH_BITS:
        expected = sum(max(a.get(k, _NONE)[0], b.get(k, _NONE)[0]) for k in differing)
        if expected <= fetch_rows:
            break
        extra = max(1, min(HASH_BITS - bits, int(math.log2(max(1, max_buckets // len(differing))))))
        asked, prefix_bits = differing, bits
        bits += extra
        # each request asks about at most max_buckets finer buckets: a source answers at most
        # MAX_ROWS rows, and an answer cut there would compare the buckets past the cut as equal
        per = max(1, max_buckets >> extra)
        a, b = {}, {}
        crossed: dict[str, int] = {}
        for start in range(0, len(asked), per):
            answer = await pair.buckets(bits, (prefix_bits, asked[start : start + per]), False)
            a.update(answer.first)
            b.update(answer.second)
            crossed = {k: crossed.get(k, 0) + v for k, v in answer.crossed.items()}
        differing = _differing(a, b)
        rounds.append(Round("buckets", bits, len(asked), len(differing), crossed))
    # fetch the rows of the differing buckets, in requests of at most fetch_rows rows (a joint
    # pair's request answers both sides' rows), up to max_rows a side
    capped = False
    chunk: list[int] = []
    size = 0
    budget = 0
    chunks: list[list[int]] = []
    joint = pair.joint
    for key in differing:
        n_a, n_b = a.get(key, _NONE)[0], b.get(key, _NONE)[0]
        n = max(n_a, n_b)
        if chunk and size + (n_a + n_b if joint else n) > fetch_rows:
            chunks.append(chunk)
            chunk, size = [], 0
        if budget + n > max_rows:
            capped = True
            break
        chunk.append(key)
        size += n_a + n_b if joint else n
        budget += n
    if chunk:
        chunks.append(chunk)
    return await _fetched(pair, bits, chunks, rounds, sample, rows, capped)


async def _fetched(
    pair: Pair, bits: int, chunks: list[list[int]], rounds: list[Round], sample: int, rows: dict[str, int],
    capped: bool,
) -> Found:  # fmt: skip
    """Both sides' rows in the buckets (or, at ``HASH_BITS``, of the keys) of each chunk, one
    request a chunk, classified. A chunk whose rows outnumber one answer (keys written many
    times: a key's rows are not counted before they are fetched) is asked again in halves."""
    name_a, name_b = pair.names
    fetched: dict[str, list[tuple[str, int]]] = {name_a: [], name_b: []}
    pending = list(chunks)
    while pending:
        part = pending.pop(0)
        try:
            got_a, got_b, crossed = await pair.rows(bits, part)
        except (AnswerCut, SidesFailed) as exc:
            if not _cut(exc):
                raise
            if len(part) > 1:
                pending[:0] = [part[: len(part) // 2], part[len(part) // 2 :]]
                continue
            # one bucket or key with more rows than an answer holds: its rows are not
            # compared, so every count is a lower bound
            capped = True
            continue
        fetched[name_a].extend(got_a)
        fetched[name_b].extend(got_b)
        rounds.append(Round("rows", bits, len(part), len(part), crossed))
    counts, samples = classify(fetched[name_a], fetched[name_b], sample)
    return Found(rows=rows, counts=counts, samples=samples, rounds=rounds, capped=capped)


def duplicates_limit(max_rows: int) -> int:
    """How many keys written more than once a side is asked for: one more than it may name
    (``max_rows``, at most what one answer holds), so that naming that many says there are more."""
    return min(max_rows, MAX_ROWS - 1) + 1


async def _by_digest(
    pair: Pair, part: int, rounds: list[Round], sample: int, max_rows: int, fetch_rows: int
) -> Found | None:
    """The digests' round, then the duplicated keys and the differing keys' rows (None: the
    difference does not decode; the digests' round is in ``rounds``)."""
    digests = await pair.digest(part)
    cells_a, cells_b = digests.first, digests.second
    differing_cells = sum(
        1 for c in set(cells_a) | set(cells_b) if cells_a.get(c, _EMPTY) != cells_b.get(c, _EMPTY)
    )
    bits = part.bit_length() - 1
    rounds.append(Round("cells", bits, DIGEST_PARTS * part, differing_cells, digests.crossed))
    differing = peel(cells_a, cells_b, part)
    if differing is None:
        return None
    rows = digests.totals
    # a key written twice alike on both sides leaves no difference: each side names its own
    # (at most as many as one answer holds; a side with more makes the counts lower bounds)
    limit = duplicates_limit(max_rows)
    dups_a, dups_b, crossed = await pair.duplicates(limit)
    twice = set(dups_a) | set(dups_b)
    rounds.append(Round("duplicates", HASH_BITS, 0, len(twice), crossed))
    keys = sorted(set(differing) | twice)
    kept, step = keys[:max_rows], max(1, fetch_rows)
    chunks = [kept[start : start + step] for start in range(0, len(kept), step)]
    more = len(keys) > max_rows or max(len(dups_a), len(dups_b)) >= limit
    return await _fetched(pair, HASH_BITS, chunks, rounds, sample, rows, more)


def classify(
    first: list[tuple[str, int]], second: list[tuple[str, int]], sample: int = 10
) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Counts of keys missing (first side only), extra (second only), changed (on both, with
    other values) and duplicated (more than once on a side), and a sample of each (the
    smallest keys)."""
    left: dict[str, list[int]] = {}
    right: dict[str, list[int]] = {}
    for key, rh in first:
        left.setdefault(key, []).append(rh)
    for key, rh in second:
        right.setdefault(key, []).append(rh)
    found: dict[str, list[str]] = {
        "missing": [k for k in left if k not in right],
        "extra": [k for k in right if k not in left],
        "changed": [k for k in left if k in right and set(left[k]) != set(right[k])],
        "duplicated": [k for k in {*left, *right} if len(left.get(k, ())) > 1 or len(right.get(k, ())) > 1],
    }
    counts = {kind: len(keys) for kind, keys in found.items()}
    samples = {kind: sorted(keys)[:sample] for kind, keys in found.items()}
    return counts, samples


__all__ = [
    "KINDS",
    "Found",
    "MemorySide",
    "SqlForm",
    "SqlSide",
    "canonical_row",
    "canonical_value",
    "classify",
    "decode_key",
    "digest_check",
    "hashing_for",
    "md5_60",
    "peel",
    "reconcile",
]
