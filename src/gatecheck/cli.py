"""``gatecheck`` command line: load configuration, call the library, render, exit.

Exit codes (DESIGN.md): 0 go, 1 no-go, 2 bad configuration / arguments / internal error,
3 inconclusive, 4 rollback. Only ``GatecheckError`` is printed as one clear line; anything
else is a bug and shows its traceback (still exit code 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from gatecheck.config import Project, load_project
from gatecheck.errors import ConfigError, GatecheckError
from gatecheck.results import ExitCode, Verdict

app = typer.Typer(
    name="gatecheck",
    help="Release gates for migration phases: GO, NO-GO, INCONCLUSIVE or ROLLBACK, with evidence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path,
    typer.Option("--config", help="Directory holding gatecheck.yaml, thresholds.yaml, gates/, suites/."),
]
FormatOption = Annotated[str, typer.Option("--format", "-f", help="Output format: text or json.")]
AsOfOption = Annotated[
    str | None,
    typer.Option("--as-of", help="Evaluate as of this ISO 8601 time (default: now, UTC)."),
]


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Print gatecheck's own errors as one line each and exit 2."""
    try:
        yield
    except GatecheckError as exc:
        problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
        for problem in problems:
            typer.echo(f"gatecheck: error: {problem}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None


def _check_format(fmt: str) -> str:
    from gatecheck.render import FORMATS

    if fmt not in FORMATS:
        raise ConfigError(f"--format: unknown format {fmt!r} (allowed: {', '.join(FORMATS)})")
    return fmt


def _write_output(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
        return
    # Write-then-rename: a crash never leaves half a report behind.
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=output.parent, delete=False, encoding="utf-8") as tmp:
        tmp.write(text)
    os.replace(tmp.name, output)


def _evaluate(
    project: Project, phase: str, as_of: str | None, assume_approved: list[str], assume_soaked: bool
) -> Verdict:
    from gatecheck.gate import evaluate, parse_as_of

    project.gate(phase)  # unknown phase: a usage error before anything runs
    moment: datetime = parse_as_of(as_of)
    return asyncio.run(evaluate(project, phase, moment, assume_approved, assume_soaked))


def _finish(verdict: Verdict, fmt: str, output: Path | None) -> None:
    from gatecheck.render import render

    color = output is None and fmt == "text" and sys.stdout.isatty()
    _write_output(render(verdict, fmt, color=color), output)
    if output is not None:
        typer.echo(f"{verdict.verdict.value}: phase {verdict.phase} → {output}", err=True)
    raise typer.Exit(ExitCode.for_verdict(verdict.verdict))


def _validate_gates(project: Project) -> None:
    """Great Expectations' own check of every expectation (type and kwargs)."""
    from gatecheck.runner import expectation_problems

    problems = []
    for suite in project.suites.values():
        for index, spec in enumerate(suite.expectations):
            problem = expectation_problems(spec)
            if problem:
                problems.append(f"{project.files[f'suite:{suite.name}']}: expectations[{index}]: {problem}")
    if problems:
        raise ConfigError(problems[0], problems)


@app.command()
def run(
    phase: Annotated[str, typer.Option("--phase", "-p", help="The phase whose gate to evaluate.")],
    config: ConfigOption = Path("."),
    as_of: AsOfOption = None,
    fmt: FormatOption = "text",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report to this file.")
    ] = None,
    assume_approved: Annotated[
        list[str] | None,
        typer.Option("--assume-approved", help="Treat this required phase as approved (repeatable)."),
    ] = None,
    assume_soaked: Annotated[
        bool,
        typer.Option("--assume-soaked", help="Treat the gate's soak as covered (bootstrapping; recorded)."),
    ] = False,
) -> None:
    """Evaluate one phase's gate and exit with its verdict (0 go, 1 no-go, 3 inconclusive, 4 rollback)."""
    with _user_errors():
        _check_format(fmt)
        project = load_project(config)
        _validate_gates(project)
        verdict = _evaluate(project, phase, as_of, assume_approved or [], assume_soaked)
    _finish(verdict, fmt, output)


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
def validate(config: ConfigOption = Path(".")) -> None:
    """Check every configuration file; print each problem with its file and key."""
    with _user_errors():
        project = load_project(config)
        _validate_gates(project)
    typer.echo(
        f"ok: {len(project.gates)} gates, {len(project.suites)} suites, "
        f"{len(project.config.environments)} environments"
    )


@app.command()
def demo(
    scenario: Annotated[
        str, typer.Option("--scenario", "-s", help="healthy, or a scenario that breaks one thing.")
    ] = "healthy",
    phase: Annotated[
        str, typer.Option("--phase", "-p", help="The gate to run on the demo.")
    ] = "staging-soak",
    config: ConfigOption = Path("."),
    as_of: AsOfOption = None,
    fmt: FormatOption = "text",
) -> None:
    """Build the demo warehouse (chDB) and bus (bundled nats-server) under .gatecheck/ for a
    scenario, run a gate on them, and stop the server again."""
    from gatecheck.demo.bus import BUS_SCENARIOS, NatsServer, free_port, prepare_bus
    from gatecheck.demo.reference import SCENARIOS, build_reference
    from gatecheck.gate import parse_as_of
    from gatecheck.sources.clickhouse import embedded_session

    with _user_errors():
        _check_format(fmt)
        known = (*SCENARIOS, *BUS_SCENARIOS)
        if scenario not in known:
            raise ConfigError(f"--scenario: unknown scenario {scenario!r} (known: {', '.join(known)})")
        moment = parse_as_of(as_of).replace(microsecond=0)
        root = config
        # The demo always runs on its own embedded sources, whatever the shell exports.
        environ = {**os.environ, "GATECHECK_CLICKHOUSE_URL": "chdb://.gatecheck/warehouse"}
        project = load_project(root, environ=environ)
        _validate_gates(project)
        gate = project.gate(phase)
        server = NatsServer(project.root / ".gatecheck" / "nats")
        with embedded_session(project.root / ".gatecheck" / "warehouse", create=True) as session:
            counts = build_reference(
                session, "default", moment, scenario if scenario in SCENARIOS else "healthy"
            )
            try:
                if scenario == "nats-down":
                    url = f"nats://127.0.0.1:{free_port()}"  # nobody listens there
                else:
                    url = server.start().url
                    prepare_bus(url, scenario)
                project = load_project(root, environ={**environ, "GATECHECK_NATS_URL": url})
                overrides = " ".join(f"--assume-approved {p}" for p in gate.requires)
                overrides += " --assume-soaked" if gate.soak else ""
                typer.echo(
                    f"demo: scenario {scenario}: warehouse as of {moment.isoformat()} "
                    f"({sum(counts.values())} rows), bus {url}\n"
                    f"demo: gatecheck run --phase {phase} {overrides}".rstrip()
                    + ("  (the demo has no recorded history for requires/soak)" if overrides else ""),
                    err=True,
                )
                # JetStream stamps messages as they are published: without --as-of, judge
                # right after publishing, so the bus traffic lies inside the windows.
                judged_at = moment.isoformat() if as_of is not None else None
                verdict = _evaluate(project, phase, judged_at, list(gate.requires), gate.soak is not None)
            finally:
                server.stop()
    _finish(verdict, fmt, None)


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
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
