"""OpenSLO v1 → ``slo:`` suites (``gatecheck import-openslo``).

What is taken: ``kind: SLO`` with ``budgetingMethod: Occurrences``, a rolling ``timeWindow``
(``m``, ``h``, ``d``, ``w``) or a calendar one (``1w`` from a Monday, ``1M`` from the first, at
midnight in its ``timeZone``), one objective (``target`` or ``targetPercent``), and an SLI —
inline (``indicator``) or by name (``indicatorRef`` to a ``kind: SLI`` among the documents) —
whose ``ratioMetric`` reads Prometheus (``metricSource.type: Prometheus``, or a
``metricSourceRef`` to a ``kind: DataSource`` of that type), with ``good`` and ``total`` or
``bad`` and ``total``.

How a query becomes a count of events in a window (what an SLO suite measures):

- ``counter: true`` — the query is a counter: a metric selector, alone or in one ``sum(…)``
  (``sum by (…)`` too). It becomes ``sum(increase(SELECTOR[$window]))``.
- ``counter: false`` — the query already counts the events of a window, which it names as
  ``$window`` (or Sloth's ``{{.window}}``); it is taken as it is.
- ``bad`` — good is ``total - bad``.

Everything else is refused, one line each, naming the document and the key: ``Timeslices``
and ``RatioTimeslices`` (a good/bad minute is another SLI), other calendar windows, ``raw`` ratios
and ``thresholdMetric`` (no counts to burn a budget with), sources other than Prometheus,
several objectives (a composite SLO). The suite gets the default burn-rate rules and
expectations; edit them after the import.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from gatecheck.durations import format_duration
from gatecheck.errors import ConfigError

#: OpenSLO's duration shorthand, the units an SLO window can be written in here.
_SHORTHAND = re.compile(r"^([1-9][0-9]*)([mhdw])$")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
#: A metric selector (name and optional matchers), alone or in one sum(…) / sum by (…) (…).
_SELECTOR = r"[A-Za-z_:][A-Za-z0-9_:]*(?:\{[^{}]*\})?"
_COUNTER = re.compile(
    rf"^\s*(?:sum\s*(?P<grouping>(?:by|without)\s*\([^()]*\))?\s*\(\s*(?P<inner>{_SELECTOR})\s*\)"
    rf"|(?P<bare>{_SELECTOR}))\s*$"
)


def _window(value: Any, where: str) -> timedelta:
    match = _SHORTHAND.match(str(value).strip())
    if match is None:
        raise ConfigError(
            f"{where}: {value!r}: a rolling window in m, h, d or w (months, quarters and years are "
            "calendar lengths: not supported)"
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


def _calendar(window: dict[str, Any], where: str) -> tuple[str, str]:
    """A calendar-aligned window as (``week`` or ``month``, its time zone): one week from a
    Monday or one month from the first, at midnight (other lengths and starts are refused)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    duration, calendar = str(window.get("duration", "")).strip(), window.get("calendar")
    if not isinstance(calendar, dict) or "startTime" not in calendar:
        raise ConfigError(
            f"{where}: a calendar-aligned window needs calendar.startTime and calendar.timeZone"
        )
    zone = str(calendar.get("timeZone", "UTC"))
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}.calendar.timeZone: {zone!r}: not an IANA time zone") from None
    try:
        start = datetime.fromisoformat(str(calendar["startTime"]))
    except ValueError:
        raise ConfigError(
            f"{where}.calendar.startTime: {calendar['startTime']!r}: not a date and time"
        ) from None
    period = {"1w": "week", "1M": "month"}.get(duration)
    if period is None:
        raise ConfigError(f"{where}.duration: {duration!r}: a calendar window is 1w or 1M here")
    boundary = start.time() == datetime.min.time() and (
        start.weekday() == 0 if period == "week" else start.day == 1
    )
    if not boundary:
        raise ConfigError(
            f"{where}.calendar.startTime: {calendar['startTime']!s}: a {period} starts at midnight on "
            + ("a Monday" if period == "week" else "the first")
        )
    return period, zone


def _count(metric: Any, counter: bool, where: str, sources: dict[str, str]) -> str:
    """The PromQL counting a ratio metric's events over ``$window``."""
    if not isinstance(metric, dict) or not isinstance(metric.get("metricSource"), dict):
        raise ConfigError(f"{where}.metricSource: missing")
    source = metric["metricSource"]
    kind = source.get("type") or sources.get(str(source.get("metricSourceRef", "")), "")
    if str(kind).lower() != "prometheus":
        named = f"type {kind}" if kind else "no type (and no DataSource of that name)"
        raise ConfigError(f"{where}.metricSource: {named}: gatecheck reads an SLI from Prometheus")
    query = (source.get("spec") or {}).get("query")
    if not isinstance(query, str) or not query.strip():
        raise ConfigError(f"{where}.metricSource.spec.query: missing")
    query = query.replace("{{.window}}", "$window").replace("{{ .window }}", "$window").strip()
    if not counter:
        if "$window" not in query:
            raise ConfigError(
                f"{where}: counter: false, and the query names no window ($window or {{{{.window}}}}): "
                "it must count the events of a window"
            )
        return query
    match = _COUNTER.match(query)
    if match is None:
        raise ConfigError(
            f"{where}: counter: true needs a metric selector, alone or in one sum(…) (got {query!r}); "
            "to count events yourself, write counter: false and a query over $window"
        )
    selector = match.group("inner") or match.group("bare")
    grouping = f" {match.group('grouping')}" if match.group("grouping") else ""
    return f"sum{grouping}(increase({selector}[$window]))"


def suites_of(documents: list[Any], source: str, label: str) -> list[dict[str, Any]]:
    """One ``slo:`` suite (as its YAML mapping) per OpenSLO ``kind: SLO`` in ``documents``."""
    indicators: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for document in documents:
        if not isinstance(document, dict):
            continue
        name = str((document.get("metadata") or {}).get("name", ""))
        if document.get("kind") == "SLI":
            indicators[name] = document
        elif document.get("kind") == "DataSource":
            sources[name] = str((document.get("spec") or {}).get("type", ""))
    suites = []
    for index, document in enumerate(documents):
        if not isinstance(document, dict) or document.get("kind") != "SLO":
            continue
        if document.get("apiVersion") != "openslo/v1":
            raise ConfigError(
                f"{label}: documents[{index}]: apiVersion {document.get('apiVersion')!r}: expected openslo/v1"
            )
        named = (document.get("metadata") or {}).get("name", index)
        suites.append(_suite(document, f"{label}: SLO {named}", source, indicators, sources))
    if not suites:
        raise ConfigError(f"{label}: no kind: SLO document (apiVersion openslo/v1)")
    return suites


def _suite(
    document: dict[str, Any], where: str, source: str, indicators: dict[str, Any], sources: dict[str, str]
) -> dict[str, Any]:
    metadata, spec = document.get("metadata") or {}, document.get("spec") or {}
    name = re.sub(r"[^a-z0-9_]", "_", str(metadata.get("name", "")).lower())
    if not re.match(r"^[a-z][a-z0-9_]*$", name):
        raise ConfigError(f"{where}: metadata.name: a suite name needs a letter first")
    method = spec.get("budgetingMethod")
    if method != "Occurrences":
        raise ConfigError(
            f"{where}: spec.budgetingMethod: {method!r}: only Occurrences (good events over all events) "
            "is judged; a time-slice SLI is not converted"
        )
    windows = spec.get("timeWindow") or [{"duration": "4w", "isRolling": True}]
    if not isinstance(windows, list) or len(windows) != 1 or not isinstance(windows[0], dict):
        raise ConfigError(f"{where}: spec.timeWindow: exactly one window")
    calendar = None
    if windows[0].get("calendar") is not None or windows[0].get("isRolling") is False:
        calendar = _calendar(windows[0], f"{where}: spec.timeWindow[0]")
        length = timedelta(days=7) if calendar[0] == "week" else timedelta(days=31)
    else:
        length = _window(windows[0].get("duration"), f"{where}: spec.timeWindow[0].duration")
    objectives = spec.get("objectives") or []
    if not isinstance(objectives, list) or len(objectives) != 1 or not isinstance(objectives[0], dict):
        raise ConfigError(
            f"{where}: spec.objectives: exactly one objective (a composite SLO is not converted)"
        )
    objective = objectives[0]
    if "target" in objective and "targetPercent" not in objective:
        percent = float(objective["target"]) * 100
    elif "targetPercent" in objective and "target" not in objective:
        percent = float(objective["targetPercent"])
    else:
        raise ConfigError(f"{where}: spec.objectives[0]: one of target or targetPercent")
    if not 0 < percent < 100:
        raise ConfigError(
            f"{where}: spec.objectives[0]: the target lies in (0, 1) (targetPercent in (0, 100))"
        )
    indicator = spec.get("indicator")
    key = "spec.indicator"
    if indicator is None:
        ref = spec.get("indicatorRef")
        indicator = indicators.get(str(ref))
        key = f"SLI {ref}"
        if indicator is None:
            raise ConfigError(f"{where}: spec.indicatorRef: no kind: SLI named {ref!r} among the documents")
    ratio = (indicator.get("spec") or {}).get("ratioMetric")
    if ratio is None:
        raise ConfigError(
            f"{where}: {key}: only a ratioMetric (good or bad, and total) gives events to burn a budget "
            "with (a thresholdMetric does not)"
        )
    if "raw" in ratio:
        raise ConfigError(f"{where}: {key}.spec.ratioMetric.raw: a precomputed ratio has no event counts")
    counter = bool(ratio.get("counter", False))
    total = _count(ratio.get("total"), counter, f"{where}: {key}.spec.ratioMetric.total", sources)
    if "good" in ratio and "bad" not in ratio:
        good = _count(ratio["good"], counter, f"{where}: {key}.spec.ratioMetric.good", sources)
    elif "bad" in ratio and "good" not in ratio:
        bad = _count(ratio["bad"], counter, f"{where}: {key}.spec.ratioMetric.bad", sources)
        good = f"({total}) - ({bad})"
    else:
        raise ConfigError(f"{where}: {key}.spec.ratioMetric: one of good or bad, with total")
    described = spec.get("description") or metadata.get("displayName") or ""
    return {
        "name": name,
        "description": f"{described} (imported from OpenSLO {metadata.get('name')})".strip(),
        "source": source,
        "window": {"length": format_duration(length)},
        "query": {"measures": {"good": good, "total": total}},
        "slo": {"objective": round(percent, 6)}
        | ({"calendar": calendar[0], "time_zone": calendar[1]} if calendar else {}),
    }
