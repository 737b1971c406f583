"""The audit trail: a person's decisions — waivers, approvals, bootstrapping assumptions — and
what became of them, append-only in the history ledger.

The state is derived from the events, never stored beside them: a waiver is active at a
moment when it was created before it, has not expired and was not revoked before it; of two
waivers for the same scope the later one stands. Pure functions of the events here; the
ledgers store them (``Ledger.append_audit``, ``Ledger.audit``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from gatecheck._values import Moment, timestamp
from gatecheck.results import Outcome, SloCorrection, Verdict, Waiver

AuditKind = Literal[
    "waiver-created",
    "waiver-used",
    "waiver-expired",
    "waiver-revoked",
    "approved",
    "assumed-approved",
    "assumed-soaked",
    "slo-corrected",
    "check-enforced",
    "baseline-pinned",
    "record-invalidated",
    "deployed",
]

#: The phase of a decision that holds in every phase (an SLO correction).
EVERY_PHASE = "*"

#: The longest a waiver or an approval may run.
MAX_DECISION = timedelta(days=30)


class AuditEvent(BaseModel):
    """One line of the trail."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: Moment
    kind: AuditKind
    phase: str
    check: str = ""  # the suite a waiver covers
    group: dict[str, str] = {}  # the group a waiver covers (empty: every group of the check)
    waiver: str = ""  # the waiver's id (W1, W2, ...)
    until: Moment | None = None  # when a waiver or an approval ends
    by: str
    reason: str
    config_hash: str = ""


def waivers_at(events: Iterable[AuditEvent], phase: str, moment: datetime) -> list[Waiver]:
    """The waivers of ``phase`` active at ``moment``. Of two waivers for one scope the later
    stands: it replaces the earlier, which does not come back when the later one ends."""
    events = sorted((e for e in events if e.phase == phase), key=lambda e: e.at)
    revoked = {e.waiver: e.at for e in events if e.kind == "waiver-revoked"}
    latest: dict[tuple[str, tuple[tuple[str, str], ...]], AuditEvent] = {}
    for event in events:
        if event.kind == "waiver-created" and event.at <= moment and event.until is not None:
            latest[(event.check, tuple(sorted(event.group.items())))] = event
    active = []
    for e in latest.values():
        if e.until is None or moment >= e.until or (e.waiver in revoked and revoked[e.waiver] <= moment):
            continue
        active.append(
            Waiver(
                id=e.waiver, check=e.check, group=e.group, reason=e.reason, by=e.by, since=e.at, until=e.until
            )
        )
    return active


def approval_at(
    events: Iterable[AuditEvent], phase: str, moment: datetime, release: str | None = None
) -> AuditEvent | None:
    """The newest approval of ``phase`` in force at ``moment`` for ``release`` — the canary a
    rollout controller's request names: then only an approval naming that release holds (one
    of another release, or of none, was given without this canary in sight). An evaluation
    naming no release (a CLI run, the service's schedule) takes any."""
    found = [
        e
        for e in events
        if e.phase == phase
        and e.kind == "approved"
        and e.at <= moment
        and (e.until is None or moment < e.until)
        and (release is None or e.group.get("release") == release)
    ]
    return max(found, key=lambda e: e.at) if found else None


def deployment_at(events: Iterable[AuditEvent], phase: str, moment: datetime) -> AuditEvent | None:
    """The newest release deployed to ``phase``'s environment by ``moment`` (``gatecheck
    deployed``): what its verdicts judged before it, its soak's evaluations and approvals
    given before it were of the release before."""
    found = [e for e in events if e.phase == phase and e.kind == "deployed" and e.at <= moment]
    return max(found, key=lambda e: e.at) if found else None


def deployed_text(event: AuditEvent) -> str:
    """``release 1.5 was deployed to staging by ci at … (reason)``."""
    where = f" to {event.group['environment']}" if event.group.get("environment") else ""
    return (
        f"release {event.group.get('release', '?')} was deployed{where} by {event.by} at "
        f"{timestamp(event.at)} ({event.reason})"
    )


def enforcement_at(
    events: Iterable[AuditEvent], phase: str, check: str, moment: datetime
) -> AuditEvent | None:
    """The recorded decision enforcing shadow check ``check`` of ``phase`` by ``moment``."""
    found = [
        e
        for e in events
        if e.kind == "check-enforced" and e.phase == phase and e.check == check and e.at <= moment
    ]
    return max(found, key=lambda e: e.at) if found else None


def pin_at(events: Iterable[AuditEvent], phase: str, check: str, moment: datetime) -> AuditEvent | None:
    """The newest ``baseline-pinned`` decision of ``check`` in ``phase`` recorded by ``moment``
    (its ``group["record"]``: the pinned record's ``as_of``)."""
    found = [
        e
        for e in events
        if e.kind == "baseline-pinned" and e.phase == phase and e.check == check and e.at <= moment
    ]
    return max(found, key=lambda e: e.at) if found else None


def invalidated_at(events: Iterable[AuditEvent], phase: str, moment: datetime) -> set[datetime]:
    """The ``as_of`` of every record of ``phase`` invalidated by ``moment`` (left out of baselines
    and learned thresholds)."""
    return {
        datetime.fromisoformat(e.group["record"])
        for e in events
        if e.kind == "record-invalidated" and e.phase == phase and e.at <= moment and "record" in e.group
    }


def invalidation_of(
    events: Iterable[AuditEvent], phase: str, record: datetime, moment: datetime
) -> AuditEvent | None:
    """The decision, recorded by ``moment``, that invalidated the record of ``phase`` as of
    ``record`` (None: it stands)."""
    for event in events:
        if event.kind == "record-invalidated" and event.phase == phase and event.at <= moment:
            named = event.group.get("record")
            if named is not None and datetime.fromisoformat(named) == record:
                return event
    return None


def withdrawn_text(trail: Iterable[AuditEvent], phase: str, verdict: Verdict, now: datetime) -> str | None:
    """What a person's decision, recorded by ``now``, took back of ``verdict`` (what the pages,
    ``status`` and a later phase's ``requires`` say of it): the evaluation invalidated, a waiver
    it passed under revoked, a release deployed to its environment after its soak, or —
    decided after it — the evidence it was judged on: an
    evaluation a check's baseline or learned band rested on, or that its covered soak counted,
    invalidated, or a waiver that soak rested on revoked. None when it stands. ``trail``: the
    phase's :data:`WITHDRAWING` events."""
    events = list(trail)
    invalidated = invalidation_of(events, phase, verdict.as_of, now)
    if invalidated is not None:
        return f"invalidated by {invalidated.by} at {timestamp(invalidated.at)} ({invalidated.reason})"
    deployed = deployment_at(events, phase, now)
    if deployed is not None and verdict.as_of < deployed.at and verdict.soak is not None:
        # its soak watched the release before; a phase without one (a pre-deploy check,
        # judged before the deployment on purpose) stands
        return f"its soak watched the release before {deployed_text(deployed)}"
    used = {c.waiver.id for c in verdict.checks if c.waiver is not None}
    soak = verdict.soak
    soaked = soak is not None and soak.covered and not soak.assumed
    rested = set(soak.waivers) if soak is not None and soaked else set()
    for event in events:
        if event.kind != "waiver-revoked" or event.phase != phase or event.at > now:
            continue
        when = timestamp(event.at)
        if event.waiver in used:
            return f"its waiver {event.waiver} was revoked by {event.by} at {when} ({event.reason})"
        if event.waiver in rested:
            said = f"revoked by {event.by} at {when} ({event.reason})"
            return f"its soak rested on waiver {event.waiver}, {said}"
    later = [  # decided after this verdict, which was judged on that record
        (event, datetime.fromisoformat(event.group["record"]))
        for event in events
        if event.kind == "record-invalidated"
        and event.phase == phase
        and "record" in event.group
        and verdict.as_of < event.at <= now
    ]
    for event, record in later:
        said = f"invalidated by {event.by} at {timestamp(event.at)} ({event.reason})"
        for check in verdict.checks:
            bound = check.history
            if bound is not None and record in bound.records:
                return (
                    f"the {bound.kind} bound of {check.suite} rests on the evaluation as of "
                    f"{timestamp(record)}, {said}"
                )
        since = soak.covered_since if soak is not None and soaked else None
        if since is not None and since <= record < verdict.as_of:
            return f"an evaluation its soak counted, as of {timestamp(record)}, was {said}"
    return None


#: The trail events :func:`withdrawn_text` reads.
WITHDRAWING = ["record-invalidated", "waiver-revoked", "deployed"]


def no_longer_holds(trail: Iterable[AuditEvent], phase: str, verdict: Verdict, now: datetime) -> str | None:
    """Why ``verdict`` of ``phase`` no longer holds at ``now``, or None: taken back by a person
    (:func:`withdrawn_text`), a waiver it passed under no longer in force (ended, or
    replaced), a shadow check that did not pass in it enforced since, the approval it needed
    ended, or another baseline pinned for a check judged against one (policies from then on:
    a later phase's ``requires`` still takes such a GO). ``trail``: the phase's
    :data:`HOLDING` events, the creations of the waivers it passed under included."""
    events = list(trail)
    taken = withdrawn_text(events, phase, verdict, now)
    if taken is not None:
        return taken
    active = {w.id for w in waivers_at(events, phase, now)}
    for check in verdict.checks:
        waiver = check.waiver
        if waiver is not None and waiver.id not in active:
            if waiver.until <= now:
                return f"its waiver {waiver.id} ended at {timestamp(waiver.until)}"
            return f"its waiver {waiver.id} is no longer in force (replaced by a later one)"
    for check in verdict.checks:
        if check.shadow and check.outcome is not Outcome.PASS:
            enforced = enforcement_at(events, phase, check.suite, now)
            if enforced is not None:
                return (
                    f"shadow check {check.suite} ({check.outcome.value} in it) was enforced by "
                    f"{enforced.by} at {timestamp(enforced.at)}"
                )
    approval = verdict.approval
    if approval is not None and approval.satisfied and approval.until and approval.until <= now:
        return f"the approval it needed ended at {timestamp(approval.until)}"
    for check in verdict.checks:
        if check.history is None or check.history.kind == "learned":
            continue
        for event in events:
            if (
                event.kind == "baseline-pinned"
                and event.phase == phase
                and event.check == check.suite
                and verdict.as_of < event.at <= now
            ):
                return (
                    f"another baseline of {check.suite} was pinned by {event.by} at "
                    f"{timestamp(event.at)} ({event.reason})"
                )
    return None


#: The trail events :func:`no_longer_holds` reads.
HOLDING = [
    "record-invalidated", "waiver-created", "waiver-revoked", "check-enforced", "baseline-pinned", "deployed",
]  # fmt: skip


def covers(waiver: Waiver, failing_groups: list[dict[str, str]]) -> bool:
    """Whether ``waiver`` covers a check whose failures are in ``failing_groups`` (an empty
    dict: the check failed overall). A waiver without a group covers every failure of its
    check; one with a group only failures all of whose groups match it."""
    if not waiver.group:
        return True
    return bool(failing_groups) and all(
        all(group.get(key) == value for key, value in waiver.group.items()) for group in failing_groups
    )


def corrections_at(events: Iterable[AuditEvent], moment: datetime) -> dict[str, list[SloCorrection]]:
    """The SLO corrections recorded at or before ``moment``, by SLO suite, oldest first: an
    evaluation at ``moment`` leaves their stretches out of the budget (a later correction
    does not change what an earlier evaluation judged). A correction's stretch is its
    ``group``'s ``from`` and ``to``."""
    found: dict[str, list[SloCorrection]] = {}
    for e in sorted(events, key=lambda e: e.at):
        if e.kind != "slo-corrected" or e.at > moment:
            continue
        start, end = e.group.get("from"), e.group.get("to")
        if start is None or end is None:
            continue
        found.setdefault(e.check, []).append(
            SloCorrection(
                start=datetime.fromisoformat(start), end=datetime.fromisoformat(end), reason=e.reason, by=e.by
            )
        )
    return found
