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
