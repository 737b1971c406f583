"""Sources: the systems gatecheck queries. One module per backend; contracts in ``base``."""

from __future__ import annotations

from gatecheck.sources.base import Source, open_source

__all__ = ["Source", "open_source"]
