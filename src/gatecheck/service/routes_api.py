"""The phases API: the chain, a phase's verdict (now, or the latest of a given age), its
history, an evaluation on request."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from starlette.requests import Request  # a handler's annotation: FastAPI resolves it here

from gatecheck._values import document_time
from gatecheck.results import Requester, Verdict
from gatecheck.service.auth import (
    etags,
)
from gatecheck.service.core import Service, overdue_text
from gatecheck.service.helpers import (
    ANSWER_TIMEOUT_S,
    Helpers,
    newest_page,
)
from gatecheck.service.schemas import (
    PhaseSummary,
    Problem,
    RecordSummary,
)

#: Records ``GET …/history`` lists by default (48 hours at a 5-minute interval is 576) and at
#: most: each is read with its whole document (~11 KB for the reference gates).
HISTORY_PAGE = 1000
MAX_HISTORY_PAGE = 5000


def routes(service: Service, h: Helpers) -> APIRouter:
    """The routes of this group, over ``service`` (``h``: the helpers they share)."""
    router = APIRouter()
    problem = {"model": Problem}

    @router.get("/api/v1/phases", response_model=None, responses={200: {"model": list[PhaseSummary]}})
    async def phases() -> Any:
        result = []
        unevaluated = [g.phase for g in service.project.chain() if service.latest_here(g.phase) is None]
        # Not evaluated here since the start: the ledger's latest, as /verdict says (one thread).
        recorded = await asyncio.to_thread(lambda: {p: service.recorded_latest(p) for p in unevaluated})
        now = service.clock()
        latests = {
            g.phase: service.latest_here(g.phase) or recorded.get(g.phase) for g in service.project.chain()
        }
        withdrawn = await asyncio.to_thread(
            lambda: {p: service.withdrawn(p, v, now) for p, v in latests.items() if v is not None}
        )
        for gate in service.project.chain():
            state = service.states.get(gate.phase)
            latest = latests[gate.phase]
            result.append(
                {
                    "phase": gate.phase,
                    "environment": gate.environment,
                    "description": " ".join(gate.description.split()),
                    "requires": gate.requires,
                    "scheduled": gate.phase in service.phases,
                    "interval": service.interval(gate.phase).total_seconds(),
                    "verdict": latest.verdict.value if latest else None,
                    "as_of": document_time(latest.as_of) if latest else None,
                    "last_error": state.last_error if state else None,
                    "overdue": overdue_text(latest.as_of, now, service.interval(gate.phase))
                    if latest and gate.phase in service.phases
                    else None,
                    "withdrawn": withdrawn.get(gate.phase),
                }
            )
        return result

    @router.get(
        "/api/v1/phases/{phase}/verdict",
        response_model=None,
        responses={
            200: {"model": Verdict},
            401: problem,
            404: problem,
            422: problem,
            429: problem,
            503: problem,
        },
    )
    async def verdict(
        request: Request,
        phase: str,
        fresh: bool = Query(False, description="Evaluate now (bearer token when one is set; rate-limited)."),
        max_age: str | None = Query(
            None,
            description="The latest verdict if its as_of is at most this old (e.g. 10m), else evaluate now.",
        ),
        timeout: float = Query(
            ANSWER_TIMEOUT_S,
            gt=0,
            le=120,
            description="Seconds to wait for an evaluation now; past it the answer is inconclusive.",
        ),
        rollout: str = Query("", description="The Argo Rollout asking (recorded with a fresh evaluation)."),
        namespace: str = Query("", description="Its namespace (recorded)."),
        revision: str = Query("", description="The canary revision or pod-template hash (recorded)."),
        started: str = Query(
            "",
            description="When the rollout began (ISO 8601; recorded): an SLO's consumption counts from it.",
        ),
        if_none_match: str | None = Header(None),
        view: Literal["full", "compact"] = Query(
            "full",
            description="compact: the verdict, its reason, the blocking checks and a link (a few "
            "hundred bytes, for a rollout controller's status) instead of the whole document.",
        ),
    ) -> Any:
        """The phase's verdict document, HTTP 200 for every verdict (inconclusive and "no
        evaluation yet" too); 5xx only for gatecheck's own faults."""
        found = await full(
            request, phase, fresh, max_age, timeout, rollout, namespace, revision, started,
            None if view == "compact" else if_none_match,
        )  # fmt: skip
        if view == "full":
            return found
        return compacted(found)

    def compacted(found: Any) -> Any:
        """A verdict answer (a document, or a response holding one) in its compact view;
        anything else (a problem, a 304) as it is."""
        from gatecheck.service.compact import compact

        headers: dict[str, str] = {}
        if isinstance(found, Response):
            if found.status_code != 200:
                return found
            headers = {k: v for k, v in found.headers.items() if k.lower().startswith("gatecheck-")}
            found = json.loads(bytes(found.body))
        return JSONResponse(compact(Verdict.model_validate(found), service.base_url), headers=headers)

    async def full(
        request: Request,
        phase: str,
        fresh: bool,
        max_age: str | None,
        timeout: float,
        rollout: str,
        namespace: str,
        revision: str,
        started: str,
        if_none_match: str | None,
    ) -> Any:
        h.known(phase)
        began = h.moment_param(started, "started") if started else None
        if fresh or max_age is not None:
            age = h.duration_param(max_age, "max_age") if max_age is not None else None
            requester = None
            if rollout or revision or began is not None:
                requester = Requester(
                    controller="argo-rollouts", name=rollout, namespace=namespace, revision=revision or None,
                    started=began,
                )  # fmt: skip
            if not fresh and age is not None:
                latest = await h.recent(phase, age, requester)  # of this canary, this rollout
                if latest is not None:
                    return latest.document()
            # An evaluation now: the same token and rate limit as POST .../evaluate.
            if service.api_token is not None:
                denied = h.authenticate(request)
                if denied is not None:
                    return denied
            too_many = h.refused(request, phase)
            if too_many is not None:
                return too_many
            return await h.answer_now(phase, timeout, requester)
        rendered = service.document(phase)
        if rendered is None:  # nothing evaluated since start: the ledger's latest record
            latest = await asyncio.to_thread(service.latest, phase)
            if latest is None:
                return h.placeholder(phase, f"no evaluation of {phase} yet")
            return latest.document()
        body, etag = rendered
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        matches = etags(if_none_match)
        if etag in matches or "*" in matches:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    @router.get(
        "/api/v1/phases/{phase}/history",
        response_model=None,
        responses={200: {"model": list[RecordSummary]}, 404: problem, 422: problem, 503: problem},
    )
    async def history(
        phase: str,
        request: Request,
        since: str = Query("48h", description="e.g. 30m, 48h, 7d"),
        until: str | None = Query(
            None, description="Only records as of this time or earlier (ISO 8601): the next page's `Link`."
        ),
        limit: int = Query(
            HISTORY_PAGE, ge=1, le=MAX_HISTORY_PAGE,
            description=f"At most this many records, the newest (at most {MAX_HISTORY_PAGE}).",
        ),
    ) -> Any:  # fmt: skip
        """The phase's records in the span, oldest first: at most ``limit``, the newest. When
        the span holds more, a ``Link: <…&until=…>; rel="next"`` header asks for the older
        ones (each record is summarized from its document where the ledger is read: a year of
        them at once would still read gigabytes)."""
        h.known(phase)
        start = h.since_moment(since)
        end = h.moment_param(until, "until") if until is not None else None
        # summarized where the ledger is read (the worker): no page of documents is held or sent
        summaries = await asyncio.to_thread(service.ledger.summaries, phase, start, end, limit + 1)
        summaries, headers = newest_page(
            summaries, limit, lambda summary: datetime.fromisoformat(summary["as_of"]), request
        )
        return JSONResponse(jsonable_encoder(summaries), headers=headers)

    @router.post(
        "/api/v1/phases/{phase}/evaluations",
        status_code=202,
        response_model=None,
        responses={
            202: {"description": "started (or the one under way)"},
            401: problem,
            404: problem,
            429: problem,
        },
    )
    async def start_evaluation(phase: str) -> Any:
        """Start an evaluation of ``phase`` and answer at once: 202 with its id and a
        ``Location`` to poll (a request while one of the phase runs gets that one)."""
        h.known(phase)
        started = service.start_evaluation(phase)
        location = f"/api/v1/evaluations/{started.id}"
        return JSONResponse(
            {"id": started.id, "phase": phase, "status": "in_progress",
             "started": document_time(started.started), "location": location},
            status_code=202,
            headers={"Location": location},
        )  # fmt: skip

    @router.get(
        "/api/v1/evaluations/{evaluation}",
        response_model=None,
        responses={200: {"model": Verdict}, 404: problem, 503: problem},
    )
    async def evaluation_of(evaluation: str) -> Any:
        """``in_progress`` while it runs, then the verdict document (kept for an hour);
        404 for an id this service never gave or no longer keeps."""
        found = service.requests.get(evaluation)
        if found is None:
            raise HTTPException(404, f"no evaluation {evaluation!r} here (unknown, or older than an hour)")
        if not found.future.done():
            return JSONResponse(
                {"id": found.id, "phase": found.phase, "status": "in_progress",
                 "started": document_time(found.started)},
                headers={"Retry-After": "2"},
            )  # fmt: skip
        if found.future.cancelled():
            return JSONResponse(
                {"detail": "the evaluation was stopped (the service is stopping)"}, status_code=503
            )
        failed = found.future.exception()
        if failed is not None:
            return JSONResponse({"detail": str(failed)}, status_code=503)
        return found.future.result().document()

    @router.post(
        "/api/v1/phases/{phase}/evaluate",
        response_model=None,
        responses={200: {"model": Verdict}, 401: problem, 404: problem, 429: problem},
    )
    async def evaluate_now(phase: str) -> Any:
        h.known(phase)
        return (await service.evaluate_shared(phase)).document()

    return router
