"""Commands that read what was recorded: ``history``, ``status``, ``report``, ``audit``."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gatecheck.errors import ConfigError, printable

# Everything else is imported where a command needs it: `--help`, `phases`, `history`,
# `status --url` and `run --url` never import pandas, Great Expectations, chDB or the service
# (tests/cli/test_cli.py checks it in a fresh interpreter).
if TYPE_CHECKING:
    pass
from gatecheck.cli._common import (
    ConfigOption,
    DemoOption,
    ListFormat,
    ReportFormat,
    app,
    load_for_reading,
    open_ledger_of,
    since_window,
    user_errors,
    writable,
    write_output,
)


@app.command()
def history(
    phase: Annotated[
        str, typer.Option("--phase", "-p", metavar="PHASE", help="The phase whose evaluations to show.")
    ],
    config: ConfigOption = Path("."),
    since: Annotated[
        str, typer.Option("--since", metavar="DURATION", help="How far back, e.g. 30m, 48h, 7d.")
    ] = "48h",
    fmt: Annotated[ListFormat, typer.Option("--format", "-f", help="Output format.")] = ListFormat.text,
    demo: DemoOption = False,
) -> None:
    """Show the recorded evaluations of a phase, oldest first."""
    from gatecheck.durations import parse_as_of
    from gatecheck.ledger.audit import invalidated_at

    with user_errors():
        window = since_window(since)
        project = load_for_reading(config, demo)
        project.gate(phase)
        now = parse_as_of(None)
        with open_ledger_of(project, "history to show") as ledger:
            summaries = ledger.summaries(phase, since=now - window)
            invalidated = invalidated_at(ledger.audit([phase], None, ["record-invalidated"]), phase, now)
    void = [datetime.fromisoformat(s["as_of"]) in invalidated for s in summaries]
    if fmt is ListFormat.json:
        typer.echo(json.dumps(summaries, indent=2))
        return
    if not summaries:
        typer.echo(f"no evaluations of {phase} in the last {since}")
        return
    for item, no_evidence in zip(summaries, void, strict=True):
        not_passed = ", ".join(f"{k}={v}" for k, v in item["not_passed"].items()) or "all checks passed"
        shown = item["verdict"] + (f" (waived {', '.join(item['waivers'])})" if item["waivers"] else "")
        shown += " (invalidated)" if no_evidence else ""
        row = f"{item['as_of'][:19]}Z  {shown:<12}  {item['duration_s']:>7.2f}s  {not_passed}"
        typer.echo(printable(row))


def _chain(config: Path, url: str | None, demo: bool = False) -> list[Any]:
    from gatecheck.render.status import PhaseStatus

    if url is not None:
        from gatecheck.client import fetch_chain

        return fetch_chain(url)
    from datetime import UTC, datetime

    from gatecheck.ledger.audit import WITHDRAWING, withdrawn_text

    project = load_for_reading(config, demo)
    now = datetime.now(UTC)
    with open_ledger_of(project, "recorded verdict") as ledger:
        chain = ledger.chain(project.chain())
        trail = ledger.audit([gate.phase for gate, _ in chain], None, WITHDRAWING)
        return [
            PhaseStatus(
                gate.phase,
                gate.environment,
                list(gate.requires),
                verdict,
                withdrawn=None if verdict is None else withdrawn_text(trail, gate.phase, verdict, now),
            )
            for gate, verdict in chain
        ]


@app.command()
def status(
    config: ConfigOption = Path("."),
    url: Annotated[
        str | None, typer.Option("--url", metavar="URL", help="Ask a running service instead of the ledger.")
    ] = None,
    fmt: Annotated[ListFormat, typer.Option("--format", "-f", help="Output format.")] = ListFormat.text,
    demo: DemoOption = False,
) -> None:
    """The whole phase chain at a glance: latest verdict, when, soak coverage, what blocks it."""
    from gatecheck.durations import parse_as_of
    from gatecheck.render.status import next_phase, render_status

    with user_errors():
        chain = _chain(config, url, demo)
    upcoming = next_phase(chain)
    if fmt is ListFormat.json:
        typer.echo(json.dumps({"next": upcoming, "phases": [s.document(upcoming) for s in chain]}, indent=2))
    else:
        typer.echo(printable(render_status(chain, parse_as_of(None))), nl=False)


@app.command()
def report(
    phase: Annotated[str, typer.Option("--phase", "-p", metavar="PHASE", help="The phase to report on.")],
    config: ConfigOption = Path("."),
    url: Annotated[
        str | None, typer.Option("--url", metavar="URL", help="Ask a running service instead of the ledger.")
    ] = None,
    fmt: Annotated[
        ReportFormat,
        typer.Option("--format", "-f", help="markdown: the status update; html: the phase page as one file."),
    ] = ReportFormat.markdown,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write the report to this file.")
    ] = None,
    demo: DemoOption = False,
) -> None:
    """A phase's report from its latest recorded verdict: the Phase B status update
    (markdown), or the phase page as one self-contained HTML file (a CI artifact)."""
    from gatecheck.durations import parse_as_of
    from gatecheck.render.status import render_status_update

    with user_errors():
        writable(output, "--output")
    if fmt is ReportFormat.html:
        with user_errors():
            page = _html_report(config, url, phase, demo)
        with user_errors():
            write_output(page, output, utf8=True)
        if output is not None:
            typer.echo(f"phase page of {phase} → {output}", err=True)
        return
    with user_errors():
        chain = _chain(config, url, demo)
        found = next((s for s in chain if s.phase == phase), None)
        if found is None:
            known = ", ".join(s.phase for s in chain)
            raise ConfigError(f"--phase: unknown phase {phase!r} (known phases: {known})")
        if found.verdict is None:
            raise ConfigError(f"no recorded evaluation of {phase}: run `gatecheck run --phase {phase}` first")
        text = render_status_update(found.verdict, chain, parse_as_of(None))
        write_output(text, output)


def _html_report(config: Path, url: str | None, phase: str, demo: bool = False) -> str:
    """The phase page as one file: from the service (``--url``) or from the ledger."""
    from gatecheck.durations import parse_as_of
    from gatecheck.render.html import read_phase_page, render_phase

    if url is not None:
        from gatecheck.client import fetch_page

        return fetch_page(url, phase)
    project = load_for_reading(config, demo)
    gate = project.gate(phase)
    now = parse_as_of(None)
    with open_ledger_of(project, "recorded verdict") as ledger:
        page = read_phase_page(ledger, gate, None, now)
    if page.verdict is None:
        raise ConfigError(f"no recorded evaluation of {phase}: run `gatecheck run --phase {phase}` first")
    return render_phase(page, now, None, export=True)


@app.command()
def audit(
    phase: Annotated[
        str | None, typer.Option("--phase", "-p", metavar="PHASE", help="Only this phase.")
    ] = None,
    since: Annotated[str, typer.Option("--since", metavar="DURATION", help="How far back.")] = "7d",
    config: ConfigOption = Path("."),
    fmt: Annotated[ListFormat, typer.Option("--format", "-f", help="Output format.")] = ListFormat.text,
    demo: DemoOption = False,
) -> None:
    """The audit trail, oldest first: waivers (created, used, expired, revoked), approvals,
    SLO corrections, and every --assume-approved / --assume-soaked."""
    from gatecheck.durations import parse_as_of
    from gatecheck.ledger.audit import EVERY_PHASE
    from gatecheck.ledger.decisions import describe

    with user_errors():
        window = since_window(since)
        project = load_for_reading(config, demo)
        if phase is not None:
            project.gate(phase)
        with open_ledger_of(project, "audit trail to show") as ledger:
            events = ledger.audit([phase, EVERY_PHASE] if phase else None, parse_as_of(None) - window)
    if fmt is ListFormat.json:
        typer.echo(json.dumps([e.model_dump(mode="json") for e in events], indent=2))
    elif not events:
        typer.echo(f"nothing in the audit trail in the last {since}")
    else:
        for event in events:
            typer.echo(describe(event))


@app.command()
def prune(
    config: ConfigOption = Path("."),
) -> None:
    """Delete the evaluation records older than history.retention, as the service does every
    hour — for a ledger only CI runs write to (a cron job, a CI step). Keeps the audit trail,
    each phase's latest record and latest decision, and pinned baselines' records."""
    from datetime import UTC, datetime

    from gatecheck._values import document_time
    from gatecheck.config import PROJECT_FILE
    from gatecheck.durations import format_duration
    from gatecheck.ledger.base import kept_records

    with user_errors():
        project = load_for_reading(config, False)
        history = project.config.history
        if history is None or history.retention is None:
            raise ConfigError(f"{PROJECT_FILE}: history.retention: not set, so nothing is ever pruned")
        retention = history.retention
        before = datetime.now(UTC) - retention
        with open_ledger_of(project, "ledger to prune") as ledger:
            deleted = ledger.prune(before, kept_records(ledger, project.gates))
    typer.echo(
        f"pruned {deleted} record{'' if deleted == 1 else 's'} as of before {document_time(before)} "
        f"(history.retention {format_duration(retention)})"
    )


@app.command("shadow-report")
def shadow_report(
    phase: Annotated[
        str, typer.Option("--phase", "-p", metavar="PHASE", help="The phase whose shadow checks to report.")
    ],
    since: Annotated[
        str, typer.Option("--since", metavar="DURATION", help="How far back, e.g. 30d.")
    ] = "30d",
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", metavar="TIME", help="The end of the stretch (ISO 8601; default: now)."),
    ] = None,
    config: ConfigOption = Path("."),
    fmt: Annotated[ListFormat, typer.Option("--format", "-f", help="Output format.")] = ListFormat.text,
    demo: DemoOption = False,
) -> None:
    """How often each shadow check (enforce: false) of a phase would have blocked, from the
    recorded evaluations: with a ROLLBACK, beside an enforced failure, or alone (then the
    verdict would have changed; those evaluations are listed)."""
    from gatecheck.durations import parse_as_of
    from gatecheck.evaluation.overtime import shadow_lines, shadow_report

    with user_errors():
        window = since_window(since)
        project = load_for_reading(config, demo)
        project.gate(phase)
        end = parse_as_of(as_of)
        with open_ledger_of(project, "recorded evaluations to report on") as ledger:
            records = ledger.history(phase, since=end - window, until=end)
    findings = shadow_report(record.document for record in records)
    if fmt is ListFormat.json:
        document = {"phase": phase, "since": since, "evaluations": len(records)}
        typer.echo(json.dumps({**document, "checks": [f.document() for f in findings]}, indent=2))
        return
    for line in shadow_lines(phase, since, len(records), findings):
        typer.echo(printable(line))
