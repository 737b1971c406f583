"""ClickHouse connections, for the ClickHouse source and the ClickHouse ledger alike.

One driver: clickhouse-connect, for ``clickhouse(s)://host:port/db`` (its HTTP client) and
for ``chdb://PATH`` (its in-process chDB backend: the same ``Client`` API, parameter binding,
type system and error classes), so every embedded test exercises the production path.
Its exceptions are translated here, by type and ClickHouse error code, into gatecheck's.

chDB embeds one ClickHouse engine per process, bound to one path. An engine
(:class:`gatecheck.evaluation.engine.Engine`) owns one :class:`ClickHouse` hub: every embedded client it
hands out (one per database, for the sources and the ledger alike) goes through **one lock**,
so a ledger write and another phase's query never use the native engine at once.

Read-only and time limits travel in the SQL's own ``SETTINGS`` clause, never as per-call
settings: the chDB backend keeps per-call settings in its session, where a ``readonly=1``
would outlive the query and refuse the ledger's next write. A URL's query parameters other
than ``database`` are ClickHouse settings of that connection's session (as clickhouse-connect's
DSN reads them): ``chdb://PATH?readonly=1`` reproduces a read-only server profile on chDB, in
a client of its own (``readonly`` applied last, after the embedded engine's own settings).
:meth:`Connection.readonly` reads the session's level once: under ``readonly=1`` a query may
change no setting, so the source sends its SQL without a ``SETTINGS`` clause.

Why one module of ~500 lines: the session's settings that would change an answer, the SQL
that undoes them and the errors of the one driver are read, sent and translated together.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from gatecheck.errors import (
    ConfigError,
    GatecheckError,
    QueryError,
    SourceTimeout,
    SourceUnavailable,
    redact,
    socket_reason,
)
from gatecheck.sources.base import clock_problem

# TIMEOUT_EXCEEDED, TOO_SLOW (estimated to exceed the limit), SOCKET_TIMEOUT
_TIMEOUT_CODES = {159, 160, 209}
_CODE = re.compile(r"Code: (\d+)\. (?:DB::Exception: )?(.*?)(?: \(version [^)]*\))?$", re.S)
SCHEMES = ("chdb", "clickhouse", "clickhouses")

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Target:
    """Where one ClickHouse URL points: an embedded path or a server, and a database."""

    database: str
    embedded: Path | None = None
    host: str = "localhost"
    port: int = 8123
    secure: bool = False
    username: str = "default"
    password: str = ""  # never printed: ``where`` and ``repr`` leave it out
    # Session settings from the URL's query string (everything but ``database``), in order.
    settings: tuple[tuple[str, str], ...] = ()
    ca_cert: Path | None = None  # PEM of the CA(s) signing a clickhouses:// server's certificate

    @property
    def where(self) -> str:
        if self.embedded is not None:
            return f"chDB at {self.embedded}"
        return f"ClickHouse at {self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"<Target {self.where} database={self.database}>"

    @classmethod
    def parse(
        cls,
        url: str,
        root: Path,
        *,
        password: str | None = None,
        ca_cert: Path | None = None,
        what: str = "URL",
    ) -> Target:
        """``chdb://PATH?database=DB`` (relative paths against ``root``) or
        ``clickhouse(s)://user:pass@host:port/db``; ``password`` overrides the URL's;
        ``ca_cert`` (relative to ``root``) verifies a ``clickhouses://`` server's certificate."""
        parts = urlsplit(url)
        if parts.scheme == "chdb":
            raw = unquote(parts.netloc + parts.path)
            if not raw:
                raise ConfigError(f"{what}: chdb:// URL needs a path, e.g. chdb://.gatecheck/warehouse")
            path = Path(raw)
            database = parse_qs(parts.query).get("database", ["default"])[0]
            return cls(
                database=database,
                embedded=(path if path.is_absolute() else root / path).resolve(),
                settings=_url_settings(parts.query, what),
            )
        if parts.scheme in ("clickhouse", "clickhouses"):
            secure = parts.scheme == "clickhouses"
            try:
                port = parts.port or (8443 if secure else 8123)
            except ValueError as exc:
                raise ConfigError(f"{what} {redact(url)}: bad port") from exc
            return cls(
                database=parts.path.strip("/") or "default",
                host=parts.hostname or "localhost",
                port=port,
                secure=secure,
                username=unquote(parts.username) if parts.username else "default",
                password=password if password is not None else unquote(parts.password or ""),
                settings=_url_settings(parts.query, what),
                ca_cert=None if ca_cert is None else (ca_cert if ca_cert.is_absolute() else root / ca_cert),
            )
        raise ConfigError(
            f"{what}: unsupported ClickHouse URL scheme {parts.scheme!r} "
            "(use chdb://PATH, clickhouse://host:8123/db or clickhouses://host:8443/db)"
        )


_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _url_settings(query: str, what: str) -> tuple[tuple[str, str], ...]:
    """A URL's query parameters as ClickHouse session settings (``database`` is the URL's own);
    ``readonly`` last, since after it the session may change no other setting."""
    from urllib.parse import parse_qsl

    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "database"]
    for key, _ in pairs:
        if not _SETTING_NAME.match(key):
            raise ConfigError(f"{what}: {key!r} in the URL's query is not a ClickHouse setting name")
    return tuple(sorted(pairs, key=lambda kv: kv[0] == "readonly"))


#: The settings under which ClickHouse, on reaching a limit, answers part of a query as if it
#: were the whole ('break'; 'any' for GROUP BY), each with the limits it applies to. A sum over
#: the rows read before the limit is no sum over the window: the source's queries ask for
#: 'throw' (an error) in their SETTINGS, and where a session may change no setting (readonly=1)
#: a profile that breaks at a limit it sets refuses every query instead.
OVERFLOW_MODES: dict[str, tuple[str, ...]] = {
    "timeout_overflow_mode": ("max_execution_time",),
    "read_overflow_mode": ("max_rows_to_read", "max_bytes_to_read"),
    "result_overflow_mode": ("max_result_rows", "max_result_bytes"),
    "group_by_overflow_mode": ("max_rows_to_group_by",),
    "sort_overflow_mode": ("max_rows_to_sort", "max_bytes_to_sort"),
    "set_overflow_mode": ("max_rows_in_set", "max_bytes_in_set"),
    "distinct_overflow_mode": ("max_rows_in_distinct", "max_bytes_in_distinct"),
    "join_overflow_mode": ("max_rows_in_join", "max_bytes_in_join"),
    "transfer_overflow_mode": ("max_rows_to_transfer", "max_bytes_to_transfer"),
    # a Distributed query's shards, each stopping at its own limit
    "read_overflow_mode_leaf": ("max_rows_to_read_leaf", "max_bytes_to_read_leaf"),
}

#: Each limit's overflow mode as gatecheck's reads ask for it (a ``SETTINGS`` clause): an error.
THROW = ", ".join(f"{mode}='throw'" for mode in OVERFLOW_MODES)

#: Settings under which ClickHouse answers another query than the one sent — shards left
#: out, groups unmerged, rows filtered out, a JOIN, an aggregate or DISTINCT meaning something
#: else than ClickHouse's defaults, which the suites are written for — with no error: name →
#: (the value gatecheck's reads need as system.settings shows it, as a SETTINGS clause writes
#: it, what another value does).
#: A session that has another value gets the needed one in each query's SETTINGS where it may
#: change settings; at readonly=1 every query is refused, naming the setting.
WHOLE_ANSWER_SETTINGS: dict[str, tuple[str, str, str]] = {
    "skip_unavailable_shards": ("0", "0", "leaves the shards it cannot reach out of the answer"),
    "distributed_group_by_no_merge": ("0", "0", "answers each shard's groups unmerged"),
    "additional_table_filters": ("{}", "{}", "filters the rows of the tables a query reads"),
    "empty_result_for_aggregation_by_constant_keys_on_empty_set": (
        "1", "1", "answers a row of aggregates over no rows for a constant GROUP BY key",
    ),
    "aggregate_functions_null_for_empty": ("0", "0", "answers NULL for an aggregate over no rows"),
    "final": ("0", "0", "reads every table as if the query said FINAL"),
    "join_use_nulls": ("0", "0", "gives a row a JOIN did not match NULLs instead of its columns' defaults"),
    "join_default_strictness": ("ALL", "'ALL'", "joins ANY (one match) where a query says JOIN"),
    "any_join_distinct_right_table_keys": ("0", "0", "gives ANY JOIN its legacy meaning"),
    "count_distinct_implementation": ("uniqExact", "'uniqExact'", "counts DISTINCT with that function"),
    "transform_null_in": ("0", "0", "matches NULL with NULL in IN"),
    "group_by_use_nulls": ("0", "0", "gives the keys a grouping set leaves out NULLs"),
    "union_default_mode": ("", "''", "reads a bare UNION as that mode"),
    "intersect_default_mode": ("ALL", "'ALL'", "reads a bare INTERSECT as that mode"),
    "except_default_mode": ("ALL", "'ALL'", "reads a bare EXCEPT as that mode"),
    "do_not_merge_across_partitions_select_final": (
        "0", "0", "reads FINAL without merging a key's rows across partitions",
    ),
    "prefer_column_name_to_alias": ("0", "0", "reads a name as its column where the query means its alias"),
    "apply_deleted_mask": ("1", "1", "reads the rows a DELETE removed"),
    "partial_result_on_first_cancel": ("0", "0", "answers the rows read so far when a query is cancelled"),
}  # fmt: skip

#: A question whose answer is known: a session whose ``limit``, ``offset`` or
#: ``additional_result_filter`` rewrites every answer answers it otherwise. (system.settings
#: cannot tell: ClickHouse applies ``limit`` and ``offset`` to the outermost SELECT and shows
#: them as 0 inside it.)
PROBE = "SELECT number FROM system.numbers LIMIT 3"
#: The settings that undo such a rewrite.
NO_REWRITE = "limit=0, offset=0, additional_result_filter=''"


class Connection:
    """One clickhouse-connect client; every call holds ``lock`` (shared by all clients of one
    embedded engine) and raises gatecheck's errors."""

    def __init__(self, client: Any, lock: threading.RLock, target: Target, timeout: float | None) -> None:
        self.client = client
        self.lock = lock
        self.target = target
        self.timeout = timeout
        self._session: tuple[int, list[str], list[tuple[str, str]]] | None = None

    def readonly(self) -> int:
        """The session's ``readonly`` level (0: any query; 1: reads, and no setting may change;
        2: reads, settings may change), read once from the server or engine."""
        return self._settings()[0]

    def partial_answers(self) -> list[str]:
        """The session's settings that would answer part of a query as the whole at a limit it
        also sets (``read_overflow_mode='break' (max_rows_to_read=1000)``); none: []."""
        return self._settings()[1]

    def other_answers(self) -> list[tuple[str, str]]:
        """What in the session makes ClickHouse answer another query than the one sent — the
        settings of :data:`WHOLE_ANSWER_SETTINGS` at another value than gatecheck's reads need,
        an answer to :data:`PROBE` rewritten — each as (what it does, the SETTINGS that undo it)."""
        return self._settings()[2]

    def _settings(self) -> tuple[int, list[str], list[tuple[str, str]]]:
        if self._session is None:
            names = [
                "readonly",
                *OVERFLOW_MODES,
                *(limit for limits in OVERFLOW_MODES.values() for limit in limits),
                *WHOLE_ANSWER_SETTINGS,
            ]
            listed = ", ".join(f"'{name}'" for name in names)
            if self.target.embedded is None:  # a server's clock (chDB's is this process's own)
                before = datetime.now(UTC)
                theirs = self.query_rows("SELECT toUnixTimestamp64Micro(now64(6))")[0][0]
                moment = datetime.fromtimestamp(int(theirs) / 1e6, UTC)
                problem = clock_problem(self.target.where, moment, before, datetime.now(UTC))
                if problem is not None:
                    raise QueryError(problem)
            answer = [int(row[0]) for row in self.query_rows(PROBE)]
            rewritten = None
            if answer != [0, 1, 2]:
                rewritten = (
                    f"answer to {PROBE} is {answer}: a limit, offset or additional_result_filter "
                    "rewrites every answer"
                )
            read = f"SELECT name, value FROM system.settings WHERE name IN ({listed})"
            fixed = True  # whether the session may undo a rewrite (not at readonly=1)
            try:
                rows = self.query_rows(read + (f" SETTINGS {NO_REWRITE}" if rewritten else ""))
            except QueryError:
                if rewritten is None:
                    raise
                rows, fixed = self.query_rows(read), False  # (read rewritten: its rows may be cut)
            value = {str(name): str(setting) for name, setting in rows}
            partial = []
            for mode, limits in OVERFLOW_MODES.items():
                if value.get(mode, "throw") == "throw":
                    continue
                set_limits = [
                    f"{limit}={value[limit]}" for limit in limits if value.get(limit, "0") not in ("0", "")
                ]
                if set_limits:
                    partial.append(f"{mode}='{value[mode]}' ({', '.join(set_limits)})")
            other = [
                (f"{name}={value[name]!r} {does}", f"{name}={written}")
                for name, (needed, written, does) in WHOLE_ANSWER_SETTINGS.items()
                if name in value and value[name] != needed  # a server without it: nothing to change
            ]
            if rewritten:
                other.append((rewritten, NO_REWRITE))
            self._session = (int(value.get("readonly", "0")) if fixed else 1, partial, other)
        return self._session

    def query_df(self, sql: str, parameters: dict[str, Any] | None = None) -> pd.DataFrame:
        try:
            with self.lock:
                return self.client.query_df(sql, parameters=parameters or {})
        except Exception as exc:
            raise translate(exc, self.target, self.timeout) from exc

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """The answer's rows as tuples: for a few rows, half the CPU of a frame (no pandas)."""
        try:
            with self.lock:
                return [tuple(row) for row in self.client.query(sql, parameters=parameters or {}).result_rows]
        except Exception as exc:
            raise translate(exc, self.target, self.timeout) from exc

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        try:
            with self.lock:
                self.client.command(sql, parameters=parameters or {})
        except Exception as exc:
            raise translate(exc, self.target, self.timeout) from exc

    def close(self) -> None:
        with contextlib.suppress(Exception), self.lock:
            self.client.close()


class ClickHouse:
    """The ClickHouse connections of one engine: embedded clients are shared and closed with
    the hub; a server connection belongs to whoever asked for it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # the one lock of the embedded engine
        self._embedded: dict[tuple[Path, str, tuple[tuple[str, str], ...]], Connection] = {}

    def __enter__(self) -> ClickHouse:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def connect(self, target: Target, *, timeout: float | None = None, create: bool = False) -> Connection:
        """A connection to ``target``. Embedded: the hub's shared client for that database (the
        path must exist unless ``create``). Server: a new client the caller closes."""
        if target.embedded is None:
            return Connection(_server_client(target, timeout), threading.RLock(), target, timeout)
        path = target.embedded
        key = (path, target.database, target.settings)
        with self.lock:
            shared = self._embedded.get(key)
            if shared is not None:
                return shared
            if create:
                path.mkdir(parents=True, exist_ok=True)
            elif not path.is_dir():
                raise SourceUnavailable(f"chDB path {path} does not exist")
            client = _embedded_client(target)
            connection = Connection(client, self.lock, target, timeout)
            self._embedded[key] = connection
            return connection

    def close(self) -> None:
        """Close every embedded client (the chDB engine shuts down with its last handle)."""
        with self.lock:
            connections, self._embedded = list(self._embedded.values()), {}
        for connection in connections:
            connection.close()


# The embedded engine's caches keyed by a query's text *with its parameters*. A gate's windows
# move, so no entry is ever used again, and every evaluation adds some to the worker's memory
# until each cache's own bound (measured with bench/soak.py and ClickHouse's MemoryTracking):
# - the query condition cache: each query's filter result per part (~1 KiB per query; bounded
#   only at 100 MiB);
# - the hash table statistics collected by aggregations and joins to size the next run of the
#   same query's hash tables (~150 B per GROUP BY, ~600 B per join; 10,000 entries).
# A ClickHouse server's caches are the server's memory: its clients leave them alone.
EMBEDDED_SETTINGS = {
    "use_query_condition_cache": 0,
    "collect_hash_table_stats_during_aggregation": 0,
    "collect_hash_table_stats_during_joins": 0,
}


def _embedded_client(target: Target) -> Any:
    try:
        import chdb  # noqa: F401 — the backend's engine: say which extra provides it
        import clickhouse_connect
    except ImportError as exc:
        raise SourceUnavailable(
            "chdb:// needs the embedded extra: pip install 'gatecheck[embedded]'"
        ) from exc
    try:
        # tz_mode="aware": timestamps come back in UTC with their zone, as reports show them.
        client = clickhouse_connect.get_client(
            dsn=f"chdb://{target.embedded}",
            database=target.database,
            tz_mode="aware",
            # The engine's own settings first: after a readonly=1 from the URL none could be set.
            settings={**EMBEDDED_SETTINGS, **dict(target.settings)},
        )
    except Exception as exc:
        message = _error_message(exc)[1]
        if "already initialized with path" in message:  # chDB's own words for its one-path rule
            message += " (chDB embeds one engine per process: one embedded path per process)"
        raise SourceUnavailable(f"cannot open {target.where}: {message}") from exc
    return client


def _server_client(target: Target, timeout: float | None) -> Any:
    import clickhouse_connect

    tls: dict[str, Any] = {}
    if target.secure and target.ca_cert is not None:
        if not target.ca_cert.is_file():
            raise SourceUnavailable(f"ca_cert {target.ca_cert}: no such file")
        tls = {"verify": True, "ca_cert": str(target.ca_cert)}
    try:
        return clickhouse_connect.get_client(
            host=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            database=target.database,
            secure=target.secure,
            connect_timeout=timeout or 10,
            send_receive_timeout=timeout or 300,
            autogenerate_session_id=False,
            tz_mode="aware",
            settings=dict(target.settings),
            **tls,
        )
    except Exception as exc:
        raise translate(exc, target, timeout, connecting=True) from exc


def _error_message(exc: BaseException) -> tuple[int | None, str]:
    text = str(exc).strip()
    match = _CODE.search(text)
    if not match:
        return None, tidy(text.splitlines()[0])[:500] if text else type(exc).__name__
    return int(match.group(1)), tidy(" ".join(match.group(2).split()))[:500]


#: The server's echo of the whole query as it ran (rewritten: parameters as ``_CAST(…)``):
#: ``…: In scope SELECT … . (CODE)``. The suite's query is in its file and in `explain`.
_IN_SCOPE = re.compile(r":?\s*In scope .*?(?=\.? \([A-Z_]+\)$|$)")
_EXPECTED = re.compile(r"(Expected one of: )([^.]*)")
_EXECUTING = re.compile(r": while executing 'FUNCTION .*?'(?=\.? \([A-Z_]+\)$|$)")  # throwIf's echo
_CAST = re.compile(r"_CAST\('((?:[^'\\]|\\.)*)', '[^']*'\)")


def tidy(message: str) -> str:
    """A ClickHouse error as a person reads it: without the server's echo of the rewritten
    query (``In scope SELECT … _CAST('1795327200', 'DateTime64(3)') …``) or function (``while
    executing 'FUNCTION throwIf(…)'``), a parameter's
    ``_CAST('v', 'T')`` as ``'v'``, and at most six of a syntax error's expected tokens."""
    text = _EXECUTING.sub("", _IN_SCOPE.sub("", message))
    text = _CAST.sub(lambda m: f"'{m.group(1)}'", text)

    def fewer(match: re.Match[str]) -> str:
        tokens = [t.strip() for t in match.group(2).split(",")]
        more = f" (and {len(tokens) - 6} more)" if len(tokens) > 6 else ""
        return match.group(1) + ", ".join(tokens[:6]) + more

    return _EXPECTED.sub(fewer, text).replace("?. (", "? (").strip()


def _unreachable(exc: BaseException, target: Target, timeout: float | None) -> Exception | None:
    """One line for a server that cannot be reached, from the exception chain's socket error
    (clickhouse-connect wraps urllib3's retry report around it), or None."""
    if target.embedded is not None:
        return None
    seen: set[int] = set()
    current: BaseException | None = exc
    where = f"cannot reach {target.where}"
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError | socket.timeout):
            return SourceTimeout(f"{where}: no answer within {timeout or 0:g}s")
        if isinstance(current, ssl.SSLCertVerificationError):
            hint = "; a certificate signed by a private CA needs the source's ca_cert"
            hint = "" if target.ca_cert else hint
            return SourceUnavailable(
                f"{target.where}: its TLS certificate is not trusted ({current.verify_message}){hint}"
            )
        reason = socket_reason(current)
        if reason is not None:
            return SourceUnavailable(f"{where}: {reason}")
        current = current.__cause__ or current.__context__
    return None


def translate(
    exc: BaseException, target: Target, timeout: float | None = None, *, connecting: bool = False
) -> Exception:
    """clickhouse-connect's exception, by type and ClickHouse error code, as gatecheck's."""
    if isinstance(exc, GatecheckError):
        return exc
    from clickhouse_connect.driver import exceptions as ch

    unreachable = _unreachable(exc, target, timeout)
    if unreachable is not None:
        return unreachable
    code, message = _error_message(exc)
    code = getattr(exc, "code", None) or code
    if code in _TIMEOUT_CODES:
        return SourceTimeout(message)
    if connecting or (isinstance(exc, ch.OperationalError) and code is None):
        return SourceUnavailable(f"cannot connect to {target.where}: {message}")
    if isinstance(exc, ch.Error):
        return QueryError(message)
    return QueryError(f"{type(exc).__name__}: {message}")


__all__ = ["SCHEMES", "ClickHouse", "Connection", "Target", "translate"]
