"""Values as gatecheck shows them: one helper each, so every output agrees.

- **Moments**: :func:`timestamp` — ``2026-12-04T17:47:01Z``, ISO 8601 in UTC to the second — in
  every text a person reads (terminal, pages, reasons, logs, notifications, charts);
  :data:`Moment` serializes a model's datetimes in JSON documents the same way, with the
  milliseconds an ``as_of`` carries (``2026-12-04T17:47:01.756Z``).
- **Numbers**: :func:`number` — ``240`` not ``240.0``, ``303.3`` not ``303.318652``, ``0.51 %``
  for a share, ``7.06 s`` for seconds, ``no limit`` for a bound of a billion or more.
- **Observed values**: :func:`shown` — numbers as above, ``true``/``false``, text as is.
- **Text from data**: :func:`whole_characters` — a lone UTF-16 surrogate as U+FFFD, so any
  output can write it as UTF-8.
- **Digests** of what judged or measured a record: :func:`digest_of` computes one,
  :func:`redefined` compares a recorded one with today's ('' — a record from before digests were
  kept — counts as today's).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, datetime
from numbers import Real
from typing import Annotated, Any

from pydantic import PlainSerializer, WithJsonSchema

from gatecheck.errors import one_line


def whole_characters(text: str) -> str:
    """``text`` with each lone UTF-16 surrogate as U+FFFD. JSON may write half a surrogate
    pair (``"\\ud800"``) and Python reads it as half a character (a file name that is not
    UTF-8 comes as one too): UTF-8 cannot hold it, and a report, a page or a ledger record with
    one in a value failed to be written at all."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


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


# ---------------------------------------------------------------------------- moments


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one is UTC already (as ``--as-of`` reads it)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def timestamp(moment: datetime | None) -> str:
    """``2026-12-04T17:47:01Z``: a moment as every text shows it (UTC, to the second), or
    ``-`` for none."""
    if moment is None:
        return "-"
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def document_time(moment: datetime) -> str:
    """``2026-12-04T17:47:01.756Z``: a moment in a JSON document — the same form, with the
    milliseconds it carries (none shown when they are zero)."""
    moment = _utc(moment)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    millis = moment.microsecond // 1000
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


#: A datetime field of a document: serialized by :func:`document_time` in JSON.
Moment = Annotated[
    datetime,
    PlainSerializer(document_time, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]


def utc_minute(moment: datetime | None) -> str:
    """``2026-11-22T04:50Z``: a step of a backtest, to the minute (the same form as
    :func:`timestamp`, without seconds), or ``-`` for none."""
    return _utc(moment).strftime("%Y-%m-%dT%H:%MZ") if moment else "-"


# ---------------------------------------------------------------------------- numbers

#: A bound this far out is "no limit" (thresholds.yaml writes 1000000000 to lift a limit).
NO_LIMIT = 1e9

_UNIT_SUFFIXES = (
    (re.compile(r"(^|_)per_(s|sec|second)$"), "/s"),
    (re.compile(r"(^|_)(ms|millis|milliseconds)$"), "ms"),
    (re.compile(r"(^|_)(s|secs|seconds)$"), "s"),
    (re.compile(r"(^|_)(share|rate|ratio)$"), "%"),
    (re.compile(r"(^|_)(bytes)$"), "B"),
)


def unit_of(name: str | None) -> str:
    """The unit a column's name says: ``…_per_s`` → /s, ``…_s``/``…_seconds`` → s, ``…_ms`` → ms,
    ``…_share``/``…_rate``/``…_ratio`` (a fraction) → %, ``…_bytes`` → B; otherwise none."""
    if not name:
        return ""
    lowered = name.lower()
    for pattern, unit in _UNIT_SUFFIXES:
        if pattern.search(lowered):
            return unit
    return ""


def number(value: float | int, unit: str = "") -> str:
    """A number as a person reads it: an integral value without ``.0``, others to four
    significant digits (``303.3``, ``0.005139``), no exponent below a billion; ``unit``
    appended (``7.063 s``), a fraction with ``%`` shown as a percentage (``0.51 %``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    number_ = float(value)
    if math.isnan(number_):
        return "NaN"
    if math.isinf(number_):
        return "+inf" if number_ > 0 else "-inf"
    if unit == "%":
        number_ *= 100
    text = _plain(number_)
    if not unit:
        return text
    return f"{text} {unit}" if unit != "%" else f"{text} %"


def _plain(value: float) -> str:
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    magnitude = math.floor(math.log10(abs(value)))
    if -5 <= magnitude < 15:
        decimals = max(0, 3 - magnitude)
        text = f"{value:.{decimals}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    mantissa, exponent = f"{value:.3e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def bound(value: Any, side: str | None, unit: str = "") -> str:
    """A threshold's value: ``no limit`` for a maximum of a billion or more (or a minimum of
    minus a billion or less), otherwise :func:`shown`."""
    numeric = None if isinstance(value, bool) else observed_number(value)
    if numeric is not None:
        lifted = numeric >= NO_LIMIT if side == "max" else numeric <= -NO_LIMIT if side == "min" else False
        if lifted:
            return "no limit"
    return shown(value, unit)


def shown(value: Any, unit: str = "") -> str:
    """An observed value or a threshold as text: numbers by :func:`number`, booleans as
    ``true``/``false``, ``none`` for no value, a list as ``a, b``, anything else as is."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Real):
        return number(value, unit)  # type: ignore[arg-type]
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(shown(v) for v in value)
    return one_line(str(value))  # text from a source: a newline in it is shown, never a new line


def digest_of(value: Any) -> str:
    """SHA-256 of ``value`` (JSON-ready) written canonically: keys sorted, anything else as text."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def redefined(recorded: str, current: str) -> bool:
    """Whether a record's digest says another definition judged or measured it than
    ``current``: both known and different."""
    return bool(recorded and current and recorded != current)
