"""The FastAPI application over one :class:`~gatecheck.service.core.Service`: its error
handler, its guard (token and rate limit for anything but a read), its middlewares, and the
routers of ``routes_health``, ``routes_pages``, ``routes_api``, ``routes_decisions`` and
``routes_flagger``, whose shared helpers are :mod:`gatecheck.service.helpers`.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.registry import CollectorRegistry
from starlette.requests import Request  # a handler's annotation: FastAPI resolves it here

from gatecheck import __version__
from gatecheck.errors import GatecheckError
from gatecheck.service.auth import (
    MAX_REQUEST_BYTES,
    RateLimiter,
    client_of,
)
from gatecheck.service.collector import VerdictCollector
from gatecheck.service.core import Service
from gatecheck.service.middleware import BoundedBody, KnownHosts


def create_app(service: Service) -> Any:
    """The FastAPI app: /metrics, /healthz, /readyz, the status pages and the /api/v1 API,
    one router per group of routes (``routes_*`` modules) over one service."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from gatecheck.service import routes_api, routes_decisions, routes_flagger, routes_health, routes_pages
    from gatecheck.service.helpers import Helpers

    registry = CollectorRegistry(auto_describe=False)
    registry.register(VerdictCollector(service))
    app = FastAPI(title="gatecheck", version=__version__, docs_url=None, redoc_url=None)

    @app.exception_handler(GatecheckError)
    async def unavailable(request: Request, exc: GatecheckError) -> Any:
        """gatecheck's own trouble answering (a ledger it cannot read, an evaluation worker that
        died): 503 with what happened, from every route that has no answer of its own for it."""
        return JSONResponse({"detail": str(exc)}, status_code=503)

    limiter = RateLimiter(service.project.config.service.evaluations_per_minute)
    h = Helpers(service, limiter)

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
                denied = h.authenticate(request)
                if denied is not None:
                    return denied
            if not flagger and not limiter.allow(client_of(request)):
                return JSONResponse({"detail": "too many evaluations requested; try later"}, status_code=429)
        return await call_next(request)

    app.include_router(routes_health.routes(service, h, registry))
    for group in (routes_pages, routes_api, routes_decisions, routes_flagger):
        app.include_router(group.routes(service, h))

    # Outermost last: the Host is checked first, then the body is read and bounded, then the
    # guard above authenticates and rate-limits, then the route runs.
    settings = service.project.config.service
    app.add_middleware(BoundedBody, limit=MAX_REQUEST_BYTES)
    app.add_middleware(
        KnownHosts, allowed=KnownHosts.allowed_for(settings.listen, settings.url, settings.allowed_hosts)
    )
    return app
