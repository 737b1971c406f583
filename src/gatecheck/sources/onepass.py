"""The backtest's one-pass form of a windowed ClickHouse suite: every step answered by one
scan of the table instead of one query per step.

A suite of the shape ``SELECT … FROM table [FINAL] WHERE col >= {window_start} AND col <
{window_end} [AND …] [GROUP BY …] [HAVING …] [ORDER BY …]`` — no join, subquery, WITH,
LIMIT, DISTINCT, window function, positional GROUP/ORDER BY, and no other parameter — is
rewritten (sqlglot, ClickHouse dialect) so that each row is counted into every step whose
window holds its ``col``: ``arrayJoin`` of those step numbers as ``gatecheck_step``, the step
prepended to GROUP BY and ORDER BY, the two window predicates replaced by the whole range.
Steps are ``window_end = first_end + k·step``, ``window_start = window_end − length``; a row at
``t`` (milliseconds) belongs to step ``k`` for ``k`` in ``(⌊(t − first_end)/step⌋, ⌊(t −
first_end + length)/step⌋]``, the same half-open window the per-step query uses.

Anything else returns None and is asked step by step (``UNION ALL``). A query without GROUP
BY returns one row per step even when nothing matches; the one-pass form cannot produce the
rows of steps without data, so the caller asks for those steps separately.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

STEP = "gatecheck_step"
WINDOW = ("window_start", "window_end")


@dataclass(frozen=True)
class OnePass:
    """The rewritten SQL and whether it has a GROUP BY of its own (without one, a step with
    no matching row is absent from the answer)."""

    sql: str
    grouped: bool


def one_pass(sql: str) -> OnePass | None:
    """The one-pass form of ``sql`` with parameters ``gatecheck_first_end``,
    ``gatecheck_step_ms``, ``gatecheck_length_ms`` (Int64), ``gatecheck_steps`` (Int64),
    ``gatecheck_from``/``gatecheck_to`` (DateTime64(3)); None when its shape is not one this
    rewrite proves equal."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="clickhouse")
    except Exception:
        return None
    if not isinstance(tree, exp.Select) or STEP in sql:
        return None
    if any(tree.args.get(key) for key in ("with", "limit", "distinct", "joins", "laterals", "offset")):
        return None
    for node in tree.walk():
        if (isinstance(node, exp.Select) and node is not tree) or isinstance(node, exp.Subquery | exp.Window):
            return None
        if isinstance(node, exp.Join | exp.Union | exp.Lateral):
            return None
    source = tree.args.get("from_") or tree.args.get("from")
    table = source.this if source is not None else None
    if isinstance(table, exp.Final):  # `table FINAL`: merged on read, row by row as the suite reads it
        table = table.this
    if not isinstance(table, exp.Table):
        return None
    placeholders = list(tree.find_all(exp.Placeholder))
    if sorted(p.name for p in placeholders) != sorted(WINDOW):
        return None
    where = tree.args.get("where")
    if where is None:
        return None
    conjuncts = list(where.this.flatten()) if isinstance(where.this, exp.And) else [where.this]
    lower = [c for c in conjuncts if isinstance(c, exp.GTE) and _is(c.expression, "window_start")]
    upper = [c for c in conjuncts if isinstance(c, exp.LT) and _is(c.expression, "window_end")]
    if len(lower) != 1 or len(upper) != 1:
        return None
    column = lower[0].this
    if not isinstance(column, exp.Column) or upper[0].this != column:
        return None
    group = tree.args.get("group")
    order = tree.args.get("order")
    for keys in (group.expressions if group else [], [o.this for o in order.expressions] if order else []):
        if any(isinstance(k, exp.Literal) for k in keys):
            return None  # positional: prepending the step would shift it
    if group is None and not any(node.find(exp.AggFunc) for node in tree.expressions):
        return None  # rows, not one aggregate row per step

    t = f"toUnixTimestamp64Milli(toDateTime64({column.sql('clickhouse')}, 3))"
    first, step = "{gatecheck_first_end:Int64}", "{gatecheck_step_ms:Int64}"
    length = "{gatecheck_length_ms:Int64}"
    step_expr = sqlglot.parse_one(
        f"arrayJoin(arrayFilter(k -> k >= 0 AND k < {{gatecheck_steps:Int64}}, "
        f"range(toInt64(floor(({t} - {first}) / {step})) + 1, "
        f"toInt64(floor(({t} - {first} + {length}) / {step})) + 1))) AS {STEP}",
        read="clickhouse",
    )
    kept = [c for c in conjuncts if c is not lower[0] and c is not upper[0]]
    bounds = sqlglot.parse_one(
        f"{column.sql('clickhouse')} >= {{gatecheck_from:DateTime64(3)}} "
        f"AND {column.sql('clickhouse')} < {{gatecheck_to:DateTime64(3)}}",
        read="clickhouse",
    )
    tree.set("where", exp.Where(this=exp.and_(*[c.copy() for c in kept], bounds)))
    tree.set("expressions", [step_expr, *tree.expressions])
    if group is not None:
        group.set("expressions", [exp.column(STEP), *group.expressions])
    else:
        tree.set("group", exp.Group(expressions=[exp.column(STEP)]))
    ordered = exp.Ordered(this=exp.column(STEP), desc=False)
    if order is not None:
        order.set("expressions", [ordered, *order.expressions])
    else:
        tree.set("order", exp.Order(expressions=[ordered]))
    return OnePass(tree.sql(dialect="clickhouse"), grouped=group is not None)


def _is(node: Any, name: str) -> bool:
    from sqlglot import exp

    return isinstance(node, exp.Placeholder) and node.name == name


def uniform_steps(parameter_sets: list[Any]) -> tuple[int, int, int] | None:
    """(first window_end, step, length) in milliseconds when the sets are only
    ``window_start``/``window_end``, evenly spaced, oldest first, all of one length."""
    from datetime import datetime

    if len(parameter_sets) < 2 or any(set(p) != set(WINDOW) for p in parameter_sets):
        return None
    ends, lengths = [], set()
    for p in parameter_sets:
        start, end = p["window_start"], p["window_end"]
        if not isinstance(start, datetime) or not isinstance(end, datetime):
            return None
        ends.append(round(end.timestamp() * 1000))
        lengths.add(round((end - start).total_seconds() * 1000))
    steps = {b - a for a, b in pairwise(ends)}
    if len(steps) != 1 or len(lengths) != 1:
        return None
    step, length = steps.pop(), lengths.pop()
    if step <= 0 or length <= 0:
        return None
    return ends[0], step, length
