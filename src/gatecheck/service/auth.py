"""Who may do what: the bearer token (constant-time comparison), per-client rate limits for
evaluations and failed authentications.
"""

from __future__ import annotations

import time
from typing import Any

from gatecheck.config.models import ServiceConfig


def token_matches(given: str | None, token: str) -> bool:
    import hmac

    return given is not None and hmac.compare_digest(given.encode(), token.encode())


#: Largest request body accepted (only the Flagger webhooks take one: a small JSON payload).


def client_of(request: Any) -> str:
    return request.client.host if request.client else "unknown"


MAX_REQUEST_BYTES = 64 * 1024
#: Evaluations a client may start a minute, unless service.evaluations_per_minute says otherwise.
EVALUATE_PER_MINUTE: int = ServiceConfig.model_fields["evaluations_per_minute"].default
#: Failed authentications per client and minute before every further attempt is a 429.
AUTH_FAILURES_PER_MINUTE = 10


def etags(header: str | None) -> set[str]:
    """The entity tags of an If-None-Match header (``*`` matches any)."""
    if not header:
        return set()
    return {t.strip().removeprefix("W/") for t in header.split(",")}


def authorized(request: Any, token: str) -> bool:
    import hmac

    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class RateLimiter:
    """A sliding one-minute window per client: enough to stop a loop hammering evaluations."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.seen: dict[str, list[float]] = {}

    def exhausted(self, client: str) -> bool:
        """The client has used its minute (without counting this look)."""
        now = time.monotonic()
        return sum(1 for t in self.seen.get(client, []) if now - t < 60) >= self.per_minute

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        if len(self.seen) > 1024:  # a service runs for weeks: forget clients quiet for a minute
            self.seen = {c: ts for c, ts in self.seen.items() if ts and now - ts[-1] < 60}
        recent = [t for t in self.seen.get(client, []) if now - t < 60]
        if len(recent) >= self.per_minute:
            self.seen[client] = recent
            return False
        recent.append(now)
        self.seen[client] = recent
        return True
