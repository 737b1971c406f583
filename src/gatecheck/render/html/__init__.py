"""The status pages: the phase chain (``GET /``) and one phase (``GET /phases/{phase}``, and
``gatecheck report --format html`` / ``run --format html`` as one file).

Server-rendered from the Jinja2 templates beside this module with autoescaping on: every
value from configuration, sources or the ledger is text, never markup. The stylesheet is
inlined and the charts are inline SVG drawn here, so a page needs no script and no other
file: an exported page opens offline. Each page also carries a Content-Security-Policy that
allows no script at all, so even a value that escaped escaping could not run.

Pure views of verdicts and ledger points, like every other rendering: nothing here judges,
queries or evaluates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from gatecheck._values import document_time, number, observed_number, shown, timestamp, unit_of
from gatecheck.config import GateConfig
from gatecheck.durations import format_duration
from gatecheck.render.describe import (
    format_group,
    history_lines,
    reconciliation_lines,
    rule_text,
    slo_card,
    slo_lines,
    split_reason,
    subject_of,
    threshold_text,
    waiver_text,
)
from gatecheck.results import CheckResult, Outcome, Verdict, VerdictState, Waiver

if TYPE_CHECKING:
    from gatecheck.ledger import Ledger

#: The words a verdict is shown with (never its colour alone).
VERDICT_WORDS = {
    VerdictState.GO: "GO",
    VerdictState.NO_GO: "NO-GO",
    VerdictState.INCONCLUSIVE: "INCONCLUSIVE",
    VerdictState.ROLLBACK: "ROLLBACK",
}
#: No script may run on a page, inline or fetched; styles are inline; forms post back here.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
#: At most this many recorded evaluations are drawn in a check's chart (the newest).
CHART_POINTS = 500
CHART_WIDTH, CHART_HEIGHT = 600, 70


@dataclass(frozen=True)
class Span:
    """A run of equal verdicts on a timeline, as percentages of its width."""

    verdict: VerdictState
    start: datetime
    end: datetime
    count: int
    x: float
    width: float

    @property
    def word(self) -> str:
        return VERDICT_WORDS[self.verdict]


@dataclass(frozen=True)
class Timeline:
    """Recorded verdicts of one phase over ``[since, until]``: runs of equal verdicts."""

    since: datetime
    until: datetime
    spans: list[Span]
    counts: dict[str, int]
    period: timedelta | None = None  # what the counts cover, when the bar starts later

    @property
    def length(self) -> str:
        return format_duration(self.period or self.until - self.since)

    @property
    def summary(self) -> str:
        if not self.spans:
            return f"no evaluation recorded in the last {self.length}"
        shown = ", ".join(f"{n} {VERDICT_WORDS[VerdictState(v)]}" for v, n in self.counts.items() if n)
        return f"last {self.length}: {shown}"


def timeline(points: Iterable[tuple[datetime, VerdictState]], since: datetime, until: datetime) -> Timeline:
    """The timeline of ``points`` (oldest first): each verdict holds from its ``as_of`` to the
    next one's (the last to ``until``); equal neighbours merge into one span."""
    inside = [(m, v) for m, v in points if since <= m <= until]
    period = until - since
    if inside and inside[0][0] > since:
        # Recorded for less than the period (a new service): the bar starts at the first
        # evaluation, so recent verdicts fill it instead of a sliver at its right end.
        since = inside[0][0]
    total = (until - since).total_seconds() or 1.0
    runs: list[list[Any]] = []  # [verdict, start, count]
    counts = {v.value: 0 for v in VerdictState}
    for moment, verdict in inside:
        counts[verdict.value] += 1
        if runs and runs[-1][0] is verdict:
            runs[-1][2] += 1
        else:
            runs.append([verdict, moment, 1])
    spans = []
    for k, (verdict, start, count) in enumerate(runs):
        end = runs[k + 1][1] if k + 1 < len(runs) else until
        x = (start - since).total_seconds() / total * 100
        width = max((end - start).total_seconds() / total * 100, 0.3)
        spans.append(Span(verdict, start, end, count, round(x, 3), round(width, 3)))
    return Timeline(since, until, spans, counts, period)


#: An expectation's outcome, most urgent first (a check's failing expectation leads its table).
_URGENCY = (Outcome.FAIL, Outcome.ERROR, Outcome.INCONCLUSIVE, Outcome.PASS)

#: How a check stands on a page, most urgent first: what a reader must see first.
STANDINGS = ("rollback", "blocking", "error", "inconclusive", "waived", "advisory", "shadow", "passed")
#: The badge each standing is shown with (never its colour alone).
STANDING_WORDS = {
    "rollback": "ROLLBACK",
    "blocking": "FAIL",
    "error": "ERROR",
    "inconclusive": "INCONCLUSIVE",
    "waived": "WAIVED FAIL",
    "advisory": "ADVISORY FAIL",
    "shadow": "SHADOW FAIL",
    "passed": "PASS",
}


def standing(check: CheckResult) -> str:
    """Where ``check`` stands: a rollback trigger that fired, a failure that blocks, an error, an
    inconclusive check, a failure under a waiver, an advisory failure (neither blocks), or a pass."""
    if check.outcome is Outcome.FAIL:
        if check.shadow:
            return "shadow"
        if check.role == "rollback":
            return "rollback"
        if check.waiver is not None:
            return "waived"
        return "advisory" if check.role == "advisory" else "blocking"
    if check.outcome is Outcome.ERROR:
        return "error"
    if check.outcome is Outcome.INCONCLUSIVE:
        return "inconclusive"
    return "passed"


def ordered_checks(verdict: Verdict) -> list[tuple[str, CheckResult]]:
    """The checks in the order a reader needs them: by :data:`STANDINGS`, then as configured."""
    ranked = [(standing(c), c) for c in verdict.checks]
    return sorted(ranked, key=lambda pair: STANDINGS.index(pair[0]))


def headline(check: CheckResult) -> str:
    """A check's one line: for a failure its first failing expectation — the group, the
    observed value, the rule and where the threshold came from; otherwise its reason."""
    for result in check.expectations:
        if result.outcome is not Outcome.FAIL:
            continue
        unit = unit_of(result.column)
        rule = rule_text(result.thresholds, unit) or result.type
        if result.failing_groups:
            group = result.failing_groups[0]
            more = result.failing_count - 1
            where = format_group(group.group)
            extra = f" (and {more} more group{'s' if more > 1 else ''})" if more else ""
            observed = shown(group.observed_value, unit)
            return f"{subject_of(result)} {observed} at {where}{extra} — must be {rule}"
        return f"{subject_of(result)} {shown(result.observed_value, unit)} — must be {rule}"
    return check.reason or check.outcome.value


@dataclass(frozen=True)
class Chart:
    """One expectation's observed value over recorded evaluations against its threshold, as
    an SVG polyline in a ``CHART_WIDTH`` × ``CHART_HEIGHT`` box (y grows downwards)."""

    title: str
    line: str  # "x,y x,y …"
    failing: list[tuple[float, float]]
    markers: list[tuple[float, float]]  # every point, when there are few enough to mark
    threshold_y: float | None
    threshold: str
    low: str
    high: str
    since: datetime
    until: datetime
    points: int


def check_charts(history: Sequence[Verdict], suite: str) -> list[Chart]:
    """A chart per expectation of ``suite`` over the recorded verdicts (oldest first): its
    observed value at each evaluation against the numeric threshold of the latest one."""
    series: dict[str, list[tuple[datetime, float, bool]]] = {}
    bounds: dict[str, tuple[float | None, str]] = {}
    for verdict in history[-CHART_POINTS:]:
        check = next((c for c in verdict.checks if c.suite == suite), None)
        if check is None:
            continue
        for expectation in check.expectations:
            value = observed_number(expectation.observed_value)
            key = subject_of(expectation)
            if value is None:
                continue
            series.setdefault(key, []).append((verdict.as_of, value, expectation.outcome is Outcome.FAIL))
            numeric = next((t for t in expectation.thresholds if observed_number(t.value) is not None), None)
            bounds[key] = (
                observed_number(numeric.value) if numeric else None,
                threshold_text(numeric, unit_of(expectation.column)) if numeric else "",
            )
    # one evaluation draws no line: a chart begins with the second
    return [_chart(key, points, *bounds[key]) for key, points in series.items() if len(points) > 1]


def _chart(
    title: str, points: list[tuple[datetime, float, bool]], limit: float | None, limit_text: str
) -> Chart:
    values = [v for _, v, _ in points] + ([limit] if limit is not None else [])
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 1, high + 1
    since, until = points[0][0], points[-1][0]
    span = (until - since).total_seconds() or 1.0

    def xy(moment: datetime, value: float) -> tuple[float, float]:
        x = (moment - since).total_seconds() / span if len(points) > 1 else 0.5
        y = 1 - (value - low) / (high - low)
        return round(6 + x * (CHART_WIDTH - 12), 1), round(5 + y * (CHART_HEIGHT - 10), 1)

    placed = [xy(m, v) for m, v, _ in points]
    return Chart(
        title=title,
        line=" ".join(f"{x},{y}" for x, y in placed),
        failing=[p for p, (_, _, bad) in zip(placed, points, strict=True) if bad],
        markers=placed if len(placed) <= 60 else [],
        threshold_y=xy(since, limit)[1] if limit is not None else None,
        threshold=limit_text,
        low=number(low),
        high=number(high),
        since=since,
        until=until,
        points=len(points),
    )


@dataclass(frozen=True)
class PhaseInfo:
    """What a page says of a phase's gate (from its configuration, or from a verdict alone
    when a report is rendered without the project)."""

    phase: str
    environment: str
    description: str = ""
    requires: tuple[str, ...] = ()

    @classmethod
    def of(cls, gate: GateConfig) -> PhaseInfo:
        return cls(gate.phase, gate.environment, " ".join(gate.description.split()), tuple(gate.requires))

    @classmethod
    def of_verdict(cls, verdict: Verdict) -> PhaseInfo:
        return cls(
            verdict.phase,
            verdict.environment,
            " ".join(verdict.description.split()),
            tuple(r.phase for r in verdict.requires),
        )


@dataclass(frozen=True)
class Card:
    """One phase of the chain as the chain page shows it."""

    gate: PhaseInfo
    verdict: Verdict | None
    timeline: Timeline
    last_error: str | None = None
    next: bool = False
    # the latest verdict is older than its schedule allows (``overdue_text``), or None
    overdue: str | None = None
    # a person's decision took the latest verdict back since (``withdrawn_text``), or None
    withdrawn: str | None = None


@dataclass(frozen=True)
class PhasePage:
    """Everything one phase's page shows."""

    gate: PhaseInfo
    verdict: Verdict | None
    timeline: Timeline
    history: Sequence[Verdict] = ()
    waivers: list[Waiver] = field(default_factory=list)
    last_error: str | None = None
    overdue: str | None = None  # as on the chain page's card
    withdrawn: str | None = None  # as on the chain page's card


@cache
def _environment() -> Any:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("gatecheck.render.html", "templates"),
        autoescape=True,  # every template: values are text, never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals.update(
        words=VERDICT_WORDS,
        duration=format_duration,
        group_text=format_group,
        threshold_text=threshold_text,
        rule_text=rule_text,
        split_reason=split_reason,
        reconciliation_lines=reconciliation_lines,
        slo_lines=slo_lines,
        history_lines=history_lines,
        slo_card=slo_card,
        by_urgency=lambda results: sorted(results, key=lambda r: _URGENCY.index(r.outcome)),
        subject_of=subject_of,
        waiver_text=waiver_text,
        standing_words=STANDING_WORDS,
        ordered_checks=ordered_checks,
        headline=headline,
        iso=_iso,
        exact=document_time,
        shown=shown,
        unit_of=unit_of,
        ago=_ago,
        csp=CONTENT_SECURITY_POLICY,
        chart_width=CHART_WIDTH,
        chart_height=CHART_HEIGHT,
        css=_stylesheet(),
    )
    return environment


def _stylesheet() -> str:
    return resources.files("gatecheck.render.html").joinpath("style.css").read_text(encoding="utf-8")


def _iso(moment: datetime | None) -> str:
    return "—" if moment is None else timestamp(moment)


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return ""
    delta = now - moment
    if delta < timedelta(0):
        return "in the future"
    if delta < timedelta(seconds=60):
        return "just now"
    return f"{format_duration(timedelta(minutes=int(delta.total_seconds() // 60)))} ago"


def soak_percent(verdict: Verdict | None) -> float | None:
    """How much of the soak is covered, 0..100 (None without a soak)."""
    if verdict is None or verdict.soak is None:
        return None
    soak = verdict.soak
    if soak.assumed or soak.covered:
        return 100.0
    total = soak.duration.total_seconds()
    return round(min(soak.coverage.total_seconds() / total * 100, 100.0), 1) if total else 100.0


def render_chain(cards: list[Card], now: datetime, refresh_s: float | None, title: str = "gatecheck") -> str:
    """The chain page: every phase in promotion order, the next one to clear marked."""
    return str(
        _environment()
        .get_template("chain.html.j2")
        .render(cards=cards, now=now, refresh=_refresh(refresh_s), title=title, soak_percent=soak_percent)
    )


def render_phase(page: PhasePage, now: datetime, refresh_s: float | None, *, export: bool = False) -> str:
    """A phase's page; ``export``: one file for CI (no refresh, no links to the service)."""
    charts = {}
    if page.verdict is not None:
        charts = {c.suite: check_charts(page.history, c.suite) for c in page.verdict.checks}
    return str(
        _environment()
        .get_template("phase.html.j2")
        .render(
            page=page,
            gate=page.gate,
            verdict=page.verdict,
            charts=charts,
            now=now,
            refresh=None if export else _refresh(refresh_s),
            export=export,
            soak_percent=soak_percent,
        )
    )


def render_login(next_path: str, failed: bool) -> str:
    """The form that takes the service's token once for this browser session."""
    return str(
        _environment().get_template("login.html.j2").render(next=next_path, failed=failed, refresh=None)
    )


def _refresh(seconds: float | None) -> int | None:
    return None if seconds is None else max(5, round(seconds))


# ---------------------------------------------------------------- reading what a page shows
# (blocking ledger reads: the service calls these in a thread)

#: A timeline shows at least this much, or the phase's soak duration if longer.
TIMELINE_PERIOD = timedelta(hours=48)


def timeline_period(gate: GateConfig) -> timedelta:
    """How far back a phase's timeline reaches: 48h, or its soak duration if longer."""
    return max(TIMELINE_PERIOD, gate.soak.duration) if gate.soak is not None else TIMELINE_PERIOD


def read_timeline(ledger: Ledger, gate: GateConfig, now: datetime) -> Timeline:
    """The phase's recorded verdicts over its timeline period (stored columns only)."""
    since = now - timeline_period(gate)
    return timeline(ledger.timeline(gate.phase, since, now), since, now)


def read_phase_page(
    ledger: Ledger, gate: GateConfig, verdict: Verdict | None, now: datetime, last_error: str | None = None
) -> PhasePage:
    """A phase's page from ``verdict`` (default: the ledger's latest) and the ledger: its
    timeline, the verdicts its charts draw, and the waivers in force now."""
    from gatecheck.ledger.audit import waivers_at

    since = now - timeline_period(gate)
    records = ledger.history(gate.phase, since=since, until=now, newest=CHART_POINTS)
    history = [r.to_verdict() for r in records]
    if verdict is None and history:
        verdict = history[-1]
    elif verdict is None:  # none within the timeline's period: the latest recorded, however old
        verdict = ledger.latest_verdict(gate.phase, until=now)
    elif verdict is not None and not any(v.as_of == verdict.as_of for v in history):
        history.append(verdict)  # not recorded (`run --no-record`): still drawn
    trail = ledger.audit([gate.phase], None, ["waiver-created", "waiver-revoked"])
    return PhasePage(
        gate=PhaseInfo.of(gate),
        verdict=verdict,
        timeline=timeline(ledger.timeline(gate.phase, since, now), since, now),
        history=history,
        waivers=waivers_at(trail, gate.phase, now),
        last_error=last_error,
    )


def render_verdict_page(verdict: Verdict, page: PhasePage | None = None) -> str:
    """One verdict's phase page as one file (``run --format html``): with ``page`` (read from
    the ledger) its history too, else the verdict alone."""
    if page is None:
        since = verdict.as_of - TIMELINE_PERIOD
        page = PhasePage(
            gate=PhaseInfo.of_verdict(verdict),
            verdict=verdict,
            timeline=timeline([(verdict.as_of, verdict.verdict)], since, verdict.as_of),
            history=[verdict],
        )
    return render_phase(page, datetime.now(UTC), None, export=True)
