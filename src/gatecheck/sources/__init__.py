"""Sources: the systems gatecheck queries. One module per backend (a leaf); the contract is
:mod:`gatecheck.sources.base`; this module is the one explicit registry — no plugin discovery:
a new source is a module, a config model in the ``SourceConfig`` union, and a line here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gatecheck.config import (
    ClickHouseSourceConfig,
    NatsSourceConfig,
    PrometheusSourceConfig,
    SourceConfig,
)
from gatecheck.sources.base import QueryParameters, Source


def _clickhouse(name: str, config: Any, root: Path) -> Source:
    from gatecheck.sources.clickhouse import ClickHouseSource

    return ClickHouseSource(name, config, root)


def _nats(name: str, config: Any, root: Path) -> Source:
    from gatecheck.sources.nats import NatsSource

    return NatsSource(name, config, root)


def _prometheus(name: str, config: Any, root: Path) -> Source:
    # One configuration type, two implementations: a server's HTTP API, or one service's
    # exposition read directly (scrape+http://).
    if config.url.startswith("scrape+"):
        from gatecheck.sources.scrape import ScrapeSource

        return ScrapeSource(name, config, root)
    from gatecheck.sources.prometheus import PrometheusSource

    return PrometheusSource(name, config, root)


#: config model → implementation. Explicit, no plugin discovery.
SOURCE_TYPES: dict[type, Callable[[str, Any, Path], Source]] = {
    ClickHouseSourceConfig: _clickhouse,
    NatsSourceConfig: _nats,
    PrometheusSourceConfig: _prometheus,
}


def open_source(name: str, config: SourceConfig, root: Path) -> Source:
    """Build the source for ``config``; relative embedded paths resolve against ``root``."""
    return SOURCE_TYPES[type(config)](name, config, root)


__all__ = ["SOURCE_TYPES", "QueryParameters", "Source", "open_source"]
