"""Values as gatecheck shows them: one helper each, so every output agrees."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from numbers import Real
from typing import Any


def observed_number(value: Any) -> float | None:
    """An observed value or a threshold as a number for a gauge, a chart point or a
    comparison: a boolean is 1 or 0, a finite real number (int, float, numpy) itself;
    anything else (text, a list, None, NaN, ±inf) is not a number."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def utc_minute(moment: datetime | None) -> str:
    """``2026-11-22 04:50Z`` (a step of a backtest, to the minute), or ``-`` for none."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ") if moment else "-"
