"""``gatecheck backtest``: how a gate would have judged every step of a past range.

Each step is judged exactly as ``gatecheck run --as-of`` judges its checks — the same plans
(windows, settle), queries, evidence rules, thresholds with provenance, through the engine's
own fetch and judge — without recording anything. ``requires`` and soak are about the
ledger, not the data, and are left out: a step's verdict is its checks' verdict.

The observed values are fetched once: a second thresholds file (what-if) judges the same
frames again, and every step whose verdict flips is listed.

Why one module of ~730 lines: planning the steps, asking them in batches, validating them
together and summarizing are one pipeline whose parts are used nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from gatecheck._values import Moment, bound, observed_number, shown, unit_of, utc_minute
from gatecheck.config import Project, ResolvedThreshold
from gatecheck.config.models import Deadline
from gatecheck.durations import format_duration
from gatecheck.errors import ConfigError
from gatecheck.evaluation.decide import decide
from gatecheck.evaluation.overtime import apply_deadline
from gatecheck.evaluation.plan import CheckPlan, plan_checks, query_parameters
from gatecheck.ledger.base import tracked_check
from gatecheck.results import CheckResult, Outcome, VerdictState

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: At most this many steps in one backtest.
MAX_STEPS = 10_000
#: Queries under way at once (a source's own limits apply on top).
CONCURRENCY = 8


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StepCheck(_Model):
    """One check at one step: its outcome and each expectation's observed value."""

    suite: str
    outcome: Outcome
    observed: dict[str, float | int | str | bool | None] = {}
    # each expectation's own outcome (a check fails when one of its expectations does)
    outcomes: dict[str, Outcome] = {}
    reason: str | None = None
    # with accumulation rules: what this step alone measured (``outcome`` is accumulated)
    measured: Outcome | None = None
    shadow: bool = False  # judged, not enforced: it never changes the step's verdict


class Step(_Model):
    as_of: Moment
    verdict: VerdictState
    checks: list[StepCheck]
    # the gate has a deadline and the step is inconclusive (before escalation): since when
    inconclusive_since: Moment | None = None


class Distribution(_Model):
    """An expectation's observed values over the steps, against its threshold."""

    column: str
    expectation: str
    threshold: str
    bounds: list[float] = []  # the numeric thresholds, for the chart's lines
    steps: int
    min: float | None = None
    p50: float | None = None
    p95: float | None = None
    max: float | None = None


class CheckSummary(_Model):
    suite: str
    role: str
    passed: int
    failed: int
    inconclusive: int
    errored: int
    longest_failing_steps: int
    longest_failing_from: Moment | None = None
    first_failing: Moment | None = None
    last_failing: Moment | None = None
    worst_observed: float | int | str | bool | None = None
    worst_column: str | None = None  # the expectation's column the worst value is of
    worst_group: dict[str, str] = {}
    worst_as_of: Moment | None = None
    distributions: list[Distribution] = []
    # Why the first step that was neither pass nor fail was so (a source that cannot look back).
    not_judged: str | None = None


class Flip(_Model):
    """A step whose verdict changes under the proposed thresholds."""

    as_of: Moment
    verdict: VerdictState
    proposed: VerdictState
    changes: list[str]


class BacktestReport(_Model):
    phase: str
    since: Moment
    until: Moment
    step: float  # seconds
    verdicts: dict[str, int]
    checks: list[CheckSummary]
    steps: list[Step]
    proposed_verdicts: dict[str, int] | None = None
    flips: list[Flip] | None = None
    # what-if: steps whose verdict stays but a check's outcome changes (a failure that the
    # proposed thresholds clear while another check still blocks)
    check_flips: list[Flip] | None = None


def step_times(since: datetime, until: datetime, step: timedelta) -> list[datetime]:
    """The steps' as_of, oldest first, ending at ``until``; checked for sense."""
    if step.total_seconds() <= 0:
        raise ConfigError("--step: must be longer than 0s")
    if until <= since:
        raise ConfigError("--until: must be after the start of the range (--since)")
    if step > until - since:
        raise ConfigError(
            f"--step: {format_duration(step)} is longer than the range ({format_duration(until - since)})"
        )
    count = int((until - since) / step) + 1
    if count > MAX_STEPS:
        raise ConfigError(f"--step: {count} steps; at most {MAX_STEPS} (a longer --step or a shorter range)")
    return [until - step * k for k in range(count - 1, -1, -1)]


def _key(expectation: Any) -> str:
    """An expectation's name in a step: its column (a bound from history: with its kind, as
    the column is also judged by the suite's own expectation)."""
    name = f"{expectation.column or expectation.type}"
    if expectation.type in ("within_baseline", "within_learned_band"):
        name += f" ({expectation.type.removeprefix('within_').replace('_', ' ')})"
    return name


def _observed(check: CheckResult) -> dict[str, Any]:
    return {_key(e): e.observed_value for e in check.expectations}


def _outcomes(check: CheckResult) -> dict[str, Outcome]:
    return {_key(e): e.outcome for e in check.expectations}


async def run_backtest(
    project: Project,
    phase: str,
    since: datetime,
    until: datetime,
    step: timedelta,
    proposed: dict[str, ResolvedThreshold] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestReport:
    """The report of ``phase`` over ``[since, until]`` every ``step``.

    Check by check: a source that can answers many steps in one request (ClickHouse: the
    one-pass form of the suite's SQL, else its SQL once per step ``UNION ALL``; a comparison
    asks each side so and joins all steps at once), others step by step; then Great Expectations
    validates every step's frame of the check in one run (``validate_frames``). Anything the
    batched path cannot answer alike — a failed request, a validation that raises or times
    out — is redone step by step through the engine's own ``fetch`` and ``judge_fetched``, so
    each step gets exactly the result ``run --as-of`` gives."""
    from gatecheck.evaluation.engine import Engine
    from gatecheck.evaluation.gate import SourcePool, every

    gate = project.gate(phase)
    times = step_times(since, until, step)
    thresholds = project.resolve_thresholds(phase)
    if proposed is not None:
        _refuse_sql_thresholds(project, phase, thresholds, proposed)
    # A probe sends a synthetic request now: never in a backtest (its checks are left out).
    from gatecheck.evaluation.probe import is_probe

    plans_by_step = [
        [plan for plan in plan_checks(project, gate, moment) if not is_probe(plan.suite)] for moment in times
    ]
    if not plans_by_step[0]:
        raise ConfigError(
            f"backtest: every check of {phase} is a probe: a backtest sends no synthetic request"
        )
    checks = len(plans_by_step[0])
    total = len(times) * checks * 2  # fetched, then judged
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    limit = asyncio.Semaphore(CONCURRENCY)
    async with Engine(project, ledger=None) as engine:
        pool = SourcePool(project, gate.environment, engine.source_factory)
        try:
            columns = await every(
                _one_check(
                    engine,
                    pool,
                    limit,
                    times,
                    [plans[i] for plans in plans_by_step],
                    thresholds,
                    proposed,
                    advance,
                )
                for i in range(checks)
            )
        finally:
            await pool.aclose()
    # Over time, as run judges on a ledger holding these same steps: accumulation over the
    # earlier steps, shadow checks marked (no ledger: no decision enforces one here).
    results = [[column[k] for column in columns] for k in range(len(times))]
    replayed = _replay(plans_by_step, times, results, gate.deadline, proposed is not None)
    return _report(phase, since, until, step, times, replayed, proposed is not None)


Judged = tuple[CheckResult, CheckResult | None]
_Seen = tuple[datetime, Outcome, dict[str, Any]]


@dataclass
class _Side:
    """One judgement's (the project's thresholds, or the what-if's) state over the steps."""

    # per check, oldest first: (as_of, what it measured, the step as a record of the ledger
    # reads it — the verdict and the check's tracked values, made once per step)
    seen: list[list[_Seen]]
    begun: datetime | None = None  # inconclusive since (the gate's deadline)


@dataclass(frozen=True)
class _Replayed:
    checks: list[Judged]
    verdict: VerdictState
    inconclusive_since: datetime | None
    proposed: VerdictState | None
    proposed_since: datetime | None


def _replay(
    plans_by_step: list[list[CheckPlan]],
    times: list[datetime],
    results: list[list[Judged]],
    deadline: Deadline | None,
    what_if: bool,
) -> list[_Replayed]:
    """Every step as ``run --as-of`` judges it on a ledger holding exactly the earlier steps:
    each check's bound from history over the earlier steps (as many as run reads), its
    accumulation rules, ``shadow`` on a check that is not enforced, then the verdict and the
    gate's deadline. Both judgements, each over its own steps."""
    count = len(results[0]) if results else 0
    sides = [_Side([[] for _ in range(count)]), _Side([[] for _ in range(count)])]
    replayed = []
    for moment, plans, pairs in zip(times, plans_by_step, results, strict=True):
        found: list[tuple[VerdictState, datetime | None, list[CheckResult]] | None] = []
        for index, side in enumerate(sides):
            if index == 1 and not what_if:
                found.append(None)
                continue
            checks = [
                _over_time(plan, pair[index] or pair[0], side.seen[i], moment)
                for i, (plan, pair) in enumerate(zip(plans, pairs, strict=True))
            ]
            verdict, reasons = decide(checks, [], None)
            verdict, _, status = apply_deadline(deadline, verdict, reasons, moment, side.begun)
            side.begun = status.since if status is not None else None
            for i, check in enumerate(checks):
                kept = tracked_check(check)
                document = {
                    "as_of": moment.isoformat(),
                    "verdict": verdict.value,
                    "checks": [kept] if kept else [],
                }
                side.seen[i].append((moment, check.measured or check.outcome, document))
            found.append((verdict, side.begun, checks))
        now, other = found
        assert now is not None
        pairs_now = [(c, other[2][i] if other is not None else None) for i, c in enumerate(now[2])]
        replayed.append(
            _Replayed(
                pairs_now,
                now[0],
                now[1],
                other[0] if other is not None else None,
                other[1] if other is not None else None,
            )
        )
    return replayed


def _over_time(plan: CheckPlan, check: CheckResult, seen: list[_Seen], moment: datetime) -> CheckResult:
    """One check at one step in the light of the earlier steps, as the run does on a ledger."""
    from gatecheck.evaluation.history_bounds import judge_history, past_of_documents
    from gatecheck.evaluation.overtime import accumulate

    name, role = plan.suite.name, plan.role
    if plan.baseline is not None:
        # run reads the newest 10 × last records before as_of
        earlier = [entry[2] for entry in seen[-plan.baseline.last * 10 :]]
        check = judge_history(check, plan, past_of_documents(earlier, name, role), moment)
    elif plan.learned is not None:
        # run reads the records since as_of - training - the window (length and settle)
        reach = moment - plan.learned.training - plan.window.length - plan.window.settle
        earlier = [entry[2] for entry in seen if entry[0] >= reach]
        past = past_of_documents(earlier, name, role, excluded=plan.learned.exclude)
        check = judge_history(check, plan, past, moment)
    keep = plan.lookback - 1
    earlier_outcomes = [entry[1] for entry in seen[len(seen) - keep :]] if keep > 0 else []
    check = accumulate(check, plan.fail_after, plan.pass_after, earlier_outcomes)
    return check if plan.enforce else check.model_copy(update={"shadow": True})


async def _one_check(
    engine: Any,
    pool: Any,
    limit: asyncio.Semaphore,
    times: list[datetime],
    plans: list[CheckPlan],
    thresholds: dict[str, ResolvedThreshold],
    proposed: dict[str, ResolvedThreshold] | None,
    advance: Callable[[int], None],
) -> list[Judged]:
    """One check at every step: (its result, its result under the proposed thresholds)."""
    from gatecheck.evaluation.gate import every

    chunks = _chunks(pool, plans, times, thresholds)
    fetched: list[pd.DataFrame | CheckResult] = []
    for part in await every(
        _fetch_steps(pool, limit, times[a:b], plans[a:b], thresholds, advance) for a, b in chunks
    ):
        fetched.extend(part)
    judged = _tracking(plans, fetched, await _judge_steps(engine, plans, fetched, thresholds))
    again = (
        _tracking(plans, fetched, await _judge_steps(engine, plans, fetched, proposed))
        if proposed is not None
        else None
    )
    advance(len(times))
    return [(now, None if again is None else again[k]) for k, now in enumerate(judged)]


def _chunks(
    pool: Any, plans: list[CheckPlan], times: list[datetime], thresholds: dict[str, ResolvedThreshold]
) -> list[tuple[int, int]]:
    """The ranges of steps asked in one request each, as many as the source takes."""
    suite = plans[0].suite
    try:  # a comparison: as many as both sides' sources take
        size = min(
            pool.get(unit.source).steps_per_request(
                unit.query,
                [query_parameters(unit, p.window, m, thresholds) for m, p in zip(times, plans, strict=True)],
            )
            for _, unit in suite.units()
        )
    except Exception:  # the source's own error is each step's, when it is fetched
        size = 1
    size = max(1, size)
    return [(a, min(a + size, len(times))) for a in range(0, len(times), size)]


class _StepByStep(Exception):
    """This check's steps are fetched one by one."""


async def _fetch_steps(
    pool: Any,
    limit: asyncio.Semaphore,
    times: list[datetime],
    plans: list[CheckPlan],
    thresholds: dict[str, ResolvedThreshold],
    advance: Callable[[int], None],
) -> list[pd.DataFrame | CheckResult]:
    """The frames of some steps of one check: in one request where the source can, else (or
    when that request fails) step by step as ``run`` fetches, each with its own error."""
    from gatecheck.evaluation.gate import every, fetch

    suite = plans[0].suite
    frames = None
    async with limit:
        try:
            if suite.slo is not None:
                raise _StepByStep  # each step counts its own windows (the SLI is not the frame)
            if suite.reconcile is not None:
                # every step's buckets compared at once where both sides allow; a step whose
                # buckets differ (or all, where they do not allow) runs its own rounds
                from gatecheck.evaluation.reconcile_check import reconcile_steps

                together = await reconcile_steps(suite, plans, times, thresholds, pool)
                if together is None:
                    raise _StepByStep
                frames_or_none: list[Any] = list(together)
                for k, found in enumerate(frames_or_none):
                    if found is None:
                        frames_or_none[k] = await fetch(plans[k], times[k], thresholds, pool)
                advance(len(frames_or_none))
                return frames_or_none
            # each side's steps in one request (a comparison: both sides, then joined at once)
            sides = []
            for _, unit in suite.units():
                parameter_sets = [
                    query_parameters(unit, plan.window, moment, thresholds)
                    for moment, plan in zip(times, plans, strict=True)
                ]
                sides.append(await pool.get(unit.source).query_steps(unit.query, parameter_sets))
                if sides[-1] is None:
                    break  # this source answers step by step: so does the check
            if suite.compare is None:
                frames = sides[0]
            elif len(sides) == 2 and all(side is not None for side in sides):
                from gatecheck.evaluation.compare import compare_steps

                names = suite.compare.names
                # a side's answer that cannot be compared raises: asked step by step, as run does
                frames = compare_steps(suite.compare, dict(zip(names, sides, strict=True)))  # type: ignore[arg-type]
        except asyncio.CancelledError:
            raise
        except _StepByStep:
            frames = None
        except Exception as exc:  # each step is asked again and gets its own answer
            log.debug("backtest: %s in one request failed (%s); step by step", suite.name, exc)
            frames = None
    if frames is not None:
        advance(len(frames))
        return list(frames)

    async def one(moment: datetime, plan: CheckPlan) -> pd.DataFrame | CheckResult:
        async with limit:
            found = await fetch(plan, moment, thresholds, pool)
        advance(1)
        return found

    return await every(one(m, p) for m, p in zip(times, plans, strict=True))


def _tracking(
    plans: list[CheckPlan], fetched: list[pd.DataFrame | CheckResult], judged: list[CheckResult]
) -> list[CheckResult]:
    """Each step's result with the values its bound from history tracks (as the run keeps them)."""
    from gatecheck.evaluation.gate import with_tracked

    if plans[0].tracked_column is None:
        return judged
    return [
        result if isinstance(frame, CheckResult) else with_tracked(plan, frame, result)
        for plan, frame, result in zip(plans, fetched, judged, strict=True)
    ]


async def _judge_steps(
    engine: Any,
    plans: list[CheckPlan],
    fetched: list[pd.DataFrame | CheckResult],
    thresholds: dict[str, ResolvedThreshold],
) -> list[CheckResult]:
    """Every step of one check judged: the frames that reach Great Expectations validated in
    one run, the rest (and all, if that run fails) as ``run`` judges them."""
    from gatecheck.evaluation.gate import check_base, judge, judge_fetched, triage
    from gatecheck.evaluation.validation import validate_frames

    suite = plans[0].suite
    base = [{**check_base(plan), "source_available": True} for plan in plans]
    early = {
        k: triage(suite, found, thresholds, base[k])
        for k, found in enumerate(fetched)
        if not isinstance(found, CheckResult)
    }
    ready = [k for k, decided in early.items() if not isinstance(decided, CheckResult)]
    validated: dict[int, Any] = {}
    if ready:
        try:
            together = await engine.in_validation_thread(
                validate_frames, suite, [fetched[k] for k in ready], thresholds, engine.validator
            )
            validated = dict(zip(ready, together, strict=True))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # each step is judged on its own and gets its own answer
            log.debug("backtest: validating %s in one run failed (%s); step by step", suite.name, exc)
    results: list[CheckResult] = []
    for k, found in enumerate(fetched):
        if isinstance(found, CheckResult):
            results.append(found)
        elif k in validated:
            results.append(
                judge(suite, found, thresholds, base[k], expectations=validated[k], early=early[k])
            )
        else:
            results.append(
                await judge_fetched(
                    plans[k], found, thresholds, engine.in_validation_thread, engine.validator
                )
            )
    return results


def _refuse_sql_thresholds(
    project: Project,
    phase: str,
    current: dict[str, ResolvedThreshold],
    proposed: dict[str, ResolvedThreshold],
) -> None:
    """A threshold bound into a query changes what is observed: the frames fetched once
    cannot answer for it."""
    gate = project.gate(phase)
    for name_of in [ref.suite for ref in gate.checks] + [ref.suite for ref in gate.rollback]:
        suite = project.suites[name_of]
        for name in suite.query_parameters():
            if name in current and name in proposed and current[name].value != proposed[name].value:
                raise ConfigError(
                    f"--thresholds: {name} is bound into the query of {suite.name}: a what-if changes "
                    "only thresholds the observed values are judged against"
                )


def _report(
    phase: str,
    since: datetime,
    until: datetime,
    step: timedelta,
    times: list[datetime],
    replayed: list[_Replayed],
    what_if: bool,
) -> BacktestReport:
    steps: list[Step] = []
    flips: list[Flip] = []
    check_flips: list[Flip] = []
    proposed_counts: dict[str, int] = {v.value: 0 for v in VerdictState}
    for moment, one in zip(times, replayed, strict=True):
        checks = [p[0] for p in one.checks]
        verdict = one.verdict
        steps.append(
            Step(
                as_of=moment,
                verdict=verdict,
                inconclusive_since=one.inconclusive_since,
                checks=[
                    StepCheck(
                        suite=c.suite,
                        outcome=c.outcome,
                        observed=_observed(c),
                        outcomes=_outcomes(c),
                        reason=c.reason,
                        measured=c.measured,
                        shadow=c.shadow,
                    )
                    for c in checks
                ],
            )
        )
        if what_if:
            other = [p[1] or p[0] for p in one.checks]
            proposed = one.proposed
            assert proposed is not None
            proposed_counts[proposed.value] += 1
            if proposed is not verdict:
                flips.append(
                    Flip(as_of=moment, verdict=verdict, proposed=proposed, changes=_changes(checks, other))
                )
            elif any(a.outcome is not b.outcome for a, b in zip(checks, other, strict=True)):
                check_flips.append(
                    Flip(as_of=moment, verdict=verdict, proposed=proposed, changes=_changes(checks, other))
                )
    counts = {v.value: sum(1 for s in steps if s.verdict is v) for v in VerdictState}
    summaries = [
        _summary([one.checks[i][0] for one in replayed], times) for i in range(len(replayed[0].checks))
    ]
    return BacktestReport(
        phase=phase,
        since=since,
        until=until,
        step=step.total_seconds(),
        verdicts=counts,
        checks=summaries,
        steps=steps,
        proposed_verdicts=proposed_counts if what_if else None,
        flips=flips if what_if else None,
        check_flips=check_flips if what_if else None,
    )


def _changes(checks: list[CheckResult], other: list[CheckResult]) -> list[str]:
    """What changed in each check between the two judgements: outcome, value, thresholds."""
    found = []
    for now, then in zip(checks, other, strict=True):
        if now.outcome is then.outcome:
            continue
        for a, b in zip(now.expectations, then.expectations, strict=False):
            before = ", ".join(f"{t.name}={t.value}" for t in a.thresholds)
            after = ", ".join(f"{t.name}={t.value}" for t in b.thresholds)
            if a.outcome is not b.outcome:
                found.append(
                    f"{now.suite}: {a.column or a.type} observed "
                    f"{shown(a.observed_value, unit_of(a.column))}: "
                    f"{a.outcome.value} under {before or 'its kwargs'} → "
                    f"{b.outcome.value} under {after or 'its kwargs'}"
                )
        if not found:
            found.append(f"{now.suite}: {now.outcome.value} → {then.outcome.value}")
    return found


def _summary(results: list[CheckResult], times: list[datetime]) -> CheckSummary:
    first = results[0]
    failing = [r.outcome is Outcome.FAIL for r in results]
    longest, start, run, run_start = 0, None, 0, None
    for moment, bad in zip(times, failing, strict=True):
        if bad:
            run, run_start = run + 1, run_start or moment
            if run > longest:
                longest, start = run, run_start
        else:
            run, run_start = 0, None
    fail_times = [t for t, bad in zip(times, failing, strict=True) if bad]
    worst: tuple[float, Any, dict[str, str], datetime, str | None] | None = None
    for moment, result in zip(times, results, strict=True):
        for expectation in result.expectations:
            if expectation.outcome is not Outcome.FAIL:
                continue
            for group in expectation.failing_groups or []:
                value = observed_number(group.observed_value)
                if value is None:
                    continue
                side = next((t.bound for t in expectation.thresholds if t.bound), "max")
                score = value if side == "max" else -value
                if worst is None or score > worst[0]:
                    worst = (score, group.observed_value, group.group, moment, expectation.column)
    distributions = []
    for index, expectation in enumerate(first.expectations):
        values = [
            v
            for r in results
            if index < len(r.expectations)
            for v in [observed_number(r.expectations[index].observed_value)]
            if v is not None
        ]
        threshold = ", ".join(
            f"{'≤' if t.bound == 'max' else '≥' if t.bound == 'min' else t.name} "
            f"{bound(t.value, t.bound, unit_of(expectation.column))}"
            for t in expectation.thresholds
        )
        ordered = sorted(values)
        distributions.append(
            Distribution(
                column=expectation.column or expectation.type,
                expectation=expectation.type,
                threshold=threshold,
                bounds=[
                    v
                    for t in expectation.thresholds
                    if t.bound
                    for v in [observed_number(t.value)]
                    if v is not None
                ],
                steps=len(values),
                min=ordered[0] if ordered else None,
                p50=statistics.median(ordered) if ordered else None,
                p95=ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else None,
                max=ordered[-1] if ordered else None,
            )
        )
    return CheckSummary(
        suite=first.suite,
        role=first.role,
        passed=sum(r.outcome is Outcome.PASS for r in results),
        failed=sum(failing),
        inconclusive=sum(r.outcome is Outcome.INCONCLUSIVE for r in results),
        errored=sum(r.outcome is Outcome.ERROR for r in results),
        longest_failing_steps=longest,
        longest_failing_from=start,
        first_failing=fail_times[0] if fail_times else None,
        last_failing=fail_times[-1] if fail_times else None,
        worst_observed=worst[1] if worst else None,
        worst_group=worst[2] if worst else {},
        worst_as_of=worst[3] if worst else None,
        worst_column=worst[4] if worst else None,
        distributions=distributions,
        not_judged=next(
            (
                f"{r.outcome.value} at {utc_minute(t)}: {r.reason}"
                for t, r in zip(times, results, strict=True)
                if r.outcome in (Outcome.ERROR, Outcome.INCONCLUSIVE)
            ),
            None,
        ),
    )


def proposed_thresholds(project: Project, phase: str, path: Path) -> dict[str, ResolvedThreshold]:
    """``phase``'s thresholds resolved from another thresholds file, checked by the same rules
    as the project's own (every name used, every value fitting where it is used)."""
    import dataclasses

    from gatecheck.config import ThresholdsConfig, resolve_thresholds, threshold_problems
    from gatecheck.config.loading import _read_yaml
    from gatecheck.config.problems import parse

    if not path.is_file():
        raise ConfigError(f"--thresholds: {path} is not a file")
    problems: list[str] = []
    config = parse(str(path), ThresholdsConfig, _read_yaml(path, str(path)), problems)
    if config is not None:
        problems += threshold_problems(dataclasses.replace(project, thresholds=config))
    if problems or config is None:
        lines = [f"--thresholds {path}: {p}" for p in problems]
        raise ConfigError(lines[0] if lines else f"--thresholds: {path}: not a thresholds file", lines)
    gate = project.gate(phase)
    resolved = resolve_thresholds(config, gate.environment, phase)
    current = project.resolve_thresholds(phase)
    missing = sorted(set(current) - set(resolved))
    if missing:
        raise ConfigError(f"--thresholds: {path}: no value for {', '.join(missing)} (phase {phase})")
    return {name: value for name, value in resolved.items() if name in current}
