"""Commands that record a person's decision: ``waive``, ``unwaive``, ``approve``, ``correct``,
``enforce``, ``pin``, ``invalidate``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

# Everything else is imported where a command needs it: `--help`, `phases`, `history`,
# `status --url` and `run --url` never import pandas, Great Expectations, chDB or the service
# (tests/cli/test_cli.py checks it in a fresh interpreter).
if TYPE_CHECKING:
    from collections.abc import Callable

    from gatecheck.config import Project
    from gatecheck.ledger import Ledger
    from gatecheck.ledger.audit import AuditEvent
from gatecheck.cli._common import ConfigOption, app, load_project, open_ledger_of, user_errors

ByOption = Annotated[str, typer.Option("--by", metavar="NAME", help="Who decides (recorded).")]
ReasonOption = Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why (recorded).")]


def _decide(
    config: Path,
    decision: Callable[[Project, Ledger], AuditEvent | list[AuditEvent]],
    *,
    waiver: bool = False,
) -> None:
    """Open the ledger, build a decision (one event or several, from the project and the
    ledger), record it — a waiver is created, which gives it its id — close, and say what was
    recorded, a line an event: one line and exit 2 on any problem."""
    from gatecheck.ledger.decisions import describe

    with user_errors():
        project = load_project(config)
        with open_ledger_of(project, "audit trail to record the decision in") as ledger:
            made = decision(project, ledger)
            events = made if isinstance(made, list) else [made]
            if waiver:
                events = [ledger.create_waiver(event) for event in events]
            else:
                ledger.append_audit(events)
    for event in events:
        typer.echo(describe(event))


@app.command()
def waive(
    phase: Annotated[str, typer.Option("--phase", "-p", metavar="PHASE", help="The phase whose gate it is.")],
    check: Annotated[str, typer.Option("--check", metavar="SUITE", help="The check whose failure to waive.")],
    length: Annotated[
        str, typer.Option("--for", metavar="DURATION", help="How long, e.g. 24h (at most 30d).")
    ],
    reason: ReasonOption,
    by: ByOption,
    group: Annotated[
        list[str] | None,
        typer.Option("--group", metavar="KEY=VALUE", help="Only this group's failures (repeatable)."),
    ] = None,
    config: ConfigOption = Path("."),
) -> None:
    """Record a waiver: while it lasts, a definite failure of CHECK (of that group) in PHASE
    does not block. Never an inconclusive or errored check, never a rollback."""
    from gatecheck.ledger.decisions import parse_groups, waiver_event

    def decision(project: Project, ledger: Ledger) -> AuditEvent:
        return waiver_event(project, phase, check, parse_groups(group or []), length, reason, by)

    _decide(config, decision, waiver=True)


@app.command()
def unwaive(
    waiver: Annotated[str, typer.Argument(metavar="ID", help="The waiver, e.g. W3.")],
    reason: ReasonOption,
    by: ByOption,
    config: ConfigOption = Path("."),
) -> None:
    """Revoke a waiver: the next evaluation blocks on that failure again, and a GO that passed
    under it satisfies no later phase's requires."""
    from gatecheck.ledger.decisions import revoke_event

    def decision(project: Project, ledger: Ledger) -> AuditEvent:
        return revoke_event(
            project, ledger.audit(kinds=["waiver-created", "waiver-revoked"]), waiver, reason, by
        )

    _decide(config, decision)


@app.command()
def approve(
    phase: Annotated[str, typer.Option("--phase", "-p", metavar="PHASE", help="The phase to approve.")],
    reason: ReasonOption,
    by: ByOption,
    length: Annotated[
        str, typer.Option("--for", metavar="DURATION", help="How long it holds (default 24h, at most 30d).")
    ] = "24h",
    release: Annotated[
        str | None,
        typer.Option(
            "--release",
            metavar="REV",
            help="The canary approved: a Flagger checksum or an Argo Rollouts revision, as the "
            "verdict's reason names it. A controller's request for a canary takes only an "
            "approval of that release.",
        ),
    ] = None,
    config: ConfigOption = Path("."),
) -> None:
    """Record a person's approval of a phase (a gate with `approval: required` needs one)."""
    from gatecheck.ledger.decisions import approval_event

    def decision(project: Project, ledger: Ledger) -> AuditEvent:
        return approval_event(project, phase, length, reason, by, release)

    _decide(config, decision)


@app.command()
def deployed(
    environment: Annotated[
        str, typer.Option("--environment", "-e", metavar="ENV", help="The environment deployed to.")
    ],
    release: Annotated[
        str, typer.Option("--release", metavar="REV", help="What was deployed (a version, a commit).")
    ],
    reason: ReasonOption,
    by: ByOption,
    config: ConfigOption = Path("."),
) -> None:
    """Record a release deployed to an environment (the deploy step runs it): its phases'
    soaks count from now (a soaked verdict judged before no longer holds), and approvals given
    before are of the release before."""
    from gatecheck.ledger.decisions import deployed_events

    def decision(project: Project, ledger: Ledger) -> list[AuditEvent]:
        return deployed_events(project, environment, release, reason, by)

    _decide(config, decision)


@app.command()
def correct(
    slo: Annotated[
        str, typer.Option("--slo", metavar="SUITE", help="The SLO suite whose budget to correct.")
    ],
    start: Annotated[str, typer.Option("--from", metavar="TIME", help="Start of the stretch (ISO 8601).")],
    end: Annotated[str, typer.Option("--to", metavar="TIME", help="End of the stretch (ISO 8601).")],
    reason: ReasonOption,
    by: ByOption,
    config: ConfigOption = Path("."),
) -> None:
    """Leave a stretch (a maintenance window, an incident) out of an SLO's error budget, in
    every phase that judges it: its good and bad events no longer count. At most 30 days;
    an evaluation as of an earlier moment than the record does not see it."""
    from gatecheck.ledger.decisions import correction_event

    def decision(project: Project, ledger: Ledger) -> AuditEvent:
        return correction_event(project, slo, start, end, reason, by)

    _decide(config, decision)


@app.command()
def enforce(
    phase: Annotated[str, typer.Option("--phase", "-p", metavar="PHASE", help="The phase whose gate it is.")],
    check: Annotated[
        str, typer.Option("--check", metavar="SUITE", help="The shadow check (enforce: false) to enforce.")
    ],
    reason: ReasonOption,
    by: ByOption,
    config: ConfigOption = Path("."),
) -> None:
    """Turn a shadow check on: from now on it blocks like any other check of PHASE (see
    `gatecheck shadow-report` for how often it would have). Recorded on the audit trail."""
    from gatecheck.ledger.decisions import enforce_event

    def decision(project: Project, ledger: Ledger) -> AuditEvent:
        return enforce_event(project, phase, check, reason, by)

    _decide(config, decision)


RecordOption = Annotated[
    str,
    typer.Option(
        "--record", metavar="TIME", help="The evaluation, by its as_of (ISO 8601, as history shows it)."
    ),
]


@app.command()
def pin(
    phase: Annotated[str, typer.Option("--phase", "-p", metavar="PHASE", help="The phase whose gate it is.")],
    check: Annotated[str, typer.Option("--check", metavar="SUITE", help="The check with a baseline.")],
    record: RecordOption,
    reason: ReasonOption,
    by: ByOption,
    config: ConfigOption = Path("."),
) -> None:
    """Pin a recorded evaluation as the baseline of CHECK: later evaluations compare with its
    values instead of a quantile of the last passing ones (a later pin replaces it)."""
    from gatecheck.ledger.decisions import pin_event

    def decision(project: Project, ledger: Ledger) -> AuditEvent:
        return pin_event(project, ledger, phase, check, record, reason, by)

    _decide(config, decision)


@app.command()
def invalidate(
    phase: Annotated[
        str, typer.Option("--phase", "-p", metavar="PHASE", help="The phase of the evaluation.")
    ],
    record: RecordOption,
    reason: ReasonOption,
    by: ByOption,
    config: ConfigOption = Path("."),
) -> None:
    """Declare a recorded evaluation of PHASE no evidence (a load test, a broken source): it is
    left out of every baseline and learned threshold, covers no soak, and as the latest GO
    satisfies no requires. It stays in the history, marked on the audit trail."""
    from gatecheck.ledger.decisions import invalidate_event

    def decision(project: Project, ledger: Ledger) -> AuditEvent:
        return invalidate_event(project, ledger, phase, record, reason, by)

    _decide(config, decision)
