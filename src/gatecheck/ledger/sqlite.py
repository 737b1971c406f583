"""The SQLite ledger (``sqlite:///relative/path.db`` / ``sqlite:////absolute/path.db``), the
embedded default. WAL mode, so the service and a CLI can use one file at once; one record is
one INSERT in one transaction, so a crash leaves either the whole record or none of it. The
audit trail is append-only in the file itself (triggers refuse UPDATE and DELETE).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from gatecheck.errors import LedgerError
from gatecheck.ledger.audit import AuditEvent
from gatecheck.ledger.base import (
    AUDIT_COLUMNS,
    Lease,
    Record,
    RowLedger,
    T,
    audit_row,
    contemporary,
    from_ms,
    no_leases,
    prune_filter,
    range_filter,
    row_of,
    stored_failed,
    to_ms,
)
from gatecheck.results import Verdict


def _sqlite_migrate(connection: sqlite3.Connection) -> None:
    """Add the columns of newer versions to a ledger an older version created."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(evaluations)")}
    if "checks_failed" not in columns:
        connection.execute("ALTER TABLE evaluations ADD COLUMN checks_failed INTEGER")
    if "waivers" not in columns:
        connection.execute("ALTER TABLE evaluations ADD COLUMN waivers TEXT NOT NULL DEFAULT ''")
    if "tracked" not in columns:
        connection.execute("ALTER TABLE evaluations ADD COLUMN tracked TEXT NOT NULL DEFAULT ''")
    if "gate_digest" not in columns:
        connection.execute("ALTER TABLE evaluations ADD COLUMN gate_digest TEXT NOT NULL DEFAULT ''")


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
  waivers TEXT NOT NULL DEFAULT '',
  tracked TEXT NOT NULL DEFAULT '',
  gate_digest TEXT NOT NULL DEFAULT ''
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


#: Records deleted per transaction when pruning to a retention.
PRUNE_BATCH = 2000


class SqliteLedger(RowLedger):
    MARK = "?"
    TABLE = "evaluations"
    AUDIT = ("audit", AUDIT_COLUMNS)

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

    def _each(
        self, sql: str, args: list[Any], each: Callable[[Any], T], what: str = "cannot read"
    ) -> list[T]:
        if self._absent:
            return []
        try:
            with self._connect() as connection:
                return [each(row) for row in connection.execute(sql, args)]  # the cursor streams
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

    def prune(self, before: datetime, keep: Collection[tuple[str, datetime]] = ()) -> int:
        if self._absent:
            return 0
        where, args = prune_filter(self.MARK, before, keep)
        # In batches, each its own transaction: months of records deleted at once would hold
        # the file's write lock for as long, and the service's records would wait on it.
        batch = f"DELETE FROM evaluations WHERE id IN (SELECT id FROM evaluations{where} LIMIT {PRUNE_BATCH})"
        deleted = 0
        try:
            with self._connect() as connection:
                while True:
                    count = connection.execute(batch, args).rowcount
                    deleted += count
                    if count < PRUNE_BATCH:
                        return deleted
        except sqlite3.Error as exc:
            raise self._error("cannot prune", exc) from exc

    def record(self, verdict: Verdict, duration_s: float, lease: Lease | None = None) -> Record:
        no_leases(self, lease)
        row = row_of(verdict, duration_s, self.clock())
        try:
            with self._connect() as connection:
                # Idempotent, and lets the ledger recover if its file was lost meanwhile.
                connection.executescript(_SQLITE_SCHEMA)
                connection.execute("BEGIN IMMEDIATE")
                connection.execute(
                    "INSERT INTO evaluations (phase, environment, as_of_ms, verdict, checks_passed,"
                    " checks_failed, config_hash, duration_s, gatecheck_version, recorded_at_ms, document,"
                    " waivers, tracked, gate_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        row["phase"], row["environment"], to_ms(row["as_of"]), row["verdict"],
                        int(row["checks_passed"]), int(row["checks_failed"]), row["config_hash"],
                        row["duration_s"], row["gatecheck_version"], to_ms(row["recorded_at"]),
                        json.dumps(row["document"]), row["waivers"], row["tracked"], row["gate_digest"],
                    ),
                )  # fmt: skip
                connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error("cannot write", exc) from exc
        return Record.model_validate(row)

    def soak_points(
        self,
        phase: str,
        since: datetime,
        until: datetime,
        recorded_since: datetime | None = None,
    ) -> list[tuple[datetime, bool, bool, str, bool, str]]:
        where, args = range_filter("?", phase, since, until, recorded_since)
        rows = self._rows(
            "SELECT as_of_ms, checks_passed, checks_failed,"
            " CASE WHEN checks_failed IS NULL THEN document END,"  # only records from before the column
            f" waivers, recorded_at_ms, gate_digest FROM evaluations{where}",
            args,
        )
        return [
            (
                from_ms(r[0]),
                bool(r[1]),
                stored_failed(r[2], json.loads(r[3]) if r[3] is not None else None),
                r[4],
                contemporary(from_ms(r[0]), from_ms(r[5])),
                r[6],
            )
            for r in rows
        ]

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
                    f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [audit_row(e) for e in events],
                )
                connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error("cannot write the audit trail", exc) from exc
        return events

    def check_writable(self) -> None:
        try:
            with self._connect() as connection:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise self._error("not writable", exc) from exc
