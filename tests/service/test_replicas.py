"""Replicas: three real ``gatecheck serve`` processes on one embedded PostgreSQL ledger.

Exactly one schedules (the scheduler lease); every record of the schedule carries the lease's
epoch; a SIGKILLed leader is replaced within one interval plus the lease; a waiver created on
one replica is applied by the one that schedules; a leader cut off from the database stops
scheduling before its lease ends and its late write is refused (fencing).

Each replica reaches the ledger through a Unix-socket proxy of its own, which the test can
pause (the bytes held: a network partition, not a refused connection) and resume. The data the
suites query is reached directly, so a cut ledger does not stop an evaluation under way.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from gatecheck.results import Verdict

from ..conftest import SERVING, local_http, served_bases

INTERVAL_S = 2.0
# the holder stops scheduling at 3/4 of it without a renewal: a second before anyone can take
# over, whatever else the machine is running
TTL_S = 4.0
TOKEN = "replica-test-token"


class Proxy:
    """Forwards a PostgreSQL Unix socket; ``pause()`` holds every byte (existing and new
    connections hang, as behind a partition) until ``resume()``."""

    def __init__(self, target: Path, directory: Path) -> None:
        directory.mkdir(parents=True)
        self.directory = directory
        self.target = str(target)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(directory / target.name))
        self.listener.listen(64)
        self.open = threading.Event()
        self.open.set()
        self.closed = False
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            self.sockets += [client, upstream]
            ends = [2]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, client, upstream, ends), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, *pair: Any) -> None:
        client, upstream, ends = pair
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                self.open.wait()
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with self.lock:
            ends[0] -= 1
            if ends[0] == 0:
                client.close()
                upstream.close()

    def pause(self) -> None:
        self.open.clear()

    def resume(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.closed = True
        self.open.set()
        with contextlib.suppress(OSError):  # wakes the accepting thread: nothing more gets through
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for connection in self.sockets:
            connection.close()


def write_project(root: Path, ledger_url: str, data_url: str) -> None:
    (root / "suites").mkdir(parents=True)
    (root / "gates").mkdir()
    suites = {
        "quick": "SELECT count(*) AS n FROM things WHERE {as_of:timestamptz} IS NOT NULL",
        # long enough for the test to kill or cut a replica in the middle of a cycle
        "slow": "SELECT count(*) AS n FROM things, pg_sleep(0.8) WHERE {as_of:timestamptz} IS NOT NULL",
        "clean": "SELECT coalesce(max(bad), 0) AS bad FROM things WHERE {as_of:timestamptz} IS NOT NULL",
    }
    for name, query in suites.items():
        column, bound = ("bad", {"max_value": 0}) if name == "clean" else ("n", {"min_value": 1})
        suite = {
            "name": name, "source": "db", "window": {"length": "1h"}, "query": query,
            "evidence": "none",  # the replicas' schedule is under test: each query answers one row
            "expectations": [{"type": "expect_column_values_to_be_between", "column": column, **bound}],
        }  # fmt: skip
        (root / "suites" / f"{name}.yaml").write_text(yaml.safe_dump(suite))
    for phase, suite in (("first", "quick"), ("second", "slow"), ("gated", "clean")):
        gate = {"phase": phase, "environment": "test", "checks": [{"suite": suite}]}
        (root / "gates" / f"{phase}.yaml").write_text(yaml.safe_dump(gate))
    (root / "thresholds.yaml").write_text(yaml.safe_dump({"defaults": {}}))
    project = {
        "environments": {"test": {"sources": {"db": {"type": "postgresql", "url": data_url}}}},
        "history": {"url": ledger_url},
        "service": {
            "interval": f"{INTERVAL_S:g}s", "listen": "127.0.0.1:0", "lease": {"ttl": f"{TTL_S:g}s"},
        },
    }  # fmt: skip
    (root / "gatecheck.yaml").write_text(yaml.safe_dump(project))


class Replica:
    def __init__(self, name: str, root: Path, proxy: Proxy) -> None:
        self.name, self.root, self.proxy = name, root, proxy
        self._base: str | None = None  # it listens on a port it picks (listen: 127.0.0.1:0)
        gatecheck = shutil.which("gatecheck", path=str(Path(sys.executable).parent))
        assert gatecheck
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATECHECK_")}
        env["GATECHECK_API_TOKEN"] = TOKEN
        self.log_path = root / "serve.log"
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [gatecheck, "serve", "--config", str(root), "--log-format", "json"],
                stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=root,
            )  # fmt: skip

    @property
    def base(self) -> str:
        if self._base is None:
            (self._base,) = served_bases(self.log_path, self.process, timeout=90)
        return self._base

    def lines(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    def ready(self) -> dict[str, Any] | None:
        if self._base is None and not SERVING.search(self.log_path.read_text()):
            assert self.process.poll() is None, self.log_path.read_text()
            return None  # not listening yet
        with contextlib.suppress(httpx.HTTPError):
            answer = local_http.get(f"{self.base}/readyz", timeout=2)
            if answer.status_code == 200:
                return answer.json()  # type: ignore[no-any-return]
        return None

    def leader_gauge(self) -> float:
        text = local_http.get(f"{self.base}/metrics").text
        (line,) = [x for x in text.splitlines() if x.startswith("gatecheck_leader ")]
        return float(line.split()[1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_for(what: str, check: Any, timeout: float = 60.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def records(ledger_url: str) -> list[tuple[str, str, int | None, float, float, str]]:
    """(phase, verdict, epoch, recorded_at (s), duration_s, waivers) of every record, in order."""
    with psycopg.connect(ledger_url) as connection:
        rows = connection.execute(
            "SELECT phase, verdict, epoch, recorded_at_ms / 1000.0, duration_s, waivers"
            " FROM gatecheck_evaluations ORDER BY id"
        ).fetchall()
    return [(r[0], r[1], r[2], float(r[3]), float(r[4]), r[5]) for r in rows]


def holder(ledger_url: str) -> tuple[str, int] | None:
    with psycopg.connect(ledger_url) as connection:
        row = connection.execute(
            "SELECT holder, epoch FROM gatecheck_lease WHERE name = 'scheduler' AND expires_at > now()"
        ).fetchone()
    return (row[0], int(row[1])) if row else None


def slow_query_running(data_url: str) -> bool:
    with psycopg.connect(data_url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep(0.8)%'"
            " AND pid <> pg_backend_pid()"
        ).fetchone()
    return bool(row and row[0])


def at(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["time"].replace("Z", "+00:00")).timestamp()


@pytest.fixture
def cluster(postgres_server: Any, tmp_path: Path) -> Iterator[tuple[str, str, list[Replica]]]:
    tag = abs(hash(str(tmp_path))) % 10**8
    ledger_url = str(postgres_server.url(f"replicas_ledger_{tag}"))
    data_url = str(postgres_server.url(f"replicas_data_{tag}"))
    with psycopg.connect(data_url, autocommit=True) as connection:
        connection.execute("CREATE TABLE things (id int, bad int)")
        connection.execute("INSERT INTO things VALUES (1, 0), (2, 1)")  # one bad row: gated is NO-GO
    socket_dir = Path(ledger_url.split("host=")[1].split("&")[0])
    replicas = []
    for index in range(3):
        name = f"r{index}"
        proxy = Proxy(socket_dir / ".s.PGSQL.5432", Path(f"/tmp/gc-{tag}-{name}"))
        via_proxy = ledger_url.replace(f"host={socket_dir}", f"host={proxy.directory}")
        root = tmp_path / name
        write_project(root, via_proxy, data_url)
        replicas.append(Replica(name, root, proxy))
    try:
        yield ledger_url, data_url, replicas
    finally:
        for replica in replicas:
            replica.proxy.resume()
        for replica in replicas:
            replica.stop()
        for replica in replicas:
            replica.proxy.close()
            shutil.rmtree(replica.proxy.directory, ignore_errors=True)


def test_one_replica_schedules_a_killed_leader_is_replaced_and_a_cut_one_is_fenced(cluster) -> None:
    ledger_url, data_url, replicas = cluster
    by_pid = {r.process.pid: r for r in replicas}
    for replica in replicas:
        wait_for(f"{replica.name} ready", replica.ready, timeout=90)

    # The lease is 4 s: on a busy machine a holder that cannot renew in time stops and another
    # takes over, at any point of this test. Each step names the holder of the moment, and
    # every record, whoever wrote it, is checked against the holdings (fencing).
    def replica_of(holding: tuple[str, int]) -> Replica:
        return by_pid[int(holding[0].split(":")[1])]

    def agreed() -> tuple[str, int] | None:
        """The holding every live replica's gauge and /readyz name (None: not yet agreed)."""
        holding = holder(ledger_url)
        if holding is None:
            return None
        live = [r for r in replicas if r.process.poll() is None]
        states = [r.ready() for r in live]
        agree = [r.leader_gauge() for r in live] == [float(r is replica_of(holding)) for r in live] and all(
            s is not None and s["leader"] == holding[0] and s["scheduling"] is (r is replica_of(holding))
            for r, s in zip(live, states, strict=True)
        )
        return holding if agree and holder(ledger_url) == holding else None

    # --- exactly one schedules; three cycles of its records
    first_holder = wait_for("a leader", lambda: holder(ledger_url))
    wait_for("three cycles", lambda: sum(r[0] == "second" for r in records(ledger_url)) >= 3, timeout=30)
    wait_for("every replica naming the one that schedules", agreed, timeout=10)

    # --- SIGKILL the leader in the middle of a cycle (its slow query running)
    wait_for("the leader in the middle of a cycle", lambda: slow_query_running(data_url), timeout=10)
    killed = holder(ledger_url)
    assert killed is not None
    leader = replica_of(killed)
    leader.process.send_signal(signal.SIGKILL)
    killed_at = time.time()
    leader.process.wait(timeout=10)
    second_holder = wait_for("a new leader", lambda: (h := holder(ledger_url)) and h[1] > killed[1] and h)
    assert replica_of(second_holder) is not leader
    wait_for(
        "two cycles after the kill",
        lambda: sum((r[2] or 0) > killed[1] for r in records(ledger_url)) >= 6,
        timeout=30,
    )

    written = records(ledger_url)
    epochs = [-1 if r[2] is None else r[2] for r in written]
    # every record is the schedule's, and none of a holding lands after a later holding's (fencing)
    assert -1 not in epochs and epochs[0] == first_holder[1] and epochs == sorted(epochs), epochs
    with psycopg.connect(ledger_url) as connection:  # no partial record: each row is its whole verdict
        for phase, verdict, document in connection.execute(
            "SELECT phase, verdict, document FROM gatecheck_evaluations"
        ).fetchall():
            parsed = Verdict.model_validate_json(document)
            assert (parsed.phase, parsed.verdict.value) == (phase, verdict) and parsed.checks
    counts = {p: sum(r[0] == p and r[2] == first_holder[1] for r in written) for p in ("first", "second", "gated")}
    assert max(counts.values()) - min(counts.values()) <= 1, counts  # every cycle recorded every phase
    for phase in ("first", "second", "gated"):
        mine = [r for r in written if r[0] == phase]
        # once per cycle: never two records of a phase within one interval from one holding (a
        # cycle that overran its slot is coalesced with the next, never doubled)
        gaps = [
            b[3] - a[3] for epoch in set(epochs) for a, b in itertools.pairwise(r for r in mine if r[2] == epoch)
        ]
        assert gaps and all(g > INTERVAL_S * 0.5 for g in gaps), (phase, gaps)
        before = [r for r in mine if (r[2] or 0) <= killed[1]]
        after = [r for r in mine if (r[2] or 0) > killed[1]]
        # after the kill: unrecorded for at most one interval plus the lease, plus the time the
        # evaluations take and the successor's poll and start (2 s, for a busy machine)
        unrecorded = after[0][3] - before[-1][3]
        assert unrecorded <= INTERVAL_S + TTL_S + after[0][4] + before[-1][4] + 2.0, (phase, unrecorded)
        assert before[-1][3] <= killed_at + 1.0 and all(r[1] in ("go", "no-go") for r in mine)
    # each live replica said each change of leader it saw once: the first, then each of a later
    # epoch, the successor among them
    for replica in replicas:
        if replica is leader:
            continue
        seen = [(line["leader"], line["epoch"]) for line in replica.lines() if line["message"].startswith("leader: ")]
        assert seen[0] == first_holder and second_holder in seen, seen
        assert [epoch for _, epoch in seen] == sorted({epoch for _, epoch in seen}), seen

    # the replica that schedules now (the successor, unless the lease moved on since)
    current = wait_for("the leader", lambda: holder(ledger_url))
    successor = replica_of(current)
    assert successor is not leader

    # --- a waiver created on the replica that does not schedule is applied by the one that does
    follower = next(r for r in replicas if r is not leader and r is not successor)
    created = local_http.post(
        f"{follower.base}/api/v1/phases/gated/waivers",
        json={"check": "clean", "for": "1h", "reason": "known bad row, INC-1", "by": "alice"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    waived = wait_for(
        "the waiver applied",
        lambda: [r for r in records(ledger_url) if r[0] == "gated" and r[1] == "go"],
        timeout=20,
    )
    assert waived[0][2] >= current[1] and waived[0][5] == created.json()["waiver"]
    # the follower shows the leader's record (it follows the ledger)
    verdict = wait_for(
        "the follower's document",
        lambda: (d := local_http.get(f"{follower.base}/api/v1/phases/gated/verdict")).status_code == 200
        and d.json()["verdict"] == "go" and d.json(),
        timeout=10,
    )
    assert verdict["checks"][0]["waiver"]["id"] == created.json()["waiver"]

    # --- cut the successor off the database in the middle of a cycle
    wait_for("the successor in the middle of a cycle", lambda: slow_query_running(data_url), timeout=10)
    cutting = holder(ledger_url)
    assert cutting is not None
    if replica_of(cutting) is not successor:  # the lease moved on (a busy machine)
        successor, follower = follower, successor
    successor.proxy.pause()
    cut_at = time.time()
    third_holder = wait_for(
        "the last replica takes over", lambda: (h := holder(ledger_url)) and h[1] > cutting[1] and h, timeout=20
    )
    assert replica_of(third_holder) is follower
    successor.proxy.resume()  # its write of the cycle it was in reaches the database now: refused
    refused = wait_for(
        "the late write refused",
        lambda: [
            x for x in successor.lines()
            if "is refused" in x["message"] and f"lease of epoch {cutting[1]}" in x["message"]
        ],
        timeout=20,
    )  # fmt: skip
    assert f"no longer holds the scheduler lease of epoch {cutting[1]}" in refused[0]["message"]
    stopped = [x for x in successor.lines() if x["message"].startswith("this replica stopped scheduling")]
    took_over = [
        x for x in follower.lines()
        if x["message"].startswith("leader: ") and x.get("epoch") == third_holder[1] and x["this_replica"]
    ]  # fmt: skip
    assert stopped and took_over
    # it stopped scheduling before its lease could have ended: before anyone could take over
    assert cut_at < at(stopped[-1]) < at(took_over[0]), (stopped[-1], took_over[0])
    assert "could not be renewed" in stopped[-1]["message"]
    late = [r for r in records(ledger_url) if r[2] == cutting[1] and r[3] > at(took_over[0])]
    assert late == []
    wait_for("the last replica's records", lambda: any(r[2] == third_holder[1] for r in records(ledger_url)))
    assert successor.leader_gauge() == 0.0 and follower.leader_gauge() == 1.0


def test_a_clean_stop_gives_the_lease_up_and_another_replica_schedules_at_once(postgres_server: Any) -> None:
    """A stopping leader (SIGTERM, a rolling update) releases the lease: the other replica
    schedules long before the lease would have run out."""
    import asyncio
    from datetime import timedelta

    from gatecheck.service.lease import Leadership

    url = str(postgres_server.url(f"replicas_stop_{os.getpid()}"))
    ttl = timedelta(seconds=30)

    async def scenario() -> tuple[float, list[str]]:
        ran: list[str] = []

        def schedule(name: str) -> Any:
            async def run() -> None:
                ran.append(name)
                await asyncio.Event().wait()

            return run

        first, second = Leadership(url, ttl, holder="first"), Leadership(url, ttl, holder="second")
        leading = asyncio.create_task(first.run(schedule("first")))
        await asyncio.sleep(0)
        while not first.leading:
            await asyncio.sleep(0.05)
        following = asyncio.create_task(second.run(schedule("second")))
        while second.leader is None:
            await asyncio.sleep(0.05)
        assert not second.leading and second.leader[0] == "first"
        stopped = time.monotonic()
        leading.cancel()
        await asyncio.gather(leading, return_exceptions=True)
        while not second.leading:
            await asyncio.sleep(0.05)
        took = time.monotonic() - stopped
        assert second.current is not None and second.current.epoch == 2
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        return took, ran

    took, ran = asyncio.run(scenario())
    assert ran == ["first", "second"]
    assert took < ttl.total_seconds() / 3  # it did not wait for the 30 s lease to run out


def test_a_leader_whose_database_refuses_it_stops_scheduling_before_its_lease_ends(
    postgres_server: Any, tmp_path: Path
) -> None:
    """The database goes away (connections refused: a quick error each time, not a hang): the
    holder keeps asking, and stops scheduling before the lease it held can have ended."""
    import asyncio
    from datetime import timedelta

    from gatecheck.service.lease import Leadership

    url = str(postgres_server.url(f"replicas_refused_{os.getpid()}"))
    socket_dir = Path(url.split("host=")[1].split("&")[0])
    proxy = Proxy(socket_dir / ".s.PGSQL.5432", Path(f"/tmp/gc-refused-{os.getpid()}"))
    via_proxy = url.replace(f"host={socket_dir}", f"host={proxy.directory}")
    ttl = timedelta(seconds=4)

    async def scenario() -> tuple[float, datetime]:
        leadership = Leadership(via_proxy, ttl, holder="refused")
        stopped = asyncio.Event()

        async def schedule() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                stopped.set()

        running = asyncio.create_task(leadership.run(schedule))
        while not leadership.leading:
            await asyncio.sleep(0.05)
        proxy.close()  # nothing listens there any more: every question is refused at once
        # a bound for a hung test only: when it stopped is judged against the lease below
        await asyncio.wait_for(stopped.wait(), 3 * ttl.total_seconds())
        at_stop = time.time()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        with psycopg.connect(url) as connection:
            row = connection.execute("SELECT expires_at FROM gatecheck_lease WHERE holder = 'refused'").fetchone()
        assert row is not None
        return at_stop, row[0]

    try:
        at_stop, expired = asyncio.run(scenario())
    finally:
        proxy.close()
        shutil.rmtree(proxy.directory, ignore_errors=True)
    assert at_stop < expired.timestamp(), (at_stop, expired)
