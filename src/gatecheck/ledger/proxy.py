"""The ledger as the serving process sees it: a real :class:`~gatecheck.ledger.base.Ledger`
whose every call runs in the evaluation worker, which owns the ledger (chDB opens an embedded
path in one process only). Blocking, like every ledger: the service calls it in a thread.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, Protocol

from gatecheck.ledger.audit import AuditEvent
from gatecheck.ledger.base import Lease, Ledger, Record
from gatecheck.results import Verdict, VerdictState


class LedgerCalls(Protocol):
    """Whoever runs a ledger method elsewhere (:class:`gatecheck.service.worker.WorkerEvaluator`)."""

    def ledger_call(self, method: str, *args: Any, **kwargs: Any) -> Any: ...


class WorkerLedger(Ledger):
    """Every method of the contract, run by ``calls`` in the process that owns the ledger."""

    def __init__(self, calls: LedgerCalls, url: str) -> None:
        self.calls = calls
        self.url = url

    def record(self, verdict: Verdict, duration_s: float, lease: Lease | None = None) -> Record:
        result: Record = self.calls.ledger_call("record", verdict, duration_s, lease)
        return result

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
        result: list[Record] = self.calls.ledger_call(
            "history", phase, since, until, verdicts, newest, recorded_since, ahead
        )
        return result

    def summaries(
        self,
        phase: str,
        since: datetime | None = None,
        until: datetime | None = None,
        newest: int | None = None,
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.calls.ledger_call("summaries", phase, since, until, newest)
        return result

    def soak_points(
        self, phase: str, since: datetime, until: datetime, recorded_since: datetime | None = None
    ) -> list[tuple[datetime, bool, bool, str, bool, str]]:
        result: list[tuple[datetime, bool, bool, str, bool, str]] = self.calls.ledger_call(
            "soak_points", phase, since, until, recorded_since
        )
        return result

    def tracked_history(
        self,
        phase: str,
        since: datetime | None = None,
        until: datetime | None = None,
        newest: int | None = None,
        recorded_since: datetime | None = None,
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.calls.ledger_call(
            "tracked_history", phase, since, until, newest, recorded_since
        )
        return result

    def timeline(self, phase: str, since: datetime, until: datetime) -> list[tuple[datetime, VerdictState]]:
        result: list[tuple[datetime, VerdictState]] = self.calls.ledger_call("timeline", phase, since, until)
        return result

    def append_audit(self, events: list[AuditEvent]) -> None:
        self.calls.ledger_call("append_audit", events)

    def create_waiver(self, event: AuditEvent) -> AuditEvent:
        result: AuditEvent = self.calls.ledger_call("create_waiver", event)
        return result

    def audit(
        self,
        phases: list[str] | None = None,
        since: datetime | None = None,
        kinds: list[str] | None = None,
        until: datetime | None = None,
        newest: int | None = None,
    ) -> list[AuditEvent]:
        result: list[AuditEvent] = self.calls.ledger_call("audit", phases, since, kinds, until, newest)
        return result

    def check_writable(self) -> None:
        self.calls.ledger_call("check_writable")

    def prune(self, before: datetime, keep: Collection[tuple[str, datetime]] = ()) -> int:
        deleted: int = self.calls.ledger_call("prune", before, list(keep))
        return deleted

    # latest and last_decision: one call each in the worker, not a history() round trip here
    def latest(
        self, phase: str, until: datetime | None = None, recorded_since: datetime | None = None
    ) -> Record | None:
        result: Record | None = self.calls.ledger_call("latest", phase, until, recorded_since)
        return result

    def last_decision(
        self, phase: str, until: datetime | None = None, recorded_since: datetime | None = None
    ) -> Record | None:
        result: Record | None = self.calls.ledger_call("last_decision", phase, until, recorded_since)
        return result

    def close(self) -> None:
        """The worker closes the ledger it owns."""
