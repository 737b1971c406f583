"""Every output format is a view of the same verdict: JUnit (XSD), Markdown, JSON (schema)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import jsonschema
import pytest
import xmlschema
import yaml
from typer.testing import CliRunner

from gatecheck.cli import app
from gatecheck.render.verdict import render_junit, render_markdown
from gatecheck.results import Verdict, VerdictState
from gatecheck.schema import shipped_schema, verdict_schema

from ..conftest import AS_OF, PROJECT, evaluate, warehouse_env

JUNIT_XSD = xmlschema.XMLSchema(Path(__file__).parents[1] / "junit.xsd")


@pytest.fixture(scope="module")
def verdicts(warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Verdict]:
    """One verdict of each kind, evaluated once for the module (verdicts are immutable: every
    test renders them, none changes them)."""
    from gatecheck.config import load_project

    from ..conftest import copy_config

    config_copy = copy_config(tmp_path_factory.mktemp("reports") / "config")
    gate = yaml.safe_load((config_copy / "gates" / "warehouse-release.yaml").read_text())
    gate["rollback"] = [{"suite": "unmatched_edges"}]
    (config_copy / "gates" / "warehouse-release.yaml").write_text(yaml.safe_dump(gate))

    def run(scenario: str, root: Path = PROJECT) -> Verdict:
        project = load_project(root, environ=warehouse_env(warehouse, scenario))
        return asyncio.run(evaluate(project, "warehouse-release", AS_OF))

    return {
        "go": run("healthy"),
        "no-go": run("stale-ingest"),
        "inconclusive": run("thin-traffic"),
        "rollback": run("unmatched-edges", config_copy),
    }


@pytest.mark.parametrize("state", ["go", "no-go", "inconclusive", "rollback"])
def test_junit_validates_and_counts_outcomes(verdicts: dict[str, Verdict], state: str) -> None:
    verdict = verdicts[state]
    assert verdict.verdict is VerdictState(state), verdict.reasons
    xml = render_junit(verdict)
    JUNIT_XSD.validate(xml)
    document = JUNIT_XSD.to_dict(xml)
    outcomes = [c.outcome.value for c in verdict.checks]
    assert document["@tests"] == len(verdict.checks) + 1  # and the verdict's own
    assert document["@failures"] == outcomes.count("fail") + (state != "go")
    assert document["@errors"] == outcomes.count("error")
    assert document["@skipped"] == outcomes.count("inconclusive")
    properties = {p["@name"]: p["@value"] for p in document["properties"]["property"]}
    assert properties["verdict"] == state
    *cases, judged = document["testcase"]
    assert judged["@name"] == "verdict" and judged["@classname"] == "gatecheck.warehouse-release"
    if state == "go":
        assert "failure" not in judged
    else:  # an inconclusive verdict too: its checks are only <skipped>, the report must not be green
        assert judged["failure"]["@type"] == f"verdict-{state}"
        assert judged["failure"]["@message"] == f"{state.upper()}: {verdict.reasons[0]}"
    for case, check in zip(cases, verdict.checks, strict=True):
        assert case["@name"] == check.suite
        if check.outcome.value == "fail":
            assert "window" in case["failure"]["@message"] and check.suite in case["failure"]["@message"]
        if check.outcome.value == "inconclusive":
            assert "too little evidence" in case["skipped"]["@message"]


def test_junit_failure_carries_observed_value_and_threshold(verdicts: dict[str, Verdict]) -> None:
    xml = render_junit(verdicts["no-go"])
    assert "ingest_lag_s must be ≤ 300 s (freshness_lag_max_s, default)" in xml
    assert "source_table=stream_trace_events, clock_domain=all: observed 1201 s" in xml


def test_markdown_report(verdicts: dict[str, Verdict]) -> None:
    text = render_markdown(verdicts["rollback"])
    assert text.startswith("### gatecheck: 🔴 ROLLBACK — `warehouse-release` (staging)")
    assert "| `unmatched_edges` | rollback | ❌ fail |" in text
    assert "edge_type=start->first_segment: observed 2.5 %" in text


@pytest.mark.parametrize("state", ["go", "no-go", "inconclusive", "rollback"])
def test_json_output_validates_against_the_shipped_schema(verdicts: dict[str, Verdict], state: str) -> None:
    jsonschema.Draft202012Validator(shipped_schema()).validate(verdicts[state].document())


def test_the_shipped_schema_is_the_generated_one() -> None:
    assert shipped_schema() == verdict_schema(), (
        "regenerate: gatecheck schema > src/gatecheck/schema/verdict.schema.json"
    )
    result = CliRunner().invoke(app, ["schema"])
    assert json.loads(result.stdout) == verdict_schema()


def test_schema_rejects_a_wrong_verdict(verdicts: dict[str, Verdict]) -> None:
    document = verdicts["go"].document() | {"verdict": "maybe"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(shipped_schema()).validate(document)


def test_run_appends_markdown_to_the_github_step_summary(warehouse: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    env = {**warehouse_env(warehouse, "unmatched-edges"), "GITHUB_STEP_SUMMARY": str(summary)}
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--phase",
            "warehouse-release",
            "--config",
            str(PROJECT),
            "--as-of",
            AS_OF.isoformat(),
            "-f",
            "junit",
        ],
        env=env,
    )
    assert result.exit_code == 1
    assert result.stdout.startswith('<?xml version="1.0"')
    text = summary.read_text()
    assert text.startswith("earlier step\n### gatecheck: ❌ NO-GO")


def hostile(verdict: Verdict) -> Verdict:
    """``verdict`` with control characters planted where data reaches the outputs: a failing
    group's value (ESC erase-line, NUL) and a reason."""
    check = next(c for c in verdict.checks if c.outcome.value == "fail")
    expectation = next(e for e in check.expectations if e.failing_groups)
    group = expectation.failing_groups[0].model_copy(update={"group": {"source_table": "evil\x1b[2K\x00row"}})
    expectation = expectation.model_copy(update={"failing_groups": [group]})
    check = check.model_copy(update={
        "expectations": [expectation if e.column == expectation.column else e for e in check.expectations],
        "reason": "bad\x1b]0;title\x07 reason",
    })  # fmt: skip
    return verdict.model_copy(update={
        "checks": [check if c.suite == check.suite else c for c in verdict.checks],
        "reasons": [*verdict.reasons, "from data: \x1b[2K\x00"],
    })  # fmt: skip


def test_control_characters_from_data_never_reach_the_terminal_or_break_junit(verdicts: dict[str, Verdict]) -> None:
    import xml.etree.ElementTree as ET

    from gatecheck.render.verdict import render

    verdict = hostile(verdicts["no-go"])
    for colour in (False, True):
        text = render(verdict, "text", color=colour)
        assert "\x00" not in text and "\x07" not in text and "\x1b[2K" not in text and "\x1b]0" not in text
        assert "evil\\x1b[2K\\x00row" in text  # shown, escaped
    xml = render_junit(verdict)
    ET.fromstring(xml.encode())  # well-formed: CI reporters read it
    JUNIT_XSD.validate(xml)
    assert "evil\\x1b[2K\\x00row" in xml
    markdown = render(verdict, "markdown")
    assert "\x1b" not in markdown and "\x00" not in markdown


def test_a_newline_from_data_never_starts_a_line_of_the_text_report(verdicts: dict[str, Verdict]) -> None:
    """A group's value holding a newline and a forged header: the CI log shows it escaped, on
    the line of its group, and the report has one verdict line, its own."""
    from gatecheck.render.verdict import render

    verdict = verdicts["no-go"]
    check = next(c for c in verdict.checks if c.outcome.value == "fail")
    expectation = next(e for e in check.expectations if e.failing_groups)
    forged = "t1\nGO  phase warehouse-release (staging) as of 2026-11-22T06:00:00Z"
    group = expectation.failing_groups[0].model_copy(update={"group": {"source_table": forged}, "observed_value": forged})
    expectation = expectation.model_copy(update={"failing_groups": [group]})
    check = check.model_copy(update={"expectations": [expectation if e.column == expectation.column else e for e in check.expectations]})
    verdict = verdict.model_copy(update={"checks": [check if c.suite == check.suite else c for c in verdict.checks]})
    text = render(verdict, "text")
    lines = text.splitlines()
    assert [line for line in lines if line.startswith(("GO", "NO-GO"))] == [lines[0]] and lines[0].startswith("NO-GO")
    assert "source_table=t1\\nGO  phase warehouse-release" in text and "observed t1\\nGO  phase" in text


MARKUP = "t1\n### ✅ GO <img src=x onerror=alert(1)> [approve here](https://evil.example/) | cell"


def test_a_sources_text_is_text_in_the_markdown_reports_never_markup(verdicts: dict[str, Verdict]) -> None:
    """The Markdown report (a CI step summary) and the status update (a ticket) rendered as
    GitHub renders Markdown before its sanitizer (CommonMark, tables, raw HTML on): a failing
    group's value and a reason from a source show as their text — no image, no link, no
    heading, no extra table cell."""
    from markdown_it import MarkdownIt

    from gatecheck.render.status import render_status_update
    from gatecheck.render.verdict import render

    verdict = hostile(verdicts["no-go"])
    check = next(c for c in verdict.checks if c.outcome.value == "fail")
    expectation = next(e for e in check.expectations if e.failing_groups)
    group = expectation.failing_groups[0].model_copy(update={"group": {"source_table": MARKUP}})
    expectation = expectation.model_copy(update={"failing_groups": [group]})
    check = check.model_copy(update={
        "expectations": [expectation if e.column == expectation.column else e for e in check.expectations],
        "reason": f"failed at {MARKUP}",
    })  # fmt: skip
    verdict = verdict.model_copy(update={
        "checks": [check if c.suite == check.suite else c for c in verdict.checks],
        "reasons": [*verdict.reasons, f"from data: {MARKUP}"],
    })  # fmt: skip
    renderer = MarkdownIt("commonmark", {"html": True}).enable("table")
    for markdown in (render(verdict, "markdown"), render_status_update(verdict, [], verdict.as_of)):
        html = renderer.render(markdown)
        assert "<img" not in html and "<a " not in html, html
        assert html.count("<h3>") == markdown.count("\n### ") + markdown.startswith("### ")  # only the report's own
        assert "&lt;img src=x onerror=alert(1)&gt; [approve here](https://evil.example/) | cell" in html  # shown
        widths = {row.count("<td>") for row in html.split("<tr>")[1:] if "<td>" in row}
        assert len(widths) <= 1, widths  # every row of a table as wide as its head


def test_junit_an_advisory_failure_is_skipped_with_its_evidence_and_times_are_the_checks_own(
    verdicts: dict[str, Verdict],
) -> None:
    """An advisory check that failed does not block: JUnit says so as <skipped> (CI stays green
    on a GO) with the evidence; each testcase carries its own check's duration, the suite the
    evaluation's."""
    from types import SimpleNamespace

    from gatecheck.results import Outcome

    go = verdicts["go"]
    failed = verdicts["no-go"].checks[0] if verdicts["no-go"].checks[0].outcome is Outcome.FAIL else next(
        c for c in verdicts["no-go"].checks if c.outcome is Outcome.FAIL
    )
    advisory = failed.model_copy(update={"role": "advisory"})
    verdict = go.model_copy(update={"checks": [*go.checks, advisory]})
    timings = SimpleNamespace(
        duration_s=2.5, check_seconds={(c.suite, c.role): 0.25 * (i + 1) for i, c in enumerate(verdict.checks)}
    )
    xml = render_junit(verdict, timings)
    JUNIT_XSD.validate(xml)
    document = JUNIT_XSD.to_dict(xml)
    assert document["@failures"] == 0 and document["@skipped"] == 1  # a GO is never red in CI
    case = document["testcase"][-2]  # the last: the verdict's own, passing
    assert case["@classname"].endswith(".advisory") and "failure" not in case
    assert case["skipped"]["@message"].startswith("advisory check failed (does not block the verdict)")
    assert "must be" in case["skipped"]["$"]  # the evidence: observed value against its threshold
    assert document["@time"] == 2.5
    assert [c["@time"] for c in document["testcase"][:-1]] == [0.25 * (i + 1) for i in range(len(verdict.checks))]
    # without timings (a verdict read back from the service or the ledger): 0, never invented
    assert {c["@time"] for c in JUNIT_XSD.to_dict(render_junit(verdict))["testcase"]} == {0}


def test_a_long_reason_is_a_headline_with_its_details_below(verdicts: dict[str, Verdict]) -> None:
    """The demand-drift reason was one line of about 700 characters."""
    from gatecheck.render.describe import split_reason

    groups = [f"hour=2026-11-22T0{h}:00:00Z, gateway=gw-{h}, present=both: observed 0.05 (sessions_diff -5)" for h in range(3)]
    reason = (
        "required check failed: demand_grain_parity — sessions_rel_diff (per hour and key) must be ≤ 0 "
        "(demand_grain_rel_tol, default): " + "; ".join(groups)
    )
    headline, details = split_reason(reason)
    assert headline == (
        "required check failed: demand_grain_parity — sessions_rel_diff (per hour and key) must be ≤ 0 "
        "(demand_grain_rel_tol, default)"
    )
    assert details == groups
    short = "required check failed: unmatched_edges — unmatched_rate must be ≤ 0.5 % (x, default): overall: observed 2 %"
    assert split_reason(short) == (short, [])
    from gatecheck.render.verdict import render_markdown, render_text

    text = render_text(verdicts["no-go"].model_copy(update={"reasons": [reason]}))
    why = text.split("why:\n")[1].splitlines()
    assert why == [f"  - {headline}:", *[f"      {g}" for g in groups]]
    markdown = render_markdown(verdicts["no-go"].model_copy(update={"reasons": [reason]}))
    assert f"- {headline}:\n" + "".join(f"  - {g}\n" for g in groups) in markdown
