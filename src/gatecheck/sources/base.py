"""The source contract and the registry of source implementations.

A source answers one suite query with a *small* pandas DataFrame of aggregates: the heavy
work happens inside the source (SQL, JetStream APIs, PromQL), never in Python.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from gatecheck.config import (
    ClickHouseSourceConfig,
    NatsSourceConfig,
    PrometheusSourceConfig,
    SourceConfig,
)
from gatecheck.errors import redact

QueryParameters = Mapping[str, datetime | bool | int | float | str]


class Source(ABC):
    """One configured source (``environments.<env>.sources.<name>`` in gatecheck.yaml)."""

    def __init__(self, name: str, config: SourceConfig) -> None:
        self.name = name
        self.config = config

    @property
    def timeout(self) -> float:
        return self.config.timeout.total_seconds()

    @abstractmethod
    async def query(self, text: Any, parameters: QueryParameters) -> pd.DataFrame:
        """Run one suite query (SQL text or a source-specific query model); raise a
        ``SourceError`` subclass on failure."""

    async def close(self) -> None:  # noqa: B027 — optional hook
        """Release connections; safe to call more than once."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {redact(self.config.url)}>"


def _clickhouse(name: str, config: Any, root: Path) -> Source:
    from gatecheck.sources.clickhouse import ClickHouseSource

    return ClickHouseSource(name, config, root)


def _nats(name: str, config: Any, root: Path) -> Source:
    from gatecheck.sources.nats import NatsSource

    return NatsSource(name, config, root)


def _prometheus(name: str, config: Any, root: Path) -> Source:
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
