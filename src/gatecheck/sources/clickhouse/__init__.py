"""ClickHouse source: embedded chDB (``chdb://PATH``) or a server (``clickhouse(s)://…``),
both through clickhouse-connect (its in-process chDB backend for the embedded case).

Every query runs the suite's SQL wrapped as ``SELECT * FROM (<suite SQL>) LIMIT 10001
SETTINGS readonly=1, max_execution_time=N``: the wrapper makes a second statement a syntax error,
the outer ``LIMIT`` stops the engine at one row past the cap a suite may return (so at most
MAX_ROWS + 1 rows ever cross, and a read-only user may run it: it changes no setting),
``readonly=1`` refuses writes on either engine, and parameters travel separately from the
SQL (``{name:Type}``, bound by the server). Datetimes are sent as Unix epoch seconds, which
ClickHouse parses the same way whatever the server's or session's timezone is.

Why ~590 lines: the source, its static checks, its one-pass and step forms, its estimate and
``check-sources`` are one reading of how a suite's SQL reaches ClickHouse (the connection hub
is ``connection.py``, the one-pass rewrite ``onepass.py``).
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import SecretStr, model_validator

from gatecheck._values import document_time
from gatecheck.durations import format_duration
from gatecheck.errors import QueryError, SourceTimeout, SourceUnavailable
from gatecheck.sources.base import MAX_ROWS, PlannedRequest, QueryParameters, Source, SourceSettings
from gatecheck.sources.clickhouse.connection import THROW, ClickHouse, Connection, Target
from gatecheck.sources.clickhouse.ttl import TtlRule, removing_rules
from gatecheck.sources.probe import Probe
from gatecheck.sources.sqltext import (
    ColumnsUsed,
    answers_a_row_without_data,
    statement_problems,
    syntax_problem,
    time_filtered_columns,
)

if TYPE_CHECKING:
    import pandas as pd

# ---------------------------------------------------------------- configuration and query


class ClickHouseSourceConfig(SourceSettings):
    """A ClickHouse warehouse: ``chdb://PATH`` (embedded) or ``clickhouse(s)://…``."""

    type: Literal["clickhouse"]
    password: SecretStr | None = None  # overrides the URL's password; write "${VAR}"
    # PEM file of the CA(s) that sign a clickhouses:// server's certificate (a private CA),
    # relative to the config directory; without it the system's trusted CAs verify it
    ca_cert: Path | None = None
    schemes: ClassVar[tuple[str, ...]] = ("chdb", "clickhouse", "clickhouses")

    @model_validator(mode="after")
    def _ca_cert_needs_tls(self) -> ClickHouseSourceConfig:
        if self.ca_cert is not None and not self.url.startswith("clickhouses://"):
            raise ValueError("ca_cert verifies a TLS server: it needs a clickhouses:// URL")
        return self

    def target(self, name: str, root: Path) -> Target:
        """Where this source's URL points, with its password and CA."""
        password = self.password.get_secret_value() if self.password is not None else None
        return Target.parse(self.url, root, password=password, ca_cert=self.ca_cert, what=f"source {name!r}")


# `{name:Type}` placeholders, ClickHouse's server-side parameter syntax.
_SQL_PARAM = re.compile(r"\{\s*([^{}:'\"\s]*)\s*:\s*([A-Za-z][^{}]*)\}")


@functools.lru_cache(maxsize=1024)
def _tables_read(sql: str, database: str) -> tuple[tuple[str, str], ...]:
    """The tables ``sql`` reads, kept per text for the process: a source lives for one
    evaluation, and sqlglot takes milliseconds a query to say (every evaluation, every phase)."""
    try:
        return tuple(sorted(time_filtered_columns(sql, database)))
    except Exception:  # text sqlglot cannot read: its syntax is reported apart
        return ()


def sql_parameters(sql: str) -> dict[str, str]:
    """``{name:Type}`` placeholders in the SQL, name → ClickHouse type."""
    return {m.group(1): m.group(2).strip() for m in _SQL_PARAM.finditer(sql)}


#: The types a moment may be bound as: ``DateTime64`` (any precision, any zone, Nullable),
#: or a number of seconds. ``DateTime`` and ``Date`` cannot parse ``1796603541.435``.
_MOMENT_TYPES = re.compile(
    r"(?:Nullable\(\s*)?DateTime64\(\s*\d+\s*(?:,\s*'[^']*'\s*)?\)(?:\s*\))?|Float64|Float32|Decimal(?:32|64|128|256)?\(.*\)"
)


def sql_problems(sql: str) -> list[str]:
    """Static checks of a suite's SQL: one read-only SELECT, well-formed parameters."""
    example = "{window_start:DateTime64(3)}"
    problems = statement_problems(sql, _SQL_PARAM.finditer(sql), example, _MOMENT_TYPES)
    syntax = syntax_problem(sql, "clickhouse") if not problems else None
    return [*problems, syntax] if syntax else problems


def rows_without_data(sql: str) -> bool:
    """Whether the suite's SQL answers a row when its tables hold none in the window (an
    empty ``max`` is 0 here, not NULL: such a row reads as a pass)."""
    return answers_a_row_without_data(sql, "clickhouse")


# ---------------------------------------------------------------- queries


def wrap_readonly(sql: str, timeout_s: float, *, by_step: bool = False) -> str:
    """The suite SQL as a read-only, time-limited single SELECT of at most MAX_ROWS + 1 rows
    (``by_step``: per step of a query of many steps) that errs, never stops short, at a limit."""
    body = sql.strip().rstrip(";")
    seconds = max(1, math.ceil(timeout_s))
    limit = f"LIMIT {MAX_ROWS + 1}" + (f" BY {STEP_COLUMN}" if by_step else "")
    return f"SELECT * FROM (\n{body}\n) {limit} SETTINGS readonly=1, max_execution_time={seconds}, {THROW}"


#: The wrapper's SETTINGS clause, which a read-only session may not send whole.
_SETTINGS_TAIL = re.compile(r" SETTINGS readonly=1, (max_execution_time=\d+, .*)$")


def for_session(sql: str, readonly: int) -> str:
    """The wrapped SQL as a session at ``readonly`` level may run it. At 1 (a read-only
    profile, where a query may change no setting) without its SETTINGS clause: the profile
    refuses writes, and its own ``max_execution_time`` (and a server's HTTP timeout) bounds
    the time. At 2 (settings may change, but not ``readonly`` itself) with its time limit
    only: the session refuses writes already. The outer LIMIT stays at every level."""
    if readonly == 1:
        return _SETTINGS_TAIL.sub("", sql)
    if readonly == 2:
        return _SETTINGS_TAIL.sub(r" SETTINGS \1", sql)
    return sql


def _sendable(sql: str, connection: Connection) -> str:
    """The wrapped SQL as ``connection``'s session may run it (:func:`for_session`), with the
    settings that undo what in the session answers another query (:meth:`Connection.other_answers`);
    at readonly=1, whose profile the query cannot override, a profile that would answer part
    of it as the whole at a limit, or another query than the one sent, refuses it (QueryError)."""
    level, partial, other = connection.readonly(), connection.partial_answers(), connection.other_answers()
    if level == 1 and partial:
        raise QueryError(
            f"the session's {'; '.join(partial)} answers part of a query as the "
            "whole at that limit, and at readonly=1 gatecheck cannot ask for 'throw': set it to 'throw' "
            "in the profile of gatecheck's user (or give it readonly=2)"
        )
    if level == 1 and other:
        what = "; ".join(does for does, _ in other)
        needed = ", ".join(needed for _, needed in other)
        raise QueryError(
            f"the session's {what}, and at readonly=1 gatecheck cannot change it: set {needed} "
            "in the profile of gatecheck's user (or give it readonly=2)"
        )
    sent = for_session(sql, level)  # at readonly 0 and 2, with a SETTINGS clause to add to
    return sent + "".join(f", {needed}" for _, needed in other)


def time_limit(config: ClickHouseSourceConfig, root: Path) -> str:
    """Which time limit a query gets, and from where (``gatecheck explain``)."""
    target = Target.parse(config.url, root)
    seconds = max(1, math.ceil(config.timeout.total_seconds()))
    named = dict(target.settings)
    if named.get("readonly") == "1":
        profile = named.get("max_execution_time")
        where = (
            f"max_execution_time={profile} from the URL" if profile else "the profile's max_execution_time"
        )
        client = f", and the client's {seconds}s timeout" if target.embedded is None else ""
        return f"readonly=1 in the URL: no SETTINGS sent; the time limit is {where}{client}"
    if named.get("readonly") == "2":
        return f"max_execution_time={seconds} in the query's SETTINGS (readonly=2 in the URL refuses writes)"
    return (
        f"max_execution_time={seconds} in the query's SETTINGS (the source's timeout); a session at "
        "readonly=1 gets no SETTINGS clause: then its profile's own limit applies"
    )


#: ``IN (1, 2, 3)``: a list of numbers, as a reconciliation's rounds write its buckets.
_NUMBER_LIST = re.compile(r"\bIN \(\s*-?\d+(?:\s*,\s*-?\d+)+\s*\)")


def _count(rows: int) -> str:
    """``1.9M``, ``245k``, ``812``."""
    for scale, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if rows >= scale:
            return f"{rows / scale:.1f}".rstrip("0").rstrip(".") + suffix
    return str(rows)


def index_use(lines: list[str]) -> list[dict[str, Any]]:
    """From ``EXPLAIN indexes = 1``: per table read, each index (MinMax, Partition, PrimaryKey,
    Skip — keyed by the skip index's name —, and PrimaryKeyExpand, which under FINAL adds back
    the granules sharing a key with those a skip index kept) with its keys and the granules it
    selected of those it looked at."""
    found: list[dict[str, Any]] = []
    table = index = None
    keys: list[str] = []
    in_keys = False
    for line in lines:
        text = line.strip(" │└─├")
        read = re.match(r"ReadFromMergeTree \((.+)\)", text)
        if read:
            table, index = read.group(1), None
        elif text in ("PrimaryKey", "MinMax", "Min-Max", "Partition", "PrimaryKeyExpand") or text == "Skip":
            index, keys, in_keys = text.replace("-", ""), [], False
        elif text == "Keys:":
            in_keys = True
        elif text.startswith("Name:") and index == "Skip":
            keys, in_keys = [text.removeprefix("Name:").strip()], False
        elif text.startswith(("Condition:", "Name:", "Description:", "Parts:", "Search Algorithm")):
            in_keys = False
        elif in_keys and text:
            keys.append(text)
        granules = re.match(r"Granules: (\d+)/(\d+)", text)
        if granules and table and index:
            found.append({
                "table": table, "index": index, "keys": list(keys),
                "granules": int(granules.group(1)), "of": int(granules.group(2)),
            })  # fmt: skip
            in_keys = False
    return found


#: The column that carries each step's position in a query of many steps.
STEP_COLUMN = "gatecheck_step"

#: A ``UNION ALL`` request of many steps stays under this many characters and this many steps.
BATCH_CHARS = 128_000
BATCH_STEPS = 64


def wrap_steps(sql: str, count: int, timeout_s: float) -> str:
    """The suite SQL ``count`` times in one read-only, time-limited SELECT: copy ``k``'s
    parameters are renamed ``name__k`` and its rows carry ``gatecheck_step = k``."""
    body = sql.strip().rstrip(";")
    copies = [
        f"SELECT {k} AS {STEP_COLUMN}, * FROM (\n"
        + _SQL_PARAM.sub(lambda m, k=k: f"{{{m.group(1)}__{k}:{m.group(2)}}}", body)  # type: ignore[misc]
        + "\n)"
        for k in range(count)
    ]
    return wrap_readonly(" UNION ALL ".join(copies), timeout_s, by_step=True)


def named_only(sql: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters ``sql`` names as ``{name:Type}`` placeholders (a suite's query gets the
    window whether or not its SQL uses it; ClickHouse rejects unused ones on some versions)."""
    names = set(sql_parameters(sql))
    return {name: value for name, value in parameters.items() if name in names}


def format_parameter(value: Any) -> str:
    """Text form of a query parameter for server-side binding."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("query datetimes must be timezone-aware (UTC)")
        return f"{value.timestamp():.3f}"
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def explain_query(
    name: str, config: ClickHouseSourceConfig, query: Any, parameters: QueryParameters, root: Path
) -> dict[str, Any]:
    """What the source sends for ``query`` (``gatecheck explain``): the wrapped SQL and each
    bound parameter as sent, nothing connected."""
    target = Target.parse(config.url, root, what=f"source {name!r}")
    types = sql_parameters(query)
    parameters = named_only(query, parameters)
    return {
        "sent_to": f"{target.where}, database {target.database}; time limit: {time_limit(config, root)}",
        "requests": [
            {
                "what": "query",
                "text": wrap_readonly(query, config.timeout.total_seconds()),
                "parameters": [
                    {
                        "name": key,
                        "type": types.get(key, ""),
                        "sent": format_parameter(value),
                        **({"means": document_time(value)} if isinstance(value, datetime) else {}),
                    }
                    for key, value in parameters.items()
                ],
            }
        ],
    }


async def check_source(name: str, config: ClickHouseSourceConfig, root: Path, suites: list[Any]) -> Probe:
    """Connect, read the server's version, and check in one query to ``system.columns`` that
    every table the suites read exists with the columns they use."""
    target = config.target(name, root)
    wanted = ColumnsUsed.of(suites, target.database)
    used = wanted.used

    def probe() -> Probe:
        started = time.perf_counter()
        with ClickHouse() as hub:
            connection = hub.connect(target, timeout=config.timeout.total_seconds())
            try:
                version = str(connection.query_df("SELECT version() AS v")["v"].iloc[0])
                latency = (time.perf_counter() - started) * 1000
                existing: dict[tuple[str, str], set[str]] = {}
                if used:
                    frame = connection.query_df(
                        "SELECT database, table, name FROM system.columns "
                        "WHERE database IN {databases:Array(String)} AND table IN {tables:Array(String)}",
                        {
                            "databases": sorted({d for d, _ in used}),
                            "tables": sorted({t for _, t in used}),
                        },
                    )
                    for database, table, column in frame.itertuples(index=False):
                        existing.setdefault((database, table), set()).add(column)
            finally:
                if target.embedded is None:
                    connection.close()
        return wanted.probe(f"ClickHouse {version}", latency, existing)

    try:
        return await asyncio.wait_for(asyncio.to_thread(probe), config.timeout.total_seconds() + 5)
    except (SourceUnavailable, SourceTimeout, TimeoutError) as exc:
        return Probe(reachable=False, problems=[str(exc) or f"no answer within {config.timeout}"])
    except QueryError as exc:
        return Probe(problems=[str(exc)])


# ---------------------------------------------------------------- the source


class ClickHouseSource(Source):
    """A ClickHouse warehouse, embedded or a server, through one clickhouse-connect client.

    ``clickhouse`` is the engine's hub (its embedded clients and their one lock); without one
    the source keeps a hub of its own and closes it with itself."""

    def __init__(
        self, name: str, config: ClickHouseSourceConfig, root: Path, clickhouse: ClickHouse | None = None
    ) -> None:
        super().__init__(name, config)
        self.target = config.target(name, root)
        self._own_hub = clickhouse is None
        self._hub = clickhouse if clickhouse is not None else ClickHouse()
        self._connection: Connection | None = None
        # each table's TTL rules that remove rows, read once an evaluation (None: unreadable)
        self._ttls: dict[tuple[str, str], list[TtlRule]] | None = {}

    def connection(self) -> Connection:
        """The source's connection, opened on first use (embedded: the hub's shared client)."""
        if self._connection is None:
            self._connection = self._hub.connect(self.target, timeout=self.timeout)
        return self._connection

    def _query(self, sql: str, parameters: dict[str, str]) -> pd.DataFrame:
        connection = self.connection()
        return connection.query_df(_sendable(sql, connection), parameters)

    def _kept_since(self, text: str, start: Any) -> None:
        """QueryError when a table ``text`` reads removes rows (its TTL) that the window from
        ``start`` still needs: the window would be judged on the rows left, part of itself."""
        if not isinstance(start, datetime) or self._ttls is None:
            return
        # A reconciliation's rounds name thousands of buckets: which tables a query reads does
        # not depend on them, and sqlglot reads a list of 6,400 numbers in ~120 ms
        tables = _tables_read(_NUMBER_LIST.sub("IN (0)", text), self.target.database)
        unknown = [table for table in tables if table not in self._ttls]
        if unknown:
            try:
                rows = self.connection().query_rows(
                    "SELECT database, name, engine_full FROM system.tables"
                    " WHERE database IN {databases:Array(String)} AND name IN {tables:Array(String)}",
                    {"databases": sorted({d for d, _ in unknown}), "tables": sorted({t for _, t in unknown})},
                )
            except QueryError:  # no grant on system.tables: not judged, as before
                self._ttls = None
                return
            for table in unknown:
                self._ttls[table] = []
            for database, name, engine in rows:
                self._ttls[(str(database), str(name))] = removing_rules(str(engine))
        now = datetime.now(start.tzinfo).replace(microsecond=0)
        for database, name in tables:
            for rule in self._ttls.get((database, name), []):
                if start < now - rule.after:
                    raise QueryError(
                        f"the window from {document_time(start)} reaches back "
                        f"{format_duration(now - start)}, beyond what table {database}.{name} keeps "
                        f"(TTL {rule.text}): its rows before "
                        f"{document_time(now - rule.after)} may be gone, so the window would be judged on "
                        "part of it (a shorter window, or a longer TTL)"
                    )

    async def query(self, text: str, parameters: QueryParameters) -> pd.DataFrame:
        sql = wrap_readonly(text, self.timeout)
        bound = {name: format_parameter(value) for name, value in named_only(text, parameters).items()}
        try:
            # The driver blocks, so it runs in a thread; the server's max_execution_time stops
            # the query itself, this outer limit stops us waiting on a hung connection.
            await asyncio.wait_for(
                asyncio.to_thread(self._kept_since, text, parameters.get("window_start")), self.timeout + 5
            )
            return await asyncio.wait_for(asyncio.to_thread(self._query, sql, bound), self.timeout + 5)
        except TimeoutError as exc:
            raise SourceTimeout(f"no answer within {self.timeout:.0f}s") from exc

    async def estimate(self, text: str, parameters: QueryParameters) -> dict[str, Any] | None:
        """ClickHouse's own estimate of the request ``query`` sends: ``EXPLAIN ESTIMATE`` (parts,
        rows and marks per table) and, from ``EXPLAIN indexes = 1``, which index or partition
        key selected how many of each table's granules."""
        sql = wrap_readonly(text, self.timeout)
        bound = {name: format_parameter(value) for name, value in named_only(text, parameters).items()}

        def plan() -> dict[str, Any]:
            connection = self.connection()
            sent = _sendable(sql, connection)
            estimate = connection.query_df("EXPLAIN ESTIMATE " + sent, bound)
            indexes = connection.query_df("EXPLAIN indexes = 1 " + sent, bound)
            tables = [
                {
                    "table": f"{r['database']}.{r['table']}",
                    "parts": int(r["parts"]),
                    "rows": int(r["rows"]),
                    "marks": int(r["marks"]),
                }
                for r in estimate.to_dict("records")
            ]
            return {"tables": tables, "indexes": index_use(list(indexes.iloc[:, 0]))}

        try:
            return await asyncio.wait_for(asyncio.to_thread(plan), self.timeout + 5)
        except TimeoutError as exc:
            raise SourceTimeout(f"no estimate within {self.timeout:.0f}s") from exc

    async def unpruned(self, requests: list[PlannedRequest]) -> list[str]:
        """Each request whose estimate reads every row (and more than one granule) of a table
        while a column it bounds by its window is in none of the table's sort key, partition
        key or skip indexes, or while no condition bounds it by the window at all. A table
        read whole although every column bounding it is indexed holds no more than the
        window: not named. One line per request and table."""
        plans = [(request, await self.estimate(request.query, request.parameters)) for request in requests]

        def shapes(tables: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, str]]:
            connection = self.connection()
            listed = {"databases": sorted({d for d, _ in tables}), "tables": sorted({t for _, t in tables})}
            described = connection.query_df(
                "SELECT database, name, total_rows, sorting_key, partition_key, primary_key "
                "FROM system.tables "
                "WHERE database IN {databases:Array(String)} AND name IN {tables:Array(String)}",
                listed,
            )
            indexed = connection.query_df(
                "SELECT database, table, expr FROM system.data_skipping_indices "
                "WHERE database IN {databases:Array(String)} AND table IN {tables:Array(String)}",
                listed,
            )
            out: dict[tuple[str, str], tuple[int, str]] = {}
            for row in described.to_dict("records"):
                keys = " ".join(str(row[k] or "") for k in ("sorting_key", "partition_key", "primary_key"))
                out[(row["database"], row["name"])] = (int(row["total_rows"] or 0), keys)
            for row in indexed.to_dict("records"):
                rows, keys = out.get((row["database"], row["table"]), (0, ""))
                out[(row["database"], row["table"])] = (rows, f"{keys} {row['expr']}")
            return out

        read: list[tuple[PlannedRequest, tuple[str, str], dict[str, Any]]] = []
        for request, plan in plans:
            for figures in plan["tables"] if plan is not None else []:
                database, _, name = figures["table"].partition(".")
                read.append((request, (database, name), figures))
        if not read:
            return []
        try:
            known = await asyncio.wait_for(
                asyncio.to_thread(shapes, sorted({table for _, table, _ in read})), self.timeout + 5
            )
        except TimeoutError as exc:
            raise SourceTimeout(f"no answer from system.tables within {self.timeout:.0f}s") from exc
        problems = []
        bounds: dict[int, dict[tuple[str, str], set[str]]] = {}  # each request's SQL parsed once
        for request, table, figures in read:
            total, keys = known.get(table, (0, ""))
            if total == 0 or figures["rows"] < total or figures["marks"] < 2:
                continue
            if id(request) not in bounds:
                bounds[id(request)] = time_filtered_columns(request.query, self.target.database)
            bounded = bounds[id(request)].get(table, set())
            loose = sorted(c for c in bounded if not re.search(rf"\b{re.escape(c)}\b", keys))
            if bounded and not loose:
                continue
            verb = "is" if len(loose) == 1 else "are"
            why = (
                f"{', '.join(loose)} {verb} not in its sort key, partition or a skip index"
                if loose
                else "no condition on a time column bounds it"
            )
            problems.append(
                f"{request.suite} reads all {_count(total)} rows of {table[1]} "
                f"for a {request.window} window ({why})"
            )
        return problems

    def steps_per_request(self, text: Any, parameter_sets: list[QueryParameters]) -> int:
        """Every step in one request when the one-pass form applies (one scan whatever the
        count); else as many copies of the SQL as keep a ``UNION ALL`` request under
        ``BATCH_CHARS`` (ClickHouse's max_query_size is 256 KiB by default) and
        ``BATCH_STEPS``."""
        from gatecheck.sources.clickhouse.onepass import one_pass, steps_of

        steps = steps_of(list(parameter_sets)) if isinstance(text, str) else None
        if steps is not None and one_pass(text, steps) is not None:
            return len(parameter_sets)
        size = BATCH_CHARS // (len(text) + 64) if isinstance(text, str) else BATCH_STEPS
        return max(1, min(BATCH_STEPS, size))

    async def query_steps(
        self, text: str, parameter_sets: list[QueryParameters]
    ) -> list[pd.DataFrame] | None:
        """Many steps in one request: when the steps differ only in evenly spaced time
        parameters and the SQL has a shape :mod:`gatecheck.sources.clickhouse.onepass` rewrites, one
        scan of each table for every step; otherwise the suite SQL once per set, ``UNION
        ALL``, each copy's rows marked with its position (``wrap_steps``). Either way the rows
        are split back into one frame per set, in the order the engine returned them. None
        when the SQL already names the marker."""
        if STEP_COLUMN in text:
            return None
        from gatecheck.sources.clickhouse.onepass import one_pass, steps_of

        starts = [p["window_start"] for p in parameter_sets if isinstance(p.get("window_start"), datetime)]
        if starts:
            await asyncio.to_thread(self._kept_since, text, min(starts))

        steps = steps_of(list(parameter_sets))
        rewritten = one_pass(text, steps) if steps is not None else None
        if steps is None or rewritten is None:
            return await self._union_steps(text, parameter_sets)
        named = named_only(rewritten, steps.parameters())
        bound = {name: format_parameter(value) for name, value in named.items()}
        sql = wrap_readonly(rewritten, self.timeout, by_step=True)
        return await self._split(sql, bound, len(parameter_sets))

    async def _union_steps(self, text: str, parameter_sets: list[QueryParameters]) -> list[pd.DataFrame]:
        sql = wrap_steps(text, len(parameter_sets), self.timeout)
        bound = {
            f"{name}__{k}": format_parameter(value)
            for k, parameters in enumerate(parameter_sets)
            for name, value in named_only(text, parameters).items()
        }
        return await self._split(sql, bound, len(parameter_sets))

    async def _split(self, sql: str, bound: dict[str, str], count: int) -> list[pd.DataFrame]:
        try:
            frame = await asyncio.wait_for(asyncio.to_thread(self._query, sql, bound), self.timeout + 5)
        except TimeoutError as exc:
            raise SourceTimeout(f"no answer within {self.timeout:.0f}s") from exc
        if STEP_COLUMN not in frame.columns:
            if frame.empty:  # no row at all: the driver's empty answer, for every step alike
                return [frame.copy() for _ in range(count)]
            raise QueryError(f"the answer of many steps lacks its {STEP_COLUMN} column")
        import numpy as np

        # One stable sort by step (rows keep their order within a step), then each step's
        # rows are a contiguous slice: no copy per step.
        steps = frame[STEP_COLUMN].to_numpy(dtype="int64")
        if len(steps) > 1 and (steps[1:] < steps[:-1]).any():
            order = np.argsort(steps, kind="stable")
            frame, steps = frame.take(order), steps[order]
        bounds = np.searchsorted(steps, np.arange(count + 1), side="left")
        frame = frame.drop(columns=STEP_COLUMN)
        return [frame.iloc[bounds[k] : bounds[k + 1]].reset_index(drop=True) for k in range(count)]

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and self.target.embedded is None:
            connection.close()  # a server connection is the source's; embedded ones the hub's
        if self._own_hub:
            self._hub.close()
