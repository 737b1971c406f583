"""Durations written as ``90s``, ``30m``, ``48h``, ``7d`` (or combined: ``1h30m``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from gatecheck.errors import ConfigError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def summed_parts(text: str, part: re.Pattern[str], units: Mapping[str, float]) -> float | None:
    """``text`` read as ``part`` matches one after another — a number and a unit of ``units``
    (``1h30m``) — in seconds; None when it is not that (empty, or anything between or after)."""
    pos, seconds = 0, 0.0
    for match in part.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * units[match.group(2)]
        pos = match.end()
    return seconds if text and pos == len(text) else None


def parse_duration(value: Any) -> timedelta:
    """Parse ``48h`` / ``30m`` / ``1h30m`` / ``0``; reject negatives and other text."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30m or 48h, got {value!r}")
    elif isinstance(value, int | float):
        if value != 0:
            raise ValueError(f"a duration needs a unit (s, m, h, d), got {value!r}")
        seconds = 0.0
    elif isinstance(value, str):
        text = value.strip()
        if text == "0":
            return timedelta(0)
        summed = summed_parts(text, _PART, _UNITS)
        if summed is None:
            raise ValueError(f"expected a duration such as 90s, 30m, 48h or 7d, got {value!r}")
        seconds = summed
    else:
        raise ValueError(f"expected a duration such as 30m or 48h, got {value!r}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    if seconds > 366 * 86400:
        raise ValueError(f"a duration longer than a year is not supported, got {value!r}")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """Render a duration in the same notation it is written in (``1h30m``)."""
    total = round(delta.total_seconds())
    if total == 0:
        return "0s"
    parts = []
    # Days only from a week on: a soak reads "48h", not "2d".
    units = (
        (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
        if total >= 7 * 86400
        else (("h", 3600), ("m", 60), ("s", 1))
    )
    for unit, size in units:
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


#: How far ahead of this machine's clock a moment may lie (the clocks of two machines disagree
#: a little): ``gatecheck run --as-of`` refuses more, a verdict or a JUnit run dated further
#: ahead is not to be believed.
MAX_CLOCK_SKEW = timedelta(minutes=2)

#: The earliest moment gatecheck judges as of: two years past the Unix epoch, room for a
#: window of up to a year, its settle and the lookbacks behind it. Year 1 made every window
#: start before datetime's own first year: a traceback, where a bad flag is one line.
EARLIEST_AS_OF = datetime(1972, 1, 1, tzinfo=UTC)


def parse_as_of(text: str | None, flag: str = "--as-of") -> datetime:
    """``--as-of`` (ISO 8601; naive means UTC) or now, in UTC, to the millisecond; one before
    ``EARLIEST_AS_OF`` is a ConfigError naming ``flag``."""
    if text is None:
        moment = datetime.now(UTC)
    else:
        try:
            moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError(
                f"{flag}: {text!r} is not an ISO 8601 time (e.g. 2026-11-22T06:00:00Z)"
            ) from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if moment < EARLIEST_AS_OF:
            raise ConfigError(f"{flag}: {text!r} lies before 1972 (gatecheck judges windows after 1970)")
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
