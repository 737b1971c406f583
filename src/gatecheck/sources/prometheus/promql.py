"""What the Prometheus sources share — a server's HTTP API (:mod:`.api`) and one service's
exposition read directly (:mod:`.scrape`): the source's configuration, a suite's PromQL query
(one text, or named ``measures``), the ``$window``-style placeholders, and the frame a set of
series becomes.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, SecretStr

from gatecheck.durations import summed_parts
from gatecheck.errors import QueryError
from gatecheck.frozen import NAME, Frozen
from gatecheck.sources.base import QueryParameters, SourceSettings

if TYPE_CHECKING:
    import pandas as pd


class PrometheusSourceConfig(SourceSettings):
    """A Prometheus server (PromQL over its HTTP API) or a scrape endpoint (``scrape+http(s)://``:
    one service's exposition, read directly; see :mod:`gatecheck.sources.prometheus.scrape`)."""

    type: Literal["prometheus"]
    username: str | None = None  # basic auth (or user:password@ in the URL)
    password: SecretStr | None = None  # write "${PROMETHEUS_PASSWORD}"
    bearer_token: SecretStr | None = None  # write "${PROMETHEUS_TOKEN}"
    schemes: ClassVar[tuple[str, ...]] = ("http", "https", "scrape+http", "scrape+https")

    @property
    def scrape(self) -> bool:
        return self.url.startswith("scrape+")


#: ``$name`` placeholders a PromQL query may use (see docs/sources/prometheus.md).
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


#: PromQL's duration units: gatecheck's, and years.
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def promql_seconds(text: str) -> float:
    """A PromQL duration (``5m``, ``1h30m``, ``3600s``) in seconds; QueryError otherwise."""
    seconds = summed_parts(text, _PART, _UNITS)
    if seconds is None:
        raise QueryError(f"bad duration {text!r}")
    return seconds


#: How far before a range a series is looked for to tell a counter that existed from one
#: created inside the range (:func:`counted_from_zero`). A range of raw samples, not a
#: subquery: Prometheus reads a range function's samples one series at a time, where a
#: subquery holds all its points at once (bench/prometheus_counters.py: 7,262 samples held
#: at most, as the query as written, against 41,306 for ``[1d:10m]``).
EXISTED_LOOKBACK = "1d"
_QUOTED = r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'"
_COUNTER_RANGE = re.compile(
    r"(?<![\w:])(rate|increase)\(\s*"
    r"((?:[a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(?:\{(?:[^{}\"']|" + _QUOTED + r")*\})?)"
    r"\s*\[\s*(\d[0-9a-z]*)\s*\]\s*\)"
)
_STRING_SPANS = re.compile(_QUOTED + r"|`[^`]*`")


def counted_from_zero(promql: str) -> str:
    """``promql`` with each ``rate(S[R])`` and ``increase(S[R])`` of a plain selector ``S``
    (no ``offset``, ``@`` or subquery) counting a series that **appeared inside the range**
    from the zero it started at, as a Prometheus that ingests created timestamps does (and
    the scrape source does, from ``_created``).

    A counter with labels has no series until its first increment: it appears with the
    events since (the first 30 answers of 503 appear as ``30``), and ``increase()`` counts
    from that first sample — 0. So a series with no sample in the day before the range
    (``last_over_time(S[1d] offset R)``) whose target *was* scraped then (its ``up`` series)
    or whose process started inside the range (its ``process_start_time_seconds``: a new
    pod), matched on ``job`` and ``instance``, counts its last value in the range; every
    other series its ``increase``/``rate`` as Prometheus computes it::

        ((((last_over_time(S[R]) unless last_over_time(S[1d] offset R))
             and on(job, instance) (last_over_time(up[1d] offset R)
                                    or process_start_time_seconds > time() - R_seconds)) * 1)
          or increase(S[R]))

    (``rate``: that last value divided by R's seconds; ``* 1`` drops the metric name, as
    ``increase`` does.) A target scraped for the first time inside the range whose process
    is older (a service that ran for weeks, newly scraped; a Prometheus started inside the
    range) says nothing of when its counters counted: those series count as Prometheus
    counts them."""
    strings = [m.span() for m in _STRING_SPANS.finditer(promql)]

    def rewrite(match: re.Match[str]) -> str:
        if any(start <= match.start() < end for start, end in strings):
            return match.group(0)  # inside a label value: text, not PromQL
        function, selector, window = match.group(1), match.group(2).strip(), match.group(3)
        if not selector:
            return match.group(0)
        seconds = promql_seconds(window)
        before = f"last_over_time({selector}[{EXISTED_LOOKBACK}] offset {window})"
        # its target scraped before the range, or its process started inside it (a new pod)
        scraped = (
            f"(last_over_time(up[{EXISTED_LOOKBACK}] offset {window})"
            f" or process_start_time_seconds > time() - {seconds:g})"
        )
        new = f"((last_over_time({selector}[{window}]) unless {before}) and on(job, instance) {scraped})"
        new = f"{new} / {seconds:g}" if function == "rate" else f"{new} * 1"
        return f"(({new}) or {function}({selector}[{window}]))"

    return _COUNTER_RANGE.sub(rewrite, promql)


#: How far before a range's start a target's ``up`` sample still shows the server was
#: scraping then: Prometheus's default lookback, longer than any usual scrape interval.
SCRAPED_LOOKBACK = "5m"
#: Whether any target was scraped just before the query's time.
SCRAPED = f"count(last_over_time(up[{SCRAPED_LOOKBACK}]))"

_RANGE = re.compile(r"\[\s*(\d[0-9a-z.]*)\s*(:\s*(?:\d[0-9a-z.]*)?\s*)?\]")
_OFFSET = re.compile(r"(?<![\w:])offset\s+(-?)\s*(\d[0-9a-z.]*)")


def reach_seconds(promql: str) -> float | None:
    """How far before its evaluation time ``promql`` reads samples, in seconds: its longest
    range (``increase(x[48h])``: 48 h) plus each subquery's range (a range inside a subquery
    is read back from every step of it) plus its longest offset; 0 when it has no range (an
    instant selector reads the latest sample). None when it reads at a fixed time (``@``):
    how far back cannot be told from the text."""
    text = _STRING_SPANS.sub('""', promql)
    if "@" in text:
        return None
    ranges: list[float] = []
    subqueries: list[float] = []
    for match in _RANGE.finditer(text):
        (subqueries if match.group(2) else ranges).append(promql_seconds(match.group(1)))
    if not ranges and not subqueries:
        return 0.0
    offsets = [promql_seconds(m.group(2)) for m in _OFFSET.finditer(text) if not m.group(1)]
    return max(ranges, default=0.0) + sum(subqueries) + max(offsets, default=0.0)


def reads_from(start: datetime, end: datetime, promqls: list[str]) -> datetime | None:
    """The earliest time queries evaluated at ``end`` read samples from: ``end`` less the
    longest :func:`reach_seconds` among ``promqls`` (the window's ``start`` when one reads at a
    fixed time); None when none reads a range."""
    reaches = [reach_seconds(promql) for promql in promqls]
    if all(reach == 0 for reach in reaches):
        return None
    if any(reach is None for reach in reaches):
        return start
    return end - timedelta(seconds=max(reach for reach in reaches if reach is not None))


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
