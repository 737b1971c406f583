"""A package that stands alone: `init`, `--version`, help that says what it takes."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gatecheck.cli import Scenario, app
from gatecheck.demo.run import scenarios
from gatecheck.shipped import project_files

runner = CliRunner()


@pytest.mark.parametrize("template", ["minimal", "reference"])
def test_init_writes_a_project_that_validates(template: str, tmp_path: Path) -> None:
    target = tmp_path / "gates-of-mine"  # created by init
    result = runner.invoke(app, ["init", str(target), "--from", template])
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file())
    assert written == project_files(template)
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["wrote"] * len(written)
    validated = runner.invoke(app, ["validate", "--config", str(target)])
    assert validated.exit_code == 0, validated.output
    assert validated.stdout.startswith("ok: ")


def test_minimal_project_explains_every_key_it_sets(tmp_path: Path) -> None:
    runner.invoke(app, ["init", str(tmp_path)])
    project = (tmp_path / "gatecheck.yaml").read_text()
    # One environment, a source of each kind (two commented out), the ledger, the service.
    assert "type: clickhouse" in project
    assert "#   type: nats" in project and "#   type: prometheus" in project
    assert project.count("#") > 20
    assert "phase: release" in (tmp_path / "gates" / "release.yaml").read_text()
    suite = (tmp_path / "suites" / "events_arriving.yaml").read_text()
    assert "evidence:" in suite and "# Too little evidence" in suite


def test_an_unused_threshold_is_pointed_at_a_name_this_project_uses(tmp_path: Path) -> None:
    """"Did you mean" offers a threshold the project's suites use before one the reference
    declares that nothing here uses (which would fix nothing)."""
    runner.invoke(app, ["init", str(tmp_path)])
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text(thresholds.read_text().replace("defaults:\n", "defaults:\n  event_age_max_s: 5\n", 1))
    result = runner.invoke(app, ["validate", "--config", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "gatecheck: error: thresholds.yaml: defaults.event_age_max_s: no suite uses a threshold of this "
        "name (did you mean 'newest_event_age_max_s'?)"
    )


def test_init_never_overwrites_and_lists_what_it_skipped(tmp_path: Path) -> None:
    (tmp_path / "gates").mkdir()
    mine = tmp_path / "gatecheck.yaml"
    mine.write_text("environments: {}\n")
    (tmp_path / "gates" / "release.yaml").write_text("# my own gate\n")
    result = runner.invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 0
    assert mine.read_text() == "environments: {}\n"
    assert (tmp_path / "gates" / "release.yaml").read_text() == "# my own gate\n"
    lines = result.stdout.splitlines()
    assert f"skipped  {tmp_path / 'gatecheck.yaml'} (exists, left as it is)" in lines
    assert f"skipped  {tmp_path / 'gates' / 'release.yaml'} (exists, left as it is)" in lines
    assert f"wrote    {tmp_path / 'thresholds.yaml'}" in lines


def test_init_into_an_existing_project_writes_nothing_and_exits_2(tmp_path: Path) -> None:
    assert runner.invoke(app, ["init", str(tmp_path), "--from", "reference"]).exit_code == 0
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    again = runner.invoke(app, ["init", str(tmp_path), "--from", "reference"])
    assert again.exit_code == 2
    assert again.stderr.strip().splitlines() == [
        f"gatecheck: error: {tmp_path}: nothing written: every file of the reference project is "
        f"already there ({len(before)} skipped; remove them or init another directory)"
    ]
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_init_refuses_a_file_as_directory_and_an_unknown_template(tmp_path: Path) -> None:
    a_file = tmp_path / "x"
    a_file.write_text("")
    result = runner.invoke(app, ["init", str(a_file)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"gatecheck: error: {a_file}: exists and is not a directory"
    unknown = runner.invoke(app, ["init", str(tmp_path / "y"), "--from", "huge"])
    assert unknown.exit_code == 2 and "'huge' is not one of 'minimal', 'reference'" in unknown.stderr
    assert not (tmp_path / "y").exists()


def test_version_names_the_package_and_its_engines() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"gatecheck {metadata.version('gatecheck')}"
    assert f"  Great Expectations {metadata.version('great-expectations')}" in lines
    assert f"  chDB {metadata.version('chdb')} (ClickHouse {metadata.version('chdb-core')})" in lines


@pytest.mark.parametrize("command", [[], ["run"], ["demo"], ["serve"], ["init"], ["history"]])
def test_help_shows_flags_without_a_value_label(command: list[str]) -> None:
    text = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).stdout
    assert "--help" in text
    assert "<bool>" not in text and "list[str]" not in text, text


def test_demo_help_lists_every_scenario() -> None:
    assert [s.value for s in Scenario] == list(scenarios())
    text = " ".join(runner.invoke(app, ["demo", "--help"], env={"COLUMNS": "300"}).stdout.split())
    for name in scenarios():
        assert name in text


def test_an_unknown_phase_lists_the_known_ones_in_promotion_order() -> None:
    from ..conftest import PROJECT

    result = runner.invoke(app, ["history", "--phase", "nope", "--config", str(PROJECT)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "gatecheck: error: unknown phase 'nope' (known phases: staging-predeploy, staging-deploy, "
        "staging-soak, prod-predeploy, canary-10, canary-50, canary-100, prod-soak, warehouse-release)"
    )


def test_demo_refuses_a_workdir_that_is_not_a_directory(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--workdir", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"gatecheck: error: --workdir: {tmp_path / 'missing'} is not a directory"
