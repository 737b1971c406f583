"""The one result model: every output format, the ledger and the exporter are views of it.

``Verdict`` holds the gate's answer and, per check, a ``CheckResult`` with per-expectation
``ExpectationResult``s: observed values, thresholds with their provenance, failing groups and
the window judged. All are frozen.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from gatecheck._values import Moment
from gatecheck.durations import Duration


class Waiver(BaseModel):
    """An active waiver, as a verdict shows it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    check: str
    group: dict[str, str] = {}
    reason: str
    by: str
    since: Moment
    until: Moment


class Outcome(StrEnum):
    """A check's outcome."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"


class VerdictState(StrEnum):
    """A gate's verdict."""

    GO = "go"
    NO_GO = "no-go"
    INCONCLUSIVE = "inconclusive"
    ROLLBACK = "rollback"


Scalar = bool | int | float | str | None


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Window(_Result):
    """``[start, end)`` = ``[as_of - settle - length, as_of - settle)``."""

    start: Moment
    end: Moment
    length: Duration
    settle: Duration


class Threshold(_Result):
    """A value a check judges by, and where it came from."""

    name: str  # threshold name, or the expectation kwarg for literals written in a suite
    value: Scalar
    bound: Literal["min", "max"] | None = None
    # history: a bound from the phase's own records (a baseline or a learned band)
    provenance: Literal["default", "environment", "phase", "suite", "history"]
    key: str  # file and key path the value came from


class FailingGroup(_Result):
    """One group (row of the aggregate frame) that violated an expectation."""

    group: dict[str, str]
    observed_value: Scalar
    expected_value: Scalar = None  # for pair expectations: the value of column_B
    # a comparison's group: both sides' values and their difference (``model_grain_sessions``,
    # ``pipeline_grain_sessions``, ``sessions_diff``)
    values: dict[str, Scalar] = {}


#: The failing groups a verdict lists per expectation (the rest counted in
#: ``more_failing_groups``): a check failing in 10,000 groups made a 2 MB document, recorded
#: every interval and parsed 500 at a time for a phase page. Its judgement (waivers included)
#: saw every group; the reasons count them all.
KEPT_FAILING_GROUPS = 100


class ExpectationResult(_Result):
    type: str
    column: str | None = None
    description: str | None = None  # the expectation's own ``description``, if the suite gave one
    outcome: Outcome
    observed_value: Scalar = None
    thresholds: list[Threshold] = []
    failing_groups: list[FailingGroup] = []
    reason: str | None = None
    # groups that failed beyond those listed: a verdict keeps at most KEPT_FAILING_GROUPS
    more_failing_groups: int = 0

    @property
    def failing_count(self) -> int:
        """How many groups failed (listed and not)."""
        return len(self.failing_groups) + self.more_failing_groups


class EvidenceResult(_Result):
    column: str
    observed_total: float | None
    min_total: Threshold
    sufficient: bool


class SideResult(_Result):
    """One side of a comparison check: its source, whether it answered, and its headline
    numbers (each compared value's total over the keys, or the sample count and summary)."""

    side: str
    source: str
    source_available: bool | None = None
    values: dict[str, float | None] = {}


class ReconcileRound(_Result):
    """One round of a reconciliation: the difference digests (``cells``: 3 × 2^``bits``
    cells asked, how many differed), the keys more than once on a side (``duplicates``),
    buckets asked about (0: every row) at ``bits`` bits of the key hash and how many differed,
    or the rows of differing keys or buckets fetched."""

    what: Literal["cells", "duplicates", "buckets", "rows"]
    bits: int
    asked: int
    differing: int
    transferred: dict[str, int]  # rows answered, per side
    # with a side's lag, the kinds this round's reconciliation counts (empty: every kind)
    decides: list[str] = []


class Reconciliation(_Result):
    """What a ``reconcile:`` check found, by key."""

    keys: list[str]
    hashing: str  # portable (MD5), clickhouse (cityHash64) or postgresql (hashtextextended)
    rows: dict[str, int]  # rows per side in the window
    missing: int  # keys on the first side only
    extra: int  # keys on the second side only
    changed: int  # keys on both sides with other values
    duplicated: int  # keys more than once on a side
    # a few keys of each kind: column → its canonical text (None: NULL), or {"key_md5": …}
    samples: dict[str, list[dict[str, str | None]]] = {}
    rounds: list[ReconcileRound] = []
    transferred: int = 0  # rows that crossed from both sides, every round
    capped: bool = False  # more differing rows than max_rows: the counts are lower bounds
    # the side read to the window's end plus its lag (rows written that long after the
    # other side's), and that lag; None: both sides cut by the window
    late: str | None = None
    lag: Duration | None = None


class SloWindow(_Result):
    """Good and total events in one window ending at the check's window end (corrections
    taken out), and the error budget's burn rate there (None: no events)."""

    length: Duration
    good: float
    total: float
    burn: float | None
    enough: bool  # at least the SLO's minimum of events
    recorded: bool = False  # the error ratio is a recording rule's (Sloth, Pyrra), not counted here


class BurnRateFinding(_Result):
    """One multiwindow burn-rate rule: it fires only when both windows burn faster than
    ``factor``; None when a window has too few events to say."""

    rule: str
    factor: float
    long: SloWindow
    short: SloWindow
    firing: bool | None


class SloCorrection(_Result):
    """A stretch left out of the budget (a maintenance window, an incident), as recorded."""

    start: Moment
    end: Moment
    reason: str
    by: str


class SloFindings(_Result):
    """What an ``slo:`` check found at its window's end."""

    objective: float  # percent of good events, e.g. 99.9
    window: SloWindow  # the SLO's window (a calendar SLO's: from its period's start)
    calendar: Literal["week", "month"] | None = None
    budget_remaining: float | None  # share of the window's budget left (negative: overspent)
    rules: list[BurnRateFinding] = []
    # the budget this phase consumed since it began (its earliest record in the SLO's window)
    phase_since: Moment | None = None
    phase_consumed: float | None = None
    # at the burn rate of the shortest long window: when the budget left would be gone
    exhaustion_s: float | None = None
    corrections: list[SloCorrection] = []
    min_events: float = 0


class GroupValue(_Result):
    """One group's value of a tracked column (None: no value in that group)."""

    group: dict[str, str]
    value: float | None


class Tracked(_Result):
    """The values of the column a bound from history judges, per group, kept in the record so
    later evaluations can learn from them."""

    column: str
    groups: list[GroupValue] = []
    # What produced the values (evaluation.plan.measure_of: the query, groups, window): a later
    # bound learns only from values measured the same way. '' before it was kept.
    measure: str = ""


class HistoryGroup(_Result):
    """One group judged against its history: the reference (baseline or the band's centre),
    the bounds, how many records it rests on."""

    group: dict[str, str]
    observed: float | None
    reference: float | None = None
    low: float | None = None
    high: float | None = None
    records: int = 0
    outcome: Outcome
    reason: str | None = None


class HistoryBound(_Result):
    """What a ``baseline`` or ``learned`` bound found: the rule in words, the records used (by
    ``as_of``) and those left out, and each group's judgement."""

    kind: Literal["baseline", "pinned", "learned"]
    column: str
    rule: str
    # the check's outcome before this bound: a baseline learns from evaluations that passed
    # apart from it (and that it did not fail), so a new baseline can start from none
    before: Outcome | None = None
    records: list[Moment] = []
    left_out: dict[str, int] = {}  # why → how many records (invalidated, rollback, waived, …)
    pinned_by: str | None = None
    groups: list[HistoryGroup] = []


class CheckResult(_Result):
    suite: str
    description: str = ""
    source: str
    role: Literal["required", "advisory", "rollback"]
    outcome: Outcome
    window: Window
    rows: int = 0
    # False when the source could not be reached or timed out, True when it answered (even
    # with a query error), None when it was not asked. Feeds gatecheck_source_up.
    source_available: bool | None = None
    evidence: EvidenceResult | None = None
    expectations: list[ExpectationResult] = []
    reason: str | None = None
    # A person's waiver covering this check's definite failure: it stays `fail`, with its
    # evidence, and does not block (never set on an inconclusive, errored or rollback check).
    waiver: Waiver | None = None
    # a comparison check's two sides (empty for a suite of one source), and a statistical
    # comparison's result in one sentence ("canary p95 340 ms vs baseline 210 ms, higher, p = 0.001")
    sides: list[SideResult] = []
    comparison: str | None = None
    reconciliation: Reconciliation | None = None
    slo: SloFindings | None = None
    # A shadow check (``enforce: false``): judged and recorded, never changing the verdict;
    # ``enforced_by`` names the recorded decision that turned a shadow check on.
    shadow: bool = False
    enforced_by: str | None = None
    # A check with accumulation rules (fail_after, pass_after): what this evaluation alone
    # measured (``outcome`` is then the accumulated one) and the rule's account of it.
    measured: Outcome | None = None
    accumulation: str | None = None
    # A probe's check (an http source): its evidence came from a synthetic request.
    synthetic: bool = False
    # A check with a bound from history: the tracked column's values, and the judgement.
    tracked: Tracked | None = None
    history: HistoryBound | None = None


def role_of(check: CheckResult) -> str:
    """The check's role as a reader sees it: ``required``, ``advisory``, ``rollback``, then
    ``shadow`` for a shadow check and ``synthetic`` for a probe (``rollback, synthetic``)."""
    return check.role + (", shadow" if check.shadow else "") + (", synthetic" if check.synthetic else "")


def blocking(check: CheckResult) -> bool:
    """Can this check change the verdict (a required or rollback check that is not a shadow)?"""
    return check.role != "advisory" and not check.shadow


class Requirement(_Result):
    """A phase this gate requires to have a recorded GO."""

    phase: str
    satisfied: bool
    reason: str


class Requester(_Result):
    """Who asked for an evaluation, when a rollout controller did: recorded with it, so a
    verdict can be tied to the canary revision it judged."""

    controller: Literal["flagger", "argo-rollouts"]
    name: str = ""
    namespace: str = ""
    # each controller's own fields, under their own names (none where it has no such thing)
    role: str | None = None  # Flagger's webhook type (rollout, confirm-promotion, rollback, ...)
    checksum: str | None = None  # Flagger's canary checksum
    revision: str | None = None  # Argo Rollouts' canary revision or pod-template hash
    # when the rollout began, as the request names it: an SLO's budget consumed is counted from it
    started: Moment | None = None

    @property
    def release(self) -> str | None:
        """The canary this request is for, as its controller names it (Flagger's checksum,
        Argo Rollouts' revision), or None: an approval naming a release holds only for it."""
        return self.checksum or self.revision or None


class Approval(_Result):
    """A gate's required approval: who approved, why and until when, or what is missing."""

    satisfied: bool
    reason: str
    by: str = ""
    at: Moment | None = None
    until: Moment | None = None


class SoakStatus(_Result):
    duration: Duration
    max_gap: Duration
    covered: bool
    assumed: bool = False  # covered only because --assume-soaked said so
    coverage: Duration = timedelta(0)  # how much of the duration passing evaluations cover
    covered_since: Moment | None = None
    last_failure: Moment | None = None
    # Of the coverage, how much rests on evaluations whose only failures were waived, and by which.
    under_waiver: Duration = timedelta(0)
    waivers: list[str] = []
    # Passing records in the soak's span that did not count: evaluated long after their as_of
    # (backdated, `run --as-of`) or dated ahead of their recording.
    backdated: int = 0
    # The newest evaluation judged by another definition of the gate (Project.gate_digest: its
    # checks, suites or thresholds), when one ends the run: evaluations up to it do not count.
    changed_at: Moment | None = None
    reason: str


class DeadlineStatus(_Result):
    """A gate's deadline on INCONCLUSIVE: since when the phase has been inconclusive (its
    evaluations in a row, this one included) and whether that is longer than allowed."""

    inconclusive_for: Duration
    then: Literal["no-go", "rollback", "notify"]
    since: Moment
    passed: bool


class Verdict(_Result):
    """The answer for one phase at one ``as_of``, with all its evidence."""

    phase: str
    environment: str
    description: str = ""
    as_of: Moment
    verdict: VerdictState
    reasons: list[str]
    checks: list[CheckResult]
    requires: list[Requirement] = []
    soak: SoakStatus | None = None
    config_hash: str
    # What judged this phase's checks (the gate, its suites, their thresholds): a soak counts
    # only evaluations with the same digest. '' in documents of versions before it.
    gate_digest: str = ""
    gatecheck_version: str
    # Set when a rollout controller's request started this evaluation.
    requested_by: Requester | None = None
    # The gate's `approval: required`: whether a recorded approval is in force.
    approval: Approval | None = None
    # The gate's deadline, set while the checks, requires and soak leave it inconclusive.
    deadline: DeadlineStatus | None = None

    def document(self) -> dict[str, Any]:
        """The stable JSON document (``--format json``)."""
        return self.model_dump(mode="json")


def checks_passed(verdict: Verdict) -> bool:
    """Every required check passed (or failed under a waiver) and no rollback suite failed
    (requires/soak aside)."""
    required = [c for c in verdict.checks if c.role == "required" and not c.shadow]
    rollback_failed = any(
        c.role == "rollback" and not c.shadow and c.outcome is Outcome.FAIL for c in verdict.checks
    )
    passed = all(c.outcome is Outcome.PASS or (c.outcome is Outcome.FAIL and c.waiver) for c in required)
    return bool(required) and passed and not rollback_failed


def checks_failed(verdict: Verdict) -> bool:
    """A required check failed (not under a waiver) or a rollback suite fired: a failure that
    restarts a soak."""
    return any(blocking(c) and c.outcome is Outcome.FAIL and c.waiver is None for c in verdict.checks)


def waived(verdict: Verdict) -> str:
    """The ids of the waivers this evaluation's checks passed under, comma-separated."""
    return ",".join(sorted({c.waiver.id for c in verdict.checks if c.waiver is not None}))


def with_kept_groups(check: CheckResult) -> CheckResult:
    """``check`` with at most ``KEPT_FAILING_GROUPS`` failing groups listed per expectation
    (the first, as judged), the others counted in ``more_failing_groups``."""
    if all(len(e.failing_groups) <= KEPT_FAILING_GROUPS for e in check.expectations):
        return check
    kept = [
        e
        if len(e.failing_groups) <= KEPT_FAILING_GROUPS
        else e.model_copy(
            update={
                "failing_groups": e.failing_groups[:KEPT_FAILING_GROUPS],
                "more_failing_groups": e.more_failing_groups + len(e.failing_groups) - KEPT_FAILING_GROUPS,
            }
        )
        for e in check.expectations
    ]
    return check.model_copy(update={"expectations": kept})
