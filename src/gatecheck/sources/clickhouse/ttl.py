"""Table TTLs against a window: rows a table's TTL has removed (or rolled up) are not in any
answer, so a window that reaches back beyond the TTL is judged on part of itself — a 48-hour
soak read from a table that keeps a day. The rules come from ``system.tables.engine_full``,
as ClickHouse writes them (``TTL ts + toIntervalDay(1), ts + toIntervalDay(30) TO DISK
'cold'``); a rule that moves or recompresses rows keeps them and counts for nothing."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from gatecheck.sources.sqltext import outside_quotes

#: ClickHouse's interval units, each at its shortest (a month of 28 days: a rule of one
#: month may already have removed the rows of a 29-day window).
_UNITS = {
    "Second": timedelta(seconds=1),
    "Minute": timedelta(minutes=1),
    "Hour": timedelta(hours=1),
    "Day": timedelta(days=1),
    "Week": timedelta(weeks=1),
    "Month": timedelta(days=28),
    "Quarter": timedelta(days=89),
    "Year": timedelta(days=365),
}
_RULE = re.compile(
    r"^(?P<expression>.+?) \+ toInterval(?P<unit>Second|Minute|Hour|Day|Week|Month|Quarter|Year)"
    r"\((?P<count>\d+)\)(?P<rest>.*)$"
)


@dataclass(frozen=True)
class TtlRule:
    """One rule of a table's TTL that removes or rolls up rows: after how long, in its words."""

    after: timedelta
    text: str


def _top_level(text: str, separator: str) -> list[str]:
    """``text`` split at each ``separator`` outside parentheses and quotes."""
    parts, begin = [], 0
    for i, char, depth in outside_quotes(text):
        if i >= begin and depth == 0 and char != ")" and text.startswith(separator, i):
            parts.append(text[begin:i])
            begin = i + len(separator)
    parts.append(text[begin:])
    return parts


def removing_rules(engine_full: str) -> list[TtlRule]:
    """The rules of a table's TTL (from ``system.tables.engine_full``) that remove rows —
    ``DELETE``, the default, with or without ``WHERE`` — or roll them up (``GROUP BY``), each
    with the interval it waits; a rule whose interval cannot be read is left out."""
    clauses = _top_level(engine_full, " TTL ")
    if len(clauses) < 2:
        return []
    ttl = _top_level(clauses[1], " SETTINGS ")[0]
    found = []
    for rule in _top_level(ttl, ", "):
        rule = rule.strip()
        matched = _RULE.match(rule)
        if matched is None:
            continue
        rest = matched.group("rest").strip()
        if rest.startswith(("TO DISK", "TO VOLUME", "RECOMPRESS")):
            continue  # the rows stay, elsewhere or compressed otherwise
        found.append(TtlRule(int(matched.group("count")) * _UNITS[matched.group("unit")], rule))
    return found


__all__ = ["TtlRule", "removing_rules"]
