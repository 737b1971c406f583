"""Prometheus source (httpx): PromQL instant queries through the HTTP API.

Each query runs as ``GET /api/v1/query?query=…&time=<window_end>`` so an evaluation at a
given ``as_of`` is reproducible. The query text may use ``$window`` (the check's window as
a PromQL duration, e.g. ``3600s``), ``$window_s``, ``$settle``, and ``$window_start`` /
``$window_end`` / ``$as_of`` (Unix seconds, for ``@`` modifiers).

Frame: a PromQL text query gives one row per series — one column per label plus ``value``;
a ``measures:`` query runs one PromQL per measure and joins them on their labels, one
column per measure. NaN (e.g. 0/0) and a missing series are NULL: no evidence, never a pass.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
from pydantic import Field, SecretStr

from gatecheck.errors import QueryError, SourceTimeout, SourceUnavailable, redact
from gatecheck.frozen import NAME, Frozen
from gatecheck.sources.base import MAX_ROWS, QueryParameters, Source, SourceSettings, iso_utc
from gatecheck.sources.probe import Probe, counted

if TYPE_CHECKING:
    import pandas as pd

# ---------------------------------------------------------------- configuration and query


class PrometheusSourceConfig(SourceSettings):
    """A Prometheus server (PromQL over its HTTP API) or a scrape endpoint (``scrape+http(s)://``:
    one service's exposition, read directly; see :mod:`gatecheck.sources.scrape`)."""

    type: Literal["prometheus"]
    username: str | None = None  # basic auth (or user:password@ in the URL)
    password: SecretStr | None = None  # write "${PROMETHEUS_PASSWORD}"
    bearer_token: SecretStr | None = None  # write "${PROMETHEUS_TOKEN}"
    schemes: ClassVar[tuple[str, ...]] = ("http", "https", "scrape+http", "scrape+https")

    @property
    def scrape(self) -> bool:
        return self.url.startswith("scrape+")


#: ``$name`` placeholders a PromQL query may use (see README, "Prometheus suites").
PROMQL_PLACEHOLDERS = ("window", "window_s", "window_start", "window_end", "as_of", "settle")
_PROMQL_PLACEHOLDER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def promql_problems(promql: str) -> list[str]:
    unknown = sorted({m.group(1) for m in _PROMQL_PLACEHOLDER.finditer(promql)} - set(PROMQL_PLACEHOLDERS))
    return [
        f"unknown placeholder ${name} (known: {', '.join('$' + p for p in PROMQL_PLACEHOLDERS)})"
        for name in unknown
    ]


class PromQuery(Frozen):
    """The ``query:`` of a suite on a Prometheus source: named PromQL measures, one column each."""

    #: Keys that mark a suite's ``query:`` mapping as this form.
    form_keys: ClassVar[frozenset[str]] = frozenset({"measures"})

    measures: dict[str, str] = Field(min_length=1)

    def problems(self) -> list[str]:
        found = []
        for name, promql in self.measures.items():
            if not NAME.match(name):
                found.append(f"measures.{name}: a measure is a column name: lowercase letters, digits and _")
            found.extend(f"measures.{name}: {p}" for p in promql_problems(promql))
        return found


def scrape_query_problems(config: PrometheusSourceConfig, query: Any) -> list[tuple[str, str, str]]:
    """(key, what the source is, problem) for a suite query that this source's configuration
    cannot answer: on a scrape source, every measure must be answerable from one snapshot."""
    if not config.scrape:
        return []
    from gatecheck.sources.scrape import scrape_problems

    measures = query.measures if isinstance(query, PromQuery) else {"value": query}
    found: list[tuple[str, str, str]] = []
    for measure, promql in measures.items():
        if isinstance(promql, str):
            where = f"query.measures.{measure}" if isinstance(query, PromQuery) else "query"
            found.extend((where, "a scrape source", p) for p in scrape_problems(promql))
    return found


# ---------------------------------------------------------------- the source


def render_promql(promql: str, parameters: QueryParameters) -> str:
    """Fill ``$window``-style placeholders (longest names first: $window_s before $window)."""
    start, end = parameters["window_start"], parameters["window_end"]
    as_of = parameters.get("as_of", end)
    assert isinstance(start, datetime) and isinstance(end, datetime) and isinstance(as_of, datetime)
    window_s = max(1, round((end - start).total_seconds()))
    settle_s = max(0, round((as_of - end).total_seconds()))
    values = {
        "window_start": f"{start.timestamp():.3f}",
        "window_end": f"{end.timestamp():.3f}",
        "window_s": str(window_s),
        "window": f"{window_s}s",
        "as_of": f"{as_of.timestamp():.3f}",
        "settle": f"{settle_s}s",
    }
    for name in sorted(values, key=len, reverse=True):
        promql = promql.replace(f"${name}", values[name])
    return promql


def explain_query(
    name: str, config: PrometheusSourceConfig, query: Any, parameters: QueryParameters, root: Path
) -> dict[str, Any]:
    """The instant queries the source sends for ``query`` (``gatecheck explain``)."""
    measures = query.measures if isinstance(query, PromQuery) else {"value": query}
    end = parameters["window_end"]
    assert isinstance(end, datetime)
    at = {"name": "time", "type": "", "sent": f"{end.timestamp():.3f}", "means": iso_utc(end)}
    if config.scrape:
        sent_to = f"one scrape of {redact(config.url)}, each measure evaluated on that snapshot"
    else:
        sent_to = f"Prometheus at {redact(config.url)}: GET /api/v1/query (instant queries)"
    requests = [
        {"what": f"measure {measure}", "text": render_promql(promql, parameters), "parameters": [at]}
        for measure, promql in measures.items()
    ]
    return {"sent_to": sent_to, "requests": requests}


async def check_source(name: str, config: PrometheusSourceConfig, root: Path, suites: list[Any]) -> Probe:
    """Reach the server (its build info: version) or, for a scrape source, the exposition."""
    started = time.perf_counter()
    if config.scrape:
        from gatecheck.sources.scrape import ScrapeSource

        scrape = ScrapeSource(name, config, root)
        try:
            samples = await scrape._samples()
        except (SourceUnavailable, SourceTimeout) as exc:
            return Probe(reachable=False, problems=[str(exc)])
        except QueryError as exc:
            return Probe(problems=[str(exc)])
        finally:
            await scrape.close()
        families = len({sample[0] for sample in samples})
        return Probe(
            version="an exposition (no server)",
            latency_ms=(time.perf_counter() - started) * 1000,
            checked=f"{counted(len(samples), 'sample')} of {counted(families, 'series name')}",
        )
    source = PrometheusSource(name, config, root)
    shown = redact(source.base)
    try:
        response = await source._client.get(f"{source.base}/api/v1/status/buildinfo")
    except httpx.TimeoutException:
        return Probe(
            reachable=False, problems=[f"Prometheus at {shown} did not answer within {source.timeout:g}s"]
        )
    except httpx.HTTPError as exc:
        return Probe(reachable=False, problems=[f"cannot reach Prometheus at {shown}: {exc}"])
    finally:
        await source.close()
    latency = (time.perf_counter() - started) * 1000
    if response.status_code in (401, 403):
        return Probe(
            latency_ms=latency, problems=[f"Prometheus refused the credentials ({response.status_code})"]
        )
    try:
        version = response.json()["data"]["version"]
    except (ValueError, KeyError, TypeError):
        return Probe(
            latency_ms=latency,
            problems=[
                f"{shown} answered {response.status_code} without Prometheus build info (not its API?)"
            ],
        )
    return Probe(version=f"Prometheus {version}", latency_ms=latency, checked="reachable")


def sample_value(raw: Any, where: str = "") -> float | None:
    """A sample's value as Prometheus encodes it (a string: "0.5", "NaN", "+Inf"); NaN is
    NULL (no evidence). Anything else (a JSON true, an object, a word) is an error, never a
    number: ``float(True)`` would read as 1.0."""
    if isinstance(raw, str):
        try:
            number = float(raw)
        except ValueError:
            number = None
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        number = float(raw)
    else:
        number = None
    if number is None:
        shown = repr(raw) if len(repr(raw)) <= 40 else repr(raw)[:37] + "..."
        raise QueryError(f"{where}a sample's value is not a number: {shown}")
    return None if math.isnan(number) else number


def join_series(
    answers: list[tuple[str, list[tuple[dict[str, str], float | None]]]], max_series: int
) -> pd.DataFrame:
    """Each measure's series joined on their labels into one frame. A series' metric name
    (``__name__``) is dropped, as Prometheus's operators drop it, unless that would make two
    series of one measure alike: then it stays, as the group column ``__name__``, so that no
    series is ever folded into another (a failing one hidden by a passing one). Two series that
    are alike even with it are an error."""
    rows: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    named = any(
        len({tuple(sorted((k, v) for k, v in labels.items() if k != "__name__")) for labels, _ in series})
        < len(series)
        for _, series in answers
    )
    for measure, series in answers:
        where = f"{measure}: " if measure != "value" else ""
        for labels, value in series:
            kept = labels if named else {k: v for k, v in labels.items() if k != "__name__"}
            key = tuple(sorted(kept.items()))
            row = rows.setdefault(key, dict(kept))
            if measure in row:
                shown = ", ".join(f"{k}={v}" for k, v in key) or "no labels"
                raise QueryError(f"{where}two series with the same labels ({shown}): none may be dropped")
            row[measure] = value
    if len(rows) > max_series:
        raise QueryError(f"the answer has {len(rows)} series, more than the {max_series} a suite may judge")
    return measures_frame(list(rows.values()), [measure for measure, _ in answers])


def measures_frame(rows: list[dict[str, Any]], measures: list[str]) -> pd.DataFrame:
    """Rows (labels + measure values) as a frame: label columns sorted, then the measures;
    a measure no row has is a NULL column, not a missing one."""
    import pandas as pd

    if not rows:
        return pd.DataFrame(columns=measures)
    frame = pd.DataFrame(rows)
    for measure in measures:
        if measure not in frame.columns:
            frame[measure] = None
    label_columns = sorted(str(c) for c in frame.columns if c not in measures)
    frame = frame[label_columns + measures]
    return frame.sort_values(label_columns).reset_index(drop=True) if label_columns else frame


class PrometheusSource(Source):
    """A Prometheus server's HTTP API."""

    max_series: ClassVar[int] = MAX_ROWS

    def __init__(self, name: str, config: PrometheusSourceConfig, root: Path) -> None:
        super().__init__(name, config)
        self.config: PrometheusSourceConfig = config
        parts = urlsplit(config.url)
        auth: httpx.Auth | None = None
        username = config.username or (unquote(parts.username) if parts.username else None)
        password = config.password.get_secret_value() if config.password else unquote(parts.password or "")
        if username:
            auth = httpx.BasicAuth(username, password)
        headers = {}
        if config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {config.bearer_token.get_secret_value()}"
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        self.base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self._client = httpx.AsyncClient(auth=auth, headers=headers, timeout=self.timeout)

    async def query(self, text: Any, parameters: QueryParameters) -> pd.DataFrame:
        measures = text.measures if isinstance(text, PromQuery) else {"value": text}
        end = parameters["window_end"]
        assert isinstance(end, datetime)
        answers = [
            (measure, await self._instant(render_promql(promql, parameters), end, measure))
            for measure, promql in measures.items()
        ]
        return join_series(answers, self.max_series)

    async def _instant(
        self, promql: str, at: datetime, measure: str
    ) -> list[tuple[dict[str, str], float | None]]:
        url = f"{self.base}/api/v1/query"
        where = f"{measure}: " if measure != "value" else ""
        try:
            response = await self._client.get(url, params={"query": promql, "time": f"{at.timestamp():.3f}"})
        except httpx.TimeoutException as exc:
            raise SourceTimeout(
                f"{where}Prometheus at {redact(self.base)} did not answer within {self.timeout:g}s"
            ) from exc
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"{where}cannot reach Prometheus at {redact(self.base)}: {exc}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise SourceUnavailable(
                f"{where}Prometheus at {redact(self.base)} answered {response.status_code} without JSON"
            ) from exc
        if response.status_code in (401, 403):
            raise SourceUnavailable(f"{where}Prometheus refused the credentials ({response.status_code})")
        if body.get("status") != "success":
            # Prometheus's own words, e.g. 'parse error: unexpected ")"'.
            raise QueryError(
                f"{where}{body.get('errorType', 'error')}: {body.get('error', response.text[:300])}"
            )
        data = body.get("data", {})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            return [({}, sample_value(result[1], where))]
        if kind != "vector":
            raise QueryError(f"{where}expected an instant vector or scalar, got a {kind}")
        if len(result) > self.max_series:
            raise QueryError(
                f"{where}the answer has {len(result)} series, more than the {self.max_series} a suite may "
                "judge: aggregate in PromQL (sum by …)"
            )
        return [(dict(item["metric"]), sample_value(item["value"][1], where)) for item in result]

    async def close(self) -> None:
        await self._client.aclose()
