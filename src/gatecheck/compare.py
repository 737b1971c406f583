"""Comparisons: two sides' answers as one frame, and two samples judged statistically.

The computational core of comparison checks (issue "Comparison checks"); a suite kind that
uses it is not wired yet. Both functions work on what sources already return — small frames
of aggregates, sample lists or histograms — never raw rows.

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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

#: Below this many samples on either side a statistical comparison says nothing.
MIN_SAMPLES = 50
PRESENT = "present"


def _normalized_keys(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Keys both sides can be matched on: datetimes as UTC timestamps, everything else text
    (a ClickHouse ``UInt16`` hour and a PostgreSQL ``integer`` one must meet)."""
    import pandas as pd

    out = frame.copy()
    for key in keys:
        column = out[key]
        present = column.dropna()
        moments = column.dtype == object and len(present) > 0 and all(hasattr(v, "tzinfo") for v in present)
        if pd.api.types.is_datetime64_any_dtype(column) or moments:
            out[key] = pd.to_datetime(column, utc=True)
        else:
            out[key] = column.map(lambda v: None if v is None else str(v))
    return out


def join_sides(
    left: pd.DataFrame,
    right: pd.DataFrame,
    keys: list[str],
    values: list[str],
    names: tuple[str, str] = ("left", "right"),
) -> pd.DataFrame:
    """One row per key found on either side: the keys, for each compared value ``v``
    ``<left>_v`` and ``<right>_v`` (NULL on the side that lacks the key), ``v_diff`` (left −
    right, a missing side counted as 0), ``v_rel_diff`` (``|diff| / max(|right|, 1)``: a key on
    one side only is at least 1 when its value is), ``v_ratio`` (left / right, NULL when right
    is 0 or missing), and ``present``. Raises ValueError naming a key or value column a side
    does not have, or a key that repeats on one side."""
    import numpy as np
    import pandas as pd

    first, second = names
    for name, frame in ((first, left), (second, right)):
        missing = [c for c in [*keys, *values] if c not in frame.columns]
        if missing:
            found = ", ".join(map(str, frame.columns))
            raise ValueError(f"{name}: column(s) {', '.join(missing)} not in its answer ({found})")
        duplicated = frame.duplicated(subset=keys)
        if duplicated.any():
            row = frame[duplicated].iloc[0]
            shown = ", ".join(f"{k}={row[k]}" for k in keys)
            raise ValueError(f"{name}: key {shown} appears more than once")
    a = _normalized_keys(left[[*keys, *values]], keys).rename(columns={v: f"{first}_{v}" for v in values})
    b = _normalized_keys(right[[*keys, *values]], keys).rename(columns={v: f"{second}_{v}" for v in values})
    joined = a.merge(b, on=keys, how="outer", indicator=True, sort=True)
    joined[PRESENT] = joined.pop("_merge").map(
        {"both": "both", "left_only": f"{first} only", "right_only": f"{second} only"}
    ).astype(str)
    for value in values:
        lhs = pd.to_numeric(joined[f"{first}_{value}"], errors="coerce").astype(float)
        rhs = pd.to_numeric(joined[f"{second}_{value}"], errors="coerce").astype(float)
        diff = lhs.fillna(0.0) - rhs.fillna(0.0)
        joined[f"{value}_diff"] = diff
        joined[f"{value}_rel_diff"] = diff.abs() / np.maximum(rhs.fillna(0.0).abs(), 1.0)
        joined[f"{value}_ratio"] = (lhs / rhs).where((rhs != 0) & rhs.notna())
    return joined.reset_index(drop=True)


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


def _p95(samples: Sequence[float]) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(samples, dtype=float), 95))


def mann_whitney(
    left: Sequence[float],
    right: Sequence[float],
    *,
    min_samples: int = MIN_SAMPLES,
    alpha: float = 0.05,
    names: tuple[str, str] = ("canary", "baseline"),
    unit: str = "",
) -> Comparison:
    """Two-sided Mann-Whitney U test of two samples (scipy), its rank-biserial effect size
    (+1: every left sample above every right one) and direction. Fewer than ``min_samples``
    on a side: ``sufficient`` is False and nothing is concluded."""
    from scipy.stats import mannwhitneyu

    left_n, right_n = len(left), len(right)
    first, second = names
    if min(left_n, right_n) < min_samples:
        return Comparison(
            "mann-whitney", left_n, right_n, False, None, None, "no difference", None, None,
            f"too few samples: {first} {left_n}, {second} {right_n} (need {min_samples} each)",
        )  # fmt: skip
    result = mannwhitneyu(left, right, alternative="two-sided")
    u, p = float(result.statistic), float(result.pvalue)
    effect = 2 * u / (left_n * right_n) - 1  # rank-biserial: P(left > right) - P(left < right)
    lp95, rp95 = _p95(left), _p95(right)
    direction = "no difference" if p >= alpha else ("higher" if effect > 0 else "lower")
    text = (
        f"{first} p95 {_fmt(lp95)}{unit} vs {second} {_fmt(rp95)}{unit}, {direction}, "
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
) -> Comparison:
    """Two-sided z-test of two proportions (pooled), e.g. error rates per pod group; the
    effect is the difference of proportions (left − right)."""
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
    p = 1.0 if spread == 0 else float(2 * norm.sf(abs(p1 - p2) / spread))
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


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.3g}"


def _fmt_p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"
