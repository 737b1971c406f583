"""The demo's own commands: stopping exactly one workdir's servers."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from gatecheck.cli import app
from gatecheck.demo.database import EmbeddedPostgres

runner = CliRunner()


def pid_of(data: Path) -> int:
    return int((data / "postmaster.pid").read_text().splitlines()[0])


def running(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def test_demo_stop_stops_exactly_that_workdirs_postgresql(tmp_path: Path, postgres_server: EmbeddedPostgres) -> None:
    """A killed demo leaves its PostgreSQL running: `demo --stop --workdir DIR` stops that one
    (found by its pid file, checked by its command line), never another demo's."""
    workdir = tmp_path / "killed-demo"
    left = EmbeddedPostgres(workdir / ".gatecheck" / "postgres").start()  # as a killed demo leaves it
    other = pid_of(postgres_server.path)  # another "demo": the session's server
    mine = pid_of(left.path)
    assert running(mine) and running(other)
    result = runner.invoke(app, ["demo", "--stop", "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    assert not running(mine) and running(other)
    assert f"stopped the PostgreSQL of {workdir}" in result.stderr
    again = runner.invoke(app, ["demo", "--stop", "--workdir", str(workdir)])
    assert again.exit_code == 0 and "no PostgreSQL of" in again.stderr and running(other)


def test_the_demos_records_are_read_with_demo_and_nothing_writes_into_the_package(
    tmp_path: Path, monkeypatch
) -> None:
    """After `gatecheck demo`, status/history/audit/report read its records with --demo; a
    --config pointing into the installed package never creates a ledger there."""
    import json
    from datetime import UTC, datetime, timedelta

    from gatecheck.history import SqliteLedger
    from gatecheck.results import VerdictState
    from gatecheck.shipped import project_path

    from .test_notify import verdict

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GATECHECK_HISTORY_URL", raising=False)
    missing = runner.invoke(app, ["status", "--demo"])
    assert missing.exit_code == 2 and "no demo records" in missing.stderr
    (tmp_path / ".gatecheck").mkdir()
    ledger = SqliteLedger(tmp_path / ".gatecheck" / "history.db")
    # A record as the demo writes it: evaluated a minute ago (history --since is relative to now).
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    recorded = verdict(VerdictState.GO).model_copy(update={"phase": "staging-soak", "as_of": moment})
    ledger.clock = lambda: moment + timedelta(seconds=1)  # type: ignore[method-assign]
    ledger.record(recorded, 0.1)
    status = runner.invoke(app, ["status", "--demo", "--format", "json"])
    assert status.exit_code == 0, status.output
    assert {p["phase"]: p["verdict"] for p in json.loads(status.stdout)["phases"]}["staging-soak"] == "go"
    history = runner.invoke(app, ["history", "--demo", "--phase", "staging-soak", "--since", "1h"])
    assert history.exit_code == 0 and " go " in history.stdout, history.output
    assert runner.invoke(app, ["audit", "--demo"]).exit_code == 0
    assert runner.invoke(app, ["report", "--demo", "--phase", "staging-soak"]).exit_code == 0
    # The package's own directory: refused, and nothing created there.
    package = project_path("reference")
    refused = runner.invoke(app, ["history", "--phase", "staging-soak", "--config", str(package)])
    assert refused.exit_code == 2 and "inside the installed gatecheck package" in refused.stderr
    assert not (package / ".gatecheck").exists()
