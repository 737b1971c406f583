"""The history ledger: every evaluation, recorded atomically, queried for soak and requires.

Backends, chosen by ``history.url`` in gatecheck.yaml:

- ``sqlite:///relative/path.db`` / ``sqlite:////absolute/path.db`` — the embedded default.
  WAL mode, so the service and a CLI can use one file at once; one record is one INSERT in
  one transaction, so a crash leaves either the whole record or none of it.
- ``chdb://PATH?database=DB`` / ``clickhouse(s)://user:pass@host:port/db`` — a ClickHouse
  table (``gatecheck_evaluations``) for a ledger shared by several service replicas and CI
  runners. One record is one INSERT, which ClickHouse writes as one part: all or nothing.
  chDB opens one path per process, so a chDB ledger must live on the warehouse's path.

A record keeps the full verdict document (every check, observed value, threshold with its
provenance and window) plus the columns the ledger is searched by.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from gatecheck.audit import AuditEvent
from gatecheck.clickhouse import SCHEMES as CLICKHOUSE_SCHEMES
from gatecheck.clickhouse import ClickHouse, Connection, Target
from gatecheck.errors import ConfigError, GatecheckError, LedgerError, redact
from gatecheck.results import Outcome, Verdict, VerdictState

#: How far ahead of the clock an ``as_of`` may lie (clocks of two machines disagree a little);
#: ``gatecheck run --as-of`` refuses more, and a record whose ``as_of`` lies further ahead of
#: its recording time is never "the latest" (it would mask every later verdict).
MAX_CLOCK_SKEW = timedelta(minutes=2)
#: A record counts towards a soak only if it was recorded within this long after its
#: ``as_of``: an evaluation of the past (``--as-of``) reproduces a verdict, it did not watch
#: the system through that time, so backdated records never earn a soak.
MAX_RECORDING_DELAY = timedelta(minutes=10)


def contemporary(as_of: datetime, recorded_at: datetime) -> bool:
    """Was the evaluation recorded close to its ``as_of`` (neither backdated nor ahead)?"""
    return -MAX_CLOCK_SKEW <= recorded_at - as_of <= MAX_RECORDING_DELAY


class Record(BaseModel):
    """One recorded evaluation."""

    model_config = ConfigDict(frozen=True)

    phase: str
    environment: str
    as_of: datetime
    verdict: VerdictState
    checks_passed: bool
    checks_failed: bool
    waivers: str = ""
    config_hash: str
    duration_s: float
    gatecheck_version: str
    recorded_at: datetime
    document: dict[str, Any]

    def to_verdict(self) -> Verdict:
        return Verdict.model_validate(self.document)


DECISIVE = frozenset({VerdictState.GO, VerdictState.NO_GO, VerdictState.ROLLBACK})


def checks_passed(verdict: Verdict) -> bool:
    """Every required check passed (or failed under a waiver) and no rollback suite failed
    (requires/soak aside)."""
    required = [c for c in verdict.checks if c.role == "required"]
    rollback_failed = any(c.role == "rollback" and c.outcome is Outcome.FAIL for c in verdict.checks)
    passed = all(c.outcome is Outcome.PASS or (c.outcome is Outcome.FAIL and c.waiver) for c in required)
    return bool(required) and passed and not rollback_failed


def checks_failed(verdict: Verdict) -> bool:
    """A required check failed (not under a waiver) or a rollback suite fired: a failure that
    restarts a soak."""
    return any(
        c.role in ("required", "rollback") and c.outcome is Outcome.FAIL and c.waiver is None
        for c in verdict.checks
    )


def waived(verdict: Verdict) -> str:
    """The ids of the waivers this evaluation's checks passed under, comma-separated."""
    return ",".join(sorted({c.waiver.id for c in verdict.checks if c.waiver is not None}))


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


class Ledger(ABC):
    """Where evaluations are recorded. Methods are blocking; the service runs them in a thread."""

    url: str

    @abstractmethod
    def record(self, verdict: Verdict, duration_s: float) -> Record:
        """Append one evaluation, atomically."""

    @abstractmethod
    def history(
        self,
        phase: str,
        since: datetime | None = None,
        until: datetime | None = None,
        verdicts: frozenset[VerdictState] | None = None,
        newest: int | None = None,
        recorded_since: datetime | None = None,
        ahead: bool = True,
    ) -> list[Record]:
        """Records of ``phase`` with ``since <= as_of <= until`` (and one of ``verdicts``,
        and recorded at or after ``recorded_since``), oldest first; with ``newest`` only that
        many of the most recent ones. ``ahead=False`` leaves out records whose ``as_of`` lies
        more than MAX_CLOCK_SKEW ahead of their recording time."""

    @abstractmethod
    def soak_points(
        self,
        phase: str,
        since: datetime,
        until: datetime,
        recorded_since: datetime | None = None,
    ) -> list[tuple[datetime, bool, bool, str, bool]]:
        """``(as_of, checks_passed, checks_failed, waivers, contemporary)`` of every record of
        ``phase`` with ``since <= as_of <= until``, oldest first: what soak coverage is computed
        from, read from stored columns (one indexed query, no document is parsed)."""

    @abstractmethod
    def timeline(self, phase: str, since: datetime, until: datetime) -> list[tuple[datetime, VerdictState]]:
        """``(as_of, verdict)`` of every record of ``phase`` with ``since <= as_of <= until``,
        oldest first: what the status page draws, read from stored columns (no document)."""

    @abstractmethod
    def append_audit(self, events: list[AuditEvent]) -> None:
        """Append events to the audit trail, all in one atomic write."""

    @abstractmethod
    def create_waiver(self, event: AuditEvent) -> AuditEvent:
        """Append a ``waiver-created`` event with the next waiver id (W1, W2, …); return it."""

    @abstractmethod
    def audit(
        self, phases: list[str] | None = None, since: datetime | None = None, kinds: list[str] | None = None
    ) -> list[AuditEvent]:
        """The trail, oldest first: of ``phases`` (default all), from ``since``, of ``kinds``."""

    @abstractmethod
    def check_writable(self) -> None:
        """Raise LedgerError if a record could not be written now."""

    #: The clock a record's ``recorded_at`` is read from (a test hands in its own).
    clock: Callable[[], datetime] = staticmethod(lambda: datetime.now(UTC))  # type: ignore[assignment]

    def close(self) -> None:  # noqa: B027 — optional hook
        """Release resources."""

    def latest(self, phase: str, until: datetime | None = None) -> Record | None:
        """The newest record by ``as_of``, never one dated ahead of its recording."""
        records = self.history(phase, until=until, newest=1, ahead=False)
        return records[-1] if records else None

    def last_decision(
        self, phase: str, until: datetime | None = None, recorded_since: datetime | None = None
    ) -> Record | None:
        """The newest GO, NO-GO or ROLLBACK of ``phase`` (inconclusive ones decide nothing),
        among the records written at or after ``recorded_since`` if given."""
        records = self.history(
            phase, until=until, verdicts=DECISIVE, newest=1, recorded_since=recorded_since, ahead=False
        )
        return records[-1] if records else None


def _row(verdict: Verdict, duration_s: float, recorded_at: datetime) -> dict[str, Any]:
    return {
        "phase": verdict.phase,
        "environment": verdict.environment,
        "as_of": _utc(verdict.as_of),
        "verdict": verdict.verdict.value,
        "checks_passed": checks_passed(verdict),
        "checks_failed": checks_failed(verdict),
        "waivers": waived(verdict),
        "config_hash": verdict.config_hash,
        "duration_s": float(duration_s),
        "gatecheck_version": verdict.gatecheck_version,
        "recorded_at": _utc(recorded_at),
        "document": verdict.document(),
    }


def _failed(stored: Any, document: dict[str, Any] | None) -> bool:
    """The stored ``checks_failed``; a record written before that column existed has none,
    and is judged from its document once."""
    # NULL comes back as None, NaN or pandas.NA (whose == is neither true nor false).
    if stored is not None and type(stored).__name__ != "NAType" and stored == stored:
        return bool(stored)
    return document is not None and checks_failed(Verdict.model_validate(document))


def _sqlite_migrate(connection: sqlite3.Connection) -> None:
    """Add the columns of newer versions to a ledger an older version created."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(evaluations)")}
    if "checks_failed" not in columns:
        connection.execute("ALTER TABLE evaluations ADD COLUMN checks_failed INTEGER")
    if "waivers" not in columns:
        connection.execute("ALTER TABLE evaluations ADD COLUMN waivers TEXT NOT NULL DEFAULT ''")


# --------------------------------------------------------------------------- SQLite

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  phase TEXT NOT NULL,
  environment TEXT NOT NULL,
  as_of_ms INTEGER NOT NULL,
  verdict TEXT NOT NULL,
  checks_passed INTEGER NOT NULL,
  checks_failed INTEGER,
  config_hash TEXT NOT NULL,
  duration_s REAL NOT NULL,
  gatecheck_version TEXT NOT NULL,
  recorded_at_ms INTEGER NOT NULL,
  document TEXT NOT NULL,
  waivers TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS evaluations_phase_as_of ON evaluations (phase, as_of_ms);
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,
  phase TEXT NOT NULL,
  check_name TEXT NOT NULL,
  group_json TEXT NOT NULL,
  waiver TEXT NOT NULL,
  until_ms INTEGER,
  by TEXT NOT NULL,
  reason TEXT NOT NULL,
  config_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_phase_at ON audit (phase, at_ms);
-- The audit trail is append-only: no UPDATE or DELETE, from gatecheck or anyone else.
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""

_AUDIT_COLUMNS = "at_ms, kind, phase, check_name, group_json, waiver, until_ms, by, reason, config_hash"


def _audit_row(event: AuditEvent) -> tuple[Any, ...]:
    return (
        _ms(event.at), event.kind, event.phase, event.check, json.dumps(event.group, sort_keys=True),
        event.waiver, _ms(event.until) if event.until is not None else None, event.by, event.reason,
        event.config_hash,
    )  # fmt: skip


def _audit_event(row: Any) -> AuditEvent:
    return AuditEvent(
        at=_from_ms(int(row[0])), kind=row[1], phase=row[2], check=row[3], group=json.loads(row[4]),
        waiver=row[5], until=_from_ms(int(row[6])) if row[6] is not None and row[6] == row[6] else None,
        by=row[7], reason=row[8], config_hash=row[9],
    )  # fmt: skip


def _ms(moment: datetime) -> int:
    return round(_utc(moment).timestamp() * 1000)


def _from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def _diagnosis(path: Path) -> str:
    """What the filesystem says, for SQLite's terse "disk I/O error" / "unable to open"."""
    try:
        stats = os.statvfs(path.parent)
    except OSError:
        return ""
    if stats.f_flag & os.ST_RDONLY:
        return f"; {path.parent} is on a read-only filesystem"
    free = stats.f_bavail * stats.f_frsize
    if free < 64 * 1024:
        return f"; the disk is full ({free} bytes free in {path.parent})"
    return ""


class SqliteLedger(Ledger):
    def __init__(self, path: Path, *, create: bool = True) -> None:
        """The ledger in ``path``, created if missing; ``create=False`` (``run --no-record``)
        writes nothing: a missing file is an empty ledger, an existing one is only read."""
        self.path = path
        self.url = f"sqlite:///{path}"
        self._absent = not create and not path.exists()
        if not create:
            return
        try:
            with self._connect() as connection:
                # WAL lets readers (a CLI) and the writer (the service) share the file.
                connection.execute("PRAGMA journal_mode=WAL")
                connection.executescript(_SQLITE_SCHEMA)
                _sqlite_migrate(connection)
        except (OSError, sqlite3.Error) as exc:
            raise self._error("cannot open", exc) from exc

    def _error(self, what: str, exc: BaseException) -> LedgerError:
        return LedgerError(f"history ledger {self.path}: {what} ({exc}{_diagnosis(self.path)})")

    def _rows(self, sql: str, args: list[Any], what: str = "cannot read") -> list[Any]:
        """Every row of one read; a LedgerError saying ``what`` failed."""
        if self._absent:  # read-only, and no file: nothing was ever recorded
            return []
        try:
            with self._connect() as connection:
                return connection.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._error(what, exc) from exc

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per operation: safe from any thread, nothing held between calls.
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            connection.execute("PRAGMA busy_timeout=30000")
            yield connection
        finally:
            connection.close()

    def record(self, verdict: Verdict, duration_s: float) -> Record:
        row = _row(verdict, duration_s, self.clock())
        try:
            with self._connect() as connection:
                # Idempotent, and lets the ledger recover if its file was lost meanwhile.
                connection.executescript(_SQLITE_SCHEMA)
                connection.execute("BEGIN IMMEDIATE")
                connection.execute(
                    "INSERT INTO evaluations (phase, environment, as_of_ms, verdict, checks_passed,"
                    " checks_failed, config_hash, duration_s, gatecheck_version, recorded_at_ms, document,"
                    " waivers) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        row["phase"], row["environment"], _ms(row["as_of"]), row["verdict"],
                        int(row["checks_passed"]), int(row["checks_failed"]), row["config_hash"],
                        row["duration_s"], row["gatecheck_version"], _ms(row["recorded_at"]),
                        json.dumps(row["document"]), row["waivers"],
                    ),
                )  # fmt: skip
                connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error("cannot write", exc) from exc
        return Record.model_validate(row)

    def history(
        self,
        phase: str,
        since: datetime | None = None,
        until: datetime | None = None,
        verdicts: frozenset[VerdictState] | None = None,
        newest: int | None = None,
        recorded_since: datetime | None = None,
        ahead: bool = True,
    ) -> list[Record]:
        sql = (
            "SELECT phase, environment, as_of_ms, verdict, checks_passed, config_hash, duration_s,"
            " gatecheck_version, recorded_at_ms, document, checks_failed, waivers"
            " FROM evaluations WHERE phase = ?"
        )
        args: list[Any] = [phase]
        if since is not None:
            sql += " AND as_of_ms >= ?"
            args.append(_ms(since))
        if until is not None:
            sql += " AND as_of_ms <= ?"
            args.append(_ms(until))
        if recorded_since is not None:
            sql += " AND recorded_at_ms >= ?"
            args.append(_ms(recorded_since))
        if not ahead:
            sql += " AND as_of_ms <= recorded_at_ms + ?"
            args.append(int(MAX_CLOCK_SKEW.total_seconds() * 1000))
        if verdicts is not None:
            sql += f" AND verdict IN ({', '.join('?' * len(verdicts))})"
            args.extend(sorted(v.value for v in verdicts))
        # Newest first so LIMIT keeps the most recent; reversed below to oldest first.
        sql += " ORDER BY as_of_ms DESC, id DESC"
        if newest is not None:
            sql += " LIMIT ?"
            args.append(newest)
        rows = self._rows(sql, args)[::-1]
        return [
            Record(
                phase=r[0],
                environment=r[1],
                as_of=_from_ms(r[2]),
                verdict=VerdictState(r[3]),
                checks_passed=bool(r[4]),
                config_hash=r[5],
                duration_s=r[6],
                gatecheck_version=r[7],
                recorded_at=_from_ms(r[8]),
                document=(document := json.loads(r[9])),
                checks_failed=_failed(r[10], document),
                waivers=r[11] or "",
            )
            for r in rows
        ]

    def soak_points(
        self,
        phase: str,
        since: datetime,
        until: datetime,
        recorded_since: datetime | None = None,
    ) -> list[tuple[datetime, bool, bool, str, bool]]:
        sql = (
            "SELECT as_of_ms, checks_passed, checks_failed,"
            " CASE WHEN checks_failed IS NULL THEN document END,"  # only records from before the column
            " waivers, recorded_at_ms FROM evaluations WHERE phase = ? AND as_of_ms >= ? AND as_of_ms <= ?"
        )
        args: list[Any] = [phase, _ms(since), _ms(until)]
        if recorded_since is not None:
            sql += " AND recorded_at_ms >= ?"
            args.append(_ms(recorded_since))
        sql += " ORDER BY as_of_ms, id"
        rows = self._rows(sql, args)
        return [
            (
                _from_ms(r[0]),
                bool(r[1]),
                _failed(r[2], json.loads(r[3]) if r[3] is not None else None),
                r[4],
                contemporary(_from_ms(r[0]), _from_ms(r[5])),
            )
            for r in rows
        ]

    def timeline(self, phase: str, since: datetime, until: datetime) -> list[tuple[datetime, VerdictState]]:
        sql = (
            "SELECT as_of_ms, verdict FROM evaluations WHERE phase = ? AND as_of_ms >= ? AND as_of_ms <= ?"
            " ORDER BY as_of_ms, id"
        )
        rows = self._rows(sql, [phase, _ms(since), _ms(until)])
        return [(_from_ms(r[0]), VerdictState(r[1])) for r in rows]

    def append_audit(self, events: list[AuditEvent]) -> None:
        if events:
            self._append_audit(events)

    def create_waiver(self, event: AuditEvent) -> AuditEvent:
        (created,) = self._append_audit([event], number_waiver=True)
        return created

    def _append_audit(self, events: list[AuditEvent], number_waiver: bool = False) -> list[AuditEvent]:
        """Insert ``events`` in one transaction; ``number_waiver``: give the one event the next
        waiver id, counted inside the same transaction."""
        try:
            with self._connect() as connection:
                connection.executescript(_SQLITE_SCHEMA)
                connection.execute("BEGIN IMMEDIATE")
                if number_waiver:
                    (count,) = connection.execute(
                        "SELECT count(*) FROM audit WHERE kind = 'waiver-created'"
                    ).fetchone()
                    events = [e.model_copy(update={"waiver": f"W{count + 1}"}) for e in events]
                connection.executemany(
                    f"INSERT INTO audit ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [_audit_row(e) for e in events],
                )
                connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error("cannot write the audit trail", exc) from exc
        return events

    def audit(
        self, phases: list[str] | None = None, since: datetime | None = None, kinds: list[str] | None = None
    ) -> list[AuditEvent]:
        sql = f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE 1 = 1"
        args: list[Any] = []
        if phases is not None:
            sql += f" AND phase IN ({', '.join('?' * len(phases))})"
            args.extend(phases)
        if since is not None:
            sql += " AND at_ms >= ?"
            args.append(_ms(since))
        if kinds is not None:
            sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
            args.extend(kinds)
        sql += " ORDER BY id"
        rows = self._rows(sql, args, "cannot read the audit trail")
        return [_audit_event(r) for r in rows]

    def check_writable(self) -> None:
        try:
            with self._connect() as connection:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise self._error("not writable", exc) from exc


# --------------------------------------------------------------------------- ClickHouse

_CH_TABLE = "gatecheck_evaluations"
_CH_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
  phase LowCardinality(String),
  environment LowCardinality(String),
  as_of DateTime64(3, 'UTC'),
  verdict LowCardinality(String),
  checks_passed UInt8,
  config_hash String,
  duration_s Float64,
  gatecheck_version String,
  recorded_at DateTime64(3, 'UTC'),
  document String,
  checks_failed Nullable(UInt8),
  waivers String DEFAULT ''
) ENGINE = MergeTree ORDER BY (phase, as_of)
"""
# A ledger created by an older version gets the columns (NULL / '' for its existing records).
_CH_MIGRATE = (
    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS checks_failed Nullable(UInt8)",
    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS waivers String DEFAULT ''",
)
_CH_AUDIT_TABLE = "gatecheck_audit"
_CH_AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS {audit} (
  seq UInt64,
  at DateTime64(3, 'UTC'),
  kind LowCardinality(String),
  phase LowCardinality(String),
  check_name String,
  group_json String,
  waiver String,
  until Nullable(DateTime64(3, 'UTC')),
  by String,
  reason String,
  config_hash String
) ENGINE = MergeTree ORDER BY (seq)
"""
_CH_AUDIT_INSERT = """
INSERT INTO {audit} SELECT
  {seq:UInt64}, toDateTime64({at_ms:Int64} / 1000, 3, 'UTC'), {kind:String}, {phase:String},
  {check_name:String}, {group_json:String}, {waiver:String},
  if({until_ms:Int64} < 0, NULL, toDateTime64({until_ms:Int64} / 1000, 3, 'UTC')),
  {by:String}, {reason:String}, {config_hash:String}
"""
_CH_AUDIT_SELECT = """
SELECT toUnixTimestamp64Milli(at) AS at_ms, kind, phase, check_name, group_json, waiver,
       if(until IS NULL, NULL, toUnixTimestamp64Milli(assumeNotNull(until))) AS until_ms,
       by, reason, config_hash
FROM {audit}
WHERE (empty({phases:Array(String)}) OR has({phases:Array(String)}, phase))
  AND at >= toDateTime64({since_ms:Int64} / 1000, 3, 'UTC')
  AND (empty({kinds:Array(String)}) OR has({kinds:Array(String)}, kind))
ORDER BY seq
"""
_CH_INSERT = """
INSERT INTO {table} SELECT
  {phase:String}, {environment:String}, toDateTime64({as_of_ms:Int64} / 1000, 3, 'UTC'),
  {verdict:String}, {checks_passed:UInt8}, {config_hash:String}, {duration_s:Float64},
  {gatecheck_version:String}, toDateTime64({recorded_at_ms:Int64} / 1000, 3, 'UTC'), {document:String},
  {checks_failed:UInt8}, {waivers:String}
"""
_CH_SELECT = """
SELECT phase, environment, toUnixTimestamp64Milli(as_of) AS as_of_ms, verdict, checks_passed,
       config_hash, duration_s, gatecheck_version, toUnixTimestamp64Milli(recorded_at) AS recorded_at_ms,
       document, checks_failed, waivers
FROM {table}
WHERE phase = {phase:String}
  AND as_of >= toDateTime64({since_ms:Int64} / 1000, 3, 'UTC')
  AND as_of <= toDateTime64({until_ms:Int64} / 1000, 3, 'UTC')
  AND (empty({verdicts:Array(String)}) OR has({verdicts:Array(String)}, verdict))
  AND recorded_at >= toDateTime64({recorded_since_ms:Int64} / 1000, 3, 'UTC')
  AND toUnixTimestamp64Milli(as_of) <= toUnixTimestamp64Milli(recorded_at) + {ahead_ms:Int64}
ORDER BY as_of DESC, recorded_at DESC
LIMIT {newest:UInt64}
"""


_CH_SOAK = """
SELECT toUnixTimestamp64Milli(as_of) AS as_of_ms, checks_passed, checks_failed,
       if(checks_failed IS NULL, document, '') AS old_document, waivers,
       toUnixTimestamp64Milli(recorded_at) AS recorded_at_ms
FROM {table}
WHERE phase = {phase:String}
  AND as_of >= toDateTime64({since_ms:Int64} / 1000, 3, 'UTC')
  AND as_of <= toDateTime64({until_ms:Int64} / 1000, 3, 'UTC')
  AND recorded_at >= toDateTime64({recorded_since_ms:Int64} / 1000, 3, 'UTC')
ORDER BY as_of, recorded_at
"""

_CH_TIMELINE = """
SELECT toUnixTimestamp64Milli(as_of) AS as_of_ms, verdict
FROM {table}
WHERE phase = {phase:String}
  AND as_of >= toDateTime64({since_ms:Int64} / 1000, 3, 'UTC')
  AND as_of <= toDateTime64({until_ms:Int64} / 1000, 3, 'UTC')
ORDER BY as_of, recorded_at
"""


class ClickHouseLedger(Ledger):
    """A ``gatecheck_evaluations`` table on chDB or a ClickHouse server."""

    def __init__(
        self, url: str, root: Path, clickhouse: ClickHouse | None = None, *, create: bool = True
    ) -> None:
        """The ledger's tables in ``url``'s database, created if missing; ``create=False``
        (``run --no-record``) writes nothing: missing tables are an empty ledger."""
        self.url = redact(url)
        target = Target.parse(url, root, what="history.url")
        self._absent = False
        # The engine's hub: on chDB the ledger shares the sources' client and its one lock
        # (chDB embeds one engine per process, so a chDB ledger lives on the warehouse's path).
        self._own_hub = clickhouse is None
        self._hub = clickhouse if clickhouse is not None else ClickHouse()
        try:
            if target.embedded is not None:
                # Through the default database's client (shared with the sources): the ledger's
                # own database may not exist yet, and its table is always named in full.
                connection = self._hub.connect(dataclasses.replace(target, database="default"), create=create)
                if create:
                    connection.command(f"CREATE DATABASE IF NOT EXISTS `{target.database}`")
            else:
                connection = self._hub.connect(target)
        except GatecheckError as exc:
            self._close_hub()
            raise LedgerError(f"history ledger {self.url}: {exc}") from exc
        self._table = f"`{target.database}`.{_CH_TABLE}"
        self._audit = f"`{target.database}`.{_CH_AUDIT_TABLE}"
        self._connection: Connection | None = connection if target.embedded is None else None

        def execute(sql: str, params: dict[str, Any], fetch: bool) -> Any:
            if fetch:
                return connection.query_df(sql, params)
            connection.command(sql, params)
            return None

        self._execute = execute
        if not create:
            try:
                found = execute(f"EXISTS TABLE {self._table}", {}, True)
            except Exception as exc:
                raise LedgerError(f"history ledger {self.url}: cannot read ({exc})") from exc
            self._absent = not int(found.iloc[0, 0])
            return
        try:
            self._execute(_CH_SCHEMA.replace("{table}", self._table), {}, False)
            for migration in _CH_MIGRATE:
                self._execute(migration.replace("{table}", self._table), {}, False)
            self._execute(_CH_AUDIT_SCHEMA.replace("{audit}", self._audit), {}, False)
        except Exception as exc:
            raise LedgerError(f"history ledger {self.url}: cannot create table ({exc})") from exc

    def record(self, verdict: Verdict, duration_s: float) -> Record:
        row = _row(verdict, duration_s, self.clock())
        params = {
            "phase": row["phase"], "environment": row["environment"], "as_of_ms": _ms(row["as_of"]),
            "verdict": row["verdict"], "checks_passed": int(row["checks_passed"]),
            "checks_failed": int(row["checks_failed"]),
            "config_hash": row["config_hash"], "duration_s": row["duration_s"],
            "gatecheck_version": row["gatecheck_version"], "recorded_at_ms": _ms(row["recorded_at"]),
            "document": json.dumps(row["document"]), "waivers": row["waivers"],
        }  # fmt: skip
        try:
            self._execute(_CH_INSERT.replace("{table}", self._table), params, False)
        except Exception as exc:
            raise LedgerError(f"history ledger {self.url}: cannot write ({exc})") from exc
        return Record.model_validate(row)

    def history(
        self,
        phase: str,
        since: datetime | None = None,
        until: datetime | None = None,
        verdicts: frozenset[VerdictState] | None = None,
        newest: int | None = None,
        recorded_since: datetime | None = None,
        ahead: bool = True,
    ) -> list[Record]:
        if self._absent:  # read-only, and no tables: nothing was ever recorded
            return []
        params = {
            "ahead_ms": 2**62 if ahead else int(MAX_CLOCK_SKEW.total_seconds() * 1000),
            "recorded_since_ms": _ms(recorded_since) if recorded_since else 0,
            "phase": phase,
            "since_ms": _ms(since) if since else 0,
            "until_ms": _ms(until) if until else 32503680000000,  # year 3000
            "verdicts": sorted(v.value for v in verdicts or ()),
            "newest": newest if newest is not None else 2**63,
        }
        try:
            frame = self._execute(_CH_SELECT.replace("{table}", self._table), params, True)
        except Exception as exc:
            raise LedgerError(f"history ledger {self.url}: cannot read ({exc})") from exc
        return [
            Record(
                phase=r["phase"],
                environment=r["environment"],
                as_of=_from_ms(int(r["as_of_ms"])),
                verdict=VerdictState(r["verdict"]),
                checks_passed=bool(r["checks_passed"]),
                config_hash=r["config_hash"],
                duration_s=float(r["duration_s"]),
                gatecheck_version=r["gatecheck_version"],
                recorded_at=_from_ms(int(r["recorded_at_ms"])),
                document=(document := json.loads(r["document"])),
                checks_failed=_failed(r["checks_failed"], document),
                waivers=r["waivers"] or "",
            )
            for r in frame.to_dict("records")[::-1]  # newest first from the query
        ]

    def soak_points(
        self,
        phase: str,
        since: datetime,
        until: datetime,
        recorded_since: datetime | None = None,
    ) -> list[tuple[datetime, bool, bool, str, bool]]:
        if self._absent:  # read-only, and no tables: nothing was ever recorded
            return []
        params = {
            "phase": phase,
            "since_ms": _ms(since),
            "until_ms": _ms(until),
            "recorded_since_ms": _ms(recorded_since) if recorded_since else 0,
        }
        try:
            frame = self._execute(_CH_SOAK.replace("{table}", self._table), params, True)
        except Exception as exc:
            raise LedgerError(f"history ledger {self.url}: cannot read ({exc})") from exc
        return [
            (
                _from_ms(int(r["as_of_ms"])),
                bool(r["checks_passed"]),
                _failed(r["checks_failed"], json.loads(r["old_document"]) if r["old_document"] else None),
                r["waivers"] or "",
                contemporary(_from_ms(int(r["as_of_ms"])), _from_ms(int(r["recorded_at_ms"]))),
            )
            for r in frame.to_dict("records")
        ]

    def timeline(self, phase: str, since: datetime, until: datetime) -> list[tuple[datetime, VerdictState]]:
        if self._absent:  # read-only, and no tables: nothing was ever recorded
            return []
        params = {"phase": phase, "since_ms": _ms(since), "until_ms": _ms(until)}
        try:
            frame = self._execute(_CH_TIMELINE.replace("{table}", self._table), params, True)
        except Exception as exc:
            raise LedgerError(f"history ledger {self.url}: cannot read ({exc})") from exc
        return [
            (_from_ms(int(ms)), VerdictState(verdict))
            for ms, verdict in zip(frame["as_of_ms"], frame["verdict"], strict=True)
        ]

    def _audit_params(self, event: AuditEvent, seq: int) -> dict[str, Any]:
        row = _audit_row(event)
        return {
            "seq": seq, "at_ms": row[0], "kind": row[1], "phase": row[2], "check_name": row[3],
            "group_json": row[4], "waiver": row[5], "until_ms": row[6] if row[6] is not None else -1,
            "by": row[7], "reason": row[8], "config_hash": row[9],
        }  # fmt: skip

    def append_audit(self, events: list[AuditEvent]) -> None:
        # One INSERT per event, each one part (whole or absent); the sequence orders them.
        try:
            for event in events:
                params = self._audit_params(event, time.time_ns())
                self._execute(_CH_AUDIT_INSERT.replace("{audit}", self._audit), params, False)
        except Exception as exc:
            raise LedgerError(f"history ledger {self.url}: cannot write the audit trail ({exc})") from exc

    def create_waiver(self, event: AuditEvent) -> AuditEvent:
        # The next id from the trail: two writers creating a waiver in the same instant on a
        # shared server could both take it (the trail still holds both, each in full).
        try:
            frame = self._execute(
                f"SELECT count() AS n FROM {self._audit} WHERE kind = 'waiver-created'", {}, True
            )
        except Exception as exc:
            raise LedgerError(f"history ledger {self.url}: cannot read the audit trail ({exc})") from exc
        created = event.model_copy(update={"waiver": f"W{int(frame['n'].iloc[0]) + 1}"})
        self.append_audit([created])
        return created

    def audit(
        self, phases: list[str] | None = None, since: datetime | None = None, kinds: list[str] | None = None
    ) -> list[AuditEvent]:
        if self._absent:  # read-only, and no tables: nothing was ever recorded
            return []
        params = {"phases": phases or [], "since_ms": _ms(since) if since else 0, "kinds": kinds or []}
        try:
            frame = self._execute(_CH_AUDIT_SELECT.replace("{audit}", self._audit), params, True)
        except Exception as exc:
            raise LedgerError(f"history ledger {self.url}: cannot read the audit trail ({exc})") from exc
        columns = ["at_ms", "kind", "phase", "check_name", "group_json", "waiver", "until_ms", "by", "reason",
                   "config_hash"]  # fmt: skip
        return [_audit_event([r[c] for c in columns]) for r in frame.to_dict("records")]

    def check_writable(self) -> None:
        try:
            self._execute(f"SELECT count() FROM {self._table}", {}, True)
        except Exception as exc:
            raise LedgerError(f"history ledger {self.url}: not reachable ({exc})") from exc

    def _close_hub(self) -> None:
        if self._own_hub:
            self._hub.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:  # a server connection is the ledger's own
            connection.close()
        self._close_hub()


#: gatecheck's own working directory under the configuration directory: created on demand.
OWN_DIRECTORY = ".gatecheck"


def _ledger_directory(path: Path, root: Path, url: str) -> None:
    """The ledger's file is created, its directory is not: a path that points nowhere (a typo,
    an unmounted volume) would otherwise start an empty ledger and silently lose the soak and
    ``requires`` history. Only gatecheck's own ``.gatecheck/`` directory is created."""
    parent = path.parent
    if parent.is_dir():
        return
    if parent == root / OWN_DIRECTORY and root.is_dir():
        try:
            parent.mkdir(exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"history.url: cannot create {parent} ({exc.strerror})") from exc
        return
    raise ConfigError(
        f"history.url: the directory {parent} of the ledger {redact(url)!r} does not exist "
        "(create it, or point history.url / GATECHECK_HISTORY_URL at an existing one)"
    )


def _not_in_the_package(path: Path, url: str) -> None:
    """Refuse a ledger inside the installed gatecheck package (``--config`` pointing at a
    shipped project, whose default ledger is relative to it): nothing is ever written there."""
    import gatecheck

    package = Path(gatecheck.__file__).resolve().parent
    if path.resolve().is_relative_to(package):
        raise ConfigError(
            f"history.url: {redact(url)} resolves to {path.resolve()}, "
            "inside the installed gatecheck package, "
            "which is never written: set GATECHECK_HISTORY_URL (or history.url) to a path of yours; "
            "the demo's records: gatecheck status --demo"
        )


def open_ledger(url: str, root: Path, clickhouse: ClickHouse | None = None, *, create: bool = True) -> Ledger:
    """The ledger for ``history.url``; relative paths resolve against the config directory.
    ``clickhouse``: the engine's connections, shared with its ClickHouse sources. ``create=False``:
    an SQLite ledger only read, never created (``run --no-record`` writes nothing)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # sqlite:///relative/file.db → "relative/file.db"; sqlite:////abs/file.db → "/abs/file.db"
        raw = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not raw:
            raise ConfigError(f"history.url: {url!r} needs a path, e.g. sqlite:///.gatecheck/history.db")
        path = Path(raw)
        path = path if path.is_absolute() else root / path
        _not_in_the_package(path, url)
        if not create:
            return SqliteLedger(path, create=False)
        _ledger_directory(path, root, url)
        return SqliteLedger(path)
    if parts.scheme in CLICKHOUSE_SCHEMES:
        embedded = Target.parse(url, root, what="history.url").embedded
        if embedded is not None:
            _not_in_the_package(embedded, url)
        return ClickHouseLedger(url, root, clickhouse, create=create)
    raise ConfigError(
        f"history.url: unsupported scheme in {redact(url)!r} "
        "(use sqlite:///PATH, chdb://PATH or clickhouse://host:8123/db)"
    )


def record_summary(record: Any) -> dict[str, Any]:
    """A ledger record without its full document, plus the checks that did not pass."""
    verdict = record.to_verdict()
    return {
        "phase": record.phase,
        "environment": record.environment,
        "as_of": record.as_of.isoformat(),
        "verdict": record.verdict.value,
        "checks_passed": record.checks_passed,
        "duration_s": round(record.duration_s, 3),
        "config_hash": record.config_hash,
        "gatecheck_version": record.gatecheck_version,
        "recorded_at": record.recorded_at.isoformat(),
        "not_passed": {c.suite: c.outcome.value for c in verdict.checks if c.outcome is not Outcome.PASS},
        # The waivers a GO held through: a waived GO is never shown as a plain one.
        "waivers": sorted({c.waiver.id for c in verdict.checks if c.waiver is not None}),
        "requested_by": verdict.requested_by.model_dump() if verdict.requested_by is not None else None,
    }
