from __future__ import annotations

from datetime import timedelta

import pytest

from gatecheck.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("48h", timedelta(hours=48)),
        ("7d", timedelta(days=7)),
        ("1h30m", timedelta(minutes=90)),
        ("0", timedelta(0)),
        (0, timedelta(0)),
    ],
)
def test_parses_the_documented_notation(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "48", 48, "-5m", "5 minutes", "h", "1h-30m", True, None, "400d"])
def test_rejects_anything_else(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_formats_back_to_the_same_notation() -> None:
    assert format_duration(timedelta(hours=49, minutes=30)) == "49h30m"
    assert format_duration(timedelta(days=7)) == "7d"
    assert format_duration(timedelta(0)) == "0s"


def test_a_moment_before_1972_is_refused_naming_its_flag() -> None:
    from gatecheck.durations import parse_as_of
    from gatecheck.errors import ConfigError

    assert parse_as_of("1972-01-01T00:00:00Z").year == 1972
    with pytest.raises(ConfigError, match=r"^--until: '1971-12-31T23:59:59Z' lies before 1972"):
        parse_as_of("1971-12-31T23:59:59Z", "--until")
