"""What the SQL sources (ClickHouse, PostgreSQL) check alike in a suite's query text before
anything runs: one SELECT statement, and ``{name:type}`` parameters with usable names."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gatecheck.frozen import NAME
from gatecheck.sources.probe import Probe, counted

STATEMENT_START = re.compile(r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*(\w+)", re.S)


def statement_problems(
    sql: str, parameters: Iterable[re.Match[str]], example: str, moments: re.Pattern[str] | None = None
) -> list[str]:
    """A statement that is not one SELECT (or WITH … SELECT), each parameter whose name is
    not lowercase letters, digits and _ (``example`` shows a good one), and each moment
    (``window_start``, ``window_end``, ``as_of``) of a type ``moments`` does not match: a
    moment is bound to the millisecond, and a type that cannot hold one fails every run
    (ClickHouse's ``DateTime``) or cuts it silently (PostgreSQL's ``date``: a window from
    midnight). A second statement is refused by the engine itself: the sources run the SQL as
    a subquery, where anything after a ``;`` is a syntax error."""
    problems: list[str] = []
    first = STATEMENT_START.match(sql)
    if first is None or first.group(1).upper() not in ("SELECT", "WITH"):
        word = first.group(1) if first else "nothing"
        problems.append(f"must be a single SELECT (or WITH … SELECT) statement, starts with {word!r}")
    for match in parameters:
        name, written = match.group(1), match.group(2).strip()
        if not NAME.match(name) and not name.startswith(("'", '"')):
            problems.append(
                f"bad parameter name {{{name}:{written}}}: use lowercase letters, "
                f"digits and _ (e.g. {example})"
            )
        elif moments is not None and name in TIME_PARAMETERS and not moments.fullmatch(written):
            good = example.replace("window_start", name)
            problems.append(
                f"{{{name}:{written}}}: {written} does not fit {name}, a moment to the millisecond: "
                f"write {good} (it compares with a column of any time type)"
            )
    return problems


@functools.lru_cache(maxsize=512)
def syntax_problem(sql: str, dialect: str) -> str | None:
    """Where ``sql`` is not well-formed in ``dialect`` (sqlglot's parser), or None: a line,
    a column and what was expected, so `gatecheck validate` finds it before a source does.

    Kept per text: parsing is most of loading a project (about 5 ms a query), and a service
    or a test session loads the same suites again and again."""
    import sqlglot
    from sqlglot.errors import ParseError, TokenError

    try:
        sqlglot.parse(sql, read=dialect)
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        near = str(first.get("highlight") or "").strip()
        return (
            f"SQL syntax error at line {first.get('line', '?')}, column {first.get('col', '?')} of the query"
            + (f" (at {near!r})" if near else "")
            + f": {first.get('description') or 'cannot parse'}"
        )
    except TokenError as exc:
        return f"SQL syntax error: {' '.join(str(exc).split())}"
    return None


def tables_and_columns(
    sql: str, database: str, dialect: str = "clickhouse"
) -> dict[tuple[str, str], set[str]]:
    """The tables a suite's SQL reads, ``(database, table)`` → the columns it uses of them
    (parsed with sqlglot in the source's dialect, scope by scope). An unqualified column in a
    scope reading several tables is listed under each of them (``column_problems`` accepts it
    if any has it); names the query defines itself (aliases, WITH names, lambda arguments)
    are not columns."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.optimizer.scope import traverse_scope

    tree = sqlglot.parse_one(sql, read=dialect)
    defined = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    defined |= {param.name for fn in tree.find_all(exp.Lambda) for param in fn.expressions}
    found: dict[tuple[str, str], set[str]] = {}
    for scope in traverse_scope(tree):
        tables = {
            alias: (source.db or database, source.name)
            for alias, source in scope.sources.items()
            if isinstance(source, exp.Table) and source.name not in defined
        }
        for table in tables.values():
            found.setdefault(table, set())
        if not tables:
            continue
        aliases = {alias.alias for alias in scope.expression.find_all(exp.Alias)}
        for column in scope.columns:
            if column.table:
                if column.table in tables:
                    found[tables[column.table]].add(column.name)
            elif column.name not in aliases and column.name not in defined:
                for table in tables.values():
                    found[table].add(column.name)
    return found


TIME_PARAMETERS = frozenset({"window_start", "window_end", "as_of"})


def time_filtered_columns(
    sql: str, database: str, dialect: str = "clickhouse"
) -> dict[tuple[str, str], set[str]]:
    """The columns a suite's SQL bounds by its window, per table it reads: ``(database,
    table)`` → the columns of each WHERE (or PREWHERE) comparison whose other side holds a time
    parameter (``window_start``, ``window_end``, ``as_of``), directly or through a WITH name.
    A table read without such a condition maps to an empty set."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.optimizer.scope import traverse_scope

    tree = sqlglot.parse_one(sql, read=dialect)
    # WITH <expression> AS name: a name standing for a time parameter is one too
    timed = {
        cte.alias
        for cte in tree.find_all(exp.CTE)
        if any(p.name in TIME_PARAMETERS for p in cte.this.find_all(exp.Placeholder))
    }

    def holds_time(node: Any) -> bool:
        return any(p.name in TIME_PARAMETERS for p in node.find_all(exp.Placeholder)) or any(
            c.name in timed and not c.table for c in node.find_all(exp.Column)
        )

    comparisons = (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.EQ, exp.Between)
    found: dict[tuple[str, str], set[str]] = {}
    for scope in traverse_scope(tree):
        tables = [
            (source.db or database, source.name)
            for source in scope.sources.values()
            if isinstance(source, exp.Table) and source.name not in timed
        ]
        for table in tables:
            found.setdefault(table, set())
        if len(tables) != 1:  # a join: which table a bare column belongs to is not known here
            continue
        for key in ("where", "prewhere"):
            clause = scope.expression.args.get(key)
            if clause is None:
                continue
            for node in clause.find_all(*comparisons):
                sides = [node.this, *(node.args.get(k) for k in ("expression", "low", "high"))]
                sides = [side for side in sides if side is not None]
                if not any(holds_time(side) for side in sides):
                    continue
                for side in sides:
                    if not holds_time(side):
                        found[tables[0]] |= {c.name for c in side.find_all(exp.Column) if c.name not in timed}
    return found


def outside_quotes(text: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """Each character of ``text`` from ``start`` that is not inside quotes (``'…'``, ``"…"``,
    `` `…` ``, a backslash escaping the next character), with the depth of parentheses it is
    at: an opening one counts in, a closing one out."""
    depth, quote, i = 0, "", start
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'\"`":
            quote = char
        else:
            depth += {"(": 1, ")": -1}.get(char, 0)
            yield i, char, depth
        i += 1


_COMPARISONS = {"GT": ">", "GTE": ">=", "LT": "<", "LTE": "<=", "NEQ": "!="}
#: ClickHouse's system tables that hold rows whatever the data: one, or numbers without end.
_ROWS_OF_THEIR_OWN = frozenset({"one", "numbers", "numbers_mt", "zeros", "zeros_mt"})
_MIRRORED = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "!=": "!="}


@functools.lru_cache(maxsize=512)
def answers_a_row_without_data(sql: str, dialect: str) -> bool:
    """Whether ``sql`` answers a row even when the tables it reads hold none in the window,
    so that its having rows proves nothing: its outermost SELECT aggregates without GROUP BY
    (``SELECT max(lag) FROM t WHERE …``: one row, and ClickHouse's empty ``max`` is 0), reads
    no table (``SELECT 0``) or a table function, through subqueries, WITH names, UNION and
    joins; a GROUP BY whose grouping sets include the empty one (``GROUPING SETS (…, ())``,
    PostgreSQL's ``GROUP BY ()``, ``ROLLUP``, ``CUBE``) and a HAVING that keeps the empty
    window's row (one that asks a count for a row, ``HAVING count() > 0``, drops it),
    ClickHouse's ``ORDER BY … WITH FILL FROM … TO …`` and ``system.one``. Unsure (a
    WHERE over such a row, a RIGHT or FULL join): True. Text sqlglot cannot read: False (its
    syntax is reported apart)."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except (ParseError, TokenError):
        return False
    ctes = {cte.alias_or_name: cte.this for cte in tree.find_all(exp.CTE)}

    def aggregates(node: Any) -> bool:
        """An aggregate of this SELECT's own rows (not a window function's, not a subquery's)."""
        if isinstance(node, exp.AggFunc):
            return True
        if isinstance(node, (exp.Window, exp.Subquery, exp.Select)):
            return False
        return any(aggregates(child) for child in node.iter_expressions())

    def counts_rows(node: Any) -> bool:
        return isinstance(node, (exp.Count, exp.CountIf))

    def needs_a_row(condition: Any) -> bool:
        """A HAVING that drops the one row of an empty window: one of its AND-ed terms asks a
        count for at least one row (``count() > 0``, ``>= 1``, ``!= 0``, either way round)."""
        if isinstance(condition, exp.Paren):
            return needs_a_row(condition.this)
        if isinstance(condition, exp.And):
            return needs_a_row(condition.left) or needs_a_row(condition.right)
        operator = _COMPARISONS.get(type(condition).__name__)
        if operator is None:
            return False
        left, right = condition.left, condition.right
        if counts_rows(right):  # 0 < count() is count() > 0
            left, right, operator = right, left, _MIRRORED[operator]
        if not counts_rows(left) or not isinstance(right, exp.Literal) or right.is_string:
            return False
        try:
            bound = float(right.this)
        except ValueError:
            return False
        if operator == ">":
            return bound >= 0
        if operator == ">=":
            return bound > 0
        return operator == "!=" and bound == 0

    def empty_set(element: Any, within_sets: bool) -> bool:
        """Whether a GROUP BY element can group by nothing: ``()`` (PostgreSQL; ClickHouse only
        inside GROUPING SETS — at the top it groups by a constant: no row without data),
        PostgreSQL's ROLLUP and CUBE (their last set is ``()``), GROUPING SETS holding one."""
        if isinstance(element, exp.Paren):
            return empty_set(element.this, within_sets)
        if isinstance(element, exp.Tuple) and not element.expressions:
            return within_sets or dialect != "clickhouse"
        if isinstance(element, (exp.Rollup, exp.Cube)):
            return dialect != "clickhouse"
        if isinstance(element, exp.GroupingSets):
            return any(empty_set(inner, True) for inner in element.expressions)
        return False

    def relation(node: Any, seen: frozenset[str]) -> bool:
        if isinstance(node, exp.Final):  # ClickHouse's t FINAL
            node = node.this
        if isinstance(node, exp.Table):
            if not isinstance(node.this, exp.Identifier):
                return True  # a table function (numbers(1), generate_series(…)): rows of its own
            if dialect == "clickhouse" and node.db == "system" and node.name in _ROWS_OF_THEIR_OWN:
                return True
            if not node.db and node.name in ctes and node.name not in seen:
                return query(ctes[node.name], seen | {node.name})
            return False
        if isinstance(node, exp.Subquery):
            return query(node.this, seen)
        return True  # VALUES, UNNEST, …: rows the query writes itself

    def query(node: Any, seen: frozenset[str]) -> bool:
        if isinstance(node, exp.Subquery):
            return query(node.this, seen)
        if isinstance(node, exp.Intersect):
            return query(node.left, seen) and query(node.right, seen)
        if isinstance(node, exp.Except):
            return query(node.left, seen)
        if isinstance(node, exp.Union):
            return query(node.left, seen) or query(node.right, seen)
        if not isinstance(node, exp.Select):
            return True
        group = node.args.get("group")
        having = node.args.get("having")
        dropped = having is not None and needs_a_row(having.this)
        if group is not None and group.args.get("totals"):
            return True  # WITH TOTALS: a totals row whatever the groups
        if group is not None and group.args.get("all"):
            # GROUP BY ALL groups by the projections that read a column and aggregate nothing:
            # with none, an aggregate (projected, or in HAVING) is over all rows: one row
            keys = [p for p in node.expressions if not aggregates(p) and any(p.find_all(exp.Column))]
            aggregated = any(aggregates(p) for p in node.expressions) or (
                having is not None and aggregates(having.this)
            )
            if not keys and aggregated:
                return not dropped
        order = node.args.get("order")
        for ordered in order.expressions if order is not None else []:
            fill = ordered.args.get("with_fill")
            if fill is not None and fill.args.get("from_", fill.args.get("from")) and fill.args.get("to"):
                return True  # ORDER BY … WITH FILL FROM … TO …: the filled rows, data or none
        if group is not None and group.expressions and all(empty_set(e, False) for e in group.expressions):
            return not dropped  # a grouping set of nothing: its row of aggregates over no rows
        if group is not None:
            return False  # a row per group: none without data
        if having is not None:  # aggregates without GROUP BY: the one row, unless HAVING drops it
            return not dropped
        if any(aggregates(projection) for projection in node.expressions):
            return True
        source = node.args.get("from_", node.args.get("from"))  # (sqlglot ≥ 28 names it from_)
        if source is None:
            return True
        found = relation(source.this, seen)
        for join in node.args.get("joins") or []:
            side = (join.side or "").upper()
            if side in ("RIGHT", "FULL"):
                found = True  # unsure: the joined side's rows may come through alone
            elif side != "LEFT":  # inner, cross, a comma: a row needs a row of each
                found = found and relation(join.this, seen)
        return found

    return query(tree, frozenset())


def column_problems(
    used: dict[tuple[str, str], dict[str, set[str]]],
    readers: dict[tuple[str, str], set[str]],
    existing: dict[tuple[str, str], set[str]],
) -> list[str]:
    """Problems of ``used`` — (database, table) → column → the suites using it; ``readers``:
    the suites reading each table — against the ``existing`` columns of each table (absent:
    the table does not exist)."""
    problems = []
    for (database, table), columns in sorted(used.items()):
        if (database, table) not in existing:
            suites = ", ".join(sorted(readers[(database, table)]))
            problems.append(f"table {database}.{table} does not exist (read by {suites})")
            continue
        have = existing[(database, table)]
        for column, users in sorted(columns.items()):
            if column not in have:
                problems.append(
                    f"column {column} is not in {database}.{table} (used by {', '.join(sorted(users))})"
                )
    return problems


@dataclass
class ColumnsUsed:
    """The tables and columns a source's suites read — ``used``: (database, table) → column
    → the suites using it; ``readers``: (database, table) → the suites reading it — for
    ``gatecheck check-sources``."""

    used: dict[tuple[str, str], dict[str, set[str]]] = field(default_factory=dict)
    readers: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    unparsed: list[str] = field(default_factory=list)  # suites whose SQL cannot be parsed: why

    @classmethod
    def of(
        cls,
        suites: Iterable[Any],
        database: str,
        dialect: str = "clickhouse",
        prepare: Callable[[str], str] = lambda sql: sql,
    ) -> ColumnsUsed:
        """What ``suites`` read (``prepare`` makes a suite's SQL parseable in ``dialect``)."""
        found = cls()
        for suite in suites:
            problem = syntax_problem(prepare(suite.query), dialect)
            if problem is not None:
                found.unparsed.append(f"suite {suite.name}: {problem}")
                continue
            try:
                read = tables_and_columns(prepare(suite.query), database, dialect)
            except Exception as exc:
                found.unparsed.append(
                    f"suite {suite.name}: cannot tell which tables and columns its SQL reads "
                    f"({' '.join(str(exc).split())[:200]})"
                )
                continue
            for table, columns in read.items():
                found.readers.setdefault(table, set()).add(suite.name)
                into = found.used.setdefault(table, {})
                for column in columns:
                    into.setdefault(column, set()).add(suite.name)
        return found

    def probe(self, version: str, latency_ms: float, existing: dict[tuple[str, str], set[str]]) -> Probe:
        """The probe of a reachable source whose tables have ``existing`` columns."""
        count = sum(len(c) for c in self.used.values())
        return Probe(
            version=version,
            latency_ms=latency_ms,
            checked=f"{counted(len(self.used), 'table')}, {counted(count, 'column')} the suites use",
            problems=[*self.unparsed, *column_problems(self.used, self.readers, existing)],
        )
