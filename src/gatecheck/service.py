"""``gatecheck serve``: evaluate phases on a schedule, record them, serve gauges and an API.

One asyncio event loop holds everything: one task group runs a loop per interval (its grid
from APScheduler's interval trigger), uvicorn serves the FastAPI app. A per-phase lock keeps
evaluations of one phase from overlapping, whether started by the schedule or by
``POST /api/v1/phases/{phase}/evaluate``. Sources have their own timeouts, so a slow one
costs its own checks, never the schedule.

A loop that cannot die: any exception in one evaluation is logged with its traceback and
kept as that phase's ``last_error``; the service carries on. A failing source degrades
verdicts to INCONCLUSIVE (its checks are ``error``) and ``gatecheck_source_up`` to 0.

Shutdown (SIGTERM/SIGINT): uvicorn stops serving, then the schedule's task group is
cancelled and awaited — an evaluation in flight is dropped unrecorded, or, if its verdict is
complete, its record is written whole (one atomic INSERT) before the engine closes the ledger.
Only the service's own tasks are cancelled; nothing is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request  # a handler's annotation: FastAPI resolves it here

from gatecheck import __version__
from gatecheck._values import observed_number
from gatecheck.config import Project
from gatecheck.durations import parse_duration
from gatecheck.errors import ConfigError, GatecheckError, redact
from gatecheck.evaluation.engine import Engine, Evaluator
from gatecheck.ledger import Ledger, record_summary
from gatecheck.ledger.audit import AuditEvent
from gatecheck.results import Outcome, Requester, Verdict, VerdictState

if TYPE_CHECKING:
    from gatecheck.notify import Notifier
    from gatecheck.render.html import Card, PhasePage

T = TypeVar("T")
#: Seconds a status page's ledger read is reused.
PAGE_READ_TTL = 5.0
#: A browser session that gave the token lasts this long (seconds), at most this many at once.
SESSION_LIFETIME_S = 12 * 3600
MAX_SESSIONS = 1000
SESSION_COOKIE = "gatecheck_session"

log = logging.getLogger(__name__)


@dataclass
class PhaseState:
    """What the service knows of one phase (replaced whole after each evaluation)."""

    verdict: Verdict | None = None
    duration_s: float | None = None
    evaluated_at: datetime | None = None  # wall clock when the evaluation finished
    last_error: str | None = None
    evaluations: int = 0


@dataclass
class Service:
    """The scheduled evaluator and its state; the HTTP app and the collector are views of it."""

    project: Project = field(repr=False)  # its URLs may carry credentials
    ledger: Ledger
    phases: list[str]
    # Bearer token for state-changing endpoints (POST); required when listening beyond
    # loopback. Never logged or exported.
    api_token: str | None = field(default=None, repr=False)
    # Judge `requires` and soak only on records written since then (the demo's own run).
    recorded_since: datetime | None = None
    states: dict[str, PhaseState] = field(default_factory=dict)
    source_up: dict[tuple[str, str], bool] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    # Request-started evaluations under way, by phase (shared by concurrent requests).
    _inflight: dict[str, asyncio.Future[Verdict]] = field(default_factory=dict, repr=False)
    _cycles: set[asyncio.Task[Any]] = field(default_factory=set, repr=False)
    # Answers rendered once per new state and served as bytes: the exposition (None: render
    # at the next scrape) and each phase's verdict document with its ETag.
    _exposition: bytes | None = field(default=None, repr=False)
    _documents: dict[str, tuple[bytes, str]] = field(default_factory=dict, repr=False)
    # What evaluates for the service: `gatecheck serve` hands it a worker process
    # (gatecheck.worker.WorkerEvaluator); by default an engine in this process on its ledger.
    engine: Evaluator = field(default=None, repr=False)  # type: ignore[assignment]
    # Tells the `notify:` targets when a verdict changes (None without targets).
    notifier: Notifier | None = field(default=None, repr=False)
    # The status pages' ledger reads (a phase's latest record, timeline, page), kept a few
    # seconds: a page refreshing in many browsers reads the ledger once.
    _page_reads: dict[tuple[str, str], tuple[float, Any]] = field(default_factory=dict, repr=False)
    # Browser sessions that gave the token on the login form: id → expiry (monotonic).
    _sessions: dict[str, float] = field(default_factory=dict, repr=False)
    # Failed authentications per client in the last minute, on every door (header, Flagger's
    # metadata.token, the login form): past the limit a client gets 429, right token or not.
    auth_failures: _RateLimiter = field(
        default_factory=lambda: _RateLimiter(AUTH_FAILURES_PER_MINUTE), repr=False
    )
    # The wall clock every age is judged against (max_age, since, page times, the latest
    # record's recency): a test hands in a clock it controls, so no test depends on its date.
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), repr=False)

    def __post_init__(self) -> None:
        if self.engine is None:
            self.engine = Engine(self.project, ledger=self.ledger, recorded_since=self.recorded_since)
        if self.notifier is None and self.project.config.notify:
            from gatecheck.notify import Notifier

            settings = self.project.config.service
            self.notifier = Notifier(
                self.project.config.notify,
                self.project.root,
                settings.url or f"http://{settings.listen}",
                on_count=self._counted,
            )
        unknown = [p for p in self.phases if p not in self.project.gates]
        if unknown:
            raise ConfigError(
                f"unknown phase(s) to serve: {', '.join(unknown)} "
                f"(known: {', '.join(sorted(self.project.gates))})"
            )
        for phase in self.phases:
            self.states.setdefault(phase, PhaseState())
            self._locks.setdefault(phase, asyncio.Lock())

    def interval(self, phase: str) -> timedelta:
        return self.project.config.service.interval_for(phase)

    def evaluating(self, phase: str) -> bool:
        """A request-started evaluation of ``phase`` is under way (a new request joins it)."""
        running = self._inflight.get(phase)
        return running is not None and not running.done()

    async def evaluate_shared(self, phase: str, requested_by: Requester | None = None) -> Verdict:
        """An evaluation of ``phase`` now for a request: one already running is shared (its
        verdict answers every request that arrived while it ran), so requests never make the
        service evaluate a phase more often than one at a time. The evaluation runs on its own
        task: a request that stops waiting (its timeout) does not cancel it."""
        running = self._inflight.get(phase)
        if running is None or running.done():
            running = asyncio.ensure_future(self.evaluate_phase(phase, requested_by))
            self._inflight[phase] = running
            running.add_done_callback(
                lambda done: self._inflight.pop(phase, None) if self._inflight.get(phase) is done else None
            )
            # Retrieve an exception nobody waits for (a request that timed out).
            running.add_done_callback(lambda done: done.cancelled() or done.exception())
        return await asyncio.shield(running)

    async def evaluate_phase(self, phase: str, requested_by: Requester | None = None) -> Verdict:
        """Evaluate now (waiting for a running evaluation of the same phase), record, publish."""
        if phase not in self._locks:
            self._locks[phase] = asyncio.Lock()
            self.states[phase] = PhaseState()
        async with self._locks[phase]:
            previous = self.states[phase].verdict
            if previous is None and self.notifier is not None:  # a restart: the ledger remembers
                previous = await asyncio.to_thread(self._recorded, phase)
            # The engine records it; once the verdict exists its record is written whole even if
            # the service is being stopped, before that a stop abandons it unrecorded.
            evaluation = await self.engine.evaluate(phase, requested_by=requested_by)
            verdict, duration = evaluation.verdict, evaluation.duration_s
            state = self.states[phase]
            self.states[phase] = PhaseState(
                verdict=verdict,
                duration_s=duration,
                evaluated_at=self.clock(),
                last_error=None,
                evaluations=state.evaluations + 1,
            )
            self._log_evaluation(verdict, duration, state.verdict)
            if self.notifier is not None:  # schedules deliveries; never waits for them
                self.notifier.changed(previous, verdict)
            answered, reasons = source_answers(verdict)
            for key, up in answered.items():
                was = self.source_up.get(key)
                environment, source = key
                if not up and was is not False:
                    log.warning(
                        "source %s of %s is down: %s", source, environment, reasons.get(key, "no answer"),
                        extra={"source": source, "environment": environment, "up": False},
                    )  # fmt: skip
                elif up and was is False:
                    log.info(
                        "source %s of %s is back", source, environment,
                        extra={"source": source, "environment": environment, "up": True},
                    )  # fmt: skip
            self.source_up.update(answered)
            self._changed(phase)
            return verdict

    def _recorded(self, phase: str) -> Verdict | None:
        """The ledger's latest verdict of ``phase`` (None when it cannot be read)."""
        try:
            record = self.ledger.latest(phase)
        except GatecheckError:
            return None
        return record.to_verdict() if record else None

    def _counted(self) -> None:
        """A notification was counted: the exposition is rendered anew at the next scrape."""
        self._exposition = None

    def _changed(self, phase: str) -> None:
        """A phase's state changed: its document, the exposition and its pages anew."""
        self._documents.pop(phase, None)
        self._exposition = None
        for key in [k for k in self._page_reads if k[1] == phase]:
            self._page_reads.pop(key, None)

    # ------------------------------------------------------------------ the status pages

    def _page_read(self, what: str, phase: str, read: Callable[[], T]) -> T:
        """``read()``, or its value from the last ``PAGE_READ_TTL`` seconds (blocking)."""
        now = time.monotonic()
        hit = self._page_reads.get((what, phase))
        if hit is not None and now - hit[0] < PAGE_READ_TTL:
            return hit[1]  # type: ignore[no-any-return]
        value = read()
        self._page_reads[(what, phase)] = (now, value)
        return value

    def recorded_latest(self, phase: str) -> Verdict | None:
        """The ledger's latest verdict of a phase not evaluated here since the start, as the
        pages and /api/v1/phases show it (kept a few seconds: pollers read the ledger once).
        Blocking: call it in a thread."""
        return self._page_read("latest", phase, partial(self._recorded, phase))

    def refresh_s(self) -> float:
        """How often a page refreshes itself: the shortest interval it shows."""
        return min(self.interval(p).total_seconds() for p in self.phases) if self.phases else 60.0

    def chain_cards(self, now: datetime) -> list[Card]:
        """The chain page's cards: each phase's latest verdict (the service's, else the
        ledger's) and timeline. Blocking (ledger reads): call it in a thread."""
        from gatecheck.render.html import Card, PhaseInfo, Timeline, read_timeline, timeline_period

        cards = []
        for gate in self.project.chain():
            phase = gate.phase
            state = self.states.get(phase)
            verdict = state.verdict if state is not None else None
            problem = state.last_error if state is not None else None
            if verdict is None:
                verdict = self.recorded_latest(phase)
            try:
                line = self._page_read("timeline", phase, partial(read_timeline, self.ledger, gate, now))
            except GatecheckError as exc:
                since = now - timeline_period(gate)
                line = Timeline(since, now, [], {})
                problem = problem or f"cannot read the history ledger: {exc}"
            cards.append(Card(PhaseInfo.of(gate), verdict, line, problem))
        upcoming = next(
            (c.gate.phase for c in cards if c.verdict is None or c.verdict.verdict is not VerdictState.GO),
            None,
        )
        return [replace(c, next=c.gate.phase == upcoming) for c in cards]

    def phase_page(self, phase: str, now: datetime) -> PhasePage:
        """A phase's page: its latest verdict, timeline, charts' history and waivers.
        Blocking (ledger reads): call it in a thread."""
        from gatecheck.render.html import read_phase_page

        state = self.states.get(phase)
        verdict = state.verdict if state is not None else None
        problem = state.last_error if state is not None else None
        gate = self.project.gates[phase]
        return self._page_read(
            "page", phase, lambda: read_phase_page(self.ledger, gate, verdict, now, problem)
        )

    def open_session(self) -> str:
        """A new browser session that gave the token: its id, for an HttpOnly cookie."""
        import secrets

        now = time.monotonic()
        self._sessions = {k: t for k, t in self._sessions.items() if t > now}
        while len(self._sessions) >= MAX_SESSIONS:  # oldest first out
            self._sessions.pop(min(self._sessions, key=self._sessions.__getitem__))
        session = secrets.token_urlsafe(32)
        self._sessions[session] = now + SESSION_LIFETIME_S
        return session

    def session_valid(self, session: str) -> bool:
        expiry = self._sessions.get(session)
        return expiry is not None and expiry > time.monotonic()

    def document(self, phase: str) -> tuple[bytes, str] | None:
        """The latest verdict document of ``phase`` as JSON bytes and its ETag, rendered once
        per new verdict; None when the service holds no verdict of it (see :meth:`latest`)."""
        cached = self._documents.get(phase)
        if cached is not None:
            return cached
        state = self.states.get(phase)
        if state is None or state.verdict is None:
            return None
        body = json.dumps(state.verdict.document(), indent=2).encode()
        rendered = (body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
        self._documents[phase] = rendered
        return rendered

    def exposition(self, registry: CollectorRegistry) -> bytes:
        """The Prometheus exposition of ``registry``, rendered once per new state."""
        from prometheus_client import generate_latest

        if self._exposition is None:
            self._exposition = generate_latest(registry)
        return self._exposition

    @staticmethod
    def _log_evaluation(verdict: Verdict, duration: float, previous: Verdict | None) -> None:
        """One line per evaluation; one more when the verdict changed (WARNING when it turned
        no-go or rollback). Facts as fields: phase, verdict, duration_s, failing checks."""
        failing = [f"{c.suite}:{c.outcome.value}" for c in verdict.checks if c.outcome is not Outcome.PASS]
        fields = {
            "phase": verdict.phase,
            "verdict": verdict.verdict.value,
            "duration_s": round(duration, 3),
            "as_of": verdict.as_of.isoformat(),
            "failing": failing,
        }
        log.info("evaluated %s: %s", verdict.phase, verdict.verdict.value, extra=fields)
        before = previous.verdict if previous is not None else None
        if before is not verdict.verdict:
            bad = verdict.verdict in (VerdictState.NO_GO, VerdictState.ROLLBACK)
            log.log(
                logging.WARNING if bad else logging.INFO,
                "verdict of %s changed: %s → %s", verdict.phase,
                before.value if before is not None else "none", verdict.verdict.value,
                extra={**fields, "previous": before.value if before is not None else None},
            )  # fmt: skip

    async def scheduled(self, phase: str) -> None:
        """The scheduler's job: never raises."""
        try:
            await self.evaluate_phase(phase)
        except asyncio.CancelledError:
            # The service is stopping: the evaluation is abandoned unrecorded. Returning
            # (not re-raising) ends this job's task without APScheduler logging an error.
            log.debug("evaluation of %s cancelled by shutdown", phase)
        except Exception as exc:
            if isinstance(exc, GatecheckError):  # e.g. the worker crashed: said in one line
                log.error("evaluation of %s failed: %s", phase, exc, extra={"phase": phase})
            else:
                log.exception("evaluation of %s failed", phase)
            state = self.states[phase]
            self.states[phase] = PhaseState(
                verdict=state.verdict,
                duration_s=state.duration_s,
                evaluated_at=state.evaluated_at,
                last_error=f"{type(exc).__name__}: {exc}",
                evaluations=state.evaluations,
            )
            self._changed(phase)

    async def cycle(self, phases: list[str]) -> None:
        """One scheduled cycle of ``phases``: each evaluated after the phases it requires
        (directly or not) have been evaluated and recorded in this cycle, so ``requires`` is
        judged on this cycle's results, not the previous cycle's. Independent chains run
        concurrently. Raises only the cancellation of a stop, after every evaluation of the
        cycle has ended."""
        chosen = set(phases)
        tasks: dict[str, asyncio.Task[None]] = {}
        # The service's own work: a stop cancels these, and nothing else in the loop.
        current = asyncio.current_task()
        if current is not None and current not in self._cycles:
            self._cycles.add(current)
            current.add_done_callback(self._cycles.discard)

        async def after_prerequisites(phase: str) -> None:
            earlier = [tasks[p] for p in self.project.prerequisites(phase) if p in tasks]
            if earlier:
                await asyncio.wait(earlier)
            await self.scheduled(phase)

        for gate in self.project.chain():  # promotion order: prerequisites' tasks exist first
            if gate.phase in chosen:
                tasks[gate.phase] = asyncio.create_task(
                    after_prerequisites(gate.phase), name=f"evaluate:{gate.phase}"
                )
        try:
            await asyncio.gather(*tasks.values())
        except asyncio.CancelledError:
            for task in tasks.values():
                task.cancel()
            # Each evaluation ends here: dropped unrecorded, or (its verdict complete) its record
            # written whole by the engine before the task returns.
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            log.debug("cycle of %s cancelled by shutdown", ", ".join(tasks))
            raise

    async def every(self, seconds: float, phases: list[str]) -> None:
        """Run cycles of ``phases`` on a fixed grid of ``seconds`` from now, until cancelled.
        A cycle that overruns its slot is followed by one cycle at the next grid point, never
        by a burst of missed ones (APScheduler's interval trigger computes the grid)."""
        from apscheduler.triggers.interval import IntervalTrigger

        trigger = IntervalTrigger(seconds=seconds, start_date=datetime.now(UTC), timezone=UTC)
        while True:
            started = datetime.now(UTC)
            await self.cycle(phases)
            after = max(datetime.now(UTC), started + timedelta(microseconds=1))
            upcoming = trigger.get_next_fire_time(None, after)
            await asyncio.sleep(max(0.0, (upcoming - datetime.now(UTC)).total_seconds()))

    async def run_schedule(self) -> None:
        """Every scheduled phase, until cancelled: one loop per interval, all under one task
        group. The phases sharing an interval are evaluated in one cycle, in promotion order
        (:meth:`cycle`), so a phase's ``requires`` sees this cycle's record of the phase before
        it; a phase on its own interval reads the latest record of the phases it requires.
        Cancelling this task cancels the loops, which end their evaluations before returning."""
        groups: dict[float, list[str]] = {}
        for phase in self.phases:
            groups.setdefault(self.interval(phase).total_seconds(), []).append(phase)
        async with asyncio.TaskGroup() as loops:
            for seconds, phases in sorted(groups.items()):
                loops.create_task(self.every(seconds, phases), name=f"gatecheck-every-{seconds:g}s")

    def latest_here(self, phase: str) -> Verdict | None:
        """The verdict this service evaluated last (None: not since its start)."""
        state = self.states.get(phase)
        return state.verdict if state is not None else None

    def latest(self, phase: str) -> Verdict | None:
        here = self.latest_here(phase)
        if here is not None:
            return here
        record = self.ledger.latest(phase)
        return record.to_verdict() if record else None


# --------------------------------------------------------------------------- /metrics


def source_answers(verdict: Verdict) -> tuple[dict[tuple[str, str], bool], dict[tuple[str, str], str]]:
    """(environment, source) → whether it answered every check of the evaluation that asked
    it (a comparison asks each side's source on its own), and why one did not."""
    answered: dict[tuple[str, str], bool] = {}
    reasons: dict[tuple[str, str], str] = {}
    for check in verdict.checks:
        asked = [(s.source, s.source_available) for s in check.sides]
        asked = asked or [(check.source, check.source_available)]
        for source, available in asked:
            if available is None:
                continue
            key = (verdict.environment, source)
            # Down if any check of this evaluation could not reach it.
            answered[key] = answered.get(key, True) and available
            if not available and check.reason:
                reasons.setdefault(key, check.reason)
    return answered, reasons


class VerdictCollector(Collector):
    """Builds every gauge at scrape time from the service's latest verdicts."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        states = dict(self.service.states)
        verdict_g = GaugeMetricFamily(
            "gatecheck_phase_verdict",
            "Latest verdict of a phase, one-hot over state (go, no-go, inconclusive, rollback).",
            labels=["phase", "environment", "state"],
        )
        outcome_g = GaugeMetricFamily(
            "gatecheck_check_outcome",
            "Latest outcome of a check, one-hot over outcome (pass, fail, inconclusive, error); "
            'waived="true" when a person\'s waiver covers its failure.',
            labels=["phase", "suite", "role", "outcome", "waived"],
        )
        waivers_g = GaugeMetricFamily(
            "gatecheck_waivers_active",
            "Waivers covering a failure in the latest evaluation of a phase.",
            labels=["phase"],
        )
        observed_g = GaugeMetricFamily(
            "gatecheck_check_observed_value",
            "Observed value of an expectation (the worst group) in the latest evaluation.",
            labels=["phase", "suite", "column", "expectation"],
        )
        threshold_g = GaugeMetricFamily(
            "gatecheck_check_threshold",
            "Threshold an expectation is judged by, with its bound (min or max).",
            labels=["phase", "suite", "column", "expectation", "threshold", "bound", "provenance"],
        )
        coverage_g = GaugeMetricFamily(
            "gatecheck_soak_coverage_seconds",
            "Seconds of the soak covered by passing evaluations.",
            labels=["phase"],
        )
        soak_g = GaugeMetricFamily(
            "gatecheck_soak_duration_seconds", "Soak duration the phase requires.", labels=["phase"]
        )
        as_of_g = GaugeMetricFamily(
            "gatecheck_evaluation_timestamp_seconds",
            "as_of of the latest evaluation (Unix time).",
            labels=["phase"],
        )
        duration_g = GaugeMetricFamily(
            "gatecheck_evaluation_duration_seconds", "Wall time of the latest evaluation.", labels=["phase"]
        )
        interval_g = GaugeMetricFamily(
            "gatecheck_evaluation_interval_seconds",
            "How often the service evaluates the phase.",
            labels=["phase"],
        )
        errors_g = GaugeMetricFamily(
            "gatecheck_evaluation_error", "1 if the latest scheduled evaluation raised.", labels=["phase"]
        )
        side_g = GaugeMetricFamily(
            "gatecheck_comparison_side_value",
            "A comparison check's side: each compared value's total over the keys, or its sample "
            "count (n) and summary (p50, p95, hits, total, rate).",
            labels=["phase", "suite", "side", "source", "value"],
        )
        up_g = GaugeMetricFamily(
            "gatecheck_source_up", "1 if the source answered in the latest evaluation using it.",
            labels=["environment", "source"],
        )  # fmt: skip
        for phase, state in sorted(states.items()):
            errors_g.add_metric([phase], 1.0 if state.last_error else 0.0)
            interval_g.add_metric([phase], self.service.interval(phase).total_seconds())
            verdict = state.verdict
            if verdict is None:
                continue
            for choice in VerdictState:
                verdict_g.add_metric(
                    [phase, verdict.environment, choice.value], float(choice is verdict.verdict)
                )
            as_of_g.add_metric([phase], verdict.as_of.timestamp())
            if state.duration_s is not None:
                duration_g.add_metric([phase], state.duration_s)
            if verdict.soak is not None:
                coverage_g.add_metric([phase], verdict.soak.coverage.total_seconds())
                soak_g.add_metric([phase], verdict.soak.duration.total_seconds())
            waivers_g.add_metric([phase], float(len({c.waiver.id for c in verdict.checks if c.waiver})))
            for check in verdict.checks:
                waived = "true" if check.waiver is not None else "false"
                for outcome in Outcome:
                    labels = [phase, check.suite, check.role, outcome.value, waived]
                    outcome_g.add_metric(labels, float(outcome is check.outcome))
                for side in check.sides:
                    for name, number in side.values.items():
                        if number is not None:
                            side_g.add_metric([phase, check.suite, side.side, side.source, name], number)
                for expectation in check.expectations:
                    column = expectation.column or ""
                    observed = observed_number(expectation.observed_value)
                    if observed is not None:
                        observed_g.add_metric([phase, check.suite, column, expectation.type], observed)
                    for threshold in expectation.thresholds:
                        value = observed_number(threshold.value)
                        if value is not None and threshold.bound is not None:
                            threshold_g.add_metric(
                                [phase, check.suite, column, expectation.type, threshold.name,
                                 threshold.bound, threshold.provenance],
                                value,
                            )  # fmt: skip
        for (environment, source), up in sorted(self.service.source_up.items()):
            up_g.add_metric([environment, source], 1.0 if up else 0.0)
        notifications = CounterMetricFamily(
            "gatecheck_notifications",
            "Notifications of a verdict change, by target and result (sent, failed, suppressed, dropped).",
            labels=["target", "result"],
        )
        notifier = self.service.notifier
        if notifier is not None:
            for target in notifier.targets:
                for result in ("sent", "failed", "suppressed", "dropped"):
                    notifications.add_metric(
                        [target.name, result], float(notifier.counts[(target.name, result)])
                    )
        yield from (
            verdict_g,
            outcome_g,
            observed_g,
            threshold_g,
            side_g,
            coverage_g,
            soak_g,
            as_of_g,
            duration_g,
            errors_g,
            up_g,
            waivers_g,
            notifications,
        )


# --------------------------------------------------------------------------- HTTP


class Problem(BaseModel):
    """An error answer: what went wrong, in one line."""

    detail: str


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    phases: list[str]
    config_hash: str


class NotReady(BaseModel):
    status: str
    reason: str


class PhaseSummary(BaseModel):
    """One phase of the chain, as ``GET /api/v1/phases`` lists it."""

    phase: str
    environment: str
    description: str
    requires: list[str]
    scheduled: bool
    interval: float
    verdict: VerdictState | None
    as_of: datetime | None
    last_error: str | None


class RecordSummary(BaseModel):
    """One recorded evaluation, as ``GET /api/v1/phases/{phase}/history`` lists it."""

    phase: str
    environment: str
    as_of: datetime
    verdict: VerdictState
    checks_passed: bool
    duration_s: float
    config_hash: str
    gatecheck_version: str
    recorded_at: datetime
    not_passed: dict[str, Outcome]
    waivers: list[str] = []  # the waivers its GO held through
    requested_by: Requester | None = None


def create_app(service: Service) -> Any:
    """The FastAPI app: /metrics, /healthz, /readyz and the /api/v1 verdict API."""
    from fastapi import FastAPI, Header, HTTPException, Query
    from fastapi.responses import JSONResponse, PlainTextResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST

    registry = CollectorRegistry(auto_describe=False)
    registry.register(VerdictCollector(service))
    app = FastAPI(title="gatecheck", version=__version__, docs_url=None, redoc_url=None)
    limiter = _RateLimiter(EVALUATE_PER_MINUTE)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        # (The body was read and bounded by BoundedBody before this runs; the Host checked.)
        if request.method not in ("GET", "HEAD"):
            # Flagger cannot send headers: its endpoints also take the token from the payload's
            # metadata, and check it themselves.
            flagger = request.url.path.startswith("/api/v1/flagger/")
            # The login form of the pages posts the token itself (rate-limited below).
            login = request.url.path == "/session"
            if not flagger and not login and service.api_token is not None:
                denied = authenticate(request)
                if denied is not None:
                    return denied
            if not flagger and not limiter.allow(_client_of(request)):
                return JSONResponse({"detail": "too many evaluations requested; try later"}, status_code=429)
        return await call_next(request)

    def refused(request: Request, phase: str) -> Any:
        """A 429 answer when this request may not start an evaluation of ``phase`` now; None
        when it may. Joining an evaluation already under way costs nothing."""
        if service.evaluating(phase) or limiter.allow(_client_of(request)):
            return None
        return JSONResponse({"detail": "too many evaluations requested; try later"}, status_code=429)

    def authenticate(
        request: Request, *other: str | None, detail: str = "missing or wrong bearer token"
    ) -> Any:
        """None when the request carries the token (its bearer header, or one of ``other``:
        Flagger's metadata.token, the login form's field); else the answer: 401, or 429 once
        the client has failed AUTH_FAILURES_PER_MINUTE times in the last minute (every door
        counts the same failures, so guessing through one is as slow as through another)."""
        assert service.api_token is not None
        client = _client_of(request)
        if service.auth_failures.exhausted(client):
            return JSONResponse({"detail": "too many failed authentications; try later"}, status_code=429)
        token = service.api_token
        if _authorized(request, token) or any(_token_matches(t, token) for t in other):
            return None
        service.auth_failures.allow(client)  # counts the failure
        headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse({"detail": detail}, status_code=401, headers=headers)

    def duration_param(text: str, what: str) -> timedelta:
        """A duration parameter (``48h``); a bad one is a 422 naming ``what``."""
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise HTTPException(422, f"{what}: {exc}") from exc

    def since_moment(since: str) -> datetime:
        """``?since=48h`` as the moment it names (a bad duration is a 422)."""
        return service.clock() - duration_param(since, "since")

    async def recent(phase: str, age: timedelta) -> Verdict | None:
        """The latest verdict of ``phase`` if its as_of is at most ``age`` old (a ledger that
        cannot be read raises GatecheckError)."""
        latest = await asyncio.to_thread(service.latest, phase)
        return latest if latest is not None and latest.as_of >= service.clock() - age else None

    def known(phase: str) -> None:
        if phase not in service.project.gates:
            raise HTTPException(404, f"unknown phase {phase!r}")

    # Handlers return plain JSON (or a Response) and declare their documents through
    # `responses`: FastAPI reads return annotations in this module's globals, where the
    # names imported above do not exist, and /openapi.json would fail on a forward reference.
    problem = {"model": Problem}

    @app.get("/healthz", response_model=None, responses={200: {"model": Health}})
    async def healthz() -> Any:
        return {"status": "ok"}

    @app.get("/readyz", response_model=None, responses={200: {"model": Ready}, 503: {"model": NotReady}})
    async def readyz() -> Any:
        try:
            await asyncio.to_thread(service.ledger.check_writable)
        except GatecheckError as exc:
            return JSONResponse({"status": "not ready", "reason": str(exc)}, status_code=503)
        return {"status": "ready", "phases": service.phases, "config_hash": service.project.config_hash}

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus exposition"}},
    )
    async def metrics() -> Any:
        return Response(service.exposition(registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------ status pages

    def page_allowed(request: Request) -> bool:
        """Beyond loopback (a token is set) a page needs the token: the bearer header, or the
        cookie of a browser session that gave it on the login form."""
        if service.api_token is None:
            return True
        if request.headers.get("authorization"):  # a bearer given: right, or a counted failure
            return authenticate(request) is None
        session = request.cookies.get(SESSION_COOKIE)
        return session is not None and service.session_valid(session)

    def html(body: str, status_code: int = 200) -> Any:
        from fastapi.responses import HTMLResponse

        from gatecheck.render.html import CONTENT_SECURITY_POLICY

        headers = {
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }
        return HTMLResponse(body, status_code=status_code, headers=headers)

    def login(next_path: str, failed: bool = False) -> Any:
        from gatecheck.render.html import render_login

        return html(render_login(next_path, failed), 401)

    @app.get("/", include_in_schema=False)
    async def chain_page(request: Request) -> Any:
        """The phase chain: every phase's latest verdict, soak and recent verdicts."""
        if not page_allowed(request):
            return login("/")
        from gatecheck.render.html import render_chain

        now = service.clock()

        def page() -> str:
            return render_chain(service.chain_cards(now), now, service.refresh_s())

        return html(await asyncio.to_thread(page))

    @app.get("/phases/{phase}", include_in_schema=False)
    async def phase_page(request: Request, phase: str, export: bool = Query(False)) -> Any:
        """One phase: its checks, evidence, thresholds, failing groups, reasons, history."""
        if phase not in service.project.gates:
            return html(f"<!doctype html><title>404</title><p>unknown phase {_html_text(phase)}</p>", 404)
        if not page_allowed(request):
            return login(f"/phases/{phase}")
        from gatecheck.render.html import render_phase

        now = service.clock()

        def page() -> str:
            return render_phase(service.phase_page(phase, now), now, service.refresh_s(), export=export)

        try:
            return html(await asyncio.to_thread(page))
        except GatecheckError as exc:
            return html(f"<!doctype html><title>503</title><p>{_html_text(str(exc))}</p>", 503)

    @app.post("/session", include_in_schema=False)
    async def session(request: Request) -> Any:
        """The login form: the token once, in the body; a session cookie in return."""
        from urllib.parse import parse_qs

        from fastapi.responses import RedirectResponse

        form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=8)
        next_path = form.get("next", ["/"])[0]
        if not _LOCAL_PAGE.fullmatch(next_path):
            next_path = "/"
        if service.api_token is None:
            return RedirectResponse(next_path, status_code=303)
        denied = authenticate(request, form.get("token", [""])[0])
        if denied is not None:
            return denied if denied.status_code == 429 else login(next_path, failed=True)
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            service.open_session(),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @app.get("/api/v1/phases", response_model=None, responses={200: {"model": list[PhaseSummary]}})
    async def phases() -> Any:
        result = []
        unevaluated = [g.phase for g in service.project.chain() if service.latest_here(g.phase) is None]
        # Not evaluated here since the start: the ledger's latest, as /verdict says (one thread).
        recorded = await asyncio.to_thread(lambda: {p: service.recorded_latest(p) for p in unevaluated})
        for gate in service.project.chain():
            state = service.states.get(gate.phase)
            latest = service.latest_here(gate.phase) or recorded.get(gate.phase)
            result.append(
                {
                    "phase": gate.phase,
                    "environment": gate.environment,
                    "description": " ".join(gate.description.split()),
                    "requires": gate.requires,
                    "scheduled": gate.phase in service.phases,
                    "interval": service.interval(gate.phase).total_seconds(),
                    "verdict": latest.verdict.value if latest else None,
                    "as_of": latest.as_of.isoformat() if latest else None,
                    "last_error": state.last_error if state else None,
                }
            )
        return result

    async def answer_now(phase: str, timeout: float, requested_by: Requester | None) -> Any:
        """A fresh evaluation's document (shared with one under way), or, past ``timeout``,
        an inconclusive document saying so (the evaluation goes on and is recorded)."""
        try:
            fresh = await asyncio.wait_for(service.evaluate_shared(phase, requested_by), timeout)
        except TimeoutError:
            return placeholder(
                phase,
                f"the evaluation of {phase} did not finish within {timeout:g}s; it goes on and is "
                "recorded: ask again",
            )
        except GatecheckError as exc:  # gatecheck's own fault (e.g. its worker died): a 5xx
            return JSONResponse({"detail": str(exc)}, status_code=503)
        return fresh.document()

    def placeholder(phase: str, reason: str) -> Any:
        """HTTP 200 with an inconclusive verdict document: there is no verdict to give."""
        gate = service.project.gates[phase]
        document = Verdict(
            phase=phase,
            environment=gate.environment,
            description=" ".join(gate.description.split()),
            as_of=service.clock(),
            verdict=VerdictState.INCONCLUSIVE,
            reasons=[reason],
            checks=[],
            config_hash=service.project.config_hash,
            gatecheck_version=__version__,
        ).document()
        return JSONResponse(document, headers={EVALUATED_HEADER: "false"})

    @app.get(
        "/api/v1/phases/{phase}/verdict",
        response_model=None,
        responses={
            200: {"model": Verdict},
            401: problem,
            404: problem,
            422: problem,
            429: problem,
            503: problem,
        },
    )
    async def verdict(
        request: Request,
        phase: str,
        fresh: bool = Query(False, description="Evaluate now (bearer token when one is set; rate-limited)."),
        max_age: str | None = Query(
            None,
            description="The latest verdict if its as_of is at most this old (e.g. 10m), else evaluate now.",
        ),
        timeout: float = Query(
            ANSWER_TIMEOUT_S,
            gt=0,
            le=120,
            description="Seconds to wait for an evaluation now; past it the answer is inconclusive.",
        ),
        rollout: str = Query("", description="The Argo Rollout asking (recorded with a fresh evaluation)."),
        namespace: str = Query("", description="Its namespace (recorded)."),
        revision: str = Query("", description="The canary revision or pod-template hash (recorded)."),
        if_none_match: str | None = Header(None),
    ) -> Any:
        """The phase's verdict document, HTTP 200 for every verdict (inconclusive and "no
        evaluation yet" too); 5xx only for gatecheck's own faults."""
        known(phase)
        if fresh or max_age is not None:
            age = duration_param(max_age, "max_age") if max_age is not None else None
            if not fresh and age is not None:
                try:
                    latest = await recent(phase, age)
                except GatecheckError as exc:
                    return JSONResponse({"detail": str(exc)}, status_code=503)
                if latest is not None:
                    return latest.document()
            # An evaluation now: the same token and rate limit as POST .../evaluate.
            if service.api_token is not None:
                denied = authenticate(request)
                if denied is not None:
                    return denied
            too_many = refused(request, phase)
            if too_many is not None:
                return too_many
            requester = None
            if rollout or revision:
                requester = Requester(
                    controller="argo-rollouts", name=rollout, namespace=namespace, checksum=revision
                )
            return await answer_now(phase, timeout, requester)
        rendered = service.document(phase)
        if rendered is None:  # nothing evaluated since start: the ledger's latest record
            try:
                latest = await asyncio.to_thread(service.latest, phase)
            except GatecheckError as exc:
                return JSONResponse({"detail": str(exc)}, status_code=503)
            if latest is None:
                return placeholder(phase, f"no evaluation of {phase} yet")
            return latest.document()
        body, etag = rendered
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        matches = _etags(if_none_match)
        if etag in matches or "*" in matches:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    @app.get(
        "/api/v1/phases/{phase}/history",
        response_model=None,
        responses={200: {"model": list[RecordSummary]}, 404: problem, 422: problem, 503: problem},
    )
    async def history(phase: str, since: str = Query("48h", description="e.g. 30m, 48h, 7d")) -> Any:
        known(phase)
        start = since_moment(since)
        try:
            records = await asyncio.to_thread(service.ledger.history, phase, start)
        except GatecheckError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)
        return [record_summary(r) for r in records]

    @app.post(
        "/api/v1/phases/{phase}/evaluate",
        response_model=None,
        responses={200: {"model": Verdict}, 401: problem, 404: problem, 429: problem},
    )
    async def evaluate_now(phase: str) -> Any:
        known(phase)
        try:
            return (await service.evaluate_shared(phase)).document()
        except GatecheckError as exc:  # the evaluation could not finish (e.g. its worker died)
            return JSONResponse({"detail": str(exc)}, status_code=503)

    async def decided(write: Any) -> Any:
        """Check and record one decision in the ledger (in a thread); a bad one is a 422."""
        from gatecheck.ledger.decisions import UnknownWaiver

        try:
            event = await asyncio.to_thread(write)
        except ConfigError as exc:
            # The checks speak of the CLI's flags (--for: …); the API's caller sent fields.
            detail = re.sub(r"^--([a-z]+):", r"\1:", exc.problems[0] if exc.problems else str(exc))
            status = 404 if isinstance(exc, UnknownWaiver) else 422
            return JSONResponse({"detail": detail}, status_code=status)
        except GatecheckError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)
        return JSONResponse(event.model_dump(mode="json"), status_code=201)

    @app.post(
        "/api/v1/phases/{phase}/waivers",
        response_model=None,
        responses={201: {"model": AuditEvent}, 401: problem, 404: problem, 422: problem, 503: problem},
    )
    async def waive(phase: str, body: WaiverRequest) -> Any:
        """Record a waiver (as `gatecheck waive`): bearer token, the same checks."""
        from gatecheck.ledger.decisions import waiver_event

        known(phase)
        return await decided(
            lambda: service.ledger.create_waiver(
                waiver_event(service.project, phase, body.check, body.group, body.for_, body.reason, body.by)
            )
        )

    @app.post(
        "/api/v1/waivers/{waiver}/revoke",
        response_model=None,
        responses={201: {"model": AuditEvent}, 401: problem, 404: problem, 422: problem, 503: problem},
    )
    async def unwaive(waiver: str, body: DecisionRequest) -> Any:
        """Revoke a waiver (as `gatecheck unwaive`)."""
        from gatecheck.ledger.decisions import revoke_event

        def write() -> AuditEvent:
            event = revoke_event(service.project, service.ledger.audit(), waiver, body.reason, body.by)
            service.ledger.append_audit([event])
            return event

        return await decided(write)

    @app.get("/api/v1/audit", response_model=None, responses={200: {"model": list[AuditEvent]}, 422: problem})
    async def audit(
        phase: str | None = Query(None, description="Only this phase."),
        since: str = Query("7d", description="e.g. 24h, 7d"),
    ) -> Any:
        """The audit trail, oldest first (as `gatecheck audit`)."""
        if phase is not None:
            known(phase)
        start = since_moment(since)
        try:
            events = await asyncio.to_thread(service.ledger.audit, [phase] if phase else None, start)
        except GatecheckError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)
        return [e.model_dump(mode="json") for e in events]

    @app.post(
        "/api/v1/flagger/{role}",
        response_class=PlainTextResponse,
        responses={
            200: {"description": "gating roles: the verdict is GO; rollback: it is ROLLBACK"},
            401: problem, 404: problem, 412: {"description": "not GO (rollback role: not ROLLBACK)"},
            422: problem, 429: problem, 503: problem,
        },
    )  # fmt: skip
    async def flagger(role: str, payload: FlaggerPayload, request: Request) -> Any:
        """A Flagger webhook (docs: "Gate a Flagger canary"): the gatecheck phase is
        ``metadata.phase``. Gating roles answer 200 only on GO, ``rollback`` only on ROLLBACK;
        anything else is 412 with the verdict and its reasons as the body."""
        if role not in FLAGGER_ROLES:
            raise HTTPException(
                404, f"unknown Flagger webhook role {role!r} (known: {', '.join(FLAGGER_ROLES)})"
            )
        if service.api_token is not None:
            token = payload.metadata.get("token")
            denied = authenticate(
                request, token if isinstance(token, str) else None,
                detail="missing or wrong token (header or metadata.token)",
            )  # fmt: skip
            if denied is not None:
                return denied
        phase = payload.metadata.get("phase")
        if not phase:
            raise HTTPException(
                422, "metadata.phase: name the gatecheck phase this hook gates (e.g. canary-10)"
            )
        known(phase)
        try:
            timeout = float(payload.metadata.get("timeout", ANSWER_TIMEOUT_S))
        except ValueError:
            raise HTTPException(422, "metadata.timeout: seconds, e.g. 8") from None
        judged: Verdict | None = None
        if "max_age" in payload.metadata:  # the latest verdict will do if it is recent enough
            age = duration_param(payload.metadata["max_age"], "metadata.max_age")
            try:
                judged = await recent(phase, age)
            except GatecheckError as exc:
                return PlainTextResponse(f"{phase}: {exc}", status_code=503)
        if judged is None:
            too_many = refused(request, phase)
            if too_many is not None:
                return too_many
            requester = Requester(
                controller="flagger", role=role, name=payload.name, namespace=payload.namespace,
                checksum=payload.checksum,
            )  # fmt: skip
            try:
                judged = await asyncio.wait_for(
                    service.evaluate_shared(phase, requester), max(0.1, min(timeout, 120))
                )
            except TimeoutError:
                return PlainTextResponse(
                    f"{phase}: no verdict within {timeout:g}s (the evaluation goes on): not a GO",
                    status_code=412,
                )
            except GatecheckError as exc:
                return PlainTextResponse(f"{phase}: {exc}", status_code=503)
        wanted = VerdictState.ROLLBACK if role == "rollback" else VerdictState.GO
        lines = [f"{phase}: {judged.verdict.value.upper()} as of {judged.as_of.isoformat()}", *judged.reasons]
        return PlainTextResponse(
            "\n".join(lines) + "\n", status_code=200 if judged.verdict is wanted else 412
        )

    # Outermost last: the Host is checked first, then the body is read and bounded, then the
    # guard above authenticates and rate-limits, then the route runs.
    settings = service.project.config.service
    app.add_middleware(BoundedBody, limit=MAX_REQUEST_BYTES)
    app.add_middleware(
        KnownHosts, allowed=KnownHosts.allowed_for(settings.listen, settings.url, settings.allowed_hosts)
    )
    return app


class DecisionRequest(BaseModel):
    """Who decides and why (recorded in the audit trail)."""

    model_config = ConfigDict(extra="forbid")
    reason: str
    by: str


class WaiverRequest(DecisionRequest):
    """A waiver, as `gatecheck waive` takes it: the check, optionally a group, how long."""

    check: str
    group: dict[str, str] = {}
    for_: str = Field(alias="for", description="How long, e.g. 24h (at most 30d).")


class FlaggerPayload(BaseModel):
    """What Flagger POSTs to a webhook (``pkg/controller/webhook.go``)."""

    name: str = ""
    namespace: str = ""
    phase: str = ""  # Flagger's canary phase (Progressing, Promoting, ...), not gatecheck's
    checksum: str = ""
    metadata: dict[str, str] = {}


#: Flagger's webhook types gatecheck answers: the gating ones and the (inverted) rollback one.
FLAGGER_ROLES = (
    "confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion", "rollback",
)  # fmt: skip
#: Default seconds an API request waits for an evaluation now: below Argo Rollouts' and
#: Flagger's default 10 s request timeouts, so the controller gets gatecheck's answer.
ANSWER_TIMEOUT_S = 8.0
#: Set to "false" on a verdict document that is not an evaluation (none yet, or timed out).
EVALUATED_HEADER = "Gatecheck-Evaluated"


#: Where the login form may send a browser back to: the chain or a phase page.
_LOCAL_PAGE = re.compile(r"/(phases/[A-Za-z0-9][A-Za-z0-9_.-]*)?")


def _html_text(text: str) -> str:
    import html

    return html.escape(text)


def _client_of(request: Any) -> str:
    return request.client.host if request.client else "unknown"


def _token_matches(given: str | None, token: str) -> bool:
    import hmac

    return given is not None and hmac.compare_digest(given.encode(), token.encode())


#: Largest request body accepted (only the Flagger webhooks take one: a small JSON payload).
MAX_REQUEST_BYTES = 64 * 1024
#: POST /evaluate requests per client and minute.
EVALUATE_PER_MINUTE = 30
#: Failed authentications per client and minute before every further attempt is a 429.
AUTH_FAILURES_PER_MINUTE = 10


def _etags(header: str | None) -> set[str]:
    """The entity tags of an If-None-Match header (``*`` matches any)."""
    if not header:
        return set()
    return {t.strip().removeprefix("W/") for t in header.split(",")}


def _authorized(request: Any, token: str) -> bool:
    import hmac

    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class _RateLimiter:
    """A sliding one-minute window per client: enough to stop a loop hammering evaluations."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.seen: dict[str, list[float]] = {}

    def exhausted(self, client: str) -> bool:
        """The client has used its minute (without counting this look)."""
        now = time.monotonic()
        return sum(1 for t in self.seen.get(client, []) if now - t < 60) >= self.per_minute

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        if len(self.seen) > 1024:  # a service runs for weeks: forget clients quiet for a minute
            self.seen = {c: ts for c, ts in self.seen.items() if ts and now - ts[-1] < 60}
        recent = [t for t in self.seen.get(client, []) if now - t < 60]
        if len(recent) >= self.per_minute:
            self.seen[client] = recent
            return False
        recent.append(now)
        self.seen[client] = recent
        return True


class BoundedBody:
    """ASGI middleware: a request's body is read and counted as it arrives, before anything
    parses or authenticates it; past ``limit`` bytes the answer is 413 and the rest is never
    read (a chunked body, which has no Content-Length, counts the same). The app then reads
    the body from memory."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, given = b"".join(chunks), False

        async def replay() -> Any:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)

    @staticmethod
    async def _too_large(scope: Any, receive: Any, send: Any) -> None:
        from starlette.responses import JSONResponse

        too_large = JSONResponse({"detail": "request body too large"}, status_code=413)
        await too_large(scope, receive, send)


class KnownHosts:
    """ASGI middleware: only requests whose ``Host`` names this service (its listen address,
    the loopback names, ``service.url``'s host, ``service.allowed_hosts``) are answered; any
    other is 400. A page of another site whose name was rebound to 127.0.0.1 sends its own
    name: without this, it could create waivers on a loopback service that has no token.
    A service listening on every address (``0.0.0.0``) with no ``allowed_hosts`` answers any
    name: there the token guards every change."""

    def __init__(self, app: Any, allowed: set[str] | None) -> None:
        self.app, self.allowed = app, allowed

    @staticmethod
    def allowed_for(listen: str, url: str | None, extra: list[str]) -> set[str] | None:
        """The host names a service on ``listen`` answers to (None: any)."""
        host = listen.rpartition(":")[0].strip("[]").lower()
        if host in ("0.0.0.0", "::", "") and not extra:
            return None
        allowed = {"localhost", host, *(h.lower() for h in extra)}
        if url:
            named = urlsplit(url).hostname
            if named:
                allowed.add(named.lower())
        return allowed

    def accepts(self, header: str) -> bool:
        if self.allowed is None:
            return True
        try:
            host = urlsplit(f"//{header}").hostname
        except ValueError:
            return False
        if not host:
            return False
        if host in self.allowed or is_loopback(host):
            return True
        return any(a.startswith("*.") and host.endswith(a[1:]) for a in self.allowed)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            header = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if not self.accepts(header):
                from starlette.responses import PlainTextResponse

                await PlainTextResponse("unknown Host: this service answers to its own names only", 400)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


def is_loopback(host: str) -> bool:
    import ipaddress

    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- running


@contextlib.asynccontextmanager
async def scheduled(service: Service) -> AsyncIterator[asyncio.Task[None]]:
    """The service's schedule (:meth:`Service.run_schedule`, first cycle now) while the block
    runs; on exit it is cancelled and awaited: no evaluation of the service outlives it."""
    schedule = asyncio.create_task(service.run_schedule(), name="gatecheck-schedule")
    try:
        yield schedule
    finally:
        schedule.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await schedule


def make_server(service: Service, host: str, port: int) -> Any:
    """The uvicorn server for the service's app (not started)."""
    import uvicorn

    class Server(uvicorn.Server):
        # uvicorn re-raises SIGTERM after its own shutdown, which would kill the process
        # before gatecheck's cleanup (ledger, the demo's nats-server). run_service handles
        # the signals instead.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    config = uvicorn.Config(
        create_app(service),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,  # a client holding a connection cannot stall a stop
    )
    return Server(config)


def bind(host: str, port: int) -> Any:
    """The listening socket on HOST:PORT, bound before anything is announced or started: a
    port in use is one line and exit 2, not a log line saying "serving" and then uvicorn's."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reasons = {
            errno.EADDRINUSE: "the address is already in use",
            errno.EACCES: "permission denied",
            errno.EADDRNOTAVAIL: "no such address on this machine",
        }
        why = reasons.get(exc.errno or 0, exc.strerror)
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ConfigError(f"--listen {shown}: cannot listen: {why}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def run_service(service: Service, server: Any, sockets: list[Any] | None = None) -> None:
    """Run the schedule and the HTTP server until the server stops (SIGTERM/SIGINT, or
    ``server.should_exit``); then cancel whatever is still running. ``sockets``: already
    bound (see :func:`bind`)."""
    # Importing Great Expectations takes seconds; do it once, on the engine's validation
    # thread, before the first evaluation would stall every other phase and the API.
    await service.engine.warm_up()
    if threading.current_thread() is threading.main_thread():
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: setattr(server, "should_exit", True))
    async with scheduled(service):
        config = server.config
        log.info(
            "gatecheck %s serving %s on http://%s:%d (ledger %s)",
            __version__, ", ".join(service.phases), config.host, config.port, service.ledger.url,
            extra={"version": __version__, "phases": service.phases, "port": config.port},
        )  # fmt: skip
        await server.serve(sockets=sockets)
        log.info("stopping: the schedule is cancelled, evaluations in flight end unrecorded or whole")
    # The schedule has been cancelled and awaited: its evaluations ended, each recorded whole
    # or not at all. The engine waits for a record write under way, then closes.
    if service.notifier is not None:
        await service.notifier.aclose()
    await service.engine.aclose()
    log.info("stopped")


async def serve(service: Service, host: str, port: int, sock: Any = None) -> None:
    """Run the service on HOST:PORT (``sock``: bound to it already) until SIGTERM/SIGINT."""
    sock = sock if sock is not None else bind(host, port)
    await run_service(service, make_server(service, host, port), [sock])


#: The bearer token for the state-changing endpoints; required beyond loopback.
API_TOKEN_ENV = "GATECHECK_API_TOKEN"


def serve_project(
    project: Project,
    listen: str | None,
    phases: list[str] | None,
    recorded_since: datetime | None = None,
) -> None:
    """``gatecheck serve``: the project's phases on ``listen`` (default ``service.listen``)
    until SIGTERM/SIGINT, recording into ``history.url``."""
    address = listen or project.config.service.listen
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--listen: expected HOST:PORT, got {address!r}")
    if project.config.history is None:
        raise ConfigError("gatecheck.yaml: history: the service needs a history ledger (history.url)")
    token = os.environ.get(API_TOKEN_ENV) or None
    if not is_loopback(host) and token is None:
        raise ConfigError(
            f"--listen {address}: listening beyond loopback needs a bearer token for the "
            f"state-changing endpoints; set {API_TOKEN_ENV}"
        )
    from gatecheck.ledger import open_ledger
    from gatecheck.ledger.proxy import WorkerLedger
    from gatecheck.worker import WorkerEvaluator

    url = project.config.history.url
    if urlsplit(url).scheme == "sqlite":
        open_ledger(url, project.root).close()  # a bad path is exit 2 now, not a dead worker
    sock = bind(host.strip("[]"), int(port))  # a port in use is exit 2 now, before any worker
    # Evaluations run in a worker process, which owns the engine and the ledger; the ledger
    # reads of this process go through it too (chDB: one process per embedded path).
    settings = project.config.service.worker
    evaluator = WorkerEvaluator(
        project,
        recorded_since=recorded_since,
        deadline_s=settings.deadline.total_seconds(),
        memory_limit_bytes=settings.memory_limit_mib * 2**20,
        recycle_after=settings.recycle_after,
    )
    chosen = phases or project.config.service.phases or [g.phase for g in project.chain()]
    ledger = WorkerLedger(evaluator, redact(url))
    service = Service(
        project, ledger, list(chosen), api_token=token, recorded_since=recorded_since, engine=evaluator
    )
    try:
        asyncio.run(serve(service, host.strip("[]"), int(port), sock))
    finally:
        evaluator.close()
        sock.close()
