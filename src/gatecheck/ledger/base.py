"""The ledger's contract: what a record is, what every backend answers, and the helpers the
backends share (one record's row, the audit trail's row, times as epoch milliseconds).

A record keeps the full verdict document (every check, observed value, threshold with its
provenance and window) plus the columns the ledger is searched by. A ledger is a context
manager: ``with open_ledger(url, root) as ledger: …`` closes it however the block ends.

Why ~650 lines: the contract is one reading of it — the abstract ledger, the record, the
SQL backends' shared reads, and the row, filter, summary and time helpers that SQLite,
PostgreSQL and ClickHouse must share to answer alike; split, each backend would import
three modules for one contract.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict

from gatecheck._values import document_time
from gatecheck.durations import MAX_CLOCK_SKEW
from gatecheck.ledger.audit import AuditEvent
from gatecheck.results import (
    CheckResult,
    Outcome,
    Requester,
    Verdict,
    VerdictState,
    checks_failed,
    checks_passed,
    waived,
)

if TYPE_CHECKING:
    from gatecheck.config import GateConfig

T = TypeVar("T")

# MAX_CLOCK_SKEW (gatecheck.durations): a record whose ``as_of`` lies further ahead of its
# recording time is never "the latest" (it would mask every later verdict).
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


#: The one lease gatecheck's replicas hold: who schedules the evaluations.
SCHEDULER = "scheduler"


@dataclass(frozen=True)
class Lease:
    """A holding of a lease (a ledger shared by replicas: PostgreSQL): who, which epoch (it
    grows at every change of holder), until when and how long that was from the moment it was
    read — both by the database's clock, never a replica's."""

    name: str
    holder: str
    epoch: int
    expires_at: datetime
    left_s: float = field(default=0.0, compare=False)  # a reading, not part of the holding


DECISIVE = frozenset({VerdictState.GO, VerdictState.NO_GO, VerdictState.ROLLBACK})


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


class Ledger(ABC):
    """Where evaluations are recorded. Methods are blocking; the service runs them in a thread."""

    url: str

    @abstractmethod
    def record(self, verdict: Verdict, duration_s: float, lease: Lease | None = None) -> Record:
        """Append one evaluation, atomically. With ``lease`` (the scheduler's holding, on a
        ledger that has leases) the record is fenced: refused unless that holding is still the
        lease's; a ledger without leases refuses any ``lease``."""

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
    ) -> list[tuple[datetime, bool, bool, str, bool, str]]:
        """``(as_of, checks_passed, checks_failed, waivers, contemporary, gate_digest)`` of every record of
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
        self,
        phases: list[str] | None = None,
        since: datetime | None = None,
        kinds: list[str] | None = None,
        until: datetime | None = None,
        newest: int | None = None,
    ) -> list[AuditEvent]:
        """The trail, oldest first: of ``phases`` (default all), from ``since`` to ``until``
        (both inclusive), of ``kinds``; with ``newest``, only the newest that many."""

    @abstractmethod
    def check_writable(self) -> None:
        """Raise LedgerError if a record could not be written now."""

    @abstractmethod
    def prune(self, before: datetime, keep: Collection[tuple[str, datetime]] = ()) -> int:
        """Delete the records whose ``as_of`` lies before ``before``, except those in ``keep``
        (``(phase, as_of)``); how many were deleted. The audit trail is never pruned."""

    #: The clock a record's ``recorded_at`` is read from (a test hands in its own).
    clock: Callable[[], datetime] = staticmethod(lambda: datetime.now(UTC))  # type: ignore[assignment]

    def close(self) -> None:  # noqa: B027 — optional hook
        """Release resources."""

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def summaries(
        self,
        phase: str,
        since: datetime | None = None,
        until: datetime | None = None,
        newest: int | None = None,
    ) -> list[dict[str, Any]]:
        """:func:`record_summary` of each record :meth:`history` gives for these arguments,
        oldest first, summarized where the ledger is read, so a page of thousands is never sent
        between processes as records (the SQL backends summarize each row as their cursor gives
        it; ClickHouse parses each stored document in turn); this fallback reads the records
        first."""
        return [record_summary(r) for r in self.history(phase, since, until, None, newest)]

    def tracked_history(
        self,
        phase: str,
        since: datetime | None = None,
        until: datetime | None = None,
        newest: int | None = None,
        recorded_since: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Records of ``phase`` as a bound from history reads them, oldest first: ``as_of``,
        ``verdict`` and the checks that tracked a column (:func:`tracked_of`), never one dated
        ahead of its recording. A backend reads its stored column; this fallback, the documents."""
        records = self.history(phase, since, until, None, newest, recorded_since, ahead=False)
        return [
            tracked_document(to_ms(r.as_of), r.verdict.value, tracked_of(r.to_verdict())) for r in records
        ]

    def latest(
        self, phase: str, until: datetime | None = None, recorded_since: datetime | None = None
    ) -> Record | None:
        """The newest record by ``as_of``, never one dated ahead of its recording (among the
        records written at or after ``recorded_since`` if given)."""
        records = self.history(phase, until=until, newest=1, recorded_since=recorded_since, ahead=False)
        return records[-1] if records else None

    def latest_verdict(self, phase: str, until: datetime | None = None) -> Verdict | None:
        """The verdict of :meth:`latest` (None: nothing recorded)."""
        record = self.latest(phase, until)
        return record.to_verdict() if record else None

    def chain(self, gates: Iterable[GateConfig]) -> list[tuple[GateConfig, Verdict | None]]:
        """Each gate of a phase chain (``Project.chain()``) with its latest recorded verdict:
        what ``gatecheck status`` and the service's chain page start from."""
        return [(gate, self.latest_verdict(gate.phase)) for gate in gates]

    def last_decision(
        self, phase: str, until: datetime | None = None, recorded_since: datetime | None = None
    ) -> Record | None:
        """The newest GO, NO-GO or ROLLBACK of ``phase`` (inconclusive ones decide nothing),
        among the records written at or after ``recorded_since`` if given."""
        records = self.history(
            phase, until=until, verdicts=DECISIVE, newest=1, recorded_since=recorded_since, ahead=False
        )
        return records[-1] if records else None


def row_of(verdict: Verdict, duration_s: float, recorded_at: datetime) -> dict[str, Any]:
    return {
        "phase": verdict.phase,
        "environment": verdict.environment,
        "as_of": utc(verdict.as_of),
        "verdict": verdict.verdict.value,
        "checks_passed": checks_passed(verdict),
        "checks_failed": checks_failed(verdict),
        "waivers": waived(verdict),
        "config_hash": verdict.config_hash,
        "duration_s": float(duration_s),
        "gatecheck_version": verdict.gatecheck_version,
        "recorded_at": utc(recorded_at),
        "document": verdict.document(),
        "tracked": tracked_of(verdict),
        "gate_digest": verdict.gate_digest,
    }


def tracked_check(check: CheckResult) -> dict[str, Any] | None:
    """One check as a bound from history reads it later (window, outcomes, waiver, the tracked
    values), or None when it tracks no column."""
    if check.tracked is None:
        return None
    history = check.history
    return {
        "suite": check.suite,
        "role": check.role,
        "window": {"start": check.window.start.isoformat(), "end": check.window.end.isoformat()},
        "outcome": check.outcome.value,
        "measured": check.measured.value if check.measured is not None else None,
        "waiver": check.waiver is not None,
        "tracked": check.tracked.model_dump(mode="json"),
        "history": None
        if history is None
        else {
            "before": history.before.value if history.before is not None else None,
            "groups": [{"outcome": g.outcome.value} for g in history.groups],
        },
    }


def tracked_of(verdict: Verdict) -> str:
    """The checks of ``verdict`` that track a column for a bound from history
    (:func:`tracked_check`), as JSON; '' for none. Stored in a column of its own: learning from
    weeks of records reads these, never the documents."""
    found = [kept for check in verdict.checks if (kept := tracked_check(check)) is not None]
    return json.dumps(found) if found else ""


def tracked_document(as_of_ms: int, verdict: str, tracked: str | None) -> dict[str, Any]:
    """A row of :meth:`Ledger.tracked_history` in the shape of a verdict document."""
    return {
        "as_of": from_ms(int(as_of_ms)).isoformat(),
        "verdict": verdict,
        "checks": json.loads(tracked) if tracked else [],
    }


def stored_failed(stored: Any, document: dict[str, Any] | None) -> bool:
    """The stored ``checks_failed``; a record written before that column existed has none,
    and is judged from its document once."""
    # NULL comes back as None, NaN or pandas.NA (whose == is neither true nor false).
    if stored is not None and type(stored).__name__ != "NAType" and stored == stored:
        return bool(stored)
    return document is not None and checks_failed(Verdict.model_validate(document))


AUDIT_COLUMNS = "at_ms, kind, phase, check_name, group_json, waiver, until_ms, by, reason, config_hash"

# ---------------------------------------------------------------- the SQL backends' queries
# SQLite and PostgreSQL store a record in the same columns; only the driver's placeholder
# (``?`` or ``%s``) differs. ClickHouse (typed columns, its own parameters) has its own.

#: The columns a history query selects, in the order :func:`record_of` reads them.
HISTORY_COLUMNS = (
    "phase, environment, as_of_ms, verdict, checks_passed, config_hash, duration_s,"
    " gatecheck_version, recorded_at_ms, document, checks_failed, waivers"
)


def history_filter(
    mark: str,
    phase: str,
    since: datetime | None = None,
    until: datetime | None = None,
    verdicts: frozenset[VerdictState] | None = None,
    newest: int | None = None,
    recorded_since: datetime | None = None,
    ahead: bool = True,
) -> tuple[str, list[Any]]:
    """`` WHERE … ORDER BY … [LIMIT …]`` of :meth:`Ledger.history` and its arguments, with
    ``mark`` as the driver's placeholder. Newest first, so a LIMIT keeps the most recent: the
    caller reverses the rows to oldest first."""
    sql = f" WHERE phase = {mark}"
    args: list[Any] = [phase]
    if since is not None:
        sql += f" AND as_of_ms >= {mark}"
        args.append(to_ms(since))
    if until is not None:
        sql += f" AND as_of_ms <= {mark}"
        args.append(to_ms(until))
    if recorded_since is not None:
        sql += f" AND recorded_at_ms >= {mark}"
        args.append(to_ms(recorded_since))
    if not ahead:
        sql += f" AND as_of_ms <= recorded_at_ms + {mark}"
        args.append(int(MAX_CLOCK_SKEW.total_seconds() * 1000))
    if verdicts is not None:
        sql += _any_of("verdict", mark, list(verdicts))
        args.extend(sorted(v.value for v in verdicts))
    sql += " ORDER BY as_of_ms DESC, id DESC"
    if newest is not None:
        sql += f" LIMIT {mark}"
        args.append(newest)
    return sql, args


def range_filter(
    mark: str, phase: str, since: datetime, until: datetime, recorded_since: datetime | None = None
) -> tuple[str, list[Any]]:
    """`` WHERE … ORDER BY as_of_ms, id`` of :meth:`Ledger.soak_points` and
    :meth:`Ledger.timeline` (``since <= as_of <= until``, oldest first) and its arguments, with
    ``mark`` as the driver's placeholder."""
    sql = f" WHERE phase = {mark} AND as_of_ms >= {mark} AND as_of_ms <= {mark}"
    args: list[Any] = [phase, to_ms(since), to_ms(until)]
    if recorded_since is not None:
        sql += f" AND recorded_at_ms >= {mark}"
        args.append(to_ms(recorded_since))
    return sql + " ORDER BY as_of_ms, id", args


def record_of(row: Any) -> Record:
    """A record from a row of :data:`HISTORY_COLUMNS`."""
    document = json.loads(row[9])
    return Record(
        phase=row[0],
        environment=row[1],
        as_of=from_ms(row[2]),
        verdict=VerdictState(row[3]),
        checks_passed=bool(row[4]),
        config_hash=row[5],
        duration_s=row[6],
        gatecheck_version=row[7],
        recorded_at=from_ms(row[8]),
        document=document,
        checks_failed=stored_failed(row[10], document),
        waivers=row[11] or "",
    )


class RowLedger(Ledger):
    """A ledger on a driver with placeholders (SQLite, PostgreSQL): a record's columns are the
    same in both, so its history and tracked values are read alike; only ``MARK`` (the
    driver's placeholder), ``TABLE`` and ``AUDIT`` (the trail's table and its columns) differ."""

    MARK: str
    TABLE: str
    #: The audit trail: its table and its columns, in :data:`AUDIT_COLUMNS`' order.
    AUDIT: tuple[str, str]

    @abstractmethod
    def _rows(self, sql: str, args: list[Any], what: str = "cannot read") -> list[Any]:
        """The rows ``sql`` answers with ``args``, or LedgerError saying ``what`` failed."""

    @abstractmethod
    def _append_audit(self, events: list[AuditEvent], number_waiver: bool = False) -> list[AuditEvent]:
        """Insert ``events`` in one transaction; ``number_waiver``: the one event takes the
        next waiver id, given inside that transaction."""

    def timeline(self, phase: str, since: datetime, until: datetime) -> list[tuple[datetime, VerdictState]]:
        where, args = range_filter(self.MARK, phase, since, until)
        rows = self._rows(f"SELECT as_of_ms, verdict FROM {self.TABLE}{where}", args)
        return [(from_ms(r[0]), VerdictState(r[1])) for r in rows]

    def append_audit(self, events: list[AuditEvent]) -> None:
        if events:
            self._append_audit(events)

    def create_waiver(self, event: AuditEvent) -> AuditEvent:
        (created,) = self._append_audit([event], number_waiver=True)
        return created

    def audit(
        self,
        phases: list[str] | None = None,
        since: datetime | None = None,
        kinds: list[str] | None = None,
        until: datetime | None = None,
        newest: int | None = None,
    ) -> list[AuditEvent]:
        where, args = audit_filter(self.MARK, phases, since, kinds, until, newest)
        table, columns = self.AUDIT
        rows = self._rows(f"SELECT {columns} FROM {table}{where}", args, "cannot read the audit trail")
        return oldest_first([audit_event_of(r) for r in rows], newest)

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
        where, args = history_filter(self.MARK, phase, since, until, verdicts, newest, recorded_since, ahead)
        rows = self._rows(f"SELECT {HISTORY_COLUMNS} FROM {self.TABLE}{where}", args)
        return [record_of(r) for r in rows[::-1]]

    def summaries(
        self,
        phase: str,
        since: datetime | None = None,
        until: datetime | None = None,
        newest: int | None = None,
    ) -> list[dict[str, Any]]:
        where, args = history_filter(self.MARK, phase, since, until, None, newest, None, True)
        # newest first from the query; each document summarized as it is read, then let go
        sql = f"SELECT {HISTORY_COLUMNS} FROM {self.TABLE}{where}"
        return self._each(sql, args, lambda row: record_summary(record_of(row)))[::-1]

    def _each(
        self, sql: str, args: list[Any], each: Callable[[Any], T], what: str = "cannot read"
    ) -> list[T]:
        """``each`` of every row ``sql`` answers, in order: a backend whose driver streams
        rows hands each one over as it comes, so the rows are never all held at once."""
        return [each(row) for row in self._rows(sql, args, what)]

    def tracked_history(
        self,
        phase: str,
        since: datetime | None = None,
        until: datetime | None = None,
        newest: int | None = None,
        recorded_since: datetime | None = None,
    ) -> list[dict[str, Any]]:
        where, args = history_filter(self.MARK, phase, since, until, None, newest, recorded_since, False)
        rows = self._rows(f"SELECT as_of_ms, verdict, tracked FROM {self.TABLE}{where}", args)
        return [tracked_document(*r) for r in rows[::-1]]


def kept_records(ledger: Ledger, phases: Iterable[str]) -> list[tuple[str, datetime]]:
    """(phase, as_of) of the records a retention never prunes: each phase's latest record and
    latest decision (what ``requires``, ``status`` and the pages read, however old) and every
    pinned baseline's record. Blocking."""
    kept = []
    for phase in phases:
        for record in (ledger.latest(phase), ledger.last_decision(phase)):
            if record is not None:
                kept.append((phase, record.as_of))
    for event in ledger.audit(None, None, ["baseline-pinned"]):
        if "record" in event.group:
            kept.append((event.phase, datetime.fromisoformat(event.group["record"])))
    return kept


def prune_filter(
    mark: str, before: datetime, keep: Collection[tuple[str, datetime]]
) -> tuple[str, list[Any]]:
    """`` WHERE …`` of :meth:`Ledger.prune` on ``as_of_ms`` and its arguments."""
    sql = f" WHERE as_of_ms < {mark}"
    args: list[Any] = [to_ms(before)]
    for phase, as_of in sorted(set(keep)):
        sql += f" AND NOT (phase = {mark} AND as_of_ms = {mark})"
        args += [phase, to_ms(as_of)]
    return sql, args


def _any_of(column: str, mark: str, values: list[Any]) -> str:
    """`` AND column IN (…)``; none at all matches nothing (``IN ()`` is not SQL)."""
    return f" AND {column} IN ({', '.join([mark] * len(values))})" if values else " AND 1 = 0"


def audit_filter(
    mark: str,
    phases: list[str] | None = None,
    since: datetime | None = None,
    kinds: list[str] | None = None,
    until: datetime | None = None,
    newest: int | None = None,
) -> tuple[str, list[Any]]:
    """`` WHERE … ORDER BY id`` of :meth:`Ledger.audit` and its arguments (``mark``: the
    driver's placeholder); with ``newest``, ``ORDER BY id DESC LIMIT n``: the caller puts
    the rows back in order (:func:`oldest_first`)."""
    sql = " WHERE 1 = 1"
    args: list[Any] = []
    if phases is not None:
        sql += _any_of("phase", mark, phases)
        args.extend(phases)
    if since is not None:
        sql += f" AND at_ms >= {mark}"
        args.append(to_ms(since))
    if kinds is not None:
        sql += _any_of("kind", mark, kinds)
        args.extend(kinds)
    if until is not None:
        sql += f" AND at_ms <= {mark}"
        args.append(to_ms(until))
    if newest is not None:
        return sql + f" ORDER BY id DESC LIMIT {int(newest)}", args
    return sql + " ORDER BY id", args


def oldest_first(events: list[AuditEvent], newest: int | None) -> list[AuditEvent]:
    """Events read by :func:`audit_filter` in the trail's order (``newest`` read them newest first)."""
    return events[::-1] if newest is not None else events


def audit_row(event: AuditEvent) -> tuple[Any, ...]:
    return (
        to_ms(event.at), event.kind, event.phase, event.check, json.dumps(event.group, sort_keys=True),
        event.waiver, to_ms(event.until) if event.until is not None else None, event.by, event.reason,
        event.config_hash,
    )  # fmt: skip


def audit_event_of(row: Any) -> AuditEvent:
    return AuditEvent(
        at=from_ms(int(row[0])), kind=row[1], phase=row[2], check=row[3], group=json.loads(row[4]),
        waiver=row[5], until=from_ms(int(row[6])) if row[6] is not None and row[6] == row[6] else None,
        by=row[7], reason=row[8], config_hash=row[9],
    )  # fmt: skip


def to_ms(moment: datetime) -> int:
    return round(utc(moment).timestamp() * 1000)


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def record_summary(record: Record) -> dict[str, Any]:
    """A ledger record without its full document, plus the checks that did not pass. The
    document is read as stored (its checks' ``suite``, ``outcome`` and ``waiver``), without
    building the whole :class:`Verdict`: a history page lists thousands."""
    checks = record.document.get("checks") or []
    requested = record.document.get("requested_by")
    return {
        "phase": record.phase,
        "environment": record.environment,
        "as_of": document_time(record.as_of),
        "verdict": record.verdict.value,
        "checks_passed": record.checks_passed,
        "duration_s": round(record.duration_s, 3),
        "config_hash": record.config_hash,
        "gatecheck_version": record.gatecheck_version,
        "recorded_at": document_time(record.recorded_at),
        "not_passed": {c["suite"]: c["outcome"] for c in checks if c["outcome"] != Outcome.PASS.value},
        # The waivers a GO held through: a waived GO is never shown as a plain one.
        "waivers": sorted({c["waiver"]["id"] for c in checks if c.get("waiver") is not None}),
        "requested_by": Requester.model_validate(requested).model_dump() if requested is not None else None,
    }


def no_leases(ledger: Ledger, lease: Lease | None) -> None:
    """A ledger without leases (one machine's, or one process's) cannot fence a record."""
    if lease is not None:
        from gatecheck.errors import LedgerError

        raise LedgerError(
            f"history ledger {ledger.url}: it has no leases (replicas need a PostgreSQL ledger); "
            "the record is refused"
        )
