"""The history ledger (SQLite and ClickHouse on chDB), soak continuity and requires."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from gatecheck.config import load_project
from gatecheck.evaluation.decide import soak_coverage
from gatecheck.evaluation.plan import window_for
from gatecheck.ledger import ClickHouseLedger, Ledger, Record, SqliteLedger
from gatecheck.ledger.postgresql import PostgresLedger
from gatecheck.results import CheckResult, Outcome, Requirement, Verdict, VerdictState, checks_passed

from ..conftest import AS_OF, evaluate, warehouse_env

HOUR = timedelta(hours=1)


def verdict(
    phase: str,
    as_of: datetime,
    outcome: Outcome = Outcome.PASS,
    state: VerdictState | None = None,
    digest: str = "",
) -> Verdict:
    check = CheckResult(
        suite="unmatched_edges", source="warehouse", role="required", outcome=outcome,
        window=window_for(as_of, HOUR, timedelta(minutes=10)),
    )  # fmt: skip
    if state is None:
        state = {Outcome.PASS: VerdictState.GO, Outcome.FAIL: VerdictState.NO_GO}.get(
            outcome, VerdictState.INCONCLUSIVE
        )
    return Verdict(
        phase=phase, environment="staging", as_of=as_of, verdict=state, reasons=["test"],
        checks=[check], config_hash="abc", gatecheck_version="test", gate_digest=digest,
    )  # fmt: skip


def at_their_time(ledger: Ledger, delay: timedelta = timedelta(seconds=5)) -> Ledger:
    """``ledger`` recording each verdict ``delay`` after its as_of, as the service does at the
    time (its clock is the test's: the fixed AS_OF never meets today's date)."""
    record = ledger.record

    def recorded_then(verdict: Verdict, duration_s: float) -> Record:
        ledger.clock = lambda: verdict.as_of + delay  # type: ignore[method-assign]
        return record(verdict, duration_s)

    ledger.record = recorded_then  # type: ignore[method-assign]
    return ledger


def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new database on the session's embedded PostgreSQL (one per test): its URL."""
    server = request.getfixturevalue("postgres_server")
    return str(server.url(f"ledger_{abs(hash(str(tmp_path))) % 10**8}"))


@pytest.fixture(params=["sqlite", "chdb", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path, warehouse: Path) -> Ledger:
    if request.param == "sqlite":
        opened: Ledger = SqliteLedger(tmp_path / "ledger.db")
    elif request.param == "postgresql":
        opened = PostgresLedger(fresh_database(request, tmp_path))
    else:
        # chDB opens one path per process: the ledger lives on the warehouse's path.
        database = f"ledger_{abs(hash(str(tmp_path))) % 10**8}"
        opened = ClickHouseLedger(f"chdb://{warehouse}?database={database}", tmp_path)
    yield at_their_time(opened)
    opened.close()


def test_prune_deletes_only_records_older_than_the_cutoff_and_never_the_kept_or_the_trail(ledger: Ledger) -> None:
    """Retention: records with as_of before the cutoff go, except those kept ((phase, as_of):
    a pinned baseline, a phase's latest decision); newer records, other phases' newer ones
    and the audit trail stay. Pruning again deletes nothing."""
    from gatecheck.ledger.audit import AuditEvent

    for hours in range(10):
        ledger.record(verdict("p", AS_OF - hours * HOUR), 0.1)
    ledger.record(verdict("q", AS_OF - 9 * HOUR, Outcome.FAIL), 0.1)
    ledger.record(verdict("q", AS_OF - 1 * HOUR), 0.1)
    ledger.append_audit([AuditEvent(at=AS_OF - 9 * HOUR, kind="approved", phase="p", by="a", reason="r")])
    keep = [("p", AS_OF - 8 * HOUR), ("q", AS_OF - 9 * HOUR)]
    assert ledger.prune(AS_OF - 5 * HOUR, keep) == 3  # p at -9, -7 and -6h (-8h kept, -5h is not before)
    left = [(r.phase, r.as_of) for r in ledger.history("p")] + [(r.phase, r.as_of) for r in ledger.history("q")]
    assert left == [
        ("p", AS_OF - 8 * HOUR), *[("p", AS_OF - h * HOUR) for h in range(5, -1, -1)],
        ("q", AS_OF - 9 * HOUR), ("q", AS_OF - HOUR),
    ]  # fmt: skip
    assert [e.kind for e in ledger.audit()] == ["approved"]
    assert ledger.prune(AS_OF - 5 * HOUR, keep) == 0


def _summary_from_the_verdict(record: Record) -> dict[str, object]:
    """What a history listing said of a record when it built the whole verdict (the
    reference the summaries read from stored documents must equal)."""
    from gatecheck._values import document_time

    whole = record.to_verdict()
    return {
        "phase": record.phase, "environment": record.environment, "as_of": document_time(record.as_of),
        "verdict": record.verdict.value, "checks_passed": record.checks_passed,
        "duration_s": round(record.duration_s, 3), "config_hash": record.config_hash,
        "gatecheck_version": record.gatecheck_version, "recorded_at": document_time(record.recorded_at),
        "not_passed": {c.suite: c.outcome.value for c in whole.checks if c.outcome is not Outcome.PASS},
        "waivers": sorted({c.waiver.id for c in whole.checks if c.waiver is not None}),
        "requested_by": whole.requested_by.model_dump() if whole.requested_by is not None else None,
    }  # fmt: skip


def test_summaries_list_what_the_whole_verdicts_say_without_building_them(ledger: Ledger) -> None:
    """``Ledger.summaries`` (the API's and the CLI's history listing) reads each stored
    document as it is, row by row, where the ledger is: every field equals what the whole
    verdict said (checks that did not pass and their outcomes, a waiver a GO held through, the
    controller that asked, with its times), in the same span, order and page."""
    from gatecheck.results import Requester, Waiver

    waived = verdict("p", AS_OF - 2 * HOUR, Outcome.FAIL, VerdictState.GO)
    waiver = Waiver(
        id="W7", check="unmatched_edges", reason="known", by="ana", since=AS_OF - 3 * HOUR, until=AS_OF + HOUR
    )
    waived = waived.model_copy(update={"checks": [waived.checks[0].model_copy(update={"waiver": waiver})]})
    asked = verdict("p", AS_OF - HOUR, Outcome.ERROR).model_copy(
        update={"requested_by": Requester(controller="argo-rollouts", name="ingest", revision="7", started=AS_OF - 2 * HOUR)}
    )
    for made in (verdict("p", AS_OF - 3 * HOUR), waived, asked, verdict("p", AS_OF, Outcome.FAIL), verdict("q", AS_OF)):
        ledger.record(made, 0.12345)
    for span in ({}, {"newest": 2}, {"since": AS_OF - 2 * HOUR, "until": AS_OF - HOUR}):
        summaries = ledger.summaries("p", **span)  # type: ignore[arg-type]
        expected = [_summary_from_the_verdict(r) for r in ledger.history("p", **span)]  # type: ignore[arg-type]
        assert summaries == expected, span
    listed = ledger.summaries("p")
    assert [s["not_passed"] for s in listed] == [{}, {"unmatched_edges": "fail"}, {"unmatched_edges": "error"}, {"unmatched_edges": "fail"}]
    assert [s["waivers"] for s in listed] == [[], ["W7"], [], []]
    assert listed[2]["requested_by"]["revision"] == "7" and listed[0]["requested_by"] is None
    assert ledger.summaries("nothing-recorded") == []


def test_gatecheck_prune_applies_the_retention_for_a_ledger_only_ci_writes(config_copy: Path, tmp_path: Path) -> None:
    """`gatecheck prune` (a cron job where no service runs): the records older than
    history.retention go, each phase's latest stays; without a retention it is one line,
    exit 2, and nothing is deleted."""
    import yaml
    from typer.testing import CliRunner

    from gatecheck.cli import app

    ledger = SqliteLedger(tmp_path / "l.db")
    now = datetime.now(UTC).replace(microsecond=0)
    for days in (90, 60, 2, 1):
        ledger.record(verdict("staging-deploy", now - timedelta(days=days)), 0.1)
    ledger.record(verdict("canary-10", now - timedelta(days=70)), 0.1)
    config = yaml.safe_load((config_copy / "gatecheck.yaml").read_text())
    config["history"] = {"url": f"sqlite:///{tmp_path / 'l.db'}"}
    (config_copy / "gatecheck.yaml").write_text(yaml.safe_dump(config))
    refused = CliRunner().invoke(app, ["prune", "--config", str(config_copy)])
    assert refused.exit_code == 2
    assert refused.stderr.strip() == "gatecheck: error: gatecheck.yaml: history.retention: not set, so nothing is ever pruned"
    assert len(ledger.history("staging-deploy")) == 4
    config["history"]["retention"] = "35d"
    (config_copy / "gatecheck.yaml").write_text(yaml.safe_dump(config))
    done = CliRunner().invoke(app, ["prune", "--config", str(config_copy)])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("pruned 2 records as of before ") and done.stdout.strip().endswith("(history.retention 35d)")
    assert [r.as_of for r in ledger.history("staging-deploy")] == [now - timedelta(days=2), now - timedelta(days=1)]
    assert len(ledger.history("canary-10")) == 1  # its latest, however old


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_prune_deletes_in_batches_to_the_last_one(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Months of records are deleted a batch per transaction (SQLite: the service's writes
    never wait on one long one; PostgreSQL: no DELETE outlasts the statement timeout), every
    batch until none is left: 7 records in batches of 2."""
    import gatecheck.ledger.postgresql as postgresql_ledger
    import gatecheck.ledger.sqlite as sqlite_ledger

    monkeypatch.setattr(sqlite_ledger, "PRUNE_BATCH", 2)
    monkeypatch.setattr(postgresql_ledger, "PRUNE_BATCH", 2)
    ledger: Ledger = (
        SqliteLedger(tmp_path / "l.db") if backend == "sqlite" else PostgresLedger(fresh_database(request, tmp_path))
    )
    for hours in range(8):
        ledger.record(verdict("p", AS_OF - hours * HOUR), 0.1)
    assert ledger.prune(AS_OF) == 7 and [r.as_of for r in ledger.history("p")] == [AS_OF]


def test_two_projects_on_one_postgresql_database_keep_apart_by_schema(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """docs/service.md: a ledger per project, on one database a schema each (search_path in the
    URL's options): one project's GO and waivers are not the other's."""
    import psycopg

    url = fresh_database(request, tmp_path)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE SCHEMA team_a")
        connection.execute("CREATE SCHEMA team_b")
    joined = "&" if "?" in url else "?"
    team_a = PostgresLedger(f"{url}{joined}options=-csearch_path%3Dteam_a")
    team_b = PostgresLedger(f"{url}{joined}options=-csearch_path%3Dteam_b")
    try:
        team_a.record(verdict("staging-soak", AS_OF), 0.1)
        assert team_b.last_decision("staging-soak") is None and team_b.history("staging-soak") == []
        assert [r.verdict for r in team_a.history("staging-soak")] == [VerdictState.GO]
    finally:
        team_a.close()
        team_b.close()
    with psycopg.connect(url) as connection:
        tables = connection.execute(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'gatecheck_evaluations'"
        ).fetchall()
    assert sorted(t[0] for t in tables) == ["team_a", "team_b"]


def test_records_round_trip_in_as_of_order(ledger: Ledger) -> None:
    ledger.record(verdict("p", AS_OF), 1.5)
    ledger.record(verdict("p", AS_OF - HOUR, Outcome.FAIL), 0.5)
    ledger.record(verdict("other", AS_OF), 0.1)
    records = ledger.history("p")
    assert [(r.as_of, r.verdict, r.checks_passed) for r in records] == [
        (AS_OF - HOUR, VerdictState.NO_GO, False),
        (AS_OF, VerdictState.GO, True),
    ]
    assert records[1].duration_s == 1.5 and records[1].to_verdict() == verdict("p", AS_OF)
    assert [r.as_of for r in ledger.history("p", since=AS_OF - timedelta(minutes=30))] == [AS_OF]
    assert [r.as_of for r in ledger.history("p", until=AS_OF - timedelta(minutes=30))] == [AS_OF - HOUR]
    ledger.check_writable()


def test_last_decision_skips_inconclusive(ledger: Ledger) -> None:
    ledger.record(verdict("p", AS_OF - 2 * HOUR), 0.1)
    ledger.record(verdict("p", AS_OF - HOUR, Outcome.ERROR), 0.1)
    decision = ledger.last_decision("p", until=AS_OF)
    assert decision is not None and decision.verdict is VerdictState.GO
    ledger.record(verdict("p", AS_OF, Outcome.FAIL), 0.1)
    decision = ledger.last_decision("p", until=AS_OF)
    assert decision is not None and decision.verdict is VerdictState.NO_GO
    assert ledger.last_decision("never") is None


def test_sqlite_uses_wal_and_a_reader_sees_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    writer, reader = SqliteLedger(path), SqliteLedger(path)
    writer.record(verdict("p", AS_OF), 0.1)
    assert len(reader.history("p")) == 1
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_killed_writer_leaves_only_complete_records(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    document = json.dumps(verdict("p", AS_OF).document())
    script = (
        "import sys, json; from datetime import timedelta\n"
        "from gatecheck.ledger import SqliteLedger\n"
        "from gatecheck.results import Verdict\n"
        f"v = Verdict.model_validate(json.loads({document!r}))\n"
        f"ledger = SqliteLedger(__import__('pathlib').Path({str(path)!r}))\n"
        "i = 0\n"
        "while True:\n"
        "    ledger.record(v.model_copy(update={'as_of': v.as_of + timedelta(seconds=i)}), 0.1)\n"
        "    i += 1\n"
        "    if i == 20: print('ready', flush=True)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    process.stdout.close()
    records = SqliteLedger(path).history("p")
    assert len(records) >= 20
    assert all(r.to_verdict().phase == "p" for r in records)  # every document parses whole


def points(*items: tuple[float, str]) -> list[tuple[datetime, bool, bool]]:
    """(hours before AS_OF, 'pass' | 'fail' | 'inconclusive')."""
    return [(AS_OF - timedelta(hours=h), kind == "pass", kind == "fail") for h, kind in items]


def every(start_h: float, end_h: float, step_min: int = 20, kind: str = "pass") -> list[tuple[float, str]]:
    out, h = [], start_h
    while h >= end_h - 1e-9:
        out.append((h, kind))
        h -= step_min / 60
    return out


def test_soak_covered_when_passing_evaluations_span_the_duration() -> None:
    status = soak_coverage(points(*every(48.2, 0)), AS_OF, timedelta(hours=48), timedelta(minutes=30))
    assert status.covered and status.coverage == timedelta(hours=48)
    assert "48h covered by" in status.reason


def test_invalidated_evaluations_are_no_evidence_for_a_soak() -> None:
    """Passing evaluations a person invalidated (`gatecheck invalidate`: a load test, a broken
    source) cover nothing: they leave a gap, as inconclusive ones do, and the reason counts
    them. Four in a row break a 30-minute max_gap; one alone (a 40-minute gap) not a 45-minute one."""
    history = points(*every(48.2, 0))
    four = sorted(at for at, _, _ in history if AS_OF - timedelta(hours=11.2) < at < AS_OF - timedelta(hours=9.8))
    assert len(four) == 4
    status = soak_coverage(history, AS_OF, timedelta(hours=48), timedelta(minutes=30), invalidated=set(four))
    assert not status.covered and status.covered_since == four[-1] + timedelta(minutes=20)
    assert "; 4 evaluations not counted: invalidated (gatecheck invalidate)" in status.reason
    assert "more than max_gap 30m" in status.reason
    one = soak_coverage(history, AS_OF, timedelta(hours=48), timedelta(minutes=45), invalidated={four[0]})
    assert one.covered and "1 evaluation not counted: invalidated" in one.reason
    # a failure invalidated (a broken source made it) restarts nothing: a gap like the others
    failing = [(at, False, True) if at == four[0] else (at, passed, failed) for at, passed, failed in history]
    assert soak_coverage(failing, AS_OF, timedelta(hours=48), timedelta(minutes=45)).last_failure == four[0]
    spared = soak_coverage(failing, AS_OF, timedelta(hours=48), timedelta(minutes=45), invalidated={four[0]})
    assert spared.covered and spared.last_failure is None


def test_evaluations_that_passed_under_a_waiver_revoked_since_fail_the_soak() -> None:
    """A soak resting on evaluations whose failures waiver W1 let pass holds while W1 does
    (the reason says how much of it); W1 revoked, the latest of them is a failure: the soak
    restarts after it, and the reason names the waiver. Another waiver revoked changes nothing."""
    history = [(at, passed, failed, "W1" if AS_OF - timedelta(hours=30) <= at <= AS_OF - timedelta(hours=20) else "")
               for at, passed, failed in points(*every(48.2, 0))]  # fmt: skip
    held = soak_coverage(history, AS_OF, timedelta(hours=48), timedelta(minutes=30))
    assert held.covered and held.waivers == ["W1"] and "under waiver W1" in held.reason
    assert soak_coverage(history, AS_OF, timedelta(hours=48), timedelta(minutes=30), revoked=["W2"]).covered
    revoked = soak_coverage(history, AS_OF, timedelta(hours=48), timedelta(minutes=30), revoked=["W1"])
    last_waived = max(at for at, _, _, ids in history if ids)
    assert not revoked.covered and revoked.last_failure == last_waived
    assert revoked.coverage == AS_OF - last_waived - timedelta(minutes=20)
    assert f"last failure at {last_waived:%Y-%m-%dT%H:%M:%SZ} (it passed under waiver W1, revoked since)" in revoked.reason


def test_a_gap_longer_than_max_gap_breaks_coverage() -> None:
    history = every(48.2, 31.5) + every(30.0, 0)  # 90 minutes without an evaluation
    status = soak_coverage(points(*history), AS_OF, timedelta(hours=48), timedelta(minutes=30))
    assert not status.covered
    assert status.coverage == timedelta(hours=30)
    assert status.reason.startswith("30h of 48h covered")
    assert "more than max_gap 30m" in status.reason


def test_a_failure_restarts_the_clock() -> None:
    history = [*every(48.2, 12.5), (12.2, "fail"), *every(12.0, 0)]
    status = soak_coverage(points(*history), AS_OF, timedelta(hours=48), timedelta(minutes=30))
    assert not status.covered and status.coverage == timedelta(hours=12)
    assert status.last_failure == AS_OF - timedelta(hours=12.2)
    assert "last failure at" in status.reason
    # Once the failure is older than the soak window, the soak is covered again.
    later = soak_coverage(points(*history), AS_OF, timedelta(hours=11), timedelta(minutes=30))
    assert later.covered


def test_inconclusive_evaluations_are_gaps_not_failures() -> None:
    short = every(48.2, 0)
    short[50] = (short[50][0], "inconclusive")  # one 20-minute blip: gap 40m > 30m
    assert not soak_coverage(points(*short), AS_OF, timedelta(hours=48), timedelta(minutes=30)).covered
    assert soak_coverage(points(*short), AS_OF, timedelta(hours=48), timedelta(minutes=45)).covered


def judged_by(
    items: list[tuple[float, str]], digest: str
) -> list[tuple[datetime, bool, bool, str, bool, str]]:
    """``points`` recorded at their time under the gate digest ``digest``."""
    return [(moment, passed, failed, "", True, digest) for moment, passed, failed in points(*items)]


def test_evaluations_judged_by_another_gate_definition_end_the_soak_as_a_failure_does() -> None:
    """A check added, a query or a threshold changed 2 hours ago: 46 of the 48 hours were
    watched by another gate, so only the last 2 count, and the reason says why."""
    before = every(48.2, 2.1)
    history = judged_by(before, "before") + judged_by(every(2.0, 0), "now")
    status = soak_coverage(history, AS_OF, timedelta(hours=48), timedelta(minutes=30), "now")
    assert not status.covered and status.coverage == timedelta(hours=2)
    assert status.changed_at == AS_OF - timedelta(hours=before[-1][0])  # the newest under "before"
    assert status.last_failure is None
    assert "the gate's checks, suites or thresholds changed after" in status.reason
    # Under one digest throughout, the same evaluations cover the soak.
    same = soak_coverage(
        judged_by(every(48.2, 0), "now"), AS_OF, timedelta(hours=48), timedelta(minutes=30), "now"
    )
    assert same.covered and same.changed_at is None
    # A threshold loosened for a while and put back: the loosened stretch does not count.
    back = judged_by(every(48.2, 20.1), "now") + judged_by(every(20.0, 10.1), "loose")
    back += judged_by(every(10.0, 0), "now")
    status = soak_coverage(back, AS_OF, timedelta(hours=48), timedelta(minutes=30), "now")
    assert not status.covered and status.coverage == timedelta(hours=10)
    # Once the change is older than the soak's duration, the soak is covered again.
    assert soak_coverage(history, AS_OF, timedelta(hours=2), timedelta(minutes=30), "now").covered


def test_records_from_before_gate_digests_count_as_the_current_gate() -> None:
    """A ledger written before digests were kept ('' in the column) does not restart every
    soak on upgrade."""
    history = judged_by(every(48.2, 2.1), "") + judged_by(every(2.0, 0), "now")
    status = soak_coverage(history, AS_OF, timedelta(hours=48), timedelta(minutes=30), "now")
    assert status.covered and status.changed_at is None


# ------------------------------------------------------------------ through the gate engine


@pytest.fixture
def soak_config(config_copy: Path) -> Path:
    gates = {
        "soak-test": {
            "phase": "soak-test", "environment": "staging", "requires": ["before"],
            "soak": {"duration": "6h", "max_gap": "30m"}, "checks": [{"suite": "unmatched_edges"}],
        },
        "before": {"phase": "before", "environment": "staging", "checks": [{"suite": "unattributed_sessions"}]},
    }  # fmt: skip
    for name, gate in gates.items():
        (config_copy / "gates" / f"{name}.yaml").write_text(yaml.safe_dump(gate))
    return config_copy


def judge(soak_config: Path, warehouse: Path, ledger: Ledger) -> Verdict:
    project = load_project(soak_config, environ=warehouse_env(warehouse, "healthy"))
    return asyncio.run(evaluate(project, "soak-test", AS_OF, ledger=ledger))


def fill(ledger: Ledger, phase: str, history: list[tuple[float, str]]) -> None:
    outcomes = {"pass": Outcome.PASS, "fail": Outcome.FAIL, "inconclusive": Outcome.INCONCLUSIVE}
    for hours, kind in history:
        ledger.record(verdict(phase, AS_OF - timedelta(hours=hours), outcomes[kind]), 0.1)


def test_gate_go_when_required_phase_approved_and_soak_covered(
    soak_config: Path, warehouse: Path, tmp_path: Path
) -> None:
    ledger = at_their_time(SqliteLedger(tmp_path / "l.db"))
    fill(ledger, "before", [(10, "pass")])
    fill(ledger, "soak-test", every(6.2, 0.1))
    result = judge(soak_config, warehouse, ledger)
    assert result.verdict is VerdictState.GO, result.reasons
    assert result.requires[0].satisfied and "GO of before recorded" in result.requires[0].reason
    assert result.soak is not None and result.soak.covered and not result.soak.assumed


def test_gate_inconclusive_with_coverage_when_a_gap_breaks_the_soak(
    soak_config: Path, warehouse: Path, tmp_path: Path
) -> None:
    ledger = at_their_time(SqliteLedger(tmp_path / "l.db"))
    fill(ledger, "before", [(10, "pass")])
    fill(ledger, "soak-test", every(6.2, 3.5) + every(2.0, 0.1))
    result = judge(soak_config, warehouse, ledger)
    assert result.verdict is VerdictState.INCONCLUSIVE
    assert result.soak is not None and result.soak.coverage == timedelta(hours=2)
    assert any("2h of 6h covered" in r for r in result.reasons)


def test_gate_not_go_after_a_failure_until_the_window_is_clean(
    soak_config: Path, warehouse: Path, tmp_path: Path
) -> None:
    ledger = at_their_time(SqliteLedger(tmp_path / "l.db"))
    fill(ledger, "before", [(10, "pass")])
    fill(ledger, "soak-test", [*every(6.2, 4.5), (4.2, "fail"), *every(4.0, 0.1)])
    result = judge(soak_config, warehouse, ledger)
    assert result.verdict is VerdictState.INCONCLUSIVE
    assert result.soak is not None and "last failure at" in result.soak.reason


def test_a_release_deployed_restarts_the_soak_and_ends_the_soaked_gos_judged_before_it(
    soak_config: Path, warehouse: Path, tmp_path: Path
) -> None:
    """Six hours of passes covered the soak — of the release before: 1.5 was deployed an hour
    ago, and the soak counted 1.4's hours for it (the canary promotion of 1.5 went ahead after
    one hour of soaking). After `gatecheck deployed`, the soak counts from the first evaluation
    after it, and its GO judged before no longer holds for a later phase; the required phase's
    GO (no soak: a pre-deploy check, judged before the deployment on purpose) stands."""
    from gatecheck.ledger.audit import AuditEvent

    ledger = at_their_time(SqliteLedger(tmp_path / "l.db"))
    fill(ledger, "before", [(10, "pass")])
    fill(ledger, "soak-test", every(6.2, 0.1))
    soaked = judge(soak_config, warehouse, ledger)
    assert soaked.verdict is VerdictState.GO and soaked.soak is not None and soaked.soak.covered
    deployed = AS_OF - timedelta(hours=1)
    ledger.append_audit([
        AuditEvent(
            at=deployed, kind="deployed", phase=phase, group={"release": "1.5", "environment": "staging"},
            by="ci", reason="pipeline 812",
        )
        for phase in ("before", "soak-test")
    ])  # fmt: skip
    result = judge(soak_config, warehouse, ledger)
    assert result.verdict is VerdictState.INCONCLUSIVE
    said = "release 1.5 was deployed to staging by ci at 2026-11-22T05:00:00Z (pipeline 812)"
    assert result.soak is not None and not result.soak.covered
    assert result.soak.coverage == timedelta(minutes=52)  # back to the first pass after it (every 20m)
    assert result.soak.reason.endswith(f"; {said}: the soak counts from the first evaluation after it")
    assert result.requires[0].satisfied  # before's GO: no soak, judged before the deployment on purpose
    from gatecheck.ledger.audit import withdrawn_text

    # that GO, had it been judged before the deployment, no longer holds for a later phase
    earlier_go = soaked.model_copy(update={"as_of": deployed - timedelta(minutes=10)})
    trail = ledger.audit(["soak-test", "before"])
    assert withdrawn_text(trail, "soak-test", earlier_go, AS_OF) == f"its soak watched the release before {said}"
    assert withdrawn_text(trail, "soak-test", soaked, AS_OF) is None  # judged after it
    before_go = ledger.history("before")[-1].to_verdict()
    assert before_go.as_of < deployed and withdrawn_text(trail, "before", before_go, AS_OF) is None


def test_a_soak_counts_only_evaluations_judged_by_the_gate_as_it_is_now(
    soak_config: Path, warehouse: Path, tmp_path: Path
) -> None:
    """Six hours of passes recorded under today's gate earn the soak; loosen the threshold its
    check uses and those hours no longer count; a description or a comment changes nothing."""
    project = load_project(soak_config, environ=warehouse_env(warehouse, "healthy"))
    digest = project.gate_digest("soak-test")
    ledger = at_their_time(SqliteLedger(tmp_path / "l.db"))
    fill(ledger, "before", [(10, "pass")])
    for hours, _ in every(6.2, 0.1):
        ledger.record(verdict("soak-test", AS_OF - timedelta(hours=hours), digest=digest), 0.1)
    result = judge(soak_config, warehouse, ledger)
    assert result.verdict is VerdictState.GO, result.reasons
    assert result.gate_digest == digest

    gate_file = soak_config / "gates" / "soak-test.yaml"
    # a comment, a description and a key written at its default value change nothing
    gate_file.write_text("# reviewed\ndescription: six hours on staging\nprobes: false\n" + gate_file.read_text())
    suite_file = soak_config / "suites" / "unmatched_edges.yaml"
    described = suite_file.read_text().replace(
        "    column: unmatched_rate\n", "    column: unmatched_rate\n    description: share of edges left unpaired\n"
    )
    assert described != suite_file.read_text()
    suite_file.write_text(described.replace("description: Lifecycle edges", "description: The lifecycle edges"))
    thresholds = soak_config / "thresholds.yaml"
    thresholds.write_text(thresholds.read_text() + "# a comment\n")
    assert (
        load_project(soak_config, environ=warehouse_env(warehouse, "healthy")).gate_digest("soak-test")
        == digest
    )
    assert judge(soak_config, warehouse, ledger).verdict is VerdictState.GO

    text = thresholds.read_text()
    assert "unmatched_edge_rate_max: 0.005" in text
    thresholds.write_text(text.replace("unmatched_edge_rate_max: 0.005", "unmatched_edge_rate_max: 0.05"))
    loosened = judge(soak_config, warehouse, ledger)
    assert loosened.gate_digest != digest
    assert loosened.verdict is VerdictState.INCONCLUSIVE
    assert loosened.soak is not None and not loosened.soak.covered
    assert loosened.soak.changed_at == AS_OF - timedelta(hours=every(6.2, 0.1)[-1][0])
    assert any("the gate's checks, suites or thresholds changed after" in r for r in loosened.reasons)


def test_a_go_required_from_an_earlier_definition_of_its_gate_counts_and_says_so(
    soak_config: Path, warehouse: Path, tmp_path: Path
) -> None:
    """`requires before`: its GO counts whatever its gate was then (a policy, not a silent
    change), but when the gate changed since, the requirement's reason says so."""
    ledger = at_their_time(SqliteLedger(tmp_path / "l.db"))
    ledger.record(verdict("before", AS_OF - 10 * HOUR, digest="an-earlier-gate"), 0.1)
    result = judge(soak_config, warehouse, ledger)
    (requirement,) = result.requires
    assert requirement.satisfied
    assert requirement.reason.endswith(
        "judged by another definition of its gate (its checks, suites or thresholds changed since)"
    )
    current = load_project(soak_config, environ=warehouse_env(warehouse, "healthy")).gate_digest("before")
    ledger.record(verdict("before", AS_OF - 9 * HOUR, digest=current), 0.1)
    (requirement,) = judge(soak_config, warehouse, ledger).requires
    assert requirement.satisfied and requirement.reason == "GO of before recorded as of 2026-11-21T21:00:00Z"


def test_requires_not_met_names_the_phase(soak_config: Path, warehouse: Path, tmp_path: Path) -> None:
    ledger = at_their_time(SqliteLedger(tmp_path / "l.db"))
    fill(ledger, "soak-test", every(6.2, 0.1))
    missing = judge(soak_config, warehouse, ledger)
    assert missing.verdict is VerdictState.INCONCLUSIVE
    assert any("requires before: no recorded GO of before" in r for r in missing.reasons)
    fill(ledger, "before", [(10, "pass"), (5, "fail")])  # a NO-GO newer than the GO
    revoked = judge(soak_config, warehouse, ledger)
    assert revoked.verdict is VerdictState.INCONCLUSIVE
    assert "latest decision of before is NO-GO" in revoked.requires[0].reason


def test_an_unmet_requires_says_where_the_chain_it_waits_on_stops(
    soak_config: Path, warehouse: Path, tmp_path: Path
) -> None:
    """With no decision of the required phase recorded, the reason names its latest record and
    the first phase up the chain that waits on something of its own, read from the ledger."""
    ledger = at_their_time(SqliteLedger(tmp_path / "l.db"))
    fill(ledger, "soak-test", every(6.2, 0.1))

    def undecided(phase: str, hours: float, reasons: list[str], waits_on: str | None = None) -> None:
        unmet = Requirement(phase=waits_on or "", satisfied=False, reason=f"no recorded GO of {waits_on}")
        requires = [unmet] if waits_on else []
        update = {"verdict": VerdictState.INCONCLUSIVE, "reasons": reasons, "requires": requires}
        ledger.record(verdict(phase, AS_OF - timedelta(hours=hours)).model_copy(update=update), 0.1)

    undecided("before", 3, ["unattributed_sessions: 12 sessions (min 50)"])
    own = judge(soak_config, warehouse, ledger).requires[0].reason
    assert own == (
        "no recorded GO of before (only INCONCLUSIVE): unattributed_sessions: 12 sessions (min 50)"
    )
    undecided("first", 2.5, ["soak not covered: 0s of 48h covered"])
    undecided("before", 2, ["requires first: no recorded GO of first"], waits_on="first")
    up = judge(soak_config, warehouse, ledger).requires[0].reason
    assert up == ("no recorded GO of before, waiting on first: soak not covered: 0s of 48h covered")
    fill(ledger, "first", [(1.5, "pass")])  # a GO of first since: before's record is where it stops
    stops = judge(soak_config, warehouse, ledger).requires[0].reason
    assert stops == "no recorded GO of before (only INCONCLUSIVE): requires first: no recorded GO of first"
    # first's newest record is one this version cannot read: the reason says what it can, and
    # the evaluation goes on
    undecided("first", 1, ["soak not covered: 0s of 48h covered"])
    undecided("before", 0.5, ["requires first: no recorded GO of first"], waits_on="first")
    with sqlite3.connect(tmp_path / "l.db") as raw:
        raw.execute(
            'UPDATE evaluations SET document = \'{"phase": "first"}\' WHERE id = '
            "(SELECT max(id) FROM evaluations WHERE phase = 'first')"
        )
    unreadable = judge(soak_config, warehouse, ledger)
    assert unreadable.verdict is VerdictState.INCONCLUSIVE
    assert unreadable.requires[0].reason == (
        "no recorded GO of before (only INCONCLUSIVE): requires first: no recorded GO of first"
    )


def required_above(gates: Path, phase: str, below: str) -> None:
    """A new gate ``phase`` (no requires of its own), which gate ``below`` now requires."""
    gate = {"phase": phase, "environment": "staging", "checks": [{"suite": "unattributed_sessions"}]}
    (gates / f"{phase}.yaml").write_text(yaml.safe_dump(gate))
    dependent = yaml.safe_load((gates / f"{below}.yaml").read_text())
    (gates / f"{below}.yaml").write_text(yaml.safe_dump({**dependent, "requires": [phase]}))


def test_a_required_go_whose_own_requirement_no_longer_holds_satisfies_no_requires(
    soak_config: Path, warehouse: Path, tmp_path: Path
) -> None:
    """first → before → soak-test. A NO-GO of first recorded after before's GO makes before
    INCONCLUSIVE when judged again (its requires unmet: not a decision), so before's latest
    decision is still that older GO: it must not carry soak-test past first's NO-GO. It holds
    again once first has a newer GO."""
    gates = soak_config / "gates"
    required_above(gates, "first", "before")
    ledger = at_their_time(SqliteLedger(tmp_path / "l.db"))
    fill(ledger, "first", [(10, "pass")])
    met = Requirement(phase="first", satisfied=True, reason="GO of first recorded as of 2026-11-21T20:00:00Z")
    ledger.record(verdict("before", AS_OF - 9 * HOUR).model_copy(update={"requires": [met]}), 0.1)
    fill(ledger, "soak-test", every(6.2, 0.1))
    assert judge(soak_config, warehouse, ledger).verdict is VerdictState.GO
    fill(ledger, "first", [(5, "fail")])  # first's NO-GO; before, judged again, would wait on it
    unmet = judge(soak_config, warehouse, ledger)
    assert unmet.verdict is VerdictState.INCONCLUSIVE
    assert unmet.requires[0].reason == (
        "the latest GO of before, as of 2026-11-21T21:00:00Z, no longer holds: its requirement of first "
        "no longer holds (the latest decision of first is NO-GO as of 2026-11-22T01:00:00Z: it needs a "
        "newer GO): it needs a newer GO"
    )
    # the service's look judges it alike (requirement_at), each link once with a memo
    from gatecheck.evaluation.gate import Look, requirement_at

    project = load_project(soak_config, environ=warehouse_env(warehouse, "healthy"))
    memo = Look()
    for shared in (None, memo, memo):
        looked = asyncio.run(requirement_at(project, "soak-test", "before", ledger, AS_OF, None, memo=shared))
        assert looked == unmet.requires[0]
    assert set(memo.judged) == {("soak-test", "before"), ("before", "first")}
    # a ledger that fails up the chain is no answer: not a GO, and the service's look (which
    # tries again later) is told it could not read, not that the GO ended
    from gatecheck.errors import LedgerError

    last_decision = ledger.last_decision

    def failing(phase: str, *args, **kwargs):
        if phase == "first":
            raise LedgerError("database is locked")
        return last_decision(phase, *args, **kwargs)

    ledger.last_decision = failing  # type: ignore[method-assign]
    unread = judge(soak_config, warehouse, ledger)
    assert unread.verdict is VerdictState.INCONCLUSIVE
    assert unread.requires[0].reason == "cannot read the history ledger: database is locked"
    with pytest.raises(LedgerError, match=r"^cannot read the history ledger: database is locked$"):
        asyncio.run(requirement_at(project, "soak-test", "before", ledger, AS_OF, None))
    ledger.last_decision = last_decision  # type: ignore[method-assign]
    fill(ledger, "first", [(4, "pass")])  # a newer GO of first: before's GO rests on it again
    again = judge(soak_config, warehouse, ledger)
    assert again.verdict is VerdictState.GO, again.reasons
    assert again.requires[0].reason == "GO of before recorded as of 2026-11-21T21:00:00Z"
    # further up: zero → first → before → soak-test; the reason names where the chain breaks,
    # and the way up to it, not a reason inside a reason for each phase between
    required_above(gates, "zero", "first")
    fill(ledger, "zero", [(11, "pass"), (3, "fail")])
    on_zero = Requirement(phase="zero", satisfied=True, reason="GO of zero recorded as of 2026-11-21T19:00:00Z")
    ledger.record(verdict("first", AS_OF - 3.5 * HOUR).model_copy(update={"requires": [on_zero]}), 0.1)
    broken = judge(soak_config, warehouse, ledger)
    assert broken.verdict is VerdictState.INCONCLUSIVE
    assert broken.requires[0].reason == (
        "the latest GO of before, as of 2026-11-21T21:00:00Z, no longer holds: up its chain (before → "
        "first → zero), the latest decision of zero is NO-GO as of 2026-11-22T03:00:00Z: it needs a newer GO"
    )


def test_an_approval_standing_in_for_a_go_falls_to_a_no_go_up_its_chain_judged_after_it(
    soak_config: Path, warehouse: Path, tmp_path: Path
) -> None:
    """first → before → soak-test, whose gate lets an approval stand in for a required GO.
    An approval of before stands "as a GO would": a NO-GO of first judged after the approval
    stands over it; one judged before it (the person approving saw it) does not; a GO of
    before judged after the approval is judged as a GO, up its chain."""
    from gatecheck.ledger.audit import AuditEvent

    gates = soak_config / "gates"
    required_above(gates, "first", "before")
    soak_test = yaml.safe_load((gates / "soak-test.yaml").read_text())
    (gates / "soak-test.yaml").write_text(yaml.safe_dump({**soak_test, "approval_satisfies_requires": True}))
    ledger = at_their_time(SqliteLedger(tmp_path / "l.db"))
    fill(ledger, "first", [(10, "pass"), (9, "fail")])  # first's NO-GO before the approval ...
    approved = AuditEvent(
        at=AS_OF - 8 * HOUR, kind="approved", phase="before", until=AS_OF + HOUR, by="heidi",
        reason="checked by hand", config_hash="abc",
    )  # fmt: skip
    ledger.append_audit([approved])
    fill(ledger, "soak-test", every(6.2, 0.1))
    seen = judge(soak_config, warehouse, ledger)  # ... which heidi saw: her approval stands
    assert seen.verdict is VerdictState.GO, seen.reasons
    assert seen.requires[0].reason == "approved by heidi at 2026-11-21T22:00:00Z: checked by hand"
    fill(ledger, "first", [(7, "pass"), (5, "fail")])  # a NO-GO of first judged after it
    fell = judge(soak_config, warehouse, ledger)
    assert fell.verdict is VerdictState.INCONCLUSIVE
    assert fell.requires[0].reason == (
        "the approval of before by heidi at 2026-11-21T22:00:00Z no longer stands: its requirement of "
        "first no longer holds (the latest decision of first is NO-GO as of 2026-11-22T01:00:00Z: it needs "
        "a newer GO), judged after it: it needs a newer GO or approval"
    )
    # a phase below soak-test, whose GO rested on that approval, is told where the chain breaks
    from gatecheck.evaluation.gate import requirement_at

    (gates / "after.yaml").write_text(yaml.safe_dump(
        {"phase": "after", "environment": "staging", "requires": ["soak-test"],
         "checks": [{"suite": "unattributed_sessions"}]}
    ))  # fmt: skip
    on_approval = Requirement(phase="before", satisfied=True, reason="approved by heidi at 2026-11-21T22:00:00Z")
    latest = verdict("soak-test", AS_OF - timedelta(minutes=3))  # after its passing history
    ledger.record(latest.model_copy(update={"requires": [on_approval]}), 0.1)
    project = load_project(soak_config, environ=warehouse_env(warehouse, "healthy"))
    below = asyncio.run(requirement_at(project, "after", "soak-test", ledger, AS_OF, None))
    assert below.reason == (
        "the latest GO of soak-test, as of 2026-11-22T05:57:00Z, no longer holds: up its chain (soak-test → "
        "before → first), the latest decision of first is NO-GO as of 2026-11-22T01:00:00Z: it needs a newer GO"
    )
    fill(ledger, "first", [(4.5, "pass")])
    assert judge(soak_config, warehouse, ledger).verdict is VerdictState.GO  # first's newer GO
    # a GO of before after the approval, resting on first's GO, then first's NO-GO: as a GO
    met = Requirement(phase="first", satisfied=True, reason="GO of first recorded as of 2026-11-22T01:30:00Z")
    ledger.record(verdict("before", AS_OF - 4 * HOUR).model_copy(update={"requires": [met]}), 0.1)
    fill(ledger, "first", [(3, "fail")])
    as_go = judge(soak_config, warehouse, ledger)
    assert as_go.verdict is VerdictState.INCONCLUSIVE
    assert as_go.requires[0].reason.startswith(
        "the latest GO of before, as of 2026-11-22T02:00:00Z, no longer holds: its requirement of first "
        "no longer holds (the latest decision of first is NO-GO as of 2026-11-22T03:00:00Z"
    ), as_go.requires[0].reason


def test_checks_passed_means_required_checks_only() -> None:
    assert checks_passed(verdict("p", AS_OF))
    assert not checks_passed(verdict("p", AS_OF, Outcome.ERROR))


def test_newest_records_come_from_the_query_oldest_first(ledger: Ledger) -> None:
    for hours, outcome in [(4, Outcome.PASS), (3, Outcome.FAIL), (2, Outcome.ERROR), (1, Outcome.PASS)]:
        ledger.record(verdict("p", AS_OF - timedelta(hours=hours), outcome), 0.1)
    assert [r.as_of for r in ledger.history("p", newest=2)] == [AS_OF - 2 * HOUR, AS_OF - HOUR]
    latest = ledger.latest("p", until=AS_OF - timedelta(minutes=150))
    assert latest is not None and latest.as_of == AS_OF - 3 * HOUR
    decision = ledger.last_decision("p", until=AS_OF - timedelta(minutes=90))
    assert decision is not None and decision.verdict is VerdictState.NO_GO  # the error is skipped


def test_a_timeline_lists_verdicts_in_order_and_nothing_where_nothing_was_recorded(ledger: Ledger) -> None:
    """What the status page draws and where an SLO's phase began: an empty span is an empty
    list on every backend (ClickHouse answered a span without rows with no columns, and the
    timeline raised KeyError)."""
    assert ledger.timeline("p", AS_OF - 3 * HOUR, AS_OF) == []
    ledger.record(verdict("p", AS_OF - 2 * HOUR, Outcome.FAIL), 0.1)
    ledger.record(verdict("p", AS_OF - HOUR), 0.1)
    assert ledger.timeline("p", AS_OF - 3 * HOUR, AS_OF) == [
        (AS_OF - 2 * HOUR, VerdictState.NO_GO),
        (AS_OF - HOUR, VerdictState.GO),
    ]
    assert ledger.timeline("other", AS_OF - 3 * HOUR, AS_OF) == []


def test_soak_points_come_from_stored_facts_without_parsing_documents(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Soak coverage reads (as_of, passed, failed) from the ledger's columns: one query, no
    document re-validated (a 7-day soak at 5 minutes is 2,016 records per evaluation)."""
    ledger.record(verdict("p", AS_OF - 3 * HOUR), 0.1)
    ledger.record(verdict("p", AS_OF - 2 * HOUR, Outcome.FAIL, digest="d1"), 0.1)
    ledger.record(verdict("p", AS_OF - HOUR, Outcome.ERROR, digest="d1"), 0.1)
    ledger.record(verdict("p", AS_OF, digest="d2"), 0.1)
    ledger.record(verdict("other", AS_OF), 0.1)

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("a stored document was parsed")

    monkeypatch.setattr(Verdict, "model_validate", no_parsing)
    points = ledger.soak_points("p", AS_OF - 2 * HOUR, AS_OF)
    assert points == [
        (AS_OF - 2 * HOUR, False, True, "", True, "d1"),
        (AS_OF - HOUR, False, False, "", True, "d1"),  # inconclusive: neither evidence nor failure
        (AS_OF, True, False, "", True, "d2"),  # the gate digest each was judged by
    ]


def test_a_ledger_from_before_the_stored_facts_is_migrated(tmp_path: Path) -> None:
    """An SQLite ledger written by an older version has no checks_failed column: it is added on
    open, and its old records are judged from their documents."""
    import json
    import sqlite3

    path = tmp_path / "old.db"
    old = verdict("p", AS_OF - HOUR, Outcome.FAIL)
    with sqlite3.connect(path) as connection:
        connection.executescript(
            "CREATE TABLE evaluations (id INTEGER PRIMARY KEY AUTOINCREMENT, phase TEXT NOT NULL,"
            " environment TEXT NOT NULL, as_of_ms INTEGER NOT NULL, verdict TEXT NOT NULL,"
            " checks_passed INTEGER NOT NULL, config_hash TEXT NOT NULL, duration_s REAL NOT NULL,"
            " gatecheck_version TEXT NOT NULL, recorded_at_ms INTEGER NOT NULL, document TEXT NOT NULL);"
        )
        connection.execute(
            "INSERT INTO evaluations (phase, environment, as_of_ms, verdict, checks_passed, config_hash,"
            " duration_s, gatecheck_version, recorded_at_ms, document) VALUES (?,?,?,?,?,?,?,?,?,?)",
            ("p", "staging", int(old.as_of.timestamp() * 1000), "no-go", 0, "abc", 0.1, "old",
             int(old.as_of.timestamp() * 1000), json.dumps(old.document())),
        )  # fmt: skip
    ledger = at_their_time(SqliteLedger(path))
    ledger.record(verdict("p", AS_OF), 0.1)
    assert ledger.soak_points("p", AS_OF - 2 * HOUR, AS_OF) == [
        (AS_OF - HOUR, False, True, "", True, ""),
        (AS_OF, True, False, "", True, ""),
    ]
    assert [r.checks_failed for r in ledger.history("p")] == [True, False]


def test_a_clickhouse_ledger_from_before_the_stored_facts_is_migrated(
    warehouse: Path, tmp_path: Path
) -> None:
    """The same on chDB: the column is added (NULL for old records, judged from the document)."""
    import json

    import clickhouse_connect

    database = f"old_ledger_{abs(hash(str(tmp_path))) % 10**8}"
    client = clickhouse_connect.get_client(dsn=f"chdb://{warehouse.resolve()}")
    client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    client.command(
        f"CREATE TABLE `{database}`.gatecheck_evaluations (phase LowCardinality(String),"
        " environment LowCardinality(String), as_of DateTime64(3, 'UTC'), verdict LowCardinality(String),"
        " checks_passed UInt8, config_hash String, duration_s Float64, gatecheck_version String,"
        " recorded_at DateTime64(3, 'UTC'), document String) ENGINE = MergeTree ORDER BY (phase, as_of)"
    )
    old = verdict("p", AS_OF - HOUR, Outcome.FAIL)
    stamp = int(old.as_of.timestamp() * 1000)
    client.command(
        f"INSERT INTO `{database}`.gatecheck_evaluations SELECT 'p', 'staging',"
        " toDateTime64({ms:Int64} / 1000, 3, 'UTC'), 'no-go', 0, 'abc', 0.1, 'old',"
        " toDateTime64({ms:Int64} / 1000, 3, 'UTC'), {doc:String}",
        parameters={"ms": stamp, "doc": json.dumps(old.document())},
    )
    client.close()
    ledger = at_their_time(ClickHouseLedger(f"chdb://{warehouse}?database={database}", tmp_path))
    try:
        ledger.record(verdict("p", AS_OF), 0.1)
        assert ledger.soak_points("p", AS_OF - 2 * HOUR, AS_OF) == [
            (AS_OF - HOUR, False, True, "", True, ""),
            (AS_OF, True, False, "", True, ""),
        ]
        assert [r.checks_failed for r in ledger.history("p")] == [True, False]
    finally:
        ledger.close()


def test_waived_failures_count_for_soak_and_the_reason_says_so(ledger: Ledger) -> None:
    """An evaluation whose only failure was waived counts as passing for soak coverage, and
    the soak says how much of it rests on which waiver; an unwaived failure still restarts it."""
    from gatecheck.results import Waiver

    waiver = Waiver(
        id="W7",
        check="unmatched_edges",
        reason="backfill",
        by="alice",
        since=AS_OF - 10 * HOUR,
        until=AS_OF + HOUR,
    )
    for hours in range(49, -1, -1):
        recorded = verdict("p", AS_OF - hours * HOUR, Outcome.FAIL if hours < 4 else Outcome.PASS)
        if hours < 4:  # the last four evaluations failed under the waiver: GO, as the gate decides
            check = recorded.checks[0].model_copy(update={"waiver": waiver})
            recorded = recorded.model_copy(update={"checks": [check], "verdict": VerdictState.GO})
        ledger.record(recorded, 0.1)
    points = ledger.soak_points("p", AS_OF - 49 * HOUR, AS_OF)
    assert [p[3] for p in points[-5:]] == ["", "W7", "W7", "W7", "W7"]
    assert all(p[1] and not p[2] for p in points)  # passed, not failed
    status = soak_coverage(points, AS_OF, timedelta(hours=48), timedelta(hours=2))
    assert status.covered and status.waivers == ["W7"] and status.under_waiver == 3 * HOUR
    assert status.reason.endswith(", 3h of it under waiver W7")
    # The same failure without a waiver restarts the clock.
    ledger.record(verdict("p", AS_OF + HOUR, Outcome.FAIL), 0.1)
    later = soak_coverage(
        ledger.soak_points("p", AS_OF - 48 * HOUR, AS_OF + HOUR),
        AS_OF + HOUR,
        timedelta(hours=48),
        timedelta(hours=2),
    )
    assert not later.covered and later.last_failure == AS_OF + HOUR


def test_backdated_records_never_earn_a_soak(soak_config: Path, warehouse: Path, tmp_path: Path) -> None:
    """Evaluations of the past (`run --as-of now-5h … now-20m`) recorded in a few seconds of
    wall time are shown as backdated and never count: the soak is not covered."""
    backdated = SqliteLedger(tmp_path / "l.db")
    backdated.clock = lambda: AS_OF - 10 * HOUR  # type: ignore[method-assign]
    backdated.record(verdict("before", AS_OF - 10 * HOUR), 0.1)
    backdated.clock = lambda: AS_OF  # type: ignore[method-assign]  # the soak's records all written at AS_OF
    for hours in every(6.2, 0.5):
        backdated.record(verdict("soak-test", AS_OF - timedelta(hours=hours[0])), 0.1)
    result = judge(soak_config, warehouse, backdated)
    assert result.verdict is VerdictState.INCONCLUSIVE
    assert result.soak is not None and not result.soak.covered
    assert result.soak.backdated == len(every(6.0, 0.5))  # those inside the 6h span
    assert "not counted: recorded more than 10m after their as_of (backdated)" in result.soak.reason
    # The same records written at their time earn it.
    contemporary = at_their_time(SqliteLedger(tmp_path / "c.db"))
    contemporary.record(verdict("before", AS_OF - 10 * HOUR), 0.1)
    for hours in every(6.2, 0.1):
        contemporary.record(verdict("soak-test", AS_OF - timedelta(hours=hours[0])), 0.1)
    assert judge(soak_config, warehouse, contemporary).verdict is VerdictState.GO


def test_a_soak_resting_on_a_waiver_revoked_since_is_not_covered(
    soak_config: Path, warehouse: Path, tmp_path: Path
) -> None:
    """soak-test's 6h soak: evaluations 2–4 h ago passed only under waiver W9. GO while W9
    stands; W9 revoked (the trail), the evaluation judges those as failures: the soak
    restarts after the latest of them, not covered, and the reason names the waiver."""
    from gatecheck.ledger.audit import AuditEvent
    from gatecheck.results import Waiver

    ledger = at_their_time(SqliteLedger(tmp_path / "l.db"))
    fill(ledger, "before", [(10, "pass")])
    waiver = Waiver(id="W9", check="unmatched_edges", reason="backfill", by="alice",
                    since=AS_OF - 5 * HOUR, until=AS_OF - HOUR)  # fmt: skip
    for hours, _ in every(6.2, 0.1):
        waived = 2 <= hours <= 4
        recorded = verdict("soak-test", AS_OF - timedelta(hours=hours), Outcome.FAIL if waived else Outcome.PASS)
        if waived:  # failed under W9: GO, as the gate decided then
            check = recorded.checks[0].model_copy(update={"waiver": waiver})
            recorded = recorded.model_copy(update={"checks": [check], "verdict": VerdictState.GO})
        ledger.record(recorded, 0.1)
    held = judge(soak_config, warehouse, ledger)
    assert held.verdict is VerdictState.GO and held.soak is not None and held.soak.waivers == ["W9"]
    ledger.append_audit([AuditEvent(at=AS_OF - HOUR / 2, kind="waiver-revoked", phase="soak-test", waiver="W9",
                                    by="bob", reason="it hid a real fault")])  # fmt: skip
    revoked = judge(soak_config, warehouse, ledger)
    assert revoked.verdict is VerdictState.INCONCLUSIVE and revoked.soak is not None and not revoked.soak.covered
    assert "(it passed under waiver W9, revoked since)" in revoked.soak.reason


def test_a_required_go_whose_soak_counted_an_evaluation_invalidated_since_satisfies_no_requires(
    soak_config: Path, warehouse: Path, tmp_path: Path
) -> None:
    """soak-test's GO (its 6h soak covered) is recorded; a person then invalidates one of the
    evaluations that soak counted: a phase requiring soak-test no longer takes that GO, and
    says why. Invalidating one before the covered run changes nothing."""
    from gatecheck.ledger.audit import AuditEvent

    (soak_config / "gates" / "after.yaml").write_text(yaml.safe_dump(
        {"phase": "after", "environment": "staging", "requires": ["soak-test"], "checks": [{"suite": "unattributed_sessions"}]}
    ))  # fmt: skip
    ledger = at_their_time(SqliteLedger(tmp_path / "l.db"))
    fill(ledger, "before", [(10, "pass")])
    fill(ledger, "soak-test", [(9, "pass"), *every(6.2, 0.1)])
    go = judge(soak_config, warehouse, ledger)
    assert go.verdict is VerdictState.GO
    ledger.record(go, 0.1)
    project = load_project(soak_config, environ=warehouse_env(warehouse, "healthy"))

    def requirement(record_hours_before: float) -> Requirement:
        record = (AS_OF - timedelta(hours=record_hours_before)).isoformat()
        ledger.append_audit([AuditEvent(at=AS_OF + timedelta(minutes=1), kind="record-invalidated", phase="soak-test",
                                        group={"record": record}, by="bob", reason="a load test ran")])  # fmt: skip
        after = asyncio.run(evaluate(project, "after", AS_OF + timedelta(minutes=2), ledger=ledger))
        return after.requires[0]

    before_the_run = requirement(9)
    assert before_the_run.satisfied, before_the_run.reason
    counted = every(6.2, 0.1)[3][0]  # one the covered run counted
    taken = requirement(counted)
    assert not taken.satisfied
    assert taken.reason.startswith("the latest GO of soak-test, as of ")
    assert "no longer holds: an evaluation its soak counted, as of " in taken.reason
    assert taken.reason.endswith(f"was invalidated by bob at {(AS_OF + timedelta(minutes=1)):%Y-%m-%dT%H:%M:%SZ} "
                                 "(a load test ran): it needs a newer GO")  # fmt: skip


def test_a_record_dated_ahead_of_its_recording_is_never_the_latest(ledger: Ledger) -> None:
    ledger.record(verdict("p", AS_OF, Outcome.FAIL), 0.1)
    ledger.clock = lambda: AS_OF + timedelta(seconds=10)  # type: ignore[method-assign]
    type(ledger).record(
        ledger, verdict("p", AS_OF + 365 * 24 * HOUR), 0.1
    )  # recorded then, as of a year ahead
    latest = ledger.latest("p")
    assert latest is not None and latest.as_of == AS_OF and latest.verdict is VerdictState.NO_GO
    decision = ledger.last_decision("p")
    assert decision is not None and decision.verdict is VerdictState.NO_GO
    assert [r.as_of for r in ledger.history("p")] == [AS_OF, AS_OF + 365 * 24 * HOUR]  # still listed


def test_an_as_of_ahead_of_now_is_refused(warehouse: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gatecheck.cli import app

    from ..conftest import PROJECT

    history = tmp_path / "h.db"
    result = CliRunner().invoke(
        app, ["run", "--phase", "warehouse-release", "--config", str(PROJECT), "--as-of", "2099-01-01T00:00:00Z"],
        env={**warehouse_env(warehouse, "healthy"), "GATECHECK_HISTORY_URL": f"sqlite:///{history}"},
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "lies ahead of now" in result.output and "Traceback" not in result.output
    assert not history.exists() or SqliteLedger(history).history("warehouse-release") == []


def test_a_chain_reads_each_phases_latest_verdict(ledger: Ledger) -> None:
    """Ledger.chain: each gate of a chain with its latest recorded verdict, in the chain's
    order; a phase never recorded has none (status and the chain page start from this)."""
    from types import SimpleNamespace

    ledger.record(verdict("a", AS_OF - HOUR, Outcome.FAIL), 0.1)
    ledger.record(verdict("a", AS_OF), 0.1)  # the newer one counts
    ledger.record(verdict("c", AS_OF, Outcome.FAIL), 0.1)
    gates = [SimpleNamespace(phase=p) for p in ("a", "b", "c")]
    chain = ledger.chain(gates)
    assert [(g.phase, v.verdict if v else None) for g, v in chain] == [
        ("a", VerdictState.GO), ("b", None), ("c", VerdictState.NO_GO)
    ]  # fmt: skip
    assert ledger.latest_verdict("b") is None


# ---------------------------------------------------------------- PostgreSQL: a ledger replicas share


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return fresh_database(request, tmp_path)


def test_postgresql_a_record_waiting_on_another_sessions_lock_is_an_error_not_a_hang(pg_url: str) -> None:
    """A session holding the evaluations table (a migration's lock, a VACUUM FULL) held
    `gatecheck run`'s record — a CI step — until the CI system's own timeout. Past the
    ledger's statement timeout it is a LedgerError saying what, and nothing was recorded."""
    import psycopg

    from gatecheck.errors import LedgerError

    ledger = PostgresLedger(pg_url, statement_timeout=1)
    with psycopg.connect(pg_url) as holder:
        holder.execute("LOCK TABLE gatecheck_evaluations IN ACCESS EXCLUSIVE MODE")
        # (the server's own words: the statement timeout ended the wait, not anything else)
        with pytest.raises(LedgerError, match=r"canceling statement due to statement timeout"):
            ledger.record(verdict("p", AS_OF), 1.0)
    assert ledger.history("p") == []  # the lock gone: nothing half written


def test_postgresql_audit_trail_is_append_only_in_the_database(pg_url: str) -> None:
    """Whoever connects — the embedded server's superuser here — cannot change or remove an
    audit event: the triggers refuse UPDATE, DELETE and TRUNCATE."""
    import psycopg

    from gatecheck.ledger.audit import AuditEvent

    ledger = PostgresLedger(pg_url)
    event = AuditEvent(at=AS_OF, kind="approved", phase="p", by="alice", reason="ok", config_hash="h")
    ledger.append_audit([event])
    for statement in (
        "UPDATE gatecheck_audit SET reason = 'changed'",
        "DELETE FROM gatecheck_audit",
        "TRUNCATE gatecheck_audit",
    ):
        with psycopg.connect(pg_url) as connection, pytest.raises(psycopg.Error, match="append-only"):
            connection.execute(statement)
    assert [e.reason for e in ledger.audit()] == ["ok"]


#: The service role's grants, as docs/service.md gives them.
SERVICE_GRANTS = (
    "GRANT SELECT ON gatecheck_schema TO {role}",
    "GRANT SELECT, INSERT ON gatecheck_evaluations, gatecheck_audit TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON gatecheck_lease TO {role}",
    "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}",
)


def test_postgresql_service_role_with_the_documented_grants_runs_and_cannot_rewrite(pg_url: str) -> None:
    """The owner creates the tables; a role with only the documented grants (no CREATE) opens
    the ledger, records, creates waivers, takes the lease — and cannot change the trail or
    the records, nor migrate (a newer gatecheck needs the owner once: said in one line)."""
    from datetime import timedelta

    import psycopg

    from gatecheck.ledger.audit import AuditEvent

    PostgresLedger(pg_url)  # the owner migrates
    role = f"gatecheck_service_{abs(hash(pg_url)) % 10**6}"
    with psycopg.connect(pg_url, autocommit=True) as connection:
        connection.execute(f"DROP ROLE IF EXISTS {role}")
        connection.execute(f"CREATE ROLE {role} LOGIN")
        for grant in SERVICE_GRANTS:
            connection.execute(grant.format(role=role))
    service_url = pg_url.replace("postgres:@", f"{role}:@", 1)
    assert service_url != pg_url
    ledger = PostgresLedger(service_url)
    ledger.record(verdict("p", AS_OF), 1.0)
    waiver = AuditEvent(
        at=AS_OF, kind="waiver-created", phase="p", check="s", by="alice", reason="INC-1", until=AS_OF + HOUR
    )
    assert ledger.create_waiver(waiver).waiver == "W1"
    assert ledger.acquire_lease("replica-a", timedelta(seconds=30)) is not None
    assert [r.verdict for r in ledger.history("p")] == [VerdictState.GO]
    for statement in ("UPDATE gatecheck_evaluations SET verdict = 'no-go'", "DELETE FROM gatecheck_audit"):
        with psycopg.connect(service_url) as connection, pytest.raises(psycopg.Error):
            connection.execute(statement)
    from gatecheck.errors import LedgerError

    # retention needs one grant more (docs/service.md): without it, pruning is refused whole
    with pytest.raises(LedgerError, match=r"cannot prune \(permission denied for table gatecheck_evaluations"):
        ledger.prune(AS_OF + HOUR)
    with psycopg.connect(pg_url, autocommit=True) as connection:
        connection.execute(f"GRANT DELETE ON gatecheck_evaluations TO {role}")
    assert ledger.prune(AS_OF + HOUR) == 1 and ledger.history("p") == []
    with psycopg.connect(service_url) as connection, pytest.raises(psycopg.Error):
        connection.execute("DELETE FROM gatecheck_audit")  # the trail's triggers all the same
    with psycopg.connect(pg_url, autocommit=True) as connection:  # the schema one step behind
        connection.execute(
            "DELETE FROM gatecheck_schema WHERE version = (SELECT max(version) FROM gatecheck_schema)"
        )
    with pytest.raises(LedgerError, match=r"cannot migrate the schema \(permission denied"):
        PostgresLedger(service_url)


def test_postgresql_ledger_url_shown_never_holds_the_password(pg_url: str) -> None:
    """A ledger's ``url`` is what callers print (the service's start line, errors): with a
    password in the URL, the ledger connects with it and shows it hidden."""
    secret = "s3cret-ledger-pw"
    with_password = pg_url.replace("postgres:@", f"postgres:{secret}@", 1)
    assert secret in with_password
    ledger = PostgresLedger(with_password)
    ledger.record(verdict("shown", AS_OF), 1.0)
    assert [r.verdict for r in ledger.history("shown")] == [VerdictState.GO]
    assert secret not in ledger.url and "postgres:***@" in ledger.url


def test_postgresql_waiver_ids_are_unique_under_concurrent_creation_on_replicas(pg_url: str) -> None:
    """Two replicas (two ledgers on one database), ten threads each, creating waivers at once:
    twenty different ids (a count + 1 in separate transactions could give two the same)."""
    from concurrent.futures import ThreadPoolExecutor

    from gatecheck.ledger.audit import AuditEvent

    replicas = [PostgresLedger(pg_url), PostgresLedger(pg_url)]
    event = AuditEvent(
        at=AS_OF, kind="waiver-created", phase="p", check="c", until=AS_OF + HOUR, by="alice", reason="r",
        config_hash="h",
    )  # fmt: skip
    with ThreadPoolExecutor(max_workers=20) as pool:
        ids = list(pool.map(lambda i: replicas[i % 2].create_waiver(event).waiver, range(20)))
    assert len(set(ids)) == 20 and all(i.startswith("W") for i in ids)
    assert sorted(e.waiver for e in replicas[0].audit(kinds=["waiver-created"])) == sorted(ids)


def test_postgresql_schema_migrates_once_in_order_and_refuses_a_newer_one(pg_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import psycopg

    from gatecheck.errors import LedgerError
    from gatecheck.ledger import postgresql

    with ThreadPoolExecutor(max_workers=4) as pool:  # replicas starting together
        versions = list(pool.map(lambda _: PostgresLedger(pg_url).migrate(), range(4)))
    assert versions == [len(postgresql.MIGRATIONS)] * 4
    with psycopg.connect(pg_url) as connection:
        steps = [r[0] for r in connection.execute("SELECT version FROM gatecheck_schema ORDER BY version")]
        assert steps == list(range(1, len(postgresql.MIGRATIONS) + 1))  # each step once
        connection.execute(
            "INSERT INTO gatecheck_schema (version) VALUES (%s)", [len(postgresql.MIGRATIONS) + 1]
        )
    with pytest.raises(LedgerError, match="newer than this gatecheck knows"):
        PostgresLedger(pg_url)


def test_postgresql_unreachable_is_one_line_without_the_password() -> None:
    from gatecheck.demo.bus import free_port
    from gatecheck.errors import LedgerError
    from gatecheck.ledger import open_ledger

    url = f"postgresql://gate:s3cr3t@127.0.0.1:{free_port()}/history"
    with pytest.raises(LedgerError) as caught:
        open_ledger(url, Path("."))
    message = str(caught.value)
    assert "s3cr3t" not in message and "\n" not in message
    assert (
        message.startswith("history ledger postgresql://gate:***@127.0.0.1:") and ": cannot connect (" in message
    )  # (it said "cannot migrate the schema": nothing was asked yet)


def test_postgresql_lease_has_one_holder_and_fences_a_stale_one(pg_url: str) -> None:
    """Replica A holds the scheduler's lease; B cannot take it until A's holding ends; then B
    holds the next epoch and A's late record is refused — nothing of it written — while B's
    is recorded with its epoch."""
    import psycopg

    from gatecheck.errors import LedgerError

    a, b = PostgresLedger(pg_url), PostgresLedger(pg_url)
    held = a.acquire_lease("replica-a", timedelta(seconds=30))
    assert held is not None and held.epoch == 1
    assert b.acquire_lease("replica-b", timedelta(seconds=30)) is None  # A holds it
    renewed = a.acquire_lease("replica-a", timedelta(seconds=30))
    assert renewed is not None and renewed.epoch == 1  # a renewal keeps the epoch
    a.record(verdict("p", AS_OF), 1.0, lease=held)  # fenced, and A still holds it: written
    a.release_lease(held)  # (or A's holding runs out: the database's clock decides)
    taken = b.acquire_lease("replica-b", timedelta(seconds=30))
    assert taken is not None and taken.epoch == 2 and b.lease_holder() == taken
    with pytest.raises(LedgerError, match="replica-a no longer holds the scheduler lease of epoch 1"):
        a.record(verdict("p", AS_OF + HOUR), 1.0, lease=held)
    b.record(verdict("p", AS_OF + 2 * HOUR), 1.0, lease=taken)
    assert [r.as_of for r in a.history("p")] == [AS_OF, AS_OF + 2 * HOUR]  # the stale one: not there
    with psycopg.connect(pg_url) as connection:
        epochs = [
            r[0] for r in connection.execute("SELECT epoch FROM gatecheck_evaluations ORDER BY as_of_ms")
        ]
    assert epochs == [1, 2]


def test_postgresql_lease_runs_out_by_the_databases_clock(pg_url: str) -> None:
    a, b = PostgresLedger(pg_url), PostgresLedger(pg_url)
    held = a.acquire_lease("replica-a", timedelta(seconds=1))
    assert held is not None
    time.sleep(1.2)  # longer than the holding: however slow the machine, it has run out
    assert a.lease_holder() is None
    taken = b.acquire_lease("replica-b", timedelta(seconds=30))
    assert taken is not None and taken.epoch == held.epoch + 1


def test_postgresql_lease_goes_to_exactly_one_of_many_at_once(pg_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    ledgers = [PostgresLedger(pg_url) for _ in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        held = list(
            pool.map(lambda i: ledgers[i].acquire_lease(f"replica-{i}", timedelta(seconds=30)), range(6))
        )
    winners = [h for h in held if h is not None]
    assert len(winners) == 1 and winners[0].epoch == 1


def test_a_clickhouse_record_sent_twice_is_stored_once(tmp_path: Path, warehouse: Path) -> None:
    """The evaluation's identity is the insert's deduplication token: a retry of the same
    record (its answer lost on the way back) leaves one row; another evaluation is its own."""
    database = f"dedup_{abs(hash(str(tmp_path))) % 10**8}"
    ledger = ClickHouseLedger(f"chdb://{warehouse}?database={database}", tmp_path)
    ledger.clock = lambda: AS_OF + timedelta(seconds=5)  # type: ignore[method-assign]
    try:
        ledger.record(verdict("p", AS_OF), 1.0)
        ledger.record(verdict("p", AS_OF), 1.0)  # the same record again
        assert [r.as_of for r in ledger.history("p")] == [AS_OF]
        ledger.record(verdict("p", AS_OF + HOUR), 1.0)
        assert [r.as_of for r in ledger.history("p")] == [AS_OF, AS_OF + HOUR]
    finally:
        ledger.close()


def test_an_empty_selection_matches_nothing(ledger: Ledger) -> None:
    """No phases, no kinds, no verdicts asked: nothing (``IN ()`` is not SQL)."""
    from gatecheck.ledger.audit import AuditEvent

    ledger.record(verdict("p", AS_OF), 1.0)
    ledger.append_audit(
        [AuditEvent(at=AS_OF, kind="approved", phase="p", by="a", reason="r", config_hash="h")]
    )
    assert ledger.audit(phases=[]) == [] and ledger.audit(kinds=[]) == []
    assert ledger.history("p", verdicts=frozenset()) == []
    assert len(ledger.audit(phases=["p"])) == 1 and len(ledger.history("p")) == 1


def test_postgresql_a_replica_gone_silent_inside_a_transaction_does_not_keep_the_lease(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica cut off from the database while its transaction holds the lease's row (a
    renewal, a fenced record): the server ends that session after the ledger's
    idle-in-transaction limit, so another replica takes the lease once the holding has run
    out — not when the cut one's connection finally goes away."""
    import threading

    from gatecheck.ledger import postgresql

    monkeypatch.setattr(postgresql, "IDLE_IN_TRANSACTION_MS", 300)
    cut, other = PostgresLedger(pg_url), PostgresLedger(pg_url)
    held = cut.acquire_lease("replica-cut", timedelta(seconds=1))
    assert held is not None
    locked, released = threading.Event(), threading.Event()

    def silent() -> None:  # the cut replica: inside a transaction holding the row, never a word more
        try:
            with cut.session("the cut replica") as connection:
                connection.execute("SELECT 1 FROM gatecheck_lease WHERE name = 'scheduler' FOR UPDATE")
                locked.set()
                time.sleep(30)
        except Exception:
            pass
        finally:
            released.set()

    thread = threading.Thread(target=silent, daemon=True)
    thread.start()
    assert locked.wait(10)
    time.sleep(1.2)  # the holding has run out by the database's clock
    taken = other.acquire_lease("replica-other", timedelta(seconds=30))
    assert taken is not None and taken.epoch == held.epoch + 1
    assert not released.is_set()  # taken while the cut replica's connection still exists


def test_tracked_values_are_read_from_their_own_column_as_the_documents_hold_them(ledger: Ledger) -> None:
    """What a bound from history reads: the stored column, in every backend, equals what the
    documents say (the contract's fallback), oldest first, only up to ``until``."""
    from gatecheck.ledger.base import Ledger as Contract
    from gatecheck.results import GroupValue, Tracked

    tracked = Tracked(column="lag_s", groups=[GroupValue(group={"table": "t"}, value=1.5)], measure="m1")
    for k in range(3):
        found = verdict("p", AS_OF + k * HOUR, Outcome.FAIL if k == 1 else Outcome.PASS)
        checks = [found.checks[0].model_copy(update={"tracked": tracked if k != 2 else None})]
        ledger.record(found.model_copy(update={"checks": checks}), 0.1)
    read = ledger.tracked_history("p", until=AS_OF + HOUR)
    assert read == Contract.tracked_history(ledger, "p", until=AS_OF + HOUR)
    assert [(r["verdict"], len(r["checks"])) for r in read] == [("go", 1), ("no-go", 1)]
    assert read[0]["checks"][0]["tracked"] == {
        "column": "lag_s",
        "groups": [{"group": {"table": "t"}, "value": 1.5}],
        "measure": "m1",  # how the values were measured: a bound compares only like with like
    }
    assert read[1]["checks"][0]["outcome"] == "fail" and read[0]["as_of"] == AS_OF.isoformat()
    assert [len(r["checks"]) for r in ledger.tracked_history("p")] == [1, 1, 0]  # the third tracked nothing
    assert len(ledger.tracked_history("p", newest=1)) == 1


def test_a_clickhouse_ledger_under_a_profile_that_breaks_at_a_limit_errs_never_cuts_the_history(
    tmp_path: Path, warehouse: Path
) -> None:
    """A session that answers at most 2 rows and calls the 2 it read the answer
    (result_overflow_mode='break') gave a history of 2 of 4 records: the NO-GO that came
    last was not in it. The ledger's reads ask for 'throw': reading the history is an error."""
    from gatecheck.errors import LedgerError

    database = f"ledger_{abs(hash(str(tmp_path))) % 10**8}"
    whole = at_their_time(ClickHouseLedger(f"chdb://{warehouse}?database={database}", tmp_path))
    for k in range(3):
        whole.record(verdict("p", AS_OF - (3 - k) * HOUR), 0.1)
    whole.record(verdict("p", AS_OF, Outcome.FAIL), 0.1)
    assert len(whole.history("p")) == 4
    whole.close()
    cut = ClickHouseLedger(
        f"chdb://{warehouse}?database={database}&max_result_rows=2&result_overflow_mode=break", tmp_path
    )
    try:
        with pytest.raises(LedgerError, match=r"Limit for result exceeded"):
            cut.history("p")
    finally:
        cut.close()


def test_a_clickhouse_ledger_under_a_profile_that_rewrites_answers_reads_the_whole_history(
    tmp_path: Path, warehouse: Path
) -> None:
    """A session whose profile cuts every answer to one row (`limit=1`), or filters what the
    tables hold (`additional_table_filters`), gave a history of 1 of 4 records, or none: the
    ledger's reads undo both."""
    database = f"ledger_{abs(hash(str(tmp_path))) % 10**8}"
    whole = at_their_time(ClickHouseLedger(f"chdb://{warehouse}?database={database}", tmp_path))
    for k in range(3):
        whole.record(verdict("p", AS_OF - (3 - k) * HOUR), 0.1)
    whole.record(verdict("p", AS_OF, Outcome.FAIL), 0.1)
    expected = [(r.as_of, r.verdict) for r in whole.history("p")]
    assert len(expected) == 4
    whole.close()
    hidden = "additional_table_filters=" + quote(f"{{'{database}.gatecheck_evaluations':'0'}}")
    for setting in ("limit=1", "offset=2", hidden):
        rewritten = ClickHouseLedger(f"chdb://{warehouse}?database={database}&{setting}", tmp_path)
        try:
            assert [(r.as_of, r.verdict) for r in rewritten.history("p")] == expected, setting
        finally:
            rewritten.close()


def test_the_audit_trail_keeps_every_kind_whole_numbers_waivers_and_selects(ledger: Ledger) -> None:
    """The audit contract every backend keeps (the waiver, approval and assumption flows run
    end to end on SQLite in test_waivers.py, and on each backend for one flow): every kind and
    field as written, oldest first, waiver ids W1, W2, … and the three selections."""
    from typing import get_args

    from gatecheck.ledger.audit import AuditEvent, AuditKind

    start = AS_OF - 10 * HOUR
    kinds = [k for k in get_args(AuditKind) if k != "waiver-created"]
    first = ledger.create_waiver(
        AuditEvent(
            at=start, kind="waiver-created", phase="release", check="unmatched_edges",
            group={"edge_type": "start->first_segment", "region": "eu"}, until=start + 24 * HOUR,
            by="alice", reason="vendor backfill — until Friday", config_hash="c1",
        )
    )  # fmt: skip
    second = ledger.create_waiver(
        AuditEvent(at=start + HOUR, kind="waiver-created", phase="canary", check="freshness_lag",
                   until=start + 2 * HOUR, by="bob", reason="r")
    )  # fmt: skip
    assert (first.waiver, second.waiver) == ("W1", "W2")
    events = [
        AuditEvent(
            at=start + (2 + i) * HOUR, kind=kind, phase="release" if i % 2 else "canary", check="unmatched_edges",
            waiver="W1" if kind.startswith("waiver") else "", by=f"who{i}", reason=f"because {i}",
            until=start + 30 * HOUR if kind == "approved" else None,
        )
        for i, kind in enumerate(kinds)
    ]  # fmt: skip
    ledger.append_audit(events)
    trail = ledger.audit()
    assert trail == [first, second, *events]
    assert ledger.audit(["release"]) == [e for e in trail if e.phase == "release"]
    assert ledger.audit(since=start + 3 * HOUR) == [e for e in trail if e.at >= start + 3 * HOUR]
    assert ledger.audit(kinds=["waiver-created", "approved"]) == [
        e for e in trail if e.kind in ("waiver-created", "approved")
    ]
    # a page: the newest n, in the trail's order, up to a moment (inclusive), with the selections
    assert ledger.audit(newest=2) == trail[-2:]
    assert ledger.audit(until=start + 3 * HOUR) == [e for e in trail if e.at <= start + 3 * HOUR]
    assert ledger.audit(["release"], start + HOUR, None, start + 6 * HOUR, 2) == [
        e for e in trail if e.phase == "release" and start + HOUR <= e.at <= start + 6 * HOUR
    ][-2:]
    assert ledger.audit(kinds=["waiver-created"], newest=5) == [first, second]
    third = ledger.create_waiver(second.model_copy(update={"waiver": "", "at": start + 40 * HOUR}))
    assert third.waiver == "W3"


def test_a_postgresql_ledger_url_libpq_cannot_read_is_one_line_without_its_password() -> None:
    """libpq quotes the token it cannot read — here the password — and the ledger let that
    error out as a traceback. It is a LedgerError naming the ledger, the password hidden."""
    from gatecheck.errors import LedgerError
    from gatecheck.ledger.postgresql import PostgresLedger

    with pytest.raises(LedgerError) as caught:
        PostgresLedger("postgresql://gatecheck:Sup3r%ZZsecret@127.0.0.1:1/ledger")
    assert str(caught.value) == (
        "history ledger postgresql://gatecheck:***@127.0.0.1:1/ledger: not a PostgreSQL URL libpq reads "
        "(invalid percent-encoded token)"
    )


def test_a_record_is_named_as_history_shows_it_to_the_second(tmp_path: Path) -> None:
    """``invalidate``/``pin --record`` take a record's ``as_of`` as ``history`` prints it, to
    the second; a run without ``--as-of`` is recorded to the millisecond, and such a record was
    "no evaluation … on record". Two in one second: the milliseconds decide, as the JSON shows."""
    from gatecheck.errors import ConfigError
    from gatecheck.ledger.decisions import record_of

    ledger = SqliteLedger(tmp_path / "h.db")
    try:
        first = AS_OF + timedelta(milliseconds=271)
        ledger.record(verdict("p", first), 0.1)
        assert record_of(ledger, "p", "2026-11-22T06:00:00Z").as_of == first  # as history prints it
        assert record_of(ledger, "p", "2026-11-22T06:00:00.271Z").as_of == first  # as the JSON does
        for other in ("2026-11-22T06:00:00.270Z", "2026-11-22T06:00:01Z", "2026-11-22T05:59:59Z"):
            with pytest.raises(ConfigError, match="no evaluation of p as of"):
                record_of(ledger, "p", other)
        ledger.record(verdict("p", AS_OF + timedelta(milliseconds=900)), 0.1)
        with pytest.raises(ConfigError) as raised:
            record_of(ledger, "p", "2026-11-22T06:00:00Z")
        assert str(raised.value) == (
            "--record: p has more than one evaluation as of 2026-11-22T06:00:00Z (2026-11-22T06:00:00.271Z "
            "and 2026-11-22T06:00:00.900Z): give its milliseconds, as gatecheck history --phase p "
            "--format json shows them"
        )
        assert record_of(ledger, "p", "2026-11-22T06:00:00.900Z").as_of == AS_OF + timedelta(milliseconds=900)
    finally:
        ledger.close()
