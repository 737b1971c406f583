"""The comparison core: two sides joined on keys, and canary-vs-baseline statistics against
known distributions."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from gatecheck.evaluation.compare import (
    join_sides,
    mann_whitney,
    proportions,
    samples_from_histogram,
)

HOUR = datetime(2026, 11, 22, 5, tzinfo=UTC)


def test_two_sides_join_on_their_keys_with_differences_and_a_presence_marker() -> None:
    model_grain = pd.DataFrame(
        {"hour": [HOUR, HOUR, HOUR], "pipeline": ["a", "b", "c"], "sessions": [100, 50, 7]}
    )
    pipeline_grain = pd.DataFrame(  # another engine: naive-UTC strings would not meet; timestamps do
        {"hour": pd.to_datetime([HOUR, HOUR, HOUR]), "pipeline": ["a", "b", "d"], "sessions": [100, 40, 3]}
    )
    joined = join_sides(
        model_grain, pipeline_grain, ["hour", "pipeline"], ["sessions"], ("model", "pipeline")
    )
    rows = {r["pipeline"]: r for r in joined.to_dict("records")}
    assert list(rows) == ["a", "b", "c", "d"]
    assert [rows[k]["present"] for k in "abcd"] == ["both", "both", "model only", "pipeline only"]
    assert (rows["a"]["sessions_diff"], rows["a"]["sessions_rel_diff"], rows["a"]["sessions_ratio"]) == (
        0,
        0,
        1,
    )
    assert rows["b"]["sessions_diff"] == 10 and rows["b"]["sessions_rel_diff"] == pytest.approx(0.25)
    assert rows["c"]["pipeline_sessions"] != rows["c"]["pipeline_sessions"]  # NULL on the side without it
    assert rows["c"]["sessions_rel_diff"] == 7 and math.isnan(rows["c"]["sessions_ratio"])
    assert rows["d"]["sessions_diff"] == -3 and rows["d"]["sessions_rel_diff"] == 1


def test_keys_of_different_types_meet_and_bad_sides_are_named() -> None:
    left = pd.DataFrame({"id": [1, 2], "n": [1, 1]})  # a number on one engine …
    right = pd.DataFrame({"id": ["1", "2"], "n": [1, 2]})  # … text on the other
    joined = join_sides(left, right, ["id"], ["n"])
    assert list(joined["present"]) == ["both", "both"] and list(joined["n_diff"]) == [0, -1]
    with pytest.raises(ValueError, match=r"right: column\(s\) n not in its answer"):
        join_sides(left, right.drop(columns="n"), ["id"], ["n"])
    with pytest.raises(ValueError, match="left: key id=1 appears more than once"):
        join_sides(pd.concat([left, left]), right, ["id"], ["n"])


def test_a_clearly_slower_canary_is_higher_with_its_p95_and_p_value() -> None:
    rng = np.random.default_rng(7)
    canary, baseline = rng.normal(300, 30, 400), rng.normal(200, 30, 400)
    result = mann_whitney(canary, baseline, unit=" ms")
    assert result.sufficient and result.direction == "higher"
    assert result.p_value is not None and result.p_value < 0.001
    assert result.effect is not None and result.effect > 0.9
    assert result.text.startswith("canary p95 3") and "vs baseline 2" in result.text
    assert result.text.endswith(
        ("p = < 0.001, effect +0.98", "p = < 0.001, effect +0.99", "p = < 0.001, effect +1.00")
    )
    faster = mann_whitney(baseline, canary)
    assert faster.direction == "lower" and faster.effect is not None and faster.effect < -0.9


def test_equal_distributions_are_no_difference_and_too_few_samples_conclude_nothing() -> None:
    rng = np.random.default_rng(11)
    same = mann_whitney(rng.normal(200, 30, 300), rng.normal(200, 30, 300))
    assert (
        same.sufficient
        and same.direction == "no difference"
        and same.p_value is not None
        and same.p_value > 0.05
    )
    few = mann_whitney([300.0] * 49, [200.0] * 500)
    assert not few.sufficient and few.p_value is None and few.direction == "no difference"
    assert few.text == "too few samples: canary 49, baseline 500 (need 50 each)"


def test_error_rates_per_group_compare_as_proportions() -> None:
    worse = proportions(100, 2000, 20, 2000)
    assert worse.direction == "higher" and worse.p_value is not None and worse.p_value < 0.001
    assert worse.effect == pytest.approx(0.04) and worse.text.startswith(
        "canary error rate 5.00% vs baseline 1.00%"
    )
    alike = proportions(20, 2000, 21, 2000)
    assert alike.direction == "no difference" and alike.p_value is not None and alike.p_value > 0.5
    assert not proportions(1, 10, 20, 2000).sufficient


def test_a_histogram_stands_for_its_observations() -> None:
    buckets = [(0.1, 10), (0.25, 30), (0.5, 35), (math.inf, 36)]
    samples = samples_from_histogram(buckets)
    assert len(samples) == 36
    assert samples.count(0.1) == 10 and samples.count(0.175) == 20 and samples.count(0.375) == 5
    assert samples[-1] == 0.5  # +Inf: its lower bound
    with pytest.raises(ValueError, match="below the previous"):
        samples_from_histogram([(0.1, 10), (0.2, 5)])


def _config(**kwargs):
    from gatecheck.config.models import CompareConfig

    sides = {"canary": {"source": "s", "query": "SELECT 1"}, "baseline": {"source": "s", "query": "SELECT 1"}}
    return CompareConfig.model_validate({"sides": sides, **kwargs})


def test_compare_frame_of_totals_without_keys_and_of_a_side_without_rows() -> None:
    from gatecheck.evaluation.compare import compare_frame

    config = _config(values=["messages"])
    frame = compare_frame(
        config, {"canary": pd.DataFrame({"messages": [240]}), "baseline": pd.DataFrame({"messages": [200]})}
    )
    assert frame[["canary_messages", "baseline_messages", "messages_diff", "present"]].to_dict("records") == [
        {"canary_messages": 240, "baseline_messages": 200, "messages_diff": 40.0, "present": "both"}
    ]
    empty = compare_frame(config, {"canary": pd.DataFrame({"messages": [240]}), "baseline": pd.DataFrame()})
    assert list(empty["present"]) == ["canary only"] and empty["messages_rel_diff"].iloc[0] == 240
    with pytest.raises(ValueError, match="canary: 2 rows without keys"):
        compare_frame(
            config,
            {"canary": pd.DataFrame({"messages": [1, 2]}), "baseline": pd.DataFrame({"messages": [1]})},
        )


def test_compare_frame_tests_samples_one_sided_in_the_worse_direction() -> None:
    from gatecheck.evaluation.compare import compare_frame

    rng = np.random.default_rng(11)
    slow, fast = rng.normal(300, 30, 200), rng.normal(200, 30, 200)
    higher_is_worse = _config(test="mann-whitney", samples="ms")
    worse = compare_frame(
        higher_is_worse, {"canary": pd.DataFrame({"ms": slow}), "baseline": pd.DataFrame({"ms": fast})}
    )
    row = worse.iloc[0]
    assert row["p_value"] < 0.001 and row["effect"] > 0.9 and row["direction"] == "higher"
    assert row["canary_n"] == 200 and row["canary_p95"] > row["baseline_p95"]
    better = compare_frame(
        higher_is_worse, {"canary": pd.DataFrame({"ms": fast}), "baseline": pd.DataFrame({"ms": slow})}
    )
    assert better.iloc[0]["p_value"] > 0.99  # faster is not worse: nothing to fail on
    lower_is_worse = _config(test="mann-whitney", samples="ms", worse="lower")
    flipped = compare_frame(
        lower_is_worse, {"canary": pd.DataFrame({"ms": fast}), "baseline": pd.DataFrame({"ms": slow})}
    )
    assert flipped.iloc[0]["p_value"] < 0.001
    few = compare_frame(
        higher_is_worse, {"canary": pd.DataFrame({"ms": slow[:10]}), "baseline": pd.DataFrame({"ms": fast})}
    )
    assert math.isnan(few.iloc[0]["p_value"]) and few.iloc[0]["direction"] == "too few samples"


def test_compare_frame_reads_histograms_and_proportions_and_names_a_bad_side() -> None:
    from gatecheck.evaluation.compare import compare_frame

    histogram = _config(test="mann-whitney", samples="value", histogram=True)
    slow = pd.DataFrame({"le": ["0.1", "0.5", "+Inf"], "value": [10.0, 60.0, 200.0]})
    fast = pd.DataFrame({"le": ["0.1", "0.5", "+Inf"], "value": [150.0, 190.0, 200.0]})
    row = compare_frame(histogram, {"canary": slow, "baseline": fast}).iloc[0]
    assert row["canary_n"] == 200 and row["baseline_n"] == 200 and row["p_value"] < 0.001
    broken = pd.DataFrame({"le": ["0.1", "+Inf"], "value": [50.0, 10.0]})  # a cumulative count falling
    with pytest.raises(ValueError, match="canary: bucket le=inf"):
        compare_frame(histogram, {"canary": broken, "baseline": fast})
    rates = _config(test="proportions", hits="errors", total="requests")
    row = compare_frame(
        rates,
        {
            "canary": pd.DataFrame({"errors": [30], "requests": [1000]}),
            "baseline": pd.DataFrame({"errors": [10], "requests": [1000]}),
        },
    ).iloc[0]
    assert row["canary_rate"] == 0.03 and row["p_value"] < 0.01 and row["effect"] == pytest.approx(0.02)
    with pytest.raises(ValueError, match="baseline: 5 errors out of 3 requests is not a proportion"):
        compare_frame(
            rates,
            {
                "canary": pd.DataFrame({"errors": [1], "requests": [100]}),
                "baseline": pd.DataFrame({"errors": [5], "requests": [3]}),
            },
        )


@pytest.mark.parametrize("keys", [["hour", "gateway"], []])
def test_compare_steps_gives_every_step_the_frame_of_its_own_comparison(keys) -> None:
    """Many steps joined at once (the backtest) = each step joined alone: rows, order, types,
    values — with steps where one side, or both, has no row."""
    from gatecheck.config.models import CompareConfig
    from gatecheck.evaluation.compare import compare_frame, compare_steps

    sides = {"model": {"source": "s", "query": "SELECT 1"}, "pipeline": {"source": "s", "query": "SELECT 1"}}
    config = CompareConfig.model_validate({"sides": sides, "keys": keys, "values": ["sessions"]})
    rng = np.random.default_rng(5)

    def side(k: int, drop: int) -> pd.DataFrame:
        if keys:
            rows = [(HOUR.replace(hour=h), g) for h in range(k % 3 + 1) for g in ("gw-b", "gw-a", "gw-10")]
            frame = pd.DataFrame(rows, columns=["hour", "gateway"])[drop:]
        else:
            frame = pd.DataFrame(index=range(1 - drop % 2))
        return frame.assign(sessions=rng.integers(0, 5, len(frame)))

    model = [side(k, 0) for k in range(7)]
    pipeline = [side(k, k % 4) for k in range(7)]
    model[3], pipeline[5] = model[3].iloc[0:0], pipeline[5].iloc[0:0]  # a side without rows
    model[6], pipeline[6] = pd.DataFrame(), pd.DataFrame()  # neither: the driver's empty answer
    together = compare_steps(config, {"model": model, "pipeline": pipeline})
    assert len(together) == 7
    for k, frame in enumerate(together):
        alone = compare_frame(config, {"model": model[k], "pipeline": pipeline[k]})
        if alone.empty:
            assert frame.empty, k
        else:
            pd.testing.assert_frame_equal(frame, alone, obj=f"step {k}")
    assert not together[5].empty and set(together[5]["present"]) == {"model only"}


def test_a_sample_or_count_that_is_not_a_number_is_an_error_never_left_out_or_zero() -> None:
    """Left out, a latency sample that is NULL (a request that timed out) could have been the
    slowest; read as 0, an error count makes the worse side look better. Both were passes."""
    from gatecheck.evaluation.compare import compare_frame

    latency = _config(test="mann-whitney", samples="ms")
    slow = pd.DataFrame({"ms": [float(v) for v in range(100, 300)]})
    timed_out = pd.DataFrame({"ms": [10.0] * 60 + [None] * 200})
    with pytest.raises(ValueError, match=r"^canary: 200 of 260 samples in ms are not numbers \(NULL or text\)"):
        compare_frame(latency, {"canary": timed_out, "baseline": slow})
    with pytest.raises(ValueError, match=r"^baseline: 1 of 3 samples in ms are not numbers"):
        compare_frame(latency, {"canary": slow, "baseline": pd.DataFrame({"ms": [1.0, "fast", 2.0]})})
    rates = _config(test="proportions", hits="errors", total="requests")
    baseline = pd.DataFrame({"errors": [5], "requests": [1000]})
    for damaged in ({"errors": [None], "requests": [1000]}, {"errors": ["lots"], "requests": [1000]}):
        with pytest.raises(ValueError, match=r"^canary: errors is not a number \(NULL or text\) in 1 of 1 rows"):
            compare_frame(rates, {"canary": pd.DataFrame(damaged), "baseline": baseline})
    with pytest.raises(ValueError, match=r"^canary: requests is not a number"):
        compare_frame(rates, {"canary": pd.DataFrame({"errors": [1], "requests": [None]}), "baseline": baseline})
    # a row with neither count is no traffic: left out; the other rows counted
    row = compare_frame(
        rates, {"canary": pd.DataFrame({"errors": [None, 3], "requests": [None, 1000]}), "baseline": baseline}
    ).iloc[0]
    assert row["canary_hits"] == 3 and row["canary_total"] == 1000
    none = compare_frame(rates, {"canary": pd.DataFrame({"errors": [None], "requests": [None]}), "baseline": baseline})
    assert none.iloc[0]["canary_n"] == 0 and none.iloc[0]["direction"] == "too few samples"


def test_a_compared_value_that_is_text_is_an_error_and_null_counts_as_zero() -> None:
    """`test: difference`: text in a compared column on both sides was read as 0 on both — a
    match, so a pass; it is a damaged answer, an error naming the side. NULL counts as 0."""
    from gatecheck.evaluation.compare import compare_frame

    config = _config(test="difference", keys=["k"], values=["v"])
    damaged = pd.DataFrame({"k": ["a", "b"], "v": ["n/a", 5]})
    with pytest.raises(ValueError, match=r"^canary: v is not a number in 1 of 2 rows \('n/a'\)$"):
        compare_frame(config, {"canary": damaged, "baseline": damaged})
    nulls = pd.DataFrame({"k": ["a", "b"], "v": [None, 5]})
    frame = compare_frame(config, {"canary": nulls, "baseline": pd.DataFrame({"k": ["a", "b"], "v": [7, 5]})})
    assert list(frame["v_diff"]) == [-7.0, 0.0] and list(frame["present"]) == ["both", "both"]
