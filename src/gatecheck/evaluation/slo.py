"""``slo:`` checks: an error budget and its burn rates, judged at the check's window end.

The suite's query is the SLI: ``good`` and ``total`` events in a window (a Prometheus source's
two measures over ``$window``, or SQL returning both columns for ``{window_start}`` to
``{window_end}``). It is asked once per distinct window — the SLO's own and each burn-rate
rule's long and short one, all ending at the window's end — and once more per overlap of a
window with a correction (a recorded stretch left out of the budget), whose events are taken
out. Everything is counted in the source; only the counts cross.

The budget is ``1 - objective`` of the window's events; the burn rate of a window is its
error ratio over that share (1: the budget would last exactly the window). A rule fires
when both of its windows burn faster than its factor. A window with fewer events than
``min_events`` says nothing: what it would judge is left out (NULL in the frame), and a check
that would otherwise pass is inconclusive — a rule firing on windows that have enough events
is a failure whatever else lacks them.

The frame the expectations judge has one row per ``scope``: ``budget`` (its
``budget_remaining``) and each rule (``firing`` 0/1, ``burn_long``, ``burn_short``, ``factor``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from gatecheck.config.models import ParameterRef, SloConfig, SuiteConfig
from gatecheck.durations import format_duration
from gatecheck.errors import GatecheckError, QueryError
from gatecheck.evaluation.carried import carried, carry, source_failed
from gatecheck.evaluation.plan import query_parameters
from gatecheck.results import (
    BurnRateFinding,
    CheckResult,
    Outcome,
    SloCorrection,
    SloFindings,
    SloWindow,
    Window,
)
from gatecheck.sources.base import MAX_ROWS

if TYPE_CHECKING:
    import pandas as pd

    from gatecheck.config.models import ResolvedThreshold


@dataclass(frozen=True)
class SloContext:
    """What an evaluation's SLO checks read from the ledger: the corrections recorded by its
    ``as_of`` (by SLO suite), when the phase began, and why the trail could not be read."""

    corrections: Mapping[str, list[SloCorrection]]
    phase_since: datetime | None = None
    unreadable: str | None = None


def findings_of(frame: pd.DataFrame) -> SloFindings | None:
    """What an SLO check's frame carries (None on any other frame)."""
    found: SloFindings | None = carried(frame, "slo")
    return found


def min_events(config: SloConfig, thresholds: Mapping[str, ResolvedThreshold]) -> float:
    if isinstance(config.min_events, ParameterRef):
        return float(thresholds[config.min_events.name].value)  # type: ignore[arg-type]
    return float(config.min_events)


def windows_of(config: SloConfig, length: timedelta) -> list[timedelta]:
    """Every distinct window the check counts events in, longest first."""
    found = {length}
    for rule in config.burn_rates:
        found.update((rule.long, rule.short))
    return sorted(found, reverse=True)


def overlap(
    start: datetime, end: datetime, corrections: list[SloCorrection]
) -> list[tuple[datetime, datetime]]:
    """The stretches of ``[start, end]`` that corrections leave out, merged (an event is taken
    out once however many corrections cover it)."""
    spans = sorted(
        (max(start, c.start), min(end, c.end)) for c in corrections if c.start < end and c.end > start
    )
    merged: list[tuple[datetime, datetime]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


#: How far good may pass total (a share of total, plus one event): the extrapolation of two
#: increase() measures, never a miscounted SLI.
GOOD_OVER_TOTAL = 0.01


def _counts(frame: pd.DataFrame, what: str) -> tuple[float, float]:
    """``(good, total)`` summed over the answer's rows; no rows or NULLs count as none."""
    if len(frame) > MAX_ROWS:
        # a source reads at most MAX_ROWS + 1 rows: the sum would be of the first ones alone
        raise QueryError(
            f"{what}: the SLI answered more than {MAX_ROWS} rows, more than an answer may hold — "
            "count the events in the query (one row, or a row per group)"
        )
    missing = [c for c in ("good", "total") if c not in frame.columns]
    if missing:
        raise QueryError(
            f"{what}: the SLI must answer columns good and total (no {', '.join(missing)}; "
            f"got {', '.join(map(str, frame.columns)) or 'none'})"
        )
    values = []
    for column in ("good", "total"):
        numbers = [float(v) for v in frame[column].tolist() if v is not None and not _nan(v)]
        if any(math.isinf(v) for v in numbers):
            raise QueryError(f"{what}: {column} is not a finite number")
        values.append(sum(numbers))
    good, total = values
    if good < 0 or total < 0:
        raise QueryError(f"{what}: a negative count (good {good:g}, total {total:g})")
    # increase() extrapolates each measure on its own, so good may pass total by a little; by
    # more, the two queries count different things (another metric, other labels), and taking
    # good as all of total would make every event good
    if good > total * (1 + GOOD_OVER_TOTAL) + 1:
        raise QueryError(
            f"{what}: good {good:g} is more than total {total:g}: good events are some of the events "
            "— the SLI's two queries count different things"
        )
    return good, total


def _nan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def prom_duration(length: timedelta) -> str:
    """A window as Prometheus and the recording rules name it: 5m, 1h, 3d (the largest unit
    that divides it)."""
    seconds = round(length.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def burn_of(good: float, total: float, budget: float) -> float | None:
    """How fast the budget burns over a window: its error ratio over the budget's share."""
    if total <= 0:
        return None
    return max(0.0, total - good) / total / budget


async def fetch_slo(
    suite: SuiteConfig,
    window: Window,
    as_of: datetime,
    thresholds: Mapping[str, ResolvedThreshold],
    pool: Any,
    base: dict[str, Any],
    corrections: list[SloCorrection],
    phase_since: datetime | None = None,
) -> pd.DataFrame | CheckResult:
    """The SLO's frame (its findings in ``attrs``), or the error result naming the source."""
    config = suite.slo
    assert config is not None
    end = window.end

    async def count(start: datetime, stop: datetime) -> tuple[float, float]:
        span = Window(start=start, end=stop, length=stop - start, settle=window.settle)
        source = pool.get(suite.source)
        frame = await source.query(suite.query, query_parameters(suite, span, as_of, thresholds))
        return _counts(frame, f"the window {format_duration(stop - start)} ending {stop.isoformat()}")

    async def recorded_ratio(start: datetime) -> float | None:
        """A recording rule's error ratio over ``[start, end]``, or None where it has none."""
        template = config.recorded_error_ratio
        if template is None:
            return None
        from gatecheck.sources.prometheus.promql import PromQuery

        span = Window(start=start, end=end, length=end - start, settle=window.settle)
        query = PromQuery(
            measures={"error_ratio": template.replace("$window_name", prom_duration(end - start))}
        )
        frame = await pool.get(suite.source).query(query, query_parameters(suite, span, as_of, thresholds))
        values = [float(v) for v in frame.get("error_ratio", []) if v is not None and not _nan(v)]
        if len(values) > 1:
            raise QueryError(
                f"slo.recorded_error_ratio: {len(values)} series for one window (select one SLO)"
            )
        if values and not 0 <= values[0] <= 1:
            raise QueryError(f"slo.recorded_error_ratio: {values[0]:g} is not a ratio between 0 and 1")
        return values[0] if values else None

    async def corrected(start: datetime) -> tuple[float, float, bool]:
        if start >= end:  # a calendar period that has just begun: no events yet
            return 0.0, 0.0, False
        good, total = await count(start, end)
        stretches = [(lo, hi) for lo, hi in overlap(start, end, corrections) if hi > lo]
        # A recording rule's ratio is used where it exists (and no correction reaches into
        # the window: a recorded ratio cannot leave a stretch out); the total is counted.
        ratio = None if stretches else await recorded_ratio(start)
        if ratio is not None:
            return total * (1 - ratio), total, True
        for lo, hi in stretches:
            less_good, less_total = await count(lo, hi)
            good, total = good - less_good, total - less_total
        # increase() extrapolates each range on its own: never fewer than none
        return max(0.0, min(good, total)), max(0.0, total), False

    # a calendar SLO's budget counts from its period's start (the week or month so far)
    begun = config.period_start(end)
    length = window.length if begun is None else end - begun
    lengths = windows_of(config, length)
    # what the phase consumed is a share of this window's budget: counted within the window
    # (a rollout named as begun weeks ago, or in 1972, is not asked for weeks of events)
    since = max(phase_since, end - length) if phase_since is not None and phase_since < end else None
    try:
        # asked together; a failure is reported for the longest window that failed, not for
        # whichever answered first: the same evaluation gives the same reason every time
        asks = (corrected(end - length) for length in lengths)
        settled = await asyncio.gather(*asks, return_exceptions=True)
        for answer in settled:
            if isinstance(answer, BaseException):
                raise answer
        answers = [answer for answer in settled if not isinstance(answer, BaseException)]
        phase_counts = (await corrected(since))[:2] if since is not None else None
    except GatecheckError as exc:
        return source_failed(exc, suite.source, base)
    counted = {length: (good, total) for length, (good, total, _) in zip(lengths, answers, strict=True)}
    recorded = {length for length, (_, _, by_rule) in zip(lengths, answers, strict=True) if by_rule}
    minimum = min_events(config, thresholds)
    return slo_frame(config, length, counted, minimum, corrections, since, phase_counts, recorded)


def slo_frame(
    config: SloConfig,
    length: timedelta,
    counted: Mapping[timedelta, tuple[float, float]],
    minimum: float,
    corrections: list[SloCorrection],
    since: datetime | None = None,
    phase_counts: tuple[float, float] | None = None,
    recorded: set[timedelta] | frozenset[timedelta] = frozenset(),
) -> pd.DataFrame:
    """The frame the expectations judge, from the counts of every window (pure: no I/O);
    ``recorded``: the windows whose error ratio came from a recording rule."""
    import pandas as pd

    budget = config.budget

    def of(span: timedelta) -> SloWindow:
        good, total = counted[span]
        enough = total >= minimum and total > 0
        burn = burn_of(good, total, budget)
        return SloWindow(
            length=span, good=good, total=total, burn=burn, enough=enough, recorded=span in recorded
        )

    whole = of(length)
    remaining = 1 - whole.burn if whole.enough and whole.burn is not None else None
    rules = []
    for rule in config.burn_rates:
        long, short = of(rule.long), of(rule.short)
        firing = None
        if long.enough and short.enough:
            assert long.burn is not None and short.burn is not None
            firing = long.burn > rule.factor and short.burn > rule.factor
        rules.append(
            BurnRateFinding(rule=rule.name, factor=rule.factor, long=long, short=short, firing=firing)
        )
    consumed = None
    if phase_counts is not None and whole.total > 0:
        good, total = phase_counts
        consumed = max(0.0, total - good) / (budget * whole.total)
    exhaustion = None
    if rules and remaining is not None and remaining > 0:
        current = min(rules, key=lambda r: r.long.length).long
        if current.enough and current.burn:
            exhaustion = remaining * length.total_seconds() / current.burn
    found = SloFindings(
        objective=config.objective,
        window=whole,
        calendar=config.calendar,
        budget_remaining=remaining,
        rules=rules,
        phase_since=since,
        phase_consumed=consumed,
        exhaustion_s=exhaustion,
        corrections=corrections,
        min_events=minimum,
    )
    rows: list[dict[str, Any]] = [
        {"scope": "budget", "budget_remaining": remaining, "firing": None, "burn_long": whole.burn,
         "burn_short": None, "factor": None},
    ]  # fmt: skip
    for finding in rules:
        rows.append(
            {
                "scope": finding.rule,
                "budget_remaining": None,
                "firing": None if finding.firing is None else int(finding.firing),
                "burn_long": finding.long.burn,
                "burn_short": finding.short.burn,
                "factor": finding.factor,
            }
        )
    frame = pd.DataFrame(rows).astype(
        {c: "float64" for c in ("budget_remaining", "firing", "burn_long", "burn_short", "factor")}
    )
    return carry(frame, "slo", found)


def unjudged(found: SloFindings) -> list[str]:
    """What too few events left unjudged, in words."""
    lacking: dict[timedelta, SloWindow] = {}
    if not found.window.enough:
        lacking[found.window.length] = found.window
    for rule in found.rules:
        for span in (rule.long, rule.short):
            if not span.enough:
                lacking[span.length] = span
    return [
        f"the {format_duration(span.length)} window has {span.total:g} events, fewer than the "
        f"{found.min_events:g} an SLO window needs"
        for span in sorted(lacking.values(), key=lambda s: s.length, reverse=True)
    ]


def judged(found: SloFindings, outcome: Outcome, reason: str | None) -> tuple[Outcome, str | None]:
    """A pass with any window short of events is inconclusive (never a pass); a failure on
    windows with enough events stays a failure, the rest said beside it."""
    lacking = unjudged(found)
    if not lacking:
        return outcome, reason
    said = "too few events: " + "; ".join(lacking)
    if outcome is Outcome.PASS:
        return Outcome.INCONCLUSIVE, said
    if outcome is Outcome.FAIL and reason is not None:
        return outcome, f"{reason} (also not judged: {said})"
    return outcome, reason
