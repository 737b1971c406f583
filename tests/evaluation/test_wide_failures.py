"""A check that fails in many groups: judged on every group, listed by its first 100.

A suite grouped by a key of many values (a user, a device) failing in 10,000 groups made a
2 MB verdict document, recorded every interval and parsed 500 at a time for a phase page.
On the embedded ClickHouse and a SQLite ledger."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from gatecheck.config import load_project
from gatecheck.ledger import SqliteLedger
from gatecheck.ledger.decisions import waiver_event
from gatecheck.render.verdict import render
from gatecheck.results import KEPT_FAILING_GROUPS, VerdictState

from ..conftest import evaluate

GROUPS = 150


@pytest.fixture(scope="module")
def wide(warehouse: Path) -> str:
    """150 users over their error budget (0.6 to 0.749, the worst last), all in eu but the
    least bad, user-000, in us."""
    from gatecheck.sources.clickhouse.connection import ClickHouse, Target

    with ClickHouse() as clickhouse:
        connection = clickhouse.connect(Target.parse(f"chdb://{warehouse}", warehouse))
        connection.command("CREATE DATABASE IF NOT EXISTS wide")
        connection.command("DROP TABLE IF EXISTS wide.users")
        connection.command("CREATE TABLE wide.users (user_id String, region String, error_rate Float64) ENGINE = MergeTree ORDER BY user_id")
        connection.command(
            "INSERT INTO wide.users SELECT concat('user-', leftPad(toString(number), 3, '0')), "
            "if(number = 0, 'us', 'eu'), 0.6 + number / 1000 FROM numbers(150)"
        )
    return "wide"


def project(root: Path, warehouse: Path, wide: str):  # type: ignore[no-untyped-def]
    (root / "suites").mkdir(parents=True)
    (root / "gates").mkdir()
    (root / "thresholds.yaml").write_text("defaults: {}\n")
    (root / "gatecheck.yaml").write_text(yaml.safe_dump({
        "environments": {"staging": {"sources": {"warehouse": {"type": "clickhouse", "url": f"chdb://{warehouse}?database={wide}"}}}},
        "history": {"url": f"sqlite:///{root / 'h.db'}"},
    }))  # fmt: skip
    suite = {
        "name": "user_errors", "source": "warehouse", "window": {"length": "1h"},
        "query": "SELECT user_id, region, error_rate, 1 AS n FROM users", "groups": ["user_id", "region"],
        "evidence": {"column": "n", "min_total": 1},
        "expectations": [{"type": "expect_column_values_to_be_between", "column": "error_rate", "max_value": 0.5}],
    }  # fmt: skip
    (root / "suites" / "user_errors.yaml").write_text(yaml.safe_dump(suite))
    (root / "gates" / "users.yaml").write_text(
        yaml.safe_dump({"phase": "users", "environment": "staging", "checks": [{"suite": "user_errors"}]})
    )
    return load_project(root, environ={})


def test_every_group_is_judged_and_the_first_100_are_listed(tmp_path: Path, warehouse: Path, wide: str) -> None:
    loaded = project(tmp_path / "p", warehouse, wide)
    verdict = asyncio.run(evaluate(loaded, "users"))
    assert verdict.verdict is VerdictState.NO_GO
    (expectation,) = verdict.checks[0].expectations
    assert len(expectation.failing_groups) == KEPT_FAILING_GROUPS == 100
    assert expectation.more_failing_groups == GROUPS - 100 and expectation.failing_count == GROUPS
    # the worst first: the 100 listed are the 100 furthest past the maximum
    assert expectation.failing_groups[0].group == {"user_id": "user-149", "region": "eu"}
    assert [g.group["user_id"] for g in expectation.failing_groups][-1] == "user-050"
    assert "(+145 more)" in verdict.reasons[0]  # the reason counts them all
    assert "… and 140 more groups" in render(verdict, "text")
    assert len(render(verdict, "json")) < 60_000  # a 150-group document was ~35 KB; 10,000 groups: 2 MB


def test_a_waiver_is_judged_on_every_group_not_the_ones_listed(tmp_path: Path, warehouse: Path, wide: str) -> None:
    """A waiver of region=eu covers the 100 groups listed, but user-000 (in us, the least bad,
    beyond them) fails too: the check is not waived."""
    loaded = project(tmp_path / "p", warehouse, wide)
    with SqliteLedger(tmp_path / "p" / "h.db") as ledger:
        ledger.create_waiver(waiver_event(loaded, "users", "user_errors", {"region": "eu"}, "1h", "backfill", "ann"))
        verdict = asyncio.run(evaluate(loaded, "users", ledger=ledger))
        assert verdict.verdict is VerdictState.NO_GO and verdict.checks[0].waiver is None
        assert all(g.group["region"] == "eu" for g in verdict.checks[0].expectations[0].failing_groups)
        ledger.create_waiver(waiver_event(loaded, "users", "user_errors", {}, "1h", "all users", "ann"))
        verdict = asyncio.run(evaluate(loaded, "users", ledger=ledger))
        assert verdict.verdict is VerdictState.GO and verdict.checks[0].waiver is not None
