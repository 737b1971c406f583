"""A backtest report as text (``gatecheck backtest``) and as a chart (``--chart``: Altair,
one page that opens offline)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from gatecheck._values import observed_number, shown, unit_of, utc_minute
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
            worst = shown(check.worst_observed, unit_of(check.worst_column))
            lines.append(f"  worst: {worst} ({group}) at {utc_minute(check.worst_as_of)}")
        for d in check.distributions:
            if d.steps:
                unit = unit_of(d.column)
                lines.append(
                    f"  {d.column}: min {shown(d.min, unit)}, p50 {shown(d.p50, unit)}, "
                    f"p95 {shown(d.p95, unit)}, max {shown(d.max, unit)} "
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
        if report.check_flips:
            lines.append(f"  checks that change at {len(report.check_flips)} steps whose verdict stays:")
            for flip in report.check_flips:
                lines.append(f"  {utc_minute(flip.as_of)}  {flip.verdict.value} (stays)")
                lines += [f"    {change}" for change in flip.changes]
    return "\n".join(lines) + "\n"


def chart_page(report: BacktestReport) -> str:
    """A self-contained HTML page (Vega-Lite through altair, its scripts inlined: it opens
    offline): a panel per expectation, each with its own time axis (UTC, 24-hour). A numeric
    expectation draws its observed value over time against its threshold line; a categorical
    one (``present``, a value set) draws its outcome at each step. Points are coloured by the
    expectation's own outcome (a passing expectation of a failing check is green); steps that
    were not judged are shaded."""
    import altair as alt
    import pandas as pd

    step = timedelta(seconds=report.step)
    colors = alt.Scale(
        domain=["pass", "fail", "inconclusive", "error"], range=["#2e7d32", "#c62828", "#f9a825", "#6d4c41"]
    )
    # Vega-Lite reads times in the browser's zone unless told: UTC scale and UTC labels.
    # (the axis labels' UTC format is configured once, below, for every panel)
    time: dict[str, Any] = {"title": "as of (UTC)", "scale": alt.Scale(type="utc")}
    when = alt.Tooltip("as_of:T", format="%Y-%m-%dT%H:%MZ", formatType="utc")
    panels = []
    for summary in report.checks:
        for distribution in summary.distributions:
            rows = []
            for item in report.steps:
                check = next(c for c in item.checks if c.suite == summary.suite)
                outcome = check.outcomes.get(distribution.column, check.outcome)
                rows.append(
                    {
                        "as_of": item.as_of,
                        "end": item.as_of + step,
                        "value": observed_number(check.observed.get(distribution.column)),
                        "shown": shown(check.observed.get(distribution.column)),
                        "outcome": outcome.value,
                        "threshold": distribution.bounds[0] if distribution.bounds else None,
                        "not_judged": outcome in (Outcome.INCONCLUSIVE, Outcome.ERROR),
                    }
                )
            base = alt.Chart(pd.DataFrame(rows))
            shade = base.transform_filter("datum.not_judged").mark_rect(opacity=0.15, color="#f9a825")
            title = f"{summary.suite}: {distribution.column}"
            if distribution.steps:  # numeric: the value over time against the threshold
                tip = [when, "shown:N", "outcome:N"]
                layer = alt.layer(
                    shade.encode(x=alt.X("as_of:T", **time), x2="end:T"),
                    base.mark_line(color="#1565c0").encode(
                        x=alt.X("as_of:T", **time), y=alt.Y("value:Q", title="observed")
                    ),
                    base.mark_point(filled=True, size=40).encode(
                        x=alt.X("as_of:T", **time),
                        y="value:Q",
                        color=alt.Color("outcome:N", scale=colors, title="expectation"),
                        tooltip=tip,
                    ),
                    base.mark_rule(strokeDash=[6, 4], color="#c62828").encode(y="threshold:Q"),
                )
                height = 150
            else:  # categorical: the outcome at each step
                title += f" ({distribution.expectation}: outcome per step)"
                layer = alt.layer(
                    base.mark_rect().encode(
                        x=alt.X("as_of:T", **time),
                        x2="end:T",
                        color=alt.Color("outcome:N", scale=colors, title="expectation"),
                        tooltip=[when, "outcome:N"],
                    )
                )
                height = 28
            panels.append(layer.properties(width=720, height=height, title=title))
    chart = (
        alt.vconcat(*panels)
        .resolve_scale(color="shared")
        .properties(title=f"gatecheck backtest: {report.phase}, {len(report.steps)} steps")
        .configure_axisTemporal(format="%m-%d %H:%M", formatType="utc", labelAngle=0)
    )
    # The specification is inlined in a <script> as JSON, and altair writes it as json.dumps
    # does: a "</script>" in an observed value (the most common value of a column, from the
    # warehouse) ended the chart's script and ran what followed in the reader's browser.
    return str(chart.to_html(inline=True, json_kwds={"cls": ScriptSafeJSON}))


class ScriptSafeJSON(json.JSONEncoder):
    """JSON that can stand inside an HTML ``<script>``: ``<``, ``>`` and ``&`` (and the two
    line separators JavaScript once read as line ends) written as ``\\uXXXX`` escapes. They
    occur only inside strings in JSON, so the value read back is the same."""

    _UNSAFE = str.maketrans(
        {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
    )

    def iterencode(self, o: Any, _one_shot: bool = False) -> Iterator[str]:
        for chunk in super().iterencode(o, _one_shot):
            yield chunk.translate(self._UNSAFE)
