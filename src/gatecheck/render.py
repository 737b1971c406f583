"""Renderings of a :class:`Verdict`: text (rich) and JSON. None computes anything new."""

from __future__ import annotations

import io
import json

from rich.console import Console
from rich.text import Text

from gatecheck.durations import format_duration
from gatecheck.gate import describe_failure, subject_of, threshold_text
from gatecheck.results import CheckResult, Outcome, Verdict, VerdictState

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


def _evidence_text(check: CheckResult) -> str:
    evidence = check.evidence
    if evidence is None:
        return f"{check.rows} rows"
    observed = "none" if evidence.observed_total is None else f"{evidence.observed_total:g}"
    minimum = evidence.min_total.value
    shown = f"{minimum:g}" if isinstance(minimum, int | float) else minimum
    return f"{evidence.column} {observed} (min {shown})"


def _check_detail(check: CheckResult) -> list[str]:
    lines: list[str] = []
    if check.outcome in (Outcome.ERROR, Outcome.INCONCLUSIVE) and check.reason:
        lines.append(check.reason)
    for result in check.expectations:
        limits = ", ".join(threshold_text(t) for t in result.thresholds)
        subject = subject_of(result)
        if result.outcome is Outcome.FAIL:
            rule = f"must be {limits}" if result.thresholds else f"fails {result.type}"
            lines.append(f"{subject} {rule}")
            for group in result.failing_groups[:10]:
                lines.append(f"  {describe_failure(group)}")
            if len(result.failing_groups) > 10:
                lines.append(f"  … and {len(result.failing_groups) - 10} more groups")
            if not result.failing_groups:
                lines.append(f"  observed {result.observed_value}")
        elif result.outcome is Outcome.PASS and any(t.bound for t in result.thresholds):
            lines.append(f"{subject}: worst {result.observed_value}, {limits}")
        elif result.outcome is Outcome.PASS:
            lines.append(f"{subject}: ok ({limits or result.type})")
        elif check.outcome is not Outcome.ERROR or result.outcome is not Outcome.ERROR:
            lines.append(f"{subject}: {result.outcome.value} — {result.reason}")
    return lines


def render_text(verdict: Verdict, color: bool = False, width: int = 120) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False)

    def line(text: str | Text = "", style: str | None = None) -> None:
        # soft_wrap: long lines stay whole (greppable logs, copy-paste into tickets).
        console.print(text, style=style, soft_wrap=True)

    header = Text()
    header.append(verdict.verdict.value.upper(), style=_VERDICT_STYLE[verdict.verdict])
    header.append(f"  phase {verdict.phase} ({verdict.environment}) as of {_time(verdict.as_of)}")
    line(header)
    if verdict.description:
        line(" ".join(verdict.description.split()), style="dim")
    rows = [("check", "role", "outcome", "window (UTC)", "evidence")]
    rows += [
        (
            check.suite,
            check.role,
            check.outcome.value,
            f"{_time(check.window.start)} → {_time(check.window.end)} "
            f"({format_duration(check.window.length)}, settle {format_duration(check.window.settle)})",
            _evidence_text(check),
        )
        for check in verdict.checks
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    line()
    for index, row in enumerate(rows):
        text = Text()
        for column, (cell, size) in enumerate(zip(row, widths, strict=True)):
            style = "bold" if index == 0 else None
            if index and column == 2:
                style = _OUTCOME_STYLE[verdict.checks[index - 1].outcome]
            text.append(cell.ljust(size) if column < len(row) - 1 else cell, style=style)
            if column < len(row) - 1:
                text.append("  ")
        line(text)
    for check in verdict.checks:
        line()
        title = Text(f"{check.suite}: ")
        title.append(check.outcome.value, style=_OUTCOME_STYLE[check.outcome])
        line(title)
        for detail in _check_detail(check):
            line(f"  {detail}")
    if verdict.requires or verdict.soak is not None:
        line()
    for requirement in verdict.requires:
        mark = "ok" if requirement.satisfied else "missing"
        line(f"requires {requirement.phase}: {mark} — {requirement.reason}")
    if verdict.soak is not None:
        line(f"soak {format_duration(verdict.soak.duration)}: {verdict.soak.reason}")
    line()
    line("why:", style="bold")
    for reason in verdict.reasons:
        line(f"  - {reason}")
    return buffer.getvalue()
