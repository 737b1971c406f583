"""The gate engine: evaluate one phase at one ``as_of`` into a :class:`Verdict`.

For each check the window is ``[as_of - settle - length, as_of - settle)``; the suite's
query runs in its source, Great Expectations judges the frame, and the outcomes combine
with precedence rollback > no-go > inconclusive > go. Nothing here raises for a source
problem: a failing source is an ``error`` check and an ``inconclusive`` gate.

Why ~1,130 lines: fetching a check and judging its answer share the shape of a check result,
for every kind of check (a suite's frame, a comparison, a reconciliation, an SLO, a probe).
The pure part — a check's outcome, waivers, approvals, soak coverage, the verdict — is
:mod:`gatecheck.evaluation.decide`, tested on plain records; this module gathers what it
needs (sources through the engine's pool, the ledger's records and trail).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal, TypeVar

import pandas as pd

from gatecheck import __version__
from gatecheck._values import redefined, timestamp
from gatecheck.config import (
    GateConfig,
    Project,
    ResolvedThreshold,
    SuiteConfig,
)
from gatecheck.durations import format_duration, parse_as_of
from gatecheck.errors import (
    ConfigError,
    GatecheckError,
    LedgerError,
    ValidationTimeout,
    did_you_mean,
)
from gatecheck.evaluation.carried import source_failed
from gatecheck.evaluation.decide import (
    ASSUMED_APPROVED,
    approval_of,
    assumptions_in,
    check_outcome,
    decide,
    soak_coverage,
    undecided_reason,
    waiting_on,
    waive,
)
from gatecheck.evaluation.overtime import (
    Earlier,
    accumulate,
    apply_deadline,
    earlier_outcomes,
    previous_since,
)
from gatecheck.evaluation.plan import CheckPlan, plan_checks, query_parameters
from gatecheck.evaluation.slo import SloContext
from gatecheck.evaluation.validation import Validator, judge_evidence, scalar, validate_frame
from gatecheck.ledger import MAX_CLOCK_SKEW, Ledger
from gatecheck.ledger.audit import (
    EVERY_PHASE,
    AuditEvent,
    approval_at,
    corrections_at,
    deployment_at,
    enforcement_at,
    invalidated_at,
    pin_at,
    waivers_at,
    withdrawn_text,
)
from gatecheck.results import (
    CheckResult,
    EvidenceResult,
    ExpectationResult,
    Outcome,
    Requirement,
    SideResult,
    SoakStatus,
    Verdict,
    VerdictState,
    Window,
    checks_failed,
    checks_passed,
    waived,
    with_kept_groups,
)
from gatecheck.sources import Source
from gatecheck.sources.base import MAX_ROWS  # a suite returns aggregates: more means raw rows

log = logging.getLogger(__name__)

#: Earlier evaluations lie strictly before this one's as_of (the ledger's times are whole
#: milliseconds).
BEFORE = timedelta(milliseconds=1)

#: Runs a blocking call (Great Expectations' validation) off the event loop; the engine's is
#: its own validation thread with a timeout.
JudgeIn = Callable[..., Awaitable[Any]]


T = TypeVar("T")


async def every(jobs: Iterable[Awaitable[T]]) -> list[T]:
    """The results of ``jobs``, run together, as :func:`asyncio.gather` gives them — but when
    one of them fails or the caller is stopped, the others are stopped and awaited to their end
    before that propagates. ``gather`` returns as soon as the first cancelled job ends, while
    the others are still ending: what they use (a :class:`SourcePool`'s sources) would be
    closed under them. A job already told to stop is not told twice: a second cancellation
    would cut its own ending short (``asyncio.wait_for`` then leaves its inner task running)."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            if not task.done() and not task.cancelling():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class SourcePool:
    """Opens each source of one environment on first use and closes them all at the end."""

    def __init__(self, project: Project, environment: str, source_factory: Callable[..., Source]) -> None:
        self.project = project
        self.environment = environment
        self.source_factory = source_factory
        self._sources: dict[str, Source | GatecheckError] = {}

    def get(self, name: str) -> Source:
        if name not in self._sources:
            config = self.project.config.environments[self.environment].sources[name]
            try:
                self._sources[name] = self.source_factory(name, config, self.project.root)
            except GatecheckError as exc:
                self._sources[name] = exc
        found = self._sources[name]
        if isinstance(found, GatecheckError):
            raise found
        return found

    async def aclose(self) -> None:
        for source in self._sources.values():
            if isinstance(source, Source):
                try:
                    await source.close()
                except Exception:  # closing must never hide the verdict
                    log.exception("closing source %s failed", source.name)
        self._sources.clear()


async def evaluate(
    project: Project,
    phase: str,
    as_of: datetime | None = None,
    assume_approved: Iterable[str] = (),
    assume_soaked: bool = False,
    ledger: Ledger | None = None,
    recorded_since: datetime | None = None,
    *,
    source_factory: Callable[..., Source],
    judge_in: JudgeIn,
    validator: Validator,
    timings: dict[tuple[str, str], float] | None = None,
    phase_since: datetime | None = None,
    release: str | None = None,
) -> Verdict:
    """Evaluate ``phase`` at ``as_of`` (default: now).

    ``ledger`` holds the recorded evaluations that ``requires`` and ``soak`` are judged on
    (the caller records this evaluation afterwards). ``assume_approved`` and
    ``assume_soaked`` are explicit, recorded overrides for bootstrapping (and the demo): they
    never hide a failing or inconclusive check. ``source_factory`` builds the sources (a test
    can hand in fakes) and ``judge_in`` runs Great Expectations off the event loop, on the
    engine's one validation thread with ``validator`` (GE is not thread-safe: its
    suite-parameter parser fails when two threads use it). Call it through
    :class:`gatecheck.evaluation.engine.Engine`, which owns all three. ``recorded_since``
    limits the records that ``requires`` and ``soak`` are judged on to those written since
    then (the demo judges only what its own run recorded). ``timings``, when given, receives
    how long each check took, by (suite, role): it is not part of the verdict, whose document
    stays the same however fast the sources answer. ``phase_since``: when the phase began, as
    a rollout controller's request names it (an SLO's consumption is counted from it; default:
    the phase's earliest record in the SLO's window). ``release``: the canary such a request
    names; a required approval must then be of that release.
    """
    gate = project.gate(phase)
    as_of = parse_as_of(None) if as_of is None else as_of.astimezone(UTC)
    now = datetime.now(UTC)
    if as_of > now + MAX_CLOCK_SKEW:
        raise ConfigError(
            f"--as-of {timestamp(as_of)} lies ahead of now ({timestamp(now)}) by more than the "
            f"{format_duration(MAX_CLOCK_SKEW)} of clock skew allowed: a verdict of the future would "
            "mask every later one"
        )
    approved = set(assume_approved)
    for name in sorted(approved):
        if name not in project.gates:
            raise ConfigError(
                f"--assume-approved: unknown phase {name!r}{did_you_mean(name, project.gates)} "
                f"(known phases: {project.known_phases()})"
            )
    thresholds = project.resolve_thresholds(phase)
    # The decisions on record first: an SLO check leaves out the corrections recorded by as_of.
    trail, unreadable = await _trail(ledger, [phase, *gate.requires, EVERY_PHASE])
    plans = plan_checks(project, gate, as_of)
    context = await _slo_context(plans, trail, unreadable, ledger, phase, as_of, phase_since)
    pool = SourcePool(project, gate.environment, source_factory)
    try:
        jobs = [
            _timed(
                plan,
                functools.partial(_run_check, plan, as_of, thresholds, pool, judge_in, validator, context),
                timings,
            )
            for plan in plans
        ]
        checks = await every(jobs)
    finally:
        await pool.aclose()
    # Over time: each check's accumulation rules over the phase's earlier evaluations, then
    # whether it is enforced (a shadow check turned on by a recorded decision is).
    checks = await _from_history(ledger, phase, plans, checks, trail, as_of, recorded_since)
    digest = project.gate_digest(phase)
    invalidated = invalidated_at(trail, phase, as_of)
    deployed = deployment_at(trail, phase, as_of)  # the release its evidence must be of
    earlier = await _earlier(
        ledger, phase, plans, as_of, recorded_since, digest, invalidated, deployed.at if deployed else None
    )
    checks = [
        accumulate(check, plan.fail_after, plan.pass_after, earlier.get((plan.suite.name, plan.role), []))
        for plan, check in zip(plans, checks, strict=True)
    ]
    checks = [_enforced(plan, check, trail, phase, as_of) for plan, check in zip(plans, checks, strict=True)]
    # A person's waivers: a definite failure they cover stays `fail` and stops blocking.
    waivers = waivers_at(trail, phase, as_of)
    checks = [waive(check, waivers) for check in checks]
    approvals = trail if gate.approval_satisfies_requires else None
    requires = [
        await _requirement(
            name,
            approved,
            ledger,
            as_of,
            recorded_since,
            approvals,
            project.gate_digest(name) if name in project.gates else "",
            trail,
            project,
        )
        for name in gate.requires
    ]
    revoked = {
        e.waiver
        for e in trail
        if e.kind == "waiver-revoked" and e.phase == phase and e.at <= as_of and e.waiver is not None
    }
    soak = await _soak_status(
        gate, assume_soaked, ledger, as_of, checks, recorded_since, digest, invalidated, revoked, deployed
    )
    approval = approval_of(gate, trail, unreadable, ledger, as_of, release, deployed)
    verdict, reasons = decide(checks, requires, soak, approval)
    deadline = None
    if gate.deadline is not None and verdict is VerdictState.INCONCLUSIVE:
        since = await _inconclusive_since(ledger, phase, as_of, recorded_since)
        verdict, reasons, deadline = apply_deadline(gate.deadline, verdict, reasons, as_of, since)
    return Verdict(
        deadline=deadline,
        approval=approval,
        phase=phase,
        environment=gate.environment,
        description=gate.description,
        as_of=as_of,
        verdict=verdict,
        reasons=reasons,
        checks=[with_kept_groups(check) for check in checks],  # judged on every group, listing 100
        requires=requires,
        soak=soak,
        config_hash=project.config_hash,
        gate_digest=digest,
        gatecheck_version=__version__,
    )


async def _earlier(
    ledger: Ledger | None,
    phase: str,
    plans: list[CheckPlan],
    as_of: datetime,
    recorded_since: datetime | None,
    digest: str = "",
    invalidated: Collection[datetime] = (),
    deployed_at: datetime | None = None,
) -> dict[tuple[str, str], list[Earlier] | str]:
    """For each check with accumulation rules: its measured outcomes in the phase's earlier
    evaluations (as_of before this one's, oldest first; a pass under another gate digest than
    ``digest``, or before the release ``deployed_at``, earns no run), or why they cannot be read."""
    wanted = [plan for plan in plans if plan.lookback > 1]
    if not wanted:
        return {}
    if ledger is None:
        problem = "no history ledger configured (history.url) to count earlier evaluations in"
        return {(plan.suite.name, plan.role): problem for plan in wanted}
    try:
        newest = max(plan.lookback for plan in wanted) - 1
        records = await asyncio.to_thread(
            partial(
                ledger.history,
                phase,
                until=as_of - BEFORE,
                newest=newest,
                recorded_since=recorded_since,
                ahead=False,
            )
        )
    except GatecheckError as exc:
        return {(plan.suite.name, plan.role): f"cannot read the history ledger: {exc}" for plan in wanted}
    documents = [record.document for record in records]
    return {
        (plan.suite.name, plan.role): earlier_outcomes(
            documents, plan.suite.name, plan.role, digest, invalidated, deployed_at
        )[-(plan.lookback - 1) :]
        for plan in wanted
    }


#: At most this many earlier records are read for one bound from history.
MAX_HISTORY = 20_000


async def _from_history(
    ledger: Ledger | None,
    phase: str,
    plans: list[CheckPlan],
    checks: list[CheckResult],
    trail: list[AuditEvent],
    as_of: datetime,
    recorded_since: datetime | None,
) -> list[CheckResult]:
    """Each check with a ``baseline`` or ``learned`` bound judged against the phase's earlier
    records (invalidated ones, ROLLBACK stretches, waived failures and SLO corrections left
    out); without a readable ledger such a check cannot pass."""
    from gatecheck.evaluation.history_bounds import judge_history, past_of_documents

    wanted = [k for k, plan in enumerate(plans) if plan.tracked_column is not None and checks[k].tracked]
    if not wanted:
        return checks
    found = list(checks)
    invalidated = invalidated_at(trail, phase, as_of)
    stretches = [(c.start, c.end) for found_ in corrections_at(trail, as_of).values() for c in found_]
    reads: dict[tuple[datetime | None, int], list[dict[str, Any]]] = {}  # checks asking alike read once
    for k in wanted:
        plan, check = plans[k], checks[k]
        problem = None
        if ledger is None:
            problem = "no history ledger configured (history.url) to learn a bound from"
        else:
            try:
                documents, pinned = await asyncio.to_thread(
                    _history_of, ledger, phase, plan, trail, as_of, recorded_since, reads
                )
            except GatecheckError as exc:
                problem = f"cannot read the history ledger: {exc}"
        if problem is not None:
            if check.outcome is Outcome.PASS:
                found[k] = check.model_copy(update={"outcome": Outcome.INCONCLUSIVE, "reason": problem})
            continue
        excluded = plan.learned.exclude if plan.learned is not None else []
        past = past_of_documents(
            documents, plan.suite.name, plan.role, invalidated, stretches, excluded, plan.measure
        )
        pin = None
        if pinned is not None:
            event, document = pinned
            pinned_past = past_of_documents(
                [document], plan.suite.name, plan.role, invalidated, measure=plan.measure
            )
            if pinned_past:
                pin = (pinned_past[0], f"{event.by} at {timestamp(event.at)}: {event.reason}")
        found[k] = judge_history(check, plan, past, as_of, pin)
    return found


def _history_of(
    ledger: Ledger,
    phase: str,
    plan: CheckPlan,
    trail: list[AuditEvent],
    as_of: datetime,
    recorded_since: datetime | None,
    reads: dict[tuple[datetime | None, int], list[dict[str, Any]]],
) -> tuple[list[dict[str, Any]], tuple[AuditEvent, dict[str, Any]] | None]:
    """The earlier records a bound reads (documents, oldest first) and the pinned one;
    ``reads`` keeps what this evaluation read already, by (since, newest)."""
    if plan.learned is not None:
        key: tuple[datetime | None, int] = (
            as_of - plan.learned.training - plan.window.length - plan.window.settle,
            MAX_HISTORY,
        )
    else:
        assert plan.baseline is not None
        key = (None, min(plan.baseline.last * 10, MAX_HISTORY))
    if key not in reads:
        reads[key] = ledger.tracked_history(
            phase, since=key[0], until=as_of - BEFORE, newest=key[1], recorded_since=recorded_since
        )
    documents = reads[key]
    pinned = None
    event = pin_at(trail, phase, plan.suite.name, as_of) if plan.baseline is not None else None
    if event is not None:
        moment = datetime.fromisoformat(event.group["record"])
        found = ledger.history(phase, since=moment, until=moment, newest=1)
        if found:
            pinned = (event, found[-1].document)
    return documents, pinned


async def _inconclusive_since(
    ledger: Ledger | None, phase: str, as_of: datetime, recorded_since: datetime | None
) -> datetime | None:
    """When the phase became inconclusive, as its newest earlier record says (None: now)."""
    if ledger is None:
        return None
    try:
        records = await asyncio.to_thread(
            partial(
                ledger.history,
                phase,
                until=as_of - BEFORE,
                newest=1,
                recorded_since=recorded_since,
                ahead=False,
            )
        )
    except GatecheckError:
        return None  # the clock starts now: a deadline never passes on an unreadable ledger
    return previous_since(records[-1].document if records else None)


def _enforced(
    plan: CheckPlan, check: CheckResult, trail: list[AuditEvent], phase: str, as_of: datetime
) -> CheckResult:
    """A shadow check (``enforce: false``) stays one until a recorded decision enforces it."""
    if plan.enforce:
        return check
    decision = enforcement_at(trail, phase, plan.suite.name, as_of)
    if decision is None:
        return check.model_copy(update={"shadow": True})
    return check.model_copy(
        update={"enforced_by": f"{decision.by} at {timestamp(decision.at)}: {decision.reason}"}
    )


async def _trail(ledger: Ledger | None, phases: list[str]) -> tuple[list[AuditEvent], str | None]:
    """The decisions on record for ``phases`` (waivers, revocations, approvals), or why they
    cannot be read (then nothing is waived and a required approval is missing)."""
    if ledger is None:
        return [], None
    try:
        events = await asyncio.to_thread(
            ledger.audit,
            phases,
            None,
            [
                "waiver-created",
                "waiver-revoked",
                "approved",
                "slo-corrected",
                "check-enforced",
                "baseline-pinned",
                "record-invalidated",
                "deployed",
            ],
        )
    except GatecheckError as exc:
        return [], f"cannot read the audit trail: {exc}"
    return events, None


@dataclass
class Look:
    """What one look up the chains has judged at one moment: each requirement (dependent,
    phase) once, and for each phase whose GO no longer holds because of something further up,
    the way up to it and what it is (a look over every phase judges each link once, and a
    reason names the phase where the chain breaks, not every phase between)."""

    judged: dict[tuple[str, str], Requirement] = field(default_factory=dict)
    # an unmet requirement's reason → the way up from its phase to where the chain breaks, why
    broken: dict[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)
    # an unmet requirement's reason → when the NO-GO or ROLLBACK it comes to was judged
    failed_at: dict[str, datetime] = field(default_factory=dict)


#: How an unmet requirement's reason ends when a newer GO would meet it.
_NEWER_GO = ": it needs a newer GO"

#: How a requirement the ledger could not answer begins (requirement_at raises on it).
_UNREADABLE = "cannot read the history ledger: "


async def _requirement(
    phase: str,
    approved: set[str],
    ledger: Ledger | None,
    as_of: datetime,
    recorded_since: datetime | None = None,
    approvals: list[AuditEvent] | None = None,
    digest: str = "",
    trail: list[AuditEvent] | None = None,
    project: Project | None = None,
    above: frozenset[str] = frozenset(),
    memo: Look | None = None,
) -> Requirement:
    """Whether ``phase`` has a recorded GO (or a stand-in for one). A GO judged by another
    definition of ``phase``'s gate than ``digest`` still counts, and its reason says so: the
    gate was changed after that GO, which a reader deciding a promotion should know.

    With ``project``, a recorded GO also needs what it required to hold still, judged now as
    an evaluation of ``phase`` would judge it (:func:`requirement_at`, up the chain): a NO-GO
    recorded since two phases up makes the phase between INCONCLUSIVE, not a decision, and its
    older GO must not carry the promotion past it. ``above``: the phases whose requirement
    this is judged for, up to here (each at most once)."""
    if phase in approved:
        return Requirement(phase=phase, satisfied=True, reason=ASSUMED_APPROVED)
    recorded = approval_at(approvals, phase, as_of) if approvals else None
    if recorded is not None:  # the gate lets a person's approval stand in for a recorded GO
        approval = f"approved by {recorded.by} at {timestamp(recorded.at)}: {recorded.reason}"
        if ledger is None:
            return Requirement(phase=phase, satisfied=True, reason=approval)
        # ... as a GO would: a NO-GO or ROLLBACK judged after it stands over it
        try:
            later = await asyncio.to_thread(ledger.last_decision, phase, as_of, recorded_since)
        except GatecheckError as exc:
            return Requirement(phase=phase, satisfied=False, reason=f"{_UNREADABLE}{exc}")
        if later is not None and later.as_of > recorded.at and later.verdict is not VerdictState.GO:
            fell = (
                f"the latest decision of {phase} is {later.verdict.value.upper()} as of "
                f"{timestamp(later.as_of)}, after its approval by {recorded.by} at {timestamp(recorded.at)}: "
                "it needs a newer GO or approval"
            )
            if memo is not None:
                memo.failed_at[fell] = later.as_of
            return Requirement(phase=phase, satisfied=False, reason=fell)
        if later is None or later.as_of <= recorded.at:
            # ... and a NO-GO or ROLLBACK up its chain judged after it too (one before it, the
            # person approving saw)
            if project is not None and phase in project.gates:
                memo = memo if memo is not None else Look()
                try:
                    after = await _failed_since(
                        project, phase, recorded.at, ledger, as_of, recorded_since, above, memo
                    )
                except GatecheckError as exc:
                    said = str(exc).removeprefix(_UNREADABLE)
                    return Requirement(phase=phase, satisfied=False, reason=f"{_UNREADABLE}{said}")
                if after is not None:
                    (said, way, why), failed = after
                    fell = (
                        f"the approval of {phase} by {recorded.by} at {timestamp(recorded.at)} no longer "
                        f"stands: {said}, judged after it: it needs a newer GO or approval"
                    )
                    memo.failed_at[fell] = failed
                    memo.broken[fell] = ((phase, *way), why)  # what a phase below says of it
                    return Requirement(phase=phase, satisfied=False, reason=fell)
            return Requirement(phase=phase, satisfied=True, reason=approval)
        # a GO judged after the approval: judged as a GO (up its chain too)
    if ledger is None:
        return Requirement(
            phase=phase,
            satisfied=False,
            reason=f"no history ledger configured (history.url), so no recorded GO of {phase} can be found",
        )
    try:
        record = await asyncio.to_thread(ledger.last_decision, phase, as_of, recorded_since)
    except GatecheckError as exc:
        return Requirement(phase=phase, satisfied=False, reason=f"{_UNREADABLE}{exc}")
    if record is None:
        try:
            reason = await asyncio.to_thread(_undecided, ledger, phase, as_of, recorded_since)
        except GatecheckError:
            reason = None  # what the record says is extra: the requirement is unmet either way
        return Requirement(phase=phase, satisfied=False, reason=reason or f"no recorded GO of {phase}")
    if record.verdict is VerdictState.GO:
        reason = f"GO of {phase} recorded as of {timestamp(record.as_of)}"
        # a person took it back since: the evaluation invalidated, a waiver it passed under
        # revoked, the evidence it was judged on taken back — as the pages and `status` say it
        withdrawn = withdrawn_text(trail, phase, record.to_verdict(), as_of) if trail else None
        if withdrawn is not None:
            return Requirement(
                phase=phase,
                satisfied=False,
                reason=(
                    f"the latest GO of {phase}, as of {timestamp(record.as_of)}, no longer holds: "
                    f"{withdrawn}: it needs a newer GO"
                ),
            )
        assumed = assumptions_in(record.document)
        if assumed:  # an override is for the evaluation it was given to, never passed down the chain
            return Requirement(
                phase=phase,
                satisfied=False,
                reason=(
                    f"the latest GO of {phase}, as of {timestamp(record.as_of)}, rests on "
                    f"{' and '.join(assumed)}, not on evidence: it needs a GO earned without "
                    f"them, or --assume-approved {phase}"
                ),
            )
        if project is not None and phase in project.gates:
            memo = memo if memo is not None else Look()
            try:
                ended = await _requirements_ended(
                    project, phase, record.document, ledger, as_of, recorded_since, above, memo
                )
            except GatecheckError as exc:  # up the chain: the ledger failed it (one prefix)
                said = str(exc).removeprefix(_UNREADABLE)
                return Requirement(phase=phase, satisfied=False, reason=f"{_UNREADABLE}{said}")
            if ended is not None:
                said, way, why = ended
                held = f"the latest GO of {phase}, as of {timestamp(record.as_of)}, no longer holds"
                reason = f"{held}: {said}{_NEWER_GO}"
                memo.broken[reason] = ((phase, *way), why)  # what a phase below says of it
                if why in memo.failed_at:
                    memo.failed_at[reason] = memo.failed_at[why]
                return Requirement(phase=phase, satisfied=False, reason=reason)
        judged_by = record.document.get("gate_digest") or ""
        if redefined(judged_by, digest):
            reason += (
                ", judged by another definition of its gate (its checks, suites or thresholds changed since)"
            )
        return Requirement(phase=phase, satisfied=True, reason=reason)
    reason = (
        f"the latest decision of {phase} is {record.verdict.value.upper()} as of "
        f"{timestamp(record.as_of)}{_NEWER_GO}"
    )
    if memo is not None:
        memo.failed_at[reason] = record.as_of
    return Requirement(phase=phase, satisfied=False, reason=reason)


async def requirement_at(
    project: Project,
    dependent: str,
    phase: str,
    ledger: Ledger,
    as_of: datetime,
    recorded_since: datetime | None,
    above: frozenset[str] = frozenset(),
    memo: Look | None = None,
) -> Requirement:
    """``dependent``'s requirement of ``phase`` judged at ``as_of`` as an evaluation of it would
    judge it then (without ``--assume-approved``): whether a GO of ``dependent`` judged earlier
    still rests on what it required (the service's look, ``max_age``), up the chain. ``memo``:
    the requirements already judged at this ``as_of`` (a look over every phase judges each
    link of the chain once, not once per phase below it). A ledger or trail that cannot be read
    is no answer: LedgerError."""
    if memo is not None and (dependent, phase) in memo.judged:
        return memo.judged[(dependent, phase)]
    trail, unreadable = await _trail(ledger, [phase, EVERY_PHASE])
    if unreadable is not None:
        raise LedgerError(unreadable)
    approvals = trail if project.gates[dependent].approval_satisfies_requires else None
    digest = project.gate_digest(phase) if phase in project.gates else ""
    found = await _requirement(
        phase,
        set(),
        ledger,
        as_of,
        recorded_since,
        approvals,
        digest,
        trail,
        project,
        above | {dependent},
        memo,
    )
    if not found.satisfied and found.reason.startswith(_UNREADABLE):
        raise LedgerError(found.reason)  # (_requirement's words for a ledger that failed it)
    if memo is not None:
        memo.judged[(dependent, phase)] = found
    return found


async def _requirements_ended(
    project: Project,
    phase: str,
    document: Mapping[str, Any],
    ledger: Ledger,
    as_of: datetime,
    recorded_since: datetime | None,
    above: frozenset[str],
    memo: Look,
) -> tuple[str, tuple[str, ...], str] | None:
    """Why a recorded GO of ``phase`` (its ``document``) no longer rests on what it required —
    a requirement it met, judged again at ``as_of`` (:func:`requirement_at`), unmet now: what
    to say, the way up from the requirement to where the chain breaks and why it breaks there
    — or None. An ``--assume-approved`` is left alone (it was for that one evaluation); a
    phase already judged further down this chain (``above``) is not judged again."""
    for met in document.get("requires") or []:
        required = met.get("phase") if isinstance(met, Mapping) else None
        if not isinstance(required, str) or not met.get("satisfied") or met.get("reason") == ASSUMED_APPROVED:
            continue
        if required in above or required == phase:
            continue
        found = await requirement_at(  # a ledger that fails it raises: no answer
            project, phase, required, ledger, as_of, recorded_since, above | {phase}, memo
        )
        if not found.satisfied:
            return _broken(memo, phase, required, found)
    return None


def _broken(memo: Look, phase: str, required: str, found: Requirement) -> tuple[str, tuple[str, ...], str]:
    """``phase``'s unmet requirement of ``required``, said from where the chain breaks — at
    this requirement, or further up (the way there) — with that way and why it breaks."""
    way, why = memo.broken.get(found.reason, ((required,), found.reason))
    if len(way) == 1:
        return f"its requirement of {required} no longer holds ({why})", way, why
    return f"up its chain ({' → '.join((phase, *way))}), {why.removesuffix(_NEWER_GO)}", way, why


async def _failed_since(
    project: Project,
    phase: str,
    since: datetime,
    ledger: Ledger,
    as_of: datetime,
    recorded_since: datetime | None,
    above: frozenset[str],
    memo: Look,
) -> tuple[tuple[str, tuple[str, ...], str], datetime] | None:
    """A requirement of ``phase``'s gate unmet at ``as_of`` because of a NO-GO or ROLLBACK
    judged after ``since`` (up the chain): as :func:`_broken` says it, and when it was judged
    — or None. A requirement unmet for want of a GO (nothing decided) is not one: an approval
    stands in for it, as approvals are for."""
    for required in project.gates[phase].requires:
        if required in above or required == phase:
            continue
        found = await requirement_at(
            project, phase, required, ledger, as_of, recorded_since, above | {phase}, memo
        )
        failed = memo.failed_at.get(found.reason)
        if found.satisfied or failed is None or failed <= since:
            continue
        return _broken(memo, phase, required, found), failed
    return None


def _undecided(ledger: Ledger, phase: str, as_of: datetime, recorded_since: datetime | None) -> str | None:
    """Why ``phase``, which has no decision recorded by ``as_of``, has none: its latest record
    (an inconclusive one) and where the chain it waits on stops, up the ``requires`` by their
    latest records (each phase at most once); None when nothing of it is recorded."""

    def latest(name: str) -> Verdict | None:
        found = ledger.latest(name, as_of, recorded_since)
        try:
            return found.to_verdict() if found else None
        except ValueError:  # a document this version cannot read: it adds nothing to the reason
            return None

    first = latest(phase)
    if first is None:
        return None
    root, seen = first, {phase}
    while (upstream := waiting_on(root)) is not None and upstream not in seen:
        seen.add(upstream)
        found = latest(upstream)
        if found is None or found.verdict is VerdictState.GO:  # a GO since: the wait is not there
            break
        root = found
    return undecided_reason(phase, first, root)


async def _slo_context(
    plans: list[CheckPlan],
    trail: list[AuditEvent],
    unreadable: str | None,
    ledger: Ledger | None,
    phase: str,
    as_of: datetime,
    named: datetime | None,
) -> SloContext | None:
    """What an SLO check needs from the ledger: the corrections recorded by ``as_of`` and
    when this phase began — ``named`` by a rollout controller's request, else its earliest
    record within the longest SLO window."""
    longest = max((p.window.length for p in plans if p.suite.slo is not None), default=None)
    if longest is None:
        return None
    since = named if named is not None and named < as_of else None
    if since is None and ledger is not None:
        try:
            found = await asyncio.to_thread(ledger.timeline, phase, as_of - longest, as_of)
            since = found[0][0] if found else None
        except GatecheckError:
            since = None  # said as "not known" in the findings; the budget itself is unaffected
    return SloContext(corrections_at(trail, as_of), since, unreadable)


async def _soak_status(
    gate: GateConfig,
    assume_soaked: bool,
    ledger: Ledger | None,
    as_of: datetime,
    checks: list[CheckResult],
    recorded_since: datetime | None = None,
    digest: str = "",
    invalidated: Collection[datetime] = (),
    revoked: Collection[str] = (),
    deployed: AuditEvent | None = None,
) -> SoakStatus | None:
    if gate.soak is None:
        return None
    soak = gate.soak
    base: dict[str, Any] = {"duration": soak.duration, "max_gap": soak.max_gap}
    if assume_soaked:
        return SoakStatus(
            **base,
            covered=True,
            assumed=True,
            reason="assumed covered (--assume-soaked); no recorded evaluations were checked",
        )
    if ledger is None:
        return SoakStatus(
            **base,
            covered=False,
            reason=(
                f"no history ledger configured (history.url): 0s of {format_duration(soak.duration)} covered"
            ),
        )
    try:
        # Stored facts per record (passed, failed): one indexed query, no document parsed.
        points = await asyncio.to_thread(
            ledger.soak_points, gate.phase, as_of - soak.duration - soak.max_gap, as_of, recorded_since
        )
    except GatecheckError as exc:
        return SoakStatus(**base, covered=False, reason=f"cannot read the history ledger: {exc}")
    current = Verdict.model_construct(checks=checks)
    # The evaluation itself counts as of its own as_of (a reproduction of the past judges as
    # it would have then); the recorded ones only if they were evaluated at their time.
    points.append((as_of, checks_passed(current), checks_failed(current), waived(current), True, digest))
    return soak_coverage(points, as_of, soak.duration, soak.max_gap, digest, invalidated, revoked, deployed)


async def _timed(
    plan: CheckPlan, job: Callable[[], Awaitable[CheckResult]], timings: dict[tuple[str, str], float] | None
) -> CheckResult:
    """``job()`` awaited, its time kept in ``timings``. The job's coroutine is made here, not by
    the caller: an evaluation stopped before this task first ran (SIGTERM) would otherwise leave
    it never awaited, and Python warns of that on stderr as it is collected."""
    started = time.perf_counter()
    try:
        return await job()
    finally:
        if timings is not None:
            timings[(plan.suite.name, plan.role)] = time.perf_counter() - started


async def _run_check(
    plan: CheckPlan,
    as_of: datetime,
    thresholds: Mapping[str, ResolvedThreshold],
    pool: SourcePool,
    judge_in: JudgeIn,
    validator: Validator | None = None,
    context: SloContext | None = None,
) -> CheckResult:
    from gatecheck.evaluation.probe import is_probe, synthetic

    fetched = await fetch(plan, as_of, thresholds, pool, context)
    if isinstance(fetched, CheckResult):
        return synthetic(fetched) if is_probe(plan.suite) else fetched
    result = with_tracked(plan, fetched, await judge_fetched(plan, fetched, thresholds, judge_in, validator))
    return synthetic(result) if is_probe(plan.suite) else result


def with_tracked(plan: CheckPlan, frame: pd.DataFrame, result: CheckResult) -> CheckResult:
    """``result`` with the values of the column its bound from history judges, kept in the
    record (an error naming the key when the answer has no such column or no numbers)."""
    column = plan.tracked_column
    if column is None or result.outcome is Outcome.ERROR:
        return result
    from gatecheck.evaluation.history_bounds import tracked_values

    found = tracked_values(plan.suite, frame, column)
    if isinstance(found, str):
        key = "baseline" if plan.baseline is not None else "learned"
        return result.model_copy(
            update={"outcome": Outcome.ERROR, "reason": f"{plan.where}.{key}.column: {found}"}
        )
    return result.model_copy(update={"tracked": found.model_copy(update={"measure": plan.measure})})


def check_base(plan: CheckPlan) -> dict[str, Any]:
    """The fields every result of ``plan``'s check has, whatever its outcome."""
    suite = plan.suite
    return {
        "suite": suite.name,
        "description": suite.description,
        "source": suite.source_label,
        "role": plan.role,
        "window": plan.window,
    }


async def fetch(
    plan: CheckPlan,
    as_of: datetime,
    thresholds: Mapping[str, ResolvedThreshold],
    pool: SourcePool,
    context: SloContext | None = None,
) -> pd.DataFrame | CheckResult:
    """The check's frame from its source, or the ``error`` result saying why there is none.
    A comparison asks both sides at once (same window and as_of) and joins their answers;
    a side that cannot answer makes the check an error naming that side. ``context``: what
    an SLO check reads from the ledger (none: no corrections, the phase's start unknown)."""
    suite = plan.suite
    base = check_base(plan)
    from gatecheck.evaluation.probe import fetch_probe, is_probe

    if is_probe(suite):
        return await fetch_probe(suite, as_of, pool, base)
    if suite.slo is not None:
        from gatecheck.evaluation.slo import fetch_slo

        corrections = context.corrections.get(suite.name, []) if context is not None else []
        since = context.phase_since if context is not None else None
        return await fetch_slo(suite, plan.window, as_of, thresholds, pool, base, corrections, since)
    if suite.reconcile is not None:
        from gatecheck.evaluation.reconcile_check import fetch_reconciled

        return await fetch_reconciled(suite, plan.window, as_of, thresholds, pool, base)
    if suite.compare is None:
        return await _fetch_one(suite, plan.window, as_of, thresholds, pool, base)
    from gatecheck.evaluation.compare import compare_frame

    names = suite.compare.names
    found = await every(
        _fetch_one(unit, plan.window, as_of, thresholds, pool, base) for _, unit in suite.units()
    )
    sides = [
        SideResult(
            side=name,
            source=unit.source,
            source_available=one.source_available if isinstance(one, CheckResult) else True,
        )
        for name, (_, unit), one in zip(names, suite.units(), found, strict=True)
    ]
    failed = [(name, one) for name, one in zip(names, found, strict=True) if isinstance(one, CheckResult)]
    if failed:
        availability = [one.source_available for _, one in failed]
        return CheckResult(
            **base,
            outcome=Outcome.ERROR,
            source_available=False if False in availability else (None if None in availability else True),
            reason=(
                failed[0][1].reason  # both sides alike (one source down): said once
                if len(failed) == len(names) and len({one.reason for _, one in failed}) == 1
                else "; ".join(f"side {name}: {one.reason}" for name, one in failed)
            ),
            sides=sides,
        )
    try:
        return compare_frame(suite.compare, dict(zip(names, found, strict=True)))  # type: ignore[arg-type]
    except ValueError as exc:
        return CheckResult(
            **base, outcome=Outcome.ERROR, source_available=True, reason=f"comparison: {exc}", sides=sides
        )


async def _fetch_one(
    suite: SuiteConfig,
    window: Window,
    as_of: datetime,
    thresholds: Mapping[str, ResolvedThreshold],
    pool: SourcePool,
    base: dict[str, Any],
) -> pd.DataFrame | CheckResult:
    """One query's frame (a suite's, or one side's of a comparison), or the error."""
    try:
        source = pool.get(suite.source)
        parameters = query_parameters(suite, window, as_of, thresholds)
        frame: pd.DataFrame = await source.query(suite.query, parameters)
        return frame
    except GatecheckError as exc:
        return source_failed(exc, suite.source, base)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a check must never take the evaluation down
        log.exception("check %s: unexpected error querying %s", suite.name, suite.source)
        return CheckResult(
            **base, outcome=Outcome.ERROR, reason=f"internal error: {type(exc).__name__}: {exc}"
        )


async def judge_fetched(
    plan: CheckPlan,
    frame: pd.DataFrame,
    thresholds: Mapping[str, ResolvedThreshold],
    judge_in: JudgeIn,
    validator: Validator | None = None,
) -> CheckResult:
    """Judge a fetched frame (Great Expectations on the engine's validation thread)."""
    base = {**check_base(plan), "source_available": True}
    try:
        # Great Expectations is CPU work: off the event loop (the service's API and other
        # phases stay responsive).
        result: CheckResult = await judge_in(judge, plan.suite, frame, thresholds, base, validator)
        return result
    except ValidationTimeout as exc:
        return CheckResult(**base, outcome=Outcome.ERROR, reason=str(exc))
    except Exception as exc:
        log.exception("check %s: unexpected error judging the result", plan.suite.name)
        return CheckResult(
            **base, outcome=Outcome.ERROR, reason=f"internal error: {type(exc).__name__}: {exc}"
        )


def judge(
    suite: SuiteConfig,
    frame: pd.DataFrame,
    thresholds: Mapping[str, ResolvedThreshold],
    base: dict[str, Any],
    validator: Validator | None = None,
    expectations: list[ExpectationResult] | None = None,
    early: CheckResult | EvidenceResult | Literal["unknown"] | None = "unknown",
) -> CheckResult:
    """Turn one query result into a CheckResult (evidence first, then expectations);
    ``expectations``: the frame's results already validated (the backtest validates many
    frames at once), else Great Expectations runs now; ``early``: the frame's ``triage``
    when the caller already has it."""
    if early == "unknown":
        early = triage(suite, frame, thresholds, base)
    if isinstance(early, CheckResult):
        return early
    if expectations is None:
        expectations = validate_frame(suite, frame, thresholds, validator)
    sides: list[SideResult] = []
    if suite.compare is not None:
        expectations, sides = _compared(suite, frame, expectations)
    outcome, reason = check_outcome(expectations, early)
    reconciliation = None
    if suite.reconcile is not None:
        from gatecheck.evaluation.reconcile_check import findings_of, judged

        reconciliation = findings_of(frame)
        if reconciliation is not None:
            outcome, reason, sides = judged(suite, reconciliation, outcome, reason)
    slo = None
    if suite.slo is not None:
        from gatecheck.evaluation import slo as slo_check

        slo = slo_check.findings_of(frame)
        if slo is not None:
            outcome, reason = slo_check.judged(slo, outcome, reason)
    summary = None
    if suite.compare is not None and suite.compare.test != "difference" and "summary" in frame.columns:
        # the statistical test in one sentence: "canary p95 … vs baseline …, higher, p = …"
        found = frame["summary"].iloc[0] if len(frame) == 1 else None
        summary = found if isinstance(found, str) and found else None
        if summary is not None and reason is not None:
            reason = f"{reason} — {summary}"
    return CheckResult(
        **base,
        rows=len(frame),
        outcome=outcome,
        evidence=early,
        expectations=expectations,
        reason=reason,
        sides=sides,
        comparison=summary,
        reconciliation=reconciliation,
        slo=slo,
    )


def _compared(
    suite: SuiteConfig, frame: pd.DataFrame, expectations: list[ExpectationResult]
) -> tuple[list[ExpectationResult], list[SideResult]]:
    """A comparison's sides (source, headline numbers) and, on each failing group, both
    sides' values and their difference (looked up in the frame by the group's labels)."""
    from gatecheck.evaluation.compare import side_values
    from gatecheck.evaluation.validation import group_label

    config = suite.compare
    assert config is not None
    totals = side_values(config, frame)
    sides = [
        SideResult(side=name, source=unit.source, source_available=True, values=totals[name])
        for name, (_, unit) in zip(config.names, suite.units(), strict=True)
    ]
    if config.test != "difference":
        return expectations, sides
    shown = [f"{name}_{v}" for v in config.values for name in config.names]
    shown += [f"{v}_diff" for v in config.values]
    shown = [c for c in shown if c in frame.columns]
    enriched = []
    for expectation in expectations:
        if not expectation.failing_groups:
            enriched.append(expectation)
            continue
        groups = []
        for failing in expectation.failing_groups:
            keys = list(failing.group)
            match = frame
            for key in keys:
                if key in frame.columns:
                    match = match[match[key].map(group_label) == failing.group[key]]
            if len(match) == 1:
                row = match.iloc[0]
                failing = failing.model_copy(update={"values": {c: scalar(row[c]) for c in shown}})
            groups.append(failing)
        enriched.append(expectation.model_copy(update={"failing_groups": groups}))
    return enriched, sides


def triage(
    suite: SuiteConfig, frame: pd.DataFrame, thresholds: Mapping[str, ResolvedThreshold], base: dict[str, Any]
) -> CheckResult | EvidenceResult | None:
    """What is decided before any expectation runs: the result itself when the frame cannot
    be judged (too many rows, a duplicated column, no rows, no evidence column), else the
    evidence (None when the suite sets no minimum)."""
    rows = len(frame)
    if rows > MAX_ROWS:
        return CheckResult(
            **base,
            rows=rows,
            outcome=Outcome.ERROR,
            reason=f"query returned {rows} rows; a suite must return aggregates (at most {MAX_ROWS})",
        )
    columns = frame.columns
    duplicated = [] if columns.is_unique else sorted({str(c) for c in columns[columns.duplicated()]})
    if duplicated:
        return CheckResult(
            **base,
            rows=rows,
            outcome=Outcome.ERROR,
            reason=f"query returned column(s) {', '.join(map(repr, duplicated))} more than once",
        )
    if rows == 0:
        return CheckResult(
            **base,
            rows=0,
            outcome=Outcome.INCONCLUSIVE,
            reason="no evidence: the query returned no rows for the window",
        )
    evidence = judge_evidence(suite, frame, thresholds)
    if isinstance(evidence, str):
        return CheckResult(**base, rows=rows, outcome=Outcome.ERROR, reason=evidence)
    return evidence
