"""What the routes share: the answers a phase gets now or from its latest verdict, the
token and rate-limit checks, the pages' HTML response and login; built once per app over
one service."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.requests import Request  # a handler's annotation: FastAPI resolves it here

from gatecheck import __version__
from gatecheck.durations import parse_duration
from gatecheck.errors import ConfigError
from gatecheck.ledger.audit import AuditEvent
from gatecheck.results import Requester, Verdict, VerdictState
from gatecheck.service.auth import (
    RateLimiter,
    authorized,
    client_of,
    token_matches,
)
from gatecheck.service.core import SESSION_COOKIE, Service

FLAGGER_ROLES = (
    "confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion", "rollback",
)  # fmt: skip
#: Default seconds an API request waits for an evaluation now: below Argo Rollouts' and
#: Flagger's default 10 s request timeouts, so the controller gets gatecheck's answer.
ANSWER_TIMEOUT_S = 8.0
#: Set to "false" on a verdict document that is not an evaluation (none yet, or timed out).
EVALUATED_HEADER = "Gatecheck-Evaluated"


#: Where the login form may send a browser back to: the chain or a phase page.
LOCAL_PAGE = re.compile(r"/(phases/[A-Za-z0-9][A-Za-z0-9_.-]*)?")


T = TypeVar("T")


def newest_page(
    items: list[T], limit: int, moment: Callable[[T], datetime], request: Request
) -> tuple[list[T], dict[str, str]]:
    """A page of ``items`` (read oldest first, at most ``limit`` + 1 of the newest): the newest
    ``limit``, and when more were left out a ``Link: <…&until=…>; rel="next"`` header asking
    for the older ones. The next page starts at the newest item left out, inclusive; items
    sharing its moment move there too, so pages neither overlap nor skip one."""
    from gatecheck._values import document_time

    if len(items) <= limit:
        return items, {}
    boundary = moment(items[-limit - 1])
    kept = [item for item in items[-limit:] if moment(item) > boundary]
    if not kept:  # more than a page at one moment: all of them, or none would ever be shown
        return items, {}
    older = request.url.include_query_params(until=document_time(boundary), limit=limit)
    return kept, {"Link": f'<{older.path}?{older.query}>; rel="next"'}


def html_text(text: str) -> str:
    import html

    return html.escape(text)


def judged_for(verdict: Verdict, asking: Requester | None) -> bool:
    """Whether ``verdict`` may answer a rollout controller's request for a recent verdict
    (``max_age``). A canary's checks judge the canary deployed when they ran: a GO of the
    previous canary (another Flagger checksum, another Argo revision), or one as of before
    this rollout began (``started``), says nothing of this one, though it is minutes old. So
    with a checksum or revision, only a verdict that the same controller asked for the same
    canary of the same workload answers (a scheduled one, which no canary asked for, does
    not); with ``started``, only one as of since. A request naming neither takes any."""
    if asking is None:
        return True
    if asking.started is not None and verdict.as_of < asking.started:
        return False
    if asking.release is None:
        return True
    by = verdict.requested_by
    return (
        by is not None
        and (by.controller, by.name, by.namespace) == (asking.controller, asking.name, asking.namespace)
        and by.release == asking.release
    )


class Helpers:
    """What the routes of one app share, over its ``service`` and its evaluation ``limiter``."""

    def __init__(self, service: Service, limiter: RateLimiter) -> None:
        self.service = service
        self.limiter = limiter

    def refused(self, request: Request, phase: str) -> Any:
        """A 429 answer when this request may not start an evaluation of ``phase`` now; None
        when it may. Joining an evaluation already under way costs nothing."""
        if self.service.evaluating(phase) or self.limiter.allow(client_of(request)):
            return None
        return JSONResponse({"detail": "too many evaluations requested; try later"}, status_code=429)

    def authenticate(
        self, request: Request, *other: str | None, detail: str = "missing or wrong bearer token"
    ) -> Any:
        """None when the request carries the token (its bearer header, or one of ``other``:
        Flagger's metadata.token, the login form's field); else the answer: 401, or 429 once
        the client has failed AUTH_FAILURES_PER_MINUTE times in the last minute (every door
        counts the same failures, so guessing through one is as slow as through another)."""
        assert self.service.api_token is not None
        client = client_of(request)
        if self.service.auth_failures.exhausted(client):
            return JSONResponse({"detail": "too many failed authentications; try later"}, status_code=429)
        token = self.service.api_token
        if authorized(request, token) or any(token_matches(t, token) for t in other):
            return None
        self.service.auth_failures.allow(client)  # counts the failure
        headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse({"detail": detail}, status_code=401, headers=headers)

    def duration_param(self, text: str, what: str) -> timedelta:
        """A duration parameter (``48h``); a bad one is a 422 naming ``what``."""
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise HTTPException(422, f"{what}: {exc}") from exc

    def moment_param(self, text: str, what: str) -> datetime:
        """A time parameter (ISO 8601, naive means UTC); a bad one, or one ahead of now, is a
        422 naming ``what``."""
        from gatecheck.durations import parse_as_of
        from gatecheck.errors import ConfigError

        try:
            moment = parse_as_of(text)
        except ConfigError as exc:
            raise HTTPException(422, f"{what}: {str(exc).removeprefix('--as-of: ')}") from exc
        if moment > self.service.clock():
            raise HTTPException(422, f"{what}: {text!r} lies ahead of now")
        return moment

    def since_moment(self, since: str) -> datetime:
        """``?since=48h`` as the moment it names (a bad duration is a 422)."""
        return self.service.clock() - self.duration_param(since, "since")

    async def recent(self, phase: str, age: timedelta, asking: Requester | None = None) -> Verdict | None:
        """The latest verdict of ``phase`` if its as_of is at most ``age`` old and this
        service's definition of the gate judged it (a ledger that cannot be read raises
        GatecheckError). A verdict of another definition — recorded before the gate's checks,
        suites or thresholds changed and the service restarted, or by a replica still running
        the old ones — is no verdict of this gate, an invalidated one no evidence, and one
        that passed under a waiver or an approval no longer in force (revoked, ended), with a
        shadow check enforced since, or on a required phase's GO that no longer holds, no GO
        now: the caller's evaluation runs now. So is one that judged another canary than the
        rollout ``asking`` (:func:`judged_for`)."""
        from gatecheck._values import redefined
        from gatecheck.ledger.audit import HOLDING, no_longer_holds

        latest = await asyncio.to_thread(self.service.latest, phase)
        now = self.service.clock()
        if latest is None or latest.as_of < now - age:
            return None
        if not judged_for(latest, asking):
            return None
        if redefined(latest.gate_digest, self.service.project.gate_digest(phase)):
            return None
        trail = await asyncio.to_thread(self.service.ledger.audit, [phase], None, HOLDING)
        if no_longer_holds(trail, phase, latest, now) is not None:
            return None
        if await self.service.requirement_ended(latest, now) is not None:
            return None  # a GO resting on a GO of a phase it requires that no longer holds
        return latest

    def known(self, phase: str) -> None:
        if phase not in self.service.project.gates:
            raise HTTPException(404, f"unknown phase {phase!r}")

    def page_allowed(self, request: Request) -> bool:
        """Beyond loopback (a token is set) a page needs the token: the bearer header, or the
        cookie of a browser session that gave it on the login form."""
        if self.service.api_token is None:
            return True
        if request.headers.get("authorization"):  # a bearer given: right, or a counted failure
            return self.authenticate(request) is None
        session = request.cookies.get(SESSION_COOKIE)
        return session is not None and self.service.session_valid(session)

    def html(self, body: str, status_code: int = 200) -> Any:
        from fastapi.responses import HTMLResponse

        from gatecheck.render.html import CONTENT_SECURITY_POLICY

        headers = {
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }
        return HTMLResponse(body, status_code=status_code, headers=headers)

    def login(self, next_path: str, failed: bool = False) -> Any:
        from gatecheck.render.html import render_login

        return self.html(render_login(next_path, failed), 401)

    async def answer_now(self, phase: str, timeout: float, requested_by: Requester | None) -> Any:
        """A fresh evaluation's document (shared with one under way), or, past ``timeout``,
        an inconclusive document saying so (the evaluation goes on and is recorded)."""
        try:
            fresh = await asyncio.wait_for(self.service.evaluate_shared(phase, requested_by), timeout)
        except TimeoutError:
            return self.placeholder(
                phase,
                f"the evaluation of {phase} did not finish within {timeout:g}s; it goes on and is "
                "recorded: ask again",
            )
        return fresh.document()

    def placeholder(self, phase: str, reason: str) -> Any:
        """HTTP 200 with an inconclusive verdict document: there is no verdict to give."""
        gate = self.service.project.gates[phase]
        document = Verdict(
            phase=phase,
            environment=gate.environment,
            description=" ".join(gate.description.split()),
            as_of=self.service.clock(),
            verdict=VerdictState.INCONCLUSIVE,
            reasons=[reason],
            checks=[],
            config_hash=self.service.project.config_hash,
            gatecheck_version=__version__,
        ).document()
        return JSONResponse(document, headers={EVALUATED_HEADER: "false"})

    async def decided(self, write: Callable[[], AuditEvent]) -> Any:
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
