"""Bounds from the phase's own history: a **baseline** (a quantile of the check's last passing
evaluations, or a pinned one, times a ratio) and a **learned band** (median ± spread × MAD per
seasonal bucket, trained on a stretch before the window being judged, incidents left out).

Pure functions of plain records. An evaluation keeps the tracked column's value per group in
its record (``CheckResult.tracked``); the run reads earlier records from the ledger
(:func:`past_of_documents`), the backtest builds the same from its own earlier steps, so both
judge a step alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gatecheck._values import redefined, shown, timestamp
from gatecheck.config.models import Baseline, ExcludedStretch, Learned
from gatecheck.durations import format_duration
from gatecheck.results import (
    CheckResult,
    ExpectationResult,
    FailingGroup,
    GroupValue,
    HistoryBound,
    HistoryGroup,
    Outcome,
    Threshold,
    Tracked,
)
from gatecheck.sources.probe import counted

if TYPE_CHECKING:
    import pandas as pd

    from gatecheck.config import SuiteConfig
    from gatecheck.evaluation.plan import CheckPlan

GroupKey = tuple[tuple[str, str], ...]
#: The MAD of a normal sample times this estimates its standard deviation.
MAD_SCALE = 1.4826


def key_of(group: Mapping[str, str]) -> GroupKey:
    return tuple(sorted(group.items()))


@dataclass(frozen=True)
class Past:
    """One earlier evaluation of the check, as a bound from history reads it."""

    as_of: datetime
    window_start: datetime
    window_end: datetime
    measured: Outcome
    values: dict[GroupKey, float | None]
    left_out: str | None = None  # why it is not learned from (None: it is)
    # it passed, but for a bound that could not be judged yet (too little history)
    passed: bool = False


def tracked_values(suite: SuiteConfig, frame: pd.DataFrame, column: str) -> Tracked | str:
    """The values of ``column`` per group of the frame, or why they cannot be read."""
    import pandas as pd

    from gatecheck.evaluation.validation import group_columns, group_label

    if column not in frame.columns:
        listed = ", ".join(str(c) for c in frame.columns)
        return f"{column!r} is not a column of the answer (its columns: {listed})"
    groups = [c for c in group_columns(suite, frame) if c != column]
    found = []
    for _, row in frame.iterrows():
        value = row[column]
        if isinstance(value, bool | str):
            return f"{column!r} holds {value!r}: a bound from history needs numbers"
        if pd.isna(value):
            number = None
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                return f"{column!r} holds {value!r}: a bound from history needs numbers"
        found.append(GroupValue(group={g: group_label(row[g]) for g in groups}, value=number))
    return Tracked(column=column, groups=found)


def _moment(text: Any) -> datetime:
    return datetime.fromisoformat(str(text))  # documents write Z (Python 3.11 reads it)


def _overlaps(start: datetime, end: datetime, stretches: Iterable[tuple[datetime, datetime]]) -> bool:
    return any(start < hi and lo < end for lo, hi in stretches)


def past_of_documents(
    documents: Iterable[Mapping[str, Any]],
    suite: str,
    role: str,
    invalidated: set[datetime] | frozenset[datetime] = frozenset(),
    corrections: Sequence[tuple[datetime, datetime]] = (),
    excluded: Sequence[ExcludedStretch] = (),
    measure: str = "",
) -> list[Past]:
    """The check's earlier evaluations (recorded verdict documents, oldest first) that kept
    its tracked values, each marked with why it is left out, if it is: ``redefined`` (its
    values were measured another way than ``measure`` says: another query, grouping or
    window), ``invalidated`` (a person said so), ``rollback`` (from a ROLLBACK until the next
    GO), ``waived`` (its failure was waived), ``corrected`` (its window overlaps an SLO
    correction) or ``excluded`` (a stretch the rule excludes)."""
    found: list[Past] = []
    rolling_back = False
    manual = [(e.start, e.end) for e in excluded]
    for document in documents:
        verdict = document.get("verdict")
        if verdict == "rollback":
            rolling_back = True
        elif verdict == "go":
            rolling_back = False
        checks = [c for c in document.get("checks", []) if c.get("suite") == suite and c.get("role") == role]
        if not checks or not checks[0].get("tracked"):
            continue
        check = checks[0]
        window = check["window"]
        start, end, as_of = _moment(window["start"]), _moment(window["end"]), _moment(document["as_of"])
        values = {key_of(g["group"]): g["value"] for g in check["tracked"]["groups"]}
        reason = None
        measured_by = check["tracked"].get("measure") or ""
        if redefined(measured_by, measure):
            reason = "redefined"
        elif as_of in invalidated:
            reason = "invalidated"
        elif rolling_back:
            reason = "rollback"
        elif check.get("waiver"):
            reason = "waived"
        elif _overlaps(start, end, corrections):
            reason = "corrected"
        elif _overlaps(start, end, manual):
            reason = "excluded"
        measured = Outcome(check.get("measured") or check["outcome"])
        bound = check.get("history") or {}
        if bound.get("before"):
            passed = bound["before"] == Outcome.PASS.value and all(
                g["outcome"] != Outcome.FAIL.value for g in bound.get("groups", [])
            )
        else:
            passed = measured is Outcome.PASS
        found.append(Past(as_of, start, end, measured, values, reason, passed))
    return found


def _quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile with linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _median(values: list[float]) -> float:
    return _quantile(values, 0.5)


def _quantile_words(q: float) -> str:
    return "median" if q == 0.5 else f"p{q * 100:g}"


def judge_history(
    check: CheckResult,
    plan: CheckPlan,
    past: Sequence[Past],
    as_of: datetime,
    pinned: tuple[Past, str] | None = None,
) -> CheckResult:
    """``check`` judged against its bound from history (unchanged without one, or when it has
    no tracked values: it errored, or had too little evidence to judge)."""
    tracked = check.tracked
    if tracked is None or (plan.baseline is None and plan.learned is None):
        return check
    if check.evidence is not None and not check.evidence.sufficient:
        return check
    if plan.baseline is not None:
        bound = _baseline(plan.baseline, tracked, past, pinned)
        key = f"{plan.where}.baseline"
    else:
        assert plan.learned is not None
        bound = _learned(plan.learned, tracked, past, check.window.start, as_of)
        key = f"{plan.where}.learned"
    return _combined(check, bound, key)


def _left_out(past: Iterable[Past]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for one in past:
        if one.left_out is not None:
            counts[one.left_out] = counts.get(one.left_out, 0) + 1
    return counts


def _judged(
    value: GroupValue,
    reference: float | None,
    low: float | None,
    high: float | None,
    records: int,
    short: str | None,
) -> HistoryGroup:
    """One group against its bounds; ``short``: why it cannot be judged."""
    if short is not None:
        return HistoryGroup(
            group=value.group,
            observed=value.value,
            records=records,
            outcome=Outcome.INCONCLUSIVE,
            reason=short,
        )
    if value.value is None:
        return HistoryGroup(
            group=value.group, observed=None, reference=reference, low=low, high=high, records=records,
            outcome=Outcome.INCONCLUSIVE, reason="no value to judge",
        )  # fmt: skip
    outside = (high is not None and value.value > high) or (low is not None and value.value < low)
    return HistoryGroup(
        group=value.group, observed=value.value, reference=reference, low=low, high=high, records=records,
        outcome=Outcome.FAIL if outside else Outcome.PASS,
    )  # fmt: skip


def _baseline(
    rule: Baseline, tracked: Tracked, past: Sequence[Past], pinned: tuple[Past, str] | None
) -> HistoryBound:
    sides = []
    if rule.max_ratio is not None:
        sides.append(f"≤ {rule.max_ratio:g} ×")
    if rule.min_ratio is not None:
        sides.append(f"≥ {rule.min_ratio:g} ×")
    ratios = " and ".join(sides)
    if pinned is not None:
        record, by = pinned
        groups = []
        for value in tracked.groups:
            reference = record.values.get(key_of(value.group))
            short = None if reference is not None else "the pinned evaluation has no value for this group"
            if record.left_out == "redefined":
                short = (
                    "the pinned evaluation was measured another way "
                    "(the suite's query, groups or window changed since): pin a newer one"
                )
            elif record.left_out == "invalidated":  # a person said it is no evidence
                short = "the pinned evaluation was invalidated (gatecheck invalidate): pin another one"
            low, high = _ratio_bounds(rule, reference)
            groups.append(_judged(value, reference, low, high, 1, short))
        return HistoryBound(
            kind="pinned", column=tracked.column, records=[record.as_of], pinned_by=by, groups=groups,
            rule=f"{ratios} its value as of {timestamp(record.as_of)} (pinned)",
        )  # fmt: skip
    candidates = [p for p in past if p.left_out is None and p.passed][-rule.last :]
    groups = []
    for value in tracked.groups:
        values = [v for p in candidates if (v := p.values.get(key_of(value.group))) is not None]
        if len(values) < rule.min_records:
            short = (
                f"too little history: {counted(len(values), 'passing evaluation')} with a value, "
                f"need {rule.min_records}"
            )
            groups.append(_judged(value, None, None, None, len(values), short))
            continue
        reference = _quantile(values, rule.quantile)
        low, high = _ratio_bounds(rule, reference)
        groups.append(_judged(value, reference, low, high, len(values), None))
    last = counted(rule.last, "passing evaluation")
    words = f"{ratios} the {_quantile_words(rule.quantile)} of its last {last}"
    return HistoryBound(
        kind="baseline", column=tracked.column, rule=words, records=[p.as_of for p in candidates],
        left_out=_left_out(past), groups=groups,
    )  # fmt: skip


def _ratio_bounds(rule: Baseline, reference: float | None) -> tuple[float | None, float | None]:
    """The bounds a ratio of ``reference`` sets, moved by the reference's size: max_ratio 1.5
    of -10 is -5 (half of it above), never -15 — a product would turn a negative reference's
    bounds over, failing the reference itself and passing every value far below it."""
    if reference is None:
        return None, None
    size = abs(reference)
    low = reference + (rule.min_ratio - 1) * size if rule.min_ratio is not None else None
    high = reference + (rule.max_ratio - 1) * size if rule.max_ratio is not None else None
    return low, high


def same_season(rule: Learned, moment: datetime, other: datetime) -> bool:
    """Whether two moments fall in the same seasonal bucket (UTC hour of day, day of week)."""
    if rule.season == "hour_of_day":
        return moment.hour == other.hour
    if rule.season == "day_of_week":
        return moment.weekday() == other.weekday()
    return True


def _season_words(rule: Learned, as_of: datetime) -> str:
    if rule.season == "hour_of_day":
        return f" at {as_of:%H}:00-{as_of:%H}:59 UTC"
    if rule.season == "day_of_week":
        return f" on {as_of:%A}s"
    return ""


def _learned(
    rule: Learned, tracked: Tracked, past: Sequence[Past], window_start: datetime, as_of: datetime
) -> HistoryBound:
    # Never the period being judged: only evaluations whose window ended before this one's began.
    training = [
        p
        for p in past
        if p.window_end <= window_start
        and p.as_of >= as_of - rule.training
        and same_season(rule, p.as_of, as_of)
    ]
    used = [p for p in training if p.left_out is None]
    groups = []
    for value in tracked.groups:
        values = [v for p in used if (v := p.values.get(key_of(value.group))) is not None]
        if len(values) < rule.min_records:
            short = (
                f"too little history: {counted(len(values), 'evaluation')} in its last "
                f"{format_duration(rule.training)}{_season_words(rule, as_of)}, need {rule.min_records}"
            )
            groups.append(_judged(value, None, None, None, len(values), short))
            continue
        centre = _median(values)
        spread = _median([abs(v - centre) for v in values]) * MAD_SCALE
        half = max(rule.spread * spread, rule.min_change)
        low = centre - half if rule.bound in ("both", "min") else None
        high = centre + half if rule.bound in ("both", "max") else None
        groups.append(_judged(value, centre, low, high, len(values), None))
    least = f" (at least {shown(rule.min_change)})" if rule.min_change else ""
    words = (
        f"within the median ± {rule.spread:g} × MAD{least} of its last {format_duration(rule.training)}"
        f"{_season_words(rule, as_of)}"
    )
    return HistoryBound(
        kind="learned", column=tracked.column, rule=words, records=[p.as_of for p in used],
        left_out=_left_out(training), groups=groups,
    )  # fmt: skip


def _combined(check: CheckResult, bound: HistoryBound, key: str) -> CheckResult:
    """The check with its bound from history as one more expectation: a group outside its
    bounds fails the check, a group that cannot be judged leaves a pass inconclusive."""
    failing = [g for g in bound.groups if g.outcome is Outcome.FAIL]
    unjudged = [g for g in bound.groups if g.outcome is Outcome.INCONCLUSIVE]
    outcome = (
        Outcome.FAIL if failing else (Outcome.INCONCLUSIVE if unjudged or not bound.groups else Outcome.PASS)
    )
    thresholds = []
    if len(bound.groups) == 1 and not unjudged:
        (only,) = bound.groups
        name = "learned band" if bound.kind == "learned" else "baseline"
        thresholds = [
            Threshold(name=name, value=value, bound=side, provenance="history", key=key)  # type: ignore[arg-type]
            for value, side in ((only.low, "min"), (only.high, "max"))
            if value is not None
        ]
    reasons = "; ".join(f"{_group_words(g)}{g.reason}" for g in unjudged) or None
    expectation = ExpectationResult(
        type="within_learned_band" if bound.kind == "learned" else "within_baseline",
        column=bound.column,
        description=bound.rule,
        outcome=outcome,
        observed_value=bound.groups[0].observed if len(bound.groups) == 1 else None,
        thresholds=thresholds,
        failing_groups=[
            FailingGroup(
                group=g.group,
                observed_value=g.observed,
                expected_value=g.high if g.high is not None and (g.observed or 0) > g.high else g.low,
            )
            for g in failing
        ]
        if len(bound.groups) > 1 or not thresholds
        else [],
        reason=reasons if outcome is Outcome.INCONCLUSIVE else None,
    )
    bound = bound.model_copy(update={"before": check.outcome})
    update: dict[str, Any] = {"history": bound, "expectations": [*check.expectations, expectation]}
    if outcome is Outcome.FAIL and check.outcome is not Outcome.FAIL:
        from gatecheck.render.describe import failure_text

        update |= {"outcome": Outcome.FAIL, "reason": failure_text(expectation)}
    elif outcome is Outcome.INCONCLUSIVE and check.outcome is Outcome.PASS:
        update |= {
            "outcome": Outcome.INCONCLUSIVE,
            "reason": f"{bound.column}: {reasons or 'no groups to judge'}",
        }
    elif outcome is Outcome.FAIL:
        from gatecheck.render.describe import failure_text

        update |= {"reason": f"{check.reason}; {failure_text(expectation)}"}
    return check.model_copy(update=update)


def _group_words(group: HistoryGroup) -> str:
    return "".join(f"{k}={v}, " for k, v in group.group.items()).removesuffix(", ") + (
        ": " if group.group else ""
    )
