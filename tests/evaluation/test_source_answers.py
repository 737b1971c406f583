"""Property-based tests: a malformed source answer is never a pass.

For every shipped suite, a frame that passes is built from the suite's own expectations and
thresholds (the test checks it passes, so the damage is what changes the outcome). Hypothesis
then damages the answer the way a broken source or a wrong query would: no rows, a needed
column missing or renamed, NULLs, NaN, text where numbers belong, objects of the wrong kind.
The check must come out ``inconclusive`` or ``error`` with a reason — never ``pass``, and
never a ``fail`` blamed on the data when the answer itself is unusable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gatecheck.config import ParameterRef, ResolvedThreshold, SuiteConfig, load_project
from gatecheck.config.models import evidence_minimum
from gatecheck.evaluation.gate import judge
from gatecheck.evaluation.plan import window_for
from gatecheck.evaluation.validation import Validator
from gatecheck.results import Outcome

from ..conftest import PROJECT

PROJECT = load_project(PROJECT, environ={})
# One Great Expectations context for the module's many validations, as an engine keeps one.
VALIDATOR = Validator()
AS_OF = datetime(2026, 11, 22, 6, tzinfo=UTC)


def phase_using(suite: str) -> str:
    for phase, gate in sorted(PROJECT.gates.items()):
        if any(c.suite == suite for c in [*gate.checks, *gate.rollback]):
            return phase
    raise AssertionError(f"no gate uses {suite}")


SUITES = {
    name: (suite, PROJECT.resolve_thresholds(phase_using(name))) for name, suite in PROJECT.suites.items()
}


def bound(value: Any, thresholds: dict[str, ResolvedThreshold]) -> Any:
    if isinstance(value, dict) and set(value) == {"$PARAMETER"}:
        return thresholds[value["$PARAMETER"]].value
    return value


def needed_columns(suite: SuiteConfig) -> dict[str, str]:
    """Column → how the suite reads it: ``number`` (a bound or the evidence), ``value``, or
    ``nullable`` (a pair the suite compares only where both are present: NULL there means
    "nothing expected", as in stream_topology's expected_* columns)."""
    needed: dict[str, str] = {}
    for spec in suite.expectations:
        kwargs = spec.kwargs
        numeric = "min_value" in kwargs or "max_value" in kwargs
        nullable = kwargs.get("ignore_row_if") == "either_value_is_missing"
        for key in ("column", "column_A", "column_B"):
            if key in kwargs:
                needed[kwargs[key]] = "number" if numeric else "nullable" if nullable else "value"
    declared = evidence_minimum(suite.evidence)
    if declared is not None:
        needed[declared.column] = "number"
    if suite.compare is not None:  # each side's evidence, in the joined frame
        for prefix, unit in suite.units():
            side = prefix.split(".")[2]
            if suite.compare.test != "difference":
                needed[f"{side}_n"] = "number"
            elif (side_minimum := evidence_minimum(unit.evidence)) is not None:
                needed[f"{side}_{side_minimum.column}"] = "number"
    if suite.reconcile is not None:  # each side's rows, for its min_rows
        for name, side in suite.reconcile.sides.items():
            if side.min_rows is not None:
                needed[f"{name}_rows"] = "number"
    return needed


def passing_sides(suite: SuiteConfig, thresholds: dict[str, ResolvedThreshold], rows: int) -> dict[str, pd.DataFrame]:
    """A comparison's two sides answering alike, with enough evidence on each."""
    config = suite.compare
    assert config is not None
    sides: dict[str, pd.DataFrame] = {}
    for prefix, unit in suite.units():
        data: dict[str, list[Any]] = {}
        if config.test == "difference":
            count = rows if config.keys else 1
            for key in config.keys:
                data[key] = [f"{key}-{i}" for i in range(count)]
            value = 100.0
            if (side_minimum := evidence_minimum(unit.evidence)) is not None:
                minimum = side_minimum.min_total
                value = float(thresholds[minimum.name].value if isinstance(minimum, ParameterRef) else minimum)
            for column in config.values:
                data[column] = [max(value, 1.0)] * count
        elif config.test == "mann-whitney":
            n = config.min_samples
            if config.histogram:  # cumulative buckets, the same on both sides
                data = {"le": ["0.05", "0.1", "0.25", "+Inf"], config.samples: [n, 2 * n, 3 * n, 3 * n]}
            else:
                data = {config.samples: [float(i % 7) for i in range(3 * n)]}  # type: ignore[dict-item]
        else:
            data = {config.hits: [1], config.total: [10 * config.min_samples]}  # type: ignore[dict-item]
        sides[prefix.split(".")[2]] = pd.DataFrame(data)
    return sides


def passing_frame(suite: SuiteConfig, thresholds: dict[str, ResolvedThreshold], rows: int) -> pd.DataFrame:
    if suite.compare is not None:
        from gatecheck.evaluation.compare import compare_frame

        return compare_frame(suite.compare, passing_sides(suite, thresholds, rows))
    data: dict[str, list[Any]] = {}
    if suite.reconcile is not None:  # one row of counts, each side's rows at its minimum
        rows = 1
        for name, side in suite.reconcile.sides.items():
            minimum = side.min_rows if side.min_rows is not None else 100.0
            data[f"{name}_rows"] = [float(bound({"$PARAMETER": minimum.name}, thresholds) if isinstance(minimum, ParameterRef) else minimum)]
    for group in suite.groups or []:
        data[group] = [f"{group}-{i}" for i in range(rows)]
    for spec in suite.expectations:
        kwargs = spec.kwargs
        if "column" in kwargs and ("min_value" in kwargs or "max_value" in kwargs):
            low, high = bound(kwargs.get("min_value"), thresholds), bound(kwargs.get("max_value"), thresholds)
            value = float(low if low is not None else high)
            data[kwargs["column"]] = [value] * rows
        elif "value_set" in kwargs:
            data[kwargs["column"]] = [kwargs["value_set"][0]] * rows
        elif "column_A" in kwargs:
            data[kwargs["column_A"]] = [f"same-{i}" for i in range(rows)]
            data[kwargs["column_B"]] = [f"same-{i}" for i in range(rows)]
    declared = evidence_minimum(suite.evidence)
    if declared is not None:
        minimum = declared.min_total
        required = thresholds[minimum.name].value if isinstance(minimum, ParameterRef) else minimum
        data[declared.column] = [float(required)] * rows  # type: ignore[arg-type]
    return pd.DataFrame(data)


def check(name: str, frame: pd.DataFrame):
    suite, thresholds = SUITES[name]
    window = window_for(AS_OF, suite.window.length, suite.window.settle)
    base = {"suite": name, "source": suite.source, "role": "required", "window": window}
    return judge(suite, frame, thresholds, base, VALIDATOR)


@pytest.mark.parametrize("name", sorted(SUITES))
def test_the_undamaged_answer_passes(name: str) -> None:
    suite, thresholds = SUITES[name]
    result = check(name, passing_frame(suite, thresholds, 3))
    assert result.outcome is Outcome.PASS, result.reason


NOT_NUMBERS = st.one_of(
    st.text(min_size=1, max_size=8).filter(lambda t: not _numeric(t)),
    st.sampled_from(["n/a", "", " ", "NULL", "1,5", "0x10", "ten", "1e3x", "--"]),
)
WRONG_OBJECTS = st.sampled_from([[1], {"a": 1}, (1, 2), b"\x00", object])


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def set_column(frame: pd.DataFrame, column: str, values: list[Any]) -> pd.DataFrame:
    """Replace every column named ``column`` (a "duplicated" damage leaves two of them:
    ``frame[column] = …`` then assigns one series to two columns and raised inside the
    generator, a flaky failure of the test itself)."""
    frame = frame.copy()
    for position in [i for i, name in enumerate(frame.columns) if name == column]:
        frame.isetitem(position, pd.Series(values, index=frame.index, dtype=object))
    return frame


def _duplicated_then_nulls() -> tuple[str, pd.DataFrame, list[str]]:
    """The example that failed in CI: a column duplicated, then NULLed."""
    suite, thresholds = SUITES["unmatched_edges"]
    frame = passing_frame(suite, thresholds, 2)
    frame = pd.concat([frame, frame[["unmatched_rate"]]], axis=1)
    return "unmatched_edges", set_column(frame, "unmatched_rate", [None, None]), ["duplicated unmatched_rate", "nulls unmatched_rate"]


@st.composite
def damaged_answer(draw: st.DrawFn) -> tuple[str, pd.DataFrame, list[str]]:
    """(suite, frame, what was done): one shipped suite's passing answer, damaged."""
    name = draw(st.sampled_from(sorted(SUITES)))
    suite, thresholds = SUITES[name]
    rows = draw(st.integers(min_value=1, max_value=5))
    frame = passing_frame(suite, thresholds, rows)
    needed = needed_columns(suite)
    done: list[str] = []
    for _ in range(draw(st.integers(min_value=1, max_value=2))):
        kind = draw(
            st.sampled_from(
                ["no-rows", "missing", "renamed", "duplicated", "nulls", "nan", "not-numbers", "objects"]
            )
        )
        column = draw(st.sampled_from(sorted(needed)))
        if column not in frame.columns:
            continue
        if kind == "no-rows":
            frame = frame.iloc[0:0]
        elif kind == "missing":
            frame = frame.drop(columns=[column])
        elif kind == "renamed":
            new = "not_" + draw(st.text(min_size=1, max_size=10))  # no suite column starts so
            frame = frame.rename(columns={column: new})
        elif kind == "duplicated":
            frame = pd.concat([frame, frame[[column]]], axis=1)
        elif kind in ("nulls", "nan"):
            if needed[column] == "nullable":
                continue
            frame = set_column(frame, column, [None if kind == "nulls" else np.nan] * len(frame))
        elif kind == "not-numbers":
            if needed[column] != "number":
                continue
            frame = set_column(frame, column, draw(st.lists(NOT_NUMBERS, min_size=len(frame), max_size=len(frame))))
        else:
            frame = set_column(frame, column, [draw(WRONG_OBJECTS) for _ in range(len(frame))])
        done.append(f"{kind} {column}")
    return name, frame, done


@settings(
    max_examples=150,
    deadline=None,  # how fast the machine is never decides a test
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(damaged_answer())
@example(_duplicated_then_nulls())
def test_a_damaged_answer_is_inconclusive_or_error_never_pass(
    answer: tuple[str, pd.DataFrame, list[str]],
) -> None:
    name, frame, done = answer
    result = check(name, frame)
    if not done:  # every drawn damage hit a column already gone: the answer is intact
        return
    assert result.outcome in (Outcome.INCONCLUSIVE, Outcome.ERROR), (done, result.outcome, result.reason)
    assert result.reason, "an inconclusive or errored check says why"


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(SUITES)),
    st.lists(
        st.one_of(st.integers(), st.text(), st.just([1, 2]), st.just({"k": "v"})), min_size=1, max_size=3
    ),
    st.randoms(use_true_random=False),
)
def test_extra_columns_and_row_order_do_not_change_a_pass(name: str, extra: list[Any], rnd: Any) -> None:
    """The other direction: what a suite does not read (an extra column of arrays, maps or
    text, the order of rows) must not turn a good answer into an error."""
    suite, thresholds = SUITES[name]
    frame = passing_frame(suite, thresholds, 3)
    for i, value in enumerate(extra):  # ClickHouse arrays, maps, tuples; mixed kinds
        frame[f"extra_{i}"] = pd.Series([value, "text", None][: len(frame)], dtype=object)
    order = list(range(len(frame)))
    rnd.shuffle(order)
    result = check(name, frame.iloc[order].reset_index(drop=True))
    assert result.outcome is Outcome.PASS, result.reason


def test_ci_runs_hypothesis_derandomized() -> None:
    """Under CI=true the active profile is the derandomized one (conftest.py)."""
    import os

    active = settings.default
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    assert active.derandomize is ci
    assert settings.get_profile("ci").derandomize is True
