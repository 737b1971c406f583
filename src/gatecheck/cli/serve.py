"""``gatecheck serve``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# Everything else is imported where a command needs it: `--help`, `phases`, `history`,
# `status --url` and `run --url` never import pandas, Great Expectations, chDB or the service
# (tests/cli/test_cli.py checks it in a fresh interpreter).
from gatecheck.cli._common import ConfigOption, LogFormat, LogLevel, app, load_project, user_errors


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

    with user_errors():
        logs.configure(*logs.resolve(log_level and log_level.value, log_format and log_format.value))
        # Great Expectations checks the expectations in the evaluation worker, which loads it
        # anyway: the serving process never imports it.
        project = load_project(config, notify=True)  # it sends: an unset ${VAR} is an error
        serve_project(project, listen, phase)
