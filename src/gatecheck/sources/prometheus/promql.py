"""What the Prometheus sources share — a server's HTTP API (:mod:`.api`) and one service's
exposition read directly (:mod:`.scrape`): the source's configuration, a suite's PromQL query
(one text, or named ``measures``), the ``$window``-style placeholders, and the frame a set of
series becomes.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, SecretStr

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
