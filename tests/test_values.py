"""The value helpers every output shares (gatecheck._values)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from gatecheck._values import observed_number, utc_minute


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, 1.0), (False, 0.0),  # a boolean observed value is a gauge and a chart point alike
        (3, 3.0), (0.25, 0.25), (np.int64(7), 7.0), (np.float32(0.5), 0.5),
        (float("nan"), None), (float("inf"), None), (-float("inf"), None),
        ("1.0", None), (None, None), ([1], None), ({"a": 1}, None),
    ],
)  # fmt: skip
def test_observed_number(value: object, expected: float | None) -> None:
    assert observed_number(value) == expected


def test_utc_minute_is_utc_whatever_the_zone() -> None:
    moment = datetime(2026, 11, 22, 6, 50, 59, tzinfo=timezone(timedelta(hours=2)))
    assert utc_minute(moment) == "2026-11-22 04:50Z"
    assert utc_minute(datetime(2026, 11, 22, 4, 50, tzinfo=UTC)) == "2026-11-22 04:50Z"
    assert utc_minute(None) == "-"
