"""Renderings of a :class:`Verdict`: text (rich) and JSON. None computes anything new."""

from __future__ import annotations

import io
import json
from typing import Any

from rich.console import Console
from rich.text import Text

from gatecheck._values import document_time, shown, timestamp, unit_of
from gatecheck.durations import format_duration
from gatecheck.errors import printable, xml_safe
from gatecheck.render.describe import (
    describe_failure,
    history_lines,
    reconciliation_lines,
    rule_text,
    slo_lines,
    split_reason,
    subject_of,
    unmet,
    waiver_text,
)
from gatecheck.results import CheckResult, Outcome, Verdict, VerdictState, blocking, role_of

FORMATS = ("text", "json", "junit", "markdown", "html")

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


def render(verdict: Verdict, fmt: str, color: bool = False, timings: Any = None) -> str:
    """``verdict`` in ``fmt``; ``timings`` (the :class:`~gatecheck.evaluation.engine.Evaluation`
    that produced it, when known) gives JUnit its durations."""
    if fmt == "json":
        return render_json(verdict)
    if fmt == "junit":
        return render_junit(verdict, timings)
    if fmt == "markdown":
        return render_markdown(verdict)
    if fmt == "html":  # the status page's phase page, as one self-contained file
        from gatecheck.render.html import render_verdict_page

        return render_verdict_page(verdict)
    return render_text(verdict, color=color)


def render_json(verdict: Verdict) -> str:
    return json.dumps(verdict.document(), indent=2, ensure_ascii=False) + "\n"


def _evidence_text(check: CheckResult) -> str:
    evidence = check.evidence
    if evidence is None:
        return f"{check.rows} row" if check.rows == 1 else f"{check.rows} rows"
    return f"{evidence.column} {shown(evidence.observed_total)} (min {shown(evidence.min_total.value)})"


def _check_detail(check: CheckResult) -> list[str]:
    lines: list[str] = []
    if check.outcome in (Outcome.ERROR, Outcome.INCONCLUSIVE) and check.reason:
        lines.append(check.reason)
    if check.comparison and check.comparison not in (check.reason or ""):
        lines.append(check.comparison)
    for side in check.sides:  # a comparison: each side's source and totals
        totals = ", ".join(f"{k} {shown(v, unit_of(k))}" for k, v in side.values.items())
        lines.append(f"side {side.side} ({side.source}){': ' + totals if totals else ''}")
    if check.reconciliation is not None:
        lines.extend(reconciliation_lines(check.reconciliation))
    if check.slo is not None:
        lines.extend(slo_lines(check.slo))
    if check.history is not None:
        lines.extend(history_lines(check.history))
    if check.accumulation is not None and check.accumulation not in (check.reason or ""):
        lines.append(f"over time: {check.accumulation}")
    for result in check.expectations:
        unit = unit_of(result.column)
        limits = rule_text(result.thresholds, unit)
        observed = shown(result.observed_value, unit)
        subject = subject_of(result)
        if result.outcome is Outcome.FAIL:
            rule = f"must be {limits}" if result.thresholds else unmet(result)
            lines.append(f"{subject} {rule}")
            for group in result.failing_groups[:10]:
                lines.append(f"  {describe_failure(group, unit)}")
            if result.failing_count > 10:
                lines.append(f"  … and {result.failing_count - 10} more groups")
            if not result.failing_groups:
                lines.append(f"  observed {observed}")
        elif result.outcome is Outcome.PASS and any(t.bound for t in result.thresholds):
            lines.append(f"{subject}: worst {observed}, {limits}")
        elif result.outcome is Outcome.PASS:
            lines.append(f"{subject}: ok ({limits or result.type})")
        elif check.outcome is not Outcome.ERROR or result.outcome is not Outcome.ERROR:
            lines.append(f"{subject}: {result.outcome.value} — {result.reason}")
    return lines


def render_text(verdict: Verdict, color: bool = False, width: int = 120) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False)

    def line(text: str | Text = "", style: str | None = None) -> None:
        # soft_wrap: long lines stay whole (greppable logs, copy-paste into tickets). Text from
        # data (reasons, group values, waiver reasons) cannot steer the terminal.
        if isinstance(text, str):
            text = Text(printable(text))
        console.print(text, style=style, soft_wrap=True)

    header = Text()
    header.append(verdict.verdict.value.upper(), style=_VERDICT_STYLE[verdict.verdict])
    header.append(f"  phase {verdict.phase} ({verdict.environment}) as of {timestamp(verdict.as_of)}")
    line(header)
    if verdict.description:
        line(" ".join(verdict.description.split()), style="dim")
    rows = [("check", "role", "outcome", "window (UTC)", "evidence")]
    rows += [
        (
            check.suite,
            role_of(check),
            check.outcome.value + (f" (waived {check.waiver.id})" if check.waiver else ""),
            f"{timestamp(check.window.start)} → {timestamp(check.window.end)} "
            f"({format_duration(check.window.length)}, settle {format_duration(check.window.settle)})",
            _evidence_text(check),
        )
        for check in verdict.checks
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    line()
    if not verdict.checks:  # never a table header over nothing (the service was unreachable)
        line("no check was judged", style="dim")
        rows = []
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
        waived = waiver_text(check)
        if waived:
            line(f"  ⚠️ {waived}", style="yellow")
        for detail in _check_detail(check):
            line(f"  {detail}")
    if verdict.requires or verdict.soak is not None or verdict.approval is not None:
        line()
    if verdict.approval is not None:
        line(f"approval: {'ok' if verdict.approval.satisfied else 'missing'} — {verdict.approval.reason}")
    for requirement in verdict.requires:
        mark = "ok" if requirement.satisfied else "missing"
        line(f"requires {requirement.phase}: {mark} — {requirement.reason}")
    if verdict.soak is not None:
        line(f"soak {format_duration(verdict.soak.duration)}: {verdict.soak.reason}")
    line()
    line("why:", style="bold")
    for reason in verdict.reasons:
        headline, details = split_reason(reason)
        line(f"  - {headline}" + (":" if details else ""))
        for detail in details:
            line(f"      {detail}")
    return buffer.getvalue()


# --------------------------------------------------------------------------- JUnit


def _window_text(check: CheckResult) -> str:
    return (
        f"window {timestamp(check.window.start)} → {timestamp(check.window.end)} "
        f"({format_duration(check.window.length)}, settle {format_duration(check.window.settle)})"
    )


def render_junit(verdict: Verdict, timings: Any = None) -> str:
    """One <testsuite> per evaluation, one <testcase> per check: a failure that blocks (or a
    rollback trigger that fired) → <failure>, error → <error>, inconclusive → <skipped>; a
    failure that does not block — waived, or of an advisory check — is <skipped> with its
    evidence, so CI is not red on a GO. A last <testcase> ``verdict`` passes on GO only: a
    verdict held back by no check (an unmet ``requires``, an uncovered soak, an approval) or by
    inconclusive checks alone (<skipped>) would otherwise be a report without a failure —
    green in a test-report view for a release that may not go. ``time`` is each check's own
    duration (the suite's: the evaluation's) when ``timings`` (an Evaluation) is given, else
    0. Readable by GitLab, Jenkins, GitHub."""
    import socket
    import xml.etree.ElementTree as ET

    counts = {outcome: sum(1 for c in verdict.checks if c.outcome is outcome) for outcome in Outcome}
    not_blocking = sum(
        1 for c in verdict.checks if c.outcome is Outcome.FAIL and (c.waiver is not None or not blocking(c))
    )
    counts[Outcome.FAIL] -= not_blocking  # reported as skipped, with its evidence
    counts[Outcome.INCONCLUSIVE] += not_blocking
    seconds: dict[tuple[str, str], float] = getattr(timings, "check_seconds", {}) or {}
    total = getattr(timings, "duration_s", None)
    suite = ET.Element(
        "testsuite",
        {
            "name": f"gatecheck.{verdict.phase}",
            # JUnit timestamps carry no timezone: this one is UTC.
            "timestamp": verdict.as_of.strftime("%Y-%m-%dT%H:%M:%S"),
            "hostname": socket.gethostname() or "localhost",
            "tests": str(len(verdict.checks) + 1),
            "failures": str(counts[Outcome.FAIL] + (verdict.verdict is not VerdictState.GO)),
            "errors": str(counts[Outcome.ERROR]),
            "skipped": str(counts[Outcome.INCONCLUSIVE]),
            "time": f"{total:.3f}" if total is not None else "0",
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("verdict", verdict.verdict.value),
        ("phase", verdict.phase),
        ("environment", verdict.environment),
        ("as_of", document_time(verdict.as_of)),
        ("config_hash", verdict.config_hash),
        ("gatecheck_version", verdict.gatecheck_version),
    ):
        ET.SubElement(properties, "property", {"name": name, "value": value})
    for check in verdict.checks:
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "name": check.suite,
                "classname": f"gatecheck.{verdict.phase}.{check.role}",
                "time": f"{seconds.get((check.suite, check.role), 0.0):.3f}",
            },
        )
        detail = "\n".join([_window_text(check), *_check_detail(check)])
        summary = f"{check.suite}: {check.reason or check.outcome.value} ({_window_text(check)})"
        if check.outcome is Outcome.FAIL and check.waiver is not None:
            ET.SubElement(case, "skipped", {"message": f"{waiver_text(check)} — {summary}"}).text = detail
        elif check.outcome is Outcome.FAIL and not blocking(check):
            kind = "shadow" if check.shadow else "advisory"
            message = f"{kind} check failed (does not block the verdict) — {summary}"
            ET.SubElement(case, "skipped", {"message": message}).text = detail
        elif check.outcome is Outcome.FAIL:
            ET.SubElement(
                case, "failure", {"message": summary, "type": f"{check.role}-check-failed"}
            ).text = detail
        elif check.outcome is Outcome.ERROR:
            ET.SubElement(case, "error", {"message": summary, "type": "check-error"}).text = detail
        elif check.outcome is Outcome.INCONCLUSIVE:
            ET.SubElement(case, "skipped", {"message": summary})
    judged = ET.SubElement(
        suite, "testcase", {"name": "verdict", "classname": f"gatecheck.{verdict.phase}", "time": "0.000"}
    )
    if verdict.verdict is not VerdictState.GO:
        word = verdict.verdict.value.upper()
        ET.SubElement(
            judged,
            "failure",
            {
                "message": f"{word}: {verdict.reasons[0] if verdict.reasons else word}",
                "type": f"verdict-{verdict.verdict.value}",
            },
        ).text = "\n".join(verdict.reasons)
    out = ET.SubElement(suite, "system-out")
    out.text = "\n".join([f"verdict: {verdict.verdict.value}", *verdict.reasons])
    ET.SubElement(suite, "system-err").text = ""
    for element in suite.iter():  # data may hold characters XML 1.0 forbids (ESC, NUL)
        element.text = xml_safe(element.text) if element.text else element.text
        element.attrib = {name: xml_safe(value) for name, value in element.attrib.items()}
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


# --------------------------------------------------------------------------- Markdown

_MARK = {
    Outcome.PASS: "✅",
    Outcome.FAIL: "❌",
    Outcome.INCONCLUSIVE: "⚠️",
    Outcome.ERROR: "🛑",
}
_VERDICT_MARK = {
    VerdictState.GO: "✅ GO",
    VerdictState.NO_GO: "❌ NO-GO",
    VerdictState.INCONCLUSIVE: "⚠️ INCONCLUSIVE",
    VerdictState.ROLLBACK: "🔴 ROLLBACK",
}


#: What a text from a source could make markup of in a Markdown report (GitHub's step summary,
#: a ticket): raw HTML and autolinks (``<img src=…>``), links and images (``[approve](…)``),
#: and a table's cell boundary.
_MARKDOWN_ESCAPES = str.maketrans({"<": "&lt;", "[": "\\[", "]": "\\]", "|": "\\|"})


def markdown_text(text: str) -> str:
    """``text`` shown as it is in Markdown, on one line (a table cell or a list item): its
    markup characters escaped (``<`` opens raw HTML; a ``>`` in a line is only text) and its
    line breaks ``<br>``."""
    return printable(text).translate(_MARKDOWN_ESCAPES).replace("\n", "<br>")


def render_markdown(verdict: Verdict) -> str:
    """A concise report for a CI step summary or a ticket."""
    lines = [
        f"### gatecheck: {_VERDICT_MARK[verdict.verdict]} — `{verdict.phase}` ({verdict.environment})",
        "",
        f"as of {timestamp(verdict.as_of)}",
        "",
        *[
            text
            for reason in verdict.reasons
            for headline, details in [split_reason(reason)]
            for text in [
                f"- {markdown_text(headline)}" + (":" if details else ""),
                *[f"  - {markdown_text(detail)}" for detail in details],
            ]
        ],
        "",
        "| check | role | outcome | detail | window (UTC) |",
        "|---|---|---|---|---|",
    ]
    for check in verdict.checks:
        detail = "<br>".join(markdown_text(line.strip()) for line in _check_detail(check))
        window = f"{timestamp(check.window.start)} → {timestamp(check.window.end)}"
        outcome = f"{_MARK[check.outcome]} {check.outcome.value}"
        if check.waiver is not None:
            outcome += f" ⚠️ waived {check.waiver.id}"
        lines.append(f"| `{check.suite}` | {role_of(check)} | {outcome} | {detail} | {window} |")
    waived = [c for c in verdict.checks if c.waiver is not None]
    if waived:
        lines.append("")
        lines += [f"- ⚠️ `{c.suite}` {markdown_text(waiver_text(c) or '')}" for c in waived]
    if verdict.requires or verdict.soak is not None or verdict.approval is not None:
        lines.append("")
    if verdict.approval is not None:
        mark = "✅" if verdict.approval.satisfied else "⚠️"
        lines.append(f"- approval: {mark} {markdown_text(verdict.approval.reason)}")
    for requirement in verdict.requires:
        mark = "✅" if requirement.satisfied else "⚠️"
        lines.append(f"- requires `{requirement.phase}`: {mark} {markdown_text(requirement.reason)}")
    if verdict.soak is not None:
        lines.append(f"- soak {format_duration(verdict.soak.duration)}: {markdown_text(verdict.soak.reason)}")
    return "\n".join(lines) + "\n"
