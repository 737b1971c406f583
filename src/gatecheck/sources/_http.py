"""The HTTP sources' one map of httpx's errors to gatecheck's (Prometheus's API, a scrape,
JUnit reports over HTTP): the same words for the same failure whichever source met it."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from gatecheck.errors import SourceTimeout, SourceUnavailable, network_reason, redact


@functools.cache
def verified_tls() -> ssl.SSLContext:
    """The process's one TLS context that verifies servers (certifi's CAs, or
    ``SSL_CERT_FILE``/``SSL_CERT_DIR`` as httpx reads them), for every HTTP client gatecheck
    opens. Loading the CA bundle costs ~20 ms of CPU, and httpx does it for every client it
    builds: a scrape, a probe request or a notification paid it on every evaluation. An
    ``SSLContext`` is safe to share between clients and threads; the environment is read on
    first use."""
    return httpx.create_ssl_context()


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
