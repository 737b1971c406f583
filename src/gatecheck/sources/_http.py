"""The HTTP sources' one map of httpx's errors to gatecheck's (Prometheus's API, a scrape,
JUnit reports over HTTP): the same words for the same failure whichever source met it."""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from gatecheck.errors import SourceTimeout, SourceUnavailable, network_reason, redact

#: The most one HTTP answer may hold (a Prometheus answer, an exposition, a JUnit listing or
#: report, a probe's or the service's answer): an endless body was held byte by byte.
MAX_ANSWER_BYTES = 64 * 2**20

# Headers that describe the body as it came over the wire, not as it is kept (decoded).
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


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


class AnswerTooLarge(SourceUnavailable):
    """An HTTP answer longer than it may be."""


class _Body:
    """An answer's body read chunk by chunk, at most ``limit`` bytes (the one rule both
    fetches keep); :meth:`response` gives the answer as it is kept (decoded)."""

    def __init__(self, response: httpx.Response, what: str, limit: int) -> None:
        self.source, self.what, self.limit = response, what, limit
        self.chunks: list[bytes] = []
        self.size = 0
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self.too_large()

    def too_large(self) -> AnswerTooLarge:
        return AnswerTooLarge(f"{self.what} answered more than {self.limit // 2**20} MiB")

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise self.too_large()
        self.chunks.append(chunk)

    def response(self) -> httpx.Response:
        kept = [(k, v) for k, v in self.source.headers.multi_items() if k.lower() not in _WIRE_HEADERS]
        return httpx.Response(
            self.source.status_code, headers=kept, content=b"".join(self.chunks), request=self.source.request
        )


async def fetch(
    client: httpx.AsyncClient, method: str, url: str, *, what: str, timeout: float,
    limit: int = MAX_ANSWER_BYTES, **options: Any,
) -> httpx.Response:  # fmt: skip
    """``client.request(method, url, **options)``, its whole answer read within ``timeout``
    seconds and at most ``limit`` bytes (decoded). httpx's own timeout bounds each read, not
    the answer: a server sending a byte a second was waited on forever, and one sending
    without end was held until memory ran out. Past either: ``SourceTimeout`` (``WHAT did not
    answer within 5s``) or :class:`AnswerTooLarge`; httpx's other errors as they are."""
    try:
        async with asyncio.timeout(timeout):
            async with client.stream(method, url, **options) as response:
                body = _Body(response, what, limit)
                async for chunk in response.aiter_bytes():
                    body.add(chunk)
    except (TimeoutError, httpx.TimeoutException):  # the whole answer's, or one read's
        raise SourceTimeout(f"{what} did not answer within {timeout:g}s") from None
    return body.response()


def fetch_sync(
    client: httpx.Client, method: str, url: str, *, what: str, timeout: float,
    limit: int = MAX_ANSWER_BYTES, **options: Any,
) -> httpx.Response:  # fmt: skip
    """:func:`fetch` for a blocking client: the deadline is checked after each read, each
    read bounded by the client's own timeout."""
    deadline = time.monotonic() + timeout
    late = SourceTimeout(f"{what} did not answer within {timeout:g}s")
    try:
        with client.stream(method, url, **options) as response:
            body = _Body(response, what, limit)
            for chunk in response.iter_bytes():
                body.add(chunk)
                if time.monotonic() > deadline:
                    raise late
    except httpx.TimeoutException:  # one read's: the same words as the whole answer's
        raise late from None
    return body.response()
