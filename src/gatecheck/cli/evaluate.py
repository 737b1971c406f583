"""Commands that judge: ``run``, ``explain``, ``backtest``, ``check-sources``, ``validate``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gatecheck.errors import ConfigError, GatecheckError, one_line, printable
from gatecheck.exitcodes import ExitCode

# Everything else is imported where a command needs it: `--help`, `phases`, `history`,
# `status --url` and `run --url` never import pandas, Great Expectations, chDB or the service
# (tests/cli/test_cli.py checks it in a fresh interpreter).
if TYPE_CHECKING:
    from gatecheck.config import Project
    from gatecheck.results import Verdict
from gatecheck.cli._common import (
    AsOfOption,
    ConfigOption,
    FormatOption,
    ListFormat,
    VerdictFormat,
    app,
    evaluate_phase,
    finish,
    ge_problems,
    load_project,
    open_ledger_of,
    record_assumptions,
    say,
    user_errors,
    writable,
    write_output,
)


@app.command()
def run(
    phase: Annotated[
        str, typer.Option("--phase", "-p", metavar="PHASE", help="The phase whose gate to evaluate.")
    ],
    config: ConfigOption = Path("."),
    as_of: AsOfOption = None,
    fmt: FormatOption = VerdictFormat.text,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write the report to this file.")
    ] = None,
    assume_approved: Annotated[
        list[str] | None,
        typer.Option(
            "--assume-approved", metavar="PHASE", help="Treat this required phase as approved (repeatable)."
        ),
    ] = None,
    assume_soaked: Annotated[
        bool,
        typer.Option("--assume-soaked", help="Treat the gate's soak as covered (bootstrapping; recorded)."),
    ] = False,
    url: Annotated[
        str | None,
        typer.Option(
            "--url", metavar="URL", help="Ask a running gatecheck service (http://HOST:PORT) instead."
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="With --url: have the service evaluate now, not its latest.")
    ] = False,
    wait: Annotated[
        str | None,
        typer.Option(
            "--wait",
            metavar="DURATION",
            help="With --url: have the service evaluate now and wait up to this long (e.g. 30m).",
        ),
    ] = None,
    max_age: Annotated[
        str | None,
        typer.Option(
            "--max-age",
            metavar="DURATION",
            help="With --url: take the service's latest verdict only if at most this old, else it "
            "evaluates now (default 1h).",
        ),
    ] = None,
    record: Annotated[
        bool, typer.Option("--record/--no-record", help="Record the evaluation in the history ledger.")
    ] = True,
    by: Annotated[
        str | None,
        typer.Option(
            "--by", metavar="NAME", help="Who assumes (--assume-*: recorded; default: the OS user)."
        ),
    ] = None,
) -> None:
    """Evaluate one phase's gate and exit with its verdict (0 go, 1 no-go, 3 inconclusive, 4 rollback)."""
    with user_errors():
        writable(output, "--output")
        if url is not None:
            from gatecheck.client import fetch_verdict

            if as_of or assume_approved or assume_soaked:
                raise ConfigError(
                    "--url asks the service for its verdict: --as-of and --assume-* do not apply"
                )
            if max_age is not None and (fresh or wait is not None):
                raise ConfigError("--max-age: --fresh and --wait have the service evaluate now; give one")
            if wait is not None:
                verdict = _waited(url, phase, wait, fmt is VerdictFormat.text and output is None)
            else:
                verdict = fetch_verdict(url, phase, evaluate_now=fresh, max_age=_max_age(max_age))
        else:
            if wait is not None:
                raise ConfigError("--wait: waits for a running service's evaluation: give --url too")
            if max_age is not None:
                raise ConfigError("--max-age: how old a running service's verdict may be: give --url too")
            project = load_project(config, expectations=ge_problems())
            if record and (assume_approved or assume_soaked):  # --no-record writes nothing anywhere
                record_assumptions(project, phase, assume_approved or [], assume_soaked, by)
            spinner = fmt is VerdictFormat.text and output is None
            evaluation = evaluate_phase(
                project, phase, as_of, assume_approved or [], assume_soaked, record, spinner=spinner
            )
            verdict = evaluation.verdict
    rendered = None
    if fmt is VerdictFormat.html and url is None:
        rendered = _run_page(project, verdict)
    finish(verdict, fmt, output, rendered, timings=evaluation if url is None else None)


def _max_age(text: str | None) -> timedelta:
    """``--max-age`` (default: the client's 1h), a duration above 0."""
    from gatecheck.client import MAX_AGE
    from gatecheck.durations import parse_duration

    if text is None:
        return MAX_AGE
    try:
        found = parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"--max-age: {exc}") from None
    if found <= timedelta(0):
        raise ConfigError(f"--max-age: {text!r} is no age: give one above 0 (e.g. 10m), or --fresh")
    return found


def _waited(url: str, phase: str, wait: str, show: bool) -> Verdict:
    """``run --url --wait``: the service's asynchronous evaluation, with a progress line on a
    terminal (stderr; never in a pipe, a file or another format)."""

    from gatecheck.client import wait_for_verdict
    from gatecheck.durations import parse_duration

    try:
        length = parse_duration(wait)
    except ValueError as exc:
        raise ConfigError(f"--wait: {exc}") from exc
    if length.total_seconds() <= 0:
        raise ConfigError(f"--wait: {wait!r}: wait longer than 0s")
    if not show or not sys.stderr.isatty():
        return wait_for_verdict(url, phase, length)
    from rich.console import Console

    with Console(stderr=True).status(f"evaluating {phase}", spinner="dots") as status:
        return wait_for_verdict(url, phase, length, progress=status.update)


def _run_page(project: Project, verdict: Verdict) -> str | None:
    """``run --format html`` with the phase's recorded history (its timeline and charts)
    when the project has a ledger that can be read; None: the verdict alone."""
    from gatecheck.render.html import read_phase_page, render_verdict_page

    if project.config.history is None:
        return None
    try:
        with open_ledger_of(project, "history") as ledger:
            page = read_phase_page(ledger, project.gate(verdict.phase), verdict, verdict.as_of)
    except GatecheckError as exc:
        say(f"gatecheck: warning: the page shows this verdict alone: {one_line(str(exc))}")
        return None
    return render_verdict_page(verdict, page)


@app.command()
def explain(
    phase: Annotated[str, typer.Option("--phase", "-p", metavar="PHASE", help="The gate to explain.")],
    check: Annotated[
        str | None, typer.Option("--check", metavar="SUITE", help="Only this check of the gate.")
    ] = None,
    config: ConfigOption = Path("."),
    as_of: AsOfOption = None,
    fmt: Annotated[ListFormat, typer.Option("--format", "-f", help="Output format.")] = ListFormat.text,
    estimate: Annotated[
        bool,
        typer.Option("--estimate", help="Ask each source, read-only, what each request would read."),
    ] = False,
) -> None:
    """Show what a gate would send and judge, without touching any source: each check's window,
    its query exactly as sent with the bound values, thresholds with their provenance. With
    --estimate, each source's own plan of each request (nothing is run)."""
    from gatecheck.durations import parse_as_of
    from gatecheck.evaluation.explain import explain as explain_gate
    from gatecheck.render.explain import render_explanation

    with user_errors():
        project = load_project(config)
        document = explain_gate(project, phase, parse_as_of(as_of), check, estimate)
    if fmt is ListFormat.json:
        typer.echo(json.dumps(document, indent=2, default=str))
    else:
        typer.echo(printable(render_explanation(document)), nl=False)


@app.command()
def backtest(
    phase: Annotated[str, typer.Option("--phase", "-p", metavar="PHASE", help="The gate to backtest.")],
    since: Annotated[str, typer.Option("--since", metavar="DURATION", help="How far back, e.g. 30d.")],
    until: Annotated[
        str | None, typer.Option("--until", metavar="TIME", help="The last step (ISO 8601; default: now).")
    ] = None,
    step: Annotated[str, typer.Option("--step", metavar="DURATION", help="Between steps.")] = "1h",
    thresholds: Annotated[
        Path | None,
        typer.Option("--thresholds", metavar="FILE", help="What-if: judge the same values under this file."),
    ] = None,
    chart: Annotated[
        Path | None,
        typer.Option("--chart", metavar="FILE.html", help="A self-contained chart page (opens offline)."),
    ] = None,
    config: ConfigOption = Path("."),
    fmt: Annotated[ListFormat, typer.Option("--format", "-f", help="Output format.")] = ListFormat.text,
) -> None:
    """How the gate would have judged each step of a past range (nothing is recorded)."""
    from gatecheck.durations import parse_as_of, parse_duration
    from gatecheck.evaluation.backtest import proposed_thresholds, run_backtest
    from gatecheck.render.backtest import chart_page, render_backtest

    with user_errors():
        writable(chart, "--chart")
        try:
            back, every = parse_duration(since), parse_duration(step)
        except ValueError as exc:
            raise ConfigError(f"--since/--step: {exc}") from exc
        end = parse_as_of(until, "--until")
        project = load_project(config, expectations=ge_problems())
        project.gate(phase)
        proposed = proposed_thresholds(project, phase, thresholds) if thresholds is not None else None
        progress = _progress_bar(fmt is ListFormat.text)
        with progress as bar:
            task = bar.add_task(f"backtest {phase}", total=None) if bar is not None else None

            def tick(done: int, total: int) -> None:
                if bar is not None and task is not None:
                    bar.update(task, completed=done, total=total)

            report = asyncio.run(run_backtest(project, phase, end - back, end, every, proposed, tick))
        if chart is not None:
            write_output(chart_page(report), chart, "--chart")
            say(f"chart: {chart}")
    if fmt is ListFormat.json:
        write_output(report.model_dump_json(indent=2) + "\n", None, utf8=True)
    else:
        typer.echo(printable(render_backtest(report)), nl=False)


def _progress_bar(enabled: bool) -> Any:
    """A rich progress bar on stderr when it is a terminal; otherwise nothing."""
    if not enabled or not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    from rich.console import Console
    from rich.progress import Progress

    return Progress(console=Console(stderr=True), transient=True)


@app.command("check-sources")
def check_sources(
    config: ConfigOption = Path("."),
    environment: Annotated[
        str | None,
        typer.Option("--environment", "-e", metavar="NAME", help="Only this environment's sources."),
    ] = None,
    fmt: Annotated[ListFormat, typer.Option("--format", "-f", help="Output format.")] = ListFormat.text,
) -> None:
    """Connect to each source and check what the suites read exists (ClickHouse and PostgreSQL
    tables and columns, NATS streams, JUnit reports) and that no suite's window reads a whole
    ClickHouse table it could prune; exit 0 when every source is ready, 3 when not."""
    from gatecheck.evaluation.sourcecheck import check_sources as probe_sources
    from gatecheck.progress import Waiting
    from gatecheck.render.sourcecheck import render_checks

    waiting = Waiting("checking sources")
    with user_errors():
        project = load_project(config)
        with waiting.shown(fmt is ListFormat.text):
            checks = asyncio.run(probe_sources(project, environment, waiting.start, waiting.done))
    if fmt is ListFormat.json:
        typer.echo(json.dumps([c.document() for c in checks], indent=2))
    else:
        typer.echo(printable(render_checks(checks)), nl=False)
    raise typer.Exit(ExitCode.GO if all(c.ok for c in checks) else ExitCode.INCONCLUSIVE)


@app.command()
def validate(config: ConfigOption = Path(".")) -> None:
    """Check every configuration file; print each problem with its file and key."""
    with user_errors():
        project = load_project(config, expectations=ge_problems())
    for problem in project.notify_unresolved:  # serve would refuse it; nothing else needs it
        typer.echo(f"gatecheck: note: {problem} — `gatecheck serve` needs it to notify", err=True)
    from gatecheck.config.checks import unsoakable

    for note in unsoakable(project):  # serve logs it too
        typer.echo(f"gatecheck: note: {note}", err=True)
    typer.echo(
        f"ok: {len(project.gates)} gates, {len(project.suites)} suites, "
        f"{len(project.config.environments)} environments"
    )
