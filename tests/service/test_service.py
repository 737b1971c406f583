"""The real service in-process (uvicorn on a free port) against chDB and a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from gatecheck.cli import app
from gatecheck.config import load_project
from gatecheck.demo.bus import NatsServer, free_port, prepare_bus
from gatecheck.evaluation.validation import warm_up
from gatecheck.ledger import LedgerError, SqliteLedger
from gatecheck.results import Verdict
from gatecheck.service.core import Service
from gatecheck.service.server import run_service

from ..conftest import REPO, listening_server, local_http, serving

PHASES = ("svc-go", "svc-nogo", "svc-inconclusive", "svc-rollback")


@pytest.fixture(scope="module")
def service_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("svc-bus")).start()
    prepare_bus(server.url, "healthy")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service_config(
    tmp_path_factory: pytest.TempPathFactory,
    warehouse: Path,
    live_databases: dict[str, str],
    service_bus: NatsServer,
) -> Path:
    from ..conftest import PROJECT

    root = tmp_path_factory.mktemp("svc-config")
    (root / "suites").mkdir()
    (root / "gates").mkdir()
    for suite in ("unmatched_edges", "freshness_lag", "soak_criteria"):
        (root / "suites" / f"{suite}.yaml").write_text((PROJECT / "suites" / f"{suite}.yaml").read_text())
    thresholds = yaml.safe_load((PROJECT / "thresholds.yaml").read_text())
    thresholds["environments"], thresholds["phases"] = {}, {}
    (root / "thresholds.yaml").write_text(yaml.safe_dump(thresholds))

    def env(database: str) -> dict[str, Any]:
        return {
            "sources": {
                "warehouse": {"type": "clickhouse", "url": f"chdb://{warehouse}?database={database}"},
                "bus": {"type": "nats", "url": service_bus.url, "timeout": "2s"},
            }
        }

    project = {
        "environments": {
            "e-healthy": env(live_databases["healthy"]),
            "e-unmatched": env(live_databases["unmatched-edges"]),
            "e-thin": env(live_databases["thin-traffic"]),
            # Nobody listens on its bus: a phase there is judged on an unreachable source.
            "e-down": {
                "sources": {
                    "bus": {"type": "nats", "url": f"nats://127.0.0.1:{free_port()}", "timeout": "2s"}
                }
            },
        },
        "history": {"url": f"sqlite:///{root / 'history.db'}"},
        "service": {"interval": "1h", "listen": "127.0.0.1:9464"},
    }
    (root / "gatecheck.yaml").write_text(yaml.safe_dump(project))
    gates = {
        "svc-go": {
            "environment": "e-healthy",
            "checks": [{"suite": "unmatched_edges"}, {"suite": "soak_criteria"}],
        },
        "svc-nogo": {"environment": "e-unmatched", "checks": [{"suite": "unmatched_edges"}]},
        "svc-inconclusive": {"environment": "e-thin", "checks": [{"suite": "unmatched_edges"}]},
        "svc-rollback": {
            "environment": "e-unmatched",
            "checks": [{"suite": "freshness_lag"}],
            "rollback": [{"suite": "unmatched_edges"}],
        },
        # Not scheduled (not in PHASES): evaluated only when a request asks.
        "svc-down": {"environment": "e-down", "checks": [{"suite": "soak_criteria"}]},
    }
    for phase, gate in gates.items():
        (root / "gates" / f"{phase}.yaml").write_text(yaml.safe_dump({"phase": phase, **gate}))
    return root


@pytest.fixture(scope="module")
def service(service_config: Path) -> Iterator[tuple[str, Service, threading.Thread]]:
    project = load_project(service_config, environ={})
    ledger = SqliteLedger(service_config / "history.db")
    svc = Service(project, ledger, list(PHASES))

    def judged(base: str) -> bool:  # the first scheduled run of every phase starts at once
        listed = local_http.get(f"{base}/api/v1/phases", timeout=2).json()
        return all(p["verdict"] for p in listed if p["scheduled"])

    with serving(svc, judged) as (base, thread):
        yield base, svc, thread


def scrape(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = local_http.get(f"{base}/metrics").text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    matches = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert len(matches) == 1, f"{name} {labels}: {len(matches)} samples"
    return matches[0]


@pytest.mark.parametrize(
    ("phase", "state"),
    [
        ("svc-go", "go"),
        ("svc-nogo", "no-go"),
        ("svc-inconclusive", "inconclusive"),
        ("svc-rollback", "rollback"),
    ],
)
def test_verdict_gauges_are_one_hot(service, phase: str, state: str) -> None:
    base, _, _ = service
    samples = scrape(base)
    for choice in ("go", "no-go", "inconclusive", "rollback"):
        assert value(samples, "gatecheck_phase_verdict", phase=phase, state=choice) == float(choice == state)


def test_check_gauges_carry_outcome_observed_value_and_threshold(service) -> None:
    base, _, _ = service
    samples = scrape(base)
    assert (
        value(samples, "gatecheck_check_outcome", phase="svc-nogo", suite="unmatched_edges", outcome="fail")
        == 1
    )
    assert (
        value(samples, "gatecheck_check_outcome", phase="svc-nogo", suite="unmatched_edges", outcome="pass")
        == 0
    )
    observed = value(
        samples,
        "gatecheck_check_observed_value",
        phase="svc-nogo",
        suite="unmatched_edges",
        column="unmatched_rate",
    )
    assert observed > 0.005
    threshold = value(
        samples,
        "gatecheck_check_threshold",
        phase="svc-nogo",
        suite="unmatched_edges",
        column="unmatched_rate",
        bound="max",
    )
    assert threshold == 0.005
    share_min = value(
        samples, "gatecheck_check_threshold", phase="svc-go", column="core_hot_share", bound="min"
    )
    assert share_min == 1.0
    assert (
        value(samples, "gatecheck_check_outcome", phase="svc-rollback", role="rollback", outcome="fail") == 1
    )
    assert value(samples, "gatecheck_source_up", environment="e-healthy", source="bus") == 1
    assert value(samples, "gatecheck_source_up", environment="e-healthy", source="warehouse") == 1
    assert value(samples, "gatecheck_evaluation_duration_seconds", phase="svc-go") > 0
    assert value(samples, "gatecheck_evaluation_timestamp_seconds", phase="svc-go") > time.time() - 600


def test_api_serves_the_run_json_document_and_history(service) -> None:
    base, _svc, _ = service
    listed = local_http.get(f"{base}/api/v1/phases").json()
    assert {p["phase"]: p["verdict"] for p in listed} == {
        "svc-go": "go", "svc-nogo": "no-go", "svc-inconclusive": "inconclusive", "svc-rollback": "rollback",
        "svc-down": None,  # not scheduled, never asked for
    }  # fmt: skip
    document = local_http.get(f"{base}/api/v1/phases/svc-nogo/verdict").json()
    assert Verdict.model_validate(document).document() == document
    assert document["verdict"] == "no-go"
    history = local_http.get(f"{base}/api/v1/phases/svc-nogo/history", params={"since": "1h"}).json()
    assert (
        history
        and history[-1]["verdict"] == "no-go"
        and history[-1]["not_passed"] == {"unmatched_edges": "fail"}
    )
    assert local_http.get(f"{base}/api/v1/phases/nope/verdict").status_code == 404
    assert local_http.get(f"{base}/api/v1/phases/svc-go/history", params={"since": "soon"}).status_code == 422
    assert local_http.get(f"{base}/healthz").json() == {"status": "ok"}
    assert local_http.get(f"{base}/readyz").status_code == 200


def test_post_evaluate_records_a_new_evaluation(service) -> None:
    base, svc, _ = service
    before = len(svc.ledger.history("svc-go"))
    response = local_http.post(f"{base}/api/v1/phases/svc-go/evaluate", timeout=60)
    assert response.status_code == 200 and response.json()["verdict"] == "go"
    assert len(svc.ledger.history("svc-go")) == before + 1


def test_run_url_uses_the_service(service) -> None:
    base, _, _ = service
    runner = CliRunner()
    go = runner.invoke(app, ["run", "--phase", "svc-go", "--url", base, "--format", "json"])
    assert go.exit_code == 0 and json.loads(go.stdout)["verdict"] == "go"
    assert runner.invoke(app, ["run", "--phase", "svc-nogo", "--url", base]).exit_code == 1
    assert runner.invoke(app, ["run", "--phase", "svc-rollback", "--url", base]).exit_code == 4
    fresh = runner.invoke(app, ["run", "--phase", "svc-inconclusive", "--url", base, "--fresh"])
    assert fresh.exit_code == 3
    unknown = runner.invoke(app, ["run", "--phase", "nope", "--url", base])
    assert unknown.exit_code == 2 and "does not know phase 'nope'" in unknown.stderr


def test_run_url_unreachable_is_inconclusive() -> None:
    result = CliRunner().invoke(
        app, ["run", "--phase", "staging-soak", "--url", f"http://127.0.0.1:{free_port()}"]
    )
    assert result.exit_code == 3
    assert result.stdout.startswith("INCONCLUSIVE") and "cannot reach the gatecheck service" in result.stdout


def test_a_source_going_down_and_back(
    service, service_bus: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    base, _svc, thread = service
    caplog.set_level(logging.INFO, logger="gatecheck")
    service_bus.stop()
    try:
        down = local_http.post(f"{base}/api/v1/phases/svc-go/evaluate", timeout=60).json()
        assert down["verdict"] == "inconclusive"
        soak = next(c for c in down["checks"] if c["suite"] == "soak_criteria")
        assert soak["outcome"] == "error" and soak["source_available"] is False
        samples = scrape(base)
        assert value(samples, "gatecheck_source_up", environment="e-healthy", source="bus") == 0
        assert value(samples, "gatecheck_source_up", environment="e-healthy", source="warehouse") == 1
        assert value(samples, "gatecheck_phase_verdict", phase="svc-go", state="inconclusive") == 1
    finally:
        service_bus.start()  # same port, same store: the streams come back
    up = local_http.post(f"{base}/api/v1/phases/svc-go/evaluate", timeout=60).json()
    assert up["verdict"] == "go", up["reasons"]
    assert value(scrape(base), "gatecheck_source_up", environment="e-healthy", source="bus") == 1
    assert thread.is_alive()
    # The log tells the story: the source went down (a warning, with the reason) and came
    # back; the verdict changed both ways; one line per evaluation.
    mine = [r for r in caplog.records if r.name == "gatecheck.service"]
    down_lines = [r for r in mine if r.getMessage().startswith("source bus of e-healthy is down")]
    assert len(down_lines) == 1 and down_lines[0].levelname == "WARNING"
    assert down_lines[0].source == "bus" and down_lines[0].up is False  # type: ignore[attr-defined]
    assert "cannot reach NATS at" in down_lines[0].getMessage() or "lost" in down_lines[0].getMessage()
    assert [r.levelname for r in mine if r.getMessage() == "source bus of e-healthy is back"] == ["INFO"]
    changes = [r.getMessage() for r in mine if r.getMessage().startswith("verdict of svc-go changed")]
    assert changes == [
        "verdict of svc-go changed: go → inconclusive",
        "verdict of svc-go changed: inconclusive → go",
    ]
    evaluated = [r for r in mine if r.getMessage().startswith("evaluated svc-go")]
    assert [r.verdict for r in evaluated] == ["inconclusive", "go"]  # type: ignore[attr-defined]
    assert evaluated[0].failing == ["soak_criteria:error"]  # type: ignore[attr-defined]


def test_readyz_is_503_when_the_ledger_cannot_be_written(service_config: Path, tmp_path: Path) -> None:
    from gatecheck.service.app import create_app

    path = tmp_path / "ledger.db"
    svc = Service(load_project(service_config, environ={}), SqliteLedger(path), ["svc-go"])

    async def ask(*paths: str) -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(svc))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return [await client.get(p) for p in paths]

    (ready,) = asyncio.run(ask("/readyz"))
    assert ready.status_code == 200
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.mkdir()  # the ledger's file is gone and a directory stands in its place
    ready, health, verdict = asyncio.run(ask("/readyz", "/healthz", "/api/v1/phases/svc-go/verdict"))
    assert ready.status_code == 503 and "not writable" in ready.json()["reason"]
    assert health.status_code == 200
    assert verdict.status_code == 503  # nothing evaluated (and nothing readable) yet


@contextlib.contextmanager
def silent_bus_config(
    service_config: Path,
    root: Path,
    timeout: str,
    gates: dict[str, str],
    history: Path | None = None,
    held: list[Any] | None = None,
) -> Iterator[Path]:
    """A copy of the service configuration at ``root`` with environment ``e-silent``, whose bus
    accepts connections and never says a word (an evaluation held open for ``timeout``), and
    ``gates`` (phase → environment) each running soak_criteria. The socket closes after (or
    when the test closes it: it is appended to ``held``; closing refuses the waiting client)."""
    import shutil
    import socket

    shutil.copytree(service_config, root, ignore=shutil.ignore_patterns("history.db*"))
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    if held is not None:
        held.append(silent)
    try:
        project = yaml.safe_load((root / "gatecheck.yaml").read_text())
        url = f"nats://127.0.0.1:{silent.getsockname()[1]}"
        project["environments"]["e-silent"] = {
            "sources": {"bus": {"type": "nats", "url": url, "timeout": timeout}}
        }
        if history is not None:
            project["history"] = {"url": f"sqlite:///{history}"}
        (root / "gatecheck.yaml").write_text(yaml.safe_dump(project))
        for phase, environment in gates.items():
            gate = {"phase": phase, "environment": environment, "checks": [{"suite": "soak_criteria"}]}
            (root / "gates" / f"{phase}.yaml").write_text(yaml.safe_dump(gate))
        yield root
    finally:
        silent.close()


def test_a_hanging_source_costs_its_own_checks_not_the_other_phases(
    service_config: Path, tmp_path: Path
) -> None:
    """The other phase is judged while the hanging one still waits (no clock: the hanging
    source answers only when the test lets it, by refusing it), then the hanging one errors."""
    held: list[Any] = []
    with silent_bus_config(
        service_config, tmp_path / "config", "60s", {"svc-slow": "e-silent"}, held=held
    ) as root:
        svc = Service(load_project(root, environ={}), SqliteLedger(tmp_path / "l.db"), ["svc-slow", "svc-go"])
        warm_up(svc.engine.validator)  # as run_service does before its first evaluation

        async def both() -> tuple[Verdict, bool, Verdict]:
            slow_task = asyncio.create_task(svc.evaluate_phase("svc-slow"))
            quick = await svc.evaluate_phase("svc-go")
            still_waiting = not slow_task.done()
            held[0].close()  # the silent bus refuses its waiting client: the slow one ends now
            return await asyncio.wait_for(slow_task, 30), still_waiting, quick

        slow, still_waiting, quick = asyncio.run(both())
    assert quick.verdict.value == "go" and still_waiting
    assert slow.verdict.value == "inconclusive" and slow.checks[0].outcome.value == "error"
    assert slow.checks[0].source_available is False


def test_status_and_report_from_the_service(service) -> None:
    base, _, _ = service
    status = CliRunner().invoke(app, ["status", "--url", base, "--format", "json"])
    assert status.exit_code == 0, status.output
    document = json.loads(status.stdout)
    assert {p["phase"]: p["verdict"] for p in document["phases"]}["svc-nogo"] == "no-go"
    report = CliRunner().invoke(app, ["report", "--phase", "svc-rollback", "--url", base])
    assert report.exit_code == 0, report.output
    assert "verdict **ROLLBACK**" in report.stdout and "`unmatched_edges` (rollback trigger)" in report.stdout


def _asgi(svc: Service):
    from gatecheck.service.app import create_app

    transport = httpx.ASGITransport(app=create_app(svc))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


def walk_pages(svc: Service, first: str, field: str) -> list[tuple[int, list[str], str | None]]:
    """GET ``first`` and each ``Link: <…>; rel="next"`` after it (at most 10 pages): each
    page's status, its items' ``field``, and its Link."""

    async def walk() -> list[tuple[int, list[str], str | None]]:
        seen = []
        url: str | None = first
        async with _asgi(svc) as client:
            while url is not None and len(seen) < 10:
                answer = await client.get(url)
                link = answer.headers.get("link")
                listed = [item[field] for item in answer.json()] if answer.status_code == 200 else []
                seen.append((answer.status_code, listed, link))
                url = re.match(r'<([^>]+)>; rel="next"', link).group(1) if link else None
        return seen

    return asyncio.run(walk())


def test_history_lists_at_most_a_page_and_links_the_older_records(service_config: Path, tmp_path: Path) -> None:
    """A span of many records is answered a page at a time (each record's document is read to
    list it: a year of 5-minute records at once was gigabytes), newest page first, with a
    ``Link`` to the older ones; pages neither overlap nor skip, even at records sharing an as_of."""
    from datetime import UTC, datetime, timedelta

    from gatecheck.evaluation.plan import window_for
    from gatecheck.results import CheckResult, Outcome, Requester, VerdictState

    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    asked = Requester(controller="argo-rollouts", name="hrv", started=now - timedelta(hours=1))
    ledger = SqliteLedger(tmp_path / "l.db")
    moments = [now - timedelta(minutes=5 * k) for k in range(7)] + [now - timedelta(minutes=10)]  # two at -10m
    for moment in moments:
        check = CheckResult(
            suite="unmatched_edges", source="warehouse", role="required", outcome=Outcome.PASS,
            window=window_for(moment, timedelta(hours=1), timedelta(0)),
        )  # fmt: skip
        ledger.record(
            Verdict(
                phase="svc-go", environment="e-healthy", as_of=moment, verdict=VerdictState.GO, reasons=[],
                checks=[check], config_hash="c", gatecheck_version="t", requested_by=asked if moment == now else None,
            ),
            0.1,
        )  # fmt: skip
    svc = Service(load_project(service_config, environ={}), ledger, ["svc-go"], clock=lambda: now)

    def pages(first: str) -> list[tuple[int, list[str], str | None]]:
        return walk_pages(svc, first, "as_of")

    walked = pages("/api/v1/phases/svc-go/history?since=1h&limit=3")
    assert [status for status, _, _ in walked] == [200, 200, 200]
    listed = [as_of for _, page, _ in walked for as_of in page]
    expected = sorted(m.strftime("%Y-%m-%dT%H:%M:%SZ") for m in moments)
    assert sorted(listed) == expected  # every record once, the two at -10m included
    assert walked[0][1] == ["2026-03-02T11:55:00Z", "2026-03-02T12:00:00Z"]  # newest first, oldest first within
    assert walked[0][2] is not None and "until=" in walked[0][2] and walked[-1][2] is None
    # Without a limit the default page holds all eight; a limit beyond the bound is refused.
    whole = pages("/api/v1/phases/svc-go/history?since=1h")
    assert len(whole) == 1 and len(whole[0][1]) == 8 and whole[0][2] is None

    async def newest() -> dict[str, Any]:
        async with _asgi(svc) as client:
            return (await client.get("/api/v1/phases/svc-go/history?since=1h&limit=1")).json()[0]

    assert asyncio.run(newest())["requested_by"]["started"].startswith("2026-03-02T11:00:00")
    for bad in ("limit=0", "limit=5001", "until=not-a-time"):
        assert pages(f"/api/v1/phases/svc-go/history?{bad}")[0][0] == 422


def test_the_audit_trail_is_answered_a_page_at_a_time(service_config: Path, tmp_path: Path) -> None:
    """A waiver used at every evaluation writes an event each time: ``GET /api/v1/audit`` read
    a year of them at once. It answers at most ``limit`` events, the newest, with a ``Link`` to
    the older ones; pages neither overlap nor skip, even at events written at one moment."""
    from datetime import UTC, datetime, timedelta

    from gatecheck.ledger.audit import AuditEvent

    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    ledger = SqliteLedger(tmp_path / "l.db")
    moments = [now - timedelta(minutes=5 * k) for k in range(7)] + [now - timedelta(minutes=10)]  # two at -10m
    ledger.append_audit([
        AuditEvent(at=moment, kind="waiver-used", phase="svc-go", check="unmatched_edges", waiver="W1",
                   by="gatecheck", reason=f"event {k}")
        for k, moment in enumerate(sorted(moments))
    ])  # fmt: skip
    svc = Service(load_project(service_config, environ={}), ledger, ["svc-go"], clock=lambda: now)

    def pages(first: str) -> list[tuple[int, list[str], str | None]]:
        return walk_pages(svc, first, "reason")

    walked = pages("/api/v1/audit?since=1h&phase=svc-go&limit=3")
    assert [status for status, _, _ in walked] == [200, 200, 200]
    listed = [reason for _, page, _ in walked for reason in page]
    assert sorted(listed) == [f"event {k}" for k in range(8)]  # every event once, both at -10m included
    assert walked[0][1] == ["event 6", "event 7"]  # the newest page first, oldest first within it
    assert walked[0][2] is not None and "until=" in walked[0][2] and "phase=svc-go" in walked[0][2]
    assert walked[-1][2] is None
    whole = pages("/api/v1/audit?since=1h")
    assert len(whole) == 1 and whole[0][1] == [f"event {k}" for k in range(8)] and whole[0][2] is None
    for bad in ("limit=0", "limit=5001", "until=not-a-time"):
        assert pages(f"/api/v1/audit?{bad}")[0][0] == 422


def test_state_changing_requests_need_the_bearer_token(service_config: Path, tmp_path: Path) -> None:
    svc = Service(
        load_project(service_config, environ={}),
        SqliteLedger(tmp_path / "l.db"),
        ["svc-go"],
        api_token="s3cr3t-t0ken",
    )

    async def go() -> list[int]:
        async with _asgi(svc) as client:
            return [
                (await client.post("/api/v1/phases/svc-go/evaluate")).status_code,
                (
                    await client.post(
                        "/api/v1/phases/svc-go/evaluate", headers={"Authorization": "Bearer nope"}
                    )
                ).status_code,
                (
                    await client.post(
                        "/api/v1/phases/svc-go/evaluate", headers={"Authorization": "Bearer s3cr3t-t0ken"}
                    )
                ).status_code,
                (await client.get("/api/v1/phases/svc-go/verdict")).status_code,
                (await client.get("/metrics")).status_code,
                (
                    await client.post(
                        "/api/v1/phases/svc-go/evaluate",
                        content=b"x" * 70_000,
                        headers={"Authorization": "Bearer s3cr3t-t0ken"},
                    )
                ).status_code,
            ]

    assert asyncio.run(go()) == [401, 401, 200, 200, 200, 413]


def test_evaluations_are_rate_limited_per_client(service_config: Path, tmp_path: Path) -> None:
    """service.evaluations_per_minute: 2 — the third POST from one client in a minute is 429."""
    import dataclasses

    project = load_project(service_config, environ={})
    limited = project.config.model_copy(
        update={"service": project.config.service.model_copy(update={"evaluations_per_minute": 2})}
    )
    svc = Service(dataclasses.replace(project, config=limited), SqliteLedger(tmp_path / "l.db"), ["svc-go"])

    async def go() -> list[int]:
        async with _asgi(svc) as client:
            return [(await client.post("/api/v1/phases/svc-go/evaluate")).status_code for _ in range(3)]

    assert asyncio.run(go()) == [200, 200, 429]


def test_serve_beyond_loopback_without_a_token_refuses_to_start(
    service_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATECHECK_API_TOKEN", raising=False)
    result = CliRunner().invoke(
        app, ["serve", "--config", str(service_config), "--listen", f"0.0.0.0:{free_port()}"]
    )
    assert result.exit_code == 2
    assert "needs a bearer token" in result.stderr and "GATECHECK_API_TOKEN" in result.stderr


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("CHANGE_ME_LONG_RANDOM", "still the placeholder of the shipped manifests"),
        ("hunter2", "7 characters; a token needs 16 or more (openssl rand -hex 32)"),
    ],
)
def test_serve_refuses_a_token_anyone_could_guess(
    service_config: Path, monkeypatch: pytest.MonkeyPatch, token: str, problem: str
) -> None:
    """The shipped manifests' GATECHECK_API_TOKEN placeholder, applied as it is, let anyone
    who read them create waivers and approvals (a NO-GO made GO); so did a short token. Serve
    refuses both, never quoting the token (the replicas test serves with a long one)."""
    monkeypatch.setenv("GATECHECK_API_TOKEN", token)
    result = CliRunner().invoke(
        app, ["serve", "--config", str(service_config), "--listen", f"0.0.0.0:{free_port()}"]
    )
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert line.startswith("gatecheck: error: GATECHECK_API_TOKEN: ") and problem in line, line
    assert token not in result.output


SECRET = "PLANTED-s3cret-9f2c"

#: Every form a URL can carry a credential in: user:password@, a user part alone (nats-py's
#: token form), a password with an unencoded @ (the part after it is the secret), a
#: password-like query parameter.
URL_FORMS = {
    "password": (f"nats://gate:{SECRET}@127.0.0.1:{{port}}", f"clickhouse://reader:{SECRET}@127.0.0.1:{{port}}/db"),
    "token-user-part": (f"nats://{SECRET}@127.0.0.1:{{port}}", f"clickhouse://{SECRET}@127.0.0.1:{{port}}/db"),
    "unencoded-at": (f"nats://gate:x@{SECRET}@127.0.0.1:{{port}}", f"clickhouse://bob:PASS@{SECRET}@127.0.0.1:{{port}}/db"),
    "query-parameter": (f"nats://127.0.0.1:{{port}}?token={SECRET}", f"clickhouse://127.0.0.1:{{port}}/db?password={SECRET}"),
}  # fmt: skip


@pytest.mark.parametrize("form", sorted(URL_FORMS))
def test_a_planted_secret_appears_nowhere(
    service_config: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, form: str
) -> None:
    import logging
    import shutil

    from gatecheck.render.verdict import render

    secret = SECRET
    bus_url, warehouse_url = URL_FORMS[form]
    root = tmp_path / "config"
    shutil.copytree(service_config, root)
    project_file = yaml.safe_load((root / "gatecheck.yaml").read_text())
    # from the environment, as they must be (written in gatecheck.yaml, a credential is refused)
    environ = {
        "BUS_URL": bus_url.format(port=free_port()), "BUS_TOKEN": secret,
        "WAREHOUSE_URL": warehouse_url.format(port=free_port()),
        "DATABASE_URL": f"postgresql://gate@127.0.0.1:{free_port()}/db?password={secret}",
    }  # fmt: skip
    project_file["environments"]["e-secret"] = {
        "sources": {
            "bus": {"type": "nats", "url": "${BUS_URL}", "token": "${BUS_TOKEN}", "timeout": "2s"},
            "warehouse": {"type": "clickhouse", "url": "${WAREHOUSE_URL}", "timeout": "2s"},
            "database": {"type": "postgresql", "url": "${DATABASE_URL}", "timeout": "2s"},
        }
    }  # fmt: skip
    (root / "gatecheck.yaml").write_text(yaml.safe_dump(project_file))
    from ..conftest import PROJECT

    (root / "suites" / "db_writes.yaml").write_text((PROJECT / "suites" / "db_writes.yaml").read_text())
    thresholds = yaml.safe_load((root / "thresholds.yaml").read_text())
    shipped = yaml.safe_load((PROJECT / "thresholds.yaml").read_text())["defaults"]
    thresholds["defaults"].update({k: v for k, v in shipped.items() if k.startswith("db_write")})
    (root / "thresholds.yaml").write_text(yaml.safe_dump(thresholds))
    gate = {
        "phase": "svc-secret",
        "environment": "e-secret",
        "checks": [{"suite": "soak_criteria"}, {"suite": "unmatched_edges"}, {"suite": "db_writes"}],
    }
    (root / "gates" / "svc-secret.yaml").write_text(yaml.safe_dump(gate))
    ledger_path = tmp_path / "l.db"
    svc = Service(load_project(root, environ=environ), SqliteLedger(ledger_path), ["svc-secret"], api_token=secret)

    async def go() -> tuple[str, str, str]:
        async with _asgi(svc) as client:
            evaluated = await client.post(
                "/api/v1/phases/svc-secret/evaluate", headers={"Authorization": f"Bearer {secret}"}
            )
            metrics = await client.get("/metrics")
            listed = await client.get("/api/v1/phases")
            bearer = {"Authorization": f"Bearer {secret}"}
            pages = [(await client.get(path, headers=bearer)).text for path in ("/", "/phases/svc-secret")]
            return evaluated.text, metrics.text, listed.text, pages

    with caplog.at_level(logging.DEBUG):
        document, metrics, listed, pages = asyncio.run(go())
    assert all("svc-secret" in page for page in pages)
    verdict = Verdict.model_validate_json(document)
    assert verdict.verdict.value == "inconclusive"  # both sources unreachable, with reasons
    from gatecheck.logs import JsonFormatter, TextFormatter

    # The service's own log lines (source down, evaluated, verdict changed), as an operator
    # reads them in either format, fields included.
    formatted = [f.format(r) for r in caplog.records for f in (TextFormatter(), JsonFormatter())]
    assert any("source bus of e-secret is down" in line for line in formatted)
    outputs = [document, metrics, listed, caplog.text, ledger_path.read_bytes().decode(errors="replace")]
    outputs += formatted
    outputs += [render(verdict, fmt) for fmt in ("text", "json", "junit", "markdown", "html")] + pages
    outputs.append(repr(svc))
    outputs += [repr(svc.project.config), str(svc.project.config)]  # models in tracebacks
    # What a notification says of it, and what explain and check-sources print.
    from gatecheck.config.models import NotifyTarget
    from gatecheck.service.notify import payload

    for kind in ("slack", "json"):
        target = NotifyTarget(name="t", kind=kind, url="https://hooks.example/x")
        outputs.append(
            json.dumps(payload(target, None, verdict, "https://gatecheck.example/phases/svc-secret"))
        )
    cli = CliRunner()
    for command in (
        ["explain", "--phase", "svc-secret"],
        ["check-sources", "--environment", "e-secret"],
        ["explain", "--phase", "svc-secret", "--format", "json"],
    ):
        result = cli.invoke(app, [*command, "--config", str(root)], env=environ)
        assert result.exit_code in (0, 3), result.output
        outputs.append(result.output)
    for text in outputs:
        assert secret not in text
    assert "cannot reach" in document and "Connect call failed" not in document


def test_an_unwritable_ledger_is_logged_and_survived(
    service_config: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ledger.db"
    svc = Service(load_project(service_config, environ={}), SqliteLedger(path), ["svc-go"])
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.mkdir()  # the ledger cannot be written: a directory stands where the file was
    asyncio.run(svc.scheduled("svc-go"))  # never raises
    assert svc.states["svc-go"].verdict is None  # nothing published without its record
    assert "cannot write" in (svc.states["svc-go"].last_error or "")
    assert "evaluation of svc-go failed" in caplog.text
    path.rmdir()  # the fault clears
    asyncio.run(svc.scheduled("svc-go"))
    assert svc.states["svc-go"].verdict is not None and svc.states["svc-go"].last_error is None
    assert len(SqliteLedger(path).history("svc-go")) == 1  # only the complete record


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of its own (needs root, as the developers' machines and CI have)."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path) -> Path:
    """Fill the filesystem to the last byte; return the filler file."""
    import errno
    import os

    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


def remount(disk: Path, mode: str) -> None:
    import subprocess

    subprocess.run(["mount", "-o", f"remount,{mode}", str(disk)], check=True)


def integrity(path: Path) -> str:
    import sqlite3

    with sqlite3.connect(path) as connection:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])


@pytest.mark.parametrize("fault", ["disk full", "read-only filesystem"])
def test_a_full_or_read_only_ledger_disk_is_logged_survived_and_recovered(
    service_config: Path, tiny_disk: Path, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tiny_disk / "ledger.db"
    ledger = SqliteLedger(path)
    svc = Service(load_project(service_config, environ={}), ledger, ["svc-go"])
    asyncio.run(svc.scheduled("svc-go"))  # one record while the disk is fine
    first = svc.states["svc-go"].verdict
    assert first is not None and len(ledger.history("svc-go")) == 1

    filler = fill(tiny_disk) if fault == "disk full" else None
    if fault == "read-only filesystem":
        remount(tiny_disk, "ro")
    asyncio.run(svc.scheduled("svc-go"))  # never raises
    state = svc.states["svc-go"]
    # SQLite in WAL mode cannot even read once it cannot create its -shm file: the evaluation
    # stops at the ledger (read or write), and the message says what the filesystem says.
    expected = "the disk is full" if fault == "disk full" else "is on a read-only filesystem"
    assert "history ledger" in (state.last_error or "") and expected in (state.last_error or "")
    assert state.verdict is not None and state.verdict.as_of == first.as_of  # nothing new published
    assert "evaluation of svc-go failed" in caplog.text
    with pytest.raises(LedgerError, match=expected):  # what /readyz answers 503 with
        ledger.check_writable()

    if filler is not None:
        filler.unlink()  # the fault clears
    else:
        remount(tiny_disk, "rw")
    asyncio.run(svc.scheduled("svc-go"))
    state = svc.states["svc-go"]
    assert state.last_error is None and state.verdict is not None and state.verdict.as_of > first.as_of
    assert len(ledger.history("svc-go")) == 2  # the first and the new one: nothing partial
    assert integrity(path) == "ok"


def test_run_on_a_full_ledger_disk_is_one_line_exit_2_and_no_partial_record(
    warehouse: Path, tiny_disk: Path
) -> None:
    from ..conftest import PROJECT, warehouse_env

    path = tiny_disk / "ledger.db"
    env = {**warehouse_env(warehouse, "healthy"), "GATECHECK_HISTORY_URL": f"sqlite:///{path}"}
    command = [
        "run",
        "--phase",
        "warehouse-release",
        "--as-of",
        "2026-11-22T06:00:00Z",
        "--config",
        str(PROJECT),
    ]
    result = CliRunner().invoke(app, command, env=env)
    assert result.exit_code == 0, result.output  # recorded while there is room
    filler = fill(tiny_disk)
    result = CliRunner().invoke(app, command, env=env)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "history ledger" in lines[0] and "the disk is full" in lines[0], lines
    assert "Traceback" not in result.output and "warehouse-release" not in result.stdout
    filler.unlink()
    assert len(SqliteLedger(path).history("warehouse-release")) == 1
    assert integrity(path) == "ok"


def test_openapi_document_is_served_and_describes_what_the_api_answers(service) -> None:
    """GET /openapi.json answers 200 (it was a 500 on an unresolved forward reference), every
    $ref in it resolves, and real answers validate against the schemas it declares."""
    import jsonschema

    base, _svc, _thread = service
    response = local_http.get(f"{base}/openapi.json")
    assert response.status_code == 200, response.text
    document = response.json()
    schemas = document["components"]["schemas"]

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for child in node.values():
                yield from refs(child)
        elif isinstance(node, list):
            for child in node:
                yield from refs(child)

    found = set(refs(document))
    assert "#/components/schemas/Verdict" in found
    for ref in found:
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref

    def validate(answer: Any, path: str, method: str = "get") -> None:
        schema = document["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        jsonschema.validate(answer, {**schema, "components": document["components"]})

    validate(
        local_http.get(f"{base}/api/v1/phases/svc-go/verdict").json(), "/api/v1/phases/{phase}/verdict"
    )
    validate(local_http.get(f"{base}/api/v1/phases").json(), "/api/v1/phases")
    validate(
        local_http.get(f"{base}/api/v1/phases/svc-go/history").json(), "/api/v1/phases/{phase}/history"
    )
    validate(local_http.get(f"{base}/readyz").json(), "/readyz")
    verdict_states = schemas["VerdictState"]["enum"]
    assert verdict_states == ["go", "no-go", "inconclusive", "rollback"]
    # And a wrong document is refused, so the check above can fail.
    with pytest.raises(jsonschema.ValidationError):
        validate({"phase": "svc-go", "verdict": "maybe"}, "/api/v1/phases/{phase}/verdict")


def test_a_cycle_judges_requires_on_this_cycles_results(service_config: Path, tmp_path: Path) -> None:
    """Right after start every phase used to be evaluated at once: the second phase read the
    first one's previous record (here a NO-GO) while the fresh GO landed a moment later, and
    stayed wrong for a whole interval. In a cycle the first phase is evaluated and recorded
    before the phase that requires it."""
    import shutil

    from gatecheck.results import VerdictState
    from gatecheck.service.server import scheduled

    root = tmp_path / "config"
    shutil.copytree(service_config, root, ignore=shutil.ignore_patterns("history.db*"))
    gates = {
        # The first phase takes a second longer (a slow query): evaluated side by side, the
        # second would finish first and read the old NO-GO.
        "chain-first": {
            "environment": "e-healthy",
            "checks": [{"suite": "unmatched_edges"}, {"suite": "slow_pass"}],
        },
        "chain-second": {
            "environment": "e-healthy",
            "requires": ["chain-first"],
            "checks": [{"suite": "soak_criteria"}],  # the bus: it does not queue behind chDB
        },
    }
    for phase, gate in gates.items():
        (root / "gates" / f"{phase}.yaml").write_text(yaml.safe_dump({"phase": phase, **gate}))
    slow = {
        "name": "slow_pass",
        "source": "warehouse",
        "window": {"length": "1h"},
        "query": "SELECT toUInt8(sleep(1.5) + 1) AS ok",  # (a sleep in an unused subquery is dropped)
        "evidence": "none",  # a constant: what is judged is the service's timing, not data
        "expectations": [{"type": "expect_column_values_to_be_between", "column": "ok", "min_value": 1}],
    }
    (root / "suites" / "slow_pass.yaml").write_text(yaml.safe_dump(slow))
    project = load_project(root, environ={})
    ledger = SqliteLedger(tmp_path / "l.db")
    # The previous run left a NO-GO of chain-first in the ledger.
    earlier = asyncio.run(svc_evaluate(project, "chain-first", ledger))
    ledger.record(earlier.model_copy(update={"verdict": VerdictState.NO_GO}), 0.1)
    svc = Service(project, ledger, ["chain-second", "chain-first"])

    async def first_cycle() -> None:
        async with scheduled(svc):
            deadline = time.monotonic() + 60
            while not all(svc.states[p].verdict for p in ("chain-first", "chain-second")):
                assert time.monotonic() < deadline, "the first cycle did not finish"
                await asyncio.sleep(0.05)

    asyncio.run(first_cycle())
    first, second = svc.states["chain-first"].verdict, svc.states["chain-second"].verdict
    assert first is not None and second is not None
    assert first.verdict is VerdictState.GO
    assert second.verdict is VerdictState.GO, second.reasons
    assert second.requires[0].satisfied and first.as_of.strftime("%H:%M:%S") in second.requires[0].reason
    ledger.close()


async def svc_evaluate(project: Any, phase: str, ledger: Any) -> Verdict:
    from ..conftest import evaluate

    return await evaluate(project, phase, ledger=ledger)


def test_the_schedule_starts_a_phase_only_after_the_phases_it_requires(
    service_config: Path, tmp_path: Path
) -> None:
    """The order itself, through the real scheduler: each phase's evaluation starts after the
    evaluations of the phases it requires have finished; an independent phase does not wait."""
    import shutil

    from gatecheck.service.server import scheduled

    root = tmp_path / "config"
    shutil.copytree(service_config, root, ignore=shutil.ignore_patterns("history.db*"))
    gates = {
        "order-a": {"environment": "e-healthy", "checks": [{"suite": "unmatched_edges"}]},
        "order-b": {
            "environment": "e-healthy",
            "requires": ["order-a"],
            "checks": [{"suite": "unmatched_edges"}],
        },
        "order-c": {
            "environment": "e-healthy",
            "requires": ["order-b"],
            "checks": [{"suite": "unmatched_edges"}],
        },
        "order-free": {"environment": "e-healthy", "checks": [{"suite": "unmatched_edges"}]},
    }
    for phase, gate in gates.items():
        (root / "gates" / f"{phase}.yaml").write_text(yaml.safe_dump({"phase": phase, **gate}))
    svc = Service(
        load_project(root, environ={}),
        SqliteLedger(tmp_path / "l.db"),
        ["order-c", "order-free", "order-b", "order-a"],
    )
    events: list[tuple[str, str]] = []  # the order things happened in: no clock

    async def logged(phase: str) -> None:  # stands in for the evaluation: the order is under test
        events.append(("start", phase))
        if phase == "order-a":  # held until the independent phase has started beside it (or 10 s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(free_started.wait(), 10)
        if phase == "order-free":
            free_started.set()
        await asyncio.sleep(0)
        events.append(("end", phase))

    svc.scheduled = logged  # type: ignore[method-assign]

    async def one_cycle() -> None:
        nonlocal free_started
        free_started = asyncio.Event()
        async with scheduled(svc):
            while sum(kind == "end" for kind, _ in events) < 4:
                await asyncio.sleep(0.01)

    free_started: asyncio.Event
    asyncio.run(one_cycle())
    assert events.index(("start", "order-b")) > events.index(("end", "order-a"))
    assert events.index(("start", "order-c")) > events.index(("end", "order-b"))
    assert events.index(("start", "order-free")) < events.index(("end", "order-a"))  # side by side


def test_a_stop_cancels_the_service_own_work_and_nothing_else(service_config: Path, tmp_path: Path) -> None:
    """The service runs inside someone's event loop (here a test's): stopping it cancels its
    cycles, never another task of that loop."""
    svc = Service(load_project(service_config, environ={}), SqliteLedger(tmp_path / "l.db"), ["svc-go"])
    seen: dict[str, bool] = {}

    async def main() -> None:
        foreign = asyncio.create_task(asyncio.sleep(60), name="not-the-service's")
        server, sockets, _ = listening_server(svc)
        running = asyncio.create_task(run_service(svc, server, sockets))
        deadline = time.monotonic() + 60
        while svc.states["svc-go"].verdict is None:
            assert time.monotonic() < deadline, "no evaluation"
            await asyncio.sleep(0.05)
        server.should_exit = True
        await asyncio.wait_for(running, 30)
        seen["foreign alive"] = not foreign.done()
        seen["cycles left"] = bool(svc.cycles_under_way)
        foreign.cancel()

    thread = threading.Thread(target=lambda: asyncio.run(main()))  # not the main thread: no signals
    thread.start()
    thread.join(timeout=90)
    assert not thread.is_alive()
    assert seen == {"foreign alive": True, "cycles left": False}


class _SlowWrites(SqliteLedger):
    """A ledger whose writes take a while, and that says when it was closed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.events: list[str] = []
        self.writing = threading.Event()

    def record(self, verdict: Verdict, duration_s: float, lease: Any = None) -> Any:
        self.writing.set()
        time.sleep(0.5)
        written = super().record(verdict, duration_s, lease)
        self.events.append("written")
        return written

    def close(self) -> None:
        self.events.append("closed")
        super().close()


def test_a_stop_during_a_record_write_waits_for_it_whole(service_config: Path, tmp_path: Path) -> None:
    """The verdict exists and its record is being written when the stop arrives: the stop
    lets the write finish (one whole record), and only then closes the ledger."""
    from gatecheck.evaluation.engine import Engine

    ledger = _SlowWrites(tmp_path / "slow.db")
    project = load_project(service_config, environ={})
    # The engine closes the ledger it is handed, as `serve`'s worker closes the one it opened.
    svc = Service(project, ledger, ["svc-go"], engine=Engine(project, ledger=ledger, close_ledger=True))

    async def main() -> None:
        server, sockets, _ = listening_server(svc)
        running = asyncio.create_task(run_service(svc, server, sockets))
        while not ledger.writing.is_set():
            await asyncio.sleep(0.01)
        server.should_exit = True
        await asyncio.wait_for(running, 30)

    asyncio.run(main())
    assert ledger.events[:2] == ["written", "closed"]
    assert len(SqliteLedger(tmp_path / "slow.db").history("svc-go")) == 1


def test_a_stop_during_an_evaluation_drops_it_unrecorded_and_promptly(
    service_config: Path, tmp_path: Path
) -> None:
    """A source that never answers holds an evaluation open; a stop cancels it at once (not
    after the source's timeout) and nothing is recorded for it."""
    with silent_bus_config(service_config, tmp_path / "config", "60s", {"svc-held": "e-silent"}) as root:
        svc = Service(load_project(root, environ={}), SqliteLedger(tmp_path / "l.db"), ["svc-held"])

        async def main() -> float:
            server, sockets, _ = listening_server(svc)
            running = asyncio.create_task(run_service(svc, server, sockets))
            while not svc.cycles_under_way:  # the cycle has started: the evaluation waits on the source
                await asyncio.sleep(0.01)
            server.should_exit = True
            # The source's timeout is 60 s: a stop that waited for it would time out here.
            await asyncio.wait_for(running, 30)

        asyncio.run(main())
    assert SqliteLedger(tmp_path / "l.db").history("svc-held") == []
    assert svc.states["svc-held"].verdict is None and not svc.cycles_under_way


def test_answers_are_rendered_once_per_verdict_and_served_as_bytes(
    service_config: Path, tmp_path: Path
) -> None:
    """/metrics is the exposition prometheus_client renders for the collector, rendered once
    per new state; the verdict document carries an ETag and answers 304 to If-None-Match."""
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from gatecheck.service.collector import VerdictCollector

    svc = Service(
        load_project(service_config, environ={}), SqliteLedger(tmp_path / "l.db"), ["svc-go", "svc-nogo"]
    )

    async def go() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with _asgi(svc) as client:
            await client.post("/api/v1/phases/svc-go/evaluate")
            first = await client.get("/metrics")
            second = await client.get("/metrics")
            registry = CollectorRegistry(auto_describe=False)
            registry.register(VerdictCollector(svc))
            cached = svc.exposition(registry)  # the state's one rendering, whoever asks
            seen["same bytes object"] = svc.exposition(registry) is cached and second.content == first.content
            seen["as prometheus_client renders"] = first.content == generate_latest(registry)
            seen["metrics"] = first.text
            verdict = await client.get("/api/v1/phases/svc-go/verdict")
            etag = verdict.headers["etag"]
            seen["document"] = verdict.json()
            seen["not modified"] = await client.get(
                "/api/v1/phases/svc-go/verdict", headers={"If-None-Match": etag}
            )
            seen["other tag"] = await client.get(
                "/api/v1/phases/svc-go/verdict", headers={"If-None-Match": '"x"'}
            )
            await client.post("/api/v1/phases/svc-nogo/evaluate")  # another phase: a new exposition
            seen["renewed"] = svc.exposition(registry) is not cached
            seen["after"] = (await client.get("/metrics")).text
            seen["svc-go etag kept"] = (await client.get("/api/v1/phases/svc-go/verdict")).headers[
                "etag"
            ] == etag
            await client.post("/api/v1/phases/svc-go/evaluate")  # a new verdict of svc-go: a new tag
            seen["svc-go etag after"] = (await client.get("/api/v1/phases/svc-go/verdict")).headers["etag"]
            seen["etag"] = etag
        return seen

    seen = asyncio.run(go())
    assert seen["same bytes object"] and seen["as prometheus_client renders"]
    families = {f.name: f for f in text_string_to_metric_families(seen["metrics"])}
    assert {"gatecheck_phase_verdict", "gatecheck_check_outcome", "gatecheck_source_up"} <= set(families)
    assert seen["document"]["phase"] == "svc-go" and seen["document"]["verdict"] == "go"
    assert seen["not modified"].status_code == 304 and seen["not modified"].content == b""
    assert seen["not modified"].headers["etag"] == seen["etag"]
    assert seen["other tag"].status_code == 200 and seen["other tag"].json() == seen["document"]
    assert seen["renewed"]
    nogo = 'gatecheck_phase_verdict{environment="e-unmatched",phase="svc-nogo"'
    assert nogo in seen["after"] and nogo not in seen["metrics"]
    assert seen["svc-go etag kept"]
    assert seen["svc-go etag after"] != seen["etag"]  # as_of moved: a new document


def test_the_evaluation_worker_is_replaced_when_killed_hung_or_too_big(
    service_config: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`gatecheck serve` evaluates in a worker process. Killed mid-evaluation (SIGKILL), hung
    past its deadline, or over its memory ceiling, it is replaced: the lost evaluation is that
    phase's error (never a record), the service keeps answering, the next evaluation runs."""
    import logging
    import os
    import signal

    from gatecheck.ledger.proxy import WorkerLedger
    from gatecheck.service.worker import WorkerEvaluator

    caplog.set_level(logging.INFO, logger="gatecheck")
    gates = {"w-held": "e-silent", "w-bus": "e-healthy"}  # an evaluation held in flight; a quick one
    stack = contextlib.ExitStack()
    root = stack.enter_context(
        silent_bus_config(service_config, tmp_path / "config", "60s", gates, tmp_path / "w.db")
    )
    project = load_project(root, environ={})
    evaluator = WorkerEvaluator(project, deadline_s=60)
    svc = Service(project, WorkerLedger(evaluator, "w.db"), ["w-held", "w-bus"], engine=evaluator)

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with _asgi(svc) as client:
            environment = dict(os.environ)
            await evaluator.warm_up()
            first = evaluator.pid
            assert dict(os.environ) == environment  # the worker's malloc limit is its own (mallopt)
            assert (await svc.evaluate_phase("w-bus")).verdict.value == "go"
            # 1. Killed while an evaluation waits on the silent source.
            held = asyncio.create_task(svc.scheduled("w-held"))
            while not evaluator.in_flight:
                await asyncio.sleep(0.01)
            os.kill(first, signal.SIGKILL)
            await asyncio.wait_for(held, 10)
            seen["killed error"] = svc.states["w-held"].last_error
            seen["healthz"] = (await client.get("/healthz")).status_code
            seen["error gauge"] = (
                'gatecheck_evaluation_error{phase="w-held"} 1.0' in (await client.get("/metrics")).text
            )
            seen["next"] = (await svc.evaluate_phase("w-bus")).verdict.value
            second = evaluator.pid
            seen["replaced after kill"] = second not in (None, first)
            records = await asyncio.to_thread(svc.ledger.history, "w-bus")  # blocking, as in the app
            seen["history through the worker"] = [r.phase for r in records]
            # 2. Hung past its deadline: killed and replaced.
            evaluator.deadline_s = 1.5
            await svc.scheduled("w-held")
            seen["hung error"] = svc.states["w-held"].last_error
            evaluator.deadline_s = 60
            seen["after hang"] = (await svc.evaluate_phase("w-bus")).verdict.value
            third = evaluator.pid
            seen["replaced after hang"] = third not in (None, first, second)
            # 3. Over its memory ceiling: replaced once idle, after the evaluation it finished.
            evaluator.memory_limit_bytes = 64 * 2**20  # a worker with GE loaded is far above
            seen["big but finished"] = (await svc.evaluate_phase("w-bus")).verdict.value
            evaluator.memory_limit_bytes = 2048 * 2**20
            seen["after ceiling"] = (await svc.evaluate_phase("w-bus")).verdict.value
            seen["replaced after ceiling"] = evaluator.pid not in (None, first, second, third)
            seen["replacements"] = evaluator.replacements
        await evaluator.aclose()
        return seen

    try:
        seen = asyncio.run(main())
    finally:
        evaluator.close()
        stack.close()
    assert "evaluation worker: the worker process exited" in seen["killed error"]
    assert seen["healthz"] == 200 and seen["error gauge"]
    assert seen["next"] == "go" and seen["replaced after kill"]
    assert seen["history through the worker"] == ["w-bus", "w-bus"]
    assert "ran past its deadline of 1.5s" in seen["hung error"]
    assert seen["after hang"] == "go" and seen["replaced after hang"]
    assert (
        seen["big but finished"] == "go" and seen["after ceiling"] == "go" and seen["replaced after ceiling"]
    )
    assert seen["replacements"] == 3
    # Nothing of the lost evaluations reached the ledger; the worker's replacements are logged.
    assert SqliteLedger(tmp_path / "w.db").history("w-held") == []
    reasons = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("evaluation worker replaced")
    ]
    assert len(reasons) == 3 and "resident memory" in reasons[-1]


def test_serve_refuses_a_bad_expectation_from_its_worker_in_one_line(
    config_copy: Path, tmp_path: Path
) -> None:
    """The serving process never imports Great Expectations: its evaluation worker checks
    every expectation before the first verdict, and a bad one stops `serve` with exit 2."""
    suite = config_copy / "suites" / "unmatched_edges.yaml"
    suite.write_text(
        suite.read_text().replace("expect_column_values_to_be_between", "expect_column_values_to_be_betwen")
    )
    result = CliRunner().invoke(
        app,
        ["serve", "--config", str(config_copy), "--listen", f"127.0.0.1:{free_port()}"],
        env={"GATECHECK_HISTORY_URL": f"sqlite:///{tmp_path / 'h.db'}"},
    )
    assert result.exit_code == 2, result.output
    assert (
        "suites/unmatched_edges.yaml: expectations[0]: unknown Great Expectations expectation type"
        in result.output
    )
    assert "did you mean 'expect_column_values_to_be_between'" in result.output
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- rollout controllers


def argo_measurement(base: str, phase: str, **query: str) -> tuple[str, Any]:
    """One measurement of Argo Rollouts' web metric provider with the shipped AnalysisTemplate:
    any non-2xx is Error; `result` is the body at jsonPath "{$}" (Kubernetes JSONPath: the
    whole document); with successCondition and failureCondition both set and neither true,
    Inconclusive."""
    from urllib.parse import parse_qsl, urlsplit

    from jsonpath_ng import parse as jsonpath

    template = yaml.safe_load((REPO / "service/kubernetes/argo-rollouts/analysistemplate.yaml").read_text())
    (metric,) = template["spec"]["metrics"]
    web = metric["provider"]["web"]
    # the template's own view of the verdict (its other parameters are the test's to give)
    shipped = dict(parse_qsl(urlsplit(web["url"]).query))
    response = local_http.get(
        f"{base}/api/v1/phases/{phase}/verdict", params={"view": shipped["view"], **query},
        timeout=web["timeoutSeconds"],
    )  # fmt: skip
    if not 200 <= response.status_code < 300:
        return "Error", response
    (match,) = jsonpath(web["jsonPath"].strip("{}")).find(response.json())
    result = _Namespace(match.value)
    # expr-lang's `a.b == "x"` and `a.b in ["x", "y"]` read the same in Python.
    if eval(metric["successCondition"], {}, {"result": result}):
        return "Successful", response
    if eval(metric["failureCondition"], {}, {"result": result}):
        return "Failed", response
    return "Inconclusive", response


class _Namespace:
    def __init__(self, document: dict[str, Any]) -> None:
        self.__dict__.update(document)


def test_argo_rollouts_reads_every_verdict_as_its_measurement(service) -> None:
    from gatecheck.service.compact import compact

    base, svc, _ = service
    # Not evaluated yet (not scheduled): HTTP 200, an inconclusive document, and the rollout pauses.
    outcome, response = argo_measurement(base, "svc-down")
    assert (outcome, response.status_code) == ("Inconclusive", 200)
    assert response.headers["gatecheck-evaluated"] == "false"
    assert response.json()["reason"] == "no evaluation of svc-down yet" and response.json()["failing"] == []
    expected = {
        "svc-go": "Successful", "svc-nogo": "Failed", "svc-rollback": "Failed",
        "svc-inconclusive": "Inconclusive", "svc-down": "Inconclusive",  # its bus is unreachable
    }  # fmt: skip
    for phase, wanted in expected.items():
        before = len(svc.ledger.history(phase))
        outcome, response = argo_measurement(
            base, phase, fresh="true", rollout="normalize", namespace="athlete-ally", revision="6c9bd8675b"
        )
        assert (phase, outcome, response.status_code) == (phase, wanted, 200)
        answer = response.json()
        records = svc.ledger.history(phase)
        # the compact view of the verdict just recorded: what the AnalysisRun keeps, in a few hundred bytes
        assert answer == compact(records[-1].to_verdict(), svc.base_url)
        assert len(response.content) < 700, (phase, len(response.content))
        assert len(records) == before + 1  # evaluated now, and recorded with who asked
        # Argo's revision under its own name, never Flagger's checksum or an empty role
        assert records[-1].to_verdict().requested_by.model_dump() == {
            "controller": "argo-rollouts", "name": "normalize", "namespace": "athlete-ally",
            "role": None, "checksum": None, "revision": "6c9bd8675b", "started": None,
        }  # fmt: skip
    down = argo_measurement(base, "svc-down", max_age="1h")[1].json()
    assert down["failing"][0].startswith("soak_criteria error: ") and "cannot reach" in down["failing"][0]
    assert argo_measurement(base, "nope")[0] == "Error"  # gatecheck cannot answer for it: 404


def test_verdict_options_latest_if_recent_shared_and_bounded(service) -> None:
    base, svc, _ = service
    before = len(svc.ledger.history("svc-go"))
    recent = local_http.get(f"{base}/api/v1/phases/svc-go/verdict", params={"max_age": "1h"}, timeout=10)
    assert recent.status_code == 200 and recent.json()["verdict"] == "go"
    assert len(svc.ledger.history("svc-go")) == before  # recent enough: not evaluated again
    assert local_http.get(f"{base}/api/v1/phases/svc-go/verdict", params={"max_age": "soon"}).status_code == 422

    async def together(n: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            return await asyncio.gather(
                *(client.get("/api/v1/phases/svc-go/verdict", params={"fresh": "true"}) for _ in range(n))
            )

    answers = asyncio.run(together(5))
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["as_of"] for a in answers}) == 1  # one evaluation answered all five
    assert len(svc.ledger.history("svc-go")) == before + 1
    # An evaluation that cannot finish in time: an inconclusive answer, never a wait past it.
    late = local_http.get(f"{base}/api/v1/phases/svc-nogo/verdict", params={"fresh": "true", "timeout": "0.001"})
    assert late.status_code == 200 and late.headers["gatecheck-evaluated"] == "false"
    assert late.json()["verdict"] == "inconclusive"
    assert "did not finish within 0.001s" in late.json()["reasons"][0]


FLAGGER_GATING = (
    "confirm-rollout",
    "pre-rollout",
    "rollout",
    "confirm-traffic-increase",
    "confirm-promotion",
)


def flagger_payload(role: str, phase: str, **metadata: str) -> dict[str, Any]:
    """Flagger's webhook payload (pkg/controller/webhook.go, CanaryWebhookPayload)."""
    return {
        "name": "normalize", "namespace": "athlete-ally", "phase": "Progressing",
        "checksum": "5d4f8b9c7-1", "metadata": {"phase": phase, **metadata},
    }  # fmt: skip


def test_flagger_gating_roles_pass_only_on_go_and_rollback_only_on_rollback(service) -> None:
    base, svc, _ = service
    # The first call per phase evaluates now and records Flagger's request with it.
    before = len(svc.ledger.history("svc-go"))
    first = local_http.post(
        f"{base}/api/v1/flagger/rollout", json=flagger_payload("rollout", "svc-go"), timeout=30
    )
    assert first.status_code == 200, first.text
    assert first.text.startswith("svc-go: GO as of ")
    record = svc.ledger.history("svc-go")[before:][-1].to_verdict()
    assert record.requested_by.model_dump() == {
        "controller": "flagger", "role": "rollout", "name": "normalize", "namespace": "athlete-ally",
        "checksum": "5d4f8b9c7-1", "revision": None, "started": None,
    }  # fmt: skip
    for phase, verdict in (("svc-go", "go"), ("svc-nogo", "no-go"), ("svc-inconclusive", "inconclusive"),
                           ("svc-rollback", "rollback")):  # fmt: skip
        for role in (*FLAGGER_GATING, "rollback"):
            answer = local_http.post(
                f"{base}/api/v1/flagger/{role}", json=flagger_payload(role, phase, max_age="1h"), timeout=30
            )
            passes = verdict == ("rollback" if role == "rollback" else "go")
            # Flagger: a status above 202 is a failed hook; 200 exactly when the hook passes.
            assert answer.status_code == (200 if passes else 412), (phase, role, answer.text)
            assert answer.text.startswith(f"{phase}: {verdict.upper()} as of ")
    assert (
        local_http.post(f"{base}/api/v1/flagger/rollout", json=flagger_payload("rollout", "svc-nogo")).text.count(
            "required check failed: unmatched_edges"
        )
        == 1
    )  # the reasons are the body Flagger copies into its events


def test_a_recent_verdict_answers_only_the_canary_and_rollout_it_judged(service) -> None:
    """`max_age` lets a controller take a verdict of minutes ago — only one judged for the same
    canary. A GO of the previous canary (Flagger's checksum, Argo's revision), a scheduled one
    that no canary asked for, or one as of before the rollout began (`started`) said nothing of
    this canary and was taken: the new canary's first analysis passed on the old one's checks.
    Now those are evaluated now; the same canary's own recent verdict is still taken."""
    from datetime import UTC

    base, svc, _ = service

    def records() -> int:
        return len(svc.ledger.history("svc-go"))

    def flagger(checksum: str) -> httpx.Response:
        payload = flagger_payload("rollout", "svc-go", max_age="1h") | {"checksum": checksum}
        return local_http.post(f"{base}/api/v1/flagger/rollout", json=payload, timeout=30)

    def argo(**query: str) -> httpx.Response:
        params = {"max_age": "1h", "rollout": "normalize", "namespace": "athlete-ally", **query}
        return local_http.get(f"{base}/api/v1/phases/svc-go/verdict", params=params, timeout=30)

    wait_until(lambda: svc.states.get("svc-go") is not None and svc.states["svc-go"].verdict is not None)
    before = records()
    assert flagger("canary-a").status_code == 200 and records() == before + 1  # the scheduled GO: not this canary's
    assert flagger("canary-a").status_code == 200 and records() == before + 1  # its own, a moment ago: taken
    assert flagger("canary-b").status_code == 200 and records() == before + 2  # the next canary: judged now
    latest = svc.ledger.history("svc-go")[-1].to_verdict().requested_by
    assert latest is not None and (latest.controller, latest.checksum) == ("flagger", "canary-b")
    assert argo(revision="6c9bd8675b").status_code == 200 and records() == before + 3  # Flagger's: not Argo's
    assert argo(revision="6c9bd8675b").status_code == 200 and records() == before + 3
    assert argo(revision="7d0ae9786c").status_code == 200 and records() == before + 4
    began = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # after the latest verdict's as_of
    assert argo(revision="7d0ae9786c", started=began).status_code == 200 and records() == before + 5
    assert argo().status_code == 200 and records() == before + 5  # naming no canary: any recent one


def test_flagger_bad_requests_never_pass(service) -> None:
    base, _svc, _ = service
    post = lambda role, body: local_http.post(f"{base}/api/v1/flagger/{role}", json=body, timeout=30)  # noqa: E731
    assert post("post-rollout", flagger_payload("x", "svc-go")).status_code == 404  # not a gating role
    no_phase = post("rollout", {"name": "normalize", "namespace": "ns", "metadata": {}})
    assert no_phase.status_code == 422 and "metadata.phase" in no_phase.text
    assert post("rollout", flagger_payload("rollout", "nope")).status_code == 404
    assert post("rollout", flagger_payload("rollout", "svc-go", max_age="soon")).status_code == 422
    for timeout in ("nan", "0", "-1", "121", "inf", "soon"):  # "no verdict within nans": not a timeout
        answer = post("rollout", flagger_payload("rollout", "svc-go", timeout=timeout))
        assert answer.status_code == 422 and "metadata.timeout" in answer.text, (timeout, answer.text)
    huge = local_http.post(
        f"{base}/api/v1/flagger/rollout", content=b"{" + b" " * (70 * 1024) + b"}",
        headers={"content-type": "application/json"}, timeout=30,
    )  # fmt: skip
    assert huge.status_code == 413

    def chunked(size: int):  # a body without Content-Length, in 64 KiB chunks
        sent = 0
        while sent < size:
            sent += 65536
            yield b" " * 65536

    for path in ("/api/v1/flagger/rollout", "/session", "/api/v1/phases/svc-go/waivers"):
        streamed = local_http.post(f"{base}{path}", content=chunked(8 * 1024 * 1024), timeout=30)
        assert streamed.status_code == 413, (path, streamed.status_code)
    # The serving process never held the body: it stopped reading at 64 KiB.


def test_serve_on_a_port_in_use_is_one_line_and_exit_2(service_config: Path, tmp_path: Path, caplog) -> None:
    """Bind first, then announce: nothing says "serving" on a port another process holds."""
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        result = CliRunner().invoke(
            app, ["serve", "--config", str(service_config), "--listen", f"127.0.0.1:{port}"],
            env={"GATECHECK_HISTORY_URL": f"sqlite:///{tmp_path / 'h.db'}"},
        )  # fmt: skip
    finally:
        taken.close()
    assert result.exit_code == 2, result.output
    # This process also runs the module's service in a thread, whose log lines (an evaluation a
    # request left going on) may land in the captured stream: the command's own is the error.
    errors = [line for line in result.stderr.strip().splitlines() if line.startswith("gatecheck: ")]
    assert errors == [
        f"gatecheck: error: --listen 127.0.0.1:{port}: cannot listen: the address is already in use"
    ]
    assert "serving" not in caplog.text and "serving" not in result.output


def test_a_late_cycle_is_followed_by_one_cycle_never_a_burst(
    service_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The schedule (APScheduler: coalesced, one instance at a time) after a cycle that
    overran its slot twice: no cycle starts while it runs, and the missed slots are not
    caught up: the three cycles after it span at least one interval (a burst would start
    them together). Cycle 4's grid point lies two intervals after cycle 2's, so only a
    start delayed by a whole interval could break the bound; the stop cancels the cycle
    under way and awaits it."""
    from datetime import timedelta

    svc = Service(load_project(service_config, environ={}), SqliteLedger(tmp_path / "l.db"), ["svc-go"])
    interval = 0.5
    monkeypatch.setattr(svc, "interval", lambda phase: timedelta(seconds=interval))
    starts: list[float] = []
    released: list[float] = []
    release = asyncio.Event()
    stopped: list[bool] = []

    async def evaluation(phase: str) -> None:  # each cycle's one evaluation, held as told
        starts.append(asyncio.get_running_loop().time())
        try:
            if len(starts) == 1:
                await release.wait()  # the first cycle overruns its slot twice
            elif len(starts) == 4:
                await asyncio.sleep(3600)  # held until the stop
        except asyncio.CancelledError:
            stopped.append(True)
            raise

    monkeypatch.setattr(svc, "scheduled", evaluation)

    async def main() -> None:
        schedule = asyncio.create_task(svc.run_schedule())
        while not starts:
            await asyncio.sleep(0.01)
        await asyncio.sleep(2 * interval + 0.1)
        released.append(asyncio.get_running_loop().time())
        release.set()
        while len(starts) < 4:
            await asyncio.sleep(0.01)
        schedule.cancel()
        await asyncio.wait_for(asyncio.gather(schedule, return_exceptions=True), 10)

    asyncio.run(main())
    assert starts[1] >= released[0], (starts, released)  # none while the late one ran
    assert starts[3] - starts[1] >= interval, starts  # one per slot, not a burst
    assert stopped == [True] and not svc.cycles_under_way  # the stop cancelled the fourth and awaited it


def test_the_compact_view_stays_small_whatever_the_verdict_holds() -> None:
    """Argo Rollouts keeps the whole answer as a measurement's value (the shipped template's
    jsonPath is "{$}"): the compact view names the verdict, the first reason, the blocking
    checks (rollback triggers first, at most 4 lines) and the page, in a few hundred bytes."""
    import json as json_module
    from datetime import UTC, datetime, timedelta

    from gatecheck.evaluation.plan import window_for
    from gatecheck.results import CheckResult, Outcome, VerdictState
    from gatecheck.service.compact import compact, compact_text

    as_of = datetime(2026, 11, 24, 6, tzinfo=UTC)
    window = window_for(as_of, timedelta(hours=1), timedelta(0))
    checks = [
        CheckResult(suite=f"check_{k:02d}", source="warehouse", role="required", outcome=Outcome.FAIL,
                    window=window, reason="x" * 500)
        for k in range(12)
    ] + [
        CheckResult(suite="triggers", source="metrics", role="rollback", outcome=Outcome.FAIL, window=window,
                    reason="crash loops: 3"),
        CheckResult(suite="advisory_one", source="metrics", role="advisory", outcome=Outcome.FAIL, window=window,
                    reason="never shown"),
    ]  # fmt: skip
    verdict = Verdict(
        phase="canary-10", environment="production", as_of=as_of, verdict=VerdictState.ROLLBACK,
        reasons=["rollback trigger fired: triggers — " + "y" * 400, "more"], checks=checks,
        config_hash="h", gatecheck_version="test",
    )  # fmt: skip
    full = len(json_module.dumps(verdict.document()))
    found = compact(verdict, "https://gatecheck.example")
    size = len(json_module.dumps(found))
    assert size < 700 < full
    assert found["verdict"] == "rollback" and found["reason"].startswith(
        "rollback trigger fired: triggers — yyy"
    )
    assert len(found["reason"]) == 160 and found["reason"].endswith("…")
    assert found["failing"][0] == "triggers fail: crash loops: 3"  # the trigger first
    assert len(found["failing"]) == 4 and found["failing"][-1] == "… and 10 more"
    assert all(len(line) <= 80 for line in found["failing"])
    assert not any("advisory_one" in line for line in found["failing"])
    assert found["page"] == "https://gatecheck.example/phases/canary-10"
    text = compact_text(verdict, "https://gatecheck.example")
    assert text.splitlines()[0].startswith(
        "canary-10: ROLLBACK as of 2026-11-24T06:00:00Z — rollback trigger fired"
    )
    assert len(text) < 700


def judged_at(config: Path, moment: Any) -> Verdict:
    """svc-go judged as of ``moment`` through the CLI, not recorded."""
    done = CliRunner().invoke(
        app,
        ["run", "--phase", "svc-go", "--config", str(config), "--as-of", moment.isoformat(), "--format", "json",
         "--no-record"],
    )  # fmt: skip
    return Verdict.model_validate_json(done.stdout)


def test_run_url_takes_no_verdict_older_than_max_age(service_config: Path, tmp_path: Path) -> None:
    """A service whose latest verdict of a phase is 3 hours old (nothing evaluated it since:
    its schedule stopped, or it schedules other phases) does not hand that GO to `run --url`:
    past --max-age (default 1h) the service evaluates now; within it the recorded verdict is
    taken as it is."""
    from datetime import UTC, datetime, timedelta

    ledger_path = tmp_path / "old.db"
    three_hours_ago = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    SqliteLedger(ledger_path).record(judged_at(service_config, three_hours_ago), 0.1)
    svc = Service(load_project(service_config, environ={}), SqliteLedger(ledger_path), [])  # schedules nothing
    with serving(svc) as (base, _):
        runner = CliRunner()
        within = runner.invoke(app, ["run", "--phase", "svc-go", "--url", base, "--max-age", "4h", "--format", "json"])
        assert Verdict.model_validate_json(within.stdout).as_of == three_hours_ago  # the recorded one
        assert len(SqliteLedger(ledger_path).history("svc-go")) == 1
        asked = datetime.now(UTC).replace(microsecond=0)
        now = runner.invoke(app, ["run", "--phase", "svc-go", "--url", base, "--format", "json"])
        fresh = Verdict.model_validate_json(now.stdout)
        assert fresh.as_of >= asked, fresh.as_of  # evaluated when asked, not the recorded one
        assert now.exit_code == 0 and fresh.verdict.value == "go"
        assert len(SqliteLedger(ledger_path).history("svc-go")) == 2  # evaluated now, recorded


def test_a_recent_verdict_of_another_definition_of_the_gate_is_not_taken(
    service_config: Path, tmp_path: Path
) -> None:
    """A GO recorded a minute ago by another definition of the gate — before its checks or
    thresholds changed and the service restarted, or by a replica still running the old
    ones — is no answer to `max_age` (`run --url`, the API, Flagger's metadata): the phase is
    evaluated now under this definition. One of this definition is taken as it is."""
    from datetime import UTC, datetime, timedelta

    ledger_path = tmp_path / "old.db"
    a_minute_ago = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0)
    this_definition = judged_at(service_config, a_minute_ago)
    assert this_definition.gate_digest
    older = this_definition.model_copy(update={"gate_digest": "0" * 64})
    ledger = SqliteLedger(ledger_path)
    ledger.record(older, 0.1)
    svc = Service(load_project(service_config, environ={}), SqliteLedger(ledger_path), [])  # schedules nothing
    with serving(svc) as (base, _):
        asked = datetime.now(UTC).replace(microsecond=0)
        now = CliRunner().invoke(app, ["run", "--phase", "svc-go", "--url", base, "--format", "json"])
        fresh = Verdict.model_validate_json(now.stdout)
        assert fresh.as_of >= asked and fresh.gate_digest == this_definition.gate_digest, fresh.as_of
        assert len(ledger.history("svc-go")) == 2  # evaluated now, recorded
        answer = local_http.get(f"{base}/api/v1/phases/svc-go/verdict", params={"max_age": "1h"}, timeout=30)
        assert answer.status_code == 200 and answer.json()["as_of"] == fresh.model_dump(mode="json")["as_of"]
        assert len(ledger.history("svc-go")) == 2  # the one just made is of this definition: taken
        for evaluated in (3, 3):  # Flagger's canary: its first answer judged for it, then taken
            flagger = local_http.post(
                f"{base}/api/v1/flagger/rollout", json=flagger_payload("rollout", "svc-go", max_age="1h"), timeout=30
            )
            assert flagger.status_code == 200 and len(ledger.history("svc-go")) == evaluated
    svc = Service(load_project(service_config, environ={}), SqliteLedger(ledger_path), [])
    ledger.record(older.model_copy(update={"as_of": fresh.as_of + timedelta(seconds=1)}), 0.1)  # the latest
    with serving(svc) as (base, _):
        answer = local_http.get(f"{base}/api/v1/phases/svc-go/verdict", params={"max_age": "1h"}, timeout=30)
        assert answer.status_code == 200 and answer.json()["gate_digest"] == this_definition.gate_digest
        assert len(ledger.history("svc-go")) == 5  # the older definition's GO was not taken
        # this definition's GO, invalidated (no evidence): not taken either
        from gatecheck.ledger.decisions import invalidate_event

        project = load_project(service_config, environ={})
        ledger.append_audit([invalidate_event(project, ledger, "svc-go", answer.json()["as_of"], "bad", "bob")])
        again = local_http.get(f"{base}/api/v1/phases/svc-go/verdict", params={"max_age": "1h"}, timeout=30)
        assert again.status_code == 200 and len(ledger.history("svc-go")) == 6
        taken = local_http.get(f"{base}/api/v1/phases/svc-go/verdict", params={"max_age": "1h"}, timeout=30)
        assert taken.json()["as_of"] == again.json()["as_of"] and len(ledger.history("svc-go")) == 6
    # a GO that needed an approval which has ended since: not taken (a new service: its latest
    # is the ledger's)
    from gatecheck.results import Approval

    now = datetime.now(UTC)
    ended = Approval(satisfied=True, reason="approved", by="erin", at=now - timedelta(hours=2), until=now)
    approved = Verdict.model_validate(again.json()).model_copy(
        update={"as_of": max(r.as_of for r in ledger.history("svc-go")) + timedelta(seconds=2), "approval": ended}
    )  # the latest record
    ledger.record(approved, 0.1)
    svc = Service(load_project(service_config, environ={}), SqliteLedger(ledger_path), [])
    with serving(svc) as (base, _):
        after = local_http.get(f"{base}/api/v1/phases/svc-go/verdict", params={"max_age": "1h"}, timeout=30)
        assert after.status_code == 200 and after.json()["approval"] is None
        assert len(ledger.history("svc-go")) == 8  # the approved GO was not taken: evaluated now
    # a GO with a shadow check that failed, and that check enforced since: not taken
    from gatecheck._values import document_time
    from gatecheck.ledger.audit import AuditEvent
    from gatecheck.results import Outcome

    fresh = Verdict.model_validate(after.json())
    checks = [c.model_copy(update={"shadow": True, "outcome": Outcome.FAIL}) if c.suite == "soak_criteria" else c
              for c in fresh.checks]  # fmt: skip
    latest_as_of = max(r.as_of for r in ledger.history("svc-go")) + timedelta(seconds=2)
    ledger.record(fresh.model_copy(update={"as_of": latest_as_of, "checks": checks}), 0.1)
    svc = Service(load_project(service_config, environ={}), SqliteLedger(ledger_path), [])
    with serving(svc) as (base, _):
        kept = local_http.get(f"{base}/api/v1/phases/svc-go/verdict", params={"max_age": "1h"}, timeout=30)
        assert kept.json()["as_of"] == document_time(latest_as_of) and len(ledger.history("svc-go")) == 9
        ledger.append_audit([AuditEvent(
            at=datetime.now(UTC), kind="check-enforced", phase="svc-go", check="soak_criteria",
            by="dave", reason="it has been right for a week",
        )])  # fmt: skip
        now_enforced = local_http.get(f"{base}/api/v1/phases/svc-go/verdict", params={"max_age": "1h"}, timeout=30)
        assert now_enforced.status_code == 200 and len(ledger.history("svc-go")) == 10  # evaluated now


def test_a_cycle_prunes_the_ledger_to_its_retention_keeping_what_is_read(
    service_config: Path, tmp_path: Path
) -> None:
    """history.retention: 30d. The schedule's cycle deletes the records older than that —
    once, not again within the hour — and keeps each phase's latest record and latest
    decision (requires, the pages) and a pinned baseline's record; the audit trail stays.
    A retention shorter than what a gate reads back (a 48h soak) is refused, exit 2."""
    import shutil
    from datetime import UTC, datetime, timedelta

    from gatecheck.ledger.audit import AuditEvent
    from gatecheck.results import Verdict

    root = tmp_path / "p"
    shutil.copytree(service_config, root, ignore=shutil.ignore_patterns("history.db*"))
    config = yaml.safe_load((root / "gatecheck.yaml").read_text())
    config["history"] = {"url": f"sqlite:///{tmp_path / 'l.db'}", "retention": "30d"}
    (root / "gatecheck.yaml").write_text(yaml.safe_dump(config))
    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    ledger = SqliteLedger(tmp_path / "l.db")
    ledger.clock = lambda: now  # type: ignore[method-assign]  # recorded at the test's now, not today's
    judged = CliRunner().invoke(app, ["run", "--phase", "svc-go", "--config", str(root), "--format", "json",
                                      "--no-record"])  # fmt: skip
    go = Verdict.model_validate_json(judged.stdout)

    def recorded(phase: str, days: float, verdict: str = "go") -> None:
        state = {"go": go.verdict, "inconclusive": type(go.verdict)("inconclusive")}[verdict]
        ledger.record(go.model_copy(update={"phase": phase, "as_of": now - timedelta(days=days), "verdict": state}), 0.1)

    for days in (90, 60, 45, 31, 29, 1):
        recorded("svc-go", days)
    recorded("svc-nogo", 50)  # its latest record and decision: kept however old
    recorded("svc-rollback", 70)  # its latest decision ...
    recorded("svc-rollback", 40, "inconclusive")  # ... and its latest record
    recorded("svc-inconclusive", 80)  # pinned below
    recorded("svc-inconclusive", 2)
    ledger.append_audit([AuditEvent(
        at=now - timedelta(days=79), kind="baseline-pinned", phase="svc-inconclusive", check="unmatched_edges",
        group={"record": (now - timedelta(days=80)).isoformat()}, by="alice", reason="the good release",
    )])  # fmt: skip
    svc = Service(load_project(root, environ={}), ledger, [], clock=lambda: now)
    asyncio.run(svc.cycle([]))
    ages = {
        phase: [round((now - r.as_of) / timedelta(days=1)) for r in ledger.history(phase)]
        for phase in ("svc-go", "svc-nogo", "svc-rollback", "svc-inconclusive")
    }
    assert ages == {"svc-go": [29, 1], "svc-nogo": [50], "svc-rollback": [70, 40], "svc-inconclusive": [80, 2]}
    assert [e.kind for e in ledger.audit()] == ["baseline-pinned"]
    recorded("svc-go", 40)
    asyncio.run(svc.cycle([]))  # within the hour: not pruned again
    assert len(ledger.history("svc-go")) == 3
    assert asyncio.run(svc.prune_history()) == 1
    config["history"]["retention"] = "1d"
    (root / "gatecheck.yaml").write_text(yaml.safe_dump(config))
    gate = yaml.safe_load((root / "gates" / "svc-go.yaml").read_text())
    (root / "gates" / "svc-go.yaml").write_text(yaml.safe_dump({**gate, "soak": {"duration": "48h", "max_gap": "30m"}}))
    refused = CliRunner().invoke(app, ["validate", "--config", str(root)])
    assert refused.exit_code == 2
    assert (
        "gatecheck: error: gatecheck.yaml: history.retention: 24h is shorter than the 48h30m gate svc-go "
        "reads back for its soak (duration + max_gap)"
    ) in refused.output


def test_run_url_refuses_a_stale_verdict_or_another_phases_from_any_service(tmp_path: Path) -> None:
    """Against a service that ignores max_age (an older gatecheck, or something in between
    answering for it), the client judges the document itself: a GO 3 hours old, or a GO of
    another phase, is INCONCLUSIVE (exit 3) saying why — never the GO."""
    import http.server
    from datetime import UTC, datetime, timedelta

    from gatecheck.demo.metrics import STOP_POLL_S

    def document(phase: str, age: timedelta) -> bytes:
        as_of = (datetime.now(UTC) - age).replace(microsecond=0)
        return Verdict(
            phase=phase, environment="e", as_of=as_of, verdict="go", reasons=["all required checks passed"],
            checks=[], config_hash="h", gatecheck_version="0",
        ).model_dump_json().encode()  # fmt: skip

    answers = {"/api/v1/phases/svc-go/verdict": document("svc-go", timedelta(hours=3))}
    asked: list[str] = []

    class Old(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            body = answers[self.path.split("?")[0]]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Old)
    threading.Thread(target=server.serve_forever, args=(STOP_POLL_S,), daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    runner = CliRunner()
    try:
        stale = runner.invoke(app, ["run", "--phase", "svc-go", "--url", base, "--format", "json"])
        assert stale.exit_code == 3, stale.stdout
        (reason,) = Verdict.model_validate_json(stale.stdout).reasons
        assert re.match(rf"the latest verdict of svc-go at {re.escape(base)} is 3h\S* old \(as of .*, go\), more than --max-age 1h", reason)
        assert asked[-1].endswith("?max_age=1h&timeout=25")  # the service was asked for a recent one
        assert runner.invoke(app, ["run", "--phase", "svc-go", "--url", base, "--max-age", "4h"]).exit_code == 0
        # a service whose clock runs a day ahead: its GO would look new until tomorrow
        answers["/api/v1/phases/svc-go/verdict"] = document("svc-go", -timedelta(days=1))
        ahead = runner.invoke(app, ["run", "--phase", "svc-go", "--url", base, "--format", "json"])
        assert ahead.exit_code == 3, ahead.stdout
        (reason,) = Verdict.model_validate_json(ahead.stdout).reasons
        assert re.match(rf"the latest verdict of svc-go at {re.escape(base)} is dated \S+ ahead of this machine's clock \(as of \S+, go\)", reason), reason
        answers["/api/v1/phases/svc-go/verdict"] = document("svc-go", -timedelta(seconds=60))  # within the skew
        assert runner.invoke(app, ["run", "--phase", "svc-go", "--url", base]).exit_code == 0
        answers["/api/v1/phases/svc-go/verdict"] = document("svc-other", timedelta(0))
        other = runner.invoke(app, ["run", "--phase", "svc-go", "--url", base])
        assert other.exit_code == 3 and "answered a verdict of phase 'svc-other', not 'svc-go'" in other.stdout
        # Something answering 200 that is no verdict (a proxy's page, a half document): exit 3, one line.
        answers["/api/v1/phases/svc-go/verdict"] = b'{"phase": "svc-go", "verdict": "go"}'
        half = runner.invoke(app, ["run", "--phase", "svc-go", "--url", base, "--format", "json"])
        assert half.exit_code == 3, half.stdout
        (reason,) = Verdict.model_validate_json(half.stdout).reasons
        assert reason == (
            f"gatecheck service at {base} sent an unreadable verdict: 6 problems: environment: Field required; "
            "as_of: Field required; reasons: Field required; checks: Field required; config_hash: Field required "
            "(and 1 more)"
        )
        answers["/api/v1/phases/svc-go/verdict"] = b"<html>\n<body>Sign in</body>\n</html>"
        page = runner.invoke(app, ["run", "--phase", "svc-go", "--url", base, "--format", "json"])
        assert page.exit_code == 3
        (reason,) = Verdict.model_validate_json(page.stdout).reasons
        assert reason.startswith(f"gatecheck service at {base} sent an unreadable verdict: ") and "\n" not in reason
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--url", "http://127.0.0.1:1", "--max-age", "10m", "--fresh"], "--max-age: --fresh and --wait"),
        (["--url", "http://127.0.0.1:1", "--max-age", "10m", "--wait", "1m"], "--max-age: --fresh and --wait"),
        (["--url", "http://127.0.0.1:1", "--max-age", "0"], "--max-age: '0' is no age"),
        (["--url", "http://127.0.0.1:1", "--max-age", "soon"], "--max-age: expected a duration"),
        (["--max-age", "10m"], "--max-age: how old a running service's verdict may be: give --url too"),
    ],
)
def test_a_bad_max_age_is_one_line_and_exit_2(args: list[str], said: str) -> None:
    result = CliRunner().invoke(app, ["run", "--phase", "svc-go", *args])
    assert result.exit_code == 2, result.output
    assert said in result.stderr and "Traceback" not in result.output


def latest_document(base: str, phase: str) -> dict[str, Any]:
    """The service's plain answer for ``phase``: its latest verdict document."""
    return local_http.get(f"{base}/api/v1/phases/{phase}/verdict", timeout=5).json()


def wait_until(what: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait for ``what()`` to hold, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "not within a minute"
        time.sleep(0.1)


def all_judged(base: str) -> bool:
    """Every phase the service schedules has a verdict."""
    return all(p["verdict"] for p in local_http.get(f"{base}/api/v1/phases", timeout=2).json() if p["scheduled"])


def test_a_verdict_a_person_takes_back_is_judged_again_at_once_not_at_the_next_interval(
    service_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every phase scheduled hourly. svc-nogo is GO under a waiver; revoked (by the CLI's
    code, on the ledger: another process), the service evaluates it again within seconds, and
    its document and gauge say NO-GO. svc-go's latest GO invalidated: evaluated again (a new
    record). Each taken-back verdict is evaluated again once, and a decision about an older
    record, not the latest, changes nothing."""
    from gatecheck._values import document_time
    from gatecheck.ledger.decisions import invalidate_event, revoke_event, waiver_event
    from gatecheck.service import core

    monkeypatch.setattr(core, "WITHDRAWALS_EVERY_S", 0.2)
    project = load_project(service_config, environ={})
    decisions = SqliteLedger(tmp_path / "l.db")  # the CLI's own connection to the ledger
    waiver = decisions.create_waiver(
        waiver_event(project, "svc-nogo", "unmatched_edges", {}, "1h", "pairing fix ships tomorrow", "alice")
    )
    svc = Service(project, SqliteLedger(tmp_path / "l.db"), ["svc-go", "svc-nogo"])

    with serving(svc, all_judged) as (base, _):
        first = latest_document(base, "svc-nogo")
        assert first["verdict"] == "go" and first["checks"][0]["waiver"]["id"] == waiver.waiver
        trail = decisions.audit(kinds=["waiver-created", "waiver-revoked"])
        decisions.append_audit([revoke_event(project, trail, str(waiver.waiver), "the fix slipped", "bob")])
        wait_until(lambda: latest_document(base, "svc-nogo")["verdict"] == "no-go")
        assert value(scrape(base), "gatecheck_phase_verdict", phase="svc-nogo", state="no-go") == 1.0
        assert [r.verdict.value for r in decisions.history("svc-nogo")] == ["go", "no-go"]

        go = latest_document(base, "svc-go")
        assert go["verdict"] == "go"
        decisions.append_audit([invalidate_event(project, decisions, "svc-go", go["as_of"], "bus was half down", "carol")])
        wait_until(lambda: latest_document(base, "svc-go")["as_of"] != go["as_of"])
        assert [r.verdict.value for r in decisions.history("svc-go")] == ["go", "go"]

        older = decisions.history("svc-go")[0]
        decisions.append_audit([
            invalidate_event(project, decisions, "svc-go", document_time(older.as_of), "also suspect", "carol")
        ])  # fmt: skip
        time.sleep(1.0)  # five looks at the trail: nothing of this is the latest verdict of either
        assert len(decisions.history("svc-go")) == 2 and len(decisions.history("svc-nogo")) == 2


def chained_config(service_config: Path, tmp_path: Path) -> Path:
    """The service's project with its own ledger and svc-after, which requires svc-go."""
    import shutil

    root = tmp_path / "p"
    shutil.copytree(service_config, root, ignore=shutil.ignore_patterns("history.db*"))
    config = yaml.safe_load((root / "gatecheck.yaml").read_text())
    config["history"] = {"url": f"sqlite:///{tmp_path / 'l.db'}"}
    (root / "gatecheck.yaml").write_text(yaml.safe_dump(config))
    after = {"phase": "svc-after", "environment": "e-healthy", "requires": ["svc-go"],
             "checks": [{"suite": "unmatched_edges"}]}  # fmt: skip
    (root / "gates" / "svc-after.yaml").write_text(yaml.safe_dump(after))
    return root


def recorded_chain(root: Path, tmp_path: Path, phases: tuple[str, ...]) -> tuple[dict[str, Any], SqliteLedger, Service]:
    """Each of ``phases`` run once (`gatecheck run`, GO), in order: the last one's verdict
    document, the chain's ledger, and a service on it that schedules nothing."""
    runner = CliRunner()
    for phase in phases:
        done = runner.invoke(app, ["run", "--phase", phase, "--config", str(root), "--format", "json"])
        assert done.exit_code == 0, done.output
    ledger = SqliteLedger(tmp_path / "l.db")
    return json.loads(done.stdout), ledger, Service(load_project(root, environ={}), ledger, [])


def test_a_recent_go_resting_on_a_required_go_that_no_longer_holds_is_not_taken(
    service_config: Path, tmp_path: Path
) -> None:
    """svc-after's GO of a minute ago required svc-go's GO. `max_age` takes it while that GO
    holds; once svc-go's GO is invalidated, svc-after is evaluated now (its requires unmet)
    rather than answered with a GO resting on what was taken back."""
    root = chained_config(service_config, tmp_path)
    after, ledger, svc = recorded_chain(root, tmp_path, ("svc-go", "svc-after"))
    url = "/api/v1/phases/svc-after/verdict"
    with serving(svc) as (base, _):
        taken = local_http.get(f"{base}{url}", params={"max_age": "1h"}, timeout=60).json()
        assert (taken["verdict"], taken["as_of"]) == ("go", after["as_of"])
        go = ledger.latest("svc-go")
        assert go is not None
        done = CliRunner().invoke(app, ["invalidate", "--phase", "svc-go", "--record", go.document["as_of"],
                                   "--reason", "bus was half down", "--by", "carol", "--config", str(root)])  # fmt: skip
        assert done.exit_code == 0, done.output
        now = local_http.get(f"{base}{url}", params={"max_age": "1h"}, timeout=60).json()
        assert now["verdict"] == "inconclusive" and now["as_of"] != after["as_of"]
        assert "no longer holds: invalidated by carol" in now["requires"][0]["reason"]
        assert len(ledger.history("svc-after")) == 2  # evaluated now, recorded


def test_a_recent_go_two_steps_below_a_no_go_is_not_taken(service_config: Path, tmp_path: Path) -> None:
    """svc-go → svc-after → svc-last, each GO a minute ago. A NO-GO of svc-go recorded since
    (CI's own run, say) leaves svc-after's latest *decision* its GO (judged again it would be
    inconclusive: no decision), so svc-last's GO rested on it two steps below the NO-GO:
    `max_age` evaluates svc-last now, and its requires says why, up the chain."""
    from datetime import UTC, datetime

    from gatecheck.results import VerdictState

    root = chained_config(service_config, tmp_path)
    last = {"phase": "svc-last", "environment": "e-healthy", "requires": ["svc-after"],
            "checks": [{"suite": "unmatched_edges"}]}  # fmt: skip
    (root / "gates" / "svc-last.yaml").write_text(yaml.safe_dump(last))
    judged, ledger, svc = recorded_chain(root, tmp_path, ("svc-go", "svc-after", "svc-last"))
    url = "/api/v1/phases/svc-last/verdict"
    with serving(svc) as (base, _):
        taken = local_http.get(f"{base}{url}", params={"max_age": "1h"}, timeout=60).json()
        assert (taken["verdict"], taken["as_of"]) == ("go", judged["as_of"])
        go = ledger.latest("svc-go")
        assert go is not None
        no_go = go.to_verdict().model_copy(
            update={"verdict": VerdictState.NO_GO, "as_of": datetime.now(UTC)}  # after every GO above
        )
        ledger.record(no_go, 0.1)
        now = local_http.get(f"{base}{url}", params={"max_age": "1h"}, timeout=60).json()
        assert now["verdict"] == "inconclusive" and now["as_of"] != judged["as_of"]
        reason = now["requires"][0]["reason"]
        assert reason.startswith("the latest GO of svc-after, as of "), reason
        assert "no longer holds: its requirement of svc-go no longer holds (the latest decision of svc-go is NO-GO" in reason
        assert len(ledger.history("svc-last")) == 2  # evaluated now, recorded


def test_a_go_whose_required_go_no_longer_holds_is_judged_again_at_once(
    service_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """svc-go and svc-after (requires svc-go), hourly, both GO. svc-go's GO invalidated: both
    are evaluated again within seconds (svc-after's own record was not touched: its GO rested
    on the one taken back). Then a NO-GO of svc-go recorded elsewhere (CI's own run): svc-after,
    whose GO rested on svc-go's, is evaluated again and is no GO now."""
    from gatecheck.ledger.decisions import invalidate_event
    from gatecheck.results import VerdictState
    from gatecheck.service import core

    monkeypatch.setattr(core, "WITHDRAWALS_EVERY_S", 0.2)
    root = chained_config(service_config, tmp_path)
    project = load_project(root, environ={})
    elsewhere = SqliteLedger(tmp_path / "l.db")
    svc = Service(project, SqliteLedger(tmp_path / "l.db"), ["svc-go", "svc-after"])

    with serving(svc, all_judged) as (base, _):
        first = latest_document(base, "svc-after")
        assert first["verdict"] == "go" and first["requires"][0]["satisfied"]
        go = elsewhere.latest("svc-go")
        assert go is not None
        elsewhere.append_audit([invalidate_event(project, elsewhere, "svc-go", go.document["as_of"], "half a bus", "carol")])
        wait_until(lambda: len(elsewhere.history("svc-after")) == 2 and len(elsewhere.history("svc-go")) == 2)
        assert latest_document(base, "svc-after")["verdict"] == "go"  # on svc-go's new GO

        latest = elsewhere.latest("svc-go")
        assert latest is not None
        nogo = latest.to_verdict()
        nogo = nogo.model_copy(update={"verdict": VerdictState.NO_GO, "as_of": svc.clock()})  # after its GO
        elsewhere.record(nogo, 0.1)
        wait_until(lambda: latest_document(base, "svc-after")["verdict"] != "go")
        again = latest_document(base, "svc-after")
        assert again["verdict"] == "inconclusive"
        assert again["requires"][0]["reason"].startswith("the latest decision of svc-go is NO-GO")


def test_an_invalidation_landing_during_a_look_takes_back_the_phase_with_the_go_resting_on_it(
    service_config: Path, tmp_path: Path
) -> None:
    """svc-go and svc-after (requires svc-go), both GO. svc-go's GO is invalidated after the
    look read the trail and before it judged svc-after's requirement again at the time it took
    (seen by the second read only): the look finds both, so one cycle judges svc-after on svc-go's new GO. Before,
    svc-after was evaluated alone on the taken-back GO and stayed INCONCLUSIVE until its next
    interval (once in ten suite runs, the test above)."""
    from gatecheck.ledger.decisions import invalidate_event

    root = chained_config(service_config, tmp_path)
    project = load_project(root, environ={})
    ledger = SqliteLedger(tmp_path / "l.db")
    svc = Service(project, ledger, ["svc-go", "svc-after"])
    asyncio.run(svc.cycle(["svc-go", "svc-after"]))
    go = ledger.latest("svc-go")
    assert go is not None and go.verdict == "go" and svc.states["svc-after"].verdict.verdict.value == "go"
    clock = svc.clock
    landed = []

    def landing_now() -> datetime:
        if not landed:  # the look has read the trail and asks the time: the decision lands now
            landed.append(invalidate_event(project, ledger, "svc-go", go.document["as_of"], "half a bus", "carol"))
            ledger.append_audit(landed)
        return clock()

    svc.clock = landing_now
    assert asyncio.run(svc.withdrawn_phases()) == ["svc-go", "svc-after"]
    svc.clock = clock
    asyncio.run(svc.cycle(["svc-go", "svc-after"]))
    assert [r.verdict for r in ledger.history("svc-after")] == ["go", "go"]
    assert asyncio.run(svc.withdrawn_phases()) == []  # each taken-back verdict once


def test_a_recent_go_resting_on_an_approval_a_later_no_go_overrode_is_not_taken(
    service_config: Path, tmp_path: Path
) -> None:
    """svc-after requires svc-nogo and lets an approval stand in for its GO. Approved, svc-after
    is GO, and `max_age` takes that GO; once svc-nogo is judged NO-GO after the approval, the
    GO resting on the approval is no answer: svc-after is evaluated now (requires unmet)."""
    root = chained_config(service_config, tmp_path)
    after = {"phase": "svc-after", "environment": "e-healthy", "requires": ["svc-nogo"],
             "approval_satisfies_requires": True, "checks": [{"suite": "unmatched_edges"}]}  # fmt: skip
    (root / "gates" / "svc-after.yaml").write_text(yaml.safe_dump(after))
    from datetime import UTC, datetime, timedelta

    runner = CliRunner()

    def cli(*args: str) -> Any:
        done = runner.invoke(app, [*args, "--config", str(root)])
        assert done.exit_code in (0, 1), done.output
        return done

    cli("approve", "--phase", "svc-nogo", "--by", "heidi", "--reason", "EM sign-off")
    first = json.loads(cli("run", "--phase", "svc-after", "--format", "json").stdout)
    assert first["verdict"] == "go" and first["requires"][0]["reason"].startswith("approved by heidi")
    url = "/api/v1/phases/svc-after/verdict"
    # 25 hours on (its clock), the 24-hour approval has ended: that GO is no answer
    later = Service(load_project(root, environ={}), SqliteLedger(tmp_path / "l.db"), [],
                    clock=lambda: datetime.now(UTC) + timedelta(hours=25))  # fmt: skip
    with serving(later) as (base, _):
        anew = local_http.get(f"{base}{url}", params={"max_age": "48h"}, timeout=60).json()
        assert anew["as_of"] != first["as_of"]  # evaluated now (at the real time: approved, GO)
    svc = Service(load_project(root, environ={}), SqliteLedger(tmp_path / "l.db"), [])  # schedules nothing
    with serving(svc) as (base, _):
        taken = local_http.get(f"{base}{url}", params={"max_age": "1h"}, timeout=60).json()
        assert (taken["verdict"], taken["as_of"]) == ("go", anew["as_of"])  # the approval in force: taken
        assert cli("run", "--phase", "svc-nogo").exit_code == 1  # NO-GO, recorded after the approval
        now = local_http.get(f"{base}{url}", params={"max_age": "1h"}, timeout=60).json()
        assert now["verdict"] == "inconclusive" and now["as_of"] != anew["as_of"]
        assert now["requires"][0]["reason"].startswith("the latest decision of svc-nogo is NO-GO")
