"""The pure part of judging a gate: plain records in, a decision out — no source, ledger or
Great Expectations. A check's outcome from its expectations and evidence (a definite failure
is a failure), a waiver applied to a failure, an approval found on the trail, soak coverage
from the recorded points, and the verdict with its reasons (rollback > no-go > inconclusive >
go). :mod:`gatecheck.evaluation.gate` gathers what they need and calls them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from gatecheck._values import redefined, shown, timestamp
from gatecheck.config import (
    GateConfig,
)
from gatecheck.durations import format_duration
from gatecheck.ledger import MAX_RECORDING_DELAY, Ledger
from gatecheck.ledger.audit import AuditEvent, approval_at, covers, deployed_text
from gatecheck.render.describe import failure_text
from gatecheck.results import (
    Approval,
    CheckResult,
    ExpectationResult,
    Outcome,
    Requirement,
    SoakStatus,
    Verdict,
    VerdictState,
    Waiver,
)


def waive(check: CheckResult, waivers: list[Waiver]) -> CheckResult:
    """``check`` with the waiver covering its definite failure, if any. Never an
    inconclusive or errored check (no evidence is not a pass), never a rollback trigger."""
    if check.outcome is not Outcome.FAIL or check.role == "rollback":
        return check
    failing = [e for e in check.expectations if e.outcome is Outcome.FAIL]
    groups = [g.group for e in failing for g in e.failing_groups]
    groups += [{} for e in failing if not e.failing_groups]  # failed overall: no group names it
    for waiver in sorted(waivers, key=lambda w: w.since, reverse=True):
        if waiver.check == check.suite and covers(waiver, groups):
            return check.model_copy(update={"waiver": waiver})
    return check


def approval_of(
    gate: GateConfig,
    trail: list[AuditEvent],
    unreadable: str | None,
    ledger: Ledger | None,
    as_of: datetime,
    release: str | None = None,
    deployed: AuditEvent | None = None,
) -> Approval | None:
    """The gate's required approval at ``as_of``; with ``release`` (the canary a rollout
    controller's request names) only an approval of that release holds, and after a release
    ``deployed`` to the gate's environment only one given since."""
    if gate.approval != "required":
        return None
    if ledger is None:
        return Approval(satisfied=False, reason="no history ledger configured (history.url), so no approval")
    if unreadable is not None:
        return Approval(satisfied=False, reason=unreadable)
    command = f"gatecheck approve --phase {gate.phase}" + (f" --release {release}" if release else "")
    found = approval_at(trail, gate.phase, as_of, release)
    if found is not None and deployed is not None and found.at < deployed.at:
        return Approval(
            satisfied=False,
            reason=f"no approval of {gate.phase} in force since {deployed_text(deployed)} ({command})",
        )
    if found is None:
        other = approval_at(trail, gate.phase, as_of) if release else None
        if other is not None:
            given = other.group.get("release")
            of = f"of release {given}" if given else "of no release"
            return Approval(
                satisfied=False,
                reason=f"no approval of {gate.phase} for release {release} in force: the one by {other.by} "
                f"at {timestamp(other.at)} is {of}, given without this canary in sight ({command})",
            )
        return Approval(satisfied=False, reason=f"no approval of {gate.phase} in force ({command})")
    given = found.group.get("release")
    return Approval(
        satisfied=True,
        reason=f"approved by {found.by} at {timestamp(found.at)}"
        + (f" for release {given}" if given else "")
        + f": {found.reason}",
        by=found.by,
        at=found.at,
        until=found.until,
    )


def soak_coverage(
    points: Sequence[tuple[Any, ...]],
    as_of: datetime,
    duration: timedelta,
    max_gap: timedelta,
    digest: str = "",
    invalidated: Collection[datetime] = (),
    revoked: Collection[str] = (),
    deployed: AuditEvent | None = None,
) -> SoakStatus:
    """Coverage of ``[as_of - duration, as_of]`` by evaluations
    ``(as_of, passed, failed[, waiver ids[, contemporary[, gate digest]]])``.

    Walking back from ``as_of``: passing evaluations extend the covered run while each is
    within ``max_gap`` of the next; a failed one (a required check failed or a rollback
    fired) ends it — the clock restarts after it; an inconclusive one is neither evidence
    nor failure, it only leaves a gap. A passing evaluation that was not recorded at its time
    (backdated with ``--as-of``) is no evidence either: it leaves a gap and is counted aside.
    An evaluation judged by another definition of the gate (a ``digest`` other than this
    one's; '' is a record from before digests, taken as this one) ends the run like a
    failure: a check added or a threshold changed has not been watched through the soak.
    One that passed only under a waiver ``revoked`` since (its ids) is a failure: revoking
    it says its failures block, and a soak that rested on them was never watched through.
    An evaluation before the release ``deployed`` (``gatecheck deployed``) watched the release
    before: the soak counts from the first one after it.
    """
    points = sorted(points, key=lambda p: p[0])  # type: ignore[assignment]
    window_start = as_of - duration
    covered_since: datetime | None = None
    last_failure: datetime | None = None
    changed_at: datetime | None = None
    before_deploy = False
    gap: tuple[datetime, datetime] | None = None
    later = as_of  # the time the run must reach back from
    passing = backdated = left_out = 0
    under_waiver = timedelta(0)
    waivers: set[str] = set()
    unwaived: list[str] = []  # the revoked waivers the last failure passed under
    for point in reversed(points):
        moment: datetime = point[0]
        passed, failed = bool(point[1]), bool(point[2])
        ids: str = point[3] if len(point) > 3 else ""  # (as_of, passed, failed[, waiver ids])
        judged_by: str = point[5] if len(point) > 5 else ""
        if deployed is not None and moment < deployed.at:
            before_deploy = True
            break
        if redefined(judged_by, digest):
            changed_at = moment
            break
        if moment in invalidated and (passed or failed):
            # a person said it is no evidence, either way: a gap, as an inconclusive one (a
            # failure a broken source made does not restart the soak once invalidated)
            if moment >= window_start:
                left_out += 1
            continue
        taken_back = sorted(set(ids.split(",")) & set(revoked)) if passed and ids and revoked else []
        if taken_back:
            failed, unwaived = True, taken_back
        if failed:
            last_failure = moment
            break
        if not passed:
            continue
        if len(point) > 4 and not point[4]:
            if moment >= window_start:
                backdated += 1
            continue
        if later - moment > max_gap:
            gap = (moment, later)
            break
        if ids:  # passing only because its failures were waived: this stretch rests on them
            under_waiver += later - max(moment, window_start)  # later > window_start here
            waivers.update(ids.split(","))
        covered_since, later = moment, moment
        passing += 1
        if moment <= window_start:
            break
    coverage = as_of - covered_since if covered_since is not None else timedelta(0)
    covered = covered_since is not None and covered_since <= window_start
    if covered:
        reason = (
            f"{format_duration(duration)} covered by {passing} passing evaluations "
            f"since {timestamp(covered_since)}"  # type: ignore[arg-type]
        )
    else:
        reason = f"{format_duration(min(coverage, duration))} of {format_duration(duration)} covered"
    if waivers:
        reason += f", {format_duration(under_waiver)} of it under waiver {', '.join(sorted(waivers))}"
    if backdated:
        reason += (
            f"; {backdated} passing evaluation{'s' if backdated > 1 else ''} not counted: recorded more than "
            f"{format_duration(MAX_RECORDING_DELAY)} after {'their' if backdated > 1 else 'its'} as_of "
            "(backdated) or dated ahead of the recording"
        )
    if left_out:
        reason += (
            f"; {left_out} evaluation{'s' if left_out > 1 else ''} not counted: "
            "invalidated (gatecheck invalidate)"
        )
    if not covered:
        if last_failure is not None:
            reason += f"; last failure at {timestamp(last_failure)}"
            if unwaived:
                reason += f" (it passed under waiver {', '.join(unwaived)}, revoked since)"
        if before_deploy and deployed is not None:
            reason += f"; {deployed_text(deployed)}: the soak counts from the first evaluation after it"
        if changed_at is not None:
            reason += (
                f"; the gate's checks, suites or thresholds changed after {timestamp(changed_at)}: "
                "the soak counts from the first evaluation judged as this one is"
            )
        if gap is not None:
            reason += (
                f"; no passing evaluation between {timestamp(gap[0])} and {timestamp(gap[1])} "
                f"(more than max_gap {format_duration(max_gap)})"
            )
    return SoakStatus(
        duration=duration,
        max_gap=max_gap,
        covered=covered,
        coverage=min(coverage, duration),
        covered_since=covered_since,
        last_failure=last_failure,
        changed_at=changed_at,
        under_waiver=under_waiver,
        waivers=sorted(waivers),
        backdated=backdated,
        reason=reason,
    )


def decide(
    checks: list[CheckResult],
    requires: list[Requirement],
    soak: SoakStatus | None,
    approval: Approval | None = None,
) -> tuple[VerdictState, list[str]]:
    """Combine outcomes: rollback > no-go > inconclusive > go. Advisory and shadow checks never
    count (a shadow check that would have blocked is said last); a required failure under a
    person's waiver does not block (and is said)."""
    shadows = [
        f"shadow check {c.outcome.value}, not enforced: {summary(c)}"
        for c in checks
        if c.shadow and c.outcome is Outcome.FAIL
    ]
    verdict, reasons = _decided([c for c in checks if not c.shadow], requires, soak, approval)
    return verdict, reasons + shadows


def _decided(
    checks: list[CheckResult],
    requires: list[Requirement],
    soak: SoakStatus | None,
    approval: Approval | None,
) -> tuple[VerdictState, list[str]]:
    rollback = [c for c in checks if c.role == "rollback" and c.outcome is Outcome.FAIL]
    if rollback:
        return VerdictState.ROLLBACK, [f"rollback trigger fired: {summary(c)}" for c in rollback]
    required = [c for c in checks if c.role == "required"]
    failed = [c for c in required if c.outcome is Outcome.FAIL and c.waiver is None]
    waived = [c for c in required if c.outcome is Outcome.FAIL and c.waiver is not None]
    if failed:
        return VerdictState.NO_GO, [f"required check failed: {summary(c)}" for c in failed]
    reasons = [
        f"required check {c.outcome.value}: {summary(c)}"
        for c in required
        if c.outcome in (Outcome.INCONCLUSIVE, Outcome.ERROR)
    ]
    reasons += [
        f"rollback check {c.outcome.value}: {summary(c)}"
        for c in checks
        if c.role == "rollback" and c.outcome in (Outcome.INCONCLUSIVE, Outcome.ERROR)
    ]
    reasons += [requirement_reason(r) for r in requires if not r.satisfied]
    if soak is not None and not soak.covered:
        reasons.append(f"soak not covered: {soak.reason}")
    if approval is not None and not approval.satisfied:
        reasons.append(f"approval required: {approval.reason}")
    if not required:
        reasons.append("the gate has no required checks: nothing to base a GO on")
    under = [f"required check failed, waived: {waived_text(c)}" for c in waived]
    if reasons:
        return VerdictState.INCONCLUSIVE, reasons + under
    if waived:
        passed = len(required) - len(waived)
        return VerdictState.GO, [f"{passed} of {len(required)} required checks passed", *under]
    return VerdictState.GO, [f"all {len(required)} required checks passed"]


#: What ``--assume-approved`` writes as a requirement's reason.
ASSUMED_APPROVED = "assumed approved (--assume-approved)"


def assumptions_in(document: Mapping[str, Any]) -> list[str]:
    """What a recorded verdict took on an explicit override rather than earned, in words: its
    soak assumed covered (``--assume-soaked``), a phase it requires assumed approved
    (``--assume-approved``). Empty for a verdict that assumed nothing."""
    found = []
    soak = document.get("soak") or {}
    if soak.get("assumed"):
        found.append("its soak assumed covered (--assume-soaked)")
    for requirement in document.get("requires") or []:
        if requirement.get("reason") == ASSUMED_APPROVED:
            found.append(f"{requirement.get('phase')} assumed approved (--assume-approved)")
    return found


def requirement_reason(requirement: Requirement) -> str:
    """An unmet ``requires`` as a reason of the verdict."""
    return f"requires {requirement.phase}: {requirement.reason}"


def waiting_on(verdict: Verdict) -> str | None:
    """The phase an undecided verdict waits on: the phase of its first reason when that reason
    is an unmet ``requires`` (None: it waits on something of its own)."""
    if not verdict.reasons:
        return None
    for requirement in verdict.requires:
        if not requirement.satisfied and verdict.reasons[0] == requirement_reason(requirement):
            return requirement.phase
    return None


def undecided_reason(phase: str, latest: Verdict, root: Verdict) -> str:
    """Why ``phase`` has no recorded GO when its records decided nothing (``latest``, the
    newest, is inconclusive): the reason of the ``root`` of the chain it waits on (the first
    phase up the ``requires`` that waits on something of its own; ``latest`` itself when it
    does). The root is named first and its reason last: a card on the chain page shows two
    lines of a reason, and a long reason is split into a headline and its failing groups."""
    why = root.reasons[0] if root.reasons else "no reason recorded"
    if root.phase == phase:
        return f"no recorded GO of {phase} (only {latest.verdict.value.upper()}): {why}"
    return f"no recorded GO of {phase}, waiting on {root.phase}: {why}"


def waived_text(check: CheckResult) -> str:
    waiver = check.waiver
    assert waiver is not None
    return (
        f"{summary(check)} [waiver {waiver.id} by {waiver.by} until {timestamp(waiver.until)}: "
        f"{waiver.reason}]"
    )


def summary(check: CheckResult) -> str:
    return f"{check.suite} — {check.reason}" if check.reason else check.suite


def check_outcome(expectations: list[ExpectationResult], evidence: Any) -> tuple[Outcome, str | None]:
    """One check's outcome from its expectations and evidence.

    A definite failure is a failure: an expectation that fails on values that are present
    (with enough evidence) makes the check ``fail`` whatever the other expectations did; their
    errors and missing values are listed beside it. Otherwise an error is an ``error``, and
    too little evidence or a column without values is ``inconclusive``.
    """
    errored = [e for e in expectations if e.outcome is Outcome.ERROR]
    unknown = [e for e in expectations if e.outcome is Outcome.INCONCLUSIVE]
    failed = [e for e in expectations if e.outcome is Outcome.FAIL]
    enough = evidence is None or evidence.sufficient
    if failed and enough:
        reason = "; ".join(failure_text(e) for e in failed)
        beside = [f"{e.type}: {e.reason}" for e in errored] + [f"{e.column}: {e.reason}" for e in unknown]
        if beside:
            reason += " (also not judged: " + "; ".join(beside) + ")"
        return Outcome.FAIL, reason
    if errored:
        return Outcome.ERROR, "; ".join(f"{e.type}: {e.reason}" for e in errored)
    if not enough:
        return Outcome.INCONCLUSIVE, (
            f"too little evidence: {evidence.column} = {shown(evidence.observed_total)}, "
            f"need at least {shown(evidence.min_total.value)} ({evidence.min_total.name})"
        )
    if unknown:
        return Outcome.INCONCLUSIVE, "; ".join(f"{e.column}: {e.reason}" for e in unknown)
    return Outcome.PASS, None
