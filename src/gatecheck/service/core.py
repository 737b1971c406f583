"""The service's state: each phase's latest verdict, what is being evaluated, the schedule's
cycles, the pages' short-lived cache and the login sessions (:class:`Service`).

Why one module of ~710 lines: every route, the schedule and the collector read and change
this one state under one event loop; split, each part would reach into the others' fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client.registry import CollectorRegistry

from gatecheck._values import document_time
from gatecheck.config import Project
from gatecheck.durations import format_duration
from gatecheck.errors import ConfigError, GatecheckError
from gatecheck.evaluation.engine import Engine, Evaluator
from gatecheck.ledger import Ledger
from gatecheck.ledger.base import kept_records
from gatecheck.results import Outcome, Requester, Verdict, VerdictState

if TYPE_CHECKING:
    from gatecheck.evaluation.gate import Look
    from gatecheck.ledger import Lease
    from gatecheck.render.html import Card, PhasePage
    from gatecheck.service.lease import Leadership
    from gatecheck.service.notify import Notifier
from gatecheck.service.auth import AUTH_FAILURES_PER_MINUTE, RateLimiter

log = logging.getLogger("gatecheck.service")


T = TypeVar("T")
#: Seconds a status page's ledger read is reused.
PAGE_READ_TTL = 5.0
#: A browser session that gave the token lasts this long (seconds), at most this many at once.
SESSION_LIFETIME_S = 12 * 3600
MAX_SESSIONS = 1000
#: How often the schedule prunes the ledger to history.retention (seconds).
PRUNE_EVERY_S = 3600.0
#: How often the schedule reads the audit trail for what ended a scheduled phase's latest
#: verdict (an invalidation, a waiver revoked or ended, a shadow check enforced, an approval
#: ended; a decision made here, on another replica or with the CLI): that phase is evaluated
#: again at once, not at its next interval.
WITHDRAWALS_EVERY_S = 10.0
#: Decisions are read from this long before the oldest verdict they could take back (a
#: decision follows the verdict it takes back; the margin covers clocks apart).
WITHDRAWAL_MARGIN = timedelta(hours=1)
SESSION_COOKIE = "gatecheck_session"


@dataclass
class PhaseState:
    """What the service knows of one phase (replaced whole after each evaluation)."""

    verdict: Verdict | None = None
    duration_s: float | None = None
    evaluated_at: datetime | None = None  # wall clock when the evaluation finished
    last_error: str | None = None
    evaluations: int = 0


#: An asynchronous evaluation's answer is kept this long after it started, and at most this
#: many are kept.
ASYNC_KEPT = timedelta(hours=1)
MAX_ASYNC = 1000


@dataclass(frozen=True)
class AsyncEvaluation:
    """One asynchronous evaluation request: its id, phase, when it started, and its future."""

    id: str
    phase: str
    started: datetime
    future: asyncio.Future[Verdict]


#: A scheduled phase's latest verdict older than this many of its intervals is overdue (as the
#: alert GatecheckEvaluationsStale judges it): its schedule has stopped or fails.
OVERDUE_INTERVALS = 3


def overdue_text(as_of: datetime, now: datetime, interval: timedelta) -> str | None:
    """``overdue: scheduled every 5m, the latest 3h ago`` when ``as_of`` is older than
    ``OVERDUE_INTERVALS`` intervals at ``now``, else None."""
    from gatecheck.durations import format_duration

    age = now - as_of
    if age <= OVERDUE_INTERVALS * interval:
        return None
    age = timedelta(seconds=int(age.total_seconds()) // 60 * 60)  # to the minute
    return f"overdue: scheduled every {format_duration(interval)}, the latest {format_duration(age)} ago"


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
    # Asynchronous evaluations (POST /api/v1/phases/{phase}/evaluations), by id, oldest first.
    requests: dict[str, AsyncEvaluation] = field(default_factory=dict, repr=False)
    # Answers rendered once per new state and served as bytes: the exposition (None: render
    # at the next scrape) and each phase's verdict document with its ETag.
    _exposition: bytes | None = field(default=None, repr=False)
    _documents: dict[str, tuple[bytes, str]] = field(default_factory=dict, repr=False)
    # What evaluates for the service: `gatecheck serve` hands it a worker process
    # (gatecheck.service.worker.WorkerEvaluator); by default an engine in this process on its ledger.
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
    auth_failures: RateLimiter = field(
        default_factory=lambda: RateLimiter(AUTH_FAILURES_PER_MINUTE), repr=False
    )
    # Replicas on one PostgreSQL ledger: the lease that decides which one schedules (None:
    # this service is the only one and always schedules).
    leadership: Leadership | None = field(default=None, repr=False)
    # The wall clock every age is judged against (max_age, since, page times, the latest
    # record's recency): a test hands in a clock it controls, so no test depends on its date.
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), repr=False)
    # When the schedule last pruned the ledger (history.retention; monotonic; -inf: never).
    _pruned_at: float = field(default=float("-inf"), repr=False)
    # (phase, as_of) of verdicts that no longer held, evaluated again: each at most once,
    # so a re-evaluation that fails is not retried every look (the next interval does).
    _rejudged: set[tuple[str, datetime]] = field(default_factory=set, repr=False)

    @property
    def base_url(self) -> str:
        """Where people open the service (links in notifications and compact answers)."""
        settings = self.project.config.service
        return (settings.url or f"http://{settings.listen}").rstrip("/")

    def __post_init__(self) -> None:
        if self.engine is None:
            self.engine = Engine(self.project, ledger=self.ledger, recorded_since=self.recorded_since)
        if self.notifier is None and self.project.config.notify:
            from gatecheck.service.notify import Notifier

            self.notifier = Notifier(
                self.project.config.notify,
                self.project.root,
                self.base_url,
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

    @property
    def cycles_under_way(self) -> frozenset[asyncio.Task[Any]]:
        """The schedule's cycles running now (a stop cancels these, and nothing else)."""
        return frozenset(self._cycles)

    def interval(self, phase: str) -> timedelta:
        return self.project.config.service.interval_for(phase)

    def evaluating(self, phase: str) -> bool:
        """A request-started evaluation of ``phase`` is under way (a new request joins it)."""
        running = self._inflight.get(phase)
        return running is not None and not running.done()

    def start_evaluation(self, phase: str) -> AsyncEvaluation:
        """An evaluation of ``phase`` started for an asynchronous request, or the one under way
        for an earlier request (the same id: requests for one phase share it). Finished ones are
        kept for :data:`ASYNC_KEPT` (at most :data:`MAX_ASYNC`, the oldest dropped first)."""
        for found in reversed(self.requests.values()):
            if found.phase == phase and not found.future.done():
                return found
        now = self.clock()
        for key in [k for k, v in self.requests.items() if v.future.done() and now - v.started > ASYNC_KEPT]:
            del self.requests[key]
        while len(self.requests) >= MAX_ASYNC:
            del self.requests[next(iter(self.requests))]
        future = asyncio.ensure_future(self.evaluate_shared(phase))
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        started = AsyncEvaluation(uuid.uuid4().hex, phase, now, future)
        self.requests[started.id] = started
        return started

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

    @property
    def scheduling(self) -> bool:
        """This replica schedules the evaluations now (always, without replicas)."""
        return self.leadership is None or self.leadership.leading

    async def evaluate_phase(
        self, phase: str, requested_by: Requester | None = None, lease: Lease | None = None
    ) -> Verdict:
        """Evaluate now (waiting for a running evaluation of the same phase), record, publish.
        ``lease``: the schedule's holding (replicas), which fences the record."""
        if phase not in self._locks:
            self._locks[phase] = asyncio.Lock()
            self.states[phase] = PhaseState()
        async with self._locks[phase]:
            previous = self.states[phase].verdict
            if previous is None and self.notifier is not None:  # a restart: the ledger remembers
                previous = await asyncio.to_thread(self._recorded, phase)
            # The engine records it; once the verdict exists its record is written whole even if
            # the service is being stopped, before that a stop abandons it unrecorded.
            evaluation = await self.engine.evaluate(phase, requested_by=requested_by, lease=lease)
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
            return self.ledger.latest_verdict(phase)
        except GatecheckError:
            return None

    def _counted(self) -> None:
        """A notification was counted: the exposition is rendered anew at the next scrape."""
        self._exposition = None

    def leadership_changed(self) -> None:
        """This replica began or stopped scheduling: ``gatecheck_leader`` anew at the next scrape."""
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
            overdue = None
            if verdict is not None and phase in self.phases:  # this service's schedule
                overdue = overdue_text(verdict.as_of, now, self.interval(phase))
            withdrawn = self.withdrawn(phase, verdict, now)
            cards.append(
                Card(PhaseInfo.of(gate), verdict, line, problem, overdue=overdue, withdrawn=withdrawn)
            )
        upcoming = next(
            (
                c.gate.phase
                for c in cards
                if c.verdict is None or c.verdict.verdict is not VerdictState.GO or c.withdrawn
            ),
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
        page = self._page_read(
            "page", phase, lambda: read_phase_page(self.ledger, gate, verdict, now, problem)
        )
        if page.verdict is not None and phase in self.phases:  # this service's schedule
            page = replace(page, overdue=overdue_text(page.verdict.as_of, now, self.interval(phase)))
        return replace(page, withdrawn=self.withdrawn(phase, page.verdict, now))

    def withdrawn(self, phase: str, verdict: Verdict | None, now: datetime) -> str | None:
        """What a person's decision took back of ``verdict`` since (``withdrawn_text``; the
        pages say it under the verdict), or None — also when the trail cannot be read: the
        verdict is shown as recorded."""
        if verdict is None:
            return None
        from gatecheck.ledger.audit import WITHDRAWING, withdrawn_text

        try:
            trail = self._page_read("trail", phase, partial(self.ledger.audit, [phase], None, WITHDRAWING))
        except GatecheckError:
            return None
        return withdrawn_text(trail, phase, verdict, now)

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
            "as_of": document_time(verdict.as_of),
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
        """The scheduler's job: never raises. Among replicas, evaluated under the lease this
        replica holds (its record is refused once the lease has passed to another)."""
        lease = self.leadership.current if self.leadership is not None else None
        if self.leadership is not None and lease is None:
            return  # no longer the one that schedules
        try:
            await self.evaluate_phase(phase, lease=lease)
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
        self._own_work()

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
            if time.monotonic() - self._pruned_at >= PRUNE_EVERY_S:
                self._pruned_at = time.monotonic()
                await self.prune_history()
        except asyncio.CancelledError:
            for task in tasks.values():
                task.cancel()
            # Each evaluation ends here: dropped unrecorded, or (its verdict complete) its record
            # written whole by the engine before the task returns.
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            log.debug("cycle of %s cancelled by shutdown", ", ".join(tasks))
            raise

    def _own_work(self) -> None:
        """The current task is the service's own work: a stop cancels these, and nothing
        else in the loop."""
        current = asyncio.current_task()
        if current is not None and current not in self._cycles:
            self._cycles.add(current)
            current.add_done_callback(self._cycles.discard)

    async def prune_history(self) -> int | None:
        """Delete the records older than ``history.retention`` (None: none is set), keeping
        each phase's latest record and latest decision (what ``requires``, the pages and
        ``status`` read) and every pinned baseline's record; the audit trail is never pruned.
        Run by the schedule at most once an hour (among replicas: the one that schedules). A
        ledger that refuses (a role without DELETE) is said in one line, never fatal."""
        history = self.project.config.history
        if history is None or history.retention is None:
            return None
        before = self.clock() - history.retention
        try:
            keep = await asyncio.to_thread(kept_records, self.ledger, list(self.project.gates))
            deleted = await asyncio.to_thread(self.ledger.prune, before, keep)
        except GatecheckError as exc:
            log.warning("history ledger not pruned: %s", exc)
            return None
        if deleted:
            log.info(
                "history ledger: %d records as of before %s pruned (history.retention %s)",
                deleted, document_time(before), format_duration(history.retention),
                extra={"pruned": deleted},
            )  # fmt: skip
        return deleted

    async def requirement_ended(
        self, verdict: Verdict, now: datetime, memo: Look | None = None
    ) -> str | None:
        """Why a GO's ``requires`` no longer holds at ``now`` — a requirement it met, judged
        again now as an evaluation would (:func:`requirement_at`: the required phase's latest
        decision no longer a GO, that GO taken back, the approval standing in for it ended or
        overridden) — or None. An ``--assume-approved`` is left alone: it was for the one
        evaluation it was given to. A ledger that cannot be read raises GatecheckError."""
        if verdict.verdict is not VerdictState.GO or verdict.phase not in self.project.gates:
            return None
        from gatecheck.evaluation.decide import ASSUMED_APPROVED
        from gatecheck.evaluation.gate import requirement_at

        for met in verdict.requires:
            if not met.satisfied or met.reason == ASSUMED_APPROVED:
                continue
            now_judged = await requirement_at(
                self.project, verdict.phase, met.phase, self.ledger, now, self.recorded_since, memo=memo
            )
            if not now_judged.satisfied:
                return f"its requirement of {met.phase} no longer holds: {now_judged.reason}"
        return None

    async def withdrawn_phases(self) -> list[str]:
        """The scheduled phases whose latest verdict here no longer holds (:func:`no_longer_holds`:
        invalidated, a waiver it passed under revoked, ended or replaced, a shadow check that
        did not pass in it enforced since, the approval it needed ended; or a GO whose
        ``requires`` no longer holds: :meth:`requirement_ended`), each verdict once. The
        phases' evaluations are left to the caller. Said in one log line each.

        A decision lands on the ledger at any moment of a look, which reads the trail first and
        the required phases' records after it. One landing between the two reads is seen by the
        second only: a GO whose requirement it ended would be evaluated again alone, on the
        taken-back verdict it requires (INCONCLUSIVE until its next interval, though that phase
        is GO again seconds later). So a requirement found ended reads the trail again, and the
        phase it requires is found in the same look: one cycle judges both in promotion order,
        the dependent on the phase's new verdict."""
        held = {
            phase: state.verdict
            for phase, state in self.states.items()
            if phase in self.phases and state.verdict is not None
        }
        self._rejudged &= {(phase, verdict.as_of) for phase, verdict in held.items()}
        held = {phase: v for phase, v in held.items() if (phase, v.as_of) not in self._rejudged}
        if not held:
            return []
        from gatecheck.evaluation.gate import Look
        from gatecheck.ledger.audit import HOLDING, MAX_DECISION, no_longer_holds

        # A waiver in force at a verdict was created at most MAX_DECISION before it.
        since = min(v.as_of for v in held.values()) - MAX_DECISION - WITHDRAWAL_MARGIN

        async def taken_back() -> dict[str, str]:
            trail = await asyncio.to_thread(self.ledger.audit, sorted(held), since, HOLDING)
            now = self.clock()
            reasons = {phase: no_longer_holds(trail, phase, verdict, now) for phase, verdict in held.items()}
            return {phase: why for phase, why in reasons.items() if why is not None}

        try:
            found = await taken_back()
        except GatecheckError:
            return []  # the ledger cannot be read: /readyz says so; the next look tries again
        now = self.clock()
        memo = Look()  # each link of the chain judged once a look
        ended = False
        for phase, verdict in held.items():
            if phase in found:
                continue
            try:
                why = await self.requirement_ended(verdict, now, memo)
            except GatecheckError:
                continue  # the ledger cannot be read: the next look tries again
            if why is not None:
                found[phase] = why
                ended = True
        if ended:  # the decision that ended it may have landed after the trail was read
            with contextlib.suppress(GatecheckError):
                found = {**await taken_back(), **found}
        ordered = [phase for phase in held if phase in found]
        for phase in ordered:
            verdict = held[phase]
            self._rejudged.add((phase, verdict.as_of))
            log.warning(
                "the latest verdict of %s (%s as of %s) no longer holds: %s; evaluating it again now",
                phase, verdict.verdict.value, document_time(verdict.as_of), found[phase],
                extra={"phase": phase, "verdict": verdict.verdict.value},
            )  # fmt: skip
        return ordered

    async def _withdrawals_job(self) -> None:
        """The schedule's look at the trail (:meth:`withdrawn_phases`): a phase whose latest
        verdict no longer holds is evaluated again in a cycle of its own (in promotion order,
        recorded, published, notified), so the documents, gauges and notifications stop
        saying what no longer holds within seconds, not at the phase's next interval."""
        self._own_work()  # a stop cancels the look too, and awaits it
        try:
            phases = await self.withdrawn_phases()
            if phases:
                await self.cycle(phases)
        except asyncio.CancelledError:
            log.debug("re-evaluation of taken-back verdicts stopped")

    async def _cycle_job(self, phases: list[str]) -> None:
        """The schedule's job: one cycle; a stop ends it quietly (its evaluations already
        ended or recorded whole by :meth:`cycle`), so the scheduler logs no error for it."""
        try:
            await self.cycle(phases)
        except asyncio.CancelledError:
            log.debug("cycle of %s stopped", ", ".join(phases))

    async def run_schedule(self) -> None:
        """Every scheduled phase, until cancelled: always, or (replicas on a PostgreSQL ledger)
        while this replica holds the scheduler's lease, following the ledger while it does not
        (:meth:`follow`)."""
        if self.leadership is None:
            await self._schedule()
            return
        follower = asyncio.create_task(self.follow(), name="gatecheck-follow")
        try:
            await self.leadership.run(self._schedule)
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)

    async def _schedule(self) -> None:
        """Every scheduled phase, until cancelled. APScheduler holds the schedule: one job per
        interval, first run now, its phases evaluated in one cycle in promotion order
        (:meth:`cycle`), so a phase's ``requires`` sees this cycle's record of the phase before
        it (a phase on its own interval reads the latest record of the phases it requires).
        At most one instance of a job runs: a cycle that overruns its slot is followed by one
        cycle at the next grid point, never a burst of missed ones (coalesced, however late).
        Every ``WITHDRAWALS_EVERY_S`` a look at the audit trail evaluates again a phase whose
        latest verdict no longer holds (:meth:`withdrawn_phases`). Cancelling this task
        shuts the scheduler down and awaits the cycles under way, which end their evaluations
        before returning."""
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        groups: dict[float, list[str]] = {}
        for phase in self.phases:
            groups.setdefault(self.interval(phase).total_seconds(), []).append(phase)
        now = datetime.now(UTC)
        for seconds, phases in sorted(groups.items()):
            scheduler.add_job(
                self._cycle_job,
                "interval",
                seconds=seconds,
                args=[phases],
                id=f"gatecheck-every-{seconds:g}s",
                name=f"cycle of {', '.join(phases)} every {seconds:g}s",
                start_date=now,
                next_run_time=now,
            )
        scheduler.add_job(
            self._withdrawals_job,
            "interval",
            seconds=WITHDRAWALS_EVERY_S,
            id="gatecheck-withdrawals",
            name="evaluate again a phase whose latest verdict no longer holds",
            start_date=now,
        )
        scheduler.start()
        try:
            await asyncio.Event().wait()  # until cancelled: the scheduler runs the jobs
        finally:
            scheduler.shutdown(wait=False)  # cancels the cycles under way ...
            await asyncio.gather(*self._cycles, return_exceptions=True)  # ... and awaits them

    async def follow(self) -> None:
        """While another replica schedules, take each phase's newer records from the ledger
        (every third of the lease, at most every shortest interval), so this replica's
        documents, gauges and pages show what the leader recorded. Until cancelled."""
        assert self.leadership is not None
        every = min(self.leadership.renew_every_s, self.refresh_s())
        while True:
            await asyncio.sleep(every)
            if self.leadership.leading:
                continue
            for phase in self.phases:
                try:
                    record = await asyncio.to_thread(self.ledger.latest, phase)
                except GatecheckError:
                    break  # the ledger is unreachable: /readyz says so; try again later
                state = self.states.get(phase) or PhaseState()
                if record is None or (state.verdict is not None and record.as_of <= state.verdict.as_of):
                    continue
                self.states[phase] = PhaseState(
                    verdict=record.to_verdict(),
                    duration_s=record.duration_s,
                    evaluated_at=record.recorded_at,
                    last_error=None,
                    evaluations=state.evaluations,
                )
                self._changed(phase)

    def latest_here(self, phase: str) -> Verdict | None:
        """The verdict this service evaluated last (None: not since its start)."""
        state = self.states.get(phase)
        return state.verdict if state is not None else None

    def latest(self, phase: str) -> Verdict | None:
        here = self.latest_here(phase)
        if here is not None:
            return here
        return self.ledger.latest_verdict(phase)


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
