"""The one place audit events are built: a person's decisions — waive, unwaive, approve,
enforce a shadow check, correct an SLO, and
the assumptions of ``run --assume-approved / --assume-soaked`` — and gatecheck's own lines
(a waiver used by an evaluation, a waiver found past its end).

Everything is checked before anything is written: a bad phase, check, group key or duration,
an empty reason or author, a rollback trigger is one ``ConfigError`` line and no event.
The CLI and the service's API both come here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gatecheck._values import document_time, timestamp
from gatecheck.config import Project
from gatecheck.durations import format_duration, parse_duration
from gatecheck.errors import ConfigError, did_you_mean, printable
from gatecheck.ledger.audit import EVERY_PHASE, MAX_DECISION, AuditEvent, invalidation_of, waivers_at
from gatecheck.results import Verdict

if TYPE_CHECKING:
    from gatecheck.ledger import Ledger, Record

_WAIVER_ID = re.compile(r"^W[1-9][0-9]*$")


class UnknownWaiver(ConfigError):
    """No waiver of that id was ever created (the API answers 404)."""


def _duration(text: str) -> Any:
    try:
        length = parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"--for: {exc}") from exc
    if length.total_seconds() <= 0 or length > MAX_DECISION:
        raise ConfigError(
            f"--for: {text!r}: a decision lasts more than 0s and at most {format_duration(MAX_DECISION)}"
        )
    return length


def _person(by: str, reason: str) -> tuple[str, str]:
    by, reason = " ".join(by.split()), " ".join(reason.split())
    for flag, text in (("--by", by), ("--reason", reason)):
        if not text.isprintable():  # a NUL, an escape sequence: PostgreSQL refuses a NUL outright
            shown = next(repr(ch) for ch in text if not ch.isprintable())
            raise ConfigError(f"{flag}: holds a control character ({shown}): write plain text")
    if not by:
        raise ConfigError("--by: say who decides (a name)")
    if not reason:
        raise ConfigError("--reason: say why (it is what a later reader of the trail has)")
    return by, reason


def parse_groups(items: list[str]) -> dict[str, str]:
    """``["edge_type=start->first_segment"]`` → ``{"edge_type": "start->first_segment"}``."""
    group: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--group: {item!r}: write KEY=VALUE (e.g. edge_type=start->first_segment)")
        group[key.strip()] = value.strip()
    return group


def waiver_event(
    project: Project, phase: str, check: str, group: dict[str, str], length: str, reason: str, by: str
) -> AuditEvent:
    """The ``waiver-created`` event for a waiver, checked (its id is given when written)."""
    gate = project.gate(phase)
    rollback = {ref.suite for ref in gate.rollback}
    checks = [ref.suite for ref in gate.checks]
    if check in rollback and check not in checks:
        raise ConfigError(f"--check: {check} is a rollback trigger of {phase}: a rollback is never waived")
    if check not in checks:
        raise ConfigError(
            f"--check: gate {phase} has no check {check!r}{did_you_mean(check, checks)} "
            f"(its checks: {', '.join(checks)})"
        )
    suite = project.suites[check]
    if group:
        known = suite.groups or []
        if not known:
            raise ConfigError(
                f"--group: suite {check} declares no groups: waive the whole check (no --group)"
            )
        unknown = sorted(set(group) - set(known))
        if unknown:
            raise ConfigError(
                f"--group: {', '.join(unknown)}: not a group of {check} (its groups: {', '.join(known)})"
            )
    duration = _duration(length)
    by, reason = _person(by, reason)
    now = datetime.now(UTC)
    return AuditEvent(
        at=now, kind="waiver-created", phase=phase, check=check, group=group, until=now + duration,
        by=by, reason=reason, config_hash=project.config_hash,
    )  # fmt: skip


def revoke_event(project: Project, trail: list[AuditEvent], waiver: str, reason: str, by: str) -> AuditEvent:
    """The ``waiver-revoked`` event for an active waiver, checked."""
    if not _WAIVER_ID.match(waiver):
        raise ConfigError(f"waiver id {waiver!r}: expected W1, W2, …")
    created = next((e for e in trail if e.kind == "waiver-created" and e.waiver == waiver), None)
    if created is None:
        raise UnknownWaiver(f"no waiver {waiver} on record")
    now = datetime.now(UTC)
    if all(w.id != waiver for w in waivers_at(trail, created.phase, now)):
        raise ConfigError(f"waiver {waiver} is not active (expired, revoked or replaced): nothing to revoke")
    by, reason = _person(by, reason)
    return AuditEvent(
        at=now, kind="waiver-revoked", phase=created.phase, check=created.check, group=created.group,
        waiver=waiver, until=created.until, by=by, reason=reason, config_hash=project.config_hash,
    )  # fmt: skip


def _release(text: str) -> str:
    """``--release``, checked: one line a version, a checksum or a revision fits in."""
    release = text.strip()
    if not release or len(release) > 200 or not release.isprintable():
        raise ConfigError("--release: 1 to 200 printable characters (a version, a checksum, a revision)")
    return release


def approval_event(
    project: Project, phase: str, length: str, reason: str, by: str, release: str | None = None
) -> AuditEvent:
    """The ``approved`` event of a phase, checked; with ``release`` (a Flagger checksum, an
    Argo Rollouts revision) it holds for that canary's requests only."""
    project.gate(phase)
    duration = _duration(length)
    by, reason = _person(by, reason)
    group = {"release": _release(release)} if release is not None else {}
    now = datetime.now(UTC)
    return AuditEvent(
        at=now, kind="approved", phase=phase, group=group, until=now + duration, by=by, reason=reason,
        config_hash=project.config_hash,
    )  # fmt: skip


def deployed_events(
    project: Project, environment: str, release: str, reason: str, by: str
) -> list[AuditEvent]:
    """A ``deployed`` event for each phase whose gate judges ``environment``, checked: from
    then on its soak counts from the first evaluation after (a soaked verdict judged before no
    longer holds), and an approval given before is of the release before."""
    known = sorted(project.config.environments)
    if environment not in known:
        raise ConfigError(
            f"--environment: no environment {environment!r}{did_you_mean(environment, known)} "
            f"(environments: {', '.join(known)})"
        )
    phases = sorted(name for name, gate in project.gates.items() if gate.environment == environment)
    if not phases:
        raise ConfigError(f"--environment: no gate judges {environment}: nothing to record")
    group = {"release": _release(release), "environment": environment}
    by, reason = _person(by, reason)
    now = datetime.now(UTC)
    hashed = project.config_hash
    return [
        AuditEvent(at=now, kind="deployed", phase=name, group=group, by=by, reason=reason, config_hash=hashed)
        for name in phases
    ]


def enforce_event(project: Project, phase: str, check: str, reason: str, by: str) -> AuditEvent:
    """The ``check-enforced`` event turning shadow check ``check`` of ``phase`` on, checked:
    from the moment it is recorded the check blocks like any other (a record of who and why)."""
    gate = project.gate(phase)
    refs = [(ref.suite, ref.enforce) for ref in gate.checks] + [
        (ref.suite, ref.enforce) for ref in gate.rollback
    ]
    shadows = [suite for suite, enforced in refs if not enforced]
    if check not in shadows:
        every = [suite for suite, _ in refs]
        if check in every:
            raise ConfigError(f"--check: {check} is enforced in {phase} already (it has no enforce: false)")
        raise ConfigError(
            f"--check: gate {phase} has no check {check!r}{did_you_mean(check, every)} "
            f"(its shadow checks: {', '.join(shadows) or 'none'})"
        )
    by, reason = _person(by, reason)
    return AuditEvent(
        at=datetime.now(UTC), kind="check-enforced", phase=phase, check=check, by=by, reason=reason,
        config_hash=project.config_hash,
    )  # fmt: skip


def record_of(ledger: Ledger, phase: str, text: str) -> Record:
    """The record of ``phase`` as of ``text``: its ``as_of`` as ``history`` shows it (to the
    second: the one record in that second) or as its JSON does (to the millisecond)."""
    moment = _moment("--record", text)
    whole_second = moment.microsecond == 0 and "." not in text and "," not in text
    until = moment + timedelta(milliseconds=999) if whole_second else moment
    found = ledger.history(phase, since=moment, until=until, newest=2)
    if not found:
        raise ConfigError(
            f"--record: no evaluation of {phase} as of {timestamp(moment)} on record "
            f"(gatecheck history --phase {phase} lists them)"
        )
    if len(found) > 1:
        raise ConfigError(
            f"--record: {phase} has more than one evaluation as of {timestamp(moment)} "
            f"({' and '.join(document_time(r.as_of) for r in found)}): give its milliseconds, as "
            f"gatecheck history --phase {phase} --format json shows them"
        )
    return found[-1]


def pin_event(
    project: Project, ledger: Ledger, phase: str, check: str, record: str, reason: str, by: str
) -> AuditEvent:
    """The ``baseline-pinned`` event making the evaluation of ``phase`` as of ``record`` the
    baseline of ``check`` (a check with ``baseline:``), checked against the ledger."""
    gate = project.gate(phase)
    with_baseline = [ref.suite for ref in gate.checks if ref.baseline is not None]
    if check not in with_baseline:
        raise ConfigError(
            f"--check: {check!r} has no baseline in gate {phase}{did_you_mean(check, with_baseline)} "
            f"(checks with a baseline: {', '.join(with_baseline) or 'none'})"
        )
    found = record_of(ledger, phase, record)
    kept = [c for c in found.document.get("checks", []) if c.get("suite") == check and c.get("tracked")]
    if not kept:
        raise ConfigError(
            f"--record: the evaluation as of {timestamp(found.as_of)} kept no values of {check} "
            "(it errored, or was recorded before the check had a baseline)"
        )
    now = datetime.now(UTC)
    invalidated = invalidation_of(
        ledger.audit([phase], None, ["record-invalidated"]), phase, found.as_of, now
    )
    if invalidated is not None:  # no evidence: it would be no reference either
        raise ConfigError(
            f"--record: the evaluation as of {timestamp(found.as_of)} was invalidated by {invalidated.by} at "
            f"{timestamp(invalidated.at)} ({invalidated.reason}): pin another one"
        )
    by, reason = _person(by, reason)
    return AuditEvent(
        at=now, kind="baseline-pinned", phase=phase, check=check,
        group={"record": found.as_of.isoformat()}, by=by, reason=reason, config_hash=project.config_hash,
    )  # fmt: skip


def invalidate_event(
    project: Project, ledger: Ledger, phase: str, record: str, reason: str, by: str
) -> AuditEvent:
    """The ``record-invalidated`` event leaving the evaluation of ``phase`` as of ``record`` out
    of every baseline, learned threshold, soak and requires (no evidence), checked against the
    ledger."""
    project.gate(phase)
    found = record_of(ledger, phase, record)
    by, reason = _person(by, reason)
    return AuditEvent(
        at=datetime.now(UTC), kind="record-invalidated", phase=phase,
        group={"record": found.as_of.isoformat()}, by=by, reason=reason, config_hash=project.config_hash,
    )  # fmt: skip


def _moment(option: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"{option}: {text!r} is not an ISO 8601 time (e.g. 2026-11-22T06:00:00Z)") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def correction_event(project: Project, slo: str, start: str, end: str, reason: str, by: str) -> AuditEvent:
    """The ``slo-corrected`` event leaving ``[start, end)`` out of SLO ``slo``'s budget in every
    phase that judges it, checked. The stretch is at most 30 days, in the past or ahead (a
    planned maintenance window); evaluations as of a moment before the event was recorded do
    not see it."""
    slos = sorted(name for name, suite in project.suites.items() if suite.slo is not None)
    if slo not in slos:
        raise ConfigError(
            f"--slo: no SLO suite {slo!r}{did_you_mean(slo, slos)} (SLO suites: {', '.join(slos) or 'none'})"
        )
    begins, ends = _moment("--from", start), _moment("--to", end)
    if ends <= begins:
        raise ConfigError(f"--to: {timestamp(ends)} is not after --from {timestamp(begins)}")
    if ends - begins > MAX_DECISION:
        raise ConfigError(
            f"--from/--to: a correction leaves out at most {format_duration(MAX_DECISION)} "
            f"(got {format_duration(ends - begins)})"
        )
    by, reason = _person(by, reason)
    return AuditEvent(
        at=datetime.now(UTC), kind="slo-corrected", phase=EVERY_PHASE, check=slo,
        group={"from": begins.isoformat(), "to": ends.isoformat()}, until=ends, by=by, reason=reason,
        config_hash=project.config_hash,
    )  # fmt: skip


def describe(event: AuditEvent) -> str:
    """One line of the trail."""
    at = timestamp(event.at)
    if event.kind in ("baseline-pinned", "record-invalidated"):
        record = f"record as of {timestamp(datetime.fromisoformat(event.group['record']))}"
        scope = f"{event.check} ({record})" if event.check else record
    elif event.kind == "slo-corrected":
        begins, ends = (timestamp(_moment(k, event.group[k])) for k in ("from", "to"))
        scope = f"{event.check} (left out: {begins} to {ends})"
    else:
        scope = event.check + (
            f" ({', '.join(f'{k}={v}' for k, v in event.group.items())})" if event.group else ""
        )
    until = f" until {timestamp(event.until)}" if event.until and event.kind != "slo-corrected" else ""
    parts = [at, f"{event.kind:<16}", event.phase, event.waiver or "-", scope or "-"]
    # A reason or author posted through the API may hold control characters: shown escaped.
    return printable("  ".join(parts) + f"{until}  by {event.by}: {event.reason}")


def expired_unrecorded(events: Iterable[AuditEvent], phase: str, moment: datetime) -> list[AuditEvent]:
    """A ``waiver-expired`` event for each waiver of ``phase`` past its end at ``moment`` that
    has none yet (and was not revoked first)."""
    events = [e for e in events if e.phase == phase]
    closed = {e.waiver for e in events if e.kind in ("waiver-expired", "waiver-revoked")}
    return [
        AuditEvent(
            at=moment,
            kind="waiver-expired",
            phase=phase,
            check=e.check,
            group=e.group,
            waiver=e.waiver,
            until=e.until,
            by="gatecheck",
            reason=f"expired at {timestamp(e.until)}",
            config_hash=e.config_hash,
        )
        for e in events
        if e.kind == "waiver-created" and e.until is not None and e.until <= moment and e.waiver not in closed
    ]


def waivers_used(verdict: Verdict, now: datetime) -> list[AuditEvent]:
    """A ``waiver-used`` event for each check of ``verdict`` judged failed under a waiver."""
    return [
        AuditEvent(
            at=now,
            kind="waiver-used",
            phase=verdict.phase,
            check=c.suite,
            group=c.waiver.group,
            waiver=c.waiver.id,
            until=c.waiver.until,
            by="gatecheck",
            reason=f"the evaluation as of {timestamp(verdict.as_of)} judged {c.suite} failed under it",
            config_hash=verdict.config_hash,
        )
        for c in verdict.checks
        if c.waiver is not None
    ]


def assumption_events(
    project: Project, phase: str, approved: list[str], soaked: bool, by: str, now: datetime
) -> list[AuditEvent]:
    """What ``run --phase PHASE --assume-approved … --assume-soaked`` assumed, by whom: one
    event each (a soak is assumed only of a gate that has one, an approval only of a phase
    the gate requires: a flag that changes nothing is no assumption to put on the trail)."""
    gate = project.gate(phase)
    assumed = [
        ("assumed-approved", name, f"--assume-approved {name}") for name in approved if name in gate.requires
    ]
    if soaked and gate.soak is not None:
        assumed.append(("assumed-soaked", phase, "--assume-soaked"))
    return [
        AuditEvent(
            at=now,
            kind=kind,  # type: ignore[arg-type]
            phase=subject,
            by=by,
            config_hash=project.config_hash,
            reason=f"gatecheck run --phase {phase} {flag}",
        )
        for kind, subject, flag in assumed
    ]
