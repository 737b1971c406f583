"""PostgreSQL source (``postgresql://user:pass@host:5432/db``, or a Unix socket with
``?host=/path``), through psycopg 3's asyncio connection.

Every query runs in a ``READ ONLY`` transaction with a ``statement_timeout`` and ``TimeZone``
UTC (a ``timestamp`` without zone is a UTC wall time, whatever the server's zone) set for that
transaction alone, as the subquery of ``SELECT * FROM (<suite SQL>) AS gatecheck_query``: a
second statement is a syntax error and any write is refused by the server. A suite writes
its parameters as ``{name:type}`` with a PostgreSQL type (``{window_start:timestamptz}``);
each becomes a placeholder the driver binds (``%(name)s::timestamptz``), never text in the
SQL. At most ``MAX_ROWS`` + 1 rows are read. The password comes from the URL or from
``password:`` (write ``"${VAR}"``) and is never printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import SecretStr, field_validator, model_validator

from gatecheck._values import document_time
from gatecheck.errors import QueryError, SourceTimeout, SourceUnavailable, redact
from gatecheck.sources.base import MAX_ROWS, QueryParameters, Source, SourceSettings, clock_problem
from gatecheck.sources.probe import Probe
from gatecheck.sources.sqltext import (
    ColumnsUsed,
    answers_a_row_without_data,
    statement_problems,
    syntax_problem,
)

if TYPE_CHECKING:
    import pandas as pd


# `{name:type}` placeholders, the same form as ClickHouse's (a PostgreSQL type here).
_SQL_PARAM = re.compile(r"\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([A-Za-z][A-Za-z0-9_ ()\[\],]*)\}")
# SQLSTATEs: 57014 query_canceled (statement_timeout), 25006 read_only_sql_transaction.
_TIMEOUT_STATE = "57014"

#: The settings every query's transaction runs under, whatever the server, database or role
#: sets (``ALTER ROLE … SET``): each of these, set otherwise, gives a suite's SQL another
#: answer than the one it was written for. Set with ``set_config(…, true)``: this transaction
#: only, beside ``statement_timeout``.
TRANSACTION_SETTINGS: dict[str, str] = {
    # a `timestamp` without zone is a UTC wall time (compared with the window's timestamptz
    # bounds it is read in the session's zone: on a server in New York the window fell 5h back)
    "TimeZone": "UTC",
    # floats travel as text: at -14 a success rate of 0.9985 arrived as 1.0 and passed 0.999
    "extra_float_digits": "3",
    # a policy that hides rows from this role is then an error naming the table, never a
    # partial table judged whole
    "row_security": "off",
    # `x = NULL` is never true, as written; on, it means `x IS NULL`
    "transform_null_equals": "off",
    # a backslash in '…' is a character, as written; off, it escapes the next one
    "standard_conforming_strings": "on",
    # the forms the driver reads dates and intervals in
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
}
# SQLSTATE 42501 insufficient_privilege, with row_security off: a policy would hide rows.
_ROW_SECURITY = "row-level security"


class PostgreSQLSourceConfig(SourceSettings):
    """A PostgreSQL database: ``postgresql://user[:pass]@host[:port]/db[?host=/socket/dir]``."""

    type: Literal["postgresql"]
    password: SecretStr | None = None  # overrides the URL's password; write "${VAR}"
    password_file: Path | None = None  # or a file holding it (relative to the config directory)
    schemes: ClassVar[tuple[str, ...]] = ("postgresql", "postgres")

    @field_validator("url")
    @classmethod
    def _libpq_reads_it(cls, value: str) -> str:
        problem = url_problem(value)
        if problem is not None:  # refused here, not as every check's error at run time
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _one_password(self) -> PostgreSQLSourceConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        return self


def url_problem(url: str) -> str | None:
    """Why libpq cannot read ``url`` (its words, without the URL or a password), or None."""
    from urllib.parse import unquote, urlsplit

    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(url)
    except Exception as exc:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        head, quoted, rest = text.partition(': "')
        try:
            userinfo = urlsplit(url).netloc.rpartition("@")[0]
        except ValueError:
            userinfo = url
        secret = userinfo.partition(":")[2]
        shown = rest.rstrip('"')
        holds_secret = bool(secret) and (secret in shown or unquote(secret) in shown)
        if quoted and (not shown or "@" in shown or "/" in shown or holds_secret):
            text = head  # libpq quotes the URI or the token: it may hold the password
        for hidden in {secret, unquote(secret)} - {""}:
            text = text.replace(hidden, "***")  # and anywhere else, whatever libpq says next
        return f"not a PostgreSQL URL libpq reads ({text})"
    return None


#: The types a moment may be bound as (``date`` would start the window at midnight).
_MOMENT_TYPES = re.compile(r"timestamptz(?:\(\d\))?|timestamp(?:\(\d\))?(?: with(?:out)? time zone)?", re.I)


def sql_problems(sql: str) -> list[str]:
    """Static checks of a suite's SQL: one read-only SELECT, well-formed parameters."""
    problems = statement_problems(sql, _SQL_PARAM.finditer(sql), "{window_start:timestamptz}", _MOMENT_TYPES)
    syntax = syntax_problem(_SQL_PARAM.sub("NULL", sql), "postgres") if not problems else None
    return [*problems, syntax] if syntax else problems


def rows_without_data(sql: str) -> bool:
    """Whether the suite's SQL answers a row when its tables hold none in the window
    (``SELECT coalesce(max(lag), 0) FROM …``)."""
    return answers_a_row_without_data(_SQL_PARAM.sub("NULL", sql), "postgres")


def bind_form(sql: str) -> str:
    """The suite SQL as psycopg runs it: wrapped in one SELECT, every ``{name:type}`` a
    driver-bound ``%(name)s::type``, every literal ``%`` doubled."""
    parts: list[str] = []
    last = 0
    body = sql.strip().rstrip(";")
    for match in _SQL_PARAM.finditer(body):
        parts.append(body[last : match.start()].replace("%", "%%"))
        parts.append(f"%({match.group(1)})s::{match.group(2).strip()}")
        last = match.end()
    parts.append(body[last:].replace("%", "%%"))
    return f"SELECT * FROM (\n{''.join(parts)}\n) AS gatecheck_query"


def conninfo(config: PostgreSQLSourceConfig, root: Path = Path(".")) -> tuple[str, str]:
    """(the connection string, where it points for messages — no password)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    url = config.url
    try:
        parts = conninfo_to_dict(url)
    except Exception:
        raise SourceUnavailable(f"bad PostgreSQL URL {redact(url)}: {url_problem(url)}") from None
    extra: dict[str, Any] = {"application_name": "gatecheck"}
    if config.password is not None:
        extra["password"] = config.password.get_secret_value()
    elif config.password_file is not None:
        path = config.password_file if config.password_file.is_absolute() else root / config.password_file
        try:
            extra["password"] = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SourceUnavailable(f"password_file {path}: {exc.strerror or exc}") from None
    host = str(parts.get("host") or "localhost")
    where = f"PostgreSQL at {host}" + (f":{parts['port']}" if parts.get("port") else "")
    where += f", database {parts.get('dbname') or parts.get('user') or 'postgres'}"
    return make_conninfo(url, **extra), where


def sql_parameters(sql: str) -> dict[str, str]:
    """``{name:type}`` placeholders in the SQL, name → PostgreSQL type. A query binds only
    these (a suite's query gets the window whether or not its SQL uses it)."""
    return {m.group(1): m.group(2).strip() for m in _SQL_PARAM.finditer(sql)}


def explain_query(
    name: str, config: PostgreSQLSourceConfig, query: Any, parameters: QueryParameters, root: Path
) -> dict[str, Any]:
    """What the source sends for ``query`` (``gatecheck explain``), nothing connected."""
    types = sql_parameters(query)
    _, where = conninfo(config.model_copy(update={"password_file": None}), root)
    return {
        "sent_to": where,
        "requests": [
            {
                "what": "query (READ ONLY transaction, statement_timeout "
                f"{int(config.timeout.total_seconds() * 1000)} ms, "
                + ", ".join(f"{name} {value}" for name, value in TRANSACTION_SETTINGS.items())
                + "; the server's clock_timestamp(), and on a standby whether WAL it received is "
                "not replayed yet and pg_last_xact_replay_timestamp())",
                "text": bind_form(query),
                "parameters": [
                    {
                        "name": key,
                        "type": types.get(key, ""),
                        "sent": document_time(value) if isinstance(value, datetime) else str(value),
                    }
                    for key, value in parameters.items()
                    if key in types  # what the SQL names (the window comes whether or not)
                ],
            }
        ],
    }


def _translate(exc: BaseException, where: str, timeout_s: float) -> Exception:
    """A psycopg error as gatecheck's: connection problems, timeouts, the query's own faults."""
    import psycopg

    message = " ".join(redact(str(exc)).split()) or type(exc).__name__
    state = getattr(exc, "sqlstate", None)
    if state == _TIMEOUT_STATE:
        return SourceTimeout(f"{where}: the query ran past statement_timeout ({timeout_s:g}s)")
    if isinstance(exc, psycopg.OperationalError) and state is None:
        return SourceUnavailable(f"cannot connect to {where}: {message}")
    if isinstance(exc, psycopg.Error):
        if _ROW_SECURITY in message:
            message += (
                ": row-level security applies to this role there, and a check judges whole tables "
                "— read as a role it does not apply to (the table's owner, or one with BYPASSRLS)"
            )
        return QueryError(f"{where}: {message}" + (f" (SQLSTATE {state})" if state else ""))
    return SourceUnavailable(f"{where}: {type(exc).__name__}: {message}")


#: One round trip before each query: its transaction's settings, whether the server is a
#: standby with WAL received and not yet replayed and the commit time of the last transaction
#: it replayed, and the server's clock (last).
_SETTINGS_SQL = (
    "SELECT set_config('statement_timeout', %s, true), "
    + ", ".join(f"set_config('{name}', '{value}', true)" for name, value in TRANSACTION_SETTINGS.items())
    + ", pg_is_in_recovery() AND pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()"
    + ", pg_last_xact_replay_timestamp(), clock_timestamp()"
)


def standby_behind(where: str, behind: bool, replayed: datetime | None, until: datetime | None) -> str | None:
    """Why a standby cannot answer for a window ending ``until``, or None: it holds WAL it has
    received and not replayed (replay paused, or slower than the primary writes) and the last
    transaction it replayed committed before the window's end (or none since it started) —
    the window's last rows may be in what it has not replayed, and a count of errors read there
    is a count of fewer. A standby that has replayed all it received is taken as current (its
    primary idle since; one whose stream broke looks the same: not judged this way)."""
    if not behind or until is None or (replayed is not None and replayed >= until):
        return None
    last = (
        f"its last replayed transaction committed at {document_time(replayed)}"
        if replayed
        else ("it has replayed no transaction since it started")
    )
    return (
        f"{where} is a standby behind its primary: {last}, before the window's end {document_time(until)}, "
        "and WAL it received is not replayed yet (replay paused or behind), so rows of the window may "
        "not be there — judged again once it has caught up"
    )


class PostgreSQLSource(Source):
    """One PostgreSQL database through one asyncio connection (opened on first use, opened
    again after it broke)."""

    def __init__(self, name: str, config: PostgreSQLSourceConfig, root: Path) -> None:
        super().__init__(name, config)
        self._conninfo, self.where = conninfo(config, root)
        self._connection: Any = None
        # One connection, one transaction at a time: the checks of a gate that read this
        # database take turns.
        self._lock = asyncio.Lock()

    async def _connect(self) -> Any:
        import psycopg

        if self._connection is None or self._connection.closed:
            self._connection = await psycopg.AsyncConnection.connect(
                self._conninfo, connect_timeout=max(1, round(self.timeout)), autocommit=False
            )
            await self._connection.set_read_only(True)  # every transaction BEGINs READ ONLY
        return self._connection

    async def _run(self, sql: str, parameters: dict[str, Any], until: datetime | None = None) -> pd.DataFrame:
        async with self._lock:
            return await self._run_alone(sql, parameters, until)

    async def _run_alone(
        self, sql: str, parameters: dict[str, Any], until: datetime | None = None
    ) -> pd.DataFrame:
        import pandas as pd

        connection = await self._connect()
        async with connection.transaction(), connection.cursor() as cursor:
            # For this transaction only: the server stops the query itself, and a `timestamp`
            # without zone is read as UTC (compared with the window's timestamptz bounds it is
            # read in the session's TimeZone: on a server in New York the window fell 5h back).
            # And the server's clock, once a transaction: every window is gatecheck's clock's.
            before = datetime.now(UTC)
            await cursor.execute(_SETTINGS_SQL, [f"{int(self.timeout * 1000)}"])
            after = datetime.now(UTC)
            answer = await cursor.fetchone()
            problem = clock_problem(self.where, answer[-1] if answer else None, before, after)
            if problem is None and answer:
                problem = standby_behind(self.where, bool(answer[-3]), answer[-2], until)
            if problem is not None:
                raise QueryError(problem)
            await cursor.execute(sql, parameters)
            rows = await cursor.fetchmany(MAX_ROWS + 1)
            columns = [c.name for c in cursor.description or []]
        return pd.DataFrame.from_records(rows, columns=columns)

    async def query(self, text: str, parameters: QueryParameters) -> pd.DataFrame:
        return await self._ask(text, parameters)

    async def _ask(self, text: str, parameters: QueryParameters, prefix: str = "") -> pd.DataFrame:
        """``prefix`` + the suite's SQL in its bound form, run in a READ ONLY transaction, its
        errors translated (a broken connection is dropped, to be opened again)."""
        sql = prefix + bind_form(text)
        names = sql_parameters(text)
        bound = {name: value for name, value in parameters.items() if name in names}
        try:
            # statement_timeout stops the query in the server; this outer limit stops us
            # waiting on a connection that hangs.
            until = parameters.get("window_end")
            window_end = until if isinstance(until, datetime) else None
            return await asyncio.wait_for(self._run(sql, bound, window_end), self.timeout + 5)
        except TimeoutError as exc:
            await self._drop()
            raise SourceTimeout(f"{self.where}: no answer within {self.timeout:.0f}s") from exc
        except Exception as exc:
            if isinstance(exc, SourceUnavailable | SourceTimeout | QueryError):
                raise
            translated = _translate(exc, self.where, self.timeout)
            if isinstance(translated, SourceUnavailable):
                await self._drop()
            raise translated from exc

    async def estimate(self, text: str, parameters: QueryParameters) -> dict[str, Any] | None:
        """PostgreSQL's plan of the request ``query`` sends, not run: ``EXPLAIN (FORMAT JSON)``
        in a READ ONLY transaction — the estimated rows, and each table's scan (index or
        sequential) with its estimated rows."""
        frame = await self._ask(text, parameters, prefix="EXPLAIN (FORMAT JSON) ")
        document = frame.iloc[0, 0]
        plan = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
        scans: list[dict[str, Any]] = []

        def walk(node: dict[str, Any]) -> None:
            if "Relation Name" in node:
                scans.append({
                    "table": node["Relation Name"], "scan": node["Node Type"],
                    "index": node.get("Index Name"), "rows": int(node.get("Plan Rows", 0)),
                })  # fmt: skip
            for child in node.get("Plans", []):
                walk(child)

        walk(plan)
        return {"rows": int(plan.get("Plan Rows", 0)), "scans": scans}

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            # closing a broken connection may fail too; it is gone either way
            with contextlib.suppress(Exception):
                await connection.close()

    async def close(self) -> None:
        await self._drop()


async def check_source(name: str, config: PostgreSQLSourceConfig, root: Path, suites: list[Any]) -> Probe:
    """Connect, read the server's version, and check that the tables and columns the suites
    read exist (one query to ``information_schema.columns``)."""
    import psycopg

    info, where = conninfo(config, root)
    # {name:type} is gatecheck's, not PostgreSQL's: a NULL stands in for it while parsing
    wanted = ColumnsUsed.of(suites, "public", "postgres", lambda sql: _SQL_PARAM.sub("NULL", sql))
    used = wanted.used
    started = time.perf_counter()
    try:
        async with await asyncio.wait_for(
            psycopg.AsyncConnection.connect(
                info, connect_timeout=max(1, round(config.timeout.total_seconds()))
            ),
            config.timeout.total_seconds() + 5,
        ) as connection:
            before = datetime.now(UTC)
            asked = await connection.execute("SELECT current_setting('server_version'), clock_timestamp()")
            version, theirs = await asked.fetchone() or ("?", None)
            latency = (time.perf_counter() - started) * 1000
            clock = clock_problem(where, theirs, before, datetime.now(UTC))
            existing: dict[tuple[str, str], set[str]] = {}
            hidden: list[tuple[str, str]] = []
            if used:
                cursor = await connection.execute(
                    "SELECT table_schema, table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = ANY(%s) AND table_name = ANY(%s)",
                    [sorted({s for s, _ in used}), sorted({t for _, t in used})],
                )
                for schema, table, column in await cursor.fetchall():
                    existing.setdefault((schema, table), set()).add(column)
                # a table whose policies restrict this role: every query reading it is refused
                cursor = await connection.execute(
                    "SELECT n.nspname, c.relname FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = ANY(%s) AND c.relname = ANY(%s) AND row_security_active(c.oid)",
                    [sorted({s for s, _ in used}), sorted({t for _, t in used})],
                )
                hidden = [(str(schema), str(table)) for schema, table in await cursor.fetchall()]
    except (TimeoutError, psycopg.Error) as exc:
        translated = (
            _translate(exc, where, config.timeout.total_seconds())
            if not isinstance(exc, TimeoutError)
            else SourceTimeout(f"{where}: no answer within {config.timeout}")
        )
        if isinstance(translated, QueryError):
            return Probe(problems=[str(translated)])
        return Probe(reachable=False, problems=[str(translated)])
    found = wanted.probe(f"PostgreSQL {version}", latency, existing)
    for schema, table in sorted(set(hidden) & set(used)):
        readers = ", ".join(sorted(wanted.readers.get((schema, table), ())))
        found.problems.append(
            f"table {schema}.{table}: row-level security applies to this role, so every query "
            f"reading it is refused ({readers}) — read as a role it does not apply to "
            "(the table's owner, or one with BYPASSRLS)"
        )
    if clock is not None:
        found.problems.append(clock)
    return found
