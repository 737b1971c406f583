"""The HTTP sources' one map of httpx's errors to gatecheck's (Prometheus's API, a scrape,
JUnit reports over HTTP): the same words for the same failure whichever source met it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from gatecheck.errors import SourceTimeout, SourceUnavailable, network_reason, redact


@contextmanager
def http_errors(what: str, timeout: float) -> Iterator[None]:
    """Inside, an httpx error becomes ``SourceTimeout`` (``WHAT did not answer within 5s``)
    or ``SourceUnavailable`` (``WHAT answered 404 to URL``; ``cannot reach WHAT: …``). ``what`` names
    the server and never holds a secret (a redacted URL)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise SourceTimeout(f"{what} did not answer within {timeout:g}s") from exc
    except httpx.HTTPStatusError as exc:
        asked = redact(str(exc.request.url))
        raise SourceUnavailable(f"{what} answered {exc.response.status_code} to {asked}") from None
    except httpx.HTTPError as exc:
        reason = network_reason(exc) or " ".join(str(exc).split()) or type(exc).__name__
        raise SourceUnavailable(f"cannot reach {what}: {reason}") from None
