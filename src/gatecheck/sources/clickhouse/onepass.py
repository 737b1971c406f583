"""The backtest's one-pass form of a ClickHouse suite: every step answered by one scan of each
table instead of one query per step.

The steps differ only in their time parameters (``window_start``, ``window_end``, ``as_of``,
evenly spaced: ``p_k = p_0 + k·step``); every other parameter is the same in each step. The
rewrite (sqlglot, ClickHouse dialect) walks the query's scopes:

* a **table scope** (``FROM table [FINAL]``, no join) has its time conditions read as bounds
  on the step: ``E >= P``, ``E > P``, ``E < P``, ``E <= P`` where ``P`` is a time parameter,
  optionally ``± INTERVAL n unit``, and ``E`` names no time parameter. A row with ``E = t`` is
  in step ``k`` exactly when every bound holds, which is a run of consecutive ``k``
  (``lo ≤ k ≤ hi``, integer arithmetic in microseconds). The scan keeps the rows of the
  union of the steps (each bound at its loosest step). Rows are then

  - *not aggregated*: repeated once per step they belong to (``arrayJoin``);
  - *aggregated*: aggregated first per ``(lo, hi, group keys)`` into partial states
    (``-State``), each partial state handed to the steps ``lo…hi`` (``ARRAY JOIN``) and merged
    (``-Merge``) per ``(step, group keys)``: a row is read once however many steps hold it.
    Without GROUP BY the query answers one row per step even when no row matches: an empty
    partial state is handed to every step, so each step has its row (``count() = 0`` …).

  Time parameters elsewhere in the scope (SELECT, HAVING, ORDER BY) become the step's own
  value; inside an aggregate they are refused (the partial state would span steps).
* a scope **over subqueries** (FROM a subquery, joins ``USING`` of subqueries) carries the step
  through: the step is the first column of every subquery, a join key, the first GROUP BY and
  ORDER BY key, and each time parameter is the step's own value.
* ``UNION ALL`` of scopes: each branch carries the step first.
* ``WITH <expression> AS name`` at the top: the expression replaces ``name``.

Anything else — LIMIT, DISTINCT, window functions, subqueries in expressions, joins ON,
``SELECT *``, a time parameter in another form, an aggregate over subqueries without GROUP BY
— returns None, and the steps are asked one query each (``UNION ALL``). Every step's frame is
the one its own query returns (tested frame for frame on every shipped ClickHouse suite).

Why one module of ~550 lines: one rewrite — its scopes, bounds and partial aggregates —
proved equal as a whole (tests/sources/test_onepass.py); its parts mean nothing apart.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from gatecheck.sources.sqltext import outside_quotes

STEP = "gatecheck_step"
_PREFIX = "gatecheck_"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNIT_US = {
    "MICROSECOND": 1,
    "MILLISECOND": 1_000,
    "SECOND": 1_000_000,
    "MINUTE": 60_000_000,
    "HOUR": 3_600_000_000,
    "DAY": 86_400_000_000,
    "WEEK": 7 * 86_400_000_000,
}


def _us(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class Steps:
    """Evenly spaced steps: the time parameters at the first and the last step, the spacing,
    and the parameters every step shares."""

    count: int
    step_us: int
    first: dict[str, datetime]
    last: dict[str, datetime]
    constants: dict[str, Any]

    def parameters(self) -> dict[str, Any]:
        """The one-pass query's parameters (values as the suite's parameters are given)."""
        out: dict[str, Any] = dict(self.constants)
        out["gatecheck_steps"] = self.count
        out["gatecheck_step_us"] = self.step_us
        for name, value in self.first.items():
            out[f"gatecheck_base_{name}"] = _us(value)
            out[f"gatecheck_first_{name}"] = value
            out[f"gatecheck_last_{name}"] = self.last[name]
        return out


def steps_of(parameter_sets: Sequence[Mapping[str, Any]]) -> Steps | None:
    """The steps' shape when the sets differ only in time parameters that all advance by
    one whole-millisecond spacing, oldest first; None otherwise."""
    if len(parameter_sets) < 2:
        return None
    first = parameter_sets[0]
    names = set(first)
    if any(set(p) != names for p in parameter_sets) or any(n.startswith(_PREFIX) for n in names):
        return None
    varying = sorted(n for n in names if any(p[n] != first[n] for p in parameter_sets))
    spacing: set[int] = set()
    for name in varying:
        values = [p[name] for p in parameter_sets]
        if not all(isinstance(v, datetime) and v.tzinfo is not None and _us(v) % 1000 == 0 for v in values):
            return None
        spacing |= {_us(b) - _us(a) for a, b in pairwise(values)}
    if len(spacing) != 1:
        return None
    step = spacing.pop()
    if step <= 0:
        return None
    return Steps(
        count=len(parameter_sets),
        step_us=step,
        first={n: first[n] for n in varying},
        last={n: parameter_sets[-1][n] for n in varying},
        constants={n: v for n, v in first.items() if n not in varying},
    )


class _Refused(Exception):
    """The query's shape is not one this rewrite proves equal."""


def one_pass(sql: str, steps: Steps) -> str | None:
    """The one-pass form of ``sql`` for ``steps`` (its parameters: ``steps.parameters()``),
    its first column ``gatecheck_step``; None when its shape is not one this rewrite proves
    equal."""
    return _one_pass(sql, frozenset(steps.first))


@functools.lru_cache(maxsize=256)
def _one_pass(sql: str, varying: frozenset[str]) -> str | None:
    """:func:`one_pass` of ``sql`` whose parameters ``varying`` vary by step: the text depends
    on nothing else, so it is rewritten once a process (sqlglot's parse and the rewrite's copies
    of the tree were a sixth of a backtest's CPU, asked for every chunk of steps and again
    when each chunk is sent)."""
    import sqlglot

    if STEP in sql or "gatecheck_" in sql.lower():
        return None
    try:
        tree = sqlglot.parse_one(sql, read="clickhouse")
        text = _Rewrite(set(varying)).top(tree)
    except _Refused:
        return None
    except Exception:  # a parse the rewrite did not foresee: asked step by step
        return None
    for name in varying:  # every time parameter became the step's own value
        if re.search(r"\{\s*" + re.escape(name) + r"\s*:", text):
            return None
    return text


class _Rewrite:
    def __init__(self, varying: set[str]) -> None:
        self.varying = varying
        self.texts: dict[str, str] = {}

    # ---------------------------------------------------------------- helpers

    def _mark(self, text: str) -> str:
        """A unique identifier standing for ``text`` until the end (see ``_expand``)."""
        marker = f"{_PREFIX}mark_{len(self.texts)}"
        self.texts[marker] = text
        return marker

    def _expand(self, text: str) -> str:
        while True:
            expanded = re.sub(r"\bgatecheck_mark_\d+\b", lambda m: self.texts[m.group(0)], text)
            if expanded == text:
                return text
            text = expanded

    def _varies(self, node: Any) -> bool:
        from sqlglot import exp

        return any(p.name in self.varying for p in node.find_all(exp.Placeholder))

    def _kind(self, placeholder: Any) -> str:
        kind = placeholder.args.get("kind")
        text = kind.sql("clickhouse") if kind is not None else ""
        if not text.startswith("DateTime"):
            raise _Refused(f"time parameter {placeholder.name} of type {text or '?'}")
        return text

    def _at_step(self, node: Any) -> Any:
        """``node`` with each time parameter replaced by the step's own value."""
        import sqlglot
        from sqlglot import exp

        def swap(n: Any) -> Any:
            if isinstance(n, exp.Placeholder) and n.name in self.varying:
                return sqlglot.parse_one(
                    f"CAST(fromUnixTimestamp64Micro(toInt64({{gatecheck_base_{n.name}:Int64}} + "
                    f"{STEP} * {{gatecheck_step_us:Int64}})) AS {self._kind(n)})",
                    read="clickhouse",
                )
            return n

        return node.copy().transform(swap)

    def _renamed(self, node: Any, prefix: str) -> Any:
        """``node`` with each time parameter ``p`` renamed ``gatecheck_<prefix>_p``."""
        from sqlglot import exp

        def rename(n: Any) -> Any:
            if isinstance(n, exp.Placeholder) and n.name in self.varying:
                self._kind(n)
                return exp.Placeholder(this=f"{_PREFIX}{prefix}_{n.name}", kind=n.args["kind"].copy())
            return n

        return node.copy().transform(rename)

    @staticmethod
    def _nested(node: Any) -> bool:
        from sqlglot import exp

        return any(isinstance(n, exp.Select | exp.Subquery | exp.Union) for n in node.walk())

    @staticmethod
    def _check_plain(select: Any) -> None:
        for key in (
            "with_",
            "with",
            "limit",
            "offset",
            "distinct",
            "laterals",
            "qualify",
            "windows",
            "prewhere",
        ):
            if select.args.get(key):
                raise _Refused(key)
        for key in ("sample", "settings", "format", "kind", "into", "locks"):
            if select.args.get(key):
                raise _Refused(key)

    # ---------------------------------------------------------------- scopes

    def top(self, tree: Any) -> str:
        from sqlglot import exp

        if any(isinstance(n, exp.Window) for n in tree.walk()):
            raise _Refused("window function")
        with_ = tree.args.get("with_") or tree.args.get("with")
        if with_ is not None:
            names: dict[str, Any] = {}
            for cte in with_.expressions:
                if not cte.args.get("scalar") or self._nested(cte.this):
                    raise _Refused("WITH of a subquery")
                names[cte.alias] = cte.this
            tree = tree.copy()
            tree.set("with_", None)
            tree.set("with", None)

            def inline(n: Any) -> Any:
                if isinstance(n, exp.Column) and not n.table and n.name in names:
                    return names[n.name].copy()
                return n

            tree = tree.transform(inline)
        return self._expand(self.scope(tree))

    def scope(self, node: Any) -> str:
        from sqlglot import exp

        if isinstance(node, exp.Subquery):
            return self.scope(node.this)
        if isinstance(node, exp.Union):
            if node.args.get("distinct") or type(node) is not exp.Union:
                raise _Refused("UNION DISTINCT, INTERSECT or EXCEPT")
            if any(node.args.get(k) for k in ("order", "limit", "offset", "with_", "with")):
                raise _Refused("UNION with ORDER BY or LIMIT")
            return f"{self.scope(node.this)} UNION ALL {self.scope(node.expression)}"
        if not isinstance(node, exp.Select):
            raise _Refused(type(node).__name__)
        self._check_plain(node)
        source = node.args.get("from_") or node.args.get("from")
        if source is None:
            raise _Refused("no FROM")
        if any(isinstance(e, exp.Star) for e in node.expressions) or any(
            isinstance(e, exp.Column) and isinstance(e.this, exp.Star) for e in node.expressions
        ):
            raise _Refused("SELECT *")
        table = source.this.this if isinstance(source.this, exp.Final) else source.this
        if isinstance(table, exp.Table) and not node.args.get("joins"):
            return self.table_scope(node, source)
        return self.outer_scope(node)

    def outer_scope(self, select: Any) -> str:
        """A scope over subqueries: the step carried through."""
        from sqlglot import exp

        select = select.copy()
        source = select.args.get("from_") or select.args.get("from")
        parts = [source.this]
        for join in select.args.get("joins") or []:
            if (
                join.args.get("on") is not None
                or not join.args.get("using")
                or join.args.get("kind") in ("CROSS", "ARRAY")
            ):
                raise _Refused("a join not USING")
            join.set("using", [exp.to_identifier(STEP), *join.args["using"]])
            parts.append(join.this)
        for part in parts:
            if not isinstance(part, exp.Subquery):
                raise _Refused("a table joined")
            part.set("this", exp.select(exp.alias_(exp.Literal.number(1), self._mark(self.scope(part.this)))))
        for key in ("where", "having", "group", "order"):
            if select.args.get(key) is not None and self._nested(select.args[key]):
                raise _Refused("subquery in an expression")
        if any(self._nested(e) for e in select.expressions):
            raise _Refused("subquery in an expression")
        group = select.args.get("group")
        aggregated = any(
            n.find(exp.AggFunc) for n in [*select.expressions, select.args.get("having") or exp.null()]
        )
        if group is not None:
            group.set("expressions", [exp.column(STEP), *group.expressions])
        elif aggregated:
            raise _Refused("an aggregate over subqueries without GROUP BY")
        order = select.args.get("order")
        if order is not None:
            if any(isinstance(o.this, exp.Literal) for o in order.expressions):
                raise _Refused("positional ORDER BY")
            order.set("expressions", [exp.Ordered(this=exp.column(STEP), desc=False), *order.expressions])
        if group is not None and any(isinstance(g, exp.Literal) for g in group.expressions):
            raise _Refused("positional GROUP BY")
        select.set("expressions", [exp.column(STEP), *select.expressions])
        select = self._at_step(select)
        text = select.sql(dialect="clickhouse")
        # each subquery stands as `SELECT 1 AS <marker>` until expanded
        return re.sub(r"SELECT 1 AS (gatecheck_mark_\d+)", lambda m: m.group(1), text)

    def _bound(self, conjunct: Any) -> tuple[str, str, Any]:
        """A time condition as ("lo"|"hi", the bound on the step, the condition at its
        loosest step)."""
        from sqlglot import exp

        ops = {exp.GTE: ">=", exp.GT: ">", exp.LT: "<", exp.LTE: "<="}
        flip = {">=": "<=", ">": "<", "<": ">", "<=": ">="}
        op = ops.get(type(conjunct))
        if op is None:
            raise _Refused("a time parameter outside a comparison")
        left, right = conjunct.this, conjunct.expression
        if self._varies(left) and not self._varies(right):
            left, right, op = right, left, flip[op]
        elif self._varies(left) or not self._varies(right):
            raise _Refused("a comparison of two time parameters")
        placeholder, offset = self._parameter_offset(right)
        self._kind(placeholder)
        t = f"toUnixTimestamp64Micro(toDateTime64({left.sql(dialect='clickhouse')}, 6))"
        q = (
            f"(({t} - ({{gatecheck_base_{placeholder.name}:Int64}} + ({offset}))) / "
            "{gatecheck_step_us:Int64})"
        )
        # E op P_k with P_k = c + k·step, t = E: the k for which it holds
        if op == ">=":
            kind, bound = "hi", f"floor{q}"
        elif op == ">":
            kind, bound = "hi", f"(ceil{q} - 1)"
        elif op == "<":
            kind, bound = "lo", f"(floor{q} + 1)"
        else:
            kind, bound = "lo", f"ceil{q}"
        normal = {">=": exp.GTE, ">": exp.GT, "<": exp.LT, "<=": exp.LTE}[op](
            this=left.copy(), expression=right.copy()
        )
        loosest = self._renamed(normal, "first" if kind == "hi" else "last")
        return kind, f"toInt64({bound})", loosest

    def _parameter_offset(self, node: Any) -> tuple[Any, int]:
        from sqlglot import exp

        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Placeholder):
            return node, 0
        if isinstance(node, exp.Add | exp.Sub):
            base, interval = node.this, node.expression
            if isinstance(node, exp.Add) and isinstance(base, exp.Interval):
                base, interval = interval, base
            if isinstance(base, exp.Placeholder) and isinstance(interval, exp.Interval):
                unit = interval.args.get("unit")
                amount = interval.this
                if unit is None or not isinstance(amount, exp.Literal):
                    raise _Refused("an interval that is not a literal")
                scale = _UNIT_US.get(unit.name.upper().rstrip("S"))
                try:
                    value = int(str(amount.this))
                except ValueError:
                    raise _Refused("an interval that is not a whole number") from None
                if scale is None:
                    raise _Refused(f"an interval in {unit.name}")
                return base, value * scale * (1 if isinstance(node, exp.Add) else -1)
        raise _Refused("a time parameter in another form")

    def table_scope(self, select: Any, source: Any) -> str:
        """A scope reading one table: its rows (or its partial aggregates) handed to steps."""
        from sqlglot import exp

        clauses = [select.args.get(k) for k in ("where", "having", "group", "order")]
        if any(self._nested(c) for c in clauses if c is not None) or any(
            self._nested(e) for e in select.expressions
        ):
            raise _Refused("subquery in an expression")
        where = select.args.get("where")
        conjuncts = (
            []
            if where is None
            else (list(where.this.flatten()) if isinstance(where.this, exp.And) else [where.this])
        )
        los: list[str] = []
        his: list[str] = []
        kept: list[Any] = []
        for conjunct in conjuncts:
            if self._varies(conjunct):
                kind, bound, loosest = self._bound(conjunct)
                (los if kind == "lo" else his).append(bound)
                kept.append(loosest)
            else:
                kept.append(conjunct)
        aliases = {e.alias: e.this for e in select.expressions if isinstance(e, exp.Alias)}
        used = {c.name for k in kept for c in k.find_all(exp.Column) if not c.table}
        lo = f"toInt64(greatest(0, {', '.join(los)}))" if los else "toInt64(0)"
        hi = (
            f"toInt64(least({{gatecheck_steps:Int64}} - 1, {', '.join(his)}))"
            if his
            else ("toInt64({gatecheck_steps:Int64} - 1)")
        )
        from_sql = source.this.sql(dialect="clickhouse")
        conditions = " AND ".join("(" + k.sql(dialect="clickhouse") + ")" for k in kept)
        where_sql = f" WHERE {conditions}" if kept else ""
        group = select.args.get("group")
        having = select.args.get("having")
        order = select.args.get("order")
        for clause in (group, order):
            if clause is not None and any(
                isinstance(o.this if isinstance(o, exp.Ordered) else o, exp.Literal)
                for o in clause.expressions
            ):
                raise _Refused("positional GROUP BY or ORDER BY")
        aggregated = group is not None or any(
            n.find(exp.AggFunc) for n in [*select.expressions, having or exp.null()]
        )
        handed = "range(gatecheck_lo, greatest(gatecheck_lo, gatecheck_hi + 1))"
        if not aggregated:
            if having is not None:
                raise _Refused("HAVING without aggregates")
            if used & {a for a, e in aliases.items() if not (isinstance(e, exp.Column) and e.name == a)}:
                raise _Refused("WHERE names a SELECT alias")
            items = ", ".join(self._at_step(e).sql(dialect="clickhouse") for e in select.expressions)
            ordering = ""
            if order is not None:
                ordering = " ORDER BY " + ", ".join(
                    [STEP, *(self._at_step(o).sql(dialect="clickhouse") for o in order.expressions)]
                )
            return (
                f"SELECT {STEP}, {items} FROM (SELECT {lo} AS gatecheck_lo, {hi} AS gatecheck_hi, * "
                f"FROM {from_sql}{where_sql}) ARRAY JOIN {handed} AS {STEP}{ordering}"
            )

        # aggregated: partial states per (lo, hi, keys), merged per (step, keys)
        keys: list[str] = []
        key_sql: list[str] = []
        aliased_keys: set[str] = set()
        for g in group.expressions if group is not None else []:
            if not isinstance(g, exp.Column) or g.table or self._varies(g):
                raise _Refused("a GROUP BY key that is not a name")
            name = g.name
            defined = aliases.get(name)
            if defined is not None and not (isinstance(defined, exp.Column) and defined.name == name):
                if defined.find(exp.AggFunc) or self._varies(defined):
                    raise _Refused("a GROUP BY alias of an aggregate or a time parameter")
                key_sql.append(f"{defined.sql(dialect='clickhouse')} AS {name}")
                aliased_keys.add(name)
            else:
                key_sql.append(g.sql(dialect="clickhouse"))
            keys.append(name)
        dropped = {
            a
            for a, e in aliases.items()
            if a not in aliased_keys and not (isinstance(e, exp.Column) and e.name == a)
        }
        if used & dropped:
            raise _Refused("WHERE names a SELECT alias")

        states: list[str] = []

        def partial(n: Any) -> Any:
            if isinstance(n, exp.AggFunc):
                if self._varies(n) or n.find(exp.Distinct):
                    raise _Refused("an aggregate of a time parameter or DISTINCT")
                state, merge = _state_and_merge(n.sql(dialect="clickhouse"), f"gatecheck_a{len(states)}")
                states.append(f"{state} AS gatecheck_a{len(states)}")
                return exp.column(self._mark(merge))
            return n

        def outer(node: Any) -> str:
            if isinstance(node, exp.Alias) and node.alias in aliased_keys:
                return node.alias
            return self._at_step(node.copy().transform(partial)).sql(dialect="clickhouse")

        items = ", ".join(outer(e) for e in select.expressions)
        having_sql = f" HAVING {outer(having.this)}" if having is not None else ""
        ordering = ""
        if order is not None:
            ordering = " ORDER BY " + ", ".join([STEP, *(outer(o) for o in order.expressions)])
        inner_columns = ", ".join(["gatecheck_lo", "gatecheck_hi", *keys])
        inner = (
            f"SELECT {', '.join([f'{lo} AS gatecheck_lo', f'{hi} AS gatecheck_hi', *key_sql, *states])} "
            f"FROM {from_sql}{where_sql} GROUP BY {inner_columns}"
        )
        if group is None:
            # one row per step even without data: an empty partial state for every step
            empty = [
                "toInt64(0)",
                "toInt64({gatecheck_steps:Int64} - 1)",
                *(s.rsplit(" AS ", 1)[0] for s in states),
            ]
            inner += f" UNION ALL SELECT {', '.join(empty)} FROM {from_sql} WHERE 0"
        return (
            f"SELECT {STEP}, {items} FROM ({inner}) ARRAY JOIN {handed} AS {STEP} "
            f"GROUP BY {', '.join([STEP, *keys])}{having_sql}{ordering}"
        )


def _state_and_merge(text: str, column: str) -> tuple[str, str]:
    """``f(args)`` → (``fState(args)``, ``fMerge(column)``); ``f(params)(args)`` →
    (``fState(params)(args)``, ``fMerge(params)(column)``)."""
    match = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\(", text)
    if match is None:
        raise _Refused(f"an aggregate written {text!r}")
    name = match.group(1)
    first_end = _closing(text, match.end() - 1)
    rest = text[len(name) :]
    if first_end + 1 < len(text) and text[first_end + 1] == "(":
        if _closing(text, first_end + 1) != len(text) - 1:
            raise _Refused(f"an aggregate written {text!r}")
        params = text[match.end() - 1 : first_end + 1]
        return f"{name}State{rest}", f"{name}Merge{params}({column})"
    if first_end != len(text) - 1:
        raise _Refused(f"an aggregate written {text!r}")
    return f"{name}State{rest}", f"{name}Merge({column})"


def _closing(text: str, start: int) -> int:
    """The index of the parenthesis closing the one at ``start`` (quotes respected)."""
    for i, char, depth in outside_quotes(text, start):
        if char == ")" and depth == 0:
            return i
    raise _Refused("unbalanced parentheses")
