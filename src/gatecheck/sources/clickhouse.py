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
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import SecretStr

from gatecheck.clickhouse import ClickHouse, Connection, Target
from gatecheck.errors import SourceTimeout
from gatecheck.frozen import NAME
from gatecheck.sources.base import QueryParameters, Source, SourceSettings, iso_utc

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

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and self.target.embedded is None:
            connection.close()  # a server connection is the source's; embedded ones the hub's
        if self._own_hub:
            self._hub.close()
