"""The CLI in-process (typer's CliRunner): exit codes, formats, output files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gatecheck.cli import app

from ..conftest import AS_OF, PROJECT, warehouse_env

runner = CliRunner()
AS_OF_TEXT = AS_OF.isoformat()


def invoke(warehouse: Path, scenario: str, *args: str, config: Path = PROJECT):
    return runner.invoke(
        app,
        ["run", "--config", str(config), "--as-of", AS_OF_TEXT, *args],
        env=warehouse_env(warehouse, scenario),
    )


@pytest.mark.parametrize(
    ("scenario", "code", "word"),
    [
        ("healthy", 0, "GO"),
        ("unmatched-edges", 1, "NO-GO"),
        ("stale-ingest", 1, "NO-GO"),
        ("clock-skew", 1, "NO-GO"),
        ("rollup-drift", 1, "NO-GO"),
        ("unattributed-spike", 1, "NO-GO"),
        ("thin-traffic", 3, "INCONCLUSIVE"),
    ],
)
def test_run_exit_codes_match_the_verdict(warehouse: Path, scenario: str, code: int, word: str) -> None:
    result = invoke(warehouse, scenario, "--phase", "warehouse-release")
    assert result.exit_code == code, result.output
    assert result.stdout.startswith(f"{word}  phase warehouse-release")


def test_text_output_names_group_observed_value_and_threshold(warehouse: Path) -> None:
    result = invoke(warehouse, "unmatched-edges", "--phase", "warehouse-release")
    assert "edge_type=start->first_segment: observed" in result.stdout
    assert "≤ 0.5 % (unmatched_edge_rate_max, default)" in result.stdout


def test_json_document(warehouse: Path) -> None:
    result = invoke(warehouse, "unmatched-edges", "--phase", "warehouse-release", "--format", "json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["verdict"] == "no-go"
    assert document["phase"] == "warehouse-release" and document["environment"] == "staging"
    assert document["as_of"].startswith("2026-11-22T06:00:00")
    check = next(c for c in document["checks"] if c["suite"] == "unmatched_edges")
    assert check["outcome"] == "fail"
    assert check["window"]["length"] == "1h" and check["window"]["settle"] == "10m"
    expectation = check["expectations"][0]
    assert expectation["thresholds"][0] | {"value": 0.005} == {
        "name": "unmatched_edge_rate_max",
        "value": 0.005,
        "bound": "max",
        "provenance": "default",
        "key": "thresholds.yaml: defaults.unmatched_edge_rate_max",
    }
    assert expectation["failing_groups"][0]["group"] == {"edge_type": "start->first_segment"}
    assert {c["outcome"] for c in document["checks"]} <= {"pass", "fail", "inconclusive", "error"}


@pytest.mark.parametrize("scenario", ["healthy", "unmatched-edges"])
def test_json_is_identical_for_the_same_as_of(warehouse: Path, scenario: str) -> None:
    """The same as_of on the same data gives the same document, byte for byte (a passing gate,
    and a failing one with its failing groups in order)."""
    first = invoke(warehouse, scenario, "--phase", "warehouse-release", "--format", "json").stdout
    second = invoke(warehouse, scenario, "--phase", "warehouse-release", "--format", "json").stdout
    assert first == second and json.loads(first)["checks"]


def test_output_file(warehouse: Path, tmp_path: Path) -> None:
    target = tmp_path / "reports" / "gate.json"
    result = invoke(
        warehouse, "healthy", "--phase", "warehouse-release", "--format", "json", "--output", str(target)
    )
    assert result.exit_code == 0
    assert json.loads(target.read_text())["verdict"] == "go"
    assert result.stdout == ""


def test_output_file_gets_the_umask_mode(warehouse: Path, tmp_path: Path) -> None:
    target = tmp_path / "gate.json"
    previous = os.umask(0o022)
    try:
        result = invoke(warehouse, "healthy", "--phase", "warehouse-release", "--format", "json", "--output", str(target))
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    assert target.stat().st_mode & 0o777 == 0o644  # readable by an artifact uploader, not 0600


def test_output_to_a_pipe_or_through_a_link_is_written_there_and_a_full_device_is_one_line(
    warehouse: Path, tmp_path: Path
) -> None:
    """``--output /dev/stdout`` or a shell's ``>(jq .)`` is a device or a pipe: the report was
    written beside it and renamed over it — a file in its place (as root, /dev/stdout itself
    replaced), nothing read from the pipe. A link's target is written and the link kept; a
    device that cannot take the report (full) is one line and exit 2, never 0."""
    import stat
    import threading

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    read: list[str] = []
    reader = threading.Thread(target=lambda: read.append(pipe.read_text()), daemon=True)
    reader.start()
    result = invoke(warehouse, "healthy", "--phase", "warehouse-release", "--format", "json", "--output", str(pipe))
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(pipe.stat().st_mode) and json.loads(read[0])["verdict"] == "go"

    (tmp_path / "reports").mkdir()
    link = tmp_path / "latest.json"
    link.symlink_to(tmp_path / "reports" / "gate.json")
    result = invoke(warehouse, "healthy", "--phase", "warehouse-release", "--format", "json", "--output", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and json.loads((tmp_path / "reports" / "gate.json").read_text())["verdict"] == "go"

    full = tmp_path / "full"  # this test's own /dev/full (a character device: 1, 7)
    try:
        os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    except PermissionError:
        return  # not root: no device of our own to fill (the pipe above is the same path)
    result = invoke(warehouse, "healthy", "--phase", "warehouse-release", "--format", "json", "--output", str(full))
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"gatecheck: error: --output {full}: cannot write it (No space left on device)"
    assert stat.S_ISCHR(full.stat().st_mode)


def test_an_unwritable_output_is_refused_before_anything_is_evaluated(
    warehouse: Path, tmp_path: Path, isolated_history: Path
) -> None:
    blocker = tmp_path / "FILE"
    blocker.write_text("a file where a directory is needed")
    for args in (
        ["run", "--phase", "warehouse-release", "--format", "json", "--output", str(blocker / "x.json")],
        ["report", "--phase", "warehouse-release", "--output", str(blocker / "r.md")],
        ["backtest", "--phase", "warehouse-release", "--since", "2h", "--chart", str(blocker / "c.html")],
        ["run", "--phase", "warehouse-release", "--output", str(tmp_path)],
    ):
        result = runner.invoke(app, [*args, "--config", str(PROJECT)], env=warehouse_env(warehouse, "healthy"))
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and ("is not a directory" in lines[0] or "is a directory" in lines[0]), lines
        assert "Traceback" not in result.output
    from gatecheck.ledger import SqliteLedger

    assert not isolated_history.exists() or SqliteLedger(isolated_history).history("warehouse-release") == []


def test_rollback_trigger_gives_exit_4(warehouse: Path, config_copy: Path) -> None:
    gate = config_copy / "gates" / "warehouse-release.yaml"
    data = yaml.safe_load(gate.read_text())
    data["rollback"] = [{"suite": "unmatched_edges"}]
    gate.write_text(yaml.safe_dump(data))
    result = invoke(warehouse, "unmatched-edges", "--phase", "warehouse-release", config=config_copy)
    assert result.exit_code == 4, result.output
    assert result.stdout.startswith("ROLLBACK")
    assert invoke(warehouse, "healthy", "--phase", "warehouse-release", config=config_copy).exit_code == 0


def test_advisory_failure_does_not_block(warehouse: Path, config_copy: Path) -> None:
    gate = config_copy / "gates" / "warehouse-release.yaml"
    data = yaml.safe_load(gate.read_text())
    data["checks"][0]["required"] = False  # unmatched_edges advisory
    gate.write_text(yaml.safe_dump(data))
    result = invoke(warehouse, "unmatched-edges", "--phase", "warehouse-release", config=config_copy)
    assert result.exit_code == 0, result.output


def test_assume_approved_of_an_unknown_phase_is_a_usage_error(warehouse: Path) -> None:
    unknown = invoke(warehouse, "healthy", "--phase", "warehouse-release", "--assume-approved", "nope")
    assert unknown.exit_code == 2 and "unknown phase 'nope'" in unknown.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--phase", "canary-1000"], "unknown phase 'canary-1000' (did you mean 'canary-100'?)"),
        # click's own guess was "--record, --url": no close option, no guess
        (["--phase", "warehouse-release", "--colour"], "no option --colour (see gatecheck run --help)"),
        (["--phase", "warehouse-release", "--format", "yaml"], "'yaml' is not one of 'text', 'json', 'junit', 'markdown'"),
        (["--phaze", "warehouse-release"], "no option --phaze (did you mean '--phase'?) (see gatecheck run --help)"),
        (["--phase", "warehouse-release", "--as-of", "last tuesday"], "--as-of"),
        # year 1: every window began before datetime's first year, a traceback and "internal error"
        (["--phase", "warehouse-release", "--as-of", "0001-01-01T00:30:00Z"], "--as-of: '0001-01-01T00:30:00Z' lies before 1972"),
    ],
)
def test_bad_arguments_are_exit_2_with_one_line(warehouse: Path, args: list[str], message: str) -> None:
    result = invoke(warehouse, "healthy", *args)
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr


def test_source_down_is_inconclusive_exit_3(warehouse: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["run", "--phase", "warehouse-release", "--config", str(PROJECT), "--as-of", AS_OF_TEXT],
        env={"GATECHECK_CLICKHOUSE_URL": f"chdb://{tmp_path}/nothing-here"},
    )
    assert result.exit_code == 3
    assert "error" in result.stdout and "does not exist" in result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_phases_lists_the_chain_in_order() -> None:
    result = runner.invoke(app, ["phases", "--config", str(PROJECT)])
    assert result.exit_code == 0
    lines = [line for line in result.stdout.splitlines() if not line.startswith(" ")]
    names = [line.split()[0] for line in lines]
    assert names.index("staging-deploy") < names.index("staging-soak")
    assert "warehouse-release" in names


def test_history_lists_recorded_evaluations(
    warehouse: Path, live_databases: dict[str, str], isolated_history: Path
) -> None:
    def run_now(scenario: str, *extra: str):
        # Evaluated at now (live data), so the records fall inside --since 1h.
        env = {"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={live_databases[scenario]}"}
        return runner.invoke(
            app, ["run", "--phase", "warehouse-release", "--config", str(PROJECT), *extra], env=env
        )

    assert run_now("healthy").exit_code == 0
    assert run_now("unmatched-edges").exit_code == 1
    assert run_now("healthy", "--no-record").exit_code == 0
    text = runner.invoke(
        app, ["history", "--phase", "warehouse-release", "--config", str(PROJECT), "--since", "1h"]
    )
    assert text.exit_code == 0, text.output
    lines = text.stdout.strip().splitlines()
    assert len(lines) == 2 and "go" in lines[0] and "unmatched_edges=fail" in lines[1]
    as_json = runner.invoke(
        app,
        [
            "history",
            "--phase",
            "warehouse-release",
            "--config",
            str(PROJECT),
            "--since",
            "1h",
            "--format",
            "json",
        ],
    )
    records = json.loads(as_json.stdout)
    assert [r["verdict"] for r in records] == ["go", "no-go"]
    assert isolated_history.exists()
    bad = runner.invoke(
        app, ["history", "--phase", "warehouse-release", "--config", str(PROJECT), "--since", "soon"]
    )
    assert bad.exit_code == 2 and "--since" in bad.stderr


@pytest.mark.parametrize(
    ("command", "offered", "refused"),
    [
        (["run", "--phase", "staging-soak"], "text|json|junit|markdown|html", "csv"),
        (["demo"], "text|json|junit|markdown|html", "csv"),
        (["history", "--phase", "staging-soak"], "text|json", "junit"),
        (["history", "--phase", "staging-soak"], "text|json", "markdown"),
        (["status"], "text|json", "markdown"),
        (["report", "--phase", "staging-soak"], "markdown|html", "text"),
    ],
)
def test_each_command_offers_only_the_formats_it_renders(command: list[str], offered: str, refused: str) -> None:
    """`history --format junit` was offered by --help and silently printed text."""
    help_text = CliRunner().invoke(app, [command[0], "--help"], env={"COLUMNS": "200"}).output
    assert f"<{offered}>" in help_text, help_text
    result = CliRunner().invoke(app, [*command, "--format", refused])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"gatecheck: error: Invalid value for '--format' / '-f': '{refused}' is not one of "
        + ", ".join(f"'{f}'" for f in offered.split("|"))
        + "."
    ]


COLD_COMMANDS = {
    "help": ["--help"],
    "version": ["--version"],
    "phases": ["phases"],
    "status --url": ["status", "--url", "http://127.0.0.1:1"],
    "run --url": ["run", "--phase", "staging-soak", "--url", "http://127.0.0.1:1"],
    "history": ["history", "--phase", "staging-soak"],
}


@pytest.mark.parametrize("command", list(COLD_COMMANDS))
def test_cold_commands_import_only_what_they_need(command: str, tmp_path: Path) -> None:
    """In a fresh interpreter, the commands that only read (help, the chain, the ledger, a
    running service) import neither pandas, Great Expectations, chDB nor the service."""
    import subprocess
    import sys


    probe = (
        "import sys\n"
        f"sys.argv = ['gatecheck', *{COLD_COMMANDS[command]!r}]\n"
        "import gatecheck.cli\n"
        "try:\n    gatecheck.cli.main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('pandas', 'numpy', 'great_expectations', 'chdb', 'clickhouse_connect',"
        " 'gatecheck.service', 'gatecheck.evaluation.gate', 'gatecheck.evaluation.validation', 'fastapi', 'uvicorn')\n"
        "print('LOADED', sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    env = {**os.environ, "GATECHECK_HISTORY_URL": f"sqlite:///{tmp_path}/h.db"}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60
    )
    loaded = [line for line in done.stderr.splitlines() if line.startswith("LOADED")]
    assert loaded == ["LOADED []"], done.stderr


def test_no_record_writes_nothing_anywhere(warehouse: Path, config_copy: Path, tmp_path: Path) -> None:
    """--no-record: no record, no audit event (not even for --assume-*), no ledger file."""
    ledger = tmp_path / "never" / "history.db"
    (tmp_path / "never").mkdir()
    gate = yaml.safe_load((config_copy / "gates" / "staging-soak.yaml").read_text())
    result = runner.invoke(
        app,
        ["run", "--phase", "warehouse-release", "--config", str(config_copy), "--as-of", AS_OF_TEXT,
         "--no-record", "--assume-soaked", "--assume-approved", "staging-soak"],
        env={**warehouse_env(warehouse, "healthy"), "GATECHECK_HISTORY_URL": f"sqlite:///{ledger}"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "never").iterdir()) == [], "--no-record wrote into the ledger's directory"
    assert gate["soak"]  # (the shipped staging-soak has a soak; warehouse-release has none)


def test_an_assumption_is_audited_only_where_it_assumes_something(warehouse: Path, isolated_history: Path) -> None:
    from gatecheck.ledger import SqliteLedger

    result = invoke(
        warehouse, "healthy", "--phase", "warehouse-release", "--assume-soaked", "--assume-approved", "staging-soak",
        "--by", "ci",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    kinds = [e.kind for e in SqliteLedger(isolated_history).audit()]
    # warehouse-release has no soak and requires nothing: nothing was assumed
    assert "assumed-soaked" not in kinds and "assumed-approved" not in kinds, kinds


def test_no_record_on_a_clickhouse_ledger_creates_no_database(warehouse: Path) -> None:
    """The chDB ledger too: --no-record reads a ledger that is there and creates none."""
    from gatecheck.sources.clickhouse.connection import ClickHouse, Target

    url = f"chdb://{warehouse}?database=never_created_ledger"
    result = runner.invoke(
        app,
        ["run", "--phase", "warehouse-release", "--config", str(PROJECT), "--as-of", AS_OF_TEXT, "--no-record"],
        env={**warehouse_env(warehouse, "healthy"), "GATECHECK_HISTORY_URL": url},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with ClickHouse() as clickhouse:
        connection = clickhouse.connect(Target.parse(f"chdb://{warehouse}", warehouse))
        databases = set(connection.query_df("SELECT name FROM system.databases")["name"])
    assert "never_created_ledger" not in databases


def test_run_junit_carries_the_evaluations_durations(warehouse: Path) -> None:
    """`run --format junit` times each testcase by its own check and the suite by the whole
    evaluation (a check never takes longer than the evaluation it is part of)."""
    import xml.etree.ElementTree as ET

    result = invoke(warehouse, "healthy", "--phase", "warehouse-release", "--format", "junit")
    assert result.exit_code == 0, result.output
    suite = ET.fromstring(result.stdout)
    cases = [float(case.get("time", "")) for case in suite.iter("testcase") if case.get("name") != "verdict"]
    assert float(suite.get("time", "")) > 0 and len(cases) == 6
    assert all(0 < case <= float(suite.get("time", "")) for case in cases)


def test_run_url_against_an_unreachable_service_says_why_without_an_empty_table() -> None:
    from gatecheck.demo.bus import free_port

    port = free_port()
    result = runner.invoke(app, ["run", "--phase", "staging-soak", "--url", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 3  # inconclusive, never a pass
    assert "check  " not in result.stdout and "role" not in result.stdout  # no header over nothing
    assert "no check was judged" in result.stdout
    assert f"cannot reach the gatecheck service at http://127.0.0.1:{port}: connection refused" in result.stdout


def test_help_text_reflows_to_the_terminal() -> None:
    """A docstring's line breaks are not the help box's: on a wide terminal every command's
    summary is one line (report's broke after "status update" and after "HTML file")."""
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "240", "TERM": "dumb"})
    assert result.exit_code == 0
    report = [
        line
        for line in result.stdout.splitlines()
        if line.lstrip("│ ").startswith("report ") or "(markdown), or" in line
    ]
    assert len(report) == 1, report
    assert "the Phase B status update (markdown), or the phase page as one self-contained HTML file" in report[0]


def test_config_names_the_project_directory_or_its_gatecheck_yaml(config_copy: Path, tmp_path: Path) -> None:
    """A new user's `--config gatecheck.yaml` was refused as `gatecheck.yaml/gatecheck.yaml:
    not found`; it now stands for its directory. Any other file is refused, saying what
    --config names; a directory without the file is refused as before."""
    for given in (config_copy, config_copy / "gatecheck.yaml"):
        result = runner.invoke(app, ["validate", "--config", str(given)])
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("ok: 9 gates"), result.stdout
    for given, said in (
        (config_copy / "thresholds.yaml",
         f"gatecheck: error: {config_copy / 'thresholds.yaml'}: --config names the directory holding "
         "gatecheck.yaml, not a file"),
        (tmp_path, f"gatecheck: error: {tmp_path / 'gatecheck.yaml'}: not found (--config names the directory holding it)"),
    ):  # fmt: skip
        result = runner.invoke(app, ["validate", "--config", str(given)])
        assert result.exit_code == 2 and result.stderr.strip() == said, result.output
