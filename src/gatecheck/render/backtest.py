"""A backtest report as text (``gatecheck backtest``) and as a chart (``--chart``: Altair,
one page that opens offline)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from gatecheck._values import observed_number, utc_minute
from gatecheck.durations import format_duration
from gatecheck.evaluation.backtest import BacktestReport
from gatecheck.results import Outcome


def render_backtest(report: BacktestReport) -> str:
    """The report as text: the gate's verdicts, then each check."""
    step = format_duration(timedelta(seconds=report.step))
    lines = [
        f"backtest of {report.phase}: {len(report.steps)} steps of {step} from {utc_minute(report.since)} "
        f"to {utc_minute(report.until)} (nothing recorded; requires and soak not judged)",
        "verdicts: " + ", ".join(f"{k} {v}" for k, v in report.verdicts.items()),
    ]
    for check in report.checks:
        lines += [
            "",
            f"{check.suite} ({check.role}): pass {check.passed}, fail {check.failed}, "
            f"inconclusive {check.inconclusive}, error {check.errored}",
        ]
        if check.failed:
            lines.append(
                f"  failing from {utc_minute(check.first_failing)} to {utc_minute(check.last_failing)}; "
                "longest stretch "
                f"{check.longest_failing_steps} steps from {utc_minute(check.longest_failing_from)}"
            )
        if check.not_judged:
            lines.append(f"  not judged: {check.not_judged}")
        if check.worst_observed is not None:
            group = ", ".join(f"{k}={v}" for k, v in check.worst_group.items()) or "overall"
            lines.append(f"  worst: {check.worst_observed} ({group}) at {utc_minute(check.worst_as_of)}")
        for d in check.distributions:
            if d.steps:
                lines.append(
                    f"  {d.column}: min {d.min:g}, p50 {d.p50:g}, p95 {d.p95:g}, max {d.max:g} "
                    f"against {d.threshold or d.expectation} ({d.steps} steps)"
                )
    if report.flips is not None:
        lines += [
            "",
            "what-if: " + ", ".join(f"{k} {v}" for k, v in (report.proposed_verdicts or {}).items()),
        ]
        if not report.flips:
            lines.append("  no step's verdict changes")
        for flip in report.flips:
            lines.append(f"  {utc_minute(flip.as_of)}  {flip.verdict.value} → {flip.proposed.value}")
            lines += [f"    {change}" for change in flip.changes]
    return "\n".join(lines) + "\n"


def write_chart(report: BacktestReport, path: Path) -> None:
    """A self-contained HTML page (Vega-Lite through altair, its scripts inlined: it opens
    offline): per expectation, the observed value over time against its threshold line,
    failing steps marked, steps that were not judged shaded."""
    import altair as alt
    import pandas as pd

    step = timedelta(seconds=report.step)
    rows = []
    for summary in report.checks:
        for distribution in summary.distributions:
            panel = f"{summary.suite}: {distribution.column}"
            for item in report.steps:
                check = next(c for c in item.checks if c.suite == summary.suite)
                value = observed_number(check.observed.get(distribution.column))
                rows.append(
                    {
                        "panel": panel,
                        "as_of": item.as_of,
                        "end": item.as_of + step,
                        "value": value,
                        "outcome": check.outcome.value,
                        "threshold": distribution.bounds[0] if distribution.bounds else None,
                        "not_judged": check.outcome in (Outcome.INCONCLUSIVE, Outcome.ERROR),
                    }
                )
    frame = pd.DataFrame(rows)
    base = alt.Chart(frame)
    colors = alt.Scale(
        domain=["pass", "fail", "inconclusive", "error"], range=["#2e7d32", "#c62828", "#f9a825", "#6d4c41"]
    )
    layers = alt.layer(
        base.transform_filter("datum.not_judged")
        .mark_rect(opacity=0.15, color="#f9a825")
        .encode(x="as_of:T", x2="end:T"),
        base.mark_line(color="#1565c0").encode(
            x=alt.X("as_of:T", title="as of (UTC)"), y=alt.Y("value:Q", title="observed")
        ),
        base.mark_point(filled=True, size=40).encode(
            x="as_of:T",
            y="value:Q",
            color=alt.Color("outcome:N", scale=colors),
            tooltip=["as_of:T", "value:Q", "outcome:N"],
        ),
        base.mark_rule(strokeDash=[6, 4], color="#c62828").encode(y="threshold:Q"),
    )
    chart = (
        layers.properties(width=720, height=160)
        .facet(row=alt.Row("panel:N", title=None))
        .resolve_scale(y="independent")
        .properties(title=f"gatecheck backtest: {report.phase}, {len(report.steps)} steps")
    )
    chart.save(str(path), inline=True)
