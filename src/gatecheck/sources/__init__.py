"""Sources: the systems gatecheck queries. One module per backend (a leaf) owns its
configuration model, its query model and validation, and its implementation; the contract is
:mod:`gatecheck.sources.base`; this module is the one explicit registry — no plugin
discovery. A new source is a leaf module and one entry in ``SOURCE_TYPES``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Discriminator, Field, Tag

from gatecheck.sources import clickhouse, http, junit, nats, postgresql, prometheus
from gatecheck.sources.base import QueryParameters, Source, SourceSettings
from gatecheck.sources.clickhouse import ClickHouseSourceConfig, sql_problems
from gatecheck.sources.http import HttpSourceConfig, ProbeQuery
from gatecheck.sources.junit import JUnitQuery, JUnitSourceConfig
from gatecheck.sources.nats import NatsQuery, NatsSourceConfig
from gatecheck.sources.postgresql import PostgreSQLSourceConfig
from gatecheck.sources.probe import Probe
from gatecheck.sources.prometheus import scrape_query_problems
from gatecheck.sources.prometheus.promql import PrometheusSourceConfig, PromQuery, promql_problems

if TYPE_CHECKING:
    from gatecheck.sources.clickhouse.connection import ClickHouse


def _clickhouse(
    name: str, config: Any, root: Path, clickhouse: ClickHouse | None, scrapes: Any = None
) -> Source:
    from gatecheck.sources.clickhouse import ClickHouseSource

    return ClickHouseSource(name, config, root, clickhouse)


def _postgresql(
    name: str, config: Any, root: Path, clickhouse: ClickHouse | None, scrapes: Any = None
) -> Source:
    from gatecheck.sources.postgresql import PostgreSQLSource

    return PostgreSQLSource(name, config, root)


def _junit(name: str, config: Any, root: Path, clickhouse: ClickHouse | None, scrapes: Any = None) -> Source:
    from gatecheck.sources.junit import JUnitSource

    return JUnitSource(name, config, root)


def _nats(name: str, config: Any, root: Path, clickhouse: ClickHouse | None, scrapes: Any = None) -> Source:
    from gatecheck.sources.nats import NatsSource

    return NatsSource(name, config, root)


def _prometheus(
    name: str, config: Any, root: Path, clickhouse: ClickHouse | None, scrapes: Any = None
) -> Source:
    # One configuration type, two implementations: a server's HTTP API, or one service's
    # exposition read directly (scrape+http://).
    if config.scrape:
        from gatecheck.sources.prometheus.scrape import ScrapeSource

        return ScrapeSource(name, config, root, scrapes)
    from gatecheck.sources.prometheus.api import PrometheusSource

    return PrometheusSource(name, config, root)


def _http(name: str, config: Any, root: Path, clickhouse: ClickHouse | None, scrapes: Any = None) -> Source:
    from gatecheck.sources.http import HttpSource

    return HttpSource(name, config, root)


def _no_problems(config: Any, query: Any) -> list[tuple[str, str, str]]:
    return []


@dataclass(frozen=True, kw_only=True)
class SourceKind:
    """One kind of source: its configuration, how to open it, and its suites' query form."""

    config: type[SourceSettings]  # the model of `environments.E.sources.NAME` for this `type`
    # (name, config, root, the engine's ClickHouse hub, the engine's ScrapeMemory) → the source
    open: Callable[[str, Any, Path, ClickHouse | None, Any], Source]
    label: str  # "ClickHouse", for messages
    query_types: tuple[type, ...]  # what a suite's `query:` parses into for this kind
    query_help: str  # what the query must be, for the message when it is not
    # what the source would send for a query (`gatecheck explain`), nothing connected:
    # (source name, config, query, parameters, root) → {"sent_to": …, "requests": […]}
    explain: Callable[[str, Any, Any, QueryParameters, Path], dict[str, Any]]
    # `gatecheck check-sources`: (source name, config, root, the suites reading it) → a Probe
    check: Callable[[str, Any, Path, list[Any]], Awaitable[Probe]]
    text_problems: Callable[[str], list[str]] | None = None  # static checks of a text query
    # (key, what the source is, problem) for a query its configuration cannot answer
    config_problems: Callable[[Any, Any], list[tuple[str, str, str]]] = _no_problems
    # how a reconcile: side on this kind is answered: "clickhouse" / "postgresql" (hashed in
    # SQL), "nats" (messages read and hashed by gatecheck), None (no reconciliation)
    reconcile: str | None = None
    # whether a text query answers a row even when its tables hold none in the window (an
    # aggregate without GROUP BY): such a suite must declare its evidence
    rows_without_data: Callable[[str], bool] | None = None


#: ``type:`` in gatecheck.yaml → its kind. Explicit, no plugin discovery.
SOURCE_TYPES: dict[str, SourceKind] = {
    "clickhouse": SourceKind(
        config=ClickHouseSourceConfig,
        open=_clickhouse,
        label="ClickHouse",
        query_types=(str,),
        query_help="SQL text",
        explain=clickhouse.explain_query,
        check=clickhouse.check_source,
        text_problems=sql_problems,
        reconcile="clickhouse",
        rows_without_data=clickhouse.rows_without_data,
    ),
    "postgresql": SourceKind(
        config=PostgreSQLSourceConfig,
        open=_postgresql,
        label="PostgreSQL",
        query_types=(str,),
        query_help="SQL text",
        explain=postgresql.explain_query,
        check=postgresql.check_source,
        text_problems=postgresql.sql_problems,
        reconcile="postgresql",
        rows_without_data=postgresql.rows_without_data,
    ),
    "junit": SourceKind(
        config=JUnitSourceConfig,
        open=_junit,
        label="JUnit",
        query_types=(JUnitQuery,),
        query_help="a mapping: reports (a file glob) and newest",
        explain=junit.explain_query,
        check=junit.check_source,
    ),
    "nats": SourceKind(
        config=NatsSourceConfig,
        open=_nats,
        label="NATS",
        query_types=(NatsQuery,),
        query_help="a mapping of streams / consumers / counts / derive",
        explain=nats.explain_query,
        check=nats.check_source,
        reconcile="nats",
    ),
    "prometheus": SourceKind(
        config=PrometheusSourceConfig,
        open=_prometheus,
        label="Prometheus",
        query_types=(str, PromQuery),
        query_help="PromQL text or a mapping of measures",
        explain=prometheus.explain_query,
        check=prometheus.check_source,
        text_problems=promql_problems,
        config_problems=scrape_query_problems,
    ),
    "http": SourceKind(
        config=HttpSourceConfig,
        open=_http,
        label="HTTP probe",
        query_types=(ProbeQuery,),
        query_help="a probe: request (method, path, body) and optionally effect",
        explain=http.explain_query,
        check=http.check_source,
    ),
}

#: The model of one source in gatecheck.yaml, chosen by its ``type`` (every kind's config;
#: tests/config/test_config.py checks it against SOURCE_TYPES).
SourceConfig = Annotated[
    ClickHouseSourceConfig
    | PostgreSQLSourceConfig
    | NatsSourceConfig
    | PrometheusSourceConfig
    | JUnitSourceConfig
    | HttpSourceConfig,
    Field(discriminator="type"),
]

#: Query models of the mapping forms, tagged by source type (text queries are plain ``str``).
QUERY_FORMS: dict[str, type[Any]] = {
    tag: form for tag, kind in SOURCE_TYPES.items() for form in kind.query_types if form is not str
}


def _query_form(value: Any) -> str:
    """Which form a suite's ``query:`` is in, by its shape: text, or the mapping form whose
    keys it uses (the first mapping form when none: its own validation says what is wrong)."""
    if isinstance(value, str):
        return "text"
    keys = set(value) if isinstance(value, dict) else set()
    for tag, form in QUERY_FORMS.items():
        if keys & form.form_keys:
            return tag
    return next(iter(QUERY_FORMS))


#: The ``query:`` of a suite: SQL or PromQL text, or one of the mapping forms (QUERY_FORMS).
SuiteQuery = Annotated[
    Annotated[str, Tag("text")]
    | Annotated[NatsQuery, Tag("nats")]
    | Annotated[PromQuery, Tag("prometheus")]
    | Annotated[JUnitQuery, Tag("junit")]
    | Annotated[ProbeQuery, Tag("http")],
    Discriminator(_query_form),
]


def kind_of(config: SourceSettings) -> SourceKind:
    """The kind of a configured source, by its ``type``."""
    return SOURCE_TYPES[config.type]  # type: ignore[attr-defined]  # every leaf's config has one


def open_source(
    name: str, config: SourceSettings, root: Path, clickhouse: ClickHouse | None = None, scrapes: Any = None
) -> Source:
    """Build the source for ``config``; relative embedded paths resolve against ``root``;
    ``clickhouse`` is the engine's hub of ClickHouse connections (its own one if None);
    ``scrapes`` the engine's :class:`gatecheck.sources.prometheus.scrape.ScrapeMemory` (none: a scrape
    source answers from its one snapshot)."""
    return kind_of(config).open(name, config, root, clickhouse, scrapes)


__all__ = [
    "QUERY_FORMS",
    "SOURCE_TYPES",
    "QueryParameters",
    "Source",
    "SourceConfig",
    "SourceKind",
    "SourceSettings",
    "SuiteQuery",
    "kind_of",
    "open_source",
]
