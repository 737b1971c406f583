"""Waivers, approvals and the audit trail against the real warehouse (scenarios built at the
current time) through the CLI a person uses: on SQLite, and one whole flow (a waiver created,
used, revoked) on each ledger backend. The audit contract each backend keeps is tested on all
three in test_ledger.py."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gatecheck.cli import app
from gatecheck.ledger import Ledger, SqliteLedger, open_ledger
from gatecheck.ledger.audit import AuditEvent

runner = CliRunner()
EDGE = "edge_type=start->first_segment"  # the group the unmatched-edges scenario breaks


BACKENDS = pytest.mark.parametrize("history_url", ["sqlite", "chdb", "postgresql"], indirect=True)


@pytest.fixture
def history_url(request: pytest.FixtureRequest, tmp_path: Path, warehouse: Path) -> str:
    """The ledger's URL: SQLite, or the backend a test is parametrized with (``BACKENDS``)."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    if backend == "postgresql":
        from .test_ledger import fresh_database

        return fresh_database(request, tmp_path)
    # chDB opens one path per process: the ledger lives on the warehouse's path.
    return f"chdb://{warehouse}?database=audit_{abs(hash(str(tmp_path))) % 10**8}"


@pytest.fixture
def gate(warehouse: Path, live_databases: dict[str, str], history_url: str, config_copy: Path):
    """`gatecheck <args>` on the shipped configuration, the warehouse of a scenario built now,
    and the ledger under test; returns (exit code, stdout, stderr)."""

    def call(scenario: str, *args: str) -> tuple[int, str, str]:
        env = {
            "GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={live_databases[scenario]}",
            "GATECHECK_HISTORY_URL": history_url,
        }
        result = runner.invoke(app, [*args, "--config", str(config_copy)], env=env)
        return result.exit_code, result.stdout, result.stderr

    return call


def run_json(gate, scenario: str) -> tuple[int, dict]:
    code, out, err = gate(scenario, "run", "--phase", "warehouse-release", "--format", "json")
    assert code in (0, 1, 3), err
    return code, json.loads(out)


def check(document: dict, suite: str) -> dict:
    return next(c for c in document["checks"] if c["suite"] == suite)


def trail(history_url: str, root: Path) -> Ledger:
    return open_ledger(history_url, root)


@BACKENDS
def test_a_waived_failure_is_go_with_the_waiver_shown_and_revoking_blocks_again(gate, history_url, tmp_path) -> None:
    code, document = run_json(gate, "unmatched-edges")
    assert (code, document["verdict"]) == (1, "no-go")
    code, out, err = gate(
        "unmatched-edges", "waive", "--phase", "warehouse-release", "--check", "unmatched_edges",
        "--group", EDGE, "--for", "24h", "--reason", "vendor stream backfilling until Friday", "--by", "alice",
    )  # fmt: skip
    assert code == 0, err
    assert " waiver-created    warehouse-release  W1  unmatched_edges (edge_type=start->first_segment) until " in out
    code, document = run_json(gate, "unmatched-edges")
    assert (code, document["verdict"]) == (0, "go")
    edges = check(document, "unmatched_edges")
    assert edges["outcome"] == "fail"  # still failed, with its evidence
    assert edges["expectations"][0]["failing_groups"][0]["group"] == {"edge_type": "start->first_segment"}
    assert (edges["waiver"]["id"], edges["waiver"]["by"]) == ("W1", "alice")
    assert edges["waiver"]["reason"] == "vendor stream backfilling until Friday"
    assert document["reasons"][0] == "5 of 6 required checks passed"
    assert document["reasons"][1].startswith("required check failed, waived: unmatched_edges — ")
    assert "[waiver W1 by alice until " in document["reasons"][1]

    code, out, err = gate("unmatched-edges", "unwaive", "W1", "--by", "alice", "--reason", "backfill done")
    assert code == 0, err
    code, document = run_json(gate, "unmatched-edges")
    assert (code, document["verdict"]) == (1, "no-go")
    assert check(document, "unmatched_edges")["waiver"] is None
    code, out, _ = gate("unmatched-edges", "audit", "--phase", "warehouse-release", "--format", "json")
    kinds = [(e["kind"], e["waiver"], e["by"]) for e in json.loads(out)]
    assert kinds == [
        ("waiver-created", "W1", "alice"),
        ("waiver-used", "W1", "gatecheck"),
        ("waiver-revoked", "W1", "alice"),
    ]


def test_a_recent_go_under_a_waiver_revoked_since_is_not_taken(
    gate, history_url, warehouse, live_databases, config_copy: Path
) -> None:
    """`max_age` (run --url, Flagger) takes the latest verdict only while what it rests on
    holds: a GO under waiver W1 is taken while W1 is in force; once W1 is revoked — a person
    saying the failure blocks again — the phase is evaluated now (NO-GO), not answered with
    the GO of a minute ago."""
    from gatecheck.config import load_project
    from gatecheck.service.core import Service

    from ..conftest import local_http, serving

    code, _, err = gate(
        "unmatched-edges", "waive", "--phase", "warehouse-release", "--check", "unmatched_edges",
        "--group", EDGE, "--for", "24h", "--reason", "vendor backfill", "--by", "alice",
    )  # fmt: skip
    assert code == 0, err
    code, document = run_json(gate, "unmatched-edges")  # recorded: GO under W1
    assert (code, document["verdict"]) == (0, "go")
    environ = {"GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={live_databases['unmatched-edges']}"}
    ledger = open_ledger(history_url, config_copy)
    service = Service(load_project(config_copy, environ=environ), ledger, [])  # schedules nothing
    url = "/api/v1/phases/warehouse-release/verdict"
    with serving(service) as (base, _):
        taken = local_http.get(f"{base}{url}", params={"max_age": "1h"}, timeout=60).json()
        assert (taken["verdict"], taken["as_of"]) == ("go", document["as_of"])
        assert len(ledger.history("warehouse-release")) == 1
        code, _, err = gate("unmatched-edges", "unwaive", "W1", "--by", "alice", "--reason", "backfill is stuck")
        assert code == 0, err
        now = local_http.get(f"{base}{url}", params={"max_age": "1h"}, timeout=60).json()
        assert now["verdict"] == "no-go" and now["as_of"] != document["as_of"]
        assert len(ledger.history("warehouse-release")) == 2  # evaluated now, recorded


@BACKENDS
def test_a_go_under_a_waiver_revoked_since_satisfies_no_requires(gate, history_url, config_copy: Path) -> None:
    """The latest GO of a phase passed under W1; W1 revoked since (the failure blocks again):
    a phase that requires it is not satisfied by that GO, and says why; before the
    revocation, and with a newer GO, it is."""
    import asyncio

    from gatecheck.evaluation.gate import _requirement

    def required() -> Any:
        ledger = open_ledger(history_url, config_copy)
        try:
            trail = ledger.audit(["warehouse-release"], None, ["waiver-revoked", "record-invalidated"])
            return asyncio.run(_requirement("warehouse-release", set(), ledger, datetime.now(UTC), trail=trail))
        finally:
            ledger.close()

    code, _, err = gate(
        "unmatched-edges", "waive", "--phase", "warehouse-release", "--check", "unmatched_edges",
        "--group", EDGE, "--for", "24h", "--reason", "vendor backfill", "--by", "alice",
    )  # fmt: skip
    assert code == 0, err
    assert run_json(gate, "unmatched-edges")[1]["verdict"] == "go"  # recorded, under W1
    assert required().satisfied
    code, _, err = gate("unmatched-edges", "unwaive", "W1", "--by", "alice", "--reason", "backfill is stuck")
    assert code == 0, err
    unmet = required()
    assert not unmet.satisfied
    assert unmet.reason.startswith("the latest GO of warehouse-release, as of ")
    assert ", no longer holds: its waiver W1 was revoked by alice at " in unmet.reason
    assert unmet.reason.endswith(" (backfill is stuck): it needs a newer GO")
    assert run_json(gate, "healthy")[1]["verdict"] == "go"  # a newer GO, no waiver
    assert required().satisfied


def test_a_waiver_covers_neither_another_group_nor_an_inconclusive_check(gate) -> None:
    code, _, err = gate(
        "unmatched-edges", "waive", "--phase", "warehouse-release", "--check", "unmatched_edges",
        "--group", "edge_type=first_segment->end", "--for", "1h", "--reason", "other edge", "--by", "bob",
    )  # fmt: skip
    assert code == 0, err
    code, document = run_json(gate, "unmatched-edges")
    assert (code, document["verdict"]) == (1, "no-go")  # start->first_segment is not covered
    assert check(document, "unmatched_edges")["waiver"] is None
    code, _, err = gate(
        "thin-traffic", "waive", "--phase", "warehouse-release", "--check", "unmatched_edges",
        "--for", "1h", "--reason", "the whole check", "--by", "bob",
    )  # fmt: skip
    assert code == 0, err
    code, document = run_json(gate, "thin-traffic")
    assert (code, document["verdict"]) == (3, "inconclusive")  # no evidence is not a pass
    assert check(document, "unmatched_edges")["outcome"] == "inconclusive"
    assert check(document, "unmatched_edges")["waiver"] is None


def test_an_expired_waiver_blocks_again_and_is_recorded_as_expired(gate, history_url, tmp_path) -> None:
    ledger = trail(history_url, tmp_path)
    try:
        now = datetime.now(UTC)
        ledger.create_waiver(
            AuditEvent(
                at=now - timedelta(hours=2), kind="waiver-created", phase="warehouse-release",
                check="unmatched_edges", until=now - timedelta(seconds=1), by="carol", reason="short",
            )
        )
    finally:
        ledger.close()
    code, document = run_json(gate, "unmatched-edges")
    assert (code, document["verdict"]) == (1, "no-go")
    code, out, _ = gate("unmatched-edges", "audit", "--format", "json")
    assert [(e["kind"], e["waiver"]) for e in json.loads(out)] == [("waiver-created", "W1"), ("waiver-expired", "W1")]
    run_json(gate, "unmatched-edges")  # expired once: not recorded again
    code, out, _ = gate("unmatched-edges", "audit", "--format", "json")
    assert len(json.loads(out)) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--check": "rollback_triggers"}, "--check: rollback_triggers is a rollback trigger of canary-10: a rollback is never waived"),
        ({"--group": "edge=x"}, "--group: edge: not a group of unmatched_edges (its groups: edge_type)"),
        ({"--for": "31d"}, "--for: '31d': a decision lasts more than 0s and at most 30d"),
        ({"--for": "0s"}, "--for: '0s': a decision lasts more than 0s"),
        ({"--reason": "  "}, "--reason: say why"),
        ({"--by": ""}, "--by: say who decides"),
        ({"--reason": "backfill\x00"}, "--reason: holds a control character ('\\x00'): write plain text"),
        ({"--by": "\x1b[2Kdave"}, "--by: holds a control character ('\\x1b')"),
        ({"--check": "nope"}, "--check: gate canary-10 has no check 'nope'"),
        ({"--check": "soak_criterias"}, "--check: gate canary-10 has no check 'soak_criterias' (did you mean 'soak_criteria'?)"),
        ({"--phase": "nope"}, "unknown phase 'nope'"),
    ],
)  # fmt: skip
def test_bad_waivers_are_one_line_and_record_nothing(gate, change: dict[str, str], message: str) -> None:
    """(A NUL in a reason reached PostgreSQL, which refuses it: the ledger's error, not the
    input's, and a 503 through the API.)"""
    options = {"--phase": "canary-10", "--check": "unmatched_edges", "--for": "24h", "--reason": "r", "--by": "dave"}
    options.update(change)
    code, _, err = gate("healthy", "waive", *[x for pair in options.items() for x in pair])
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err
    code, out, _ = gate("healthy", "audit", "--format", "json")
    assert json.loads(out) == []


def test_a_rollback_trigger_is_never_waived(gate, config_copy: Path) -> None:
    path = config_copy / "gates" / "warehouse-release.yaml"
    document = yaml.safe_load(path.read_text())
    document["rollback"] = [{"suite": "freshness_lag"}]
    document["checks"] = [c for c in document["checks"] if c["suite"] != "freshness_lag"]
    path.write_text(yaml.safe_dump(document))
    code, _, err = gate(
        "healthy", "waive", "--phase", "warehouse-release", "--check", "freshness_lag", "--for", "1h",
        "--reason", "r", "--by", "eve",
    )  # fmt: skip
    assert code == 2
    assert err.strip() == (
        "gatecheck: error: --check: freshness_lag is a rollback trigger of warehouse-release: a rollback is never waived"
    )


def test_approval_required_blocks_until_approved(gate, config_copy: Path) -> None:
    path = config_copy / "gates" / "warehouse-release.yaml"
    document = yaml.safe_load(path.read_text())
    document["approval"] = "required"
    path.write_text(yaml.safe_dump(document))
    code, document = run_json(gate, "healthy")
    assert (code, document["verdict"]) == (3, "inconclusive")
    assert document["reasons"] == [
        "approval required: no approval of warehouse-release in force "
        "(gatecheck approve --phase warehouse-release)"
    ]
    code, _, err = gate("healthy", "approve", "--phase", "warehouse-release", "--by", "frank", "--reason", "EM sign-off")
    assert code == 0, err
    code, document = run_json(gate, "healthy")
    assert (code, document["verdict"]) == (0, "go")
    assert document["approval"]["satisfied"] and document["approval"]["by"] == "frank"


def test_a_canarys_request_needs_an_approval_of_its_own_release(
    gate, config_copy: Path, warehouse: Path, live_databases: dict[str, str], history_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """An approval given for one canary passed the next: a controller's request for canary
    b found canary a's approval (or one naming no canary) in force and was GO without anyone
    seeing b. Through the engine, as the service answers Flagger: only an approval of the
    request's own release holds; a run naming none takes any, as before."""
    import asyncio

    from gatecheck.config import load_project
    from gatecheck.evaluation.engine import Engine
    from gatecheck.results import Requester

    path = config_copy / "gates" / "warehouse-release.yaml"
    document = yaml.safe_load(path.read_text())
    document["approval"] = "required"
    path.write_text(yaml.safe_dump(document))
    monkeypatch.setenv("GATECHECK_CLICKHOUSE_URL", f"chdb://{warehouse}?database={live_databases['healthy']}")
    monkeypatch.setenv("GATECHECK_HISTORY_URL", history_url)

    def for_canary(checksum: str) -> tuple[str, list[str]]:
        async def go() -> tuple[str, list[str]]:
            project = load_project(config_copy)
            async with Engine(project, ledger=open_ledger(history_url, config_copy)) as engine:
                asking = Requester(controller="flagger", name="normalize", namespace="athlete-ally", checksum=checksum)
                done = await engine.evaluate("warehouse-release", requested_by=asking, record=False)
            return done.verdict.verdict.value, done.verdict.reasons

        return asyncio.run(go())

    approve = ("approve", "--phase", "warehouse-release", "--by", "frank", "--reason", "EM sign-off")
    assert gate("healthy", *approve)[0] == 0  # naming no canary
    verdict, reasons = for_canary("canary-a")
    assert verdict == "inconclusive"
    assert re.fullmatch(
        r"approval required: no approval of warehouse-release for release canary-a in force: the one by frank "
        r"at \S+ is of no release, given without this canary in sight "
        r"\(gatecheck approve --phase warehouse-release --release canary-a\)",
        reasons[0],
    ), reasons
    code, _, err = gate("healthy", *approve, "--release", "canary-a")
    assert code == 0, err
    assert for_canary("canary-a")[0] == "go"
    verdict, reasons = for_canary("canary-b")
    assert verdict == "inconclusive" and "is of release canary-a" in reasons[0], reasons
    assert run_json(gate, "healthy")[1]["verdict"] == "go"  # a run naming no canary: any approval
    code, out, _ = gate("healthy", "audit")
    assert code == 0 and re.search(r"approved +warehouse-release +- +\(release=canary-a\)", out), out
    code, _, err = gate("healthy", *approve, "--release", "two\nlines")
    assert (code, err.strip()) == (2, "gatecheck: error: --release: 1 to 200 printable characters (a version, a checksum, a revision)")


def test_a_release_deployed_needs_a_new_approval(gate, config_copy: Path) -> None:
    """An approval given before a release was deployed was of the release before: after
    `gatecheck deployed` the gate waits for a new one; the deployment is on the trail for every
    phase of the environment, and a mistyped environment is one line and exit 2."""
    path = config_copy / "gates" / "warehouse-release.yaml"
    document = yaml.safe_load(path.read_text())
    document["approval"] = "required"
    environment = document["environment"]
    path.write_text(yaml.safe_dump(document))
    assert gate("healthy", "approve", "--phase", "warehouse-release", "--by", "frank", "--reason", "ok")[0] == 0
    assert run_json(gate, "healthy")[1]["verdict"] == "go"
    deploy = ("deployed", "--environment", environment, "--release", "1.5", "--by", "ci", "--reason", "pipeline 812")
    code, out, err = gate("healthy", *deploy)
    assert code == 0, err
    assert re.search(
        rf"deployed +warehouse-release +- +\(release=1\.5, environment={environment}\)  by ci: pipeline 812", out
    ), out
    code, document = run_json(gate, "healthy")
    assert (code, document["verdict"]) == (3, "inconclusive")
    assert re.fullmatch(
        rf"approval required: no approval of warehouse-release in force since release 1\.5 was deployed to "
        rf"{environment} by ci at \S+ \(pipeline 812\) \(gatecheck approve --phase warehouse-release\)",
        document["reasons"][0],
    ), document["reasons"]
    assert gate("healthy", "approve", "--phase", "warehouse-release", "--by", "frank", "--reason", "1.5 ok")[0] == 0
    assert run_json(gate, "healthy")[1]["verdict"] == "go"
    code, _, err = gate("healthy", "deployed", "--environment", environment[:-1], "--release", "1.6", "--by", "ci",
                        "--reason", "r")  # fmt: skip
    assert code == 2 and err.startswith(f"gatecheck: error: --environment: no environment {environment[:-1]!r}"), err


def test_assumptions_are_written_to_the_trail_with_who_ran_them(gate) -> None:
    code, out, err = gate(
        "healthy", "run", "--phase", "staging-soak", "--assume-approved", "staging-deploy", "--assume-soaked",
        "--by", "grace",
    )  # fmt: skip
    assert code == 3, out + err  # the bus is not there: inconclusive, and the assumptions are on record
    # (--no-record writes nothing anywhere, these audit events included: test_cli.py)
    code, out, _ = gate("healthy", "audit", "--format", "json")
    assert code == 0
    events = [(e["kind"], e["phase"], e["by"]) for e in json.loads(out)]
    assert events == [("assumed-approved", "staging-deploy", "grace"), ("assumed-soaked", "staging-soak", "grace")]


WRITER = """
import sys
from datetime import UTC, datetime
from gatecheck.ledger.audit import AuditEvent
from gatecheck.ledger import open_ledger
from pathlib import Path
from typing import Any
ledger = open_ledger(sys.argv[1], Path(sys.argv[2]))
i = 0
while True:
    i += 1
    ledger.append_audit([AuditEvent(at=datetime.now(UTC), kind="approved", phase="p", by="w", reason=f"event {i}")])
    if i == 20:
        print("ready", flush=True)  # 20 written, and it goes on writing: killed mid-write, at any speed
"""


def test_the_trail_survives_a_killed_writer_whole(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, url, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)
    writer.stdout.close()
    ledger = SqliteLedger(tmp_path / "h.db")
    events = ledger.audit()
    assert len(events) >= 20
    # Every event whole, in the order written, none missing before the kill.
    assert [e.reason for e in events] == [f"event {i}" for i in range(1, len(events) + 1)]
    import sqlite3

    connection = sqlite3.connect(tmp_path / "h.db")
    try:
        for statement in ("DELETE FROM audit", "UPDATE audit SET reason = 'changed'"):
            with pytest.raises(sqlite3.IntegrityError, match="the audit trail is append-only"):
                connection.execute(statement)
    finally:
        connection.close()


def test_a_waiver_is_visible_wherever_the_verdict_is_shown(gate, tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from gatecheck.render.status import PhaseStatus, render_status_update
    from gatecheck.render.verdict import render_junit, render_markdown, render_text
    from gatecheck.results import Verdict, VerdictState
    from gatecheck.service.core import Service
    from gatecheck.service.notify import message_text

    from ..service.test_notify import Scripted, _exposition

    gate(
        "unmatched-edges", "waive", "--phase", "warehouse-release", "--check", "unmatched_edges",
        "--group", EDGE, "--for", "24h", "--reason", "vendor backfill", "--by", "alice",
    )  # fmt: skip
    _, document = run_json(gate, "unmatched-edges")
    verdict = Verdict.model_validate(document)
    assert verdict.verdict is VerdictState.GO
    text = render_text(verdict)
    assert "fail (waived W1)" in text
    assert "  ⚠️ waived by W1 for edge_type=start->first_segment (alice, until " in text
    markdown = render_markdown(verdict)
    assert "❌ fail ⚠️ waived W1" in markdown
    assert "- ⚠️ `unmatched_edges` waived by W1 for edge_type=start->first_segment (alice" in markdown
    suite = ET.fromstring(render_junit(verdict).split("\n", 1)[1])
    case = next(c for c in suite.iter("testcase") if c.get("name") == "unmatched_edges")
    skipped = case.find("skipped")
    assert skipped is not None and skipped.get("message", "").startswith("waived by W1")
    assert "start->first_segment" in (skipped.text or "")  # the evidence stays with it
    assert suite.get("failures") == "0" and case.find("failure") is None
    update = render_status_update(verdict, [], datetime.now(UTC))
    issues = update.split("### ⚠️ Issues")[1].split("###")[0]
    blockers = update.split("### 🔴 Blockers")[1].split("###")[0]
    assert "- `unmatched_edges` failed, ⚠️ waived by W1" in issues
    assert blockers.strip() == "- none"
    assert PhaseStatus("warehouse-release", "staging", [], verdict).state == "go (waived W1)"
    assert "⚠️ waived by W1" in message_text(None, verdict, "http://x")
    root = tmp_path / "p"
    assert runner.invoke(app, ["init", str(root), "--from", "reference"]).exit_code == 0
    from gatecheck.config import load_project

    service = Service(
        load_project(root, environ={}), SqliteLedger(tmp_path / "m.db"), [], engine=Scripted([verdict])
    )
    import asyncio

    asyncio.run(service.evaluate_phase("warehouse-release"))
    exposition = _exposition(service)
    assert 'gatecheck_waivers_active{phase="warehouse-release"} 1.0' in exposition
    assert (
        'gatecheck_check_outcome{outcome="fail",phase="warehouse-release",role="required",'
        'suite="unmatched_edges",waived="true"} 1.0'
    ) in exposition
    # `gatecheck history` (the run above was recorded) and the chain page's card.
    code, out, err = gate("unmatched-edges", "history", "--phase", "warehouse-release")
    assert code == 0, err
    assert "go (waived W1)" in out.splitlines()[-1]
    code, out, err = gate("unmatched-edges", "history", "--phase", "warehouse-release", "--format", "json")
    assert json.loads(out)[-1]["waivers"] == ["W1"]
    from gatecheck.render.html import render_chain

    page = render_chain(service.chain_cards(verdict.as_of), verdict.as_of, None)
    card = page.split('data-phase="warehouse-release"')[1].split("</li>")[0]
    assert 'data-waived="W1"' in card and "GO only under waiver W1: unmatched_edges failed" in card


def test_an_approval_stands_in_for_requires_only_when_the_gate_says_so(gate, config_copy: Path) -> None:
    path = config_copy / "gates" / "warehouse-release.yaml"
    document = yaml.safe_load(path.read_text())
    document["requires"] = ["staging-predeploy"]
    path.write_text(yaml.safe_dump(document))
    code, _, err = gate("healthy", "approve", "--phase", "staging-predeploy", "--by", "heidi", "--reason", "checked by hand")
    assert code == 0, err
    code, result = run_json(gate, "healthy")
    assert (code, result["verdict"]) == (3, "inconclusive")  # an approval is not a recorded GO
    assert result["requires"][0]["reason"] == "no recorded GO of staging-predeploy"
    document["approval_satisfies_requires"] = True
    path.write_text(yaml.safe_dump(document))
    code, result = run_json(gate, "healthy")
    assert (code, result["verdict"]) == (0, "go")
    assert result["requires"][0]["satisfied"]
    assert result["requires"][0]["reason"].startswith("approved by heidi at ")


def test_an_approval_standing_in_for_a_go_falls_to_a_later_no_go_as_a_go_would(gate, config_copy: Path) -> None:
    """An approval of a required phase stood in for its GO even after that phase was judged
    NO-GO: the phase behind it failed, and the gate that required it was GO. A NO-GO or
    ROLLBACK judged after the approval now stands over it, as it would over a GO; a newer
    approval (a person deciding after the failure) stands again."""
    edges = yaml.safe_load((config_copy / "gates" / "warehouse-release.yaml").read_text())
    (config_copy / "gates" / "edge-check.yaml").write_text(yaml.safe_dump(
        {"phase": "edge-check", "environment": edges["environment"], "checks": [{"suite": "unmatched_edges"}]}
    ))  # fmt: skip
    path = config_copy / "gates" / "warehouse-release.yaml"
    document = yaml.safe_load(path.read_text())
    document.update(requires=["edge-check"], approval_satisfies_requires=True)
    path.write_text(yaml.safe_dump(document))
    code, _, err = gate("healthy", "approve", "--phase", "edge-check", "--by", "heidi", "--reason", "checked by hand")
    assert code == 0, err
    code, result = run_json(gate, "healthy")
    assert (code, result["verdict"]) == (0, "go"), result["reasons"]
    code, _, err = gate("unmatched-edges", "run", "--phase", "edge-check")
    assert code == 1, err  # NO-GO, recorded after the approval
    code, result = run_json(gate, "healthy")
    assert (code, result["verdict"]) == (3, "inconclusive"), result["reasons"]
    (requirement,) = result["requires"]
    assert not requirement["satisfied"]
    assert re.fullmatch(
        r"the latest decision of edge-check is NO-GO as of \S+, after its approval by heidi at \S+: "
        "it needs a newer GO or approval",
        requirement["reason"],
    ), requirement["reason"]
    code, _, err = gate("healthy", "approve", "--phase", "edge-check", "--by", "ivan", "--reason", "a fix is out")
    assert code == 0, err
    code, result = run_json(gate, "healthy")
    assert (code, result["verdict"]) == (0, "go"), result["reasons"]
    assert result["requires"][0]["reason"].startswith("approved by ivan at ")


def test_of_two_waivers_for_one_scope_the_later_stands() -> None:
    from gatecheck.ledger.audit import waivers_at

    now = datetime.now(UTC)

    def created(waiver: str, minutes_ago: int, hours: int) -> AuditEvent:
        return AuditEvent(
            at=now - timedelta(minutes=minutes_ago), kind="waiver-created", phase="p", check="c",
            waiver=waiver, until=now + timedelta(hours=hours), by="x", reason=waiver,
        )  # fmt: skip

    active = waivers_at([created("W1", 30, 10), created("W2", 10, 1)], "p", now)
    assert [w.id for w in active] == ["W2"]
    revoked = AuditEvent(at=now, kind="waiver-revoked", phase="p", check="c", waiver="W2", by="x", reason="r")
    assert waivers_at([created("W1", 30, 10), created("W2", 10, 1), revoked], "p", now) == []


def test_why_a_verdict_no_longer_holds_is_read_from_the_trail() -> None:
    """no_longer_holds, on plain records at a fixed moment: a GO under waiver W1, with a
    shadow check that failed and an approval, holds until the trail says otherwise — the
    record invalidated, W1 revoked, ended or replaced, the shadow check enforced, the approval
    run out; a decision about another record, phase or check changes nothing."""
    from gatecheck.ledger.audit import no_longer_holds
    from gatecheck.results import Verdict

    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    as_of = now - timedelta(minutes=10)
    window = {"start": (as_of - timedelta(hours=1)).isoformat(), "end": as_of.isoformat(), "length": "1h", "settle": "0s"}
    w1 = {"id": "W1", "check": "edges", "reason": "known", "by": "alice",
          "since": (now - timedelta(hours=2)).isoformat(), "until": (now + timedelta(hours=1)).isoformat()}  # fmt: skip
    verdict = Verdict.model_validate({
        "phase": "p", "environment": "e", "as_of": as_of.isoformat(), "verdict": "go", "reasons": [],
        "config_hash": "h", "gatecheck_version": "0",
        "checks": [
            {"suite": "edges", "source": "s", "role": "required", "outcome": "fail", "window": window, "waiver": w1},
            {"suite": "lag", "source": "s", "role": "advisory", "outcome": "fail", "window": window, "shadow": True},
        ],
        "approval": {"satisfied": True, "reason": "approved", "by": "bob", "until": (now + timedelta(hours=3)).isoformat()},
    })  # fmt: skip

    def event(kind: str, minutes_ago: float, **fields: Any) -> AuditEvent:
        return AuditEvent(at=now - timedelta(minutes=minutes_ago), kind=kind, phase=fields.pop("phase", "p"),
                          by=fields.pop("by", "carol"), reason=fields.pop("reason", "because"), **fields)  # fmt: skip

    created = event("waiver-created", 120, check="edges", waiver="W1", until=now + timedelta(hours=1))
    trail = [created]
    assert no_longer_holds(trail, "p", verdict, now) is None
    unrelated = [
        event("record-invalidated", 1, group={"record": (as_of - timedelta(minutes=5)).isoformat()}),  # another record
        event("record-invalidated", 1, phase="q", group={"record": as_of.isoformat()}),  # another phase
        event("check-enforced", 1, check="edges"),  # a check that is not a shadow in it
        event("waiver-revoked", 1, phase="q", waiver="W1"),  # another phase's W1
    ]
    assert no_longer_holds(trail + unrelated, "p", verdict, now) is None
    invalidated = event("record-invalidated", 1, group={"record": as_of.isoformat()}, by="dave", reason="half a load")
    assert no_longer_holds([*trail, invalidated], "p", verdict, now) == "invalidated by dave at 2026-03-02T11:59:00Z (half a load)"
    revoked = event("waiver-revoked", 2, waiver="W1", by="erin", reason="fixed")
    assert no_longer_holds([*trail, revoked], "p", verdict, now) == "its waiver W1 was revoked by erin at 2026-03-02T11:58:00Z (fixed)"
    assert no_longer_holds(trail, "p", verdict, now + timedelta(hours=1)) == "its waiver W1 ended at 2026-03-02T13:00:00Z"
    replaced = event("waiver-created", 1, check="edges", waiver="W2", until=now + timedelta(hours=5))
    assert no_longer_holds([*trail, replaced], "p", verdict, now) == "its waiver W1 is no longer in force (replaced by a later one)"
    enforced = event("check-enforced", 3, check="lag", by="frank")
    assert no_longer_holds([*trail, enforced], "p", verdict, now) == (
        "shadow check lag (fail in it) was enforced by frank at 2026-03-02T11:57:00Z"
    )
    later = now + timedelta(hours=3)
    assert no_longer_holds([event("waiver-created", 120, check="edges", waiver="W1", until=later + timedelta(hours=1))],
                           "p", verdict, later) == "the approval it needed ended at 2026-03-02T15:00:00Z"  # fmt: skip


def test_a_covered_soak_no_longer_holds_once_an_evaluation_it_counted_is_invalidated() -> None:
    """A GO whose 48h soak is covered since 50 h ago: an invalidation decided after the GO of
    a record inside that run ends it; one of a record before the run, of another phase, or
    decided before the GO (the soak already left it out) does not; an assumed soak is left
    alone."""
    from gatecheck.ledger.audit import no_longer_holds
    from gatecheck.results import Verdict

    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    as_of = now - timedelta(minutes=10)
    soak = {"duration": "48h", "max_gap": "30m", "covered": True, "coverage": "48h", "reason": "covered",
            "covered_since": (as_of - timedelta(hours=50)).isoformat()}  # fmt: skip
    verdict = Verdict.model_validate({
        "phase": "p", "environment": "e", "as_of": as_of.isoformat(), "verdict": "go", "reasons": [],
        "config_hash": "h", "gatecheck_version": "0", "checks": [], "soak": soak,
    })  # fmt: skip

    def invalidated(record_hours_before: float, minutes_ago: float, phase: str = "p") -> AuditEvent:
        record = (as_of - timedelta(hours=record_hours_before)).isoformat()
        return AuditEvent(at=now - timedelta(minutes=minutes_ago), kind="record-invalidated", phase=phase,
                          group={"record": record}, by="dave", reason="its bus was half down")  # fmt: skip

    assert no_longer_holds([invalidated(20, 5)], "p", verdict, now) == (
        "an evaluation its soak counted, as of 2026-03-01T15:50:00Z, was invalidated by dave at "
        "2026-03-02T11:55:00Z (its bus was half down)"
    )
    assert no_longer_holds([invalidated(60, 5)], "p", verdict, now) is None  # before the covered run
    assert no_longer_holds([invalidated(20, 5, "q")], "p", verdict, now) is None  # another phase
    assert no_longer_holds([invalidated(20, 30)], "p", verdict, now) is None  # decided before the GO
    assumed = verdict.model_copy(update={"soak": verdict.soak.model_copy(update={"assumed": True})})  # type: ignore[union-attr]
    assert no_longer_holds([invalidated(20, 5)], "p", assumed, now) is None
    # a soak resting on waiver W1 (evaluations that passed only under it): W1 revoked ends it
    waived = verdict.model_copy(update={"soak": verdict.soak.model_copy(update={"waivers": ["W1"]})})  # type: ignore[union-attr]
    revoked = AuditEvent(at=now - timedelta(minutes=2), kind="waiver-revoked", phase="p", waiver="W1",
                         by="erin", reason="it hid a real fault")  # fmt: skip
    assert no_longer_holds([revoked], "p", waived, now) == (
        "its soak rested on waiver W1, revoked by erin at 2026-03-02T11:58:00Z (it hid a real fault)"
    )
    assert no_longer_holds([revoked.model_copy(update={"phase": "q"})], "p", waived, now) is None
    assert no_longer_holds([revoked], "p", verdict, now) is None  # a soak that rested on no waiver


def test_a_bound_from_history_no_longer_holds_once_its_records_are_invalidated_or_a_new_pin_is_made() -> None:
    """A GO whose check was judged against its baseline from three earlier evaluations: one of
    them invalidated after the GO, or another baseline pinned for that check, ends it; an
    invalidation of a record it did not use, one decided before the GO, or a pin of another
    check does not. A learned band is not a pin: a pin leaves it alone."""
    from gatecheck.ledger.audit import no_longer_holds
    from gatecheck.results import Verdict

    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    as_of = now - timedelta(minutes=10)
    used = [as_of - timedelta(hours=h) for h in (1, 2, 3)]
    window = {"start": (as_of - timedelta(hours=1)).isoformat(), "end": as_of.isoformat(), "length": "1h", "settle": "0s"}

    def judged(kind: str) -> Verdict:
        bound = {"kind": kind, "column": "p95", "rule": "median of the last 3", "records": [u.isoformat() for u in used]}
        return Verdict.model_validate({
            "phase": "p", "environment": "e", "as_of": as_of.isoformat(), "verdict": "go", "reasons": [],
            "config_hash": "h", "gatecheck_version": "0",
            "checks": [{"suite": "latency", "source": "s", "role": "required", "outcome": "pass", "window": window,
                        "history": bound}],
        })  # fmt: skip

    def event(kind: str, minutes_ago: float, **fields: Any) -> AuditEvent:
        return AuditEvent(at=now - timedelta(minutes=minutes_ago), kind=kind, phase="p", by="dave",
                          reason="a load test ran then", **fields)  # fmt: skip

    baseline = judged("baseline")
    assert no_longer_holds([event("record-invalidated", 5, group={"record": used[1].isoformat()})], "p", baseline, now) == (
        "the baseline bound of latency rests on the evaluation as of 2026-03-02T09:50:00Z, invalidated by dave "
        "at 2026-03-02T11:55:00Z (a load test ran then)"
    )
    other = (as_of - timedelta(hours=5)).isoformat()
    assert no_longer_holds([event("record-invalidated", 5, group={"record": other})], "p", baseline, now) is None
    assert no_longer_holds([event("record-invalidated", 30, group={"record": used[1].isoformat()})], "p", baseline, now) is None
    pinned = event("baseline-pinned", 4, check="latency", group={"record": used[2].isoformat()})
    assert no_longer_holds([pinned], "p", baseline, now) == (
        "another baseline of latency was pinned by dave at 2026-03-02T11:56:00Z (a load test ran then)"
    )
    assert no_longer_holds([pinned.model_copy(update={"check": "edges"})], "p", baseline, now) is None
    assert no_longer_holds([pinned], "p", judged("learned"), now) is None
    assert no_longer_holds([pinned], "p", judged("pinned"), now) is not None
