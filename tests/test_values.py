"""The value helpers every output shares (gatecheck._values)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from pydantic import BaseModel

from gatecheck._values import (
    Moment,
    bound,
    document_time,
    number,
    observed_number,
    shown,
    timestamp,
    unit_of,
    utc_minute,
)


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


def test_one_timestamp_form_in_utc_whatever_the_zone() -> None:
    moment = datetime(2026, 11, 22, 6, 50, 59, 756000, tzinfo=timezone(timedelta(hours=2)))
    assert timestamp(moment) == "2026-11-22T04:50:59Z"  # to the second, for people
    assert document_time(moment) == "2026-11-22T04:50:59.756Z"  # the same form with its milliseconds
    assert document_time(moment.replace(microsecond=0)) == "2026-11-22T04:50:59Z"
    assert timestamp(datetime(2026, 11, 22, 4, 50)) == "2026-11-22T04:50:00Z"  # naive means UTC
    assert utc_minute(moment) == "2026-11-22T04:50Z"
    assert timestamp(None) == "-" and utc_minute(None) == "-"


def test_a_documents_datetimes_are_serialized_in_the_one_form() -> None:
    class Document(BaseModel):
        at: Moment
        until: Moment | None = None

    at = datetime(2026, 12, 4, 17, 47, 1, 756123, tzinfo=UTC)
    assert Document(at=at).model_dump(mode="json") == {"at": "2026-12-04T17:47:01.756Z", "until": None}
    assert Document(at=at).model_dump()["at"] == at  # a datetime in Python, text only in JSON
    assert Document.model_validate_json('{"at": "2026-12-04T17:47:01.756Z"}').at == at.replace(microsecond=756000)


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (240.0, "", "240"), (1.0, "", "1"), (0, "", "0"), (-3.5, "", "-3.5"),
        (303.318652, "", "303.3"), (0.005138889, "", "0.005139"), (0.1 + 0.2, "", "0.3"),
        (12345.678, "", "12346"), (1e-7, "", "1e-7"), (1e20, "", "1e20"), (1000000000, "", "1000000000"),
        (7.063, "s", "7.063 s"), (750, "ms", "750 ms"), (0.005138889, "%", "0.5139 %"), (1.0, "%", "100 %"),
        (np.float64(2.5), "", "2.5"), (np.int64(7), "", "7"),
        (True, "", "true"), (float("inf"), "", "+inf"), (float("nan"), "", "NaN"),
    ],
)  # fmt: skip
def test_numbers_without_float_noise(value: float, unit: str, expected: str) -> None:
    assert number(value, unit) == expected


def test_observed_values_and_bounds_as_text() -> None:
    assert shown(None) == "none" and shown(False) == "false" and shown("file") == "file"
    assert shown([True, "x"]) == "true, x"  # never Python's {True} or ['x']
    assert shown(0.25, "%") == "25 %"
    assert bound(1000000000, "max") == "no limit" and bound(-1e9, "min") == "no limit"
    assert bound(1000000000, "min") == "1000000000"  # a minimum of a billion is a real bound
    assert bound(0.001, "max", "%") == "0.1 %"


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("ingest_lag_s", "s"), ("late_arrival_p99_s", "s"), ("p95_latency_ms", "ms"),
        ("core_hot_share", "%"), ("unmatched_rate", "%"), ("success_ratio", "%"),
        ("schema_failures_per_s", "/s"), ("hrv_messages", ""), ("sessions", ""), (None, ""),
        ("rows_written", ""), ("dlq_messages", ""),
    ],
)  # fmt: skip
def test_the_unit_a_columns_name_says(name: str | None, unit: str) -> None:
    assert unit_of(name) == unit


def test_a_digest_is_canonical_and_a_record_without_one_is_never_redefined() -> None:
    from gatecheck._values import digest_of, redefined

    assert digest_of({"b": 1, "a": [2, 3]}) == digest_of({"a": [2, 3], "b": 1})  # key order aside
    assert digest_of({"a": 1}) != digest_of({"a": 1.5})
    assert redefined("old", "now") and not redefined("now", "now")
    assert not redefined("", "now") and not redefined("old", "")  # unknown on either side: as today
