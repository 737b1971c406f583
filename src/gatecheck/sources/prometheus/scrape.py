"""Scrape source: ``scrape+http(s)://host:port/metrics`` — one service's exposition, no server.

For the embedded default (the demo) where no Prometheus runs: the exposition is fetched
(httpx), parsed with prometheus_client's parser, and the suite's PromQL is evaluated on that
one snapshot. A snapshot has no history, so the source accepts exactly the PromQL whose
answer one snapshot determines — the answer a Prometheus server gives on the same exposition
scraped once — and refuses everything else (``gatecheck validate`` names it):

- number literals, ``vector(n)``, instant selectors with ``= != =~ !~`` matchers;
- ``sum``, ``min``, ``max``, ``avg``, ``count``, with ``by (…)`` or ``without (…)``;
- ``+ - * /`` (scalars, and vectors one-to-one on identical label sets), unary minus, ``or``,
  parentheses;
- ``histogram_quantile(φ, buckets)`` over instant bucket values;
- ``rate(counter[R])`` and ``increase(counter[R])`` of a counter (or histogram) selector,
  from the counter's ``_created`` timestamp, which prometheus_client exports: a counter is 0
  when created, so when it was created inside the range, its value *is* its increase over
  the range, exactly what Prometheus computes from the zero sample at the created time and
  the scraped sample (Prometheus's created-timestamp zero ingestion). A counter created
  before the range began, or without ``_created``, is refused at run time: one snapshot
  cannot tell its increase.

Refused, "use a Prometheus server": ``irate``, ``delta``, every ``*_over_time``, subqueries
``(…)[5m:1m]``, a range selector anywhere but in ``rate``/``increase``, ``offset``, ``@``,
comparisons, ``and``/``unless``, vector matching modifiers and any other function. A
snapshot is the present: a window that ended in the past (``--as-of``) is refused too.

Why one module of ~600 lines: the PromQL subset's parser and evaluator and the source that
feeds them one snapshot are one thing, used by nothing else.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from gatecheck._values import timestamp
from gatecheck.errors import QueryError, SourceTimeout, SourceUnavailable, redact
from gatecheck.sources._http import fetch, http_errors, verified_tls
from gatecheck.sources.base import PRESENT_TOLERANCE, QueryParameters, Source
from gatecheck.sources.probe import Probe, counted
from gatecheck.sources.prometheus.api import (
    fallback_labels,
    fallback_metrics,
    families_of,
    unknown_fallback_label,
    unknown_fallback_metric,
)
from gatecheck.sources.prometheus.promql import (
    PrometheusSourceConfig,
    PromQuery,
    measures_frame,
    promql_seconds,
    render_promql,
)

if TYPE_CHECKING:
    import pandas as pd

Labels = frozenset[tuple[str, str]]
Vector = dict[Labels, float]
Value = Vector | float

_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|(?P<duration>\[[^\]]*\])"
    r"|(?P<string>\"(?:[^\"\\]|\\.)*\")|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)"
    r"|(?P<op>=~|!~|!=|==|>=|<=|[-+*/(){},=<>@^%]))"
)
_AGGREGATIONS: dict[str, Callable[[list[float]], float]] = {
    "sum": sum,
    "min": min,
    "max": max,
    "avg": lambda xs: sum(xs) / len(xs),
    "count": lambda xs: float(len(xs)),
}


#: What to say when the scrape source cannot answer: where the answer can come from.
USE_PROMETHEUS = "use a Prometheus server (http(s)://) for it"
#: Functions whose answer needs samples over time.
_RANGE_FUNCTIONS = frozenset(
    {"irate", "delta", "idelta", "deriv", "changes", "resets", "predict_linear", "holt_winters",
     "double_exponential_smoothing", "absent_over_time", "present_over_time"}
)  # fmt: skip
_SET_OPERATORS = frozenset({"and", "unless", "offset", "bool", "on", "ignoring", "group_left", "group_right"})


def _refuse(what: str) -> QueryError:
    return QueryError(f"{what}: one snapshot cannot answer it; {USE_PROMETHEUS}")


class _Parser:
    """Recursive descent over the snapshot subset; evaluates as it parses."""

    def __init__(
        self,
        text: str,
        samples: list[tuple[str, dict[str, str], float]],
        at: float,
        earlier: Earlier | None = None,
    ) -> None:
        self.earlier = earlier
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                raise QueryError(
                    f"unsupported PromQL at {text[pos : pos + 20]!r} (the scrape source's subset); "
                    f"{USE_PROMETHEUS}"
                )
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            pos = match.end()
        self.index = 0
        self.samples = samples
        self.at = at
        self.created = {
            (name, frozenset(labels.items())): value
            for name, labels, value in samples
            if name.endswith("_created")
        }

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise QueryError(f"expected {value or 'more'} in PromQL, got {token[1] if token else 'the end'}")
        self.index += 1
        return token

    def parse(self) -> Value:
        value = self.union()
        token = self.peek()
        if token is not None:
            if token[1] in _SET_OPERATORS or token[0] == "op":
                raise _refuse(f"{token[1]!r}")
            raise QueryError(f"unexpected {token[1]!r} in PromQL")
        return value

    def union(self) -> Value:
        """``a or b``: a's series, plus b's where a has none with the same labels."""
        value = self.expr()
        while self.peek() == ("name", "or"):
            self.take()
            other = self.expr()
            if isinstance(value, float) or isinstance(other, float):
                raise QueryError("'or' needs vectors on both sides")
            value = {**other, **value}
        return value

    def expr(self) -> Value:
        value = self.term()
        while (token := self.peek()) is not None and token[0] == "op" and token[1] in ("+", "-"):
            self.take()
            value = _binary(token[1], value, self.term())
        return value

    def term(self) -> Value:
        value = self.unary()
        while (token := self.peek()) is not None and token[0] == "op" and token[1] in ("*", "/"):
            self.take()
            value = _binary(token[1], value, self.unary())
        return value

    def unary(self) -> Value:
        token = self.peek()
        if token == ("op", "-"):
            self.take()
            return _binary("*", -1.0, self.unary())
        return self.primary()

    def no_range(self, what: str) -> None:
        """A range or subquery suffix here needs history: refused."""
        token = self.peek()
        if token is not None and token[0] == "duration":
            raise _refuse(f"{what}{token[1]} (a range outside rate() or increase(), or a subquery)")
        if token is not None and token[1] in ("offset", "@"):
            raise _refuse(f"{token[1]!r} (another time than the snapshot's)")

    def primary(self) -> Value:
        kind, text = self.take()
        if kind == "number":
            return float(text)
        if text == "(":
            value = self.union()
            self.take(")")
            self.no_range("(…)")
            return value
        if kind != "name":
            raise QueryError(f"unexpected {text!r} in PromQL")
        if text in _AGGREGATIONS:
            return self.aggregation(text)
        if text in _SET_OPERATORS:
            raise _refuse(f"{text!r}")
        if self.peek() == ("op", "("):
            if text in ("rate", "increase"):
                return self.counter_range(text)
            if text == "histogram_quantile":
                self.take("(")
                quantile = self.expr()
                self.take(",")
                buckets = self.union()
                self.take(")")
                if not isinstance(quantile, float) or not isinstance(buckets, dict):
                    raise QueryError("histogram_quantile(φ, buckets) needs a number and a vector")
                return _histogram_quantile(quantile, buckets)
            if text == "vector":
                self.take("(")
                value = self.expr()
                self.take(")")
                if not isinstance(value, float):
                    raise QueryError("vector() needs a number")
                return {frozenset(): value}
            if text in _RANGE_FUNCTIONS or text.endswith("_over_time"):
                raise _refuse(f"{text}()")
            raise QueryError(f"{text}() is not supported by the scrape source; {USE_PROMETHEUS}")
        vector = self.selector(text)
        self.no_range(text)
        return vector

    def counter_range(self, function: str) -> Vector:
        """``rate(x[R])`` / ``increase(x[R])`` from each series' ``_created`` zero point."""
        self.take("(")
        kind, name = self.take()
        if kind != "name" or name in _AGGREGATIONS:
            raise _refuse(f"{function}() of an expression (only of a selector: {function}(x[5m]))")
        matchers = self.matchers()
        token = self.peek()
        if token is None or token[0] != "duration":
            raise QueryError(f"{function}() needs a range, e.g. {function}({name}[5m])")
        self.take()
        inner = token[1][1:-1]
        if ":" in inner:
            raise _refuse(f"{function}() of a subquery")
        seconds = promql_seconds(inner.strip())
        self.no_range(name)
        self.take(")")
        result: Vector = {}
        for labels, value in self.select(name, matchers).items():
            created = self.created.get(_created_key(name, labels))
            shown = f"{name}{{{', '.join(f'{k}={v!r}' for k, v in sorted(labels))}}}"
            if created is None:
                raise _refuse(
                    f"{function}({name}[{inner}]): {shown} has no _created timestamp in the exposition"
                )
            if created < self.at - seconds:
                # Created before the range: its value then, from a scrape remembered from the
                # range's start (a service scrapes every evaluation), or no answer.
                increase = self.remembered_increase(name, labels, value, created, seconds)
                if increase is None:
                    began = timestamp(datetime.fromtimestamp(created, UTC))
                    raise _refuse(
                        f"{function}({name}[{inner}]): {shown} counts since {began}, before the {inner} "
                        "range began, and no scrape from the range's start is remembered, so its "
                        "increase over the range is unknown"
                    )
                result[labels] = increase / seconds if function == "rate" else increase
                continue
            # Created inside the range: the counter was 0 then, so its value is the increase.
            result[labels] = value / seconds if function == "rate" else value
        return result

    def remembered_increase(
        self, name: str, labels: Labels, value: float, created: float, seconds: float
    ) -> float | None:
        """The increase over ``[at - seconds, at]`` from the value a remembered scrape near the
        range's start saw (the same counter: same ``_created``, no reset), extrapolated to the
        range's start the way Prometheus extrapolates to its boundaries; None without one."""
        if self.earlier is None:
            return None
        start = self.at - seconds
        found = self.earlier(start, max(seconds * RANGE_TOLERANCE, MIN_TOLERANCE_S))
        if found is None:
            return None
        then, counters = found
        before = counters.get((name, labels))
        if before is None or before[1] != created or then >= self.at or value < before[0]:
            return None
        return (value - before[0]) * seconds / (self.at - then)

    def labels_list(self) -> list[str]:
        self.take("(")
        names: list[str] = []
        while self.peek() != ("op", ")"):
            names.append(self.take()[1])
            if self.peek() == ("op", ","):
                self.take()
        self.take(")")
        return names

    def aggregation(self, name: str) -> Value:
        grouping: tuple[str, list[str]] | None = None
        token = self.peek()
        if token is not None and token[1] in ("by", "without"):
            self.take()
            grouping = (token[1], self.labels_list())
        self.take("(")
        value = self.union()
        self.take(")")
        token = self.peek()
        if token is not None and token[1] in ("by", "without"):
            self.take()
            grouping = (token[1], self.labels_list())
        self.no_range(f"{name}(…)")
        if isinstance(value, float):
            raise QueryError(f"{name}() needs a vector, not a number")
        groups: dict[Labels, list[float]] = {}
        for labels, number in value.items():
            if grouping is None:
                key: Labels = frozenset()
            elif grouping[0] == "by":
                key = frozenset((k, v) for k, v in labels if k in grouping[1])
            else:
                key = frozenset((k, v) for k, v in labels if k not in grouping[1])
            groups.setdefault(key, []).append(number)
        return {key: _AGGREGATIONS[name](numbers) for key, numbers in groups.items()}

    def matchers(self) -> list[tuple[str, str, str]]:
        found: list[tuple[str, str, str]] = []
        if self.peek() == ("op", "{"):
            self.take()
            while self.peek() != ("op", "}"):
                label = self.take()[1]
                op = self.take()[1]
                if op not in ("=", "!=", "=~", "!~"):
                    raise QueryError(f"bad label matcher {label}{op}")
                kind, raw = self.take()
                if kind != "string":
                    raise QueryError(f"label value for {label} must be quoted")
                found.append((label, op, raw[1:-1].encode().decode("unicode_escape")))
                if self.peek() == ("op", ","):
                    self.take()
            self.take("}")
        return found

    def select(self, name: str, matchers: list[tuple[str, str, str]]) -> Vector:
        vector: Vector = {}
        for sample_name, labels, value in self.samples:
            if sample_name == name and all(_matches(labels.get(k, ""), op, v) for k, op, v in matchers):
                vector[frozenset(labels.items())] = value
        return vector

    def selector(self, name: str) -> Vector:
        return self.select(name, self.matchers())


def _created_key(name: str, labels: Labels) -> tuple[str, Labels]:
    """The ``_created`` series of a counter or histogram series (prometheus_client's names)."""
    for suffix in ("_total", "_bucket", "_count", "_sum"):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            return f"{base}_created", frozenset((k, v) for k, v in labels if k != "le")
    return f"{name}_created", labels


def _matches(actual: str, op: str, expected: str) -> bool:
    if op == "=":
        return actual == expected
    if op == "!=":
        return actual != expected
    found = re.fullmatch(expected, actual) is not None
    return found if op == "=~" else not found


def _apply(op: str, a: float, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        return math.nan if a == 0 else math.copysign(math.inf, a)
    return a / b


def _binary(op: str, left: Value, right: Value) -> Value:
    if isinstance(left, float) and isinstance(right, float):
        return _apply(op, left, right)
    if isinstance(left, float):
        assert isinstance(right, dict)
        return {k: _apply(op, left, v) for k, v in right.items()}
    if isinstance(right, float):
        return {k: _apply(op, v, right) for k, v in left.items()}
    # vector op vector: one-to-one on identical label sets (metric names dropped)
    return {k: _apply(op, v, right[k]) for k, v in left.items() if k in right}


def _histogram_quantile(q: float, buckets: Vector) -> Vector:
    series: dict[Labels, list[tuple[float, float]]] = {}
    for labels, count in buckets.items():
        le = dict(labels).get("le")
        if le is None:
            continue
        key = frozenset((k, v) for k, v in labels if k != "le")
        series.setdefault(key, []).append((math.inf if le == "+Inf" else float(le), count))
    result: Vector = {}
    for key, points in series.items():
        points.sort()
        total = points[-1][1] if points and math.isinf(points[-1][0]) else math.nan
        if math.isnan(total) or total == 0:
            result[key] = math.nan
            continue
        rank = q * total
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in points:
            if count >= rank:
                if math.isinf(bound):
                    result[key] = lower_bound  # Prometheus returns the last finite bound
                elif count == lower_count:
                    result[key] = bound
                else:
                    result[key] = lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                        count - lower_count
                    )
                break
            lower_bound, lower_count = bound, count
    return result


def evaluate_snapshot(
    promql: str,
    samples: list[tuple[str, dict[str, str], float]],
    at: float | None = None,
    earlier: Earlier | None = None,
) -> Value:
    """Evaluate one PromQL expression on a parsed exposition scraped at ``at`` (Unix time);
    ``earlier``: the remembered scrapes of the same target (see :class:`ScrapeMemory`)."""
    return _Parser(promql, samples, time.time() if at is None else at, earlier).parse()


#: A remembered scrape counts as the range's start if it lies this share of the range from it
#: (at least MIN_TOLERANCE_S): a service that evaluates every 5 minutes scraped 5 minutes ago,
#: give or take its schedule's jitter.
RANGE_TOLERANCE = 0.1
MIN_TOLERANCE_S = 30.0
#: (moment, tolerance) → the remembered scrape nearest ``moment`` within ``tolerance``:
#: (when, {(name, labels): (value, created)}), or None.
Counters = dict[tuple[str, Labels], tuple[float, float]]
Earlier = Callable[[float, float], "tuple[float, Counters] | None"]


def ranged_counters(promql: str) -> set[str]:
    """The counters ``promql`` reads over a range — ``x`` of ``rate(x[5m])`` and
    ``increase(x[1h])`` — the only values of a target a :class:`ScrapeMemory` needs."""
    tokens = [(m.lastgroup, m.group(m.lastgroup or 0)) for m in _TOKEN.finditer(promql)]
    return {
        name
        for (kind, function), opened, (named, name) in zip(tokens, tokens[1:], tokens[2:], strict=False)
        if kind == "name" and function in ("rate", "increase") and opened == ("op", "(") and named == "name"
    }


class ScrapeMemory:
    """The counters each scrape target showed at earlier scrapes, kept by the engine that owns
    it (the service's worker: one per process, across evaluations) so that ``increase`` and
    ``rate`` over a range can be answered for a counter created before the range: from its
    value at the range's start and its value now, exactly as a Prometheus server would from
    its samples. Bounded: at most one scrape per target every ``spacing_s``, none older than
    ``keep_s``; of each scrape only the series of the counters read over a range by the
    queries asked of that target so far (:func:`ranged_counters`), and no more than
    ``max_values`` series values per target, the oldest scrapes dropped first (a range that
    began before the oldest kept is refused, never guessed). Before, every counter of every
    scrape was kept: an exposition of 5,000 counter series, scraped at every evaluation for
    six hours, held some millions of values in the worker."""

    def __init__(self, keep_s: float = 6 * 3600, spacing_s: float = 20.0, max_values: int = 500_000) -> None:
        self.keep_s, self.spacing_s, self.max_values = keep_s, spacing_s, max_values
        self._scrapes: dict[str, list[tuple[float, Counters]]] = {}
        self._wanted: dict[str, set[str]] = {}

    def remember(
        self,
        target: str,
        at: float,
        samples: list[tuple[str, dict[str, str], float]],
        counters: Collection[str],
    ) -> None:
        """Keep ``target``'s scrape at ``at``: the series of ``counters`` (the ones the query
        just asked reads over a range) and of those earlier queries asked for."""
        wanted = self._wanted.setdefault(target, set())
        wanted.update(counters)
        created = {
            (name, frozenset(labels.items())): value
            for name, labels, value in samples
            if name.endswith("_created")
        }
        kept_counters: Counters = {}
        for name, labels, value in samples:
            if name in wanted and name.endswith(("_total", "_count", "_sum", "_bucket")):
                key = frozenset(labels.items())
                found = created.get(_created_key(name, key))
                if found is not None:
                    kept_counters[(name, key)] = (value, found)
        kept = [s for s in self._scrapes.get(target, []) if at - s[0] <= self.keep_s]
        if not kept or at - kept[-1][0] >= self.spacing_s:
            kept.append((at, kept_counters))
        while len(kept) > 1 and sum(len(c) for _, c in kept) > self.max_values:
            kept.pop(0)
        self._scrapes[target] = kept

    def moments(self, target: str) -> list[float]:
        """When the scrapes of ``target`` kept now were taken, oldest first."""
        return [at for at, _ in self._scrapes.get(target, [])]

    def near(self, target: str, moment: float, tolerance: float) -> tuple[float, Counters] | None:
        candidates = [s for s in self._scrapes.get(target, []) if abs(s[0] - moment) <= tolerance]
        return min(candidates, key=lambda s: abs(s[0] - moment)) if candidates else None


def parse_exposition(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a Prometheus text exposition: (name, labels, value)."""
    return read_exposition(text)[0]


def read_exposition(text: str) -> tuple[list[tuple[str, dict[str, str], float]], set[str]]:
    """Every sample of a Prometheus text exposition — (name, labels, value) — and the names of
    the families it declares, those without a sample yet included (a counter with labels
    that was never incremented)."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: list[tuple[str, dict[str, str], float]] = []
    families: set[str] = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        samples.extend((sample.name, dict(sample.labels), float(sample.value)) for sample in family.samples)
    return samples, families


def scrape_problems(promql: str) -> list[str]:
    """Why the scrape source cannot evaluate ``promql`` (a construct one snapshot cannot
    answer), or nothing: checked by ``gatecheck validate`` before anything runs."""
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    parameters = {"window_start": moment - timedelta(hours=1), "window_end": moment, "as_of": moment}
    try:
        evaluate_snapshot(render_promql(promql, parameters), [], moment.timestamp())
    except QueryError as exc:
        return [str(exc)]
    return []


class ScrapeSource(Source):
    """Reads ``scrape+http(s)://…`` expositions; see the module docstring for semantics."""

    def __init__(
        self, name: str, config: PrometheusSourceConfig, root: Path, memory: ScrapeMemory | None = None
    ) -> None:
        super().__init__(name, config)
        self.target = config.url.removeprefix("scrape+")
        self.memory = memory
        headers = {}
        if config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {config.bearer_token.get_secret_value()}"
        self._client = httpx.AsyncClient(timeout=self.timeout, headers=headers, verify=verified_tls())

    async def samples(self) -> list[tuple[str, dict[str, str], float]]:
        return (await self.exposition())[0]

    async def exposition(self) -> tuple[list[tuple[str, dict[str, str], float]], set[str]]:
        """The exposition's samples and the families it declares."""
        shown = redact(self.target)
        with http_errors(f"the exposition at {shown}", self.timeout):
            response = await fetch(
                self._client, "GET", self.target, what=f"the exposition at {shown}", timeout=self.timeout
            )
        if response.status_code != 200:
            raise SourceUnavailable(f"scrape of {shown} answered {response.status_code}")
        try:
            return read_exposition(response.text)
        except (ValueError, TypeError) as exc:
            raise QueryError(f"scrape of {shown}: not a Prometheus exposition ({exc})") from exc

    async def query(self, text: Any, parameters: QueryParameters) -> pd.DataFrame:
        measures = text.measures if isinstance(text, PromQuery) else {"value": text}
        end = parameters["window_end"]
        assert isinstance(end, datetime)
        samples, families = await self.exposition()
        named = {sample[0] for sample in samples} | families
        for measure, promql in measures.items():
            for metric in sorted(fallback_metrics(promql)):
                if not any(name in named for name in families_of(metric)):
                    raise unknown_fallback_metric(measure, metric, f"the exposition at {redact(self.target)}")
            for metric, label, matcher in fallback_labels(promql):
                carried = {key for name, found, _ in samples if name == metric for key in found}
                if any(name == metric for name, _, _ in samples) and label not in carried:
                    where = f"the exposition at {redact(self.target)}"
                    raise unknown_fallback_label(measure, metric, matcher, carried, where)
        scraped_at = time.time()
        late = scraped_at - end.timestamp()
        # how far the window's end may lie from the moment of the scrape: a snapshot is the present
        if late > max(PRESENT_TOLERANCE.total_seconds(), self.timeout):
            raise QueryError(
                f"the window ended {late:.0f}s before the scrape: a snapshot is the present, so a past "
                f"window (--as-of) cannot be judged from it; {USE_PROMETHEUS}"
            )
        earlier: Earlier | None = None
        if self.memory is not None:
            memory, target = self.memory, self.target
            earlier = lambda moment, tolerance: memory.near(target, moment, tolerance)  # noqa: E731
        rows: dict[Labels, dict[str, Any]] = {}
        try:
            for measure, promql in measures.items():
                try:
                    value = evaluate_snapshot(render_promql(promql, parameters), samples, scraped_at, earlier)
                except QueryError as exc:
                    raise QueryError(f"{measure}: {exc}") from exc
                vector = {frozenset(): value} if isinstance(value, float) else value
                for labels, number in vector.items():
                    rows.setdefault(labels, dict(labels))[measure] = None if math.isnan(number) else number
        finally:
            # after judging: a scrape is never its own range's start. Remembered when the answer
            # is refused too: the first scrape of a counter older than the range is refused for
            # want of an earlier one, and was never kept, so every later one was refused as well.
            if self.memory is not None:
                asked = [ranged_counters(render_promql(promql, parameters)) for promql in measures.values()]
                self.memory.remember(self.target, scraped_at, samples, set().union(*asked))
        return measures_frame(list(rows.values()), list(measures))

    async def close(self) -> None:
        await self._client.aclose()


async def check_scrape(name: str, config: PrometheusSourceConfig, root: Path) -> Probe:
    """Read the exposition once: how many samples of how many series names, how long it took."""
    started = time.perf_counter()
    scrape = ScrapeSource(name, config, root)
    try:
        samples = await scrape.samples()
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
