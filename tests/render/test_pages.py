"""The status pages: the phase chain (`GET /`), a phase's page, the HTML export — rendered by
the real templates, served by the real app, and read in a real browser (Debian's chromium)
against the running demo service."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from gatecheck.cli import app
from gatecheck.durations import format_duration
from gatecheck.ledger import SqliteLedger
from gatecheck.render.describe import format_group
from gatecheck.render.html import PhaseInfo, PhasePage, check_charts, render_phase, timeline
from gatecheck.results import Outcome, Verdict, VerdictState
from gatecheck.service.app import create_app
from gatecheck.service.core import SESSION_COOKIE, Service

from ..browser import Browser
from ..conftest import AS_OF, PROJECT, chromium, copy_config, evaluate, local_http

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
HOSTILE = "<script>document.documentElement.setAttribute('data-pwned','script')</script>"
HOSTILE_IMG = "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','img')\">"


# ---------------------------------------------------------------- reading a page


class _Elements(HTMLParser):
    """The text inside every element that has ``attribute``, keyed by its value."""

    def __init__(self, attribute: str) -> None:
        super().__init__()
        self.attribute = attribute
        self.found: dict[str, list[str]] = {}
        self.attributes: dict[str, dict[str, str]] = {}
        self._open: list[tuple[str | None, str]] = []  # (key, tag)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "img", "input", "meta", "link", "circle", "rect", "line", "polyline"):
            return
        values = {k: v or "" for k, v in attrs}
        key = values.get(self.attribute)
        if key is not None:
            self.found[key] = []
            self.attributes[key] = values
        self._open.append((key, tag))

    def handle_endtag(self, tag: str) -> None:
        if all(opened != tag for _, opened in self._open):
            return  # the end of an element not tracked (an SVG shape)
        while self._open:
            _, opened = self._open.pop()
            if opened == tag:
                break

    def handle_data(self, data: str) -> None:
        for key, _ in self._open:
            if key is not None:
                self.found[key].append(data)


def elements(page: str, attribute: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    parser = _Elements(attribute)
    parser.feed(page)
    return {k: " ".join(" ".join(v).split()) for k, v in parser.found.items()}, parser.attributes


def words(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------- rendering (no browser)


def test_a_timeline_merges_equal_neighbours_and_places_them_in_time() -> None:
    since = AS_OF - 10 * HOUR
    points = [
        (since - HOUR, VerdictState.NO_GO),  # before the range: not drawn
        (since, VerdictState.GO),
        (since + HOUR, VerdictState.GO),
        (since + 5 * HOUR, VerdictState.NO_GO),
        (since + 6 * HOUR, VerdictState.INCONCLUSIVE),
    ]
    line = timeline(points, since, AS_OF)
    assert [(s.verdict, s.count, s.x, s.width) for s in line.spans] == [
        (VerdictState.GO, 2, 0.0, 50.0),
        (VerdictState.NO_GO, 1, 50.0, 10.0),
        (VerdictState.INCONCLUSIVE, 1, 60.0, 40.0),
    ]
    assert line.summary == "last 10h: 2 GO, 1 NO-GO, 1 INCONCLUSIVE"
    assert timeline([], since, AS_OF).summary == "no evaluation recorded in the last 10h"


@pytest.fixture(scope="module")
def no_go(warehouse: Path) -> Verdict:
    """A real NO-GO: warehouse-release on the unmatched-edges data (one failing group)."""
    from gatecheck.config import load_project

    from ..conftest import warehouse_env

    project = load_project(PROJECT, environ=warehouse_env(warehouse, "unmatched-edges"))
    return asyncio.run(evaluate(project, "warehouse-release", AS_OF))


def test_a_checks_chart_draws_each_evaluation_against_the_threshold(no_go: Verdict) -> None:
    history = [no_go.model_copy(update={"as_of": AS_OF - k * HOUR}) for k in (3, 2, 1, 0)]
    (chart,) = check_charts(history, "unmatched_edges")
    assert chart.title == "unmatched_rate" and chart.points == 4
    assert chart.threshold.startswith("≤ 0.5 %")
    assert len(chart.failing) == 4  # every evaluation failed: each marked
    xs = [float(p.split(",")[0]) for p in chart.line.split()]
    assert xs == sorted(xs) and xs[0] < xs[-1]  # oldest left, newest right
    # The observed value (0.025) is above the threshold (0.005): higher on the chart (lower y).
    assert chart.threshold_y is not None and chart.failing[0][1] < chart.threshold_y


def test_the_phase_page_shows_the_failing_group_its_value_and_the_thresholds_provenance(no_go: Verdict) -> None:
    page = render_phase(
        PhasePage(PhaseInfo.of_verdict(no_go), no_go, timeline([], AS_OF - HOUR, AS_OF), [no_go]), AS_OF, 60
    )
    checks, attributes = elements(page, "data-suite")
    assert attributes["unmatched_edges"]["data-outcome"] == "fail"
    edges = checks["unmatched_edges"]
    assert "edge_type=start->first_segment" in edges and "2.5 %" in edges  # 0.025, a share
    assert "≤ 0.5 % (unmatched_edge_rate_max, default)" in edges
    assert "thresholds.yaml: defaults.unmatched_edge_rate_max" in edges
    assert "evidence: edges = " in edges and "minimum 100" in edges
    assert attributes["freshness_lag"]["data-outcome"] == "pass"
    assert "Why NO-GO" in page and '<meta http-equiv="refresh" content="60">' in page


def test_hostile_text_from_configuration_and_sources_is_shown_as_text(no_go: Verdict) -> None:
    """A suite description and a group value holding markup: escaped, never markup."""
    checks = list(no_go.checks)
    edges = checks[0]
    failing = edges.expectations[0].failing_groups[0]
    hostile_group = failing.model_copy(update={"group": {"edge_type": HOSTILE_IMG}})
    expectation = edges.expectations[0].model_copy(update={"failing_groups": [hostile_group]})
    checks[0] = edges.model_copy(update={"description": HOSTILE, "expectations": [expectation]})
    verdict = no_go.model_copy(update={"checks": checks, "reasons": [HOSTILE], "description": HOSTILE})
    page = render_phase(PhasePage(PhaseInfo.of_verdict(verdict), verdict, timeline([], AS_OF, AS_OF)), AS_OF, None)
    assert "<script>document" not in page and "<img src=x" not in page
    assert "&lt;script&gt;document.documentElement" in page
    assert "&lt;img src=x onerror=" in page
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert policy is not None and "default-src &#39;none&#39;;" in policy.group(1)  # no script may run
    assert "script-src" not in policy.group(1)


# ---------------------------------------------------------------- the service's pages


class _NoEvaluations:
    """The service's evaluator for these tests: a page must never start an evaluation."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def evaluate(self, phase: str, **_: Any) -> Any:
        self.asked.append(phase)
        raise AssertionError("a page started an evaluation")

    async def aclose(self) -> None:
        return None


@pytest.fixture
def recorded(tmp_path: Path, no_go: Verdict, warehouse: Path) -> tuple[Service, _NoEvaluations, Path]:
    """The reference project's service, not scheduling anything, on a ledger holding a
    warehouse-release history (GO then NO-GO)."""
    from gatecheck.config import load_project

    from ..conftest import warehouse_env

    ledger_path = tmp_path / "history.db"
    ledger = SqliteLedger(ledger_path)
    now = datetime.now(UTC)
    go = no_go.model_copy(update={"verdict": VerdictState.GO, "reasons": ["all 4 required checks passed"]})
    for k in range(6, 0, -1):
        ledger.record((go if k > 2 else no_go).model_copy(update={"as_of": now - k * HOUR}), 0.2)
    project = load_project(
        PROJECT,
        environ={**warehouse_env(warehouse, "unmatched-edges"), "GATECHECK_HISTORY_URL": f"sqlite:///{ledger_path}"},
    )
    engine = _NoEvaluations()
    return Service(project, ledger, [], engine=engine), engine, ledger_path  # type: ignore[arg-type]


def test_a_verdict_a_person_took_back_says_so_on_its_card_and_page(tmp_path: Path, no_go: Verdict) -> None:
    """The latest GO, invalidated since (`gatecheck invalidate`: its source was broken), still
    showed as a green GO to the on-call reading the chain — while the next phase's requires
    no longer took it. Its card and page say who took it back and why; before the decision,
    nothing is said."""
    from gatecheck.config import load_project
    from gatecheck.ledger.audit import AuditEvent

    ledger = SqliteLedger(tmp_path / "history.db")
    ledger.clock = lambda: AS_OF + 30 * MINUTE  # type: ignore[method-assign]  # not today's date
    go = no_go.model_copy(update={"verdict": VerdictState.GO, "reasons": ["all 6 required checks passed"]})
    ledger.record(go, 0.2)  # as of AS_OF
    ledger.append_audit([AuditEvent(
        at=AS_OF + 5 * MINUTE, kind="record-invalidated", phase="warehouse-release",
        group={"record": AS_OF.isoformat()}, by="bob", reason="the warehouse load was half done",
    )])  # fmt: skip
    project = load_project(PROJECT, environ={"GATECHECK_HISTORY_URL": f"sqlite:///{tmp_path / 'history.db'}"})

    def pages(age: timedelta) -> tuple[str, str]:
        service = Service(project, ledger, [], engine=_NoEvaluations(), clock=lambda: AS_OF + age)  # type: ignore[arg-type]

        async def go_get() -> tuple[str, str]:
            async with _client(service) as client:
                return (await client.get("/")).text, (await client.get("/phases/warehouse-release")).text

        return asyncio.run(go_get())

    said = "⚠ invalidated by bob at 2026-11-22T06:05:00Z (the warehouse load was half done): this GO no longer holds"
    chain_page, phase_page = pages(10 * MINUTE)
    cards, _ = elements(chain_page, "data-phase")
    assert said in words(cards["warehouse-release"]) and said in words(phase_page)
    assert 'data-withdrawn="true"' in phase_page
    before = pages(MINUTE)
    assert all("withdrawn" not in page for page in before)
    # a later GO under waiver W1, W1 revoked since
    from gatecheck.results import Waiver

    w1 = Waiver(id="W1", check=go.checks[0].suite, reason="backfill", by="alice", since=AS_OF, until=AS_OF + HOUR)
    waived = [go.checks[0].model_copy(update={"waiver": w1}), *go.checks[1:]]
    ledger.record(go.model_copy(update={"as_of": AS_OF + 20 * MINUTE, "checks": waived}), 0.2)
    ledger.append_audit([AuditEvent(
        at=AS_OF + 25 * MINUTE, kind="waiver-revoked", phase="warehouse-release", check=w1.check, waiver="W1",
        by="alice", reason="backfill stuck",
    )])  # fmt: skip
    chain_page, _ = pages(30 * MINUTE)
    assert "⚠ its waiver W1 was revoked by alice at 2026-11-22T06:25:00Z (backfill stuck): this GO no longer holds" in (
        words(elements(chain_page, "data-phase")[0]["warehouse-release"])
    )


def test_a_scheduled_phase_whose_latest_verdict_is_overdue_says_so_above_the_fold(
    tmp_path: Path, no_go: Verdict, browser: Browser
) -> None:
    """A GO from three hours ago looked like a GO now: the card showed "(3h ago)" in grey and
    the lead said every phase was GO, while the schedule (every 5m) had stopped. A scheduled
    phase's latest verdict older than three of its intervals is overdue, on its card and in
    the lead; an unscheduled phase (evaluated on request) never is."""
    from gatecheck.config import load_project

    ledger = SqliteLedger(tmp_path / "history.db")
    go = no_go.model_copy(update={"verdict": VerdictState.GO, "reasons": ["all 6 required checks passed"]})
    ledger.record(go, 0.2)  # as of AS_OF
    project = load_project(PROJECT, environ={"GATECHECK_HISTORY_URL": f"sqlite:///{tmp_path / 'history.db'}"})

    def pages(scheduled: list[str], age: timedelta) -> tuple[str, str]:
        service = Service(project, ledger, scheduled, engine=_NoEvaluations(), clock=lambda: AS_OF + age)  # type: ignore[arg-type]

        async def go_get() -> tuple[str, str]:
            async with _client(service) as client:
                chain_page, phase_page = (await client.get("/")).text, (await client.get("/phases/warehouse-release")).text
                listed = {p["phase"]: p for p in (await client.get("/api/v1/phases")).json()}
            said = listed["warehouse-release"]["overdue"]  # the API says it too, for dashboards
            assert (said is not None) is ('data-overdue="true"' in phase_page), said
            return chain_page, phase_page

        return asyncio.run(go_get())

    def chain(scheduled: list[str], age: timedelta) -> str:
        return pages(scheduled, age)[0]

    for scheduled, age, overdue in (
        (["warehouse-release"], 14 * MINUTE, False),  # within three intervals of 5m
        (["warehouse-release"], 3 * HOUR + 2 * MINUTE, True),
        ([], 3 * HOUR, False),  # not scheduled here: evaluated on request, never overdue
    ):
        page = chain(scheduled, age)
        cards, attributes = elements(page, "data-phase")
        assert (attributes["warehouse-release"].get("data-overdue") == "true") is overdue, cards["warehouse-release"]
        if overdue:
            assert "⚠ overdue: scheduled every 5m, the latest 3h2m ago: this GO may no longer hold" in cards["warehouse-release"]
            assert "1 of the verdicts below is overdue (warehouse-release)." in words(page)
        else:
            assert "overdue" not in cards["warehouse-release"] and 'class="overdue' not in page
        phase_page = pages(scheduled, age)[1]  # the phase's own page says it under its verdict
        assert ('data-overdue="true"' in phase_page) is overdue
    (tmp_path / "chain.html").write_text(chain(["warehouse-release"], 3 * HOUR))
    top = browser.measure(
        (tmp_path / "chain.html").as_uri(),
        "JSON.stringify([...document.querySelectorAll('.overdue, .overdue-lead')]"
        ".map(e => Math.round(e.getBoundingClientRect().top)))",
    )
    shown = json.loads(top)
    assert len(shown) == 2 and all(0 <= y < 1000 for y in shown), shown  # the lead and the card, in the first screen


def test_status_from_a_service_says_which_go_is_overdue(tmp_path: Path, no_go: Verdict) -> None:
    """`gatecheck status --url` showed a scheduled phase's three-hour-old GO as `go` and said
    every phase was GO, while the service itself said the GO was overdue (its API and pages)."""
    import threading

    from gatecheck.config import load_project
    from gatecheck.service.server import bind, make_server

    ledger = SqliteLedger(tmp_path / "history.db")
    ledger.record(no_go.model_copy(update={"verdict": VerdictState.GO, "reasons": ["all checks passed"]}), 0.2)
    project = load_project(PROJECT, environ={"GATECHECK_HISTORY_URL": f"sqlite:///{tmp_path / 'history.db'}"})

    def status(age: timedelta, scheduled: list[str]) -> tuple[str, dict[str, Any]]:
        service = Service(project, ledger, scheduled, engine=_NoEvaluations(), clock=lambda: AS_OF + age)  # type: ignore[arg-type]
        sock = bind("127.0.0.1", 0)
        server = make_server(service, "127.0.0.1", int(sock.getsockname()[1]))  # the API only: no schedule
        thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
        thread.start()
        try:
            while not server.started:
                time.sleep(0.05)
            base = f"http://127.0.0.1:{sock.getsockname()[1]}"
            text = CliRunner().invoke(app, ["status", "--url", base])
            document = CliRunner().invoke(app, ["status", "--url", base, "--format", "json"])
            pathed = CliRunner().invoke(app, ["status", "--url", f"{base}/api"])  # a path given: 404
            verdict_pathed = CliRunner().invoke(app, ["run", "--phase", "warehouse-release", "--url", f"{base}/api"])
            unknown = CliRunner().invoke(app, ["run", "--phase", "nope", "--url", base])
        finally:
            server.should_exit = True
            thread.join(timeout=15)
        assert text.exit_code == 0 and document.exit_code == 0, text.output + document.output
        assert pathed.exit_code == 2 and pathed.stderr == (  # one line, no web link (httpx's words had one)
            f"gatecheck: error: gatecheck service at {base}/api answered 404 to GET /api/v1/phases (--url is "
            "the service's address, without a path)\n"
        ), pathed.output
        assert verdict_pathed.exit_code == 2 and verdict_pathed.stderr == (  # not "does not know phase"
            f"gatecheck: error: --url: {base}/api answered 404 to /api/api/v1/phases/warehouse-release/verdict: "
            "not a gatecheck service's address (give it without a path)\n"
        ), verdict_pathed.output
        assert unknown.exit_code == 2 and unknown.stderr == (
            f"gatecheck: error: --phase: the service at {base} does not know phase 'nope'\n"
        ), unknown.output
        phases = {p["phase"]: p for p in json.loads(document.stdout)["phases"]}
        return text.stdout, phases["warehouse-release"]

    text, listed = status(3 * HOUR + 2 * MINUTE, ["warehouse-release"])
    (row,) = [line for line in text.splitlines() if "warehouse-release" in line.split()[:2]]
    assert "go (overdue)" in row, row
    assert row.endswith("overdue: scheduled every 5m, the latest 3h2m ago: this GO may no longer hold"), row
    assert "; overdue: warehouse-release (as of" in text, text
    assert listed["overdue"] == "overdue: scheduled every 5m, the latest 3h2m ago" and listed["verdict"] == "go"
    for age, scheduled in ((14 * MINUTE, ["warehouse-release"]), (3 * HOUR, [])):  # within 3 intervals; on request
        text, listed = status(age, scheduled)
        assert "overdue" not in text and listed["overdue"] is None, text


def _client(service: Service) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(service)), base_url="http://127.0.0.1")


def test_the_chain_and_phase_pages_come_from_the_ledger_without_evaluating(recorded) -> None:
    service, engine, _ = recorded

    async def go() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with _client(service) as client:
            return await client.get("/"), await client.get("/phases/warehouse-release"), await client.get("/phases/nope")

    chain, phase, unknown = asyncio.run(go())
    assert engine.asked == []
    assert chain.status_code == 200 and phase.status_code == 200 and unknown.status_code == 404
    assert "default-src 'none'" in chain.headers["content-security-policy"]
    cards, attributes = elements(chain.text, "data-phase")
    assert list(cards) == [g.phase for g in service.project.chain()]  # promotion order
    assert attributes["warehouse-release"]["data-verdict"] == "no-go" and "NO-GO" in cards["warehouse-release"]
    assert "last 48h: 4 GO, 2 NO-GO" in cards["warehouse-release"]
    assert "NOT EVALUATED" in cards["staging-predeploy"]
    # the first phase that is not GO is the next to clear
    assert "NEXT TO CLEAR" in cards["staging-predeploy"]
    assert sum("NEXT TO CLEAR" in text for text in cards.values()) == 1
    checks, _ = elements(phase.text, "data-suite")
    assert "edge_type=start->first_segment" in checks["unmatched_edges"]
    assert "over 6 recorded evaluations" in checks["unmatched_edges"]  # its chart


def test_beyond_loopback_a_page_takes_the_token_once_and_keeps_it_for_the_session(recorded) -> None:
    service, _, _ = recorded
    token = "page-t0ken-s3cret"
    service.api_token = token

    async def go() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with _client(service) as client:
            seen["anonymous"] = await client.get("/phases/warehouse-release")
            seen["wrong"] = await client.post("/session", data={"token": "nope", "next": "/"})
            seen["login"] = await client.post(
                "/session", data={"token": token, "next": "/phases/warehouse-release"}
            )
            seen["offsite"] = await client.post("/session", data={"token": token, "next": "//evil.example/"})
            seen["with_cookie"] = await client.get("/phases/warehouse-release")
            # the cookie is for reading pages: it does not let anyone start an evaluation
            seen["evaluate"] = await client.post("/api/v1/phases/warehouse-release/evaluate")
            client.cookies.clear()
            seen["bearer"] = await client.get("/", headers={"Authorization": f"Bearer {token}"})
            seen["after"] = await client.get("/")
        return seen

    seen = asyncio.run(go())
    assert seen["anonymous"].status_code == 401 and 'type="password"' in seen["anonymous"].text
    assert "edge_type=" not in seen["anonymous"].text
    assert seen["wrong"].status_code == 401 and "not the service's" in seen["wrong"].text
    login = seen["login"]
    assert login.status_code == 303 and login.headers["location"] == "/phases/warehouse-release"
    cookie = login.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert token not in cookie and token not in login.headers["location"]
    assert seen["offsite"].headers["location"] == "/"
    assert seen["with_cookie"].status_code == 200 and "edge_type=start-&gt;first_segment" in seen["with_cookie"].text
    assert seen["evaluate"].status_code == 401
    assert seen["bearer"].status_code == 200 and seen["after"].status_code == 401


def test_report_html_writes_the_phase_page_as_one_file(recorded, tmp_path: Path) -> None:
    _, _, ledger_path = recorded
    out = tmp_path / "report" / "warehouse-release.html"
    env = {"GATECHECK_HISTORY_URL": f"sqlite:///{ledger_path}"}
    args = ["report", "--phase", "warehouse-release", "--config", str(PROJECT), "--format", "html"]
    result = CliRunner().invoke(app, [*args, "--output", str(out)], env=env)
    assert result.exit_code == 0, result.stderr
    page = out.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing fetched
    assert "<script" not in page and "http-equiv=\"refresh\"" not in page
    checks, _ = elements(page, "data-suite")
    assert "edge_type=start->first_segment" in checks["unmatched_edges"]
    none_yet = CliRunner().invoke(app, [*args[:2], "canary-10", *args[3:]], env=env)
    assert none_yet.exit_code == 2 and "no recorded evaluation of canary-10" in none_yet.stderr


def test_run_format_html_is_the_phase_page_of_the_verdict(project_for, tmp_path: Path, warehouse: Path) -> None:
    from ..conftest import warehouse_env

    out = tmp_path / "run.html"
    result = CliRunner().invoke(
        app,
        ["run", "--phase", "warehouse-release", "--config", str(PROJECT), "--as-of", AS_OF.isoformat(),
         "--format", "html", "--output", str(out)],
        env={**warehouse_env(warehouse, "unmatched-edges"), "GATECHECK_HISTORY_URL": f"sqlite:///{tmp_path / 'h.db'}"},
    )  # fmt: skip
    assert result.exit_code == 1, result.stderr  # NO-GO
    checks, attributes = elements(out.read_text(), "data-suite")
    assert attributes["unmatched_edges"]["data-outcome"] == "fail"
    # one evaluation draws no chart (a line needs two points); the failing group leads the card
    assert "recorded evaluation" not in checks["unmatched_edges"]
    assert "unmatched_rate 2.5 % at edge_type=start->first_segment — must be ≤ 0.5 %" in checks["unmatched_edges"]


# ---------------------------------------------------------------- in a real browser


def test_the_stylesheet_reaches_the_browser_whole(recorded, tmp_path: Path, browser: Browser) -> None:
    """The inlined stylesheet is not HTML-escaped (its quotes became &#34; and Chromium dropped
    the font declaration: serif everywhere). Chromium reads the computed font family of a
    page, a copy of it with a probe script (the page itself allows none)."""
    service, _, _ = recorded

    async def go() -> str:
        async with _client(service) as client:
            return (await client.get("/phases/warehouse-release")).text

    page = asyncio.run(go())
    assert "&#34;" not in page.split("<style>")[1].split("</style>")[0]
    probe = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page).replace(
        "</body>",
        "<script>document.body.setAttribute('data-font', getComputedStyle(document.body).fontFamily)</script></body>",
    )
    (tmp_path / "probe.html").write_text(probe)
    dom = browser.dom((tmp_path / "probe.html").as_uri())
    font = re.search(r'data-font="([^"]*)"', dom)
    assert font is not None, dom[-500:]
    assert "Segoe UI" in font.group(1).replace("&quot;", '"') and "system-ui" in font.group(1)


def pictures(tmp_path: Path) -> Path:
    """Where the screenshots go: a temporary directory, never the repository; the README's
    pictures are retaken on purpose by docs/screenshots/retake.sh (GATECHECK_SCREENSHOTS)."""
    chosen = os.environ.get("GATECHECK_SCREENSHOTS")
    return Path(chosen) if chosen else tmp_path


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`gatecheck demo --serve --scenario dlq-spike` on a copy of the reference project where
    warehouse-release also needs a 48h soak and production 5 stream replicas (so the chain
    holds GO, NO-GO, INCONCLUSIVE and ROLLBACK at once) and a suite's description carries markup that must not run."""
    chromium()
    root = copy_config(tmp_path_factory.mktemp("pages") / "config")
    project = yaml.safe_load((root / "gatecheck.yaml").read_text())
    # One cycle at the start, then quiet (a cycle of every phase costs seconds of CPU that the
    # other tests need): the soak test asks for its second evaluation itself.
    project["service"]["interval"] = "1h"
    (root / "gatecheck.yaml").write_text(yaml.safe_dump(project))
    # Production's streams hold 3 replicas on the demo's cluster; asking for 5 keeps a NO-GO
    # in the chain (prod-predeploy: stream_topology).
    thresholds = yaml.safe_load((root / "thresholds.yaml").read_text())
    thresholds["environments"]["production"]["stream_replicas"] = 5
    (root / "thresholds.yaml").write_text(yaml.safe_dump(thresholds))
    gate = yaml.safe_load((root / "gates" / "warehouse-release.yaml").read_text())
    gate["soak"] = {"duration": "48h", "max_gap": "1h"}
    (root / "gates" / "warehouse-release.yaml").write_text(yaml.safe_dump(gate))
    # (in a suite the screenshot pages do not show: they illustrate the README)
    suite = yaml.safe_load((root / "suites" / "unmatched_edges.yaml").read_text())
    suite["description"] = f"Edges {HOSTILE}{HOSTILE_IMG}"
    (root / "suites" / "unmatched_edges.yaml").write_text(yaml.safe_dump(suite))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECHECK_")}
    from ..conftest import served_bases
    from ..service.test_service_process import gatecheck

    with open(root / "service.log", "w") as log:
        process = subprocess.Popen(
            [gatecheck(), "demo", "--config", str(root), "--serve", "--scenario", "dlq-spike",
             "--listen", "127.0.0.1:0"],
            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True,
        )  # fmt: skip
    try:
        (base,) = served_bases(root / "service.log", process, timeout=120)
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (root / "service.log").read_text()
            assert time.monotonic() < deadline, "the demo service did not judge every phase"
            try:
                listed = local_http.get(f"{base}/api/v1/phases", timeout=2).json()
                if all(p["verdict"] for p in listed):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        yield base, root
    finally:
        process.kill()
        process.wait(timeout=10)
        # killed, the demo could not stop its servers: they are stopped here
        for server in ("nats", "postgres"):
            subprocess.run(["pkill", "-f", str(root / ".gatecheck" / server)], check=False)


def test_the_chain_page_shows_every_verdict_in_words(demo_page: tuple[str, Path], tmp_path: Path, browser: Browser) -> None:
    base, _ = demo_page
    dom = browser.dom(f"{base}/")
    listed = {p["phase"]: p["verdict"] for p in local_http.get(f"{base}/api/v1/phases").json()}
    cards, attributes = elements(dom, "data-phase")
    assert list(cards) == list(listed)  # promotion order, every phase
    shown = {}
    for phase, text in cards.items():
        word = {"go": "GO", "no-go": "NO-GO", "inconclusive": "INCONCLUSIVE", "rollback": "ROLLBACK"}
        state = attributes[phase]["data-verdict"]
        assert state == listed[phase]  # the same verdict as the API
        assert re.search(rf"(^|\s){re.escape(word[state])}(\s|$)", text), (phase, text)
        shown[phase] = state
    assert set(shown.values()) == {"go", "no-go", "inconclusive", "rollback"}
    first_not_go = next(p for p, v in listed.items() if v != "go")
    assert "NEXT TO CLEAR" in cards[first_not_go]
    browser.screenshot(f"{base}/", pictures(tmp_path) / "chain.png")


@pytest.fixture(scope="module")
def no_go_page(demo_page: tuple[str, Path], browser: Browser) -> str:
    """The DOM of the demo's NO-GO phase page in chromium (prod-predeploy: stream_topology
    fails)."""
    base, _ = demo_page
    return browser.dom(f"{base}/phases/prod-predeploy")


def test_a_no_go_phase_page_shows_its_failing_group_and_observed_value(
    demo_page: tuple[str, Path], no_go_page: str, tmp_path: Path,
    browser: Browser,
) -> None:
    base, _ = demo_page
    verdict = Verdict.model_validate(local_http.get(f"{base}/api/v1/phases/prod-predeploy/verdict").json())
    assert verdict.verdict is VerdictState.NO_GO
    failing = [
        (check.suite, group)
        for check in verdict.checks
        if check.outcome is Outcome.FAIL
        for expectation in check.expectations
        for group in expectation.failing_groups
    ]
    assert failing
    dom = no_go_page
    checks, attributes = elements(dom, "data-suite")
    for suite, group in failing:
        assert attributes[suite]["data-outcome"] == "fail"
        assert f"{format_group(group.group)} {group.observed_value}" in checks[suite]
    assert "Why NO-GO" in dom
    browser.screenshot(f"{base}/phases/prod-predeploy", pictures(tmp_path) / "phase-no-go.png")


def test_the_soak_bar_says_the_verdicts_coverage(demo_page: tuple[str, Path], browser: Browser) -> None:
    base, root = demo_page
    ledger = SqliteLedger(root / ".gatecheck" / "served.db")
    if len(ledger.history("warehouse-release")) < 2:  # a coverage above 0s to compare
        asked = local_http.post(f"{base}/api/v1/phases/warehouse-release/evaluate", timeout=60)
        assert asked.status_code == 200, asked.text
    assert len(ledger.history("warehouse-release")) >= 2
    for _ in range(5):
        dom = browser.dom(f"{base}/")
        cards, attributes = elements(dom, "data-phase")
        as_of = datetime.fromisoformat(attributes["warehouse-release"]["data-as-of"])
        record = next((r for r in ledger.history("warehouse-release") if r.as_of == as_of), None)
        if record is not None:
            break
        time.sleep(1)  # the card came from an evaluation not yet readable: look again
    assert record is not None
    soak = record.to_verdict().soak
    assert soak is not None and not soak.covered and soak.coverage > timedelta(0)
    assert f"soak {format_duration(soak.coverage)} of 48h" in cards["warehouse-release"]


def test_planted_markup_does_not_run_in_the_browser(demo_page: tuple[str, Path], tmp_path: Path, browser: Browser) -> None:
    base, _ = demo_page
    # The control: the same markup, unescaped in a page without the policy, does run here.
    control = tmp_path / "control.html"
    control.write_text(f"<!doctype html><html><body><p>{HOSTILE}{HOSTILE_IMG}</p></body></html>")
    assert 'data-pwned="' in browser.dom(control.as_uri())
    dom = browser.dom(f"{base}/phases/staging-soak")
    root = re.search(r"<html[^>]*>", dom)
    assert root is not None and "data-pwned" not in root.group(0), dom[:3000]  # neither ran
    checks, _ = elements(dom, "data-suite")
    assert f"Edges {HOSTILE}{HOSTILE_IMG}" in checks["unmatched_edges"]  # shown, as text


def test_the_exported_page_opens_from_a_file_with_no_network(demo_page: tuple[str, Path], tmp_path: Path, browser: Browser) -> None:
    base, _ = demo_page
    out = tmp_path / "prod-predeploy.html"
    result = CliRunner().invoke(
        app, ["report", "--phase", "prod-predeploy", "--url", base, "--format", "html", "--output", str(out)]
    )
    assert result.exit_code == 0, result.stderr
    page = out.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    # every request the page could make goes to a proxy that is not there
    dom = browser.dom(out.as_uri(), offline=True)
    checks, attributes = elements(dom, "data-suite")
    assert attributes["stream_topology"]["data-outcome"] == "fail"
    assert "kind=stream" in checks["stream_topology"]


# ---------------------------------------------------------------- read in ten seconds

#: The window an on-call engineer reads the page in (the issue's "above the fold").
FOLD = 1000
SANS = ("system-ui", "sans-serif")


def test_each_phase_page_puts_the_verdict_its_reason_and_the_blocking_check_above_the_fold(
    demo_page: tuple[str, Path],
    browser: Browser,
) -> None:
    """On the served demo (GO, NO-GO, INCONCLUSIVE and ROLLBACK at once), in a 1400×1000
    window: the verdict, its first reason and the most urgent check card come first; a
    rollback trigger before a failure, a failure before an error, passes folded away."""
    from ..browser import PHASE_PAGE

    base, _ = demo_page
    listed = {p["phase"]: p["verdict"] for p in local_http.get(f"{base}/api/v1/phases").json()}
    words = {"go": "GO", "no-go": "NO-GO", "inconclusive": "INCONCLUSIVE", "rollback": "ROLLBACK"}
    seen = set()
    for phase, _state in listed.items():
        verdict = Verdict.model_validate(local_http.get(f"{base}/api/v1/phases/{phase}/verdict").json())
        page = browser.measure(f"{base}/phases/{phase}", PHASE_PAGE, 1400, FOLD)
        seen.add(verdict.verdict.value)
        assert page["verdict"] == words[verdict.verdict.value], (phase, page)
        assert page["reason"].startswith(verdict.reasons[0][:60]), (phase, page["reason"])
        assert page["verdict_bottom"] < FOLD and page["reason_bottom"] < FOLD, (phase, page)
        assert page["font"].startswith(SANS[0]) and page["font"].endswith(SANS[1]), page["font"]
        ranks = ["rollback", "blocking", "error", "inconclusive", "waived", "advisory", "passed"]
        assert page["standings"] == sorted(page["standings"], key=ranks.index), (phase, page["standings"])
        rolled = [c for c in verdict.checks if c.role == "rollback" and c.outcome is Outcome.FAIL]
        blocking = [
            c for c in verdict.checks
            if c.outcome is Outcome.FAIL and c.role == "required" and c.waiver is None
        ]  # fmt: skip
        if rolled or blocking:  # the first card is the one that decided, above the fold
            first = page["first"]
            assert first["standing"] == ("rollback" if rolled else "blocking"), (phase, first)
            assert first["suite"] == (rolled or blocking)[0].suite, (phase, first)
            assert first["bottom"] < FOLD, (phase, first)
            assert "must be" in first["headline"], first  # its observed value against its threshold
        if verdict.verdict is VerdictState.GO:
            assert set(page["standings"]) <= {"passed", "advisory", "waived"} and page["passed_open"]
        elif page["standings"] and page["standings"][0] != "passed":
            assert not page["passed_open"], (phase, page)  # the passes are a click away
    assert {"go", "no-go", "rollback"} <= seen, seen


def test_the_chain_cards_are_a_few_lines_each(demo_page: tuple[str, Path], browser: Browser) -> None:
    from ..browser import CHAIN_PAGE

    base, _ = demo_page
    cards = browser.measure(f"{base}/", CHAIN_PAGE, 1400, FOLD)
    assert len(cards) == len(local_http.get(f"{base}/api/v1/phases").json())
    assert {c["verdict"] for c in cards} >= {"go", "no-go", "rollback"}
    for card in cards:
        assert card["reason_lines"] <= 2, card  # the first reason, clipped; the rest on the phase page
        assert card["height"] < 260, card  # head, when, one reason, soak, history: a few lines
        assert card["font"].startswith(SANS[0]) and card["font"].endswith(SANS[1]), card


def test_a_waived_failure_is_first_and_visibly_not_blocking(no_go: Verdict, tmp_path: Path, browser: Browser) -> None:
    """A GO under a waiver, exported as one file: the waived check comes first, badged WAIVED
    FAIL in a dashed amber card, never the red of a blocking failure."""
    from gatecheck.render.html import render_verdict_page
    from gatecheck.results import Waiver

    from ..browser import PHASE_PAGE

    waiver = Waiver(
        id="W7", check="unmatched_edges", reason="vendor backfill", by="alice",
        since=AS_OF - HOUR, until=AS_OF + HOUR,
    )  # fmt: skip
    checks = [c.model_copy(update={"waiver": waiver}) if c.outcome is Outcome.FAIL else c for c in no_go.checks]
    waived = no_go.model_copy(
        update={"checks": checks, "verdict": VerdictState.GO, "reasons": ["all required checks passed or were waived (W7)"]}
    )
    path = tmp_path / "waived.html"
    path.write_text(render_verdict_page(waived))
    style = """(() => { const a = document.querySelector('section.checks article.check');
      const badge = a.querySelector('h3 .outcome');
      return {badge: badge.textContent.trim(), color: getComputedStyle(badge).backgroundColor,
              border: getComputedStyle(a).borderLeftStyle}; })()"""
    page = browser.measure(path.as_uri(), PHASE_PAGE, 1400, FOLD)
    card = browser.measure(path.as_uri(), style, 1400, FOLD)
    assert page["verdict"] == "GO" and page["first"]["standing"] == "waived"
    assert page["first"]["suite"] == "unmatched_edges" and page["first"]["bottom"] < FOLD
    assert card["badge"] == "WAIVED FAIL" and card["border"] == "dashed"
    assert card["color"] != "rgb(198, 40, 40)"  # not the blocking red (--nogo)


def test_the_chain_page_shows_each_slo_budget_and_its_burn(demo_page: tuple[str, Path], browser: Browser) -> None:
    """The status page's error budgets, read in a real browser: each SLO check of a phase's
    latest verdict with the budget left (the same figure as the API's document) and the burn
    in each window its rules read."""
    base, _ = demo_page
    dom = browser.dom(f"{base}/")
    budgets, attributes = elements(dom, "data-slo")
    document = local_http.get(f"{base}/api/v1/phases/staging-soak/verdict").json()
    slos = {c["suite"]: c["slo"] for c in document["checks"] if c.get("slo")}
    assert set(slos) == {"normalize_success_slo", "normalize_latency_slo"}
    assert {k for k in budgets if k.startswith("staging-soak/")} == {f"staging-soak/{s}" for s in slos}
    for suite, found in slos.items():
        shown = budgets[f"staging-soak/{suite}"]
        remaining = found["budget_remaining"]
        assert float(attributes[f"staging-soak/{suite}"]["data-budget"]) == pytest.approx(remaining)
        if remaining >= 0:
            assert f"{remaining:.1%} left (48h)" in shown, shown
        else:  # dlq-spike: dead letters are bad messages
            used = 1 - remaining
            assert f"spent, {used:.1%} used (48h)" in shown or f"spent, {used:,.0f}x used (48h)" in shown, shown
        firing = [r["rule"] for r in found["rules"] if r["firing"]]
        assert ("burning: " + ", ".join(firing) in shown) if firing else "burning" not in shown
        # the burn in every window its rules read, on hover (and on the phase page)
        assert attributes[f"staging-soak/{suite}"]["title"].startswith(f"{suite}: "), attributes
        assert "; burn 5m " in attributes[f"staging-soak/{suite}"]["title"]
