"""Scrape source: ``scrape+http(s)://host:port/metrics`` — one service's exposition, no server.

For the embedded default (the demo) where no Prometheus runs: the exposition is fetched
(httpx) and parsed with prometheus_client's parser, and the suite's PromQL is evaluated on
that one snapshot by a small evaluator for the subset gatecheck's suites use: selectors
with ``= != =~ !~`` matchers, ``sum/min/max/avg/count [by|without (…)]``, ``rate``,
``irate``, ``increase``, ``*_over_time`` (ranges and subqueries), ``histogram_quantile``,
``vector(n)``, ``+ - * /``, ``or`` and parentheses.

A snapshot has no history, so time is read the only way it can be: **a counter's value is
its increase since the exporter started**, and that is taken as the increase over the
window — ``increase(x[w])`` is the counter, ``rate(x[w])`` is the counter / ``w``, and
``*_over_time`` of a value is that value. This is right for an exporter that started at the
window's beginning (as the demo's does) and only an approximation otherwise: use a real
Prometheus (``http(s)://``) to judge production.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from gatecheck.config import PrometheusSourceConfig, PromQuery, redact
from gatecheck.errors import QueryError, SourceTimeout, SourceUnavailable
from gatecheck.sources.base import QueryParameters, Source
from gatecheck.sources.prometheus import measures_frame, render_promql

Labels = frozenset[tuple[str, str]]
Vector = dict[Labels, float]
Value = Vector | float

_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|(?P<duration>\[[^\]]*\])"
    r"|(?P<string>\"(?:[^\"\\]|\\.)*\")|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)"
    r"|(?P<op>=~|!~|!=|[-+*/(){},=]))"
)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_AGGREGATIONS: dict[str, Callable[[list[float]], float]] = {
    "sum": sum,
    "min": min,
    "max": max,
    "avg": lambda xs: sum(xs) / len(xs),
    "count": lambda xs: float(len(xs)),
}


def _seconds(text: str) -> float:
    total, pos = 0.0, 0
    for match in re.finditer(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise QueryError(f"bad duration {text!r}")
    return total


class _Parser:
    """Recursive descent over the PromQL subset; evaluates as it parses."""

    def __init__(self, text: str, samples: list[tuple[str, dict[str, str], float]]) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                raise QueryError(f"unsupported PromQL at {text[pos : pos + 20]!r} (scrape source subset)")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            pos = match.end()
        self.index = 0
        self.samples = samples
        self.last_range: float | None = None

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
        if self.peek() is not None:
            raise QueryError(f"unexpected {self.peek()[1]!r} in PromQL")  # type: ignore[index]
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
        while (token := self.peek()) is not None and token[1] in "+-" and token[0] == "op":
            self.take()
            value = _binary(token[1], value, self.term())
        return value

    def term(self) -> Value:
        value = self.unary()
        while (token := self.peek()) is not None and token[1] in "*/" and token[0] == "op":
            self.take()
            value = _binary(token[1], value, self.unary())
        return value

    def unary(self) -> Value:
        token = self.peek()
        if token == ("op", "-"):
            self.take()
            return _binary("*", -1.0, self.unary())
        return self.primary()

    def range_suffix(self) -> float | None:
        token = self.peek()
        if token is not None and token[0] == "duration":
            self.take()
            inner = token[1][1:-1]
            return _seconds(inner.split(":")[0].strip())
        return None

    def primary(self) -> Value:
        kind, text = self.take()
        if kind == "number":
            return float(text)
        if text == "(":
            value = self.union()
            self.take(")")
            self.range_suffix()  # a subquery: the snapshot value stands for every step
            return value
        if kind != "name":
            raise QueryError(f"unexpected {text!r} in PromQL")
        if text in _AGGREGATIONS:
            return self.aggregation(text)
        if text in ("rate", "irate", "increase") or text.endswith("_over_time"):
            self.take("(")
            self.last_range = None
            value = self.expr()
            window = self.range_suffix() or self.last_range  # x[5m] is consumed by the selector
            self.take(")")
            if text in ("rate", "irate"):
                if not window:
                    raise QueryError(f"{text}() needs a range, e.g. [5m]")
                return _binary("/", value, window)
            return value
        if text == "histogram_quantile":
            self.take("(")
            quantile = self.expr()
            self.take(",")
            buckets = self.expr()
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
        return self.selector(text)

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
        if isinstance(value, float):
            return value
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

    def selector(self, name: str) -> Vector:
        matchers: list[tuple[str, str, str]] = []
        if self.peek() == ("op", "{"):
            self.take()
            while self.peek() != ("op", "}"):
                label = self.take()[1]
                op = self.take()[1]
                kind, raw = self.take()
                if kind != "string":
                    raise QueryError(f"label value for {label} must be quoted")
                matchers.append((label, op, raw[1:-1].encode().decode("unicode_escape")))
                if self.peek() == ("op", ","):
                    self.take()
            self.take("}")
        self.last_range = self.range_suffix()
        vector: Vector = {}
        for sample_name, labels, value in self.samples:
            if sample_name == name and all(_matches(labels.get(k, ""), op, v) for k, op, v in matchers):
                vector[frozenset(labels.items())] = value
        return vector


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


def evaluate_snapshot(promql: str, samples: list[tuple[str, dict[str, str], float]]) -> Value:
    """Evaluate one PromQL expression on a parsed exposition."""
    return _Parser(promql, samples).parse()


class ScrapeSource(Source):
    """Reads ``scrape+http(s)://…`` expositions; see the module docstring for semantics."""

    def __init__(self, name: str, config: PrometheusSourceConfig, root: Path) -> None:
        super().__init__(name, config)
        self.target = config.url.removeprefix("scrape+")
        headers = {}
        if config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {config.bearer_token.get_secret_value()}"
        self._client = httpx.AsyncClient(timeout=self.timeout, headers=headers)

    async def _samples(self) -> list[tuple[str, dict[str, str], float]]:
        from prometheus_client.parser import text_string_to_metric_families

        shown = redact(self.target)
        try:
            response = await self._client.get(self.target)
        except httpx.TimeoutException as exc:
            raise SourceTimeout(f"scrape of {shown} did not answer within {self.timeout:g}s") from exc
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"cannot scrape {shown}: {exc}") from exc
        if response.status_code != 200:
            raise SourceUnavailable(f"scrape of {shown} answered {response.status_code}")
        try:
            return [
                (sample.name, dict(sample.labels), float(sample.value))
                for family in text_string_to_metric_families(response.text)
                for sample in family.samples
            ]
        except (ValueError, TypeError) as exc:
            raise QueryError(f"scrape of {shown}: not a Prometheus exposition ({exc})") from exc

    async def query(self, text: Any, parameters: QueryParameters) -> pd.DataFrame:
        measures = text.measures if isinstance(text, PromQuery) else {"value": text}
        end = parameters["window_end"]
        assert isinstance(end, datetime)
        samples = await self._samples()
        rows: dict[Labels, dict[str, Any]] = {}
        for measure, promql in measures.items():
            try:
                value = evaluate_snapshot(render_promql(promql, parameters), samples)
            except QueryError as exc:
                raise QueryError(f"{measure}: {exc}") from exc
            vector = {frozenset(): value} if isinstance(value, float) else value
            for labels, number in vector.items():
                rows.setdefault(labels, dict(labels))[measure] = None if math.isnan(number) else number
        return measures_frame(list(rows.values()), list(measures))

    async def close(self) -> None:
        await self._client.aclose()
