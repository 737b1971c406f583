"""The status pages (the chain, a phase) and their login."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query
from starlette.requests import Request  # a handler's annotation: FastAPI resolves it here

from gatecheck.errors import GatecheckError
from gatecheck.service.core import SESSION_COOKIE, Service
from gatecheck.service.helpers import LOCAL_PAGE, Helpers, html_text


def routes(service: Service, h: Helpers) -> APIRouter:
    """The routes of this group, over ``service`` (``h``: the helpers they share)."""
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    async def chain_page(request: Request) -> Any:
        """The phase chain: every phase's latest verdict, soak and recent verdicts."""
        if not h.page_allowed(request):
            return h.login("/")
        from gatecheck.render.html import render_chain

        now = service.clock()

        def page() -> str:
            return render_chain(service.chain_cards(now), now, service.refresh_s())

        return h.html(await asyncio.to_thread(page))

    @router.get("/phases/{phase}", include_in_schema=False)
    async def phase_page(request: Request, phase: str, export: bool = Query(False)) -> Any:
        """One phase: its checks, evidence, thresholds, failing groups, reasons, history."""
        if phase not in service.project.gates:
            return h.html(f"<!doctype html><title>404</title><p>unknown phase {html_text(phase)}</p>", 404)
        if not h.page_allowed(request):
            return h.login(f"/phases/{phase}")
        from gatecheck.render.html import render_phase

        now = service.clock()

        def page() -> str:
            return render_phase(service.phase_page(phase, now), now, service.refresh_s(), export=export)

        try:
            return h.html(await asyncio.to_thread(page))
        except GatecheckError as exc:
            return h.html(f"<!doctype html><title>503</title><p>{html_text(str(exc))}</p>", 503)

    @router.post("/session", include_in_schema=False)
    async def session(request: Request) -> Any:
        """The login form: the token once, in the body; a session cookie in return."""
        from urllib.parse import parse_qs

        from fastapi.responses import RedirectResponse

        form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=8)
        next_path = form.get("next", ["/"])[0]
        if not LOCAL_PAGE.fullmatch(next_path):
            next_path = "/"
        if service.api_token is None:
            return RedirectResponse(next_path, status_code=303)
        denied = h.authenticate(request, form.get("token", [""])[0])
        if denied is not None:
            return denied if denied.status_code == 429 else h.login(next_path, failed=True)
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

    return router
