"""The source contract. It imports no implementation: the registry that maps a source's
configuration to its implementation is :mod:`gatecheck.sources` (``SOURCE_TYPES``).

A source answers one suite query with a *small* pandas DataFrame of aggregates: the heavy
work happens inside the source (SQL, JetStream APIs, PromQL), never in Python.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from gatecheck.config import SourceConfig
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
