"""ClickHouse source: embedded chDB (``chdb://PATH``) or a server (``clickhouse(s)://…``),
both through clickhouse-connect (its in-process chDB backend for the embedded case).

Every query runs the suite's SQL wrapped as ``SELECT * FROM (<suite SQL>) SETTINGS
readonly=1, max_execution_time=N``: the wrapper makes a second statement a syntax error,
``readonly=1`` refuses writes on either engine, and parameters travel separately from the
SQL (``{name:Type}``, bound by the server). Datetimes are sent as Unix epoch seconds, which
ClickHouse parses the same way whatever the server's or session's timezone is.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import SecretStr

from gatecheck.clickhouse import ClickHouse, Connection, Target
from gatecheck.errors import QueryError, SourceTimeout, SourceUnavailable
from gatecheck.frozen import NAME
from gatecheck.sources.base import QueryParameters, Source, SourceSettings, iso_utc
from gatecheck.sources.probe import Probe, counted

if TYPE_CHECKING:
    import pandas as pd

# ---------------------------------------------------------------- configuration and query


class ClickHouseSourceConfig(SourceSettings):
    """A ClickHouse warehouse: ``chdb://PATH`` (embedded) or ``clickhouse(s)://…``."""

    type: Literal["clickhouse"]
    password: SecretStr | None = None  # overrides the URL's password; write "${VAR}"
    schemes: ClassVar[tuple[str, ...]] = ("chdb", "clickhouse", "clickhouses")


# `{name:Type}` placeholders, ClickHouse's server-side parameter syntax.
_SQL_PARAM = re.compile(r"\{\s*([^{}:'\"\s]*)\s*:\s*([A-Za-z][^{}]*)\}")
_STATEMENT_START = re.compile(r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*(\w+)", re.S)


def sql_parameters(sql: str) -> dict[str, str]:
    """``{name:Type}`` placeholders in the SQL, name → ClickHouse type."""
    return {m.group(1): m.group(2).strip() for m in _SQL_PARAM.finditer(sql)}


def sql_problems(sql: str) -> list[str]:
    """Static checks of a suite's SQL: a read-only statement, well-formed parameters. A second
    statement is refused by the engine itself: the source runs the SQL as the subquery of
    ``SELECT * FROM (…)``, where anything after a ``;`` is a syntax error."""
    problems: list[str] = []
    first = _STATEMENT_START.match(sql)
    if first is None or first.group(1).upper() not in ("SELECT", "WITH"):
        word = first.group(1) if first else "nothing"
        problems.append(f"must be a single SELECT (or WITH … SELECT) statement, starts with {word!r}")
    for match in _SQL_PARAM.finditer(sql):
        name = match.group(1)
        if not NAME.match(name) and not name.startswith(("'", '"')):
            problems.append(
                f"bad parameter name {{{name}:{match.group(2)}}}: use lowercase letters, "
                "digits and _ (e.g. {window_start:DateTime64(3)})"
            )
    return problems


# ---------------------------------------------------------------- queries


def wrap_readonly(sql: str, timeout_s: float) -> str:
    """The suite SQL as a read-only, time-limited single SELECT."""
    body = sql.strip().rstrip(";")
    seconds = max(1, math.ceil(timeout_s))
    return f"SELECT * FROM (\n{body}\n) SETTINGS readonly=1, max_execution_time={seconds}"


#: The column that carries each step's position in a query of many steps.
STEP_COLUMN = "gatecheck_step"


def wrap_steps(sql: str, count: int, timeout_s: float) -> str:
    """The suite SQL ``count`` times in one read-only, time-limited SELECT: copy ``k``'s
    parameters are renamed ``name__k`` and its rows carry ``gatecheck_step = k``."""
    body = sql.strip().rstrip(";")
    seconds = max(1, math.ceil(timeout_s))
    copies = [
        f"SELECT {k} AS {STEP_COLUMN}, * FROM (\n"
        + _SQL_PARAM.sub(lambda m, k=k: f"{{{m.group(1)}__{k}:{m.group(2)}}}", body)  # type: ignore[misc]
        + "\n)"
        for k in range(count)
    ]
    return (
        f"SELECT * FROM (\n{' UNION ALL '.join(copies)}\n) SETTINGS readonly=1, max_execution_time={seconds}"
    )


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
    return {
        "sent_to": f"{target.where}, database {target.database}",
        "requests": [
            {
                "what": "query",
                "text": wrap_readonly(query, config.timeout.total_seconds()),
                "parameters": [
                    {
                        "name": key,
                        "type": types.get(key, ""),
                        "sent": format_parameter(value),
                        **({"means": iso_utc(value)} if isinstance(value, datetime) else {}),
                    }
                    for key, value in parameters.items()
                ],
            }
        ],
    }


def tables_and_columns(
    sql: str, database: str, dialect: str = "clickhouse"
) -> dict[tuple[str, str], set[str]]:
    """The tables a suite's SQL reads, ``(database, table)`` → the columns it uses of them
    (parsed with sqlglot's ClickHouse dialect, scope by scope). An unqualified column in a
    scope reading several tables is listed under each of them (``column_problems`` accepts it
    if any has it); names the query defines itself (aliases, WITH names, lambda arguments)
    are not columns."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.optimizer.scope import traverse_scope

    tree = sqlglot.parse_one(sql, read=dialect)
    defined = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    defined |= {param.name for fn in tree.find_all(exp.Lambda) for param in fn.expressions}
    found: dict[tuple[str, str], set[str]] = {}
    for scope in traverse_scope(tree):
        tables = {
            alias: (source.db or database, source.name)
            for alias, source in scope.sources.items()
            if isinstance(source, exp.Table) and source.name not in defined
        }
        for table in tables.values():
            found.setdefault(table, set())
        if not tables:
            continue
        aliases = {alias.alias for alias in scope.expression.find_all(exp.Alias)}
        for column in scope.columns:
            if column.table:
                if column.table in tables:
                    found[tables[column.table]].add(column.name)
            elif column.name not in aliases and column.name not in defined:
                for table in tables.values():
                    found[table].add(column.name)
    return found


def column_problems(
    used: dict[tuple[str, str], dict[str, set[str]]],
    readers: dict[tuple[str, str], set[str]],
    existing: dict[tuple[str, str], set[str]],
) -> list[str]:
    """Problems of ``used`` — (database, table) → column → the suites using it; ``readers``:
    the suites reading each table — against the ``existing`` columns of each table (absent:
    the table does not exist)."""
    problems = []
    for (database, table), columns in sorted(used.items()):
        if (database, table) not in existing:
            suites = ", ".join(sorted(readers[(database, table)]))
            problems.append(f"table {database}.{table} does not exist (read by {suites})")
            continue
        have = existing[(database, table)]
        for column, users in sorted(columns.items()):
            if column not in have:
                problems.append(
                    f"column {column} is not in {database}.{table} (used by {', '.join(sorted(users))})"
                )
    return problems


async def check_source(name: str, config: ClickHouseSourceConfig, root: Path, suites: list[Any]) -> Probe:
    """Connect, read the server's version, and check in one query to ``system.columns`` that
    every table the suites read exists with the columns they use."""
    password = config.password.get_secret_value() if config.password is not None else None
    target = Target.parse(config.url, root, password=password, what=f"source {name!r}")
    used: dict[tuple[str, str], dict[str, set[str]]] = {}
    readers: dict[tuple[str, str], set[str]] = {}
    for suite in suites:
        for table, columns in tables_and_columns(suite.query, target.database).items():
            readers.setdefault(table, set()).add(suite.name)
            into = used.setdefault(table, {})
            for column in columns:
                into.setdefault(column, set()).add(suite.name)

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
        count = sum(len(c) for c in used.values())
        return Probe(
            version=f"ClickHouse {version}",
            latency_ms=latency,
            checked=f"{counted(len(used), 'table')}, {counted(count, 'column')} the suites use",
            problems=column_problems(used, readers, existing),
        )

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
        password = config.password.get_secret_value() if config.password is not None else None
        self.target = Target.parse(config.url, root, password=password, what=f"source {name!r}")
        self._own_hub = clickhouse is None
        self._hub = clickhouse if clickhouse is not None else ClickHouse()
        self._connection: Connection | None = None

    def _query(self, sql: str, parameters: dict[str, str]) -> pd.DataFrame:
        if self._connection is None:
            self._connection = self._hub.connect(self.target, timeout=self.timeout)
        return self._connection.query_df(sql, parameters)

    async def query(self, text: str, parameters: QueryParameters) -> pd.DataFrame:
        sql = wrap_readonly(text, self.timeout)
        bound = {name: format_parameter(value) for name, value in parameters.items()}
        try:
            # The driver blocks, so it runs in a thread; the server's max_execution_time stops
            # the query itself, this outer limit stops us waiting on a hung connection.
            return await asyncio.wait_for(asyncio.to_thread(self._query, sql, bound), self.timeout + 5)
        except TimeoutError as exc:
            raise SourceTimeout(f"no answer within {self.timeout:.0f}s") from exc

    async def query_steps(
        self, text: str, parameter_sets: list[QueryParameters]
    ) -> list[pd.DataFrame] | None:
        """One query for every set: the suite SQL once per set, ``UNION ALL``, each copy's rows
        marked with its position (``wrap_steps``) and split back into one frame per set, in
        the order the engine returned them. None when the SQL already names the marker."""
        if STEP_COLUMN in text:
            return None
        sql = wrap_steps(text, len(parameter_sets), self.timeout)
        bound = {
            f"{name}__{k}": format_parameter(value)
            for k, parameters in enumerate(parameter_sets)
            for name, value in parameters.items()
        }
        try:
            frame = await asyncio.wait_for(asyncio.to_thread(self._query, sql, bound), self.timeout + 5)
        except TimeoutError as exc:
            raise SourceTimeout(f"no answer within {self.timeout:.0f}s") from exc
        positions = frame.groupby(STEP_COLUMN, sort=False).indices
        frame = frame.drop(columns=STEP_COLUMN)
        return [frame.iloc[positions.get(k, [])].reset_index(drop=True) for k in range(len(parameter_sets))]

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and self.target.embedded is None:
            connection.close()  # a server connection is the source's; embedded ones the hub's
        if self._own_hub:
            self._hub.close()
