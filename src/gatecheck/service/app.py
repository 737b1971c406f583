"""The FastAPI application: every route — health, metrics, the status pages and their login,
the phases API, decisions (waivers), the Flagger webhooks — over one
:class:`~gatecheck.service.core.Service`.

Why one module of ~500 lines: the routes share one closure over the service (its rate
limiter, its metrics registry, the helpers that answer a phase now or from the latest
verdict); splitting them into routers means passing those explicitly, which is the next step
of this package.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client.registry import CollectorRegistry
from starlette.requests import Request  # a handler's annotation: FastAPI resolves it here

from gatecheck import __version__
from gatecheck.durations import parse_duration
from gatecheck.errors import ConfigError, GatecheckError
from gatecheck.ledger import record_summary
from gatecheck.ledger.audit import AuditEvent
from gatecheck.results import Requester, Verdict, VerdictState

if TYPE_CHECKING:
    pass
from gatecheck.service.auth import (
    EVALUATE_PER_MINUTE,
    MAX_REQUEST_BYTES,
    RateLimiter,
    authorized,
    client_of,
    etags,
    token_matches,
)
from gatecheck.service.collector import VerdictCollector
from gatecheck.service.core import SESSION_COOKIE, Service
from gatecheck.service.middleware import BoundedBody, KnownHosts
from gatecheck.service.schemas import (
    DecisionRequest,
    FlaggerPayload,
    Health,
    NotReady,
    PhaseSummary,
    Problem,
    Ready,
    RecordSummary,
    WaiverRequest,
)


def create_app(service: Service) -> Any:
    """The FastAPI app: /metrics, /healthz, /readyz and the /api/v1 verdict API."""
    from fastapi import FastAPI, Header, HTTPException, Query
    from fastapi.responses import JSONResponse, PlainTextResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST

    registry = CollectorRegistry(auto_describe=False)
    registry.register(VerdictCollector(service))
    app = FastAPI(title="gatecheck", version=__version__, docs_url=None, redoc_url=None)

    @app.exception_handler(GatecheckError)
    async def unavailable(request: Request, exc: GatecheckError) -> Any:
        """gatecheck's own trouble answering (a ledger it cannot read, an evaluation worker that
        died): 503 with what happened, from every route that has no answer of its own for it."""
        return JSONResponse({"detail": str(exc)}, status_code=503)
    limiter = RateLimiter(EVALUATE_PER_MINUTE)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        # (The body was read and bounded by BoundedBody before this runs; the Host checked.)
        if request.method not in ("GET", "HEAD"):
            # Flagger cannot send headers: its endpoints also take the token from the payload's
            # metadata, and check it themselves.
            flagger = request.url.path.startswith("/api/v1/flagger/")
            # The login form of the pages posts the token itself (rate-limited below).
            login = request.url.path == "/session"
            if not flagger and not login and service.api_token is not None:
                denied = authenticate(request)
                if denied is not None:
                    return denied
            if not flagger and not limiter.allow(client_of(request)):
                return JSONResponse({"detail": "too many evaluations requested; try later"}, status_code=429)
        return await call_next(request)

    def refused(request: Request, phase: str) -> Any:
        """A 429 answer when this request may not start an evaluation of ``phase`` now; None
        when it may. Joining an evaluation already under way costs nothing."""
        if service.evaluating(phase) or limiter.allow(client_of(request)):
            return None
        return JSONResponse({"detail": "too many evaluations requested; try later"}, status_code=429)

    def authenticate(
        request: Request, *other: str | None, detail: str = "missing or wrong bearer token"
    ) -> Any:
        """None when the request carries the token (its bearer header, or one of ``other``:
        Flagger's metadata.token, the login form's field); else the answer: 401, or 429 once
        the client has failed AUTH_FAILURES_PER_MINUTE times in the last minute (every door
        counts the same failures, so guessing through one is as slow as through another)."""
        assert service.api_token is not None
        client = client_of(request)
        if service.auth_failures.exhausted(client):
            return JSONResponse({"detail": "too many failed authentications; try later"}, status_code=429)
        token = service.api_token
        if authorized(request, token) or any(token_matches(t, token) for t in other):
            return None
        service.auth_failures.allow(client)  # counts the failure
        headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse({"detail": detail}, status_code=401, headers=headers)

    def duration_param(text: str, what: str) -> timedelta:
        """A duration parameter (``48h``); a bad one is a 422 naming ``what``."""
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise HTTPException(422, f"{what}: {exc}") from exc

    def since_moment(since: str) -> datetime:
        """``?since=48h`` as the moment it names (a bad duration is a 422)."""
        return service.clock() - duration_param(since, "since")

    async def recent(phase: str, age: timedelta) -> Verdict | None:
        """The latest verdict of ``phase`` if its as_of is at most ``age`` old (a ledger that
        cannot be read raises GatecheckError)."""
        latest = await asyncio.to_thread(service.latest, phase)
        return latest if latest is not None and latest.as_of >= service.clock() - age else None

    def known(phase: str) -> None:
        if phase not in service.project.gates:
            raise HTTPException(404, f"unknown phase {phase!r}")

    # Handlers return plain JSON (or a Response) and declare their documents through
    # `responses`: FastAPI reads return annotations in this module's globals, where the
    # names imported above do not exist, and /openapi.json would fail on a forward reference.
    problem = {"model": Problem}

    @app.get("/healthz", response_model=None, responses={200: {"model": Health}})
    async def healthz() -> Any:
        return {"status": "ok"}

    @app.get("/readyz", response_model=None, responses={200: {"model": Ready}, 503: {"model": NotReady}})
    async def readyz() -> Any:
        try:
            await asyncio.to_thread(service.ledger.check_writable)
        except GatecheckError as exc:
            return JSONResponse({"status": "not ready", "reason": str(exc)}, status_code=503)
        return {"status": "ready", "phases": service.phases, "config_hash": service.project.config_hash}

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus exposition"}},
    )
    async def metrics() -> Any:
        return Response(service.exposition(registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------ status pages

    def page_allowed(request: Request) -> bool:
        """Beyond loopback (a token is set) a page needs the token: the bearer header, or the
        cookie of a browser session that gave it on the login form."""
        if service.api_token is None:
            return True
        if request.headers.get("authorization"):  # a bearer given: right, or a counted failure
            return authenticate(request) is None
        session = request.cookies.get(SESSION_COOKIE)
        return session is not None and service.session_valid(session)

    def html(body: str, status_code: int = 200) -> Any:
        from fastapi.responses import HTMLResponse

        from gatecheck.render.html import CONTENT_SECURITY_POLICY

        headers = {
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }
        return HTMLResponse(body, status_code=status_code, headers=headers)

    def login(next_path: str, failed: bool = False) -> Any:
        from gatecheck.render.html import render_login

        return html(render_login(next_path, failed), 401)

    @app.get("/", include_in_schema=False)
    async def chain_page(request: Request) -> Any:
        """The phase chain: every phase's latest verdict, soak and recent verdicts."""
        if not page_allowed(request):
            return login("/")
        from gatecheck.render.html import render_chain

        now = service.clock()

        def page() -> str:
            return render_chain(service.chain_cards(now), now, service.refresh_s())

        return html(await asyncio.to_thread(page))

    @app.get("/phases/{phase}", include_in_schema=False)
    async def phase_page(request: Request, phase: str, export: bool = Query(False)) -> Any:
        """One phase: its checks, evidence, thresholds, failing groups, reasons, history."""
        if phase not in service.project.gates:
            return html(f"<!doctype html><title>404</title><p>unknown phase {html_text(phase)}</p>", 404)
        if not page_allowed(request):
            return login(f"/phases/{phase}")
        from gatecheck.render.html import render_phase

        now = service.clock()

        def page() -> str:
            return render_phase(service.phase_page(phase, now), now, service.refresh_s(), export=export)

        try:
            return html(await asyncio.to_thread(page))
        except GatecheckError as exc:
            return html(f"<!doctype html><title>503</title><p>{html_text(str(exc))}</p>", 503)

    @app.post("/session", include_in_schema=False)
    async def session(request: Request) -> Any:
        """The login form: the token once, in the body; a session cookie in return."""
        from urllib.parse import parse_qs

        from fastapi.responses import RedirectResponse

        form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=8)
        next_path = form.get("next", ["/"])[0]
        if not _LOCAL_PAGE.fullmatch(next_path):
            next_path = "/"
        if service.api_token is None:
            return RedirectResponse(next_path, status_code=303)
        denied = authenticate(request, form.get("token", [""])[0])
        if denied is not None:
            return denied if denied.status_code == 429 else login(next_path, failed=True)
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            service.open_session(),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @app.get("/api/v1/phases", response_model=None, responses={200: {"model": list[PhaseSummary]}})
    async def phases() -> Any:
        result = []
        unevaluated = [g.phase for g in service.project.chain() if service.latest_here(g.phase) is None]
        # Not evaluated here since the start: the ledger's latest, as /verdict says (one thread).
        recorded = await asyncio.to_thread(lambda: {p: service.recorded_latest(p) for p in unevaluated})
        for gate in service.project.chain():
            state = service.states.get(gate.phase)
            latest = service.latest_here(gate.phase) or recorded.get(gate.phase)
            result.append(
                {
                    "phase": gate.phase,
                    "environment": gate.environment,
                    "description": " ".join(gate.description.split()),
                    "requires": gate.requires,
                    "scheduled": gate.phase in service.phases,
                    "interval": service.interval(gate.phase).total_seconds(),
                    "verdict": latest.verdict.value if latest else None,
                    "as_of": latest.as_of.isoformat() if latest else None,
                    "last_error": state.last_error if state else None,
                }
            )
        return result

    async def answer_now(phase: str, timeout: float, requested_by: Requester | None) -> Any:
        """A fresh evaluation's document (shared with one under way), or, past ``timeout``,
        an inconclusive document saying so (the evaluation goes on and is recorded)."""
        try:
            fresh = await asyncio.wait_for(service.evaluate_shared(phase, requested_by), timeout)
        except TimeoutError:
            return placeholder(
                phase,
                f"the evaluation of {phase} did not finish within {timeout:g}s; it goes on and is "
                "recorded: ask again",
            )
        return fresh.document()

    def placeholder(phase: str, reason: str) -> Any:
        """HTTP 200 with an inconclusive verdict document: there is no verdict to give."""
        gate = service.project.gates[phase]
        document = Verdict(
            phase=phase,
            environment=gate.environment,
            description=" ".join(gate.description.split()),
            as_of=service.clock(),
            verdict=VerdictState.INCONCLUSIVE,
            reasons=[reason],
            checks=[],
            config_hash=service.project.config_hash,
            gatecheck_version=__version__,
        ).document()
        return JSONResponse(document, headers={EVALUATED_HEADER: "false"})

    @app.get(
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
        if_none_match: str | None = Header(None),
    ) -> Any:
        """The phase's verdict document, HTTP 200 for every verdict (inconclusive and "no
        evaluation yet" too); 5xx only for gatecheck's own faults."""
        known(phase)
        if fresh or max_age is not None:
            age = duration_param(max_age, "max_age") if max_age is not None else None
            if not fresh and age is not None:
                latest = await recent(phase, age)
                if latest is not None:
                    return latest.document()
            # An evaluation now: the same token and rate limit as POST .../evaluate.
            if service.api_token is not None:
                denied = authenticate(request)
                if denied is not None:
                    return denied
            too_many = refused(request, phase)
            if too_many is not None:
                return too_many
            requester = None
            if rollout or revision:
                requester = Requester(
                    controller="argo-rollouts", name=rollout, namespace=namespace, checksum=revision
                )
            return await answer_now(phase, timeout, requester)
        rendered = service.document(phase)
        if rendered is None:  # nothing evaluated since start: the ledger's latest record
            latest = await asyncio.to_thread(service.latest, phase)
            if latest is None:
                return placeholder(phase, f"no evaluation of {phase} yet")
            return latest.document()
        body, etag = rendered
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        matches = etags(if_none_match)
        if etag in matches or "*" in matches:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    @app.get(
        "/api/v1/phases/{phase}/history",
        response_model=None,
        responses={200: {"model": list[RecordSummary]}, 404: problem, 422: problem, 503: problem},
    )
    async def history(phase: str, since: str = Query("48h", description="e.g. 30m, 48h, 7d")) -> Any:
        known(phase)
        start = since_moment(since)
        records = await asyncio.to_thread(service.ledger.history, phase, start)
        return [record_summary(r) for r in records]

    @app.post(
        "/api/v1/phases/{phase}/evaluate",
        response_model=None,
        responses={200: {"model": Verdict}, 401: problem, 404: problem, 429: problem},
    )
    async def evaluate_now(phase: str) -> Any:
        known(phase)
        return (await service.evaluate_shared(phase)).document()

    async def decided(write: Any) -> Any:
        """Check and record one decision in the ledger (in a thread); a bad one is a 422."""
        from gatecheck.ledger.decisions import UnknownWaiver

        try:
            event = await asyncio.to_thread(write)
        except ConfigError as exc:
            # The checks speak of the CLI's flags (--for: …); the API's caller sent fields.
            detail = re.sub(r"^--([a-z]+):", r"\1:", exc.problems[0] if exc.problems else str(exc))
            status = 404 if isinstance(exc, UnknownWaiver) else 422
            return JSONResponse({"detail": detail}, status_code=status)
        return JSONResponse(event.model_dump(mode="json"), status_code=201)

    @app.post(
        "/api/v1/phases/{phase}/waivers",
        response_model=None,
        responses={201: {"model": AuditEvent}, 401: problem, 404: problem, 422: problem, 503: problem},
    )
    async def waive(phase: str, body: WaiverRequest) -> Any:
        """Record a waiver (as `gatecheck waive`): bearer token, the same checks."""
        from gatecheck.ledger.decisions import waiver_event

        known(phase)
        return await decided(
            lambda: service.ledger.create_waiver(
                waiver_event(service.project, phase, body.check, body.group, body.for_, body.reason, body.by)
            )
        )

    @app.post(
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

        return await decided(write)

    @app.get("/api/v1/audit", response_model=None, responses={200: {"model": list[AuditEvent]}, 422: problem})
    async def audit(
        phase: str | None = Query(None, description="Only this phase."),
        since: str = Query("7d", description="e.g. 24h, 7d"),
    ) -> Any:
        """The audit trail, oldest first (as `gatecheck audit`)."""
        if phase is not None:
            known(phase)
        start = since_moment(since)
        events = await asyncio.to_thread(service.ledger.audit, [phase] if phase else None, start)
        return [e.model_dump(mode="json") for e in events]

    @app.post(
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
            denied = authenticate(
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
        known(phase)
        try:
            timeout = float(payload.metadata.get("timeout", ANSWER_TIMEOUT_S))
        except ValueError:
            raise HTTPException(422, "metadata.timeout: seconds, e.g. 8") from None
        judged: Verdict | None = None
        if "max_age" in payload.metadata:  # the latest verdict will do if it is recent enough
            age = duration_param(payload.metadata["max_age"], "metadata.max_age")
            try:
                judged = await recent(phase, age)
            except GatecheckError as exc:
                return PlainTextResponse(f"{phase}: {exc}", status_code=503)
        if judged is None:
            too_many = refused(request, phase)
            if too_many is not None:
                return too_many
            requester = Requester(
                controller="flagger", role=role, name=payload.name, namespace=payload.namespace,
                checksum=payload.checksum,
            )  # fmt: skip
            try:
                judged = await asyncio.wait_for(
                    service.evaluate_shared(phase, requester), max(0.1, min(timeout, 120))
                )
            except TimeoutError:
                return PlainTextResponse(
                    f"{phase}: no verdict within {timeout:g}s (the evaluation goes on): not a GO",
                    status_code=412,
                )
            except GatecheckError as exc:
                return PlainTextResponse(f"{phase}: {exc}", status_code=503)
        wanted = VerdictState.ROLLBACK if role == "rollback" else VerdictState.GO
        lines = [f"{phase}: {judged.verdict.value.upper()} as of {judged.as_of.isoformat()}", *judged.reasons]
        return PlainTextResponse(
            "\n".join(lines) + "\n", status_code=200 if judged.verdict is wanted else 412
        )

    # Outermost last: the Host is checked first, then the body is read and bounded, then the
    # guard above authenticates and rate-limits, then the route runs.
    settings = service.project.config.service
    app.add_middleware(BoundedBody, limit=MAX_REQUEST_BYTES)
    app.add_middleware(
        KnownHosts, allowed=KnownHosts.allowed_for(settings.listen, settings.url, settings.allowed_hosts)
    )
    return app


FLAGGER_ROLES = (
    "confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion", "rollback",
)  # fmt: skip
#: Default seconds an API request waits for an evaluation now: below Argo Rollouts' and
#: Flagger's default 10 s request timeouts, so the controller gets gatecheck's answer.
ANSWER_TIMEOUT_S = 8.0
#: Set to "false" on a verdict document that is not an evaluation (none yet, or timed out).
EVALUATED_HEADER = "Gatecheck-Evaluated"


#: Where the login form may send a browser back to: the chain or a phase page.
_LOCAL_PAGE = re.compile(r"/(phases/[A-Za-z0-9][A-Za-z0-9_.-]*)?")


def html_text(text: str) -> str:
    import html

    return html.escape(text)
