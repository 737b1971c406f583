"""Health, readiness and the Prometheus exposition."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.registry import CollectorRegistry

from gatecheck.errors import GatecheckError
from gatecheck.service.core import Service
from gatecheck.service.helpers import Helpers
from gatecheck.service.schemas import (
    Health,
    NotReady,
    Ready,
)


def routes(service: Service, h: Helpers, registry: CollectorRegistry) -> APIRouter:
    """The routes of this group, over ``service`` (``h``: the helpers they share)."""
    router = APIRouter()

    @router.get("/healthz", response_model=None, responses={200: {"model": Health}})
    async def healthz() -> Any:
        return {"status": "ok"}

    @router.get("/readyz", response_model=None, responses={200: {"model": Ready}, 503: {"model": NotReady}})
    async def readyz() -> Any:
        try:
            await asyncio.to_thread(service.ledger.check_writable)
        except GatecheckError as exc:
            return JSONResponse({"status": "not ready", "reason": str(exc)}, status_code=503)
        leadership = service.leadership
        known = leadership.leader if leadership is not None else None
        return {
            "status": "ready",
            "phases": service.phases,
            "config_hash": service.project.config_hash,
            "scheduling": service.scheduling,
            "leader": known[0] if known is not None else None,
        }

    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus exposition"}},
    )
    async def metrics() -> Any:
        return Response(service.exposition(registry), media_type=CONTENT_TYPE_LATEST)

    return router
