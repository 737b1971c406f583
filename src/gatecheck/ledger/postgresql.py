"""The PostgreSQL ledger (``postgresql://user@host:5432/db``, psycopg 3): one database that
several gatecheck processes — replicas, a CLI, CI — share.

- **Versioned migrations.** ``gatecheck_schema`` holds the schema's version; each step of
  :data:`MIGRATIONS` runs once, in order, in one transaction under an advisory lock, so
  replicas starting together migrate once and an older ledger is brought forward.
- **One record is one INSERT** in its own transaction: a crash leaves the whole record or none.
- **The audit trail is append-only in the database**: triggers refuse every UPDATE, DELETE
  and TRUNCATE of ``gatecheck_audit`` from any role that cannot drop or disable them — the
  service's own role included. The table's owner (and a superuser) can; so deploy with an
  owner role that runs the migrations and a service role granted only ``SELECT, INSERT``
  (docs/service.md says how).
- **Waiver ids from a sequence** (``gatecheck_waiver_ids``): unique however many replicas
  create waivers at once (a count + 1 in two transactions could give two the same id).
- **A lease with fencing** (``gatecheck_lease``): one holder at a time by the database's
  clock, an epoch per holding, and a record written under a holding only while it is still
  the lease's (:meth:`PostgresLedger.record` with ``lease``): the replicas of ``gatecheck
  serve`` take it to decide which one schedules (:mod:`gatecheck.service.lease`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from gatecheck.errors import LedgerError, one_line, redact
from gatecheck.ledger.audit import AuditEvent
from gatecheck.ledger.base import (
    AUDIT_COLUMNS,
    SCHEDULER,
    Lease,
    Record,
    RowLedger,
    T,
    audit_row,
    contemporary,
    from_ms,
    prune_filter,
    range_filter,
    row_of,
    to_ms,
)
from gatecheck.results import Verdict

#: The schema, step by step: step N brings a ledger at version N-1 to N. Never edit a step
#: that has shipped; add the next one.
MIGRATIONS: tuple[str, ...] = (
    # 1: evaluations, the audit trail (append-only), waiver ids
    """
    CREATE TABLE gatecheck_evaluations (
      id BIGSERIAL PRIMARY KEY,
      phase TEXT NOT NULL,
      environment TEXT NOT NULL,
      as_of_ms BIGINT NOT NULL,
      verdict TEXT NOT NULL,
      checks_passed BOOLEAN NOT NULL,
      checks_failed BOOLEAN NOT NULL,
      config_hash TEXT NOT NULL,
      duration_s DOUBLE PRECISION NOT NULL,
      gatecheck_version TEXT NOT NULL,
      recorded_at_ms BIGINT NOT NULL,
      document TEXT NOT NULL,
      waivers TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX gatecheck_evaluations_phase_as_of ON gatecheck_evaluations (phase, as_of_ms);
    CREATE TABLE gatecheck_audit (
      id BIGSERIAL PRIMARY KEY,
      at_ms BIGINT NOT NULL,
      kind TEXT NOT NULL,
      phase TEXT NOT NULL,
      check_name TEXT NOT NULL,
      group_json TEXT NOT NULL,
      waiver TEXT NOT NULL,
      until_ms BIGINT,
      "by" TEXT NOT NULL,
      reason TEXT NOT NULL,
      config_hash TEXT NOT NULL
    );
    CREATE INDEX gatecheck_audit_phase_at ON gatecheck_audit (phase, at_ms);
    CREATE FUNCTION gatecheck_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$;
    CREATE TRIGGER gatecheck_audit_no_change BEFORE UPDATE OR DELETE ON gatecheck_audit
      FOR EACH ROW EXECUTE FUNCTION gatecheck_audit_append_only();
    CREATE TRIGGER gatecheck_audit_no_truncate BEFORE TRUNCATE ON gatecheck_audit
      FOR EACH STATEMENT EXECUTE FUNCTION gatecheck_audit_append_only();
    CREATE SEQUENCE gatecheck_waiver_ids;
    """,
    # 2: the scheduler's lease (one holder at a time, an epoch per holding) and each record's
    # epoch (fencing: a record of a stale epoch is refused)
    """
    CREATE TABLE gatecheck_lease (
      name TEXT PRIMARY KEY,
      holder TEXT NOT NULL,
      epoch BIGINT NOT NULL,
      expires_at TIMESTAMPTZ NOT NULL
    );
    ALTER TABLE gatecheck_evaluations ADD COLUMN epoch BIGINT;
    """,
    # 3: the values each check tracked for a bound from history (read without the documents)
    """
    ALTER TABLE gatecheck_evaluations ADD COLUMN tracked TEXT NOT NULL DEFAULT '';
    """,
    # 4: what judged each record's checks (a soak counts only records of the current digest)
    """
    ALTER TABLE gatecheck_evaluations ADD COLUMN gate_digest TEXT NOT NULL DEFAULT '';
    """,
)

#: The audit trail's columns, quoted: ``by`` is a reserved word in PostgreSQL.
_AUDIT_COLUMNS = ", ".join(f'"{column}"' for column in AUDIT_COLUMNS.split(", "))

#: The advisory lock the migrations hold (any 64-bit key of our own).
_MIGRATION_LOCK = 0x6761746563686B  # "gatechk"


#: How long the server lets a ledger session sit inside a transaction without a word from its
#: client before it ends the session (and frees its locks).
IDLE_IN_TRANSACTION_MS = 5000
#: How long one ledger statement may take, waiting on a lock included: a record or a read
#: waiting behind another session's lock (a migration's, a VACUUM FULL) held `gatecheck run`
#: — a CI step — until the CI system's own timeout; past this it is an error saying so.
STATEMENT_TIMEOUT_S = 60.0


#: Records deleted per transaction when pruning to a retention.
PRUNE_BATCH = 5000


class PostgresLedger(RowLedger):
    """The ledger in one PostgreSQL database; a connection per operation (safe from any
    thread, nothing held between calls)."""

    MARK = "%s"
    TABLE = "gatecheck_evaluations"
    AUDIT = ("gatecheck_audit", _AUDIT_COLUMNS)

    def __init__(
        self,
        url: str,
        *,
        create: bool = True,
        connect_timeout: float = 10.0,
        statement_timeout: float = STATEMENT_TIMEOUT_S,
    ) -> None:
        self._conninfo = url  # with its password: only for connecting
        self.url = self._shown = redact(url)  # the contract's url is shown: never the password
        self._timeout = max(1, round(connect_timeout))
        self._create = create
        # A replica cut off from the database inside a transaction (its lease renewal, a
        # fenced record) would hold its row locks until the server noticed the connection
        # gone — hours of TCP keepalive — and no other replica could take the lease. The
        # server ends such a session itself after IDLE_IN_TRANSACTION (the ledger's own
        # transactions never wait on their client that long).
        from psycopg.conninfo import conninfo_to_dict

        from gatecheck.sources.postgresql import url_problem

        problem = url_problem(url)
        if problem is not None:
            raise LedgerError(f"history ledger {self._shown}: {problem}")
        given = str(conninfo_to_dict(url).get("options") or "")
        self._options = (
            f"{given} -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}"
            f" -c statement_timeout={max(1, round(statement_timeout * 1000))}"
        ).strip()
        if create:
            self.migrate()

    # ------------------------------------------------------------------ connections

    def _error(self, what: str, exc: BaseException) -> LedgerError:
        text = " ".join(str(exc).split()) or type(exc).__name__
        return LedgerError(f"history ledger {self._shown}: {what} ({one_line(redact(text))[:300]})")

    @contextmanager
    def session(self, what: str) -> Iterator[Any]:
        """A new connection to the ledger's database with the ledger's own session settings (the
        idle-in-transaction limit), closed on exit; a psycopg error becomes a ``LedgerError``
        saying ``what`` failed. Every operation of the ledger opens its own."""
        import psycopg

        try:
            connection = psycopg.connect(
                self._conninfo, connect_timeout=self._timeout, autocommit=False, options=self._options
            )
        except psycopg.Error as exc:  # not "cannot migrate the schema": nothing was asked yet
            raise self._error("cannot connect", exc) from None
        try:
            with connection:
                yield connection
        except psycopg.Error as exc:
            raise self._error(what, exc) from None

    def migrate(self) -> int:
        """Bring the schema to the newest version (each step once); returns the version."""
        with self.session("cannot migrate the schema") as connection, connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK])
            found = connection.execute("SELECT to_regclass('gatecheck_schema') IS NOT NULL").fetchone()
            version = 0
            if found and found[0]:
                row = connection.execute("SELECT max(version) FROM gatecheck_schema").fetchone()
                version = (row[0] if row else None) or 0
            if version > len(MIGRATIONS):
                raise LedgerError(
                    f"history ledger {self._shown}: its schema is version {version}, newer than this "
                    f"gatecheck knows ({len(MIGRATIONS)}): upgrade gatecheck"
                )
            if version == len(MIGRATIONS):
                return version  # up to date: nothing created, so a role without CREATE opens it
            connection.execute("CREATE TABLE IF NOT EXISTS gatecheck_schema (version INTEGER NOT NULL)")
            for step in range(version, len(MIGRATIONS)):
                connection.execute(MIGRATIONS[step])
                connection.execute("INSERT INTO gatecheck_schema (version) VALUES (%s)", [step + 1])
            return len(MIGRATIONS)

    def _rows(self, sql: str, args: list[Any], what: str = "cannot read") -> list[Any]:
        with self.session(what) as connection:
            if not self._create and not _has_tables(connection):
                return []  # read-only, and never created: nothing was ever recorded
            return list(connection.execute(sql, args).fetchall())

    def _each(
        self, sql: str, args: list[Any], each: Callable[[Any], T], what: str = "cannot read"
    ) -> list[T]:
        with self.session(what) as connection:
            if not self._create and not _has_tables(connection):
                return []
            # rows become Python objects one at a time, as the cursor is read
            return [each(row) for row in connection.execute(sql, args)]

    # ------------------------------------------------------------------ evaluations

    def record(self, verdict: Verdict, duration_s: float, lease: Lease | None = None) -> Record:
        """Record ``verdict`` in one transaction. With ``lease`` (a scheduler's holding) the
        record is **fenced**: written only while that holding is still the lease's — same holder,
        same epoch, not expired, by the database's clock, the lease row share-locked until the
        commit so a takeover waits for it — else refused (``LedgerError``), nothing written."""
        row = row_of(verdict, duration_s, self.clock())
        with self.session("cannot write") as connection, connection.transaction():
            if lease is not None:
                held = connection.execute(
                    "SELECT 1 FROM gatecheck_lease WHERE name = %s AND holder = %s AND epoch = %s"
                    " AND expires_at > now() FOR SHARE",
                    [lease.name, lease.holder, lease.epoch],
                ).fetchone()
                if held is None:
                    raise LedgerError(
                        f"history ledger {self._shown}: the record of {verdict.phase} is refused: "
                        f"{lease.holder} no longer holds the {lease.name} lease of epoch {lease.epoch}"
                    )
            connection.execute(
                "INSERT INTO gatecheck_evaluations (phase, environment, as_of_ms, verdict, checks_passed,"
                " checks_failed, config_hash, duration_s, gatecheck_version, recorded_at_ms, document,"
                " waivers, epoch, tracked, gate_digest)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    row["phase"], row["environment"], to_ms(row["as_of"]), row["verdict"],
                    bool(row["checks_passed"]), bool(row["checks_failed"]), row["config_hash"],
                    row["duration_s"], row["gatecheck_version"], to_ms(row["recorded_at"]),
                    json.dumps(row["document"]), row["waivers"], lease.epoch if lease else None,
                    row["tracked"], row["gate_digest"],
                ],
            )  # fmt: skip
        return Record.model_validate(row)

    def prune(self, before: datetime, keep: Collection[tuple[str, datetime]] = ()) -> int:
        where, args = prune_filter(self.MARK, before, keep)
        # In batches, each its own transaction: months of records in one DELETE could outlast
        # the statement timeout every hour, and never finish.
        batch = (
            "DELETE FROM gatecheck_evaluations WHERE id IN "
            f"(SELECT id FROM gatecheck_evaluations{where} LIMIT {PRUNE_BATCH})"
        )
        deleted = 0
        with self.session("cannot prune") as connection:
            with connection.transaction():
                if not _has_tables(connection):
                    return 0
            while True:
                with connection.transaction():
                    count = int(connection.execute(batch, args).rowcount)
                deleted += count
                if count < PRUNE_BATCH:
                    return deleted

    # ------------------------------------------------------------------ the lease

    def acquire_lease(self, holder: str, ttl: timedelta, name: str = SCHEDULER) -> Lease | None:
        """Take or renew ``name`` for ``holder`` for ``ttl`` (the database's clock: replicas'
        clocks never decide), or None while another holds it. A renewal keeps the epoch; a new
        holding — another holder, or this one after its lease ran out — takes the next epoch,
        so whatever the previous holding still tries to write is refused."""
        return self.take_lease(holder, ttl, name)[0]

    def take_lease(
        self, holder: str, ttl: timedelta, name: str = SCHEDULER
    ) -> tuple[Lease | None, Lease | None]:
        """:meth:`acquire_lease`, and in the same transaction who holds ``name`` when it is not
        ``holder`` (None when nobody does): (ours or None, the current holding or None) — one
        connection for what a replica asks every second."""
        seconds = ttl.total_seconds()
        with self.session("cannot take the lease") as connection, connection.transaction():
            row = connection.execute(
                "INSERT INTO gatecheck_lease AS lease (name, holder, epoch, expires_at)"
                " VALUES (%s, %s, 1, now() + make_interval(secs => %s))"
                " ON CONFLICT (name) DO UPDATE SET"
                "  epoch = CASE WHEN lease.holder = EXCLUDED.holder AND lease.expires_at > now()"
                "          THEN lease.epoch ELSE lease.epoch + 1 END,"
                "  holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at"
                " WHERE lease.holder = EXCLUDED.holder OR lease.expires_at <= now()"
                " RETURNING epoch, expires_at, extract(epoch FROM expires_at - now())",
                [name, holder, seconds],
            ).fetchone()
            if row is not None:
                mine = Lease(name, holder, int(row[0]), row[1], float(row[2]))
                return mine, mine
            return None, _holding(connection, name)

    def release_lease(self, lease: Lease) -> None:
        """Give ``lease`` up now (a clean stop): another may take it at once."""
        with self.session("cannot release the lease") as connection, connection.transaction():
            connection.execute(
                "UPDATE gatecheck_lease SET expires_at = now()"
                " WHERE name = %s AND holder = %s AND epoch = %s",
                [lease.name, lease.holder, lease.epoch],
            )

    def lease_holder(self, name: str = SCHEDULER) -> Lease | None:
        """Who holds ``name`` now (None when nobody does, or the holding ran out)."""
        with self.session("cannot read the lease") as connection:
            if not self._create and not _has_tables(connection):
                return None
            return _holding(connection, name)

    def soak_points(
        self,
        phase: str,
        since: datetime,
        until: datetime,
        recorded_since: datetime | None = None,
    ) -> list[tuple[datetime, bool, bool, str, bool, str]]:
        where, args = range_filter("%s", phase, since, until, recorded_since)
        rows = self._rows(
            "SELECT as_of_ms, checks_passed, checks_failed, waivers, recorded_at_ms, gate_digest"
            f" FROM gatecheck_evaluations{where}",
            args,
        )
        return [
            (from_ms(r[0]), bool(r[1]), bool(r[2]), r[3], contemporary(from_ms(r[0]), from_ms(r[4])), r[5])
            for r in rows
        ]

    # ------------------------------------------------------------------ the audit trail

    def _append_audit(self, events: list[AuditEvent], number_waiver: bool = False) -> list[AuditEvent]:
        """Insert ``events`` in one transaction; ``number_waiver``: the one event takes the
        next waiver id from the sequence (unique across every replica, never reused)."""
        placeholders = ", ".join(["%s"] * len(_AUDIT_COLUMNS.split(", ")))
        with self.session("cannot write the audit trail") as connection, connection.transaction():
            if number_waiver:
                row = connection.execute("SELECT nextval('gatecheck_waiver_ids')").fetchone()
                events = [e.model_copy(update={"waiver": f"W{row[0] if row else 1}"}) for e in events]
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO gatecheck_audit ({_AUDIT_COLUMNS}) VALUES ({placeholders})",
                    [audit_row(e) for e in events],
                )
        return events

    def check_writable(self) -> None:
        with self.session("not writable") as connection, connection.transaction():
            connection.execute("LOCK TABLE gatecheck_evaluations IN ROW EXCLUSIVE MODE NOWAIT")


def _holding(connection: Any, name: str) -> Lease | None:
    """The unexpired holding of lease ``name`` (None when nobody holds it)."""
    row = connection.execute(
        "SELECT holder, epoch, expires_at, extract(epoch FROM expires_at - now())"
        " FROM gatecheck_lease WHERE name = %s AND expires_at > now()",
        [name],
    ).fetchone()
    return Lease(name, row[0], int(row[1]), row[2], float(row[3])) if row else None


def _has_tables(connection: Any) -> bool:
    row = connection.execute("SELECT to_regclass('gatecheck_evaluations') IS NOT NULL").fetchone()
    return bool(row and row[0])
