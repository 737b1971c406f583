"""The GE suite runner on hand-made aggregate frames (no source involved)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatecheck.config import ResolvedThreshold, SuiteConfig
from gatecheck.evaluation.gate import judge
from gatecheck.evaluation.plan import window_for
from gatecheck.evaluation.validation import validate_frame, validate_frames
from gatecheck.results import Outcome

THRESHOLDS = {
    "rate_max": ResolvedThreshold("rate_max", 0.005, "phase", "thresholds.yaml: phases.p.rate_max"),
    "min_edges": ResolvedThreshold("min_edges", 100, "default", "thresholds.yaml: defaults.min_edges"),
}


def suite(**changes: object) -> SuiteConfig:
    data: dict[str, object] = {
        "name": "edges",
        "source": "warehouse",
        "window": {"length": "1h", "settle": "10m"},
        "query": "SELECT 1",
        "groups": ["edge_type"],
        "evidence": {"column": "edges", "min_total": {"$PARAMETER": "min_edges"}},
        "expectations": [
            {
                "type": "expect_column_values_to_be_between",
                "column": "rate",
                "max_value": {"$PARAMETER": "rate_max"},
            }
        ],
    }
    data.update(changes)
    return SuiteConfig.model_validate(data)


def check(frame: pd.DataFrame, **changes: object):
    window = window_for(datetime(2026, 11, 22, 6, tzinfo=UTC), timedelta(hours=1), timedelta(minutes=10))
    base = {"suite": "edges", "source": "warehouse", "role": "required", "window": window}
    return judge(suite(**changes), frame, THRESHOLDS, base)


def frame(rates: list[float | None], edges: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"edge_type": [f"t{i}" for i in range(len(rates))], "edges": edges, "rate": rates})


def test_pass_reports_the_worst_value_and_the_threshold_provenance() -> None:
    result = check(frame([0.001, 0.004], [100, 200]))
    assert result.outcome is Outcome.PASS
    (expectation,) = result.expectations
    assert expectation.observed_value == 0.004
    (threshold,) = expectation.thresholds
    assert (threshold.name, threshold.value, threshold.bound, threshold.provenance) == (
        "rate_max",
        0.005,
        "max",
        "phase",
    )
    assert result.evidence is not None and result.evidence.observed_total == 300


def test_fail_names_each_failing_group_and_its_value() -> None:
    result = check(frame([0.001, 0.02, 0.5], [100, 200, 300]))
    assert result.outcome is Outcome.FAIL
    groups = result.expectations[0].failing_groups
    assert [(g.group, g.observed_value) for g in groups] == [  # the worst first: furthest past the maximum
        ({"edge_type": "t2"}, 0.5),
        ({"edge_type": "t1"}, 0.02),
    ]
    assert "edge_type=t2: observed 50 %; edge_type=t1: observed 2 %" in (result.reason or "")


def test_failing_groups_past_a_minimum_are_listed_lowest_first() -> None:
    """The first listed is the one a reader should look at: the lowest below a minimum (a
    verdict lists 100 of them: the worst 100), ties in group order."""
    from gatecheck.evaluation.validation import _severity
    from gatecheck.results import FailingGroup

    failing = [FailingGroup(group={"g": g}, observed_value=v) for g, v in (("b", 0.9), ("a", 0.5), ("c", 0.5), ("d", "n/a"))]
    assert [f.group["g"] for f in sorted(failing, key=lambda f: _severity(f, "min"))] == ["a", "c", "b", "d"]
    assert [f.group["g"] for f in sorted(failing, key=lambda f: _severity(f, "max"))] == ["b", "a", "c", "d"]
    assert [f.group["g"] for f in sorted(failing, key=lambda f: _severity(f, None))] == ["a", "b", "c", "d"]


def test_too_little_evidence_is_inconclusive_even_when_values_fail() -> None:
    result = check(frame([0.5], [99]))
    assert result.outcome is Outcome.INCONCLUSIVE
    assert "too little evidence" in (result.reason or "") and "99" in (result.reason or "")


def test_no_rows_is_inconclusive() -> None:
    result = check(frame([], []))
    assert result.outcome is Outcome.INCONCLUSIVE
    assert "no rows" in (result.reason or "")


def test_an_all_null_column_is_inconclusive_not_a_pass() -> None:
    result = check(frame([None, float("nan")], [100, 100]))
    assert result.outcome is Outcome.INCONCLUSIVE
    assert "no values" in (result.reason or "")


def test_a_column_null_in_some_rows_is_judged_on_the_rest_and_not_be_null_names_the_group() -> None:
    """As docs/concepts.md says: Great Expectations skips NULLs, so a group whose measure came
    back NULL passes a bound unseen; expect_column_values_to_not_be_null is how a suite says
    that NULL is a finding, and then it fails naming the group."""
    partial = frame([0.001, None], [100, 200])
    assert check(partial).outcome is Outcome.PASS
    not_null = {"type": "expect_column_values_to_not_be_null", "column": "rate"}
    between = {
        "type": "expect_column_values_to_be_between",
        "column": "rate",
        "max_value": {"$PARAMETER": "rate_max"},
    }
    result = check(partial, expectations=[between, not_null])
    assert result.outcome is Outcome.FAIL
    assert [e.outcome for e in result.expectations] == [Outcome.PASS, Outcome.FAIL]
    assert [g.group for g in result.expectations[1].failing_groups] == [{"edge_type": "t1"}]
    assert check(frame([0.001, 0.002], [100, 200]), expectations=[between, not_null]).outcome is Outcome.PASS


def conditioned(condition: str, parser: str = "pandas", type_: str = "expect_column_values_to_be_between"):
    return [{"type": type_, "column": "rate", "max_value": {"$PARAMETER": "rate_max"},
             "row_condition": condition, "condition_parser": parser}]  # fmt: skip


@pytest.mark.parametrize(
    ("condition", "parser", "type_"),
    [
        ('edge_type=="t7"', "pandas", "expect_column_values_to_be_between"),
        ('col("edge_type")=="t7"', "great_expectations", "expect_column_values_to_be_between"),
        ('edge_type=="t1"', "pandas", "expect_column_values_to_be_between"),  # only a NULL there
        ('edge_type=="t7"', "pandas", "expect_column_max_to_be_between"),
    ],
)
def test_a_row_condition_that_selects_no_value_is_inconclusive_not_a_pass(condition: str, parser: str, type_: str) -> None:
    """A typo in a row_condition's group selects no row: Great Expectations passes a row-wise
    expectation on no rows (and fails an aggregate on none), so the check would be judged on
    nothing."""
    result = check(frame([0.5, None], [100, 200]), expectations=conditioned(condition, parser, type_))
    assert result.outcome is Outcome.INCONCLUSIVE, result
    (expectation,) = result.expectations
    assert expectation.reason == f"row_condition {condition!r} selects no row with a value in 'rate' (of 2 rows)"


def test_a_row_condition_over_several_columns_that_selects_no_row_is_inconclusive() -> None:
    spec = {"type": "expect_multicolumn_sum_to_equal", "column_list": ["edges", "rate"], "sum_total": 5,
            "row_condition": 'edge_type=="t7"', "condition_parser": "pandas"}  # fmt: skip
    result = check(frame([0.5, 0.1], [100, 200]), expectations=[spec])
    assert result.outcome is Outcome.INCONCLUSIVE
    assert result.expectations[0].reason == "row_condition 'edge_type==\"t7\"' selects no row (of 2 rows)"
    assert check(frame([0.5, 0.1], [100, 200]), expectations=[{**spec, "row_condition": 'edge_type=="t0"'}]).outcome is Outcome.FAIL


def test_a_row_condition_is_judged_and_shown_on_the_rows_it_selects() -> None:
    data = frame([0.5, 0.001, 0.02], [100, 200, 300])
    passed = check(data, expectations=conditioned('edge_type=="t1"'))
    assert passed.outcome is Outcome.PASS
    assert passed.expectations[0].observed_value == 0.001  # not t0's 0.5, which it does not judge
    failed = check(data, expectations=conditioned('edge_type!="t0"'))
    assert failed.outcome is Outcome.FAIL
    assert [g.group for g in failed.expectations[0].failing_groups] == [{"edge_type": "t2"}]
    assert failed.expectations[0].observed_value == 0.02


@pytest.mark.parametrize(
    ("condition", "parser"),
    [
        ("edges > 150", "pandas"),
        ("`edges` > 150", "pandas"),
        ('col("edges") > 150', "great_expectations"),
    ],
)
def test_a_row_condition_on_a_column_no_expectation_names_is_judged(condition: str, parser: str) -> None:
    """A row_condition may select rows by any column of the answer, not only a group or the
    column judged: GE was handed only those, so a condition on another column (the evidence
    column, say) raised "name 'edges' is not defined" and every such check was an error."""
    data = frame([0.5, 0.001, 0.02], [100, 200, 300])
    failed = check(data, expectations=conditioned(condition, parser))
    assert failed.outcome is Outcome.FAIL, failed
    assert [g.group for g in failed.expectations[0].failing_groups] == [{"edge_type": "t2"}]
    passed = check(frame([0.5, 0.001, 0.002], [100, 200, 300]), expectations=conditioned(condition, parser))
    assert passed.outcome is Outcome.PASS, passed  # t0's 0.5 is not selected
    # a backtest's steps, validated together, are judged as each alone
    both = [data, frame([0.5, 0.001, 0.002], [100, 200, 300])]
    conditioned_suite = suite(expectations=conditioned(condition, parser))
    together = validate_frames(conditioned_suite, both, THRESHOLDS)
    assert together == [validate_frame(conditioned_suite, f, THRESHOLDS) for f in both]
    assert [r[0].outcome for r in together] == [Outcome.FAIL, Outcome.PASS]


def test_a_group_column_the_answer_lacks_is_an_error_beside_a_pass_and_named_beside_a_failure() -> None:
    """A misspelt `groups:` entry left every failure unnamed ("overall") and every pass a pass."""
    said = "groups: column(s) 'edge_typ' not in the query result (columns: edge_type, edges, rate)"
    passed = check(frame([0.001, 0.004], [100, 200]), groups=["edge_typ"])
    assert passed.outcome is Outcome.ERROR
    assert passed.reason == f"expect_column_values_to_be_between: {said}"
    failed = check(frame([0.001, 0.02], [100, 200]), groups=["edge_typ"])
    assert failed.outcome is Outcome.FAIL  # a definite failure is not softened
    assert failed.expectations[0].reason == f"1 of 2 groups outside the bound; {said}"
    assert check(frame([0.001, 0.004], [100, 200]), groups=["edge_type"]).outcome is Outcome.PASS
    # a backtest's steps, validated together, are judged alike
    misspelt = suite(groups=["edge_typ"])
    frames = [frame([0.001, 0.004], [100, 200]), frame([0.001, 0.02], [100, 200])]
    together = validate_frames(misspelt, frames, THRESHOLDS)
    assert together == [validate_frame(misspelt, f, THRESHOLDS) for f in frames]
    assert [r[0].outcome for r in together] == [Outcome.ERROR, Outcome.FAIL]


def test_an_expectation_about_nulls_judges_an_all_null_column_and_is_not_softened() -> None:
    """Every value missing is what expect_column_values_to_not_be_null forbids: a failure, not
    "no values" (it was inconclusive); expect_column_values_to_be_null passes on it."""
    nulls = frame([None, None], [100, 200])
    not_null = {"type": "expect_column_values_to_not_be_null", "column": "rate"}
    result = check(nulls, expectations=[not_null])
    assert result.outcome is Outcome.FAIL
    assert [g.group for g in result.expectations[0].failing_groups] == [{"edge_type": "t0"}, {"edge_type": "t1"}]
    assert check(nulls, expectations=[{**not_null, "type": "expect_column_values_to_be_null"}]).outcome is Outcome.PASS
    on_t1 = {**not_null, "row_condition": 'edge_type=="t1"', "condition_parser": "pandas"}
    assert check(nulls, expectations=[on_t1]).outcome is Outcome.FAIL
    nowhere = check(nulls, expectations=[{**on_t1, "row_condition": 'edge_type=="t7"'}])
    assert nowhere.outcome is Outcome.INCONCLUSIVE
    assert nowhere.expectations[0].reason == "row_condition 'edge_type==\"t7\"' selects no row (of 2 rows)"


def test_a_pair_whose_every_row_is_ignored_is_inconclusive_not_a_pass() -> None:
    """ignore_row_if: either_value_is_missing, with the other side NULL everywhere (a key on one
    side of an outer join): Great Expectations compared no row and passed."""
    data = frame([0.1, 0.2], [100, 200]).assign(expected=[None, None])
    pair = {"type": "expect_column_pair_values_to_be_equal", "column_A": "rate", "column_B": "expected",
            "ignore_row_if": "either_value_is_missing"}  # fmt: skip
    result = check(data, expectations=[pair])
    assert result.outcome is Outcome.INCONCLUSIVE
    assert result.expectations[0].reason == (
        "no row to judge: each of the 2 rows lacks a value to compare in 'rate', 'expected' "
        "(ignore_row_if: either_value_is_missing)"
    )
    assert check(data.assign(expected=[0.1, None]), expectations=[pair]).outcome is Outcome.PASS
    assert check(data.assign(expected=[0.3, None]), expectations=[pair]).outcome is Outcome.FAIL


def test_a_missing_column_is_an_error_not_a_fail() -> None:
    data = frame([0.001], [500]).rename(columns={"rate": "ratio"})
    result = check(data)
    assert result.outcome is Outcome.ERROR
    assert "'rate'" in (result.reason or "")


def test_a_missing_evidence_column_is_an_error() -> None:
    data = frame([0.001], [500]).rename(columns={"edges": "n"})
    assert check(data).outcome is Outcome.ERROR


def test_an_expectation_that_raises_is_an_error() -> None:
    # Comparing text with a number raises inside GE: that is an error, not a failure.
    data = pd.DataFrame({"edge_type": ["a"], "edges": [500], "rate": ["high"]})
    result = check(data)
    assert result.outcome is Outcome.ERROR


def test_raw_rows_instead_of_aggregates_are_refused() -> None:
    data = frame([0.0] * 10_001, [1] * 10_001)
    result = check(data)
    assert result.outcome is Outcome.ERROR and "aggregates" in (result.reason or "")


@pytest.mark.parametrize("literal", [0.01, 0])
def test_literal_bounds_in_a_suite_have_suite_provenance(literal: float) -> None:
    expectations = [{"type": "expect_column_values_to_be_between", "column": "rate", "max_value": literal}]
    result = check(frame([0.001], [500]), expectations=expectations)
    (threshold,) = result.expectations[0].thresholds
    assert threshold.provenance == "suite" and threshold.value == literal
    assert result.outcome is (Outcome.PASS if literal else Outcome.FAIL)


def test_a_crossed_bound_fails_even_if_another_expectation_has_no_values() -> None:
    expectations = [
        {
            "type": "expect_column_values_to_be_between",
            "column": "rate",
            "max_value": {"$PARAMETER": "rate_max"},
        },
        {"type": "expect_column_values_to_be_between", "column": "lag", "max_value": 300},
    ]
    data = frame([0.5], [500]).assign(lag=[None])
    assert check(data, expectations=expectations).outcome is Outcome.FAIL
    quiet = frame([0.001], [500]).assign(lag=[None])
    assert check(quiet, expectations=expectations).outcome is Outcome.INCONCLUSIVE


def test_a_suite_built_once_is_judged_by_each_validations_own_thresholds() -> None:
    """The validator builds a suite's expectations once and reuses them: the thresholds of
    each validation (phase overrides differ) must still be the ones that judge it."""
    import pandas as pd

    from gatecheck.config import ResolvedThreshold, SuiteConfig
    from gatecheck.evaluation.validation import Validator, validate_frame

    suite = SuiteConfig.model_validate({
        "name": "s", "source": "w", "window": {"length": "1h"}, "query": "SELECT 1",
        "expectations": [{"type": "expect_column_values_to_be_between", "column": "x", "max_value": {"$PARAMETER": "m"}}],
    })  # fmt: skip
    validator = Validator()
    frame = pd.DataFrame({"x": [0.6, 0.1]})
    seen = []
    for limit in (0.5, 1.0, 0.5, 0.7, 0.55):
        (result,) = validate_frame(
            suite, frame, {"m": ResolvedThreshold("m", limit, "phase", "k")}, validator
        )
        seen.append((result.outcome.value, result.thresholds[0].value))
    assert seen == [("fail", 0.5), ("pass", 1.0), ("fail", 0.5), ("pass", 0.7), ("fail", 0.55)]


# ---------------------------------------------------------------- many frames, one validation

STACKED_SUITE = {
    "name": "stacked", "source": "w", "window": {"length": "1h"}, "query": "SELECT 1",
    "groups": ["kind"],
    "expectations": [
        {"type": "expect_column_values_to_be_between", "column": "rate", "max_value": {"$PARAMETER": "rate_max"}},
        {"type": "expect_column_values_to_be_in_set", "column": "state", "value_set": ["ok", "late"]},
        {"type": "expect_column_pair_values_to_be_equal", "column_A": "seen", "column_B": "sent"},
        # not row-wise: judged frame by frame
        {"type": "expect_column_max_to_be_between", "column": "rate", "max_value": 0.5},
        {"type": "expect_column_values_to_be_unique", "column": "seen"},
        {"type": "expect_column_values_to_be_between", "column": "rate", "max_value": 0.2, "mostly": 0.5},
    ],
}  # fmt: skip

_rates = st.one_of(st.none(), st.sampled_from([0.0, 0.004, 0.005, 0.0051, 0.3, 0.9]))
_rows = st.tuples(
    st.sampled_from(["a", "b", "<c>"]), _rates, st.sampled_from(["ok", "late", "lost"]),
    st.integers(0, 3), st.integers(0, 3),
)  # fmt: skip


def _frame_of(rows: list[tuple[str, float | None, str, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["kind", "rate", "state", "seen", "sent"]).astype(
        {"rate": "float64", "seen": "int64", "sent": "int64"}
    )


@settings(max_examples=12, deadline=None)
@given(st.lists(st.lists(_rows, max_size=4), min_size=1, max_size=4))
def test_frames_validated_together_are_judged_as_each_alone(frames: list[list[tuple]]) -> None:
    """The backtest validates every step of a suite in one Great Expectations run: each
    step's results must be exactly those of validating its frame alone (outcome, observed
    value, failing groups, reason), including row-wise expectations stacked and the others
    (aggregates, uniqueness, `mostly`) run frame by frame."""
    from gatecheck.evaluation.validation import Validator, validate_frame, validate_frames

    suite = SuiteConfig.model_validate(STACKED_SUITE)
    validator = Validator()
    made = [_frame_of(rows) for rows in frames]
    together = validate_frames(suite, made, THRESHOLDS, validator)
    alone = [validate_frame(suite, frame, THRESHOLDS, validator) for frame in made]
    assert [[r.model_dump() for r in step] for step in together] == [
        [r.model_dump() for r in step] for step in alone
    ]


def test_frames_validated_together_take_one_validation_for_the_row_wise_expectations(monkeypatch) -> None:
    """One GE run for the stacked row-wise expectations, not one per frame."""
    from gatecheck.evaluation import validation as runner

    suite = SuiteConfig.model_validate({**STACKED_SUITE, "expectations": STACKED_SUITE["expectations"][:3]})
    validator = runner.Validator()
    runs = []
    original = runner.validate_frame
    monkeypatch.setattr(runner, "validate_frame", lambda *a, **k: runs.append(a) or original(*a, **k))
    frames = [_frame_of([("a", 0.001 * k, "ok", 1, 1), ("b", 0.001, "lost", 2, 1)]) for k in range(30)]
    results = runner.validate_frames(suite, frames, THRESHOLDS, validator)
    assert runs == []
    assert [step[0].outcome for step in results] == [Outcome.PASS] * 6 + [Outcome.FAIL] * 24
    assert [g.group for g in results[10][0].failing_groups] == [{"kind": "a"}]
    assert results[0][1].failing_groups[0].group == {"kind": "b"}
    assert results[0][1].failing_groups[0].observed_value == "lost"
    assert results[0][2].outcome is Outcome.FAIL and results[0][2].failing_groups[0].expected_value == 1


def test_great_expectations_complaints_read_in_the_suites_words() -> None:
    """GE says "min_value and max_value cannot both be None": the suite's author wrote YAML."""
    from gatecheck.config.models import ExpectationSpec
    from gatecheck.evaluation.validation import expectation_problems

    spec = ExpectationSpec.model_validate({"type": "expect_column_values_to_be_between", "column": "x"})
    assert expectation_problems(spec) == ["give min_value or max_value (or both)"]


def _count_ge_validations(monkeypatch) -> list[int]:
    """Every Great Expectations validation from now on appends 1 to the returned list."""
    from great_expectations.datasource.fluent.interfaces import Batch

    calls: list[int] = []
    original = Batch.validate
    monkeypatch.setattr(Batch, "validate", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    return calls


def test_an_identical_question_is_answered_once_and_any_change_is_asked_again(monkeypatch) -> None:
    """GE's answers are kept per question (expectations, parameters, frame): the same frame
    judged again costs no validation and gives the same result; a changed value, dtype,
    parameter or expectation is validated anew and judged on its own."""
    from gatecheck.evaluation import validation as runner

    monkeypatch.setattr(runner, "ANSWERS", runner.Answers())  # none kept yet
    calls = _count_ge_validations(monkeypatch)
    first = check(frame([0.001, 0.004], [100, 200]))
    again = check(frame([0.001, 0.004], [100, 200]))
    assert len(calls) == 1
    assert again.model_dump() == first.model_dump() and first.outcome is Outcome.PASS

    changed = check(frame([0.001, 0.009], [100, 200]))  # one value over the bound
    assert len(calls) == 2 and changed.outcome is Outcome.FAIL
    assert [g.group for g in changed.expectations[0].failing_groups] == [{"edge_type": "t1"}]

    as_float32 = frame([0.001, 0.004], [100, 200]).astype({"rate": "float32"})  # the column's dtype
    assert check(as_float32).outcome is Outcome.PASS
    assert len(calls) == 3

    stricter = dict(THRESHOLDS, rate_max=ResolvedThreshold("rate_max", 0.003, "phase", "thresholds.yaml"))
    window = window_for(datetime(2026, 11, 22, 6, tzinfo=UTC), timedelta(hours=1), timedelta(minutes=10))
    base = {"suite": "edges", "source": "warehouse", "role": "required", "window": window}
    tighter = judge(suite(), frame([0.001, 0.004], [100, 200]), stricter, base)
    assert len(calls) == 4 and tighter.outcome is Outcome.FAIL

    other_expectation = check(
        frame([0.001, 0.004], [100, 200]),
        expectations=[{"type": "expect_column_values_to_be_between", "column": "rate", "max_value": 0.002}],
    )
    assert len(calls) == 5 and other_expectation.outcome is Outcome.FAIL


def test_a_digest_collision_cannot_return_another_frames_answer(monkeypatch) -> None:
    """The kept answer is used only for a frame equal to the one it was given for."""
    from gatecheck.evaluation import validation as runner

    monkeypatch.setattr(runner, "ANSWERS", runner.Answers())  # none kept yet
    monkeypatch.setattr(runner.Answers, "key", lambda self, *a: "the same digest for every question")
    calls = _count_ge_validations(monkeypatch)
    assert check(frame([0.001, 0.004], [100, 200])).outcome is Outcome.PASS
    assert check(frame([0.001, 0.009], [100, 200])).outcome is Outcome.FAIL
    assert check(frame([0.001, 0.004], [100, 200])).outcome is Outcome.PASS
    assert len(calls) == 3  # the collision was noticed each time, the frames validated apart


def test_a_validation_that_raised_is_not_kept_and_the_kept_answers_are_bounded(monkeypatch) -> None:
    from great_expectations.datasource.fluent.interfaces import Batch

    from gatecheck.evaluation import validation as runner

    monkeypatch.setattr(runner, "ANSWERS", runner.Answers())  # none kept yet
    original = Batch.validate

    def broken(self, *args, **kwargs):
        raise RuntimeError("metric store unavailable")

    monkeypatch.setattr(Batch, "validate", broken)
    failed = check(frame([0.001, 0.004], [100, 200]))
    assert failed.outcome is Outcome.ERROR
    assert "could not validate the answer: metric store unavailable" in failed.expectations[0].reason
    monkeypatch.setattr(Batch, "validate", original)
    assert check(frame([0.001, 0.004], [100, 200])).outcome is Outcome.PASS  # asked again, not the error

    monkeypatch.setattr(runner, "ANSWERS", runner.Answers(size=3))
    for k in range(6):
        check(frame([0.001 * k, 0.0], [100, 200]))
    assert len(runner.ANSWERS) == 3


def test_the_kept_answers_hold_at_most_their_memory_budget_the_oldest_going_first(monkeypatch) -> None:
    """A long-lived worker keeps answers for frames of up to 10,000 rows: bounded by count
    alone, 512 such frames held ~450 MiB. The frames kept are also bounded in bytes; the
    newest answers stay, the oldest go."""
    from gatecheck.evaluation import validation as runner

    monkeypatch.setattr(runner, "ANSWERS", runner.Answers())
    check(frame([0.009, 0.0], [100, 200]))
    one = runner.ANSWERS.kept_bytes  # what one such frame holds, as validated (its columns GE reads)
    assert one > 0
    monkeypatch.setattr(runner, "ANSWERS", runner.Answers(memory=2 * one))  # room for two such frames
    calls = _count_ge_validations(monkeypatch)
    for k in range(5):
        check(frame([0.001 * k, 0.0], [100, 200]))
    assert len(runner.ANSWERS) == 2 and runner.ANSWERS.kept_bytes == 2 * one
    check(frame([0.004, 0.0], [100, 200]))  # the newest: answered from what is kept
    check(frame([0.003, 0.0], [100, 200]))
    assert len(calls) == 5
    check(frame([0.0, 0.0], [100, 200]))  # the oldest: gone, asked again
    assert len(calls) == 6 and runner.ANSWERS.kept_bytes == 2 * one
    runner.ANSWERS.clear()
    assert runner.ANSWERS.kept_bytes == 0 and len(runner.ANSWERS) == 0
