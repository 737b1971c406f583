"""The E2E job's JUnit reports for the demo and the tests: one report per run, every ten
minutes over the last hour, the runbook's E2E test ("POST /ingest/hrv → DB row with correct
ln_rmssd") among them."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import quoteattr

#: Scenarios that change the E2E results (the others get six passing runs).
E2E_SCENARIOS = ("e2e-flaky",)
EVERY = timedelta(minutes=10)
RUNS = 6
TESTS = (
    ("e2e.ingest", "test_post_ingest_hrv_writes_a_row_with_correct_ln_rmssd"),
    ("e2e.ingest", "test_duplicate_message_is_written_once"),
    ("e2e.normalize", "test_consumer_reads_aa_core_hot"),
    ("e2e.normalize", "test_schema_invalid_message_goes_to_the_dlq"),
)
FLAKY = ("e2e.ingest", "test_post_ingest_hrv_writes_a_row_with_correct_ln_rmssd")


def write_reports(directory: Path, as_of: datetime, scenario: str) -> int:
    """Write the runs' reports into ``directory`` (emptied of earlier reports); how many."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("e2e-*.xml"):
        old.unlink()
    for k in range(RUNS):
        moment = as_of - timedelta(minutes=2) - EVERY * k
        failing = scenario == "e2e-flaky" and k == 2  # the third newest of the last five
        cases = []
        for classname, name in TESTS:
            body = ""
            if failing and (classname, name) == FLAKY:
                body = '<failure message="expected ln_rmssd 3.41, got NULL">AssertionError</failure>'
            names = f"classname={quoteattr(classname)} name={quoteattr(name)}"
            cases.append(f'<testcase {names} time="1.2">{body}</testcase>')
        report = (
            '<?xml version="1.0" encoding="utf-8"?>\n<testsuites>'
            f'<testsuite name="e2e" tests="{len(TESTS)}" failures="{1 if failing else 0}" errors="0"'
            f' skipped="0" timestamp="{moment.strftime("%Y-%m-%dT%H:%M:%S")}">'
            + "".join(cases)
            + "</testsuite></testsuites>\n"
        )
        (directory / f"e2e-{moment.strftime('%Y%m%dT%H%M%S')}.xml").write_text(report, encoding="utf-8")
    return RUNS
