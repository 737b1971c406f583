"""Verdicts over time: what one evaluation's outcome becomes in the light of the phase's
earlier evaluations — accumulation rules per check (``fail_after``, ``pass_after``) and the
gate's deadline on INCONCLUSIVE — plus the shadow checks a gate judges without enforcing.

Pure functions of plain records: the run reads the earlier evaluations from the ledger
(:func:`earlier_outcomes`, :func:`inconclusive_since`), the backtest hands in its own earlier
steps, so both judge a step alike.

Accumulation counts **evaluations** of the phase, the current one last: "3 of the last 5
evaluations failed". An evaluation in which the check was inconclusive or errored is no
failure and breaks a run of consecutive ones; an evaluation missing from the ledger (the
service was down) is simply not there. Only what an evaluation *measured* is counted (a record
keeps it beside the accumulated outcome), so an accumulated outcome never feeds itself.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gatecheck._values import redefined, timestamp
from gatecheck.config.models import Deadline, FailAfter, PassAfter
from gatecheck.durations import format_duration
from gatecheck.results import CheckResult, DeadlineStatus, Outcome, VerdictState
from gatecheck.sources.probe import counted

#: One earlier evaluation's measured outcome of a check (None: the check was not in it).
Earlier = Outcome | None


def _trailing(outcomes: Sequence[Earlier], wanted: Outcome) -> int:
    """How many of the newest ``outcomes`` in a row are ``wanted``."""
    count = 0
    for outcome in reversed(outcomes):
        if outcome is not wanted:
            break
        count += 1
    return count


def _with(check: CheckResult, outcome: Outcome, account: str, reason: str | None) -> CheckResult:
    return check.model_copy(
        update={"outcome": outcome, "measured": check.outcome, "accumulation": account, "reason": reason}
    )


def accumulate(
    check: CheckResult,
    fail_after: FailAfter | None,
    pass_after: PassAfter | None,
    earlier: Sequence[Earlier] | str,
) -> CheckResult:
    """``check`` judged with its accumulation rules over the phase's ``earlier`` evaluations
    (oldest first, as measured), or with ``earlier`` the reason they cannot be read.

    - ``fail_after {failures: k, of: n}``: fails while k of the last n evaluations (this one
      included) failed; a failure below that is inconclusive (no GO on a failing check).
    - ``fail_after {consecutive: N}``: fails when the last N evaluations all failed.
    - ``pass_after {consecutive: N}``: passes only when the last N evaluations all passed;
      fewer is inconclusive.
    Without rules the check is unchanged; its measured outcome is always kept."""
    if fail_after is None and pass_after is None:
        return check
    measured = check.outcome
    if isinstance(earlier, str):
        # Nothing to count with: a failure or pass that needs earlier evaluations says nothing.
        if measured is Outcome.FAIL and fail_after is not None and fail_after.lookback > 1:
            return _with(check, Outcome.INCONCLUSIVE, earlier, f"failed, but {earlier}: {check.reason}")
        if measured is Outcome.PASS and pass_after is not None and pass_after.consecutive > 1:
            return _with(check, Outcome.INCONCLUSIVE, earlier, f"passed, but {earlier}")
        return check.model_copy(update={"measured": measured})
    if fail_after is not None:
        found = _failed_after(check, fail_after, [*earlier, measured])
        if found is not None:
            return found
    if pass_after is not None and measured is Outcome.PASS:
        wanted = pass_after.consecutive
        run = min(_trailing([*earlier, measured], Outcome.PASS), wanted)
        if run < wanted:
            account = f"passed {counted(run, 'consecutive evaluation')}; it passes after {wanted}"
            return _with(check, Outcome.INCONCLUSIVE, account, account)
        account = f"passed the last {counted(wanted, 'evaluation')}"
        return _with(check, Outcome.PASS, account, check.reason)
    return check.model_copy(update={"measured": measured})


def _failed_after(check: CheckResult, rule: FailAfter, outcomes: list[Earlier]) -> CheckResult | None:
    """The check under ``fail_after`` when the rule decides it (None: the outcome stands)."""
    measured = check.outcome
    why = f": {check.reason}" if measured is Outcome.FAIL and check.reason else ""
    if rule.consecutive is not None:
        run = min(_trailing(outcomes, Outcome.FAIL), rule.consecutive)
        if run >= rule.consecutive:
            account = f"the last {counted(run, 'evaluation')} failed"
            return _with(check, Outcome.FAIL, account, account + why)
        if measured is Outcome.FAIL:
            account = f"{counted(run, 'consecutive evaluation')} failed; it fails after {rule.consecutive}"
            return _with(check, Outcome.INCONCLUSIVE, account, account + why)
        return None
    assert rule.failures is not None and rule.of is not None
    window = outcomes[-rule.of :]
    failures = sum(1 for outcome in window if outcome is Outcome.FAIL)
    said = f"{failures} of the last {counted(len(window), 'evaluation')} failed"
    if failures >= rule.failures:
        this = "" if measured is Outcome.FAIL else f" (this one {measured.value})"
        return _with(check, Outcome.FAIL, said + this, said + this + why)
    if measured is Outcome.FAIL:
        account = f"{said}; it fails at {rule.failures} of {rule.of}"
        return _with(check, Outcome.INCONCLUSIVE, account, account + why)
    return None


def measured_outcome(document_check: Mapping[str, Any]) -> Outcome:
    """What one recorded check measured (a record made before accumulation: its outcome)."""
    return Outcome(document_check.get("measured") or document_check["outcome"])


def earlier_outcomes(
    documents: Iterable[Mapping[str, Any]],
    suite: str,
    role: str,
    digest: str = "",
    invalidated: Collection[datetime] = (),
    deployed_at: datetime | None = None,
) -> list[Earlier]:
    """Per recorded verdict document (oldest first): the measured outcome of the check of
    ``suite`` in ``role``, None where that evaluation had no such check. A pass judged by
    another definition of the gate (a ``gate_digest`` other than ``digest``; '' before digests
    were kept), or before the release ``deployed_at`` (``gatecheck deployed``: it watched the
    release before), is None too: it earns no ``pass_after`` run. Its failures still count. An
    evaluation a person invalidated (its ``as_of`` in ``invalidated``) is no evidence either
    way: None."""
    found: list[Earlier] = []
    for document in documents:
        checks = [c for c in document.get("checks", []) if c.get("suite") == suite and c.get("role") == role]
        outcome = measured_outcome(checks[0]) if checks else None
        if invalidated and datetime.fromisoformat(str(document.get("as_of"))) in invalidated:
            outcome = None
        judged_by = document.get("gate_digest") or ""
        if outcome is Outcome.PASS and redefined(judged_by, digest):
            outcome = None
        if (
            outcome is Outcome.PASS
            and deployed_at is not None
            and datetime.fromisoformat(str(document.get("as_of"))) < deployed_at
        ):
            outcome = None
        found.append(outcome)
    return found


def previous_since(previous: Mapping[str, Any] | None) -> datetime | None:
    """When the phase became inconclusive, as its newest earlier record says (None: that
    record was not inconclusive before any deadline, or there is none)."""
    if previous is None:
        return None
    deadline = previous.get("deadline")
    if deadline:
        return datetime.fromisoformat(str(deadline["since"]))
    if previous.get("verdict") == VerdictState.INCONCLUSIVE.value:
        return datetime.fromisoformat(str(previous["as_of"]))
    return None


def apply_deadline(
    deadline: Deadline | None,
    verdict: VerdictState,
    reasons: list[str],
    as_of: datetime,
    since: datetime | None,
) -> tuple[VerdictState, list[str], DeadlineStatus | None]:
    """The verdict under the gate's deadline: an INCONCLUSIVE lasting ``inconclusive_for``
    (since ``since``, the earlier records' account; None: it starts now) becomes ``then``
    (``no-go`` or ``rollback``) or stays, said, for ``notify``."""
    if deadline is None or verdict is not VerdictState.INCONCLUSIVE:
        return verdict, reasons, None
    begun = since if since is not None and since <= as_of else as_of
    lasted = as_of - begun
    passed = lasted >= deadline.inconclusive_for
    status = DeadlineStatus(
        inconclusive_for=deadline.inconclusive_for, then=deadline.then, since=begun, passed=passed
    )
    if not passed:
        return verdict, reasons, status
    said = (
        f"inconclusive since {timestamp(begun)} ({format_duration(lasted)}), longer than the gate's "
        f"deadline of {format_duration(deadline.inconclusive_for)}"
    )
    if deadline.then == "notify":
        return verdict, [*reasons, f"{said}: the notify targets are told"], status
    escalated = VerdictState.NO_GO if deadline.then == "no-go" else VerdictState.ROLLBACK
    return escalated, [f"{said}: {deadline.then}", *reasons], status


# ------------------------------------------------------------------ shadow-report


@dataclass
class ShadowFinding:
    """One shadow check over a stretch of a phase's records: how often it would have blocked,
    and whether those times coincided with a ROLLBACK or an enforced failure or stood alone
    (then it would have changed the verdict: ``alone`` lists them, newest last)."""

    suite: str
    role: str
    judged: int = 0
    would_block: int = 0
    with_rollback: int = 0
    with_enforced_failure: int = 0
    alone: list[dict[str, str]] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "role": self.role,
            "judged": self.judged,
            "would_block": self.would_block,
            "with_rollback": self.with_rollback,
            "with_enforced_failure": self.with_enforced_failure,
            "alone": len(self.alone),
            "alone_at": self.alone,
        }


def shadow_report(documents: Iterable[Mapping[str, Any]]) -> list[ShadowFinding]:
    """Every shadow check found in ``documents`` (recorded verdicts, oldest first)."""
    found: dict[tuple[str, str], ShadowFinding] = {}
    for document in documents:
        verdict = document.get("verdict")
        checks = document.get("checks", [])
        enforced_failure = any(
            c.get("role") in ("required", "rollback")
            and not c.get("shadow")
            and c.get("outcome") == Outcome.FAIL.value
            and not c.get("waiver")
            for c in checks
        )
        for check in checks:
            if not check.get("shadow"):
                continue
            key = (str(check.get("suite")), str(check.get("role")))
            finding = found.setdefault(key, ShadowFinding(*key))
            finding.judged += 1
            if check.get("outcome") != Outcome.FAIL.value:
                continue
            finding.would_block += 1
            if verdict == VerdictState.ROLLBACK.value:
                finding.with_rollback += 1
            elif enforced_failure:
                finding.with_enforced_failure += 1
            else:
                instead = VerdictState.ROLLBACK if key[1] == "rollback" else VerdictState.NO_GO
                finding.alone.append(
                    {
                        "as_of": str(document.get("as_of")),
                        "verdict": str(verdict),
                        "instead": instead.value,
                        "reason": str(check.get("reason") or ""),
                    }
                )
    return sorted(found.values(), key=lambda f: (f.role, f.suite))


def shadow_lines(
    phase: str, since: str, evaluations: int, findings: list[ShadowFinding], at_most: int = 10
) -> list[str]:
    """The report in a few lines per shadow check."""
    lines = [f"shadow checks of {phase} in the last {since} ({counted(evaluations, 'evaluation')})"]
    if not findings:
        lines.append("  no shadow check was judged (a check with enforce: false is one)")
    for finding in findings:
        share = f" ({finding.would_block / finding.judged:.1%})" if finding.judged else ""
        lines.append(
            f"  {finding.suite} ({finding.role}, shadow): judged {finding.judged} times, "
            f"would have blocked {finding.would_block}{share}"
        )
        if finding.would_block:
            lines.append(
                f"    with a ROLLBACK {finding.with_rollback} · with an enforced failure "
                f"{finding.with_enforced_failure} · alone {len(finding.alone)} "
                "(the verdict would have changed)"
            )
        for alone in finding.alone[-at_most:]:
            lines.append(
                f"    {alone['as_of']}: {alone['verdict'].upper()} would have been "
                f"{alone['instead'].upper()} — {alone['reason']}".rstrip(" —")
            )
        if len(finding.alone) > at_most:
            lines.append(f"    … and {len(finding.alone) - at_most} earlier")
    return lines
