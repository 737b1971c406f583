"""Commands about a project itself: ``phases``, ``demo``, ``init``, ``schema``, ``import-openslo``."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gatecheck.errors import ConfigError

# Everything else is imported where a command needs it: `--help`, `phases`, `history`,
# `status --url` and `run --url` never import pandas, Great Expectations, chDB or the service
# (tests/cli/test_cli.py checks it in a fresh interpreter).
if TYPE_CHECKING:
    pass
from gatecheck.cli._common import (
    AsOfOption,
    ConfigOption,
    FormatOption,
    Scenario,
    VerdictFormat,
    app,
    finish,
    load_project,
    say,
    user_errors,
    write_output,
)


@app.command()
def phases(config: ConfigOption = Path(".")) -> None:
    """List the phases in promotion order, with what each requires."""
    with user_errors():
        project = load_project(config)
    for gate in project.chain():
        requires = f"  (requires: {', '.join(gate.requires)})" if gate.requires else ""
        typer.echo(f"{gate.phase} [{gate.environment}]{requires}")
        if gate.description:
            typer.echo(f"    {' '.join(gate.description.split())}")


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
        typer.Option(
            "--hours",
            metavar="N",
            help="Hours of warehouse history to build (default 50; fewer than a judged check reads: said).",
        ),
    ] = None,
    replicas: Annotated[
        int,
        typer.Option(
            "--replicas",
            metavar="N",
            help="With --serve: N gatecheck replicas on the demo's PostgreSQL ledger (one schedules; "
            "the others listen on the ports after --listen's).",
        ),
    ] = 1,
) -> None:
    """Build the demo warehouse (chDB), bus (bundled nats-server), database (embedded
    PostgreSQL) and E2E reports under .gatecheck/ for a scenario, run a gate of the shipped
    reference project on them (or, with --serve, the service), and stop the servers again."""
    if stop:
        from gatecheck.demo.run import stop_demo

        with user_errors():
            stop_demo(workdir, say=say)
        raise typer.Exit(0)
    if serve_demo:
        from gatecheck import logs

        with user_errors():  # the service's log: GATECHECK_LOG_LEVEL / _FORMAT, default info
            logs.configure(*logs.resolve(None, None))
    from gatecheck.demo.run import run_demo

    with user_errors():
        verdict = run_demo(
            config, workdir, scenario.value, phase, as_of,
            serve=serve_demo, listen=listen, say=say, hours=hours, replicas=replicas,
        )  # fmt: skip
    if verdict is None:  # served until stopped
        raise typer.Exit(0)
    finish(verdict, fmt, None)


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

    with user_errors():
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


@app.command("alert-rules")
def alert_rules(
    runbook_url: Annotated[
        str,
        typer.Option(
            "--runbook-url",
            metavar="URL",
            help="Where your team keeps service/RUNBOOK.md: an absolute http(s) URL (its web view).",
        ),
    ],
) -> None:
    """Print the Prometheus alert rules (dashboards/alert_rules.yml) with every runbook_url a
    link anyone can click from an alert: URL#the-rule's-anchor."""
    from gatecheck.shipped import alert_rules as rules

    with user_errors():
        try:
            typer.echo(rules(runbook_url), nl=False)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


@app.command()
def schema(
    of_backtest: Annotated[
        bool, typer.Option("--backtest", help="The schema of `backtest --format json` instead.")
    ] = False,
) -> None:
    """Print the JSON Schema of the --format json document (also shipped in the package)."""
    from gatecheck.schema import backtest_schema, schema_text

    if of_backtest:
        write_output(json.dumps(backtest_schema(), indent=2, ensure_ascii=False) + "\n", None, utf8=True)
        return
    write_output(schema_text(), None, utf8=True)


@app.command("import-openslo")
def import_openslo(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="OpenSLO v1 YAML files.")],
    source: Annotated[
        str, typer.Option("--source", metavar="NAME", help="The Prometheus source the suites read.")
    ] = "metrics",
    write: Annotated[
        bool, typer.Option("--write", help="Write suites/NAME.yaml into --config (never over a file).")
    ] = False,
    config: ConfigOption = Path("."),
) -> None:
    """Turn OpenSLO v1 SLOs (Occurrences, a rolling or calendar window, a Prometheus ratio SLI) into `slo:`
    suites: printed as YAML, or written with --write. Then add them to a gate's checks."""
    import yaml

    from gatecheck.config.loading import load_all_unique
    from gatecheck.config.models import SuiteConfig
    from gatecheck.config.openslo import suites_of

    with user_errors():
        suites: list[dict[str, object]] = []
        for path in files:
            try:
                documents = load_all_unique(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
            suites.extend(suites_of(documents, source, str(path)))
        for suite in suites:
            try:
                SuiteConfig.model_validate(suite)
            except ValueError as exc:
                raise ConfigError(f"OpenSLO {suite['name']}: {str(exc).splitlines()[-1]}") from None
        targets = [config / "suites" / f"{s['name']}.yaml" for s in suites]
        taken = [str(t) for t in targets if t.exists()]
        if write and taken:
            raise ConfigError(f"--write: {', '.join(taken)} exist already: nothing written")
    texts = [yaml.safe_dump(suite, sort_keys=False, allow_unicode=True, width=100) for suite in suites]
    if not write:
        typer.echo("---\n".join(texts), nl=False)
        return
    for target, text in zip(targets, texts, strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {target}")


importer = typer.Typer(help="Turn another tool's definitions into gatecheck suites.", no_args_is_help=True)
app.add_typer(importer, name="import")


@importer.command("keptn-slo")
def import_keptn_slo(
    slo_file: Annotated[Path, typer.Argument(metavar="SLO.yaml", help="A Keptn v1 slo.yaml.")],
    sli_file: Annotated[
        Path | None, typer.Option("--sli", metavar="SLI.yaml", help="The Prometheus SLI provider's sli.yaml.")
    ] = None,
    source: Annotated[
        str, typer.Option("--source", metavar="NAME", help="The Prometheus source the suites read.")
    ] = "metrics",
    values: Annotated[
        list[str] | None,
        typer.Option(
            "--set", metavar="NAME=VALUE", help="A placeholder's value: SERVICE=carts (repeatable)."
        ),
    ] = None,
    write: Annotated[
        bool, typer.Option("--write", help="Write suites/NAME.yaml into --config (never over a file).")
    ] = False,
    config: ConfigOption = Path("."),
) -> None:
    """Turn Keptn v1 SLO objectives (absolute pass and warning criteria; relative ones as a
    baseline from history) and their Prometheus SLIs into suites, and say the gate checks that
    use them. Printed as YAML, or the suites written with --write."""
    import yaml

    from gatecheck.config.keptn import import_keptn
    from gatecheck.config.loading import UniqueKeysLoader
    from gatecheck.config.models import CheckRef, SuiteConfig

    def read(path: Path) -> object:
        try:
            return yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeysLoader)  # a safe loader
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None

    with user_errors():
        given: dict[str, str] = {}
        for item in values or []:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--set: {item!r}: write NAME=VALUE (e.g. SERVICE=carts)")
            given[key.strip().removeprefix("$")] = value
        slo = read(slo_file)
        sli = read(sli_file) if sli_file is not None else None
        suites, checks, notes = import_keptn(
            slo, sli, source, given, str(slo_file), str(sli_file) if sli_file is not None else None
        )
        for suite in suites:
            try:
                SuiteConfig.model_validate(suite)
            except ValueError as exc:
                raise ConfigError(f"Keptn {suite['name']}: {str(exc).splitlines()[-1]}") from None
        for check in checks:
            CheckRef.model_validate(check)
        targets = [config / "suites" / f"{s['name']}.yaml" for s in suites]
        taken = [str(t) for t in targets if t.exists()]
        if write and taken:
            raise ConfigError(f"--write: {', '.join(taken)} exist already: nothing written")
    for note in notes:
        typer.echo(f"gatecheck: note: {note}", err=True)
    texts = [yaml.safe_dump(suite, sort_keys=False, allow_unicode=True, width=100) for suite in suites]
    gate = "# add to a gate's checks:\n" + yaml.safe_dump({"checks": checks}, sort_keys=False, width=100)
    if not write:
        typer.echo("---\n".join(texts), nl=False)
        typer.echo("---\n" + gate, nl=False)
        return
    for target, text in zip(targets, texts, strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {target}")
    typer.echo(gate, nl=False)
