"""Decisions through the API: waivers, their revocation, SLO corrections, the audit trail."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from starlette.requests import Request  # a handler's annotation: FastAPI resolves it here

from gatecheck.ledger.audit import EVERY_PHASE, AuditEvent
from gatecheck.service.core import Service
from gatecheck.service.helpers import Helpers, newest_page
from gatecheck.service.schemas import (
    CorrectionRequest,
    DecisionRequest,
    Problem,
    WaiverRequest,
)

#: Audit events a page of ``GET /api/v1/audit`` holds by default, and at most.
AUDIT_PAGE = 1000
MAX_AUDIT_PAGE = 5000


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
            trail = service.ledger.audit(kinds=["waiver-created", "waiver-revoked"])
            event = revoke_event(service.project, trail, waiver, body.reason, body.by)
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
        request: Request,
        phase: str | None = Query(None, description="Only this phase."),
        since: str = Query("7d", description="e.g. 24h, 7d"),
        until: str | None = Query(
            None, description="Only events at this time or earlier (ISO 8601): the next page's `Link`."
        ),
        limit: int = Query(
            AUDIT_PAGE, ge=1, le=MAX_AUDIT_PAGE,
            description=f"At most this many events, the newest (at most {MAX_AUDIT_PAGE}).",
        ),
    ) -> Any:  # fmt: skip
        """The audit trail, oldest first (as `gatecheck audit`): at most ``limit`` events, the
        newest. When the span holds more, a ``Link: <…&until=…>; rel="next"`` header asks for
        the older ones (a waiver used at every evaluation writes an event each time: a year
        of them at once held the service's memory)."""
        if phase is not None:
            h.known(phase)
        start = h.since_moment(since)
        end = h.moment_param(until, "until") if until is not None else None
        phases = [phase, EVERY_PHASE] if phase else None
        events = await asyncio.to_thread(service.ledger.audit, phases, start, None, end, limit + 1)
        events, headers = newest_page(events, limit, lambda e: e.at, request)
        return JSONResponse([e.model_dump(mode="json") for e in events], headers=headers)

    return router
