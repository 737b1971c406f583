"""The engine: the one object that evaluates phases, for the CLI, the service and the demo.

::

    async with Engine(project) as engine:          # ledger from gatecheck.yaml's history.url
        evaluation = await engine.evaluate("staging-soak")
        evaluation.verdict                           # recorded in the ledger (record=False: not)

It owns what an evaluation needs and what must be released after it:

- the **source factory** (``source_factory``, default :func:`gatecheck.sources.open_source`):
  a test hands the engine fake sources to exercise gate logic without a backend;
- the **ClickHouse connections** (:class:`gatecheck.sources.clickhouse.connection.ClickHouse`): the embedded
  chDB engine's clients, one per database, behind one lock that the ClickHouse sources and a
  ClickHouse ledger share, so a ledger write never meets another phase's query in the engine;
- the **Great Expectations validator and its thread**: the engine's own GE context; every
  validation runs on its one thread, off the event loop, one at a time, each bounded by
  ``validation_timeout`` (a validation that overruns is the check's
  ``error``; the thread is shut down with the engine);
- the **history ledger** that ``requires`` and soak are judged on and each evaluation is
  recorded into — opened from ``history.url`` unless one is given, and closed with the engine
  only if the engine opened it.

``gate.evaluate`` stays pure of these: it takes the factory and the judging call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

from gatecheck.config import Project, SourceConfig
from gatecheck.errors import GatecheckError, ValidationTimeout
from gatecheck.evaluation.validation import Validator, warm_up
from gatecheck.ledger import Lease, Ledger, open_ledger
from gatecheck.results import Requester, Verdict
from gatecheck.sources import Source, open_source
from gatecheck.sources.clickhouse.connection import ClickHouse

T = TypeVar("T")

#: Builds one source: (name in gatecheck.yaml, its configuration, the --config directory).
log = logging.getLogger(__name__)

SourceFactory = Callable[[str, SourceConfig, Path], Source]
#: Validating one frame takes milliseconds; a minute means Great Expectations is stuck.
VALIDATION_TIMEOUT_S = 60.0


class _Configured:
    """The ledger named by ``history.url`` (the default)."""


CONFIGURED = _Configured()


@dataclass(frozen=True)
class Evaluation:
    """One evaluation: the verdict, how long it took, and whether it was recorded."""

    verdict: Verdict
    duration_s: float
    recorded: bool
    # how long each check took, by (suite, role): for reports (JUnit's time), not the verdict
    check_seconds: dict[tuple[str, str], float] = field(default_factory=dict)


class Evaluator(Protocol):
    """What evaluates for the service: an :class:`Engine` in this process, or
    :class:`gatecheck.service.worker.WorkerEvaluator` running one in a worker process."""

    async def evaluate(
        self, phase: str, *, requested_by: Requester | None = None, lease: Lease | None = None
    ) -> Evaluation: ...
    async def warm_up(self) -> None: ...
    async def aclose(self) -> None: ...


class Engine:
    """Evaluates the phases of one loaded project; see the module docstring."""

    def __init__(
        self,
        project: Project,
        *,
        ledger: Ledger | _Configured | None = CONFIGURED,
        source_factory: SourceFactory | None = None,
        validation_timeout: float = VALIDATION_TIMEOUT_S,
        recorded_since: datetime | None = None,
        watch_sources: Callable[[SourceFactory], SourceFactory] | None = None,
        read_only: bool = False,
        close_ledger: bool | None = None,
    ) -> None:
        self.project = project
        # The embedded ClickHouse engine's clients and their one lock, for sources and ledger.
        self.clickhouse = ClickHouse()
        # The scrape sources' memory of earlier scrapes, kept across this engine's evaluations
        # (the service's worker): increase/rate over a range that began before a counter was
        # created are answered from the scrape at the range's start.
        from gatecheck.sources.prometheus.scrape import ScrapeMemory

        self.scrapes = ScrapeMemory()
        self.source_factory: SourceFactory = source_factory or functools.partial(
            open_source, clickhouse=self.clickhouse, scrapes=self.scrapes
        )
        if watch_sources is not None:  # the CLI's spinner: which source is being waited on
            self.source_factory = watch_sources(self.source_factory)
        self.validation_timeout = validation_timeout
        # Judge `requires` and soak only on records written since then (the demo's own run).
        self.recorded_since = recorded_since
        # Close the ledger with the engine: one it opened itself, or one handed in with
        # close_ledger=True (whoever opened it leaves it to the engine, as `serve` does).
        self._owns_ledger = isinstance(ledger, _Configured) if close_ledger is None else close_ledger
        if isinstance(ledger, _Configured):
            history = project.config.history
            try:
                ledger = (
                    open_ledger(history.url, project.root, self.clickhouse, create=not read_only)
                    if history
                    else None
                )
            except BaseException:
                self.clickhouse.close()
                raise
        self.ledger: Ledger | None = ledger
        self._executor: ThreadPoolExecutor | None = None
        # Record writes under way: a stop waits for them, so the ledger closes after the last.
        self._writes: set[asyncio.Future[Any]] = set()
        # The engine's own Great Expectations context, used from its validation thread only.
        self.validator = Validator()

    # ---------------------------------------------------------------- lifetime

    def _record(self, verdict: Verdict, duration: float, lease: Lease | None = None) -> None:
        """The evaluation's record (fenced by ``lease``: the schedule's holding, refused once
        it has passed), then its lines of the audit trail: each waiver it used, and each waiver
        of the phase found past its end (blocking: runs in a thread)."""
        from gatecheck.ledger.decisions import expired_unrecorded, waivers_used

        assert self.ledger is not None
        try:
            self.ledger.record(verdict, duration, lease)
        except GatecheckError as exc:
            if lease is not None:  # fenced: this replica's schedule ended while it evaluated
                log.warning("%s", exc, extra={"phase": verdict.phase, "epoch": lease.epoch})
            raise
        now = datetime.now(UTC)
        used = waivers_used(verdict, now)
        try:
            kinds = ["waiver-created", "waiver-expired", "waiver-revoked"]
            trail = self.ledger.audit([verdict.phase], None, kinds)
            self.ledger.append_audit(used + expired_unrecorded(trail, verdict.phase, now))
        except GatecheckError as exc:  # the record stands; the trail says less than it should
            log.warning(
                "audit trail of %s not written: %s", verdict.phase, exc, extra={"phase": verdict.phase}
            )

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Wait for the record writes under way (each is one atomic INSERT), then :meth:`close`."""
        if self._writes:
            await asyncio.wait(set(self._writes))
        self.close()

    def close(self) -> None:
        """Stop the validation thread (a validation still running is abandoned), close the
        ledger if the engine opened it, then the embedded ClickHouse clients. Safe to call more
        than once."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        if self._owns_ledger and self.ledger is not None:
            self.ledger.close()
            self.ledger = None
        self.clickhouse.close()

    # ---------------------------------------------------------------- work

    async def in_validation_thread(self, call: Callable[..., T], *args: Any) -> T:
        """Run ``call`` on the Great Expectations thread, bounded by ``validation_timeout``."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gatecheck-ge")
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self._executor, call, *args), self.validation_timeout
            )
        except TimeoutError:
            raise ValidationTimeout(
                f"Great Expectations did not finish within {self.validation_timeout:g}s"
            ) from None

    async def warm_up(self) -> None:
        """Import Great Expectations and build its context now, on its thread (seconds)."""
        await self.in_validation_thread(warm_up, self.validator)

    async def evaluate(
        self,
        phase: str,
        as_of: datetime | None = None,
        *,
        assume_approved: Iterable[str] = (),
        assume_soaked: bool = False,
        record: bool = True,
        requested_by: Requester | None = None,
        lease: Lease | None = None,
    ) -> Evaluation:
        """Evaluate ``phase`` at ``as_of`` (default: now) and, unless ``record=False``, record
        it in the ledger in one atomic step. A stop (cancellation) before the record is written
        leaves no record; once the verdict exists its record is written whole. ``lease``: the
        scheduler's holding among replicas; the record is refused once it has passed."""
        from gatecheck.evaluation.gate import evaluate

        started = time.perf_counter()
        timings: dict[tuple[str, str], float] = {}
        verdict = await evaluate(
            self.project,
            phase,
            as_of,
            assume_approved,
            assume_soaked,
            self.ledger,
            self.recorded_since,
            source_factory=self.source_factory,
            judge_in=self.in_validation_thread,
            validator=self.validator,
            timings=timings,
            phase_since=requested_by.started if requested_by is not None else None,
            release=requested_by.release if requested_by is not None else None,
        )
        duration = time.perf_counter() - started
        if requested_by is not None:  # a rollout controller's request: recorded with it
            verdict = verdict.model_copy(update={"requested_by": requested_by})
        recorded = record and self.ledger is not None
        if recorded:
            assert self.ledger is not None
            # Shielded: a stop that arrives now still lets the write finish (aclose waits for it).
            write = asyncio.ensure_future(asyncio.to_thread(self._record, verdict, duration, lease))
            self._writes.add(write)
            write.add_done_callback(self._writes.discard)
            await asyncio.shield(write)
        return Evaluation(verdict=verdict, duration_s=duration, recorded=recorded, check_seconds=timings)
