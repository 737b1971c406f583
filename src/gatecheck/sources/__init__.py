"""Sources: the systems gatecheck queries. One module per backend (a leaf); the contract is
:mod:`gatecheck.sources.base`; this module is the one explicit registry — no plugin discovery:
a new source is a module, a config model in the ``SourceConfig`` union, and a line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatecheck.clickhouse import ClickHouse
from gatecheck.config import (
    ClickHouseSourceConfig,
    NatsQuery,
    NatsSourceConfig,
    PrometheusSourceConfig,
    PromQuery,
    SourceConfig,
)
from gatecheck.sources.base import QueryParameters, Source


def _clickhouse(name: str, config: Any, root: Path, clickhouse: ClickHouse | None) -> Source:
    from gatecheck.sources.clickhouse import ClickHouseSource

    return ClickHouseSource(name, config, root, clickhouse)


def _nats(name: str, config: Any, root: Path, clickhouse: ClickHouse | None) -> Source:
    from gatecheck.sources.nats import NatsSource

    return NatsSource(name, config, root)


def _prometheus(name: str, config: Any, root: Path, clickhouse: ClickHouse | None) -> Source:
    # One configuration type, two implementations: a server's HTTP API, or one service's
    # exposition read directly (scrape+http://).
    if config.url.startswith("scrape+"):
        from gatecheck.sources.scrape import ScrapeSource

        return ScrapeSource(name, config, root)
    from gatecheck.sources.prometheus import PrometheusSource

    return PrometheusSource(name, config, root)


@dataclass(frozen=True)
class SourceKind:
    """One kind of source: how to open it, and the query form its suites are written in."""

    open: Callable[[str, Any, Path, ClickHouse | None], Source]
    label: str  # "ClickHouse", for messages
    query_types: tuple[type, ...]  # what a suite's `query:` parses into for this kind
    query_help: str  # what the query must be, for the message when it is not


#: config model → its kind. Explicit, no plugin discovery.
SOURCE_TYPES: dict[type, SourceKind] = {
    ClickHouseSourceConfig: SourceKind(_clickhouse, "ClickHouse", (str,), "SQL text"),
    NatsSourceConfig: SourceKind(
        _nats, "NATS", (NatsQuery,), "a mapping of streams / consumers / counts / derive"
    ),
    PrometheusSourceConfig: SourceKind(
        _prometheus, "Prometheus", (str, PromQuery), "PromQL text or a mapping of measures"
    ),
}


def open_source(
    name: str, config: SourceConfig, root: Path, clickhouse: ClickHouse | None = None
) -> Source:
    """Build the source for ``config``; relative embedded paths resolve against ``root``;
    ``clickhouse`` is the engine's hub of ClickHouse connections (its own one if None)."""
    return SOURCE_TYPES[type(config)].open(name, config, root, clickhouse)


__all__ = ["SOURCE_TYPES", "QueryParameters", "Source", "SourceKind", "open_source"]
