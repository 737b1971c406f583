"""The controller endpoints follow the service's exposure rules: a token when one is set
(Flagger's in metadata.token), the rate limit only for requests that start an evaluation."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from gatecheck.cli import app
from gatecheck.config import load_project
from gatecheck.ledger import SqliteLedger
from gatecheck.results import Verdict, VerdictState
from gatecheck.service.app import create_app
from gatecheck.service.auth import AUTH_FAILURES_PER_MINUTE, EVALUATE_PER_MINUTE
from gatecheck.service.core import Service

from ..service.test_notify import Scripted, verdict

TOKEN = "t0ken-for-tests"


def service_for(tmp_path: Path, verdicts: int) -> Service:
    root = tmp_path / "p"
    assert CliRunner().invoke(app, ["init", str(root)]).exit_code == 0
    project = load_project(root, environ={})
    script = Scripted([verdict(VerdictState.GO, i) for i in range(verdicts)])
    # The scripted verdicts are dated; the service's clock stands an hour after the first, so
    # max_age is judged the same on any day the suite runs.
    first = verdict(VerdictState.GO).as_of
    return Service(project, SqliteLedger(tmp_path / "h.db"), [], api_token=TOKEN, engine=script, clock=lambda: first + timedelta(hours=1))


def ask(service: Service, *requests: tuple[str, str, dict]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return [await client.request(method, url, **kwargs) for method, url, kwargs in requests]

    return asyncio.run(go())


def test_evaluating_requests_need_the_token_reads_do_not(tmp_path: Path) -> None:
    service = service_for(tmp_path, 3)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    flagger = {"name": "n", "namespace": "ns", "phase": "Progressing", "checksum": "c", "metadata": {"phase": "release"}}
    answers = ask(
        service,
        ("GET", "/api/v1/phases/release/verdict", {}),  # a read: open
        ("GET", "/api/v1/phases/release/verdict", {"params": {"fresh": "true"}}),
        ("GET", "/api/v1/phases/release/verdict", {"params": {"fresh": "true"}, "headers": bearer}),
        ("POST", "/api/v1/flagger/rollout", {"json": flagger}),
        ("POST", "/api/v1/flagger/rollout", {"json": {**flagger, "metadata": {"phase": "release", "token": "no"}}}),
        ("POST", "/api/v1/flagger/rollout", {"json": {**flagger, "metadata": {"phase": "release", "token": TOKEN}}}),
        ("POST", "/api/v1/flagger/rollout", {"json": flagger, "headers": bearer}),
    )
    assert [a.status_code for a in answers] == [200, 401, 200, 401, 401, 200, 200]
    assert answers[0].headers["gatecheck-evaluated"] == "false"
    assert answers[2].json()["verdict"] == "go"
    assert TOKEN not in "".join(a.text for a in answers)


def test_the_limit_is_the_projects_own_when_it_sets_one(tmp_path: Path) -> None:
    """Many rollouts behind one controller's address start more evaluations a minute than the
    default 30: service.evaluations_per_minute raises (or lowers) it — here 3: the fourth is
    429. A value under 1 is refused (exit 2)."""
    import yaml

    service = service_for(tmp_path, 5)
    root = tmp_path / "p"
    config = yaml.safe_load((root / "gatecheck.yaml").read_text())
    config["service"]["evaluations_per_minute"] = 3
    (root / "gatecheck.yaml").write_text(yaml.safe_dump(config))
    service.project = load_project(root, environ={})
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    fresh = ("GET", "/api/v1/phases/release/verdict", {"params": {"fresh": "true"}, "headers": bearer})
    assert [a.status_code for a in ask(service, *([fresh] * 4))] == [200, 200, 200, 429]
    config["service"]["evaluations_per_minute"] = 0
    (root / "gatecheck.yaml").write_text(yaml.safe_dump(config))
    refused = CliRunner().invoke(app, ["validate", "--config", str(root)])
    assert refused.exit_code == 2 and "service.evaluations_per_minute" in refused.output


def test_only_requests_that_start_an_evaluation_count_against_the_limit(tmp_path: Path) -> None:
    service = service_for(tmp_path, EVALUATE_PER_MINUTE + 1)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    fresh = ("GET", "/api/v1/phases/release/verdict", {"params": {"fresh": "true"}, "headers": bearer})
    recent = ("GET", "/api/v1/phases/release/verdict", {"params": {"max_age": "1d"}, "headers": bearer})
    answers = ask(service, *([fresh] * EVALUATE_PER_MINUTE), recent, fresh)
    codes = [a.status_code for a in answers]
    assert codes[:EVALUATE_PER_MINUTE] == [200] * EVALUATE_PER_MINUTE
    # The latest is recent enough: answered without an evaluation, so not limited.
    assert codes[EVALUATE_PER_MINUTE] == 200
    assert codes[-1] == 429
    assert service.states["release"].evaluations == EVALUATE_PER_MINUTE


def test_waivers_through_the_api_need_the_token_and_pass_the_same_checks(tmp_path: Path) -> None:
    service = service_for(tmp_path, 0)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    body = {"check": "events_arriving", "for": "2h", "reason": "backfill", "by": "alice"}
    answers = ask(
        service,
        ("POST", "/api/v1/phases/release/waivers", {"json": body}),
        ("POST", "/api/v1/phases/release/waivers", {"json": {**body, "for": "40d"}, "headers": bearer}),
        ("POST", "/api/v1/phases/release/waivers", {"json": {**body, "group": {"x": "1"}}, "headers": bearer}),
        ("POST", "/api/v1/phases/release/waivers", {"json": body, "headers": bearer}),
        ("POST", "/api/v1/waivers/W1/revoke", {"json": {"reason": "done", "by": "alice"}, "headers": bearer}),
        ("POST", "/api/v1/waivers/W1/revoke", {"json": {"reason": "again", "by": "alice"}, "headers": bearer}),
        ("GET", "/api/v1/audit", {"params": {"phase": "release"}}),
        ("POST", "/api/v1/waivers/W9/revoke", {"json": {"reason": "r", "by": "alice"}, "headers": bearer}),
        ("POST", "/api/v1/phases/release/waivers", {"json": {**body, "reason": "back\x1b[2Kfill"}, "headers": bearer}),
    )
    assert [a.status_code for a in answers] == [401, 422, 422, 201, 201, 422, 200, 404, 422]
    # The request's field names, not the CLI's flags.
    assert answers[1].json()["detail"] == "for: '40d': a decision lasts more than 0s and at most 30d"
    assert answers[3].json()["waiver"] == "W1" and answers[3].json()["kind"] == "waiver-created"
    assert "not active" in answers[5].json()["detail"]
    assert [(e["kind"], e["waiver"], e["by"]) for e in answers[6].json()] == [
        ("waiver-created", "W1", "alice"),
        ("waiver-revoked", "W1", "alice"),
    ]
    assert answers[7].json()["detail"] == "no waiver W9 on record"
    # A reason with a terminal escape (or a NUL, which PostgreSQL cannot store) is refused...
    assert answers[8].json()["detail"] == "reason: holds a control character ('\\x1b'): write plain text"
    # ...and one already in a trail (written before that check) is shown escaped by `gatecheck audit`.
    from gatecheck.ledger.audit import AuditEvent

    with SqliteLedger(tmp_path / "h.db") as ledger:
        ledger.append_audit([AuditEvent(at=answers[4].json()["at"], kind="approved", phase="release",
                                        by="alice", reason="back\x1b[2Kfill")])  # fmt: skip
    audit = CliRunner().invoke(app, ["audit", "--config", str(tmp_path / "p")], env={
        "GATECHECK_HISTORY_URL": f"sqlite:///{tmp_path / 'h.db'}"})
    assert audit.exit_code == 0, audit.output
    assert "back\\x1b[2Kfill" in audit.output and "\x1b" not in audit.output


def test_guessing_the_token_is_limited_on_every_door(tmp_path: Path) -> None:
    """Failed authentications count per client across the doors: after AUTH_FAILURES_PER_MINUTE
    wrong tokens (bearer header, Flagger's metadata.token, the login form) every further try
    is 429, the right token included, so guessing through one door is as slow as another."""
    wrong = {"Authorization": "Bearer guess"}
    flagger = {"name": "n", "namespace": "ns", "phase": "Progressing", "metadata": {"phase": "release", "token": "guess"}}
    doors = [
        ("GET", "/api/v1/phases/release/verdict", {"params": {"fresh": "true"}, "headers": wrong}),
        ("POST", "/api/v1/flagger/rollout", {"json": flagger}),
        ("POST", "/session", {"content": "token=guess&next=/", "headers": {"content-type": "application/x-www-form-urlencoded"}}),
        ("POST", "/api/v1/phases/release/evaluate", {"headers": wrong}),
    ]
    for door in doors:
        service = service_for(tmp_path / door[1].replace("/", "_"), 1)
        right = ("GET", "/api/v1/phases/release/verdict", {"params": {"fresh": "true"}, "headers": {"Authorization": f"Bearer {TOKEN}"}})
        codes = [a.status_code for a in ask(service, *([door] * (AUTH_FAILURES_PER_MINUTE + 5)), right)]
        refused = 401  # (the login form shows itself again, with 401)
        assert codes[:AUTH_FAILURES_PER_MINUTE] == [refused] * AUTH_FAILURES_PER_MINUTE, (door[1], codes)
        assert codes[AUTH_FAILURES_PER_MINUTE:] == [429] * 6, (door[1], codes)


def test_a_rebound_host_name_is_refused_without_a_token(tmp_path: Path) -> None:
    """DNS rebinding: a page of another site whose name now resolves to 127.0.0.1 sends its
    own Host. The loopback service (no token) answers only its own names."""
    root = tmp_path / "p"
    assert CliRunner().invoke(app, ["init", str(root)]).exit_code == 0
    project = load_project(root, environ={})
    service = Service(project, SqliteLedger(tmp_path / "h.db"), [], engine=Scripted([]))
    body = {"check": "events_arriving", "for": "30d", "reason": "r", "by": "mallory"}
    rebound = {"Host": "rebind.attacker.example:9464"}
    answers = ask(
        service,
        ("POST", "/api/v1/phases/release/waivers", {"json": body, "headers": rebound}),
        ("GET", "/api/v1/phases", {"headers": rebound}),
        ("GET", "/api/v1/phases", {"headers": {"Host": "localhost:9464"}}),
        ("GET", "/api/v1/phases", {"headers": {"Host": "127.0.0.1:9464"}}),
        ("GET", "/api/v1/phases", {"headers": {"Host": "[::1]:9464"}}),
    )
    assert [a.status_code for a in answers] == [400, 400, 200, 200, 200]
    assert service.ledger.audit(["release"]) == []  # no waiver was created


def test_known_hosts_from_the_settings() -> None:
    from gatecheck.service.middleware import KnownHosts

    def hosts(listen: str, url: str | None, extra: list[str]) -> KnownHosts:
        return KnownHosts(None, KnownHosts.allowed_for(listen, url, extra))

    local = hosts("127.0.0.1:9464", "https://gate.example.com/x", ["*.internal"])
    assert local.accepts("gate.example.com") and local.accepts("a.b.internal:443") and local.accepts("127.0.0.2")
    assert not local.accepts("example.com") and not local.accepts("") and not local.accepts("internal.evil")
    assert hosts("0.0.0.0:9464", None, []).accepts("anything.example")  # there the token guards changes
    assert not hosts("0.0.0.0:9464", None, ["gate"]).accepts("other")


def test_an_unscheduled_phase_has_one_answer_everywhere(tmp_path: Path) -> None:
    """A phase this service does not schedule: /api/v1/phases says what /verdict says (the
    ledger's latest), not null beside a GO."""
    service = service_for(tmp_path, 0)
    service.ledger.record(verdict(VerdictState.GO), 0.1)
    listed, document = ask(service, ("GET", "/api/v1/phases", {}), ("GET", "/api/v1/phases/release/verdict", {}))
    (release,) = [p for p in listed.json() if p["phase"] == "release"]
    assert release["scheduled"] is False
    assert release["verdict"] == document.json()["verdict"] == "go"
    assert release["as_of"] is not None


def test_a_controller_names_when_its_rollout_began_and_a_bad_time_is_422(tmp_path: Path) -> None:
    """`started` on a fresh evaluation travels with the requester to the engine (an SLO's
    consumption is counted from it, tests/evaluation/test_slo.py); a time that does not parse,
    or lies ahead of the service's clock, is refused in one line before anything runs."""

    class Remembering(Scripted):
        def __init__(self, verdicts: list[Verdict]) -> None:
            super().__init__(verdicts)
            self.asked: list[Any] = []

        async def evaluate(self, phase: str, *, requested_by: Any = None, lease: Any = None) -> Any:
            self.asked.append(requested_by)
            return await super().evaluate(phase, requested_by=requested_by, lease=lease)

    service = service_for(tmp_path, 1)
    script = Remembering([verdict(VerdictState.GO)])
    service.engine = script
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    now = service.clock()
    began = (now - timedelta(hours=2)).isoformat()
    answers = ask(
        service,
        ("GET", "/api/v1/phases/release/verdict", {"params": {"fresh": "true", "started": "yesterday"}, "headers": bearer}),
        ("GET", "/api/v1/phases/release/verdict",
         {"params": {"fresh": "true", "started": (now + timedelta(hours=1)).isoformat()}, "headers": bearer}),
        ("GET", "/api/v1/phases/release/verdict",
         {"params": {"fresh": "true", "rollout": "checkout", "started": began}, "headers": bearer}),
    )  # fmt: skip
    assert [a.status_code for a in answers] == [422, 422, 200]
    assert "started: 'yesterday' is not an ISO 8601 time" in answers[0].text
    assert "lies ahead of now" in answers[1].text
    (asked,) = script.asked
    assert (asked.name, asked.started) == ("checkout", now - timedelta(hours=2))
