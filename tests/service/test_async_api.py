"""The asynchronous evaluation API through a running service whose source is slow (a chDB
query that sleeps 2 s): 202 and an id at once, ``in_progress`` while it runs, the verdict
document after, one evaluation shared by the requests that arrive meanwhile; and ``gatecheck
run --url --wait`` on top of it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gatecheck.cli import app
from gatecheck.config import load_project
from gatecheck.ledger import SqliteLedger
from gatecheck.service.core import Service

from ..conftest import local_http, serving

SLOW = {
    "name": "slow_pass",
    "source": "warehouse",
    "window": {"length": "1h"},
    "query": "SELECT toUInt8(sleep(2) + 1) AS ok",
    "evidence": "none",  # a constant: what is judged is the service's timing, not data
    "expectations": [{"type": "expect_column_values_to_be_between", "column": "ok", "min_value": 1}],
}


@pytest.fixture(scope="module")
def slow_service(tmp_path_factory: pytest.TempPathFactory, warehouse: Path) -> Iterator[tuple[str, Service]]:
    root = tmp_path_factory.mktemp("async") / "config"
    (root / "gates").mkdir(parents=True)
    (root / "suites").mkdir()
    project = {
        "environments": {
            "staging": {
                "sources": {
                    "warehouse": {"type": "clickhouse", "url": f"chdb://{warehouse}?database=default"}
                }
            }
        },
        "history": {"url": f"sqlite:///{root / 'history.db'}"},
        "service": {"interval": "1h", "listen": "127.0.0.1:9464"},
    }
    (root / "gatecheck.yaml").write_text(yaml.safe_dump(project))
    (root / "thresholds.yaml").write_text("defaults: {}\n")
    (root / "suites" / "slow_pass.yaml").write_text(yaml.safe_dump(SLOW))
    gate = {"phase": "svc-slow", "environment": "staging", "checks": [{"suite": "slow_pass"}]}
    (root / "gates" / "svc-slow.yaml").write_text(yaml.safe_dump(gate))
    svc = Service(load_project(root, environ={}), SqliteLedger(root / "history.db"), [])
    with serving(svc) as (base, _):
        yield base, svc


def poll(base: str, location: str, timeout: float = 60) -> tuple[list[str], dict[str, Any]]:
    """The statuses seen while it ran, and the final answer."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = local_http.get(f"{base}{location}")
        assert answer.status_code == 200, answer.text
        document = answer.json()
        if document.get("status") != "in_progress":
            return seen, document
        seen.append(document["status"])
        time.sleep(0.2)
    raise AssertionError("no verdict within 60s")


def test_an_evaluation_started_answers_at_once_and_is_shared_while_it_runs(
    slow_service: tuple[str, Service],
) -> None:
    base, svc = slow_service
    before = len(svc.ledger.history("svc-slow"))
    first = local_http.post(f"{base}/api/v1/phases/svc-slow/evaluations")
    second = local_http.post(f"{base}/api/v1/phases/svc-slow/evaluations")
    assert first.status_code == second.status_code == 202
    body = first.json()
    assert body["status"] == "in_progress" and body["phase"] == "svc-slow"
    assert first.headers["location"] == f"/api/v1/evaluations/{body['id']}" == body["location"]
    assert second.json()["id"] == body["id"]  # the one under way, shared
    # answered while the evaluation was still under way (no clock asked: it was seen running)
    seen, document = poll(base, first.headers["location"])
    assert seen and set(seen) == {"in_progress"}
    assert document["verdict"] == "go" and document["phase"] == "svc-slow"
    assert len(svc.ledger.history("svc-slow")) == before + 1  # one evaluation for both requests
    # asked again once done: the same document; a new request starts a new evaluation
    assert local_http.get(f"{base}{first.headers['location']}").json() == document
    third = local_http.post(f"{base}/api/v1/phases/svc-slow/evaluations").json()
    assert third["id"] != body["id"]
    poll(base, third["location"])
    # unknown ids and phases
    missing = local_http.get(f"{base}/api/v1/evaluations/0123abcd")
    assert missing.status_code == 404 and "no evaluation '0123abcd'" in missing.json()["detail"]
    assert local_http.post(f"{base}/api/v1/phases/nope/evaluations").status_code == 404


def test_run_url_wait_polls_the_asynchronous_api(slow_service: tuple[str, Service]) -> None:
    base, _ = slow_service
    runner = CliRunner()
    done = runner.invoke(
        app, ["run", "--phase", "svc-slow", "--url", base, "--wait", "1m", "--format", "json"]
    )
    assert done.exit_code == 0, done.output
    assert '"verdict": "go"' in done.stdout
    # past --wait: inconclusive (exit 3), never GO, and where to look for the evaluation
    short = runner.invoke(app, ["run", "--phase", "svc-slow", "--url", base, "--wait", "1s"])
    assert short.exit_code == 3, short.output
    assert (
        f"no verdict from {base} within 1s; the evaluation goes on (GET /api/v1/evaluations/" in short.stdout
    )
    bad = runner.invoke(app, ["run", "--phase", "svc-slow", "--wait", "1m"])
    assert (
        bad.exit_code == 2
        and "--wait: waits for a running service's evaluation: give --url too" in bad.stderr
    )
    unknown = runner.invoke(app, ["run", "--phase", "nope", "--url", base, "--wait", "1m"])
    assert unknown.exit_code == 2 and "does not know phase 'nope'" in unknown.stderr
