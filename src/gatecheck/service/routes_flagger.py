"""Flagger's webhooks: a gating role answers 200 only on GO, the rollback role only on
ROLLBACK."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import PlainTextResponse
from starlette.requests import Request  # a handler's annotation: FastAPI resolves it here

from gatecheck.errors import GatecheckError
from gatecheck.results import Requester, Verdict, VerdictState
from gatecheck.service.core import Service
from gatecheck.service.helpers import ANSWER_TIMEOUT_S, FLAGGER_ROLES, Helpers
from gatecheck.service.schemas import (
    FlaggerPayload,
    Problem,
)


def routes(service: Service, h: Helpers) -> APIRouter:
    """The routes of this group, over ``service`` (``h``: the helpers they share)."""
    router = APIRouter()
    problem = {"model": Problem}

    @router.post(
        "/api/v1/flagger/{role}",
        response_class=PlainTextResponse,
        responses={
            200: {"description": "gating roles: the verdict is GO; rollback: it is ROLLBACK"},
            401: problem, 404: problem, 412: {"description": "not GO (rollback role: not ROLLBACK)"},
            422: problem, 429: problem, 503: problem,
        },
    )  # fmt: skip
    async def flagger(role: str, payload: FlaggerPayload, request: Request) -> Any:
        """A Flagger webhook (docs: "Gate a Flagger canary"): the gatecheck phase is
        ``metadata.phase``. Gating roles answer 200 only on GO, ``rollback`` only on ROLLBACK;
        anything else is 412 with the verdict and its reasons as the body."""
        if role not in FLAGGER_ROLES:
            raise HTTPException(
                404, f"unknown Flagger webhook role {role!r} (known: {', '.join(FLAGGER_ROLES)})"
            )
        if service.api_token is not None:
            token = payload.metadata.get("token")
            denied = h.authenticate(
                request, token if isinstance(token, str) else None,
                detail="missing or wrong token (header or metadata.token)",
            )  # fmt: skip
            if denied is not None:
                return denied
        phase = payload.metadata.get("phase")
        if not phase:
            raise HTTPException(
                422, "metadata.phase: name the gatecheck phase this hook gates (e.g. canary-10)"
            )
        h.known(phase)
        try:
            timeout = float(payload.metadata.get("timeout", ANSWER_TIMEOUT_S))
        except ValueError:
            timeout = math.nan
        if not 0 < timeout <= 120:  # as the verdict's ?timeout= (NaN too: never compared true)
            raise HTTPException(422, "metadata.timeout: seconds, more than 0 and at most 120, e.g. 8")
        judged: Verdict | None = None
        requester = Requester(
            controller="flagger", role=role, name=payload.name, namespace=payload.namespace,
            checksum=payload.checksum,
        )  # fmt: skip
        if "max_age" in payload.metadata:  # the latest verdict of this canary, if recent enough
            age = h.duration_param(payload.metadata["max_age"], "metadata.max_age")
            try:
                judged = await h.recent(phase, age, requester)
            except GatecheckError as exc:
                return PlainTextResponse(f"{phase}: {exc}", status_code=503)
        if judged is None:
            too_many = h.refused(request, phase)
            if too_many is not None:
                return too_many
            try:
                judged = await asyncio.wait_for(service.evaluate_shared(phase, requester), timeout)
            except TimeoutError:
                return PlainTextResponse(
                    f"{phase}: no verdict within {timeout:g}s (the evaluation goes on): not a GO",
                    status_code=412,
                )
            except GatecheckError as exc:
                return PlainTextResponse(f"{phase}: {exc}", status_code=503)
        wanted = VerdictState.ROLLBACK if role == "rollback" else VerdictState.GO
        # Flagger shows a failed webhook's body in the canary's events: the compact answer
        from gatecheck.service.compact import compact_text

        return PlainTextResponse(
            compact_text(judged, service.base_url), status_code=200 if judged.verdict is wanted else 412
        )

    return router
