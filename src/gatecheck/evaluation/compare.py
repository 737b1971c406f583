"""Comparisons: two sides' answers as one frame, and two samples judged statistically.

The core of comparison suites (``compare:`` in a suite file): :func:`compare_frame` turns
the two sides' answers into the one frame Great Expectations judges. Everything works on what
sources already return — small frames of aggregates, sample lists or histograms — never raw
rows.

- :func:`join_sides` joins two frames on declared keys into one frame Great Expectations can
  judge: both sides' values, their difference, relative difference and ratio, and a
  ``present`` marker (``both``, ``left only``, ``right only``) naming keys missing on a side.
- :func:`mann_whitney` and :func:`proportions` compare a canary with its baseline: the test's
  p-value, an effect size and its direction, and *insufficient* (never a pass) when either
  side has fewer than ``min_samples``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gatecheck._values import number, observed_number
from gatecheck.sources.base import MAX_ROWS

if TYPE_CHECKING:
    import pandas as pd

#: Below this many samples on either side a statistical comparison says nothing.
MIN_SAMPLES = 50
PRESENT = "present"


def _normalized_keys(frame: pd.DataFrame, keys: list[str]) -> tuple[list[list[Any]], list[bool]]:
    """Each key column as values both sides can be matched on — datetimes as UTC timestamps,
    everything else text (a ClickHouse ``UInt16`` hour and a PostgreSQL ``integer`` one must
    meet), a missing value None — and whether it is a datetime column."""
    import pandas as pd

    columns: list[list[Any]] = []
    moments: list[bool] = []
    for key in keys:
        column = frame[key]
        present = column.dropna()
        timed = pd.api.types.is_datetime64_any_dtype(column) or (
            column.dtype == object and len(present) > 0 and all(hasattr(v, "tzinfo") for v in present)
        )
        if timed:
            values = [None if pd.isna(v) else v for v in pd.to_datetime(column, utc=True)]
        else:
            values = [None if v is None or v is pd.NA else str(v) for v in column.tolist()]
        columns.append(values)
        moments.append(bool(timed))
    return columns, moments


def join_sides(
    left: pd.DataFrame,
    right: pd.DataFrame,
    keys: list[str],
    values: list[str],
    names: tuple[str, str] = ("left", "right"),
) -> pd.DataFrame:
    """One row per key found on either side, sorted by the keys: the keys, for each compared
    value ``v`` ``<left>_v`` and ``<right>_v`` (numbers; NULL on the side that lacks the key),
    ``v_diff`` (left − right, a missing side counted as 0), ``v_rel_diff`` (``|diff| /
    max(|right|, 1)``: a key on one side only is at least 1 when its value is), ``v_ratio``
    (left / right, NULL when right is 0 or missing), and ``present``. Raises ValueError naming
    a key or value column a side does not have, or a key that repeats on one side.

    Built in plain Python over the two small frames (a few hundred keys at most: a suite
    answers aggregates), not with a pandas merge: the backtest joins every step's sides, and
    a merge costs ~10 ms however small the frames."""
    import numpy as np
    import pandas as pd

    first, second = names
    sides: list[tuple[dict[tuple[Any, ...], int], dict[str, np.ndarray], list[bool]]] = []
    for name, frame in ((first, left), (second, right)):
        missing = [c for c in [*keys, *values] if c not in frame.columns]
        if missing:
            found = ", ".join(map(str, frame.columns))
            raise ValueError(f"{name}: column(s) {', '.join(missing)} not in its answer ({found})")
        columns, moments = _normalized_keys(frame, keys)
        rows: dict[tuple[Any, ...], int] = {}
        for i, key in enumerate(zip(*columns, strict=True) if keys else [()] * len(frame)):
            if key in rows:
                shown = ", ".join(f"{k}={frame[k].iloc[i]}" for k in keys)
                raise ValueError(f"{name}: key {shown} appears more than once")
            rows[key] = i
        numbers = {}
        for v in values:
            found = pd.to_numeric(frame[v], errors="coerce")
            # NULL counts as 0 in a difference; text is a damaged answer, never a 0 that could
            # match the other side's
            damaged = found.isna() & frame[v].notna()
            if damaged.any():
                raise ValueError(
                    f"{name}: {v} is not a number in {int(damaged.sum())} of {len(frame)} rows "
                    f"({str(frame[v][damaged].iloc[0])[:40]!r})"
                )
            numbers[v] = found.to_numpy(dtype=float, na_value=np.nan)
        sides.append((rows, numbers, moments))
    (lrows, lvalues, lmoments), (rrows, rvalues, rmoments) = sides
    timed = [a or b for a, b in zip(lmoments, rmoments, strict=True)]

    def order(key: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple((1, 0) if v is None else (0, v) for v in key)  # missing keys last

    union = set(lrows) | set(rrows)
    # a key column holds one kind (text or UTC timestamps): tuples sort as they are unless a
    # key is missing somewhere
    every = sorted(union, key=order) if any(None in k for k in union) else sorted(union)
    data: dict[str, Any] = {}
    for position, key_name in enumerate(keys):
        column = [k[position] for k in every]
        data[key_name] = (
            pd.Series(column, dtype="datetime64[ns, UTC]")
            if timed[position]
            else pd.Series(column, dtype=object)
        )
    picked = {}
    for side, rows, numbers in ((first, lrows, lvalues), (second, rrows, rvalues)):
        index = np.array([rows.get(k, -1) for k in every], dtype=int)
        for value in values:
            source = numbers[value]
            taken = source[np.clip(index, 0, None)] if len(source) else np.full(len(index), np.nan)
            picked[(side, value)] = np.where(index >= 0, taken, np.nan)
            data[f"{side}_{value}"] = picked[(side, value)]
    data[PRESENT] = pd.Series(
        [
            "both" if k in lrows and k in rrows else f"{first} only" if k in lrows else f"{second} only"
            for k in every
        ],
        dtype=object,
    )
    for value in values:
        lhs, rhs = picked[(first, value)], picked[(second, value)]
        diff = np.nan_to_num(lhs, nan=0.0) - np.nan_to_num(rhs, nan=0.0)
        data[f"{value}_diff"] = diff
        data[f"{value}_rel_diff"] = np.abs(diff) / np.maximum(np.abs(np.nan_to_num(rhs, nan=0.0)), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            data[f"{value}_ratio"] = np.where((rhs != 0) & ~np.isnan(rhs), lhs / rhs, np.nan)
    return pd.DataFrame(data)


@dataclass(frozen=True)
class Comparison:
    """A statistical comparison of ``left`` (the canary) with ``right`` (the baseline)."""

    test: str  # "mann-whitney" or "proportions"
    left_n: int
    right_n: int
    sufficient: bool  # both sides had at least min_samples
    p_value: float | None
    effect: float | None  # rank-biserial correlation, or the difference of proportions
    direction: str  # "higher", "lower" or "no difference"
    left_summary: float | None  # the p95 (samples) or the proportion
    right_summary: float | None
    text: str


def mann_whitney(
    left: Sequence[float],
    right: Sequence[float],
    *,
    min_samples: int = MIN_SAMPLES,
    alpha: float = 0.05,
    names: tuple[str, str] = ("canary", "baseline"),
    unit: str = "",
    alternative: str = "two-sided",
) -> Comparison:
    """Mann-Whitney U test of two samples (scipy; ``alternative``: ``two-sided``, or
    ``greater`` / ``less`` for "left is higher / lower"), its rank-biserial effect size (+1:
    every left sample above every right one) and direction. Fewer than ``min_samples`` on a
    side: ``sufficient`` is False and nothing is concluded."""
    from scipy.stats import mannwhitneyu

    left_n, right_n = len(left), len(right)
    first, second = names
    if min(left_n, right_n) < min_samples:
        return Comparison(
            "mann-whitney", left_n, right_n, False, None, None, "no difference", None, None,
            f"too few samples: {first} {left_n}, {second} {right_n} (need {min_samples} each)",
        )  # fmt: skip
    result = mannwhitneyu(left, right, alternative=alternative)
    u, p = float(result.statistic), float(result.pvalue)
    effect = 2 * u / (left_n * right_n) - 1  # rank-biserial: P(left > right) - P(left < right)
    lp95, rp95 = _percentile(left, 95), _percentile(right, 95)
    direction = "no difference" if p >= alpha else ("higher" if effect > 0 else "lower")
    text = (
        f"{first} p95 {number(lp95 or 0.0)}{unit} vs {second} {number(rp95 or 0.0)}{unit}, {direction}, "
        f"p = {_fmt_p(p)}, effect {effect:+.2f}"
    )
    return Comparison("mann-whitney", left_n, right_n, True, p, effect, direction, lp95, rp95, text)


def proportions(
    left_hits: int,
    left_total: int,
    right_hits: int,
    right_total: int,
    *,
    min_samples: int = MIN_SAMPLES,
    alpha: float = 0.05,
    names: tuple[str, str] = ("canary", "baseline"),
    what: str = "error rate",
    alternative: str = "two-sided",
) -> Comparison:
    """z-test of two proportions (pooled), e.g. error rates per pod group (``alternative``
    as for :func:`mann_whitney`); the effect is the difference of proportions (left − right)."""
    from scipy.stats import norm

    first, second = names
    if min(left_total, right_total) < min_samples:
        return Comparison(
            "proportions", left_total, right_total, False, None, None, "no difference", None, None,
            f"too few samples: {first} {left_total}, {second} {right_total} (need {min_samples} each)",
        )  # fmt: skip
    p1, p2 = left_hits / left_total, right_hits / right_total
    pooled = (left_hits + right_hits) / (left_total + right_total)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / left_total + 1 / right_total))
    if spread == 0:
        p = 1.0
    elif alternative == "greater":
        p = float(norm.sf((p1 - p2) / spread))
    elif alternative == "less":
        p = float(norm.cdf((p1 - p2) / spread))
    else:
        p = float(2 * norm.sf(abs(p1 - p2) / spread))
    direction = "no difference" if p >= alpha else ("higher" if p1 > p2 else "lower")
    text = f"{first} {what} {p1:.2%} vs {second} {p2:.2%}, {direction}, p = {_fmt_p(p)}"
    return Comparison("proportions", left_total, right_total, True, p, p1 - p2, direction, p1, p2, text)


def samples_from_histogram(buckets: Sequence[tuple[float, float]]) -> list[float]:
    """Samples a cumulative histogram stands for (``(le, cumulative count)``, Prometheus'
    ``_bucket`` series): each bucket's new observations at the bucket's midpoint (its upper
    bound for the first, its lower bound for ``+Inf``). Enough for a rank test between two
    histograms with the same buckets."""
    samples: list[float] = []
    previous_le, previous_count = 0.0, 0.0
    for le, count in sorted(buckets, key=lambda b: b[0]):
        new = round(count - previous_count)
        if new < 0:
            raise ValueError(f"bucket le={le}: cumulative count {count} below the previous {previous_count}")
        value = previous_le if math.isinf(le) else (previous_le + le) / 2 if previous_le else le
        samples.extend([value] * new)
        previous_le, previous_count = (previous_le if math.isinf(le) else le), count
    return samples


def _fmt_p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


# --------------------------------------------------------------------------- suites


def compare_frame(config: Any, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The frame a comparison suite's expectations judge, from each side's answer
    (``config``: the suite's ``CompareConfig``; ``frames``: side name → its frame).

    - ``difference``: :func:`join_sides` on ``keys`` (without keys each side answers at most
      one row, its totals), both sides' ``values``, their difference, relative difference,
      ratio and ``present``.
    - ``mann-whitney`` / ``proportions``: one row — per side ``<side>_n`` and its summary
      (``_p50``/``_p95`` of the samples, or ``_hits``/``_total``/``_rate``), ``p_value`` (one-sided:
      the probability of a difference at least this large in the worse direction if the first
      side were no worse), ``effect`` (rank-biserial, or the difference of rates; positive: the
      first side higher), ``direction`` and ``summary`` (one sentence). Too few samples on a
      side leaves ``p_value`` and ``effect`` empty.

    Raises ValueError (what is wrong with which side) when an answer lacks a column or
    repeats a key."""
    import pandas as pd

    first, second = config.names
    for name in (first, second):
        # a source reads at most MAX_ROWS + 1 rows: a test of distributions over more samples
        # would judge the first ones the engine happened to answer, as if they were all
        if len(frames[name]) > MAX_ROWS:
            raise ValueError(
                f"{name}: its query answered more than {MAX_ROWS} rows, more than a side's answer may "
                "hold — aggregate in the query (a histogram's buckets with histogram: true, or counts)"
            )
    if config.test == "difference":
        left, right = frames[first], frames[second]
        keys = list(config.keys)
        if not keys:
            for name, frame in ((first, left), (second, right)):
                if len(frame) > 1:
                    raise ValueError(
                        f"{name}: {len(frame)} rows without keys (a comparison of totals takes one)"
                    )
            left, right = left.assign(_gatecheck_total=0), right.assign(_gatecheck_total=0)
            keys = ["_gatecheck_total"]
        # a side without any row: the driver may not name its columns
        left, right = (
            pd.DataFrame({c: pd.Series(dtype=object) for c in [*keys, *config.values]}) if f.empty else f
            for f in (left, right)
        )
        joined = join_sides(left, right, keys, list(config.values), (first, second))
        return joined.drop(columns=["_gatecheck_total"], errors="ignore")

    alternative = "greater" if config.worse == "higher" else "less"
    if config.test == "mann-whitney":
        samples = {name: _samples(config, name, frames[name]) for name in (first, second)}
        result = mann_whitney(
            samples[first], samples[second], min_samples=config.min_samples, names=(first, second),
            alternative=alternative,
        )  # fmt: skip
        row: dict[str, Any] = {}
        for name in (first, second):
            row[f"{name}_n"] = len(samples[name])
            row[f"{name}_p50"] = _percentile(samples[name], 50)
            row[f"{name}_p95"] = _percentile(samples[name], 95)
    else:
        counts = {name: _counts(config, name, frames[name]) for name in (first, second)}
        result = proportions(
            *counts[first], *counts[second], min_samples=config.min_samples, names=(first, second),
            alternative=alternative,
        )  # fmt: skip
        row = {}
        for name in (first, second):
            hits, total = counts[name]
            row[f"{name}_n"] = total
            row[f"{name}_hits"] = hits
            row[f"{name}_total"] = total
            row[f"{name}_rate"] = hits / total if total else None
    row["p_value"] = result.p_value
    row["effect"] = result.effect
    row["direction"] = result.direction if result.sufficient else "too few samples"
    row["summary"] = result.text
    frame = pd.DataFrame([row])
    for column in ("p_value", "effect"):
        frame[column] = frame[column].astype(float)
    return frame


def compare_steps(config: Any, sides: dict[str, list[pd.DataFrame]]) -> list[pd.DataFrame]:
    """:func:`compare_frame` of many steps at once (the backtest): each side's step frames
    stacked with the step as one more key and joined once, then split back per step. Each
    step's frame has the rows, order and values its own ``compare_frame`` gives (a step with
    no row on either side: an empty frame, judged alike). Statistical tests: step by step."""
    import pandas as pd

    first, second = config.names
    count = len(sides[first])
    if config.test != "difference":
        return [compare_frame(config, {n: frames[k] for n, frames in sides.items()}) for k in range(count)]
    import numpy as np

    step = "_gatecheck_step"
    stacked = {}
    for name, frames in sides.items():
        if not config.keys:
            for frame in frames:
                if len(frame) > 1:
                    raise ValueError(
                        f"{name}: {len(frame)} rows without keys (a comparison of totals takes one)"
                    )
        steps = [k for k, frame in enumerate(frames) if not frame.empty]
        if steps:
            whole = pd.concat([frames[k] for k in steps], ignore_index=True)
            whole[step] = np.repeat(steps, [len(frames[k]) for k in steps])
            stacked[name] = whole
        else:
            stacked[name] = pd.DataFrame(
                {c: pd.Series(dtype=object) for c in [step, *config.keys, *config.values]}
            )
    joined = join_sides(
        stacked[first], stacked[second], [step, *config.keys], list(config.values), (first, second)
    )
    positions = joined.groupby(step, sort=False).indices
    joined = joined.drop(columns=step)
    empty = joined.iloc[0:0]
    return [
        joined.iloc[positions[str(k)]].reset_index(drop=True) if str(k) in positions else empty.copy()
        for k in range(count)
    ]


def _samples(config: Any, name: str, frame: pd.DataFrame) -> list[float]:
    import pandas as pd

    column = config.samples
    needed = [column, "le"] if config.histogram else [column]
    missing = [c for c in needed if c not in frame.columns]
    if missing and not frame.empty:
        found = ", ".join(map(str, frame.columns))
        raise ValueError(f"{name}: column(s) {', '.join(missing)} not in its answer ({found})")
    if frame.empty:
        return []
    values = pd.to_numeric(frame[column], errors="coerce")
    if not config.histogram:
        # A sample that is not a number (NULL, text) is not left out: the request it stood
        # for — one that timed out, say — could have been the slowest of all.
        unknown = int(values.isna().sum())
        if unknown:
            raise ValueError(
                f"{name}: {unknown} of {len(values)} samples in {column} are not numbers (NULL or text); "
                "a comparison of distributions takes numbers only — leave out in the query what "
                "should not count, or count it as a proportion"
            )
        return [float(v) for v in values]
    bounds = pd.to_numeric(frame["le"].astype(str).str.replace("+Inf", "inf"), errors="coerce")
    if bounds.isna().any() or values.isna().any():
        raise ValueError(f"{name}: a histogram bucket without a number (le or {column})")
    try:
        return samples_from_histogram(list(zip(bounds.astype(float), values.astype(float), strict=True)))
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _counts(config: Any, name: str, frame: pd.DataFrame) -> tuple[int, int]:
    import pandas as pd

    if frame.empty:
        return 0, 0
    missing = [c for c in (config.hits, config.total) if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns))
        raise ValueError(f"{name}: column(s) {', '.join(missing)} not in its answer ({found})")
    hits_of = pd.to_numeric(frame[config.hits], errors="coerce")
    total_of = pd.to_numeric(frame[config.total], errors="coerce")
    # A row with neither number (NULL both: a sum over no traffic) is no evidence. A count that
    # is NULL or text beside the other is not read as 0: an error count taken for "none" would
    # make the worse side look better.
    unanswered = hits_of.isna() & total_of.isna() & frame[config.hits].isna() & frame[config.total].isna()
    for column, values in ((config.hits, hits_of), (config.total, total_of)):
        unknown = int((values.isna() & ~unanswered).sum())
        if unknown:
            raise ValueError(
                f"{name}: {column} is not a number (NULL or text) in {unknown} of {len(values)} rows; "
                "a proportion takes counts — coalesce in the query where none means 0"
            )
    hits = float(hits_of[~unanswered].sum())
    total = float(total_of[~unanswered].sum())
    if hits < 0 or total < 0 or hits > total:
        raise ValueError(
            f"{name}: {hits:g} {config.hits} out of {total:g} {config.total} is not a proportion"
        )
    return round(hits), round(total)


def _percentile(samples: Sequence[float], q: float) -> float | None:
    import numpy as np

    return float(np.percentile(np.asarray(samples, dtype=float), q)) if len(samples) else None


def side_values(config: Any, frame: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """Each side's headline numbers in a comparison frame: every compared value's total over
    the keys (``difference``), or its sample count and summary (the statistical tests). A
    value that is not a number (a damaged answer) is left out as None."""
    out: dict[str, dict[str, float | None]] = {}
    for name in config.names:
        found: dict[str, float | None] = {}
        if config.test == "difference":
            for value in config.values:
                column = frame[f"{name}_{value}"] if f"{name}_{value}" in frame.columns else None
                numbers = (
                    []
                    if column is None
                    else [n for n in map(observed_number, column.tolist()) if n is not None]
                )
                found[value] = float(sum(numbers)) if numbers else None
        else:
            suffixes = (
                ("n", "p50", "p95") if config.test == "mann-whitney" else ("n", "hits", "total", "rate")
            )
            for suffix in suffixes:
                column_name = f"{name}_{suffix}"
                column = frame[column_name] if column_name in frame.columns and len(frame) == 1 else None
                one = column is not None and column.ndim == 1
                found[suffix] = observed_number(column.iloc[0]) if one else None  # type: ignore[union-attr]
        out[name] = found
    return out
