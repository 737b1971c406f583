"""Renderings of a :class:`Verdict`: text (rich) and JSON. None computes anything new."""

from __future__ import annotations

import io
import json

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gatecheck.durations import format_duration
from gatecheck.gate import format_group
from gatecheck.results import CheckResult, Outcome, Threshold, Verdict, VerdictState

FORMATS = ("text", "json")

_VERDICT_STYLE = {
    VerdictState.GO: "bold green",
    VerdictState.NO_GO: "bold red",
    VerdictState.INCONCLUSIVE: "bold yellow",
    VerdictState.ROLLBACK: "bold white on red",
}
_OUTCOME_STYLE = {
    Outcome.PASS: "green",
    Outcome.FAIL: "red",
    Outcome.INCONCLUSIVE: "yellow",
    Outcome.ERROR: "magenta",
}


def render(verdict: Verdict, fmt: str, color: bool = False) -> str:
    if fmt == "json":
        return render_json(verdict)
    return render_text(verdict, color=color)


def render_json(verdict: Verdict) -> str:
    return json.dumps(verdict.document(), indent=2, ensure_ascii=False) + "\n"


def _time(moment: object) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")  # type: ignore[attr-defined]


def _threshold_text(threshold: Threshold) -> str:
    sign = {"max": "≤ ", "min": "≥ "}.get(threshold.bound or "", "")
    return f"{sign}{threshold.value} ({threshold.name}, {threshold.provenance})"


def _check_detail(check: CheckResult) -> list[str]:
    lines: list[str] = []
    if check.outcome is Outcome.PASS:
        for result in check.expectations:
            limits = ", ".join(_threshold_text(t) for t in result.thresholds)
            lines.append(f"{result.column or result.type}: worst {result.observed_value} {limits}".rstrip())
        if check.evidence is not None:
            lines.append(
                f"evidence: {check.evidence.column} = {check.evidence.observed_total:g}"
                if check.evidence.observed_total is not None
                else "evidence: none"
            )
        return lines
    if check.outcome is not Outcome.FAIL:
        return [check.reason or check.outcome.value]
    for result in check.expectations:
        if result.outcome is not Outcome.FAIL:
            continue
        limits = ", ".join(_threshold_text(t) for t in result.thresholds)
        lines.append(f"{result.column or result.type} must be {limits}")
        for group in result.failing_groups[:10]:
            lines.append(f"  {format_group(group.group)}: observed {group.observed_value}")
        if len(result.failing_groups) > 10:
            lines.append(f"  … and {len(result.failing_groups) - 10} more groups")
        if not result.failing_groups:
            lines.append(f"  observed {result.observed_value}")
    return lines


def render_text(verdict: Verdict, color: bool = False, width: int = 120) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False)
    header = Text()
    header.append(f"{verdict.verdict.value.upper()}", style=_VERDICT_STYLE[verdict.verdict])
    header.append(f"  phase {verdict.phase} ({verdict.environment}) as of {_time(verdict.as_of)}")
    console.print(header)
    if verdict.description:
        console.print(verdict.description, style="dim")
    table = Table(show_lines=False, expand=False)
    table.add_column("check")
    table.add_column("role")
    table.add_column("outcome")
    table.add_column("window (UTC)")
    table.add_column("detail", overflow="fold")
    for check in verdict.checks:
        window = (
            f"{_time(check.window.start)} → {_time(check.window.end)}\n"
            f"({format_duration(check.window.length)}, settle {format_duration(check.window.settle)})"
        )
        table.add_row(
            check.suite,
            check.role,
            Text(check.outcome.value, style=_OUTCOME_STYLE[check.outcome]),
            window,
            "\n".join(_check_detail(check)),
        )
    console.print(table)
    for requirement in verdict.requires:
        mark = "ok" if requirement.satisfied else "missing"
        console.print(f"requires {requirement.phase}: {mark} — {requirement.reason}")
    if verdict.soak is not None:
        console.print(f"soak {format_duration(verdict.soak.duration)}: {verdict.soak.reason}")
    console.print("why:", style="bold")
    for reason in verdict.reasons:
        console.print(f"  - {reason}")
    return buffer.getvalue()
