"""HTTP probe source: an active smoke test. A suite on it sends one synthetic request to the
service (method, path, a body template holding a unique probe id, headers whose values come
from the environment), measures the status and the latency, and can wait for the request's
effect in another source of the environment (the row with that id, within N seconds).

A probe changes the world it watches, so it runs only in a gate that allows it (``probes:
true``), never in a backtest, and its check is marked synthetic. A service that does not
answer is a measurement (status 0, ``answered`` 0), not a source error: "the service is down"
is what a smoke test is for, and a suite can make it a rollback trigger.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
from pydantic import field_validator

from gatecheck.durations import Duration, format_duration
from gatecheck.errors import SourceTimeout, SourceUnavailable, network_reason, redact
from gatecheck.frozen import Frozen
from gatecheck.sources._http import MAX_ANSWER_BYTES, AnswerTooLarge, fetch, verified_tls
from gatecheck.sources.base import QueryParameters, Source, SourceSettings
from gatecheck.sources.probe import Probe

#: The header names a probe may not set itself (httpx and the server own them).
_RESERVED = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class HttpSourceConfig(SourceSettings):
    """A service to probe: its base URL, and headers whose values are read from environment
    variables when a probe is sent (``{Authorization: INGEST_TOKEN}``: never the value itself)."""

    type: Literal["http"]
    schemes: ClassVar[tuple[str, ...]] = ("http", "https")
    headers: dict[str, str] = {}

    @field_validator("headers")
    @classmethod
    def _names_variables(cls, value: dict[str, str]) -> dict[str, str]:
        for header, variable in value.items():
            if header.lower() in _RESERVED:
                raise ValueError(f"{header}: set by the HTTP client, not by a probe")
            if not variable or not variable.replace("_", "").isalnum():
                raise ValueError(
                    f"{header}: name the environment variable holding its value (e.g. INGEST_TOKEN)"
                )
        return value


class ProbeRequest(Frozen):
    """The synthetic request: ``body`` may name ``{probe_id}`` (unique per probe) and
    ``{as_of}`` (the evaluation's time, ISO 8601)."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    path: str = "/"
    body: str | None = None
    content_type: str = "application/json"

    @field_validator("path")
    @classmethod
    def _a_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("a path on the source's URL, starting with / (e.g. /ingest/hrv)")
        return value


class ProbeEffect(Frozen):
    """Where the request's effect shows: ``query`` on another source of the environment,
    naming ``{probe_id:text}`` (PostgreSQL) or ``{probe_id:String}`` (ClickHouse), asked every
    ``every`` until it returns a row or ``within`` has passed."""

    source: str
    query: str
    within: Duration = timedelta(seconds=10)
    every: Duration = timedelta(milliseconds=500)

    @field_validator("query")
    @classmethod
    def _names_the_probe(cls, value: str) -> str:
        if "{probe_id:" not in value:
            raise ValueError("name the probe's id in the query, e.g. WHERE message_id = {probe_id:text}")
        return value


class ProbeQuery(Frozen):
    """The ``query:`` of a suite on an http source."""

    form_keys: ClassVar[frozenset[str]] = frozenset({"request"})

    request: ProbeRequest
    effect: ProbeEffect | None = None

    def problems(self) -> list[str]:
        return []

    def query_parameters(self) -> dict[str, str]:
        return {}


def body_of(request: ProbeRequest, probe_id: str, as_of: str) -> str | None:
    """The body with the probe's id and time filled in (JSON-escaped for a JSON body)."""
    if request.body is None:
        return None
    quote = (lambda text: json.dumps(text)[1:-1]) if "json" in request.content_type else (lambda text: text)
    return request.body.replace("{probe_id}", quote(probe_id)).replace("{as_of}", quote(as_of))


class HttpSource(Source):
    """Sends probes; a suite's answer is built by the gate (:mod:`gatecheck.evaluation.probe`)."""

    def __init__(self, name: str, config: HttpSourceConfig, root: Path) -> None:
        super().__init__(name, config)
        self.base = config.url.rstrip("/")

    def headers(self) -> dict[str, str]:
        """The configured headers' values from the environment (an unset one is refused)."""
        found = {}
        for header, variable in self.config.headers.items():
            value = os.environ.get(variable)
            if not value:
                raise SourceUnavailable(
                    f"{self.name}: header {header}: environment variable {variable} is not set"
                )
            found[header] = value
        return found

    async def send(self, request: ProbeRequest, probe_id: str, as_of: str) -> dict[str, Any]:
        """One synthetic request: its status (0: no answer), latency, and why it had no answer."""
        headers = {"content-type": request.content_type, **self.headers(), "x-gatecheck-probe": probe_id}
        body = body_of(request, probe_id, as_of)
        started = time.perf_counter()
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout, follow_redirects=False, verify=verified_tls()
            ) as client:
                response = await fetch(
                    client, request.method, self.base + request.path, content=body, headers=headers,
                    what=redact(self.base), timeout=self.timeout,
                )  # fmt: skip
        except (SourceTimeout, AnswerTooLarge) as exc:
            reason = f"no answer within {format_duration(self.config.timeout)}"
            if isinstance(exc, AnswerTooLarge):
                reason = f"an answer of more than {MAX_ANSWER_BYTES // 2**20} MiB"
            return {"status": 0, "latency_ms": (time.perf_counter() - started) * 1000, "error": reason}
        except httpx.HTTPError as exc:
            reason = network_reason(exc) or type(exc).__name__
            if isinstance(exc, httpx.TimeoutException):
                reason = f"no answer within {format_duration(self.config.timeout)}"
            return {"status": 0, "latency_ms": (time.perf_counter() - started) * 1000, "error": reason}
        return {
            "status": response.status_code,
            "latency_ms": (time.perf_counter() - started) * 1000,
            "error": None,
        }

    async def query(self, text: Any, parameters: QueryParameters) -> Any:
        raise SourceUnavailable(f"{self.name}: an http source answers probes only (a suite with request:)")

    async def close(self) -> None:
        return None


def explain_query(
    name: str, config: Any, query: Any, parameters: QueryParameters, root: Path
) -> dict[str, Any]:
    """What a probe would send (nothing sent): the request, and the effect's query."""
    url = redact(config.url.rstrip("/") + query.request.path)
    requests = [
        {
            "what": f"a synthetic {query.request.method} request (probe)",
            "text": body_of(query.request, "<probe id>", "<as_of>") or "(no body)",
            "parameters": [
                {"name": header, "type": "", "sent": f"${{{variable}}}"}
                for header, variable in config.headers.items()
            ],
        }
    ]
    if query.effect is not None:
        requests.append(
            {
                "what": f"then, every {format_duration(query.effect.every)} for up to "
                f"{format_duration(query.effect.within)}, on source {query.effect.source}",
                "text": query.effect.query,
                "parameters": [{"name": "probe_id", "type": "", "sent": "<probe id>"}],
            }
        )
    return {"sent_to": url, "requests": requests}


async def check_source(name: str, config: Any, root: Path, suites: list[Any]) -> Probe:
    """Reachable? One GET of the base URL (any answer is reachable); no probe is sent."""
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(
            timeout=config.timeout.total_seconds(), follow_redirects=False, verify=verified_tls()
        ) as client:
            response = await fetch(
                client, "GET", config.url, what=redact(config.url), timeout=config.timeout.total_seconds()
            )
    except (SourceTimeout, AnswerTooLarge) as exc:  # its words name the URL already
        return Probe(reachable=False, problems=[str(exc)])
    except httpx.HTTPError as exc:
        reason = network_reason(exc) or type(exc).__name__
        return Probe(reachable=False, problems=[f"cannot reach {redact(config.url)}: {reason}"])
    return Probe(
        latency_ms=(time.perf_counter() - started) * 1000,
        checked=f"answered {response.status_code} (no probe sent)",
    )
