"""Prometheus source (httpx): PromQL instant queries through the HTTP API.

Each query runs as ``GET /api/v1/query?query=…&time=<window_end>`` so an evaluation at a
given ``as_of`` is reproducible. The query text may use ``$window`` (the check's window as
a PromQL duration, e.g. ``3600s``), ``$window_s``, ``$settle``, and ``$window_start`` /
``$window_end`` / ``$as_of`` (Unix seconds, for ``@`` modifiers).

Frame: a PromQL text query gives one row per series — one column per label plus ``value``;
a ``measures:`` query runs one PromQL per measure and joins them on their labels, one
column per measure. NaN (e.g. 0/0) and a missing series are NULL: no evidence, never a pass.

An expression with ``or`` can turn a missing series into a number (``sum(rate(dlq_total[5m]))
or vector(0)``): right for a counter with labels that was never incremented (it has no series
yet), wrong for a renamed one. So every metric such an expression selects by name must be
known to the server — a target it scrapes declares it (``/api/v1/metadata``: a family with no
series yet is listed) or a series of it lies in the window — else the check is an error naming
the metric (:func:`unknown_fallback_metric`). Likewise a label matcher in it that only a series
carrying its label can meet must name a label the metric's series in the window carry
(``/api/v1/labels``), else the check is an error (:func:`unknown_fallback_label`): a renamed
label would select nothing, read as 0. And each target that declares such a metric
(``/api/v1/targets/metadata``) must have been up at the window's end: Prometheus keeps a down
target's metadata, and the dead letters its exporter did not report read as 0 beside another
target's traffic (:func:`exporter_down`); and a job that reported it in the window must have a
target still active: one taken out of service discovery leaves no ``up`` at 0 and no
metadata behind (:func:`exporter_gone`).

Why one module of ~690 lines: the source and the questions an answer needs before it may be
judged (retention, the server's clock, what an ``or`` may read as absent) are one contract,
each asked of the same server with the same client and errors.

A counter that appears inside a range counts from the zero it started at: each ``rate(S[R])``
and ``increase(S[R])`` of a plain selector is sent as
:func:`~gatecheck.sources.prometheus.promql.counted_from_zero` writes it (Prometheus's own
counts from a new series' first sample, and a burst that created its series reads 0).
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from gatecheck._values import document_time
from gatecheck.durations import format_duration
from gatecheck.errors import QueryError, SourceTimeout, SourceUnavailable, one_line, redact
from gatecheck.sources._http import fetch, http_errors, verified_tls
from gatecheck.sources.base import MAX_ROWS, QueryParameters, Source, clock_problem
from gatecheck.sources.probe import Probe, counted
from gatecheck.sources.prometheus.promql import (
    SCRAPED,
    SCRAPED_LOOKBACK,
    PrometheusSourceConfig,
    PromQuery,
    counted_from_zero,
    measures_frame,
    reads_from,
    render_promql,
)

if TYPE_CHECKING:
    import pandas as pd


_PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
     "inf", "nan", "start", "end"}
)  # fmt: skip
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![a-zA-Z0-9_:])(?!\s*\()")


def metric_names(promql: str) -> set[str]:
    """The metric names a PromQL expression selects by name (``rate(http_total[5m])`` →
    ``http_total``): not functions, keywords, label names, strings or ``$placeholders``; a
    selector by ``{__name__=~…}`` alone names none."""
    text = _STRINGS.sub('""', promql)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _GROUPING.sub(" ", text)
    return {m.group(1) for m in _IDENTIFIER.finditer(text) if m.group(1).lower() not in _PROMQL_WORDS}


_OR = re.compile(r"\bor\b")
#: Suffixes a sample's name adds to its family's (the metadata API lists families).
_FAMILY_SUFFIXES = ("_total", "_created", "_bucket", "_count", "_sum", "_info")


def fallback_metrics(promql: str) -> set[str]:
    """The metrics an expression with ``or`` selects by name (empty without ``or``): its
    absence may read as a number there."""
    return metric_names(promql) if _OR.search(_STRINGS.sub('""', promql)) else set()


_SELECTOR = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(
    r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')\s*,?'
)


def fallback_labels(promql: str) -> list[tuple[str, str, str]]:
    """(metric, label, matcher) for each label matcher of an expression with ``or`` that only
    a series carrying that label can meet (``status=~"5.."``; not ``status!="200"``, which a
    series without it meets): were the label renamed, the matcher would select nothing ever,
    and the ``or`` read that as a value."""
    if not fallback_metrics(promql):
        return []
    found: list[tuple[str, str, str]] = []
    for selector in _SELECTOR.finditer(promql):
        metric, body = selector.group(1), selector.group(2)
        if metric.lower() in _PROMQL_WORDS:
            continue
        for matcher in _MATCHER.finditer(body):
            label, op, quoted = matcher.groups()
            value = quoted[1:-1]
            if op in ("!=", "!~") or label == "__name__":
                continue
            if op == "=" and value == "":
                continue
            if op == "=~":
                try:
                    if re.fullmatch(value, ""):
                        continue
                except re.error:
                    continue  # a pattern Python reads otherwise than Prometheus: not judged
            found.append((metric, label, f"{label}{op}{quoted}"))
    return list(dict.fromkeys(found))


#: The active jobs of a server that does not list its targets: none can be told gone.
_UNLISTED: set[str] = set()


def _named(measure: str) -> str:
    """``measure: `` before a message about one measure; nothing for a single-query suite's."""
    return f"{measure}: " if measure != "value" else ""


def unknown_fallback_label(
    measure: str, metric: str, matcher: str, labels: set[str], where: str
) -> QueryError:
    head = _named(measure)
    has = ", ".join(sorted(labels - {"__name__"})) or "none"
    return QueryError(
        f"{head}no series of {metric} at {where} carries the label of {matcher} (its labels: {has}), so "
        "the matcher selects nothing and the expression's `or` would read that as a value — renamed?"
    )


def families_of(metric: str) -> list[str]:
    """The names a sample's family may be declared under: itself, then without its suffix
    (``dlq_messages_total`` → ``dlq_messages``)."""
    return [
        metric,
        *(metric[: -len(s)] for s in _FAMILY_SUFFIXES if metric.endswith(s) and len(metric) > len(s)),
    ]


def unknown_fallback_metric(measure: str, metric: str, where: str) -> QueryError:
    label = _named(measure)
    return QueryError(
        f"{label}metric {metric} is unknown to {where}: nothing declares it and no series of it lies in the "
        "window, so the expression's `or` would read its absence as a value — renamed, or its exporter "
        "is not scraped?"
    )


def exporter_down(measure: str, metric: str, down: list[str], where: str, at: datetime) -> QueryError:
    label = _named(measure)
    return QueryError(
        f"{label}metric {metric}: its exporter {', '.join(down)} at {where} was down at "
        f"{document_time(at)} (up 0), so the expression's `or` would read what it did not report "
        "as a value — judged again once it is scraped"
    )


def uncovered(where: str, earliest: datetime, scraped_at_end: bool) -> QueryError | None:
    """The error for a range that begins before the server held samples — no target's ``up``
    in the ``SCRAPED_LOOKBACK`` before ``earliest`` — when some target's is there at the
    window's end. A Prometheus that was new then, lost its storage in a restart (an
    ``emptyDir`` volume) or was down answers ``increase(fallback_total[48h])`` from the samples
    since it came back: a fallback counted before is not in it, and a soak of two days would
    be judged on the hours it holds. None when ``up`` has no sample at the end either (a
    server fed second-hand, by federation or remote write, may hold no ``up``: not judged
    this way)."""
    if not scraped_at_end:
        return None
    return QueryError(
        f"{where} holds no sample of any target's up in the {SCRAPED_LOOKBACK} before "
        f"{document_time(earliest)}, where the query's range begins: it was not scraping then "
        "(a new server, its storage lost in a restart, or down), so the range would be judged on "
        "the samples since — a shorter window, or wait until it holds the whole range"
    )


def exporter_gone(measure: str, metric: str, jobs: list[str], where: str, at: datetime) -> QueryError:
    label = _named(measure)
    return QueryError(
        f"{label}metric {metric}: job {', '.join(jobs)} reported it in the window, but {where} "
        f"scrapes no target of it at {document_time(at)}: its exporter is gone, so the "
        "expression's `or` would read what it no longer reports as a value — judged again once it is scraped"
    )


def metric_selectors(promql: str, metric: str) -> list[list[tuple[str, str, str]]]:
    """The label matchers of each selector of ``metric`` in ``promql`` — (label, op, value) —
    one empty list for each bare ``metric``."""
    found = [
        [(m.group(1), m.group(2), m.group(3)[1:-1].replace('\\"', '"').replace("\\\\", "\\"))
         for m in _MATCHER.finditer(selector.group(2))]
        for selector in _SELECTOR.finditer(promql)
        if selector.group(1) == metric
    ]  # fmt: skip
    bare = re.compile(rf"(?<![\w:.$]){re.escape(metric)}(?![\w:])(?!\s*\{{)")
    return found + [[] for _ in bare.finditer(_STRINGS.sub('""', promql))]


def target_may_be_read(target: dict[str, str], selectors: list[list[tuple[str, str, str]]]) -> bool:
    """Whether a selector may read series of ``target``: none of its matchers on the target's
    own labels (job, instance, and whatever relabeling gave it) excludes it. A matcher on
    another label (the metric's own) or a pattern Python cannot read excludes nothing."""
    for matchers in selectors or [[]]:
        fits = True
        for label, op, value in matchers:
            if label not in target:
                continue
            have = target[label]
            if op in ("=~", "!~"):
                try:
                    matched = re.fullmatch(value, have) is not None
                except re.error:
                    continue
                fits = matched if op == "=~" else not matched
            else:
                fits = (have == value) if op == "=" else (have != value)
            if not fits:
                break
        if fits:
            return True
    return False


async def check_server(
    name: str, config: PrometheusSourceConfig, root: Path, suites: list[Any] | None = None
) -> Probe:
    """Reach the server: its build info (version) and how long it took; then that each metric
    the suites select by name has a series there (the series API), so a renamed or missing
    metric is found before a gate reads nothing."""
    started = time.perf_counter()
    source = PrometheusSource(name, config, root)
    shown = redact(source.base)
    try:
        with http_errors(f"Prometheus at {shown}", source.timeout):
            before = datetime.now(UTC)
            response = await source.build_info()
            after = datetime.now(UTC)
            latency = (time.perf_counter() - started) * 1000
            used: dict[str, list[str]] = {}
            for suite in suites or []:
                for promql in getattr(suite.query, "measures", {}).values():
                    for metric in metric_names(promql):
                        used.setdefault(metric, []).append(suite.name)
            missing = []
            if response.status_code == 200:
                for metric in sorted(used):
                    if not await source.has_series(metric):
                        missing.append(metric)
    except (SourceUnavailable, SourceTimeout) as exc:
        return Probe(reachable=False, problems=[str(exc)])
    finally:
        await source.close()
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
    problems = [
        f"metric {metric} has no series on this server (used by {', '.join(sorted(set(used[metric])))})"
        for metric in missing
    ]
    clock = clock_problem(f"Prometheus at {shown}", _date_header(response.headers.get("date")), before, after)
    problems += [clock] if clock is not None else []
    checked = f"reachable, {counted(len(used), 'metric')} the suites use" if used else "reachable"
    return Probe(version=f"Prometheus {version}", latency_ms=latency, checked=checked, problems=problems)


def _data(answer: httpx.Response) -> Any:
    try:
        return answer.json().get("data")
    except (ValueError, AttributeError):
        return None


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
        where = _named(measure)
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


_RETENTION_PART = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_RETENTION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 365 * 86400}


def _date_header(text: str | None) -> datetime | None:
    """An HTTP ``Date`` header as a moment (None: absent or unreadable)."""
    from email.utils import parsedate_to_datetime

    if not text:
        return None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def retention_of(text: str) -> timedelta | None:
    """The time part of Prometheus's ``storageRetention`` (``15d``, ``1y2w``, ``15d or 10GiB``),
    or None when it keeps data by size alone (``10GiB``) or says nothing readable."""
    for part in text.split(" or "):
        part = part.strip()
        pieces = _RETENTION_PART.findall(part)
        if pieces and "".join(n + u for n, u in pieces) == part:
            return timedelta(seconds=sum(int(n) * _RETENTION_UNITS[u] for n, u in pieces))
    return None


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
        self._client = httpx.AsyncClient(
            auth=auth, headers=headers, timeout=self.timeout, verify=verified_tls()
        )
        self._known: dict[tuple[str, float, float], bool] = {}
        self._down: dict[datetime, set[tuple[str, str]]] = {}
        self._active_jobs: set[str] | None = None  # the jobs of the active targets, once asked
        self._scraped: dict[datetime, bool] = {}  # whether any target's up had a sample just before
        self._declared: dict[tuple[str, str], dict[tuple[str, str], dict[str, str]]] = {}
        self._labels: dict[tuple[str, str, float, float], set[str]] = {}
        self._retention: tuple[timedelta | None, str] | None = None
        # what the Date header of that answer says of the server's clock against gatecheck's
        self._clock_problem: str | None = None

    async def query(self, text: Any, parameters: QueryParameters) -> pd.DataFrame:
        measures = text.measures if isinstance(text, PromQuery) else {"value": text}
        start, end = parameters["window_start"], parameters["window_end"]
        assert isinstance(start, datetime) and isinstance(end, datetime)
        await self._within_retention(start)
        rendered = {measure: render_promql(promql, parameters) for measure, promql in measures.items()}
        await self._holds_samples_from(start, end, list(rendered.values()))
        answers = [
            (measure, await self._instant(counted_from_zero(rendered[measure]), end, measure))
            for measure in measures
        ]
        for measure, promql in measures.items():
            for metric in sorted(fallback_metrics(promql)):
                if not await self.known(metric, start, end):
                    raise unknown_fallback_metric(measure, metric, f"Prometheus at {redact(self.base)}")
                down = await self.exporters_down(metric, rendered[measure], end)
                if down:
                    raise exporter_down(measure, metric, down, f"Prometheus at {redact(self.base)}", end)
                gone = await self.exporters_gone(metric, rendered[measure], start, end)
                if gone:
                    raise exporter_gone(measure, metric, gone, f"Prometheus at {redact(self.base)}", end)
            for metric, label, matcher in fallback_labels(promql):
                labels = await self.label_names(metric, start - timedelta(minutes=5), end)
                if labels and label not in labels:  # no series: nothing to tell (a counter never set)
                    where = f"Prometheus at {redact(self.base)}"
                    raise unknown_fallback_label(measure, metric, matcher, labels, where)
        return join_series(answers, self.max_series)

    async def retention(self) -> tuple[timedelta | None, str]:
        """How long the server keeps samples (``/api/v1/status/runtimeinfo``'s
        ``storageRetention``; None: by size alone, or a server that does not say, as Thanos or
        Mimir may not), and its words; asked once per evaluation."""
        if self._retention is None:
            where = f"Prometheus at {redact(self.base)}"
            before = datetime.now(UTC)
            with http_errors(where, self.timeout):
                answer = await fetch(
                    self._client, "GET", f"{self.base}/api/v1/status/runtimeinfo", what=where,
                    timeout=self.timeout,
                )  # fmt: skip
            theirs = _date_header(answer.headers.get("date"))
            self._clock_problem = clock_problem(where, theirs, before, datetime.now(UTC))
            said = ""
            if answer.status_code == 200:
                with contextlib.suppress(ValueError, AttributeError):
                    said = str((answer.json().get("data") or {}).get("storageRetention") or "")
            self._retention = (retention_of(said), said)
        return self._retention

    async def _within_retention(self, start: datetime) -> None:
        """QueryError when the window begins before the server's retention: the samples before
        it are gone, and a count over the window would silently be a count over less (a 30-day
        error budget judged on the 15 days a default Prometheus keeps)."""
        kept, said = await self.retention()
        if self._clock_problem is not None:
            raise QueryError(self._clock_problem)
        now = datetime.now(start.tzinfo)
        if kept is not None and start < now - kept:
            raise QueryError(
                f"the window from {document_time(start)} reaches back {format_duration(now - start)}, "
                f"beyond the {said} Prometheus at {redact(self.base)} keeps: the samples before "
                f"{document_time(now - kept)} are gone, so the window would be judged on part of it "
                "(a shorter window, or a longer --storage.tsdb.retention.time)"
            )

    async def _holds_samples_from(self, start: datetime, end: datetime, promqls: list[str]) -> None:
        """QueryError (:func:`uncovered`) when the queries read from a time
        (:func:`~gatecheck.sources.prometheus.promql.reads_from`) at which the server held no
        samples; nothing to ask when none reads a range. Asked once per time an evaluation."""
        earliest = reads_from(start, end, promqls)
        if earliest is None or await self._scraped_at(earliest):
            return
        where = f"Prometheus at {redact(self.base)}"
        problem = uncovered(where, earliest, await self._scraped_at(end))
        if problem is not None:
            raise problem

    async def _scraped_at(self, at: datetime) -> bool:
        """Whether any target's ``up`` has a sample in the ``SCRAPED_LOOKBACK`` before ``at``."""
        if at not in self._scraped:
            self._scraped[at] = bool(await self._instant(SCRAPED, at, "value"))
        return self._scraped[at]

    async def label_names(self, metric: str, start: datetime, end: datetime) -> set[str]:
        """The label names of ``metric``'s series with a sample in ``[start, end]`` (the labels
        API), cached per evaluation; empty when it has none."""
        key = ("labels", metric, start.timestamp(), end.timestamp())
        if key not in self._labels:
            where = f"Prometheus at {redact(self.base)}"
            params = {"match[]": metric, "start": f"{start.timestamp():.3f}", "end": f"{end.timestamp():.3f}"}
            with http_errors(where, self.timeout):
                response = await fetch(
                    self._client, "GET", f"{self.base}/api/v1/labels", params=params, what=where,
                    timeout=self.timeout,
                )  # fmt: skip
                response.raise_for_status()
            self._labels[key] = {str(name) for name in response.json().get("data") or []}
        return self._labels[key]

    async def known(self, metric: str, start: datetime, end: datetime) -> bool:
        """Whether the server knows ``metric``: a target declares its family (the metadata API)
        or a series of it has a sample in ``[start - 5m, end]`` (the series API)."""
        key = (metric, start.timestamp(), end.timestamp())
        if key not in self._known:
            where = f"Prometheus at {redact(self.base)}"
            found = False
            with http_errors(where, self.timeout):
                for family in families_of(metric):
                    answer = await fetch(
                        self._client, "GET", f"{self.base}/api/v1/metadata", params={"metric": family},
                        what=where, timeout=self.timeout,
                    )  # fmt: skip
                    if answer.status_code == 200 and _data(answer):
                        found = True
                        break
                if not found:
                    found = await self.has_series(metric, start - timedelta(minutes=5), end)
            self._known[key] = found
        return self._known[key]

    async def exporters_down(self, metric: str, promql: str, at: datetime) -> list[str]:
        """The targets declaring ``metric``'s family (``/api/v1/targets/metadata``) that a
        selector of it in ``promql`` may read and whose ``up`` was 0 at ``at``, each as
        ``INSTANCE (job JOB)``. None when every such target was up, when ``up`` has no sample
        then (a moment before the target was scraped: not known to be down), or when the server
        does not list the targets (some Thanos or Mimir setups; a metric known by its series
        alone). A target another job's selector excludes (``{job="dlq"}``) never blocks it."""
        down = await self._down_targets(at)
        if not down:
            return []
        key = ("declared", metric)
        if key not in self._declared:
            where = f"Prometheus at {redact(self.base)}"
            declared: dict[tuple[str, str], dict[str, str]] = {}
            with http_errors(where, self.timeout):
                for family in families_of(metric):
                    answer = await fetch(
                        self._client, "GET", f"{self.base}/api/v1/targets/metadata",
                        params={"metric": family}, what=where, timeout=self.timeout,
                    )  # fmt: skip
                    for entry in (_data(answer) if answer.status_code == 200 else None) or []:
                        target = entry.get("target") if isinstance(entry, dict) else None
                        if isinstance(target, dict) and "job" in target and "instance" in target:
                            labels = {str(k): str(v) for k, v in target.items()}
                            declared[(labels["job"], labels["instance"])] = labels
            self._declared[key] = declared
        selectors = metric_selectors(promql, metric)
        return sorted(
            f"{instance} (job {job})"
            for (job, instance), labels in self._declared[key].items()
            if (job, instance) in down and target_may_be_read(labels, selectors)
        )

    async def exporters_gone(self, metric: str, promql: str, start: datetime, end: datetime) -> list[str]:
        """The jobs that reported ``metric`` in the window and were scraped in it (their
        ``up``) of which no target is active now (``/api/v1/targets?state=active``): taken out
        of service discovery or the configuration (a pod evicted and not rescheduled, a
        deployment scaled to 0). Prometheus then drops the target and its metadata and the
        series stop, so neither a down target nor an unknown metric tells. A job with any
        active target (a new pod whose labelled counter has no series yet) is not gone; a
        series without ``job``, or of a job with no ``up`` in the window (federated, a
        recording rule's), is not judged, nor a job a selector of ``metric`` in ``promql``
        excludes, nor anything on a server that does not list its targets, nor a window that
        ended more than 5 minutes ago (a backtest's: the targets listed are today's)."""
        if end < datetime.now(end.tzinfo) - timedelta(minutes=5):
            return []  # the targets listed are today's: not those of a past window's end
        seconds = max(1, round((end - start).total_seconds()))
        answer = await self._instant(
            f"count by (job) (last_over_time({metric}[{seconds}s]))"
            f" and on(job) count by (job) (last_over_time(up[{seconds}s]))",
            end,
            "value",
        )
        selectors = metric_selectors(promql, metric)
        reported = {
            labels["job"]
            for labels, _ in answer
            if labels.get("job") and target_may_be_read({"job": labels["job"]}, selectors)
        }
        if not reported:
            return []
        if self._active_jobs is None:
            where = f"Prometheus at {redact(self.base)}"
            with http_errors(where, self.timeout):
                listed = await fetch(
                    self._client, "GET", f"{self.base}/api/v1/targets", params={"state": "active"},
                    what=where, timeout=self.timeout,
                )  # fmt: skip
            data = _data(listed) if listed.status_code == 200 else None
            targets = data.get("activeTargets") if isinstance(data, dict) else None
            if not isinstance(targets, list):  # not listed (some Thanos or Mimir setups): asked once
                self._active_jobs = _UNLISTED
            else:
                self._active_jobs = {
                    str((target.get("labels") or {}).get("job", ""))
                    for target in targets
                    if isinstance(target, dict) and isinstance(target.get("labels"), dict)
                }
        if self._active_jobs is _UNLISTED:
            return []  # not judged this way
        return sorted(reported - self._active_jobs)

    async def _down_targets(self, at: datetime) -> set[tuple[str, str]]:
        """(job, instance) of every target whose ``up`` was 0 at ``at`` (one query an
        evaluation: few targets are down, however many the server scrapes)."""
        if at not in self._down:
            answer = await self._instant("up == 0", at, "value")
            self._down[at] = {(labels.get("job", ""), labels.get("instance", "")) for labels, _ in answer}
        return self._down[at]

    async def _instant(
        self, promql: str, at: datetime, measure: str
    ) -> list[tuple[dict[str, str], float | None]]:
        url = f"{self.base}/api/v1/query"
        where = _named(measure)
        with http_errors(f"{where}Prometheus at {redact(self.base)}", self.timeout):
            response = await fetch(
                self._client, "GET", url, params={"query": promql, "time": f"{at.timestamp():.3f}"},
                what=f"{where}Prometheus at {redact(self.base)}", timeout=self.timeout,
            )  # fmt: skip
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
        warnings = body.get("warnings")
        if warnings:
            # A success with warnings may be partial: a remote-read store or a Thanos/Mimir
            # querier that could not reach part of the data still answers "success", and a
            # count missing its part makes a worse canary look better. Never judged. (Infos,
            # e.g. "metric might not be a counter", are only advice.)
            more = f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else ""
            raise QueryError(
                f"{where}Prometheus answered with a warning, so the answer may be partial: "
                f"{one_line(str(warnings[0]))[:300]}{more}"
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

    async def has_series(
        self, metric: str, start: datetime | None = None, end: datetime | None = None
    ) -> bool:
        """Whether the server holds any series of ``metric`` (``GET /api/v1/series``, at most
        one returned), with a sample in ``[start, end]`` if given."""
        params = {"match[]": metric, "limit": "1"}
        if start is not None and end is not None:
            params |= {"start": f"{start.timestamp():.3f}", "end": f"{end.timestamp():.3f}"}
        response = await fetch(
            self._client, "GET", f"{self.base}/api/v1/series", params=params,
            what=f"Prometheus at {redact(self.base)}", timeout=self.timeout,
        )  # fmt: skip
        response.raise_for_status()
        return bool(response.json().get("data"))

    async def build_info(self) -> httpx.Response:
        """``GET /api/v1/status/buildinfo`` (``check-sources``: is it Prometheus, which version)."""
        return await fetch(
            self._client, "GET", f"{self.base}/api/v1/status/buildinfo",
            what=f"Prometheus at {redact(self.base)}", timeout=self.timeout,
        )  # fmt: skip

    async def close(self) -> None:
        await self._client.aclose()
