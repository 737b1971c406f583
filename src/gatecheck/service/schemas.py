"""The HTTP API's request and response documents (pydantic models; FastAPI publishes them in
the OpenAPI schema).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from gatecheck.results import Outcome, Requester, VerdictState


class Problem(BaseModel):
    """An error answer: what went wrong, in one line."""

    detail: str


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    phases: list[str]
    config_hash: str
    # whether this replica schedules now (always true without replicas), and the leader it
    # knows of among replicas (null: none known, or no replicas)
    scheduling: bool
    leader: str | None = None


class NotReady(BaseModel):
    status: str
    reason: str


class PhaseSummary(BaseModel):
    """One phase of the chain, as ``GET /api/v1/phases`` lists it."""

    phase: str
    environment: str
    description: str
    requires: list[str]
    scheduled: bool
    interval: float
    verdict: VerdictState | None
    as_of: datetime | None
    last_error: str | None
    # a scheduled phase whose latest verdict is older than three intervals: why it is overdue
    overdue: str | None = None
    # a person's decision took the latest verdict back since (invalidated, its waiver revoked)
    withdrawn: str | None = None


class RecordSummary(BaseModel):
    """One recorded evaluation, as ``GET /api/v1/phases/{phase}/history`` lists it."""

    phase: str
    environment: str
    as_of: datetime
    verdict: VerdictState
    checks_passed: bool
    duration_s: float
    config_hash: str
    gatecheck_version: str
    recorded_at: datetime
    not_passed: dict[str, Outcome]
    waivers: list[str] = []  # the waivers its GO held through
    requested_by: Requester | None = None


class DecisionRequest(BaseModel):
    """Who decides and why (recorded in the audit trail)."""

    model_config = ConfigDict(extra="forbid")
    reason: str
    by: str


class WaiverRequest(DecisionRequest):
    """A waiver, as `gatecheck waive` takes it: the check, optionally a group, how long."""

    check: str
    group: dict[str, str] = {}
    for_: str = Field(alias="for", description="How long, e.g. 24h (at most 30d).")


class CorrectionRequest(DecisionRequest):
    """An SLO correction, as `gatecheck correct` takes it: the stretch left out of the budget."""

    from_: str = Field(alias="from", description="Start of the stretch (ISO 8601).")
    to: str = Field(description="End of the stretch (ISO 8601); at most 30 days after its start.")


class FlaggerPayload(BaseModel):
    """What Flagger POSTs to a webhook (``pkg/controller/webhook.go``)."""

    name: str = ""
    namespace: str = ""
    phase: str = ""  # Flagger's canary phase (Progressing, Promoting, ...), not gatecheck's
    checksum: str = ""
    metadata: dict[str, str] = {}


#: Flagger's webhook types gatecheck answers: the gating ones and the (inverted) rollback one.
