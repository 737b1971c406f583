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
import contextlib
import math
import re
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import pandas as pd

from gatecheck.config import ClickHouseSourceConfig
from gatecheck.errors import ConfigError, QueryError, SourceTimeout, SourceUnavailable, redact
from gatecheck.sources.base import QueryParameters, Source

# TIMEOUT_EXCEEDED, TOO_SLOW (estimated to exceed the limit), SOCKET_TIMEOUT
_TIMEOUT_CODES = {159, 160, 209}
_CODE = re.compile(r"Code: (\d+)\. (?:DB::Exception: )?(.*?)(?: \(version [^)]*\))?$", re.S)


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


def _error_message(exc: BaseException) -> tuple[int | None, str]:
    text = str(exc).strip()
    match = _CODE.search(text)
    if not match:
        return None, text.splitlines()[0][:500] if text else type(exc).__name__
    message = " ".join(match.group(2).split())
    return int(match.group(1)), message[:500]


class _Driver(Protocol):
    def query(self, sql: str, parameters: dict[str, str]) -> pd.DataFrame: ...
    def close(self) -> None: ...


# ---------------------------------------------------------------- embedded (chDB)


class _Embedded:
    """The process's one chDB session.

    chDB embeds one server per process, bound to one path; a second path fails with
    "EmbeddedServer already initialized". Every user (sources, the demo's generator, tests)
    shares this session through :func:`embedded_session` and it closes with its last user.
    """

    lock = threading.RLock()
    session: Any = None
    path: Path | None = None
    users = 0


@contextlib.contextmanager
def embedded_session(path: Path | str, create: bool = False) -> Iterator[Any]:
    """Borrow the process-wide chDB session on ``path`` (one path per process)."""
    session = _acquire_embedded(Path(path), create)
    try:
        yield session
    finally:
        _release_embedded()


def _acquire_embedded(path: Path, create: bool) -> Any:
    path = path.resolve()
    with _Embedded.lock:
        if not path.is_dir() and not create:
            raise SourceUnavailable(f"chDB path {path} does not exist")
        if _Embedded.session is not None:
            if _Embedded.path != path:
                raise SourceUnavailable(
                    f"chDB is already open on {_Embedded.path} in this process; gatecheck opens "
                    f"one embedded path per process, so {path} cannot be used at the same time"
                )
            _Embedded.users += 1
            return _Embedded.session
        path.mkdir(parents=True, exist_ok=True)
        try:
            from chdb import session as chdb_session
        except ImportError as exc:
            raise SourceUnavailable(
                "chdb:// needs the embedded extra: pip install 'gatecheck[embedded]'"
            ) from exc
        try:
            _Embedded.session = chdb_session.Session(str(path))
        except Exception as exc:  # chDB raises RuntimeError subclasses
            raise SourceUnavailable(f"chDB cannot open {path}: {_error_message(exc)[1]}") from exc
        _Embedded.path, _Embedded.users = path, 1
        return _Embedded.session


def _release_embedded() -> None:
    with _Embedded.lock:
        _Embedded.users -= 1
        if _Embedded.users <= 0 and _Embedded.session is not None:
            session, _Embedded.session, _Embedded.path, _Embedded.users = (
                _Embedded.session,
                None,
                None,
                0,
            )
            session.close()


class _ClientDriver:
    """clickhouse-connect for both: its in-process chDB backend for ``chdb://PATH`` (the same
    ``Client`` API, parameter binding, type system and error classes as against a server), its
    HTTP client for ``clickhouse(s)://``. Every embedded test so exercises the production path.

    Read-only and the time limit travel in the SQL's own ``SETTINGS`` clause (``wrap_readonly``),
    never as per-call settings: the chDB backend keeps per-call settings in the session, where
    a ``readonly`` would outlive the query."""

    def __init__(
        self, config: ClickHouseSourceConfig, timeout: float, embedded: tuple[Path, str] | None
    ) -> None:
        self.timeout = timeout
        self.embedded = embedded
        self._client: Any = None
        if embedded is not None:
            path, self.database = embedded
            self.where = f"chDB at {path}"
            return
        parts = urlsplit(config.url)
        self.secure = parts.scheme == "clickhouses"
        self.host = parts.hostname or "localhost"
        try:
            self.port = parts.port or (8443 if self.secure else 8123)
        except ValueError as exc:
            raise ConfigError(f"source URL {redact(config.url)}: bad port") from exc
        self.username = unquote(parts.username) if parts.username else "default"
        password = unquote(parts.password) if parts.password else ""
        if config.password is not None:
            password = config.password.get_secret_value()
        self._password = password
        self.database = parts.path.strip("/") or "default"
        self.where = f"ClickHouse at {self.host}:{self.port}"

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        try:
            import clickhouse_connect
        except ImportError as exc:  # pragma: no cover — a dependency
            raise SourceUnavailable("clickhouse-connect is not installed") from exc
        try:
            if self.embedded is not None:
                path = self.embedded[0]
                _check_embedded_path(path)
                # tz_mode="aware": timestamps come back in UTC with their zone, as reports show them.
                self._client = clickhouse_connect.get_client(
                    dsn=f"chdb://{path}", database=self.database, tz_mode="aware"
                )
            else:
                self._client = clickhouse_connect.get_client(
                    host=self.host,
                    port=self.port,
                    username=self.username,
                    password=self._password,
                    database=self.database,
                    secure=self.secure,
                    connect_timeout=self.timeout,
                    send_receive_timeout=self.timeout,
                    autogenerate_session_id=False,
                    tz_mode="aware",
                )
        except (SourceUnavailable, ConfigError):
            raise
        except Exception as exc:
            raise self._unreachable(exc) or _translate(exc, connecting=True, where=self.where) from exc
        return self._client

    def query(self, sql: str, parameters: dict[str, str]) -> pd.DataFrame:
        client = self._connect()
        try:
            return client.query_df(sql, parameters=parameters)
        except Exception as exc:
            raise self._unreachable(exc) or _translate(exc, where=self.where) from exc

    def _unreachable(self, exc: BaseException) -> Exception | None:
        """One line for a server that cannot be reached, from the exception chain's socket
        error (clickhouse-connect wraps urllib3's retry report around it), or None."""
        import socket

        if self.embedded is not None:
            return None
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            where = f"cannot reach {self.where}"
            if isinstance(current, TimeoutError | socket.timeout):
                return SourceTimeout(f"{where}: no answer within {self.timeout:g}s")
            if isinstance(current, socket.gaierror):
                return SourceUnavailable(f"{where}: unknown host ({current.strerror or current})")
            if isinstance(current, OSError) and current.errno is not None:
                reason = (current.strerror or str(current)).lower()
                return SourceUnavailable(f"{where}: {reason}")
            current = current.__cause__ or current.__context__
        return None

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None


def _check_embedded_path(path: Path) -> None:
    """chDB embeds one engine per process, bound to one path: say so clearly, before chDB
    refuses with its own words."""
    if not path.is_dir():
        raise SourceUnavailable(f"chDB path {path} does not exist")
    with _Embedded.lock:
        if _Embedded.session is not None and _Embedded.path != path.resolve():
            raise SourceUnavailable(
                f"chDB is already open on {_Embedded.path} in this process; gatecheck opens "
                f"one embedded path per process, so {path.resolve()} cannot be used at the same time"
            )


def _translate(exc: BaseException, connecting: bool = False, where: str = "ClickHouse") -> Exception:
    """clickhouse-connect's exception, by type and ClickHouse error code, as ours."""
    from clickhouse_connect.driver import exceptions as ch

    code, message = _error_message(exc)
    code = getattr(exc, "code", None) or code
    if code in _TIMEOUT_CODES:
        return SourceTimeout(message)
    if connecting or (isinstance(exc, ch.OperationalError) and code is None):
        return SourceUnavailable(f"cannot connect to {where}: {message}")
    if isinstance(exc, ch.Error):
        return QueryError(message)
    return QueryError(f"{type(exc).__name__}: {message}")


# ---------------------------------------------------------------- the source


class ClickHouseSource(Source):
    """A ClickHouse warehouse behind one interface, whichever driver serves it."""

    def __init__(self, name: str, config: ClickHouseSourceConfig, root: Path) -> None:
        super().__init__(name, config)
        parts = urlsplit(config.url)
        self._driver: _Driver
        if parts.scheme == "chdb":
            raw = unquote(parts.netloc + parts.path)
            if not raw:
                raise ConfigError(
                    f"source {name!r}: chdb:// URL needs a path, e.g. chdb://.gatecheck/warehouse"
                )
            path = Path(raw)
            path = (path if path.is_absolute() else root / path).resolve()
            database = parse_qs(parts.query).get("database", ["default"])[0]
            _check_embedded_path(path)
            self._driver = _ClientDriver(config, self.timeout, (path, database))
        elif parts.scheme in ("clickhouse", "clickhouses"):
            self._driver = _ClientDriver(config, self.timeout, None)
        else:
            raise ConfigError(
                f"source {name!r}: unsupported ClickHouse URL scheme {parts.scheme!r} "
                "(use chdb://PATH, clickhouse://host:8123/db or clickhouses://host:8443/db)"
            )

    async def query(self, text: str, parameters: QueryParameters) -> pd.DataFrame:
        sql = wrap_readonly(text, self.timeout)
        bound = {name: format_parameter(value) for name, value in parameters.items()}
        try:
            # Blocking drivers run in a thread; the server's max_execution_time stops the
            # query itself, this outer limit stops us waiting on a hung connection.
            return await asyncio.wait_for(asyncio.to_thread(self._driver.query, sql, bound), self.timeout + 5)
        except TimeoutError as exc:
            raise SourceTimeout(f"no answer within {self.timeout:.0f}s") from exc

    async def close(self) -> None:
        self._driver.close()
