"""Decisions through the API: waivers, their revocation, SLO corrections, the audit trail."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query

from gatecheck.ledger.audit import EVERY_PHASE, AuditEvent
from gatecheck.service.core import Service
from gatecheck.service.helpers import Helpers
from gatecheck.service.schemas import (
    CorrectionRequest,
    DecisionRequest,
    Problem,
    WaiverRequest,
)


def routes(service: Service, h: Helpers) -> APIRouter:
    """The routes of this group, over ``service`` (``h``: the helpers they share)."""
    router = APIRouter()
    problem = {"model": Problem}

    @router.post(
        "/api/v1/phases/{phase}/waivers",
        response_model=None,
        responses={201: {"model": AuditEvent}, 401: problem, 404: problem, 422: problem, 503: problem},
    )
    async def waive(phase: str, body: WaiverRequest) -> Any:
        """Record a waiver (as `gatecheck waive`): bearer token, the same checks."""
        from gatecheck.ledger.decisions import waiver_event

        h.known(phase)
        return await h.decided(
            lambda: service.ledger.create_waiver(
                waiver_event(service.project, phase, body.check, body.group, body.for_, body.reason, body.by)
            )
        )

    @router.post(
        "/api/v1/waivers/{waiver}/revoke",
        response_model=None,
        responses={201: {"model": AuditEvent}, 401: problem, 404: problem, 422: problem, 503: problem},
    )
    async def unwaive(waiver: str, body: DecisionRequest) -> Any:
        """Revoke a waiver (as `gatecheck unwaive`)."""
        from gatecheck.ledger.decisions import revoke_event

        def write() -> AuditEvent:
            event = revoke_event(service.project, service.ledger.audit(), waiver, body.reason, body.by)
            service.ledger.append_audit([event])
            return event

        return await h.decided(write)

    @router.post(
        "/api/v1/slos/{slo}/corrections",
        response_model=None,
        responses={201: {"model": AuditEvent}, 401: problem, 422: problem, 503: problem},
    )
    async def correct(slo: str, body: CorrectionRequest) -> Any:
        """Leave a stretch out of an SLO's error budget (as `gatecheck correct`)."""
        from gatecheck.ledger.decisions import correction_event

        def write() -> AuditEvent:
            event = correction_event(service.project, slo, body.from_, body.to, body.reason, body.by)
            service.ledger.append_audit([event])
            return event

        return await h.decided(write)

    @router.get(
        "/api/v1/audit", response_model=None, responses={200: {"model": list[AuditEvent]}, 422: problem}
    )
    async def audit(
        phase: str | None = Query(None, description="Only this phase."),
        since: str = Query("7d", description="e.g. 24h, 7d"),
    ) -> Any:
        """The audit trail, oldest first (as `gatecheck audit`)."""
        if phase is not None:
            h.known(phase)
        start = h.since_moment(since)
        events = await asyncio.to_thread(service.ledger.audit, [phase, EVERY_PHASE] if phase else None, start)
        return [e.model_dump(mode="json") for e in events]

    return router
