"""stream_topology and soak_criteria through the gate engine, on real nats-servers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gatecheck.cli import app
from gatecheck.config import load_project
from gatecheck.demo.bus import NatsServer, build_topology, free_port
from gatecheck.results import CheckResult, Outcome, Verdict, VerdictState

from ..conftest import PROJECT, REPO, evaluate


def bus_gate(config: Path, environment: str = "staging", thresholds: dict | None = None) -> None:
    gate = {
        "phase": "bus-check",
        "environment": environment,
        "window": "1h",
        "checks": [{"suite": "stream_topology"}, {"suite": "soak_criteria"}],
    }
    (config / "gates" / "bus-check.yaml").write_text(yaml.safe_dump(gate))
    if thresholds:
        path = config / "thresholds.yaml"
        data = yaml.safe_load(path.read_text())
        data["phases"]["bus-check"] = thresholds
        path.write_text(yaml.safe_dump(data))


def judge(config: Path, url: str, as_of: datetime | None = None) -> Verdict:
    project = load_project(config, environ={"GATECHECK_NATS_URL": url, "GATECHECK_NATS_PRODUCTION_URL": url})
    return asyncio.run(evaluate(project, "bus-check", as_of))


def check(verdict: Verdict, suite: str) -> CheckResult:
    return next(c for c in verdict.checks if c.suite == suite)


def failures(result: CheckResult) -> list[tuple[str | None, dict[str, str], object, object]]:
    return [
        (e.column, g.group, g.observed_value, g.expected_value)
        for e in result.expectations
        for g in e.failing_groups
    ]


@pytest.fixture
def gate_config(config_copy: Path) -> Path:
    bus_gate(config_copy)
    return config_copy


def test_healthy_bus_passes_with_evidence(gate_config: Path, bus_for) -> None:
    verdict = judge(gate_config, bus_for("healthy"))
    assert verdict.verdict is VerdictState.GO, verdict.reasons
    soak = check(verdict, "soak_criteria")
    assert soak.evidence is not None and soak.evidence.observed_total == 240
    share = next(e for e in soak.expectations if e.column == "core_hot_share")
    assert share.observed_value == 1 and share.thresholds[0].value == 1.0


def test_one_fallback_message_is_no_go_naming_the_legacy_stream(gate_config: Path, bus_for) -> None:
    verdict = judge(gate_config, bus_for("fallback"))
    assert verdict.verdict is VerdictState.NO_GO
    soak = check(verdict, "soak_criteria")
    assert soak.outcome is Outcome.FAIL
    assert ("fallback_events", {"kind": "window", "stream": "", "consumer": ""}, 1, None) in failures(soak)
    assert "ATHLETE_ALLY_EVENTS" in verdict.reasons[0]
    share = [f for f in failures(soak) if f[0] == "core_hot_share"]
    assert share and share[0][2] == pytest.approx(240 / 241)


def test_dead_letters_are_no_go(gate_config: Path, bus_for) -> None:
    verdict = judge(gate_config, bus_for("dlq"))
    assert verdict.verdict is VerdictState.NO_GO
    assert [(f[0], f[2]) for f in failures(check(verdict, "soak_criteria"))] == [("dlq_messages", 3)]


def test_dead_letters_deleted_after_the_fact_are_never_an_empty_dlq(config_copy: Path, tmp_path: Path) -> None:
    """A DLQ holding an old dead letter (before the soak's window) whose three new ones were
    removed with `nats stream rmm`: the window counted 0 dead letters, and the soak was GO.
    The count is now an error naming the stream and the sequences deleted from the window."""
    import math
    import time

    import nats

    from gatecheck.demo.bus import build_topology, publish_traffic

    async def dead_letter(url: str) -> None:
        connection = await nats.connect(url)
        try:
            await connection.jetstream().publish("dlq.normalize.hrv.raw-received", b"{}", stream="AA_DLQ")
        finally:
            await connection.close()

    async def delete(url: str, seqs: list[int]) -> None:
        connection = await nats.connect(url)
        try:
            for seq in seqs:
                await connection.jsm().delete_msg("AA_DLQ", seq)
        finally:
            await connection.close()

    with NatsServer(tmp_path / "bus") as server:
        asyncio.run(build_topology(server.url))
        asyncio.run(dead_letter(server.url))  # seq 1, before the window
        time.sleep(0.05)
        start = datetime.now(UTC)
        asyncio.run(publish_traffic(server.url, "dlq"))  # seq 2-4 on AA_DLQ
        length = math.ceil((datetime.now(UTC) - start).total_seconds()) + 1
        bus_gate(config_copy)
        gate = config_copy / "gates" / "bus-check.yaml"
        gate.write_text(gate.read_text().replace("window: 1h", f"window: {length}s"))
        as_of = start + timedelta(seconds=length)
        while datetime.now(UTC) <= as_of:  # the window closed: nothing judged ahead of its end
            time.sleep(0.05)
        assert judge(config_copy, server.url, as_of).verdict is VerdictState.NO_GO  # 3 dead letters
        asyncio.run(delete(server.url, [2, 3, 4]))
        verdict = judge(config_copy, server.url, as_of)
    assert verdict.verdict is not VerdictState.GO, verdict.reasons
    soak = check(verdict, "soak_criteria")
    assert soak.outcome is Outcome.ERROR, soak
    assert "stream AA_DLQ had 3 message(s) deleted from the window (sequence 2, 3, 4)" in (soak.reason or "")

def test_a_missing_stream_fails_the_topology(gate_config: Path, bus_for) -> None:
    verdict = judge(gate_config, bus_for("missing-stream"))
    assert verdict.verdict is VerdictState.NO_GO
    topology = check(verdict, "stream_topology")
    assert [(f[0], f[1]["stream"], f[2]) for f in failures(topology)] == [("exists", "AA_DLQ", False)]
    # Counting on a stream that does not exist cannot be judged: error, not pass.
    assert check(verdict, "soak_criteria").outcome is Outcome.ERROR


def test_a_quiet_window_is_too_little_evidence(gate_config: Path, tmp_path: Path) -> None:
    """The topology in place and no message in the window (judged now: a stream's and a
    consumer's state is the present, so a quiet window of the past is no such test)."""
    with NatsServer(tmp_path / "quiet") as server:
        asyncio.run(build_topology(server.url))
        verdict = judge(gate_config, server.url)
    assert verdict.verdict is VerdictState.INCONCLUSIVE
    soak = check(verdict, "soak_criteria")
    assert soak.outcome is Outcome.INCONCLUSIVE and "too little evidence" in (soak.reason or "")


def test_consumer_backlog_over_the_threshold(config_copy: Path, bus_for) -> None:
    bus_gate(config_copy, thresholds={"consumer_pending_max": 10})
    verdict = judge(config_copy, bus_for("healthy"))
    soak = check(verdict, "soak_criteria")
    assert [(f[0], f[1]["consumer"], f[2]) for f in failures(soak)] == [
        ("num_pending", "normalize-hrv-durable", 25)
    ]
    pending = next(e for e in soak.expectations if e.column == "num_pending")
    assert (pending.thresholds[0].value, pending.thresholds[0].provenance) == (10, "phase")


def test_production_expects_three_replicas(config_copy: Path, bus_for) -> None:
    bus_gate(config_copy, environment="production")
    verdict = judge(config_copy, bus_for("healthy"))
    topology = check(verdict, "stream_topology")
    assert topology.outcome is Outcome.FAIL
    replicas = [(f[1]["stream"], f[2]) for f in failures(topology) if f[0] == "replicas"]
    assert replicas == [("AA_CORE_HOT", 1), ("AA_DLQ", 1), ("AA_VENDOR_HOT", 1), ("ATHLETE_ALLY_EVENTS", 1)]
    expectation = next(e for e in topology.expectations if e.column == "replicas")
    assert {(t.bound, t.value, t.provenance) for t in expectation.thresholds} == {
        ("min", 3, "environment"),
        ("max", 3, "environment"),
    }


def test_wrong_subjects_and_a_missing_consumer_name_field_expected_and_actual(
    gate_config: Path, tmp_path: Path
) -> None:
    with NatsServer(tmp_path / "nats") as server:
        asyncio.run(build_topology(server.url))

        async def break_it() -> None:
            import nats

            connection = await nats.connect(server.url)
            jsm = connection.jsm()
            await jsm.delete_consumer("AA_CORE_HOT", "normalize-hrv-durable")
            info = await jsm.stream_info("AA_VENDOR_HOT")
            config = info.config
            config.subjects = ["vendor.oura.>"]
            await jsm.update_stream(config)
            await connection.close()

        asyncio.run(break_it())
        verdict = judge(gate_config, server.url)
    topology = check(verdict, "stream_topology")
    found = failures(topology)
    assert (
        "subjects",
        {"kind": "stream", "stream": "AA_VENDOR_HOT", "consumer": ""},
        "vendor.oura.>",
        "vendor.>",
    ) in found
    assert (
        "exists",
        {"kind": "consumer", "stream": "AA_CORE_HOT", "consumer": "normalize-hrv-durable"},
        False,
        None,
    ) in found


def test_nats_down_is_error_and_inconclusive(gate_config: Path) -> None:
    verdict = judge(gate_config, f"nats://127.0.0.1:{free_port()}")
    assert verdict.verdict is VerdictState.INCONCLUSIVE
    assert {c.outcome for c in verdict.checks} == {Outcome.ERROR}
    assert "cannot reach NATS at 127.0.0.1:" in (verdict.checks[0].reason or "")
    assert (verdict.checks[0].reason or "").endswith(": connection refused")


@pytest.mark.parametrize(
    ("scenario", "code", "word"),
    [
        ("healthy", 0, "GO"),
        ("fallback", 1, "NO-GO"),
        ("dlq", 1, "NO-GO"),
        ("missing-stream", 1, "NO-GO"),
        ("nats-down", 3, "INCONCLUSIVE"),
    ],
)
def test_staging_soak_verdicts_on_the_demo_bus(
    warehouse: Path, live_warehouse: str, bus_for, metrics_url: str, postgres_for, e2e_for, scenario: str, code: int, word: str
) -> None:
    url = f"nats://127.0.0.1:{free_port()}" if scenario == "nats-down" else bus_for(scenario)
    env = {
        "GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={live_warehouse}",
        "GATECHECK_NATS_URL": url, "GATECHECK_NATS_PRODUCTION_URL": url,
        "GATECHECK_PROMETHEUS_URL": metrics_url,
        "GATECHECK_POSTGRES_URL": postgres_for("healthy", live=True),
        "GATECHECK_E2E_REPORTS": e2e_for("healthy", live=True),
    }
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--phase",
            "staging-soak",
            "--config",
            str(PROJECT),
            "--assume-approved",
            "staging-deploy",
            "--assume-soaked",
        ],
        env=env,
    )
    assert result.exit_code == code, result.output
    assert result.stdout.startswith(f"{word}  phase staging-soak")
    assert "assumed covered (--assume-soaked)" in result.stdout


def test_the_documented_nats_suite_example_works(config_copy: Path, bus_for) -> None:
    text = (REPO / "docs" / "sources" / "nats.md").read_text()
    section = text[text.index("# NATS suites") :]
    example = section[
        section.index("```yaml") + len("```yaml") : section.index("```", section.index("```yaml") + 7)
    ]
    suite = yaml.safe_load(example)
    (config_copy / "suites" / f"{suite['name']}.yaml").write_text(example)
    gate = {"phase": "readme-example", "environment": "staging", "checks": [{"suite": suite["name"]}]}
    (config_copy / "gates" / "readme-example.yaml").write_text(yaml.safe_dump(gate))
    project = load_project(config_copy, environ={"GATECHECK_NATS_URL": bus_for("healthy"), "GATECHECK_NATS_PRODUCTION_URL": bus_for("healthy")})
    verdict = asyncio.run(evaluate(project, "readme-example"))
    assert verdict.verdict is VerdictState.GO, verdict.reasons
    fallback = asyncio.run(
        evaluate(
            load_project(config_copy, environ={"GATECHECK_NATS_URL": bus_for("fallback"), "GATECHECK_NATS_PRODUCTION_URL": bus_for("fallback")}), "readme-example"
        )
    )
    assert fallback.verdict is VerdictState.NO_GO


def test_a_missing_durable_consumer_alone_is_a_failure_not_an_error(gate_config: Path, tmp_path: Path) -> None:
    """Only the consumer is missing: `exists` is observed False, and the frame still has every
    documented column (filter_subject, ack_policy… NULL), so the check fails: NO-GO."""
    with NatsServer(tmp_path / "nats") as server:
        asyncio.run(build_topology(server.url))

        async def drop_consumer() -> None:
            import nats

            connection = await nats.connect(server.url)
            await connection.jsm().delete_consumer("AA_CORE_HOT", "normalize-hrv-durable")
            await connection.close()

        asyncio.run(drop_consumer())
        verdict = judge(gate_config, server.url)
    topology = check(verdict, "stream_topology")
    assert topology.outcome is Outcome.FAIL, topology.reason
    assert verdict.verdict is VerdictState.NO_GO
    assert failures(topology) == [
        ("exists", {"kind": "consumer", "stream": "AA_CORE_HOT", "consumer": "normalize-hrv-durable"}, False, None)
    ]
    assert "normalize-hrv-durable" in verdict.reasons[0]


def test_every_row_kind_has_every_documented_column(tmp_path: Path) -> None:
    from gatecheck.sources.nats import COLUMNS, NatsQuery, NatsSource

    with NatsServer(tmp_path / "nats") as server:
        asyncio.run(build_topology(server.url, skip=["AA_DLQ"]))
        project = load_project(PROJECT, environ={"GATECHECK_NATS_URL": server.url, "GATECHECK_NATS_PRODUCTION_URL": server.url})
        config = project.config.environments["staging"].sources["bus"]
        query = NatsQuery.model_validate(
            {
                "streams": [{"name": "AA_DLQ"}, {"name": "AA_CORE_HOT"}],
                "consumers": [{"stream": "AA_CORE_HOT", "name": "nobody"}],
            }
        )

        async def ask() -> list[str]:
            source = NatsSource("bus", config, PROJECT)
            try:
                now = datetime.now(UTC)
                frame = await source.query(query, {"window_start": now - timedelta(hours=1), "window_end": now})
            finally:
                await source.close()
            return list(frame.columns)

        # Nothing of what the query names exists but one stream: the shape is the same.
        assert asyncio.run(ask()) == list(COLUMNS)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Three nats-servers as one JetStream cluster, the Phase B streams on it with 3 replicas
    and the demo's traffic (as `gatecheck demo` builds production's bus)."""
    from gatecheck.demo.bus import NatsCluster, prepare_bus

    running = NatsCluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        prepare_bus(running.url, "healthy", replicas=3)
        yield running
    finally:
        running.stop()


def test_production_on_a_cluster_needs_every_replica_current_and_names_a_node_that_is_not(
    config_copy: Path, cluster: Any
) -> None:
    """On three current replicas stream_topology passes; with a node down (the first server of
    the source's URL list, so the source must reach another) it fails, each stream naming
    the node, while the streams keep their quorum and the bus still answers."""
    bus_gate(config_copy, environment="production")
    healthy = check(judge(config_copy, cluster.url), "stream_topology")
    assert healthy.outcome is Outcome.PASS, healthy.reason
    current = next(e for e in healthy.expectations if e.column == "current_replicas")
    assert current.observed_value == 3 and current.thresholds[0].value == 3

    cluster.kill("gatecheck-n1")  # returns once the other two lead every stream
    down = check(judge(config_copy, cluster.url), "stream_topology")
    assert down.outcome is Outcome.FAIL and down.source_available is True, down.reason
    lagging = [(f[1]["stream"], f[2]) for f in failures(down) if f[0] == "lagging_replicas"]
    assert lagging == [(s, "gatecheck-n1 (offline)") for s in ("AA_CORE_HOT", "AA_DLQ", "AA_VENDOR_HOT", "ATHLETE_ALLY_EVENTS")]
    assert {f[2] for f in failures(down) if f[0] == "current_replicas"} == {2}
    assert all(f[0] in ("current_replicas", "lagging_replicas") for f in failures(down))  # nothing else broke


def test_a_cluster_url_lists_nats_servers_only(config_copy: Path) -> None:
    from gatecheck.config import load_project
    from gatecheck.errors import ConfigError

    with pytest.raises(ConfigError) as raised:
        load_project(config_copy, environ={"GATECHECK_NATS_PRODUCTION_URL": "nats://a:4222,http://b:4222"})
    assert (
        "environments.production.sources.bus.url: each server of a cluster (separated by commas) is a "
        "nats:// or tls:// URL" in str(raised.value)
    )


def test_a_cluster_whose_chosen_route_port_is_taken_meanwhile_starts_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed's route port is the one port chosen before a server binds it; when another
    process takes it first (what failed CI once: "bind: address already in use"), the seed is
    started again on another, and the cluster elects a leader. The other nodes and every
    client port are picked by the servers themselves."""
    import socket

    from gatecheck.demo import bus

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        chosen = iter([taken_port])
        monkeypatch.setattr(bus, "free_port", lambda: next(chosen, 0) or _unused_port())
        running = bus.NatsCluster(tmp_path / "cluster").start()
        try:
            seed = running.nodes["gatecheck-n1"]
            assert seed.cluster_port not in (0, taken_port)
            assert all(node.port for node in running.nodes.values())
            assert len({node.cluster_port for node in running.nodes.values()}) == 3
        finally:
            running.stop()


def _unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_waits_on_an_electing_cluster_start_short_and_double_to_a_bound() -> None:
    """A JetStream request sent before a cluster has its leader is never answered: the demo
    asks again soon (a quarter second), and waits longer each time it is not answered, up to
    2 s (a busy machine answers slowly, but answers)."""
    from itertools import islice

    from gatecheck.demo.bus import _patience

    assert list(islice(_patience(), 6)) == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
