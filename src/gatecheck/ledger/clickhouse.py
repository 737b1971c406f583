"""The ClickHouse ledger (``chdb://PATH?database=DB`` / ``clickhouse(s)://user:pass@host:port/db``):
a table (``gatecheck_evaluations``) for a ledger shared by several service replicas and CI
runners. One record is one INSERT, which ClickHouse writes as one part: all or nothing. chDB
opens one path per process, so a chDB ledger must live on the warehouse's path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any

from gatecheck.errors import GatecheckError, LedgerError, redact
from gatecheck.ledger.audit import AuditEvent
from gatecheck.ledger.base import (
    MAX_CLOCK_SKEW,
    Lease,
    Ledger,
    Record,
    audit_event_of,
    audit_row,
    contemporary,
    from_ms,
    no_leases,
    record_summary,
    row_of,
    stored_failed,
    to_ms,
    tracked_document,
)
from gatecheck.results import Verdict, VerdictState
from gatecheck.sources.clickhouse.connection import THROW, ClickHouse, Connection, Target

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
  waivers String DEFAULT '',
  tracked String DEFAULT '',
  gate_digest String DEFAULT ''
) ENGINE = MergeTree ORDER BY (phase, as_of)
SETTINGS non_replicated_deduplication_window = 1000
"""
# A ledger created by an older version gets the columns (NULL / '' for its existing records),
# and the deduplication window its inserts' tokens need (ReplicatedMergeTree has one anyway).
_CH_MIGRATE = (
    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS checks_failed Nullable(UInt8)",
    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS waivers String DEFAULT ''",
    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS tracked String DEFAULT ''",
    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS gate_digest String DEFAULT ''",
    "ALTER TABLE {table} MODIFY SETTING non_replicated_deduplication_window = 1000",
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
  AND at <= toDateTime64({until_ms:Int64} / 1000, 3, 'UTC')
ORDER BY seq DESC
LIMIT {newest:UInt64}
"""
_CH_INSERT = """
INSERT INTO {table} SELECT
  {phase:String}, {environment:String}, toDateTime64({as_of_ms:Int64} / 1000, 3, 'UTC'),
  {verdict:String}, {checks_passed:UInt8}, {config_hash:String}, {duration_s:Float64},
  {gatecheck_version:String}, toDateTime64({recorded_at_ms:Int64} / 1000, 3, 'UTC'), {document:String},
  {checks_failed:UInt8}, {waivers:String}, {tracked:String}, {gate_digest:String}
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


def _range_params(
    phase: str,
    since: datetime | None,
    until: datetime | None,
    newest: int | None,
    recorded_since: datetime | None,
    ahead: bool,
) -> dict[str, Any]:
    """The parameters of a query over one phase's records (``_CH_SELECT``, ``_CH_TRACKED``):
    no bound is the widest one."""
    return {
        "ahead_ms": 2**62 if ahead else int(MAX_CLOCK_SKEW.total_seconds() * 1000),
        "recorded_since_ms": to_ms(recorded_since) if recorded_since else 0,
        "phase": phase,
        "since_ms": to_ms(since) if since else 0,
        "until_ms": to_ms(until) if until else 32503680000000,  # year 3000
        "newest": newest if newest is not None else 2**63,
    }


_CH_TRACKED = """
SELECT toUnixTimestamp64Milli(as_of) AS as_of_ms, verdict, tracked
FROM {table}
WHERE phase = {phase:String}
  AND as_of >= toDateTime64({since_ms:Int64} / 1000, 3, 'UTC')
  AND as_of <= toDateTime64({until_ms:Int64} / 1000, 3, 'UTC')
  AND recorded_at >= toDateTime64({recorded_since_ms:Int64} / 1000, 3, 'UTC')
  AND toUnixTimestamp64Milli(as_of) <= toUnixTimestamp64Milli(recorded_at) + {ahead_ms:Int64}
ORDER BY as_of DESC, recorded_at DESC
LIMIT {newest:UInt64}
"""

_CH_SOAK = """
SELECT toUnixTimestamp64Milli(as_of) AS as_of_ms, checks_passed, checks_failed,
       if(checks_failed IS NULL, document, '') AS old_document, waivers,
       toUnixTimestamp64Milli(recorded_at) AS recorded_at_ms, gate_digest
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


def _record(r: dict[str, Any]) -> Record:
    """A record from a row of the history query (:data:`_CH_SELECT`)."""
    document = json.loads(r["document"])
    return Record(
        phase=r["phase"],
        environment=r["environment"],
        as_of=from_ms(int(r["as_of_ms"])),
        verdict=VerdictState(r["verdict"]),
        checks_passed=bool(r["checks_passed"]),
        config_hash=r["config_hash"],
        duration_s=float(r["duration_s"]),
        gatecheck_version=r["gatecheck_version"],
        recorded_at=from_ms(int(r["recorded_at_ms"])),
        document=document,
        checks_failed=stored_failed(r["checks_failed"], document),
        waivers=r["waivers"] or "",
    )


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
                if sql.lstrip().upper().startswith(("SELECT", "WITH")):
                    # a history cut short at a profile's limit could miss the NO-GO that
                    # decides `requires`: an error instead (connection.OVERFLOW_MODES); one
                    # a profile's limit, offset or filters rewrite is read as written
                    # (connection.WHOLE_ANSWER_SETTINGS)
                    undo = "".join(f", {needed}" for _, needed in connection.other_answers())
                    sql = f"{sql.rstrip().rstrip(';')}\nSETTINGS {THROW}{undo}"
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

    def record(self, verdict: Verdict, duration_s: float, lease: Lease | None = None) -> Record:
        no_leases(self, lease)
        row = row_of(verdict, duration_s, self.clock())
        params = {
            "phase": row["phase"], "environment": row["environment"], "as_of_ms": to_ms(row["as_of"]),
            "verdict": row["verdict"], "checks_passed": int(row["checks_passed"]),
            "checks_failed": int(row["checks_failed"]),
            "config_hash": row["config_hash"], "duration_s": row["duration_s"],
            "gatecheck_version": row["gatecheck_version"], "recorded_at_ms": to_ms(row["recorded_at"]),
            "document": json.dumps(row["document"]), "waivers": row["waivers"], "tracked": row["tracked"],
            "gate_digest": row["gate_digest"],
        }  # fmt: skip
        # The evaluation's own identity as the insert's deduplication token: the same record
        # sent again (a retry after an answer lost on the way back) is stored once.
        token = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
        sql = _CH_INSERT.replace("{table}", self._table) + f"SETTINGS insert_deduplication_token = '{token}'"
        try:
            self._execute(sql, params, False)
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
        # read-only and no tables: nothing was ever recorded; no verdict asked: none matches
        # (the query's empty array means "any", as the SQL backends' `IN ()` cannot)
        if self._absent or (verdicts is not None and not verdicts):
            return []
        params = {
            **_range_params(phase, since, until, newest, recorded_since, ahead),
            "verdicts": sorted(v.value for v in verdicts or ()),
        }
        return [_record(r) for r in self._history_rows(params)]

    def summaries(
        self,
        phase: str,
        since: datetime | None = None,
        until: datetime | None = None,
        newest: int | None = None,
    ) -> list[dict[str, Any]]:
        if self._absent:
            return []
        params = {**_range_params(phase, since, until, newest, None, True), "verdicts": []}
        # the page's documents are read as text; each is parsed, summarized and let go in turn
        return [record_summary(_record(r)) for r in self._history_rows(params)]

    def _history_rows(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The rows of a history read, oldest first (the query answers newest first)."""
        try:
            frame = self._execute(_CH_SELECT.replace("{table}", self._table), params, True)
        except Exception as exc:
            raise LedgerError(f"history ledger {self.url}: cannot read ({exc})") from exc
        return list(frame.to_dict("records")[::-1])

    def tracked_history(
        self,
        phase: str,
        since: datetime | None = None,
        until: datetime | None = None,
        newest: int | None = None,
        recorded_since: datetime | None = None,
    ) -> list[dict[str, Any]]:
        if self._absent:
            return []
        params = _range_params(phase, since, until, newest, recorded_since, ahead=False)
        try:
            frame = self._execute(_CH_TRACKED.replace("{table}", self._table), params, True)
        except Exception as exc:
            raise LedgerError(f"history ledger {self.url}: cannot read ({exc})") from exc
        return [
            tracked_document(int(r["as_of_ms"]), r["verdict"], r["tracked"])
            for r in frame.to_dict("records")[::-1]
        ]

    def soak_points(
        self,
        phase: str,
        since: datetime,
        until: datetime,
        recorded_since: datetime | None = None,
    ) -> list[tuple[datetime, bool, bool, str, bool, str]]:
        if self._absent:  # read-only, and no tables: nothing was ever recorded
            return []
        params = {
            "phase": phase,
            "since_ms": to_ms(since),
            "until_ms": to_ms(until),
            "recorded_since_ms": to_ms(recorded_since) if recorded_since else 0,
        }
        try:
            frame = self._execute(_CH_SOAK.replace("{table}", self._table), params, True)
        except Exception as exc:
            raise LedgerError(f"history ledger {self.url}: cannot read ({exc})") from exc
        return [
            (
                from_ms(int(r["as_of_ms"])),
                bool(r["checks_passed"]),
                stored_failed(
                    r["checks_failed"], json.loads(r["old_document"]) if r["old_document"] else None
                ),
                r["waivers"] or "",
                contemporary(from_ms(int(r["as_of_ms"])), from_ms(int(r["recorded_at_ms"]))),
                r["gate_digest"] or "",
            )
            for r in frame.to_dict("records")
        ]

    def timeline(self, phase: str, since: datetime, until: datetime) -> list[tuple[datetime, VerdictState]]:
        if self._absent:  # read-only, and no tables: nothing was ever recorded
            return []
        params = {"phase": phase, "since_ms": to_ms(since), "until_ms": to_ms(until)}
        try:
            frame = self._execute(_CH_TIMELINE.replace("{table}", self._table), params, True)
        except Exception as exc:
            raise LedgerError(f"history ledger {self.url}: cannot read ({exc})") from exc
        # (an answer without rows may come back without columns: read it row by row)
        return [(from_ms(int(r["as_of_ms"])), VerdictState(r["verdict"])) for r in frame.to_dict("records")]

    def _audit_params(self, event: AuditEvent, seq: int) -> dict[str, Any]:
        row = audit_row(event)
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
        self,
        phases: list[str] | None = None,
        since: datetime | None = None,
        kinds: list[str] | None = None,
        until: datetime | None = None,
        newest: int | None = None,
    ) -> list[AuditEvent]:
        # read-only and no tables: nothing was ever recorded; no phase or kind asked: none
        if self._absent or phases == [] or kinds == []:
            return []
        params = {
            "phases": phases or [], "since_ms": to_ms(since) if since else 0, "kinds": kinds or [],
            "until_ms": to_ms(until) if until else 10**13,  # (2286: no end)
            "newest": newest if newest is not None else 2**62,
        }  # fmt: skip
        try:
            frame = self._execute(_CH_AUDIT_SELECT.replace("{audit}", self._audit), params, True)
        except Exception as exc:
            raise LedgerError(f"history ledger {self.url}: cannot read the audit trail ({exc})") from exc
        columns = ["at_ms", "kind", "phase", "check_name", "group_json", "waiver", "until_ms", "by", "reason",
                   "config_hash"]  # fmt: skip
        events = [audit_event_of([r[c] for c in columns]) for r in frame.to_dict("records")]
        return events[::-1]  # read newest first (for LIMIT): back in the trail's order

    def prune(self, before: datetime, keep: Collection[tuple[str, datetime]] = ()) -> int:
        if self._absent:
            return 0
        params: dict[str, Any] = {"before": to_ms(before)}

        def moment(name: str) -> str:
            return f"fromUnixTimestamp64Milli({{{name}:Int64}}, 'UTC')"

        kept = ""
        for k, (phase, as_of) in enumerate(sorted(set(keep))):
            kept += f" AND NOT (phase = {{p{k}:String}} AND as_of = {moment(f'a{k}')})"
            params.update({f"p{k}": phase, f"a{k}": to_ms(as_of)})
        where = f"as_of < {moment('before')}{kept}"
        try:
            found = self._execute(f"SELECT count() AS n FROM {self._table} WHERE {where}", params, True)
            count = int(found.iloc[0, 0])
            if count:  # a lightweight DELETE: the rows are gone from every read at once
                self._execute(f"DELETE FROM {self._table} WHERE {where}", params, False)
        except Exception as exc:
            raise LedgerError(f"history ledger {self.url}: cannot prune ({exc})") from exc
        return count

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
