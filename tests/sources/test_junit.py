"""The JUnit source on real report files — in a directory and behind a real HTTP server's
directory listing — and the shipped e2e_consecutive suite through the engine."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from datetime import datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gatecheck.config import load_project
from gatecheck.demo.e2e import write_reports
from gatecheck.demo.metrics import STOP_POLL_S
from gatecheck.errors import QueryError, SourceUnavailable
from gatecheck.results import Outcome, VerdictState
from gatecheck.sources.junit import JUnitQuery, JUnitSource, JUnitSourceConfig

from ..conftest import AS_OF, PROJECT, evaluate

WINDOW = {"window_start": AS_OF - timedelta(hours=2), "window_end": AS_OF, "as_of": AS_OF}


def read(url: str, query: dict[str, Any] | None = None, **parameters: Any) -> Any:
    config = JUnitSourceConfig(type="junit", url=url, timeout=timedelta(seconds=5))
    source = JUnitSource("e2e", config, Path("."))
    return asyncio.run(source.query(JUnitQuery.model_validate(query or {}), {**WINDOW, **parameters}))


def test_one_row_per_run_in_the_window_newest_first(tmp_path: Path) -> None:
    write_reports(tmp_path, AS_OF, "e2e-flaky")
    frame = read(f"file://{tmp_path}", {"reports": "e2e-*.xml"})
    assert len(frame) == 6  # one every 10 minutes over the last hour
    assert list(frame["time"]) == sorted(frame["time"], reverse=True)
    assert frame["time"].iloc[0] == (AS_OF - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert list(frame["failed"]) == [0, 0, 1, 0, 0, 0]
    assert frame["failing_tests"].iloc[2] == "e2e.ingest.test_post_ingest_hrv_writes_a_row_with_correct_ln_rmssd"
    assert set(frame["tests"]) == {4} and set(frame["runs"]) == {1}
    newest = read(f"file://{tmp_path}", {"reports": "e2e-*.xml", "newest": 2})
    assert list(newest["run"]) == list(frame["run"][:2])
    later = read(f"file://{tmp_path}", {"newest": {"$PARAMETER": "n"}}, n=3, window_end=AS_OF - timedelta(minutes=25))
    assert list(later["run"]) == list(frame["run"][3:6])  # the window's end moved back
    with pytest.raises(QueryError, match=r"newest: n = 2.5 is not a whole number"):
        read(f"file://{tmp_path}", {"newest": {"$PARAMETER": "n"}}, n=2.5)


def test_the_same_runs_behind_an_http_directory_listing(tmp_path: Path) -> None:
    write_reports(tmp_path, AS_OF, "healthy")
    (tmp_path / "notes.txt").write_text("not a report")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(STOP_POLL_S,), daemon=True).start()
    try:
        over_http = read(f"http://127.0.0.1:{server.server_port}/", {"reports": "e2e-*.xml"})
        missing = f"http://127.0.0.1:{server.server_port}/nope/"
        with pytest.raises(SourceUnavailable, match="answered 404"):
            read(missing)
    finally:
        server.shutdown()
        server.server_close()
    on_disk = read(f"file://{tmp_path}", {"reports": "e2e-*.xml"})
    assert over_http.to_dict("records") == on_disk.to_dict("records")


BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<testsuite name="x" tests="1"><testcase name="&lol3;"/></testsuite>"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE t [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<testsuite name="x" tests="1"><testcase name="&secret;"/></testsuite>"""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("<testsuite name='x' tests='1'><testcase", "report bad.xml: not well-formed XML"),
        ("<html><body>502 Bad Gateway</body></html>", "report bad.xml: not a JUnit report (root element <html>)"),
        ("<testsuite name='x' tests='many'/>", "report bad.xml: a count is not a number"),
        ("<testsuite name='x' tests='1' timestamp='yesterday'/>", "report bad.xml: timestamp 'yesterday' is not ISO"),
        (BOMB, "report bad.xml: refused: DTDForbidden"),
        (EXTERNAL, "report bad.xml: refused: DTDForbidden"),
    ],
)
def test_a_report_that_is_not_junit_is_an_error_naming_it(tmp_path: Path, content: str, message: str) -> None:
    write_reports(tmp_path, AS_OF, "healthy")
    (tmp_path / "bad.xml").write_text(content)
    with pytest.raises(QueryError) as raised:
        read(f"file://{tmp_path}")
    assert str(raised.value).startswith(message)


def test_a_report_without_a_timestamp_is_dated_by_its_file_and_a_naive_one_is_utc(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text("<testsuite name='a' tests='2' failures='0'/>")
    moment = (AS_OF - timedelta(minutes=30)).timestamp()
    os.utime(tmp_path / "a.xml", (moment, moment))
    (tmp_path / "b.xml").write_text(
        "<testsuites><testsuite name='b' timestamp='2026-11-22T05:50:00'>"
        "<testcase classname='c' name='t1'/><testcase classname='c' name='t2'><error/></testcase>"
        "</testsuite></testsuites>"
    )
    frame = read(f"file://{tmp_path}")
    assert list(frame["run"]) == ["b.xml", "a.xml"]
    assert list(frame["time"]) == ["2026-11-22T05:50:00Z", "2026-11-22T05:30:00Z"]
    # counts come from the test cases when the suite does not give them
    assert (frame["tests"].iloc[0], frame["errors"].iloc[0], frame["failed"].iloc[0]) == (2, 1, 1)
    assert frame["failing_tests"].iloc[0] == "c.t2"


def test_a_failing_test_case_counts_whatever_the_summary_says_and_nested_suites_count_once(
    tmp_path: Path,
) -> None:
    """A suite whose summary says failures='0' over a test case that failed was a passing run;
    the failure counts. A suite of suites (PHPUnit's, Karma's) sums its children: counting it
    too counted every test twice."""
    (tmp_path / "summary.xml").write_text(
        "<testsuite name='s' tests='2' failures='0' errors='0' timestamp='2026-11-22T05:40:00'>"
        "<testcase classname='c' name='ok'/><testcase classname='c' name='broken'><failure/></testcase>"
        "</testsuite>"
    )
    (tmp_path / "nested.xml").write_text(
        "<testsuites><testsuite name='All' tests='3' failures='1' timestamp='2026-11-22T05:50:00'>"
        "<testsuite name='A' tests='2' failures='1'><testcase classname='A' name='a1'/>"
        "<testcase classname='A' name='a2'><failure/></testcase></testsuite>"
        "<testsuite name='B' tests='1' failures='0'><testcase classname='B' name='b1'/></testsuite>"
        "</testsuite></testsuites>"
    )
    frame = read(f"file://{tmp_path}")
    assert list(frame["run"]) == ["nested.xml", "summary.xml"]
    assert list(frame["time"]) == ["2026-11-22T05:50:00Z", "2026-11-22T05:40:00Z"]  # the outer suite's
    assert list(frame["tests"]) == [3, 2] and list(frame["failed"]) == [1, 1]
    assert list(frame["failing_tests"]) == ["A.a2", "c.broken"]


def many_reports(directory: Path, filler_modified: datetime) -> None:
    """505 passing runs of three days ago, modified at ``filler_modified``; five passing runs in
    the last hour and, newest of all, a failing one named to sort first."""
    directory.mkdir(exist_ok=True)

    def report(name: str, when: datetime, failed: bool = False) -> Path:
        case = "<testcase classname='e2e' name='t'>" + ("<failure/>" if failed else "") + "</testcase>"
        path = directory / name
        path.write_text(f"<testsuite name='e2e' timestamp='{when.strftime('%Y-%m-%dT%H:%M:%SZ')}'>{case}</testsuite>")
        return path

    for k in range(505):
        moment = filler_modified.timestamp()
        os.utime(report(f"e2e-r{k:04d}.xml", AS_OF - timedelta(days=3)), (moment, moment))
    for k in range(5):
        report(f"e2e-s{k}.xml", AS_OF - timedelta(minutes=10 * (k + 1)))
    report("e2e-0-newest.xml", AS_OF - timedelta(minutes=1), failed=True)


def test_reports_beyond_the_cap_never_hide_a_run_the_check_judges(tmp_path: Path) -> None:
    """At most 500 reports are read (the most recently modified). Old reports left unread
    change nothing; when the unread ones could hold a run of the window, the check is an error
    — before, a failing newest run among them was left out and five older passes were a pass."""
    quiet = tmp_path / "quiet"
    many_reports(quiet, AS_OF - timedelta(days=3))  # the old reports were written back then
    frame = read(f"file://{quiet}", {"reports": "e2e-*.xml", "newest": 5})
    assert list(frame["failed"]) == [1, 0, 0, 0, 0] and frame["run"].iloc[0] == "e2e-0-newest.xml"
    # A day's window holds more than the newest five: still complete, the unread are older.
    day = read(f"file://{quiet}", {"reports": "e2e-*.xml"}, window_start=AS_OF - timedelta(days=1))
    assert len(day) == 6

    # Every report copied at one moment (a CI cache restored): modification times say nothing.
    restored = tmp_path / "restored"
    many_reports(restored, AS_OF)
    for path in restored.iterdir():
        os.utime(path, (AS_OF.timestamp(), AS_OF.timestamp()))
    with pytest.raises(QueryError, match=r"^511 reports match 'e2e-\*.xml' and only the 500 most recently modified"):
        read(f"file://{restored}", {"reports": "e2e-*.xml", "newest": 5})

    # A listing says nothing of its reports' times: more than 500 matching links is an error.
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(quiet))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(STOP_POLL_S,), daemon=True).start()
    try:
        with pytest.raises(QueryError, match=r"^511 reports match .* at most 500 are read; a listing does not say"):
            read(f"http://127.0.0.1:{server.server_port}/", {"reports": "e2e-*.xml", "newest": 5})
    finally:
        server.shutdown()
        server.server_close()


def test_a_missing_directory_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="not a directory"):
        read(f"file://{tmp_path / 'nope'}")


@pytest.fixture
def e2e_project(warehouse: Path, live_warehouse: str, bus_for, metrics_url: str, postgres_for, tmp_path: Path):
    def load(scenario: str, moment: datetime = AS_OF, runs: int | None = None) -> Any:
        directory = tmp_path / scenario
        write_reports(directory, moment, scenario)
        for extra in sorted(directory.glob("*.xml"))[: 6 - runs] if runs is not None else []:
            extra.unlink()  # the oldest ones
        return load_project(
            PROJECT,
            environ={
                "GATECHECK_CLICKHOUSE_URL": f"chdb://{warehouse}?database={live_warehouse}",
                "GATECHECK_NATS_URL": bus_for("healthy"), "GATECHECK_NATS_PRODUCTION_URL": bus_for("healthy"),
                "GATECHECK_PROMETHEUS_URL": metrics_url,
                "GATECHECK_POSTGRES_URL": postgres_for("healthy"),
                "GATECHECK_E2E_REPORTS": f"file://{directory}",
            },
        )

    return load


def _e2e(project: Any, phase: str = "staging-soak") -> Any:
    verdict = asyncio.run(evaluate(project, phase, AS_OF, ["staging-deploy", "staging-predeploy"], True))
    return verdict, next(c for c in verdict.checks if c.suite == "e2e_consecutive")


def test_five_of_five_passes_a_failing_run_names_itself_and_its_test(e2e_project) -> None:
    _, check = _e2e(e2e_project("healthy"))
    assert check.outcome is Outcome.PASS and check.rows == 5
    assert check.evidence is not None and check.evidence.observed_total == 5
    verdict, check = _e2e(e2e_project("e2e-flaky"))
    assert check.outcome is Outcome.FAIL and verdict.verdict is VerdictState.NO_GO
    (failing,) = check.expectations[0].failing_groups
    assert failing.group["failing_tests"] == "e2e.ingest.test_post_ingest_hrv_writes_a_row_with_correct_ln_rmssd"
    assert failing.group["run"].startswith("e2e-20261122T05") and failing.observed_value == 1


def test_a_report_whose_name_is_not_utf8_is_shown_and_recorded(e2e_project, tmp_path: Path) -> None:
    """A failing run's report named with a byte that is not UTF-8 (Python reads it as half a
    character): the failing group named it, and no report, page or ledger record could be
    written with it — the failure went unrecorded. It shows as U+FFFD."""
    from gatecheck.ledger import SqliteLedger
    from gatecheck.render.verdict import render

    project = e2e_project("e2e-flaky")
    directory = tmp_path / "e2e-flaky"
    failing = next(p for p in sorted(directory.glob("*.xml")) if "<failure" in p.read_text())
    os.rename(bytes(failing), bytes(failing)[: -len(b".xml")] + b"-\xff.xml")
    verdict, check = _e2e(project)
    assert check.outcome is Outcome.FAIL and verdict.verdict is VerdictState.NO_GO, check.reason
    (group,) = check.expectations[0].failing_groups
    assert group.group["run"] == failing.name.removesuffix(".xml") + "-\ufffd.xml", group.group
    for fmt in ("text", "json", "junit", "markdown", "html"):
        render(verdict, fmt).encode("utf-8")
    ledger = SqliteLedger(tmp_path / "history.db")
    try:
        ledger.record(verdict, 1.0)
        assert [r.verdict for r in ledger.history("staging-soak")] == [VerdictState.NO_GO]
    finally:
        ledger.close()


def test_a_run_that_skipped_every_test_is_no_pass(e2e_project, tmp_path: Path) -> None:
    """No failure and `tests="4"`, but nothing ran: five such runs are not "5/5 consecutive
    E2E tests pass"."""
    project = e2e_project("healthy")
    newest = sorted((tmp_path / "healthy").glob("e2e-*.xml"))[-1]
    text = newest.read_text().replace('skipped="0"', 'skipped="4"')
    newest.write_text(text.replace("></testcase>", "><skipped/></testcase>"))
    frame = read(f"file://{tmp_path / 'healthy'}", {"reports": newest.name})
    assert (frame["tests"].iloc[0], frame["skipped"].iloc[0], frame["executed"].iloc[0]) == (4, 4, 0)
    verdict, check = _e2e(project)
    assert check.outcome is Outcome.FAIL and verdict.verdict is VerdictState.NO_GO
    (expectation,) = [e for e in check.expectations if e.outcome is Outcome.FAIL]
    assert expectation.column == "executed"
    assert [g.group["run"] for g in expectation.failing_groups] == [newest.name]


def test_fewer_runs_than_five_are_inconclusive_and_staging_deploy_needs_one(e2e_project) -> None:
    _, check = _e2e(e2e_project("healthy", runs=3))
    assert check.outcome is Outcome.INCONCLUSIVE and "too little evidence: runs = 3" in (check.reason or "")
    # staging-deploy: the run after the deploy (e2e_consecutive_min 1 for that phase)
    _, deploy = _e2e(e2e_project("e2e-flaky", runs=3), "staging-deploy")
    assert deploy.outcome is Outcome.PASS and deploy.rows == 1
    assert deploy.evidence is not None and deploy.evidence.min_total.provenance == "phase"


def test_a_listing_is_followed_only_on_its_own_host_and_only_to_matching_files() -> None:
    from gatecheck.sources.junit import _listed

    page = (
        '<a href="../">..</a><a href="?C=N;O=D">Name</a><a href="e2e-1.xml">e2e-1.xml</a>'
        '<a href="sub/e2e-2.xml">2</a><a href="http://elsewhere.example/e2e-3.xml">3</a>'
        '<a href="https://reports.example/e2e/e2e-4.xml">4</a><a href="notes.txt">n</a><a href="e2e-1.xml">again</a>'
    )
    found = list(_listed(page, "https://reports.example/e2e", "e2e-*.xml"))
    assert found == [
        ("e2e-1.xml", "https://reports.example/e2e/e2e-1.xml"),
        ("e2e-2.xml", "https://reports.example/e2e/sub/e2e-2.xml"),
        ("e2e-4.xml", "https://reports.example/e2e/e2e-4.xml"),
    ]


def test_a_run_dated_ahead_of_now_is_an_error_never_left_out(tmp_path: Path) -> None:
    """A CI runner east of Greenwich writing its local time without a zone (Maven Surefire
    does): read as UTC, its newest run lies hours ahead of now. Left out of the window as a
    run of the future, the passing runs before it made "5 of 5 pass" while it had failed."""
    from datetime import UTC, datetime

    now = datetime.now(UTC).replace(microsecond=0)

    def report(name: str, when: datetime, failed: bool, zone: str = "") -> None:
        failure = "<failure message='x'/>" if failed else ""
        stamp = when.replace(tzinfo=None).isoformat() + zone
        (tmp_path / name).write_text(
            f'<testsuite name="e2e" tests="1" timestamp="{stamp}"><testcase name="t">{failure}</testcase></testsuite>'
        )

    for k in range(5):  # five passing runs, hours ago, in UTC
        report(f"e2e-{k}.xml", now - timedelta(hours=5 - k), failed=False)
    window = {"window_start": now - timedelta(hours=6), "window_end": now, "as_of": now}
    assert list(read(f"file://{tmp_path}", {"reports": "e2e-*.xml", "newest": 5}, **window)["failed"]) == [0] * 5
    # the newest run, 20 minutes ago, failed: its timestamp is local time in UTC+2, without the zone
    report("e2e-5.xml", now - timedelta(minutes=20) + timedelta(hours=2), failed=True)
    with pytest.raises(QueryError, match=r"^report e2e-5.xml: its run is dated .*, 1h\d+m ahead of now: a timestamp without its zone is read as UTC"):
        read(f"file://{tmp_path}", {"reports": "e2e-*.xml", "newest": 5}, **window)
    # written with its offset it is the newest run of the window, and it failed
    report("e2e-5.xml", now - timedelta(minutes=20) + timedelta(hours=2), failed=True, zone="+02:00")
    assert list(read(f"file://{tmp_path}", {"reports": "e2e-*.xml", "newest": 5}, **window)["failed"]) == [1, 0, 0, 0, 0]
