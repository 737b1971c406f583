"""Notifications on verdict change, delivered to a real local HTTP receiver.

The verdicts come from a scripted evaluator (what is under test is when and how the service
tells people, not how a gate is judged); the deliveries are real HTTP to a real server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from gatecheck.cli import app
from gatecheck.config import load_project
from gatecheck.demo.metrics import STOP_POLL_S
from gatecheck.evaluation.engine import Evaluation
from gatecheck.ledger import SqliteLedger
from gatecheck.results import (
    CheckResult,
    ExpectationResult,
    FailingGroup,
    Outcome,
    Threshold,
    Verdict,
    VerdictState,
    Window,
)
from gatecheck.service.collector import VerdictCollector
from gatecheck.service.core import Service

SECRET_PATH = "/hooks/T000/B000/s3cret-token"


class Receiver:
    """A webhook receiver: records each POST; answers from a script of status codes (then
    200); ``hang`` holds every answer until released."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.hang = threading.Event()
        self.hang.set()
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["content-length"]))
                body = json.loads(raw)
                receiver.arrived.set()
                receiver.hang.wait(30)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.received.append(
                    {"path": self.path, "body": body, "status": status, "headers": headers, "raw": raw}
                )
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(STOP_POLL_S,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"

    def close(self) -> None:
        self.hang.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Any:
    found = Receiver()
    yield found
    found.close()


def verdict(state: VerdictState, at: int = 0) -> Verdict:
    as_of = datetime(2026, 11, 24, 6, 0, tzinfo=UTC) + timedelta(minutes=at)
    window = Window(
        start=as_of - timedelta(hours=1), end=as_of, length=timedelta(hours=1), settle=timedelta(0)
    )
    failing = state in (VerdictState.NO_GO, VerdictState.ROLLBACK)
    expectation = ExpectationResult(
        type="expect_column_values_to_be_between",
        column="newest_age_s",
        outcome=Outcome.FAIL if failing else Outcome.PASS,
        observed_value=912 if failing else 12,
        thresholds=[Threshold(name="newest_event_age_max_s", value=300, bound="max", provenance="default",
                              key="thresholds.yaml: defaults.newest_event_age_max_s")],
        failing_groups=[FailingGroup(group={"source_table": "stream_trace_events"}, observed_value=912)]
        if failing else [],
    )  # fmt: skip
    check = CheckResult(
        suite="events_arriving", source="warehouse", role="required",
        outcome=Outcome.FAIL if failing else Outcome.PASS, window=window, rows=1, expectations=[expectation],
    )  # fmt: skip
    return Verdict(
        phase="release", environment="staging", as_of=as_of, verdict=state,
        reasons=["required check failed: events_arriving"] if failing else ["all 1 required checks passed"],
        checks=[check], config_hash="x", gatecheck_version="0",
    )  # fmt: skip


class Scripted:
    """An evaluator answering the verdicts it was given, in order."""

    def __init__(self, verdicts: list[Verdict]) -> None:
        self.verdicts = list(verdicts)

    async def evaluate(self, phase: str, *, requested_by: Any = None, lease: Any = None) -> Evaluation:
        return Evaluation(verdict=self.verdicts.pop(0), duration_s=0.01, recorded=False)

    async def warm_up(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def project_with(tmp_path: Path, targets: list[dict[str, Any]], url: str) -> Any:
    root = tmp_path / "project"
    assert CliRunner().invoke(app, ["init", str(root)]).exit_code == 0
    config = yaml.safe_load((root / "gatecheck.yaml").read_text())
    config["notify"] = targets
    config["service"]["url"] = "https://gatecheck.example"
    (root / "gatecheck.yaml").write_text(yaml.safe_dump(config))
    return load_project(root, environ={"HOOK_URL": url})


def run(service: Service, times: int) -> None:
    async def go() -> None:
        for _ in range(times):
            await service.evaluate_phase("release")
        await service.notifier.settled()  # the deliveries scheduled so far

    asyncio.run(go())


def counts(service: Service) -> dict[tuple[str, str], float]:
    families = text_string_to_metric_families(_exposition(service))
    return {
        (s.labels["target"], s.labels["result"]): s.value
        for f in families if f.name == "gatecheck_notifications" for s in f.samples if s.name.endswith("_total")
    }  # fmt: skip


def _exposition(service: Service) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(VerdictCollector(service))
    return generate_latest(registry).decode()


def test_one_message_per_change_none_on_a_repeat_and_suppressed_repeats(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    project = project_with(tmp_path, [{"name": "slack", "kind": "slack", "url": "${HOOK_URL}"}], receiver.url)
    G, N = VerdictState.GO, VerdictState.NO_GO
    script = [verdict(G, 0), verdict(N, 1), verdict(N, 2), verdict(G, 3), verdict(N, 4)]
    service = Service(project, SqliteLedger(tmp_path / "h.db"), ["release"], engine=Scripted(script))
    run(service, 5)
    # none → GO: no news; GO → NO-GO: sent; NO-GO again: not a change; NO-GO → GO: sent;
    # GO → NO-GO within 30 minutes of the last one: suppressed.
    texts = [r["body"]["text"] for r in receiver.received]
    assert len(texts) == 2
    assert texts[0].splitlines()[0] == "gatecheck: release (staging) GO → NO-GO"
    assert (
        "• events_arriving (required): newest_age_s must be ≤ 300 s (newest_event_age_max_s, default): "
        "source_table=stream_trace_events: observed 912 s"
    ) in texts[0].splitlines()
    assert texts[0].splitlines()[-1] == (
        "as of 2026-11-24T06:01:00Z · https://gatecheck.example/api/v1/phases/release/verdict"
    )
    assert texts[1].splitlines()[0] == "gatecheck: release (staging) NO-GO → GO"
    assert {r["path"] for r in receiver.received} == {SECRET_PATH}
    assert counts(service) == {
        ("slack", "sent"): 2, ("slack", "failed"): 0, ("slack", "suppressed"): 1, ("slack", "dropped"): 0
    }  # fmt: skip
    assert "s3cret" not in caplog.text and "T000" not in caplog.text  # the URL is a secret


def test_a_500_is_retried_and_a_dead_webhook_is_counted_as_failed(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    targets = [
        {"name": "ops", "kind": "json", "url": "${HOOK_URL}", "on": ["no-go", "rollback"], "retries": 2},
    ]
    project = project_with(tmp_path, targets, receiver.url)
    script = [verdict(VerdictState.GO), verdict(VerdictState.ROLLBACK, 1), verdict(VerdictState.NO_GO, 2)]
    service = Service(project, SqliteLedger(tmp_path / "h.db"), ["release"], engine=Scripted(script))
    service.notifier.backoff_s = 0.01
    receiver.statuses = [500, 500]  # the ROLLBACK message: two failures, then delivered
    run(service, 2)
    assert [r["status"] for r in receiver.received] == [500, 500, 200]
    body = receiver.received[-1]["body"]
    assert (body["phase"], body["previous"], body["verdict"]) == ("release", "go", "rollback")
    assert Verdict.model_validate(body["document"]).verdict is VerdictState.ROLLBACK
    receiver.statuses = [503, 503, 503]  # the NO-GO message: every attempt fails
    run(service, 1)
    assert len(receiver.received) == 6
    assert counts(service)[("ops", "sent")] == 1 and counts(service)[("ops", "failed")] == 1
    failed = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert failed == ["notification to ops about release failed: the webhook answered 503"]


def test_the_service_keeps_evaluating_while_the_receiver_hangs(receiver: Receiver, tmp_path: Path) -> None:
    project = project_with(tmp_path, [{"name": "slack", "kind": "slack", "url": "${HOOK_URL}"}], receiver.url)
    G, N = VerdictState.GO, VerdictState.NO_GO
    service = Service(
        project, SqliteLedger(tmp_path / "h.db"), ["release"],
        engine=Scripted([verdict(G), verdict(N, 1), verdict(N, 2), verdict(N, 3), verdict(N, 4)]),
    )  # fmt: skip
    receiver.hang.clear()

    async def go() -> None:
        await service.evaluate_phase("release")
        await service.evaluate_phase("release")  # GO → NO-GO: a message, whose answer hangs
        assert await asyncio.to_thread(receiver.arrived.wait, 10)
        for _ in range(3):  # evaluations go on while that delivery waits
            await service.evaluate_phase("release")
        assert service.states["release"].evaluations == 5
        assert receiver.received == [] and service.notifier.pending == 1
        receiver.hang.set()
        await service.notifier.settled()

    asyncio.run(go())
    assert len(receiver.received) == 1


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ({"name": "a", "kind": "slack"}, "give exactly one of url"),
        ({"name": "a", "kind": "slack", "url": "ftp://x", "url_file": "f"}, "give exactly one of url"),
        ({"name": "a", "kind": "slack", "url": "ftp://hooks"}, "url must be an http(s):// URL"),
        ({"name": "a", "kind": "teams", "url": "https://x"}, "kind"),
        ({"name": "a", "kind": "slack", "url": "https://x", "phases": ["nope"]}, "unknown phase 'nope'"),
        ({"name": "a", "kind": "slack", "url": "https://x", "on": ["maybe"]}, "on"),
        ({"name": "a", "kind": "slack", "url": "https://x", "retries": 50}, "retries"),
        ({"name": "a", "kind": "slack", "url_file": "missing.txt"}, "is not a file"),
        ({"name": "a", "kind": "json", "url": "http://127.0.0.1:99999/SECRETPATH"}, "port must be a number"),
        (
            {"name": "a", "kind": "json", "url": "ftp://hooks.example/SECRETPATH"},
            "url must be an http(s):// URL",
        ),
    ],
)
def test_a_bad_notify_target_is_refused_in_one_line(
    tmp_path: Path, target: dict[str, Any], problem: str
) -> None:
    root = tmp_path / "p"
    CliRunner().invoke(app, ["init", str(root)])
    config = yaml.safe_load((root / "gatecheck.yaml").read_text())
    config["notify"] = [target]
    (root / "gatecheck.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["validate", "--config", str(root)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("gatecheck: error: gatecheck.yaml") and problem in lines[0]
    ), lines
    assert "https://x" not in result.stderr or "ftp" in str(target)
    assert "SECRETPATH" not in result.stderr and "{'" not in lines[0]  # no URL, no Python dict


def test_any_failed_delivery_is_counted_and_logged_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A url_file naming an impossible port (it is read at delivery) once crashed the delivery
    task (OverflowError, never counted); then every later change was "suppressed"."""
    targets = [
        {"name": "ops", "kind": "json", "url_file": "hook.txt", "on": ["no-go", "rollback"], "retries": 0}
    ]
    root = tmp_path / "project"
    root.mkdir()
    (root / "hook.txt").write_text("http://127.0.0.1:99999/SECRETPATH\n")
    project = project_with(tmp_path, targets, "unused")
    script = [verdict(VerdictState.GO), verdict(VerdictState.NO_GO, 1)]
    service = Service(project, SqliteLedger(tmp_path / "h.db"), ["release"], engine=Scripted(script))
    run(service, 2)
    assert counts(service)[("ops", "failed")] == 1 and counts(service)[("ops", "sent")] == 0
    failed = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed) == 1 and "\n" not in failed[0] and "SECRETPATH" not in caplog.text
    # The httpx log's URL filter outlives this service (the latest service's targets): a
    # target whose URL is not valid neither breaks a later request's log line nor shows in it.
    with caplog.at_level(logging.INFO, logger="httpx"):
        logging.getLogger("httpx").info("HTTP Request: POST %s", "http://127.0.0.1:99999/SECRETPATH")
    assert "SECRETPATH" not in caplog.text and "<notify webhook URL>" in caplog.text


def test_an_inconclusive_past_its_deadline_is_told_once_to_every_target(
    receiver: Receiver, tmp_path: Path
) -> None:
    """A gate's ``deadline: {then: notify}``: the verdict stays INCONCLUSIVE and the first
    evaluation past the deadline is news even to a target that is not told of INCONCLUSIVE
    (``on: [no-go]``); the next one past it is not news again."""
    from gatecheck.results import DeadlineStatus

    project = project_with(
        tmp_path, [{"name": "pager", "kind": "json", "url": "${HOOK_URL}", "on": ["no-go"]}], receiver.url
    )
    I = VerdictState.INCONCLUSIVE  # noqa: E741
    since = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)

    def pending(at: int, passed: bool) -> Verdict:
        status = DeadlineStatus(
            inconclusive_for=timedelta(hours=2), then="notify", since=since, passed=passed
        )
        return verdict(I, at).model_copy(update={"deadline": status})

    script = [pending(0, False), pending(60, False), pending(120, True), pending(180, True)]
    service = Service(project, SqliteLedger(tmp_path / "h.db"), ["release"], engine=Scripted(script))
    run(service, 4)
    (sent,) = [r["body"] for r in receiver.received]
    assert sent["text"].splitlines()[0] == (
        "gatecheck: release (staging) INCONCLUSIVE since 2026-11-24T06:00:00Z, past its deadline of 2h"
    )
    assert sent["verdict"] == "inconclusive" and sent["document"]["deadline"]["passed"] is True


#: CDEvents 0.4.1, testsuiterun.finished 0.2.0: the event's required shape, as the spec's
#: schema (schemas/testsuiterunfinished.json) states it — context and subject required, no
#: other keys; the outcome one of four; the environment's id required.
CDEVENT_SCHEMA = {
    "type": "object",
    "required": ["context", "subject"],
    "additionalProperties": False,
    "properties": {
        "context": {
            "type": "object",
            "additionalProperties": False,
            "required": ["version", "id", "source", "type", "timestamp"],
            "properties": {
                "version": {"type": "string", "minLength": 1},
                "id": {"type": "string", "minLength": 1},
                "source": {"type": "string", "minLength": 1},
                "type": {"enum": ["dev.cdevents.testsuiterun.finished.0.2.0"]},
                "timestamp": {"type": "string", "format": "date-time"},
            },
        },
        "subject": {
            "type": "object",
            "additionalProperties": False,
            "required": ["id", "content"],
            "properties": {
                "id": {"type": "string", "minLength": 1},
                "source": {"type": "string"},
                "content": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["outcome", "environment"],
                    "properties": {
                        "outcome": {"enum": ["success", "failure", "cancel", "error"]},
                        "severity": {"enum": ["low", "medium", "high", "critical"]},
                        "reason": {"type": "string"},
                        "environment": {
                            "type": "object", "additionalProperties": False, "required": ["id"],
                            "properties": {"id": {"type": "string", "minLength": 1}, "source": {"type": "string"}},
                        },
                        "testSuite": {
                            "type": "object", "additionalProperties": False, "required": ["id"],
                            "properties": {"id": {"type": "string", "minLength": 1}, "name": {"type": "string"},
                                           "version": {"type": "string"}, "uri": {"type": "string"}},
                        },
                    },
                },
            },
        },
    },
}  # fmt: skip


def test_a_change_is_two_cloudevents_the_sdk_reads_back(receiver: Receiver, tmp_path: Path) -> None:
    """A ``kind: cloudevents`` target gets each change as structured-mode CloudEvents 1.0 over
    HTTP: first the CDEvents test suite run, then gatecheck's own verdict change; a retried
    delivery carries the same ids."""
    import jsonschema
    from cloudevents.core.bindings.http import HTTPMessage, from_http_event

    project = project_with(
        tmp_path, [{"name": "bus", "kind": "cloudevents", "url": "${HOOK_URL}"}], receiver.url
    )
    G, N = VerdictState.GO, VerdictState.NO_GO
    receiver.statuses = [503]  # the first request fails once and is retried
    service = Service(
        project, SqliteLedger(tmp_path / "h.db"), ["release"], engine=Scripted([verdict(G, 0), verdict(N, 1)])
    )
    run(service, 2)
    assert [r["status"] for r in receiver.received] == [503, 200, 200]
    first, retried, second = receiver.received
    events = [from_http_event(HTTPMessage(headers=r["headers"], body=r["raw"])) for r in (retried, second)]
    assert all(
        r["headers"]["content-type"].startswith("application/cloudevents+json") for r in receiver.received
    )
    assert first["raw"] == retried["raw"]  # the same event again, the same id
    cdevent, changed = events
    assert [e.get_type() for e in events] == [
        "dev.cdevents.testsuiterun.finished.0.2.0",
        "dev.gatecheck.verdict.changed.v1",
    ]
    for event in events:
        assert event.get_specversion() == "1.0"
        assert event.get_source() == "https://gatecheck.example/api/v1/phases/release"
        assert event.get_subject() == "release"
        assert event.get_time() == datetime(2026, 11, 24, 6, 1, tzinfo=UTC)
    assert cdevent.get_id() != changed.get_id()
    data = cdevent.get_data()
    assert isinstance(data, dict)
    jsonschema.validate(data, CDEVENT_SCHEMA)
    assert data["context"]["id"] == cdevent.get_id() and data["context"]["type"] == cdevent.get_type()
    assert (
        data["subject"]["content"]["outcome"] == "failure"
        and data["subject"]["content"]["severity"] == "high"
    )
    assert data["subject"]["content"]["environment"] == {"id": "staging"}
    essentials = changed.get_data()
    assert isinstance(essentials, dict)
    assert (essentials["previous"], essentials["verdict"], essentials["as_of"]) == (
        "go",
        "no-go",
        "2026-11-24T06:01:00Z",
    )
    assert essentials["url"] == "https://gatecheck.example/api/v1/phases/release/verdict"
    assert essentials["checks"] == [
        {"suite": "events_arriving", "role": "required", "outcome": "fail", "reason": None}
    ]
    assert counts(service)[("bus", "sent")] == 1


def test_a_sources_text_is_one_line_and_never_a_slack_mention_or_link(receiver: Receiver, tmp_path: Path) -> None:
    """Slack's formatting reference: "There are three characters you must convert to HTML
    entities if they're not being used for their control purpose: Replace the ampersand, &,
    with &amp;; Replace the less-than sign, <, with &lt;; Replace the greater-than sign, >,
    with &gt;". A failing group's value comes from the source: it must not ping the channel,
    draw a link, or start a line that reads as another verdict."""
    planted = "t1\ngatecheck: release (staging) NO-GO → GO <!channel> <https://evil.example/|approve here> & co"
    failing = verdict(VerdictState.NO_GO, 1)
    (check,) = failing.checks
    groups = [FailingGroup(group={"source_table": planted}, observed_value=912)]
    expectation = check.expectations[0].model_copy(update={"failing_groups": groups})
    failing = failing.model_copy(update={"checks": [check.model_copy(update={"expectations": [expectation]})]})
    project = project_with(
        tmp_path,
        [{"name": "slack", "kind": "slack", "url": "${HOOK_URL}"},
         {"name": "hook", "kind": "json", "url": "${HOOK_URL}"}],
        receiver.url,
    )  # fmt: skip
    service = Service(project, SqliteLedger(tmp_path / "h.db"), ["release"], engine=Scripted([verdict(VerdictState.GO), failing]))
    run(service, 2)
    by_kind = {("document" in r["body"]): r["body"]["text"] for r in receiver.received}
    slack, webhook = by_kind[False], by_kind[True]
    for text in (slack, webhook):
        lines = text.splitlines()
        assert len(lines) == 3, lines  # the change, the one failing expectation, where to look
        assert lines[0] == "gatecheck: release (staging) GO → NO-GO"
        assert "source_table=t1\\ngatecheck: release (staging) NO-GO → GO" in lines[1]  # shown, escaped
    assert "<" not in slack and ">" not in slack.replace("→", "")
    assert "&lt;!channel&gt; &lt;https://evil.example/|approve here&gt; &amp; co" in slack
    assert "<!channel> <https://evil.example/|approve here> & co" in webhook  # JSON: the text as it is
