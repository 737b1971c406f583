"""Views over recorded verdicts: the chain at a glance (``status``) and the Phase B status
update (``report``). Both only read verdicts; neither judges anything of its own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gatecheck._values import document_time, observed_number, shown, timestamp, unit_of
from gatecheck.durations import format_duration
from gatecheck.render.describe import rule_text, waiver_text
from gatecheck.render.verdict import markdown_text as md
from gatecheck.results import ExpectationResult, Outcome, Verdict, VerdictState, blocking, role_of


@dataclass(frozen=True)
class PhaseStatus:
    phase: str
    environment: str
    requires: list[str]
    verdict: Verdict | None
    # a running service's word that this scheduled phase's latest verdict is older than its
    # schedule allows (``overdue: scheduled every 5m, the latest 3h ago``); a ledger cannot say
    overdue: str | None = None
    # a person's decision took the latest verdict back since (``withdrawn_text``), or None
    withdrawn: str | None = None

    @property
    def state(self) -> str:
        if self.verdict is None:
            return "never evaluated"
        waivers = sorted({c.waiver.id for c in self.verdict.checks if c.waiver is not None})
        state = self.verdict.verdict.value + (f" (waived {', '.join(waivers)})" if waivers else "")
        return state + (" (overdue)" if self.overdue else "") + (" (withdrawn)" if self.withdrawn else "")

    @property
    def standing_go(self) -> bool:
        """Whether the latest verdict is a GO nobody has taken back."""
        return self.verdict is not None and self.verdict.verdict is VerdictState.GO and not self.withdrawn

    @property
    def soak(self) -> str:
        if self.verdict is None or self.verdict.soak is None:
            return ""
        soak = self.verdict.soak
        if soak.assumed:
            return "assumed"
        return f"{format_duration(soak.coverage)} of {format_duration(soak.duration)}"

    @property
    def blocked_by(self) -> str:
        if self.verdict is None:
            return "no evaluation recorded yet"
        if self.verdict.verdict is VerdictState.GO:
            return ""
        return self.verdict.reasons[0] if self.verdict.reasons else self.verdict.verdict.value

    @property
    def first_note(self) -> str:
        """What a reader must know of it first: what blocks it, or that its GO was taken back
        or is overdue."""
        if self.blocked_by:
            return self.blocked_by
        if self.withdrawn:
            return f"{self.withdrawn}: this GO no longer holds"
        return f"{self.overdue}: this GO may no longer hold" if self.overdue else ""

    def document(self, next_phase: str | None) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "environment": self.environment,
            "requires": self.requires,
            "verdict": self.verdict.verdict.value if self.verdict else None,
            "as_of": document_time(self.verdict.as_of) if self.verdict else None,
            "soak_coverage_s": self.verdict.soak.coverage.total_seconds()
            if self.verdict and self.verdict.soak
            else None,
            "blocked_by": self.blocked_by or None,
            "overdue": self.overdue,
            "withdrawn": self.withdrawn,
            "next": self.phase == next_phase,
        }


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def next_phase(chain: list[PhaseStatus]) -> str | None:
    """The first phase, in promotion order, whose latest verdict is not a GO that stands."""
    for status in chain:
        if not status.standing_go:
            return status.phase
    return None


def render_status(chain: list[PhaseStatus], now: datetime) -> str:
    upcoming = next_phase(chain)
    rows = [("", "phase", "env", "verdict", "as of", "soak", "blocked by")]
    for status in chain:
        when = timestamp(status.verdict.as_of) if status.verdict else "—"
        rows.append(
            (
                "→" if status.phase == upcoming else "",
                status.phase,
                status.environment,
                status.state,
                when,
                status.soak,
                _clip(status.first_note, 140),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1] for r in rows
    ]
    footer = f"next: {upcoming}" if upcoming else "every phase of the chain is GO"
    overdue = [status.phase for status in chain if status.overdue]
    if overdue:  # a GO of a schedule that stopped is no GO now
        footer += f"; overdue: {', '.join(overdue)}"
    return "\n".join(line.rstrip() for line in lines) + f"\n\n{footer} (as of {timestamp(now)})\n"


# --------------------------------------------------------------------------- the status update

#: (label, column, target text from its threshold, how to show the value)
_INDICATORS = (
    ("Messages on AA_CORE_HOT", "core_hot_share", "percent"),
    ("DLQ rate (per min, sustained 5m)", "dlq_per_min_sustained", "number"),
    ("DLQ messages in the window", "dlq_messages", "number"),
    ("Success rate", "success_ratio", "percent"),
    ("Fallback events", "fallback_events", "number"),
    ("p95 latency (ms)", "p95_latency_ms", "number"),
)


def find_expectation(verdict: Verdict, column: str) -> ExpectationResult | None:
    for check in verdict.checks:
        for expectation in check.expectations:
            if expectation.column == column:
                return expectation
    return None


def _show(value: Any, kind: str) -> str:
    if value is None:
        return "no data"
    return shown(value, "%" if kind == "percent" else "")


def _target(expectation: ExpectationResult, kind: str) -> str:
    parts = []
    for threshold in expectation.thresholds:
        sign = {"min": "≥", "max": "≤"}.get(threshold.bound or "", "")
        parts.append(f"{sign} {_show(threshold.value, kind)}".strip())
    return ", ".join(parts) or "—"


def render_status_update(verdict: Verdict, chain: list[PhaseStatus], now: datetime) -> str:
    """The Phase B runbook's status update for one phase, as Markdown."""
    passed = [c for c in verdict.checks if c.outcome is Outcome.PASS]
    issues = [
        c for c in verdict.checks
        if (not blocking(c) and c.outcome is not Outcome.PASS)
        or (blocking(c) and c.outcome in (Outcome.INCONCLUSIVE, Outcome.ERROR))
    ]  # fmt: skip
    blockers = [c for c in verdict.checks if blocking(c) and c.outcome is Outcome.FAIL and c.waiver is None]
    waived = [c for c in verdict.checks if c.waiver is not None]
    own = next((s for s in chain if s.phase == verdict.phase and s.verdict == verdict), None)
    withdrawn = own.withdrawn if own is not None else None  # a person took this verdict back since
    taken_back = (
        [f"- this {verdict.verdict.value.upper()} no longer holds: {md(withdrawn)}"] if withdrawn else []
    )
    step = " ".join(verdict.description.split()) or verdict.phase
    role_name = {"rollback": "rollback trigger", "required": "required", "advisory": "advisory"}
    issue_lines = [
        *[
            f"- `{c.suite}` ({role_of(c)}): {c.outcome.value} — {md(c.reason or '')}".rstrip(" —")
            for c in issues
        ],
        *([f"- soak: {md(verdict.soak.reason)}"] if verdict.soak and not verdict.soak.covered else []),
        *[f"- requires {r.phase}: {md(r.reason)}" for r in verdict.requires if not r.satisfied],
        *[f"- `{c.suite}` failed, ⚠️ {md(waiver_text(c) or '')}" for c in waived],
        *[f"- approval: {md(a.reason)}" for a in [verdict.approval] if a is not None and not a.satisfied],
    ]
    lines = [
        f"## {_title(verdict)} — {verdict.phase}",
        "",
        f"**Date/Time:** {timestamp(now)} (evaluation as of {timestamp(verdict.as_of)})",
        f"**Phase:** {verdict.phase} ({verdict.environment})",
        f"**Current step:** {step} — verdict **{verdict.verdict.value.upper()}**",
        "",
        "### ✅ Completed",
        # A suite that is both a required check and a rollback trigger is listed once per role.
        *([f"- `{c.suite}` passed ({role_name.get(c.role, c.role)})" for c in passed] or ["- nothing yet"]),
        "",
        "### ⚠️ Issues",
        *(issue_lines or ["- none"]),
        "",
        "### 🔴 Blockers",
        *(
            [
                *taken_back,
                *[f"- `{c.suite}` ({role_name.get(c.role, c.role)}): {md(c.reason or '')}" for c in blockers],
            ]
            or ["- none"]
        ),
        "",
    ]  # fmt: skip
    metrics = _metrics(verdict)
    if metrics:
        lines += ["### 📊 Metrics", "", "| Metric | Target | Current |", "|---|---|---|", *metrics, ""]
    upcoming = next_phase(chain)
    lines += ["### Next steps"]
    if withdrawn:
        lines.append(f"- hold `{verdict.phase}`: its latest GO was taken back; it needs a newer one")
    elif verdict.verdict is VerdictState.GO:
        after = _after(chain, verdict.phase)
        lines.append(f"- promote: `{verdict.phase}` is GO" + (f"; next phase `{after}`" if after else ""))
    elif verdict.verdict is VerdictState.ROLLBACK:
        lines.append(f"- roll back `{verdict.phase}` now: {md(verdict.reasons[0])}")
    else:
        lines.append(f"- hold `{verdict.phase}`: " + "; ".join(md(r) for r in verdict.reasons))
    if upcoming and upcoming != verdict.phase:
        lines.append(f"- the chain's next phase to clear: `{upcoming}`")
    return "\n".join(lines) + "\n"


def _title(verdict: Verdict) -> str:
    """The Phase B runbook's heading where the verdict judges its soak criteria (the reference
    project); a plain status update for any other project."""
    return "Phase B status update" if find_expectation(verdict, "core_hot_share") else "Status update"


def _metrics(verdict: Verdict) -> list[str]:
    """The Metrics table's rows: the Phase B runbook's indicators where the verdict has them;
    otherwise every expectation with a numeric observed value and a bound, by the one number
    formatter. None at all: no table (never an empty one)."""
    rows = []
    for label, column, kind in _INDICATORS:
        expectation = find_expectation(verdict, column)
        if expectation is not None:
            current = _show(expectation.observed_value, kind)
            rows.append(f"| {label} | {md(_target(expectation, kind))} | {md(current)} |")
    if rows:
        return rows
    for check in verdict.checks:
        for expectation in check.expectations:
            bounded = [t for t in expectation.thresholds if t.bound]
            if not bounded or observed_number(expectation.observed_value) is None:
                continue
            unit = unit_of(expectation.column)
            label = f"`{check.suite}` {expectation.column or expectation.type}"
            current = shown(expectation.observed_value, unit)
            rows.append(f"| {label} | {md(rule_text(bounded, unit))} | {md(current)} |")
    return rows


def _after(chain: list[PhaseStatus], phase: str) -> str | None:
    names = [s.phase for s in chain]
    if phase in names and names.index(phase) + 1 < len(names):
        following = chain[names.index(phase) + 1]
        return following.phase if phase in following.requires else None
    return None
