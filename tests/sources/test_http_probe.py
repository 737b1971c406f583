"""The http probe source end to end: a real ingest service on a loopback port (HTTP, with a
bearer token) that writes ln(RMSSD) rows into a real PostgreSQL (embedded), probed by a gate:
healthy → GO with the row found and its value right; the service down → ROLLBACK; the row
never written → NO-GO. Probes run only in a gate that allows them, never in a backtest, and
their checks are marked synthetic; the header's secret is never printed."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from typer.testing import CliRunner

from gatecheck.cli import app
from gatecheck.config import load_project
from gatecheck.demo.database import SCHEMA
from gatecheck.demo.ingest import IngestService
from gatecheck.errors import ConfigError
from gatecheck.results import Outcome, VerdictState

from ..conftest import evaluate
from ..ledger.test_ledger import fresh_database

TOKEN = "s3cret-ingest-token"


@pytest.fixture
def ingest(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IngestService]:
    """The demo's ingest service, requiring the token, on a new database of the demo's schema."""
    database = fresh_database(request, tmp_path)
    with psycopg.connect(database, autocommit=True) as connection:
        connection.execute(SCHEMA)
    service = IngestService(database, token=TOKEN).start()
    yield service
    service.stop()


def probe_project(root: Path, ingest_url: str, database: str, probes: bool = True) -> Path:
    (root / "gates").mkdir(parents=True)
    (root / "suites").mkdir()
    sources = {
        "ingest": {
            "type": "http",
            "url": ingest_url,
            "timeout": "2s",
            "headers": {"Authorization": "INGEST_AUTH"},
        },
        "database": {"type": "postgresql", "url": database},
    }
    (root / "gatecheck.yaml").write_text(yaml.safe_dump({"environments": {"staging": {"sources": sources}}}))
    (root / "thresholds.yaml").write_text("defaults: {}\n")
    smoke = {
        "name": "smoke_ingest",
        "description": "a synthetic HRV message is accepted and its row written with the right ln(RMSSD)",
        "source": "ingest",
        "window": {"length": "5m"},
        "query": {
            "request": {"method": "POST", "path": "/ingest/hrv", "body": '{"message_id": "{probe_id}", "rmssd_ms": 42.0}'},
            "effect": {
                "source": "database", "within": "3s", "every": "100ms",
                "query": "SELECT ln_rmssd FROM hrv_readings WHERE message_id = {probe_id:text}",
            },
        },
        "expectations": [
            {"type": "expect_column_values_to_be_between", "column": "status", "min_value": 200, "max_value": 299},
            {"type": "expect_column_values_to_be_between", "column": "effect_rows", "min_value": 1},
            {"type": "expect_column_values_to_be_between", "column": "ln_rmssd", "min_value": 3.737, "max_value": 3.738},
        ],
    }  # fmt: skip
    alive = {
        "name": "ingest_answers",
        "description": "the ingest service answers at all",
        "source": "ingest",
        "window": {"length": "5m"},
        "query": {"request": {"method": "GET", "path": "/healthz"}},
        "expectations": [
            {"type": "expect_column_values_to_be_between", "column": "answered", "min_value": 1}
        ],
    }
    for suite in (smoke, alive):
        (root / "suites" / f"{suite['name']}.yaml").write_text(yaml.safe_dump(suite))
    gate = {
        "phase": "smoke", "environment": "staging", "probes": probes,
        "checks": [{"suite": "smoke_ingest"}], "rollback": [{"suite": "ingest_answers"}],
    }  # fmt: skip
    (root / "gates" / "smoke.yaml").write_text(yaml.safe_dump(gate))
    return root


AS_OF = datetime(2026, 3, 2, 12, tzinfo=UTC)  # a backtest's range; a probe itself judges now (judge)


def judge(root: Path, as_of: datetime | None = None) -> Any:
    """The smoke gate evaluated now (a probe's request is the present), or as of ``as_of``."""
    project = load_project(root, environ={"INGEST_AUTH": f"Bearer {TOKEN}"})
    return asyncio.run(evaluate(project, "smoke", as_of))


def test_gatecheck_run_sends_the_probe_and_judges_it(
    ingest: IngestService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``gatecheck run`` watches its sources for the spinner; the watched http source lost its
    ``send`` and every gate with a probe (staging-deploy's) was an internal error, exit 2."""
    monkeypatch.setenv("INGEST_AUTH", f"Bearer {TOKEN}")
    root = probe_project(tmp_path / "config", ingest.url, ingest.database_url)
    monkeypatch.setenv("GATECHECK_HISTORY_URL", f"sqlite:///{tmp_path / 'history.db'}")
    result = CliRunner().invoke(app, ["run", "--phase", "smoke", "--config", str(root), "--format", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["verdict"] == "go"
    assert {c["suite"]: c["outcome"] for c in document["checks"]} == {"smoke_ingest": "pass", "ingest_answers": "pass"}
    (sent,) = ingest.received  # the smoke message, sent once
    assert sent["body"]["message_id"].startswith("gatecheck-probe-")
    ingest.stop()  # no answer: the rollback trigger fires
    result = CliRunner().invoke(app, ["run", "--phase", "smoke", "--config", str(root), "--no-record"])
    assert result.exit_code == 4, result.output
    assert result.stdout.startswith("ROLLBACK  phase smoke") and "ingest_answers: fail" in result.stdout


def test_a_probe_finds_its_row_with_the_right_value(
    ingest: IngestService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGEST_AUTH", f"Bearer {TOKEN}")
    verdict = judge(probe_project(tmp_path / "config", ingest.url, ingest.database_url))
    assert verdict.verdict is VerdictState.GO, verdict.reasons
    smoke = next(c for c in verdict.checks if c.suite == "smoke_ingest")
    assert smoke.synthetic and all(c.synthetic for c in verdict.checks)
    observed = {e.column: e.observed_value for e in smoke.expectations}
    assert observed["status"] == 202 and observed["effect_rows"] == 1
    assert observed["ln_rmssd"] == pytest.approx(math.log(42.0))
    (sent,) = ingest.received
    assert sent["body"]["message_id"].startswith("gatecheck-probe-")  # a unique id per probe
    assert sent["headers"]["x-gatecheck-probe"] == sent["body"]["message_id"]
    assert TOKEN not in json.dumps(verdict.document())  # the header's value is never in the evidence


def test_the_service_down_is_a_rollback(
    ingest: IngestService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGEST_AUTH", f"Bearer {TOKEN}")
    url = ingest.url
    ingest.stop()  # nothing listens there any more
    verdict = judge(probe_project(tmp_path / "config", url, ingest.database_url))
    assert verdict.verdict is VerdictState.ROLLBACK, verdict.reasons
    trigger = next(c for c in verdict.checks if c.role == "rollback")
    assert trigger.outcome is Outcome.FAIL and trigger.synthetic
    smoke = next(c for c in verdict.checks if c.suite == "smoke_ingest")
    assert {e.column: e.observed_value for e in smoke.expectations}["status"] == 0


def test_a_row_never_written_is_no_go(
    ingest: IngestService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGEST_AUTH", f"Bearer {TOKEN}")
    ingest.drops = True
    verdict = judge(probe_project(tmp_path / "config", ingest.url, ingest.database_url))
    assert verdict.verdict is VerdictState.NO_GO, verdict.reasons
    smoke = next(c for c in verdict.checks if c.suite == "smoke_ingest")
    assert smoke.outcome is Outcome.FAIL
    assert "effect_rows" in (smoke.reason or "") and "observed 0" in (smoke.reason or "")


def test_a_probe_as_of_the_past_sends_nothing_and_is_an_error(
    ingest: IngestService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run --as-of` an hour ago sent the probe's request now and judged its answer as the
    hour before's: a GO for a moment nothing was sent at."""
    monkeypatch.setenv("INGEST_AUTH", f"Bearer {TOKEN}")
    hour_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    verdict = judge(probe_project(tmp_path / "config", ingest.url, ingest.database_url), hour_ago)
    assert verdict.verdict is VerdictState.INCONCLUSIVE, verdict.reasons
    for check in verdict.checks:
        assert check.outcome is Outcome.ERROR, check
        assert check.reason == (
            f"source ingest: a probe's request, sent now, is the present: an evaluation as of "
            f"{hour_ago.strftime('%Y-%m-%dT%H:%M:%SZ')}, 1h ago (--as-of), cannot be judged from it"
        ), check.reason
    assert ingest.received == []  # nothing was sent


def test_probes_run_only_where_allowed_and_never_in_a_backtest(ingest: IngestService, tmp_path: Path) -> None:
    from gatecheck.evaluation.backtest import run_backtest

    root = probe_project(tmp_path / "config", ingest.url, ingest.database_url, probes=False)
    with pytest.raises(ConfigError) as refused:
        load_project(root, environ={})
    assert any(
        "checks[0].suite: suite smoke_ingest sends synthetic requests (a probe): a gate runs probes only with probes: true"
        in p
        for p in refused.value.problems
    ), refused.value.problems
    allowed = probe_project(tmp_path / "allowed", ingest.url, ingest.database_url)
    with pytest.raises(
        ConfigError, match="every check of smoke is a probe: a backtest sends no synthetic request"
    ):
        asyncio.run(
            run_backtest(
                load_project(allowed, environ={}),
                "smoke",
                AS_OF - timedelta(hours=1),
                AS_OF,
                timedelta(hours=1),
            )
        )
    assert ingest.received == []  # nothing was sent
    # explain shows what a probe would send, and the header by its variable only
    shown = CliRunner().invoke(
        app, ["explain", "--phase", "smoke", "--config", str(allowed)], env={"INGEST_AUTH": TOKEN}
    )
    assert shown.exit_code == 0, shown.output
    assert "a synthetic POST request (probe)" in shown.stdout and "${INGEST_AUTH}" in shown.stdout
    assert TOKEN not in shown.stdout and ingest.received == []


def test_an_unset_header_variable_is_an_error_not_a_probe_without_it(
    ingest: IngestService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INGEST_AUTH", raising=False)
    root = probe_project(tmp_path / "config", ingest.url, ingest.database_url)
    project = load_project(root, environ={})
    verdict = asyncio.run(evaluate(project, "smoke"))  # now: a probe is the present
    assert verdict.verdict is VerdictState.INCONCLUSIVE
    assert all(c.outcome is Outcome.ERROR for c in verdict.checks)
    assert "environment variable INGEST_AUTH is not set" in (verdict.checks[0].reason or "")
    assert ingest.received == []
