"""Evaluations in their own process, so the service's answers never wait behind them.

``gatecheck serve`` answers ``/metrics`` and the verdict API from one event loop. Great
Expectations, pandas and the native drivers hold the GIL for tens of milliseconds at a
time; in the serving process they would stall every answer. So the service evaluates in a
**worker process** (``multiprocessing``, forked from a fork server that imported Great
Expectations once, so a replaced worker is ready at once): the worker holds the
:class:`~gatecheck.evaluation.engine.Engine` — the sources, the embedded ClickHouse session, the Great
Expectations thread and the ledger it records into — and sends back each verdict as its JSON
document. The serving process keeps the latest verdicts and answers from them.

The serving side (:class:`WorkerEvaluator`) is an evaluator like the engine
(``evaluate``/``warm_up``/``aclose``). It replaces the worker when it

- **crashes** (the pipe closes: killed, segfault, out of memory),
- **hangs** past ``service.worker.deadline`` on one evaluation (it is killed), or
- **exceeds** ``service.worker.memory_limit_mib`` of resident memory (replaced once idle),

and, as a safety net only, after ``service.worker.recycle_after`` evaluations. The
evaluations in flight in a replaced worker fail with :class:`WorkerError`: the service keeps
that as the phase's error (``last_error``, ``gatecheck_evaluation_error``) and evaluates it
again next cycle. A worker records an evaluation in one atomic write after its verdict
exists, so a killed worker leaves no partial record.

Ledger reads of the serving process (history, latest verdict, readiness) also go through the
worker (:class:`gatecheck.ledger.proxy.WorkerLedger`): chDB opens an embedded path in one
process only, so a ``chdb://`` ledger can have one owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import signal
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from gatecheck.errors import ConfigError, GatecheckError, LedgerError, WorkerError

log = logging.getLogger("gatecheck.worker")


# --------------------------------------------------------------------------- worker side


def _rss_bytes() -> int:
    """This process's resident memory (Linux /proc; 0 where it is not available)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


#: What the serving process and the fork server hold beside the worker (measured: ~190 and
#: ~170 MiB resident with the reference project), with room to spare.
BESIDE_THE_WORKER = 512 * 2**20


def container_memory_limit(cgroup: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The memory limit of the container this process runs in, in bytes: cgroup v2's
    ``memory.max`` or cgroup v1's ``memory/memory.limit_in_bytes``; None where there is none
    (``max``, v1's "unlimited" of about 2**63, no such file)."""
    for path in (cgroup / "memory.max", cgroup / "memory" / "memory.limit_in_bytes"):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text)
        return None
    return None


def memory_limit_warning(worker_limit: int, container_limit: int | None) -> str | None:
    """What to say when the worker's ``memory_limit_mib`` cannot take effect: the container
    would be out of memory first (the kernel kills the worker mid-evaluation, instead of
    gatecheck replacing it once idle). None when it can, or there is no container limit."""
    if not worker_limit or container_limit is None or worker_limit + BESIDE_THE_WORKER <= container_limit:
        return None
    fitting = max(0, (container_limit - BESIDE_THE_WORKER) // 2**20)
    return (
        f"service.worker.memory_limit_mib ({worker_limit // 2**20}) cannot take effect in this "
        f"container's memory limit ({container_limit // 2**20} MiB, of which about "
        f"{BESIDE_THE_WORKER // 2**20} MiB go to the serving process and the fork server): the kernel "
        "would kill the worker in the middle of its evaluations before gatecheck replaces it; "
        + (f"set it to {fitting} or less, or raise the container's limit" if fitting >= 64
           else "raise the container's limit")
    )  # fmt: skip


def _limit_arenas(arenas: int = 2) -> None:
    """At most ``arenas`` malloc arenas in this process (glibc's ``mallopt(M_ARENA_MAX)``)
    instead of eight per core: the worker's threads (GE, the drivers' pools) otherwise each
    fragment an arena of their own. Called first thing in the worker, before its threads
    start, so the serving process's environment is never changed to reach it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``). pandas,
    Great Expectations and the drivers allocate and free native memory on several threads;
    without this the freed pages stay in the process and its resident memory creeps up
    (measured: bench/soak.py)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _worker_main(
    connection: Any, project: Any, recorded_since: datetime | None, level: int, fmt: str
) -> None:
    """The worker process: one engine, one event loop; requests arrive on ``connection`` and
    run concurrently (as they would in one process); each answer goes back with its id."""
    _limit_arenas()  # before any thread of the worker starts
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the serving process decides when it stops
    from gatecheck import logs

    logs.configure(logging.getLevelName(level).lower(), fmt)  # as the serving process logs
    from gatecheck.evaluation.engine import Engine

    send_lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        with send_lock:
            connection.send(message)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        requests: asyncio.Queue[tuple[Any, ...] | None] = asyncio.Queue()

        def receive() -> None:  # a thread: the pipe blocks
            while True:
                try:
                    message = connection.recv()
                except (EOFError, OSError):
                    message = None
                loop.call_soon_threadsafe(requests.put_nowait, message)
                if message is None or message[0] == "stop":
                    return

        threading.Thread(target=receive, name="gatecheck-worker-receive", daemon=True).start()
        from gatecheck.config.loading import expectation_problems
        from gatecheck.evaluation.validation import expectation_problems as ge_problems

        try:
            # The serving process loaded the project without Great Expectations (it never
            # imports it); its check of every expectation runs here, before the first verdict.
            problems = await asyncio.to_thread(
                expectation_problems, project.suites, project.files, ge_problems
            )
            if problems:
                raise ConfigError(problems[0], problems)
            engine = Engine(project, recorded_since=recorded_since)
        except GatecheckError as exc:  # a bad expectation, a ledger that cannot be opened
            send(("failed", type(exc).__name__, str(exc), list(getattr(exc, "problems", [str(exc)]))))
            return
        async with engine:
            await engine.warm_up()
            send(("ready", os.getpid(), _rss_bytes()))
            tasks: set[asyncio.Task[None]] = set()

            async def handle(ident: int, kind: str, args: tuple[Any, ...]) -> None:
                try:
                    if kind == "evaluate":
                        from gatecheck.results import Requester

                        requester = Requester.model_validate(args[1]) if args[1] is not None else None
                        done = await engine.evaluate(args[0], requested_by=requester, lease=args[2])
                        result: Any = (done.verdict.document(), done.duration_s, done.recorded)
                    elif kind == "ledger":
                        if engine.ledger is None:
                            raise LedgerError("history: not configured")
                        method = getattr(engine.ledger, args[0])
                        result = await asyncio.to_thread(method, *args[1], **args[2])
                    else:
                        raise WorkerError(f"unknown request {kind!r}")
                    if kind == "evaluate" and len(tasks) <= 1:  # idle after this one
                        await asyncio.to_thread(_trim_heap)
                    send(("ok", ident, result, _rss_bytes()))
                except GatecheckError as exc:
                    send(("error", ident, type(exc).__name__, str(exc), _rss_bytes()))
                except Exception as exc:  # a bug: its traceback is in this worker's log
                    log.exception("worker: %s failed", kind)
                    send(("error", ident, type(exc).__name__, f"{type(exc).__name__}: {exc}", _rss_bytes()))

            while (message := await requests.get()) is not None and message[0] != "stop":
                _, ident, kind, args = message
                task = asyncio.create_task(handle(ident, kind, args))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    try:
        asyncio.run(main())
    finally:
        with contextlib.suppress(OSError):
            connection.close()


# --------------------------------------------------------------------------- serving side


#: What the fork server imports once for every worker it forks (none of them starts a thread).
_PRELOAD = ("gatecheck.service.worker", "gatecheck.evaluation.engine", "gatecheck.evaluation.ge")


class _Worker:
    """One worker process and the calls waiting on it."""

    def __init__(self, project: Any, recorded_since: datetime | None) -> None:
        context = multiprocessing.get_context("forkserver")
        # The fork server (started once, on the first worker) imports what every worker needs —
        # Great Expectations takes seconds — and no thread; each worker is forked from it, so a
        # replaced worker is ready in milliseconds, not after another import.
        context.set_forkserver_preload(list(_PRELOAD))
        self.connection, child = context.Pipe()
        from gatecheck.logs import current_format

        level = logging.getLogger("gatecheck").getEffectiveLevel()
        self.process = context.Process(
            target=_worker_main,
            args=(child, project, recorded_since, level, current_format()),
            name="gatecheck-worker",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ready: asyncio.Future[int] | None = None
        self.rss = 0
        self.evaluations = 0
        self.dead = False
        self.reason = "stopped"

    def start_reading(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ready = loop.create_future()
        threading.Thread(target=self._read, name="gatecheck-worker-read", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                message = self.connection.recv()
            except (EOFError, OSError):
                assert self.loop is not None
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    self.loop.call_soon_threadsafe(self._died, "the worker process exited")
                return
            assert self.loop is not None
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._answer, message)

    def _answer(self, message: tuple[Any, ...]) -> None:
        if message[0] == "failed":
            if self.ready is not None and not self.ready.done():
                self.ready.set_exception(_error(message[1], message[2], message[3]))
            self._died(message[2])
            return
        if message[0] == "ready":
            self.rss = message[2]
            if self.ready is not None and not self.ready.done():
                self.ready.set_result(message[1])
            return
        kind, ident = message[0], message[1]
        self.rss = message[-1]
        future = self.pending.pop(ident, None)
        if future is None or future.done():
            return
        if kind == "ok":
            future.set_result(message[2])
        else:
            future.set_exception(_error(message[2], message[3]))

    def _died(self, reason: str) -> None:
        if self.dead:
            return
        self.dead, self.reason = True, reason
        error = WorkerError(f"evaluation worker: {reason}")
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(error)
        for future in self.pending.values():
            if not future.done():
                future.set_exception(error)
        self.pending.clear()

    def kill(self, reason: str) -> None:
        """Stop at once (SIGKILL): what it had in flight fails with ``reason``."""
        self._died(reason)
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()
        self.process.join(timeout=5)
        with contextlib.suppress(OSError):
            self.connection.close()

    def stop(self, grace: float = 10.0) -> None:
        """Ask it to finish (its engine closes the ledger after a write under way), then kill
        it if it does not within ``grace`` seconds."""
        with contextlib.suppress(OSError, ValueError, BrokenPipeError):
            self.connection.send(("stop",))
        self.process.join(timeout=grace)
        if self.process.is_alive():
            self.kill("stopped")
        else:
            self._died("stopped")
            with contextlib.suppress(OSError):
                self.connection.close()


def _error(kind: str, message: str, problems: list[str] | None = None) -> GatecheckError:
    """The worker's GatecheckError, as the same class here where it has one."""
    from gatecheck import errors

    if kind == "ConfigError":
        return errors.ConfigError(message, problems or [message])
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, GatecheckError):
        return cls(message)
    return WorkerError(message)


class WorkerEvaluator:
    """Evaluates phases in a worker process; see the module docstring. An evaluator like
    :class:`~gatecheck.evaluation.engine.Engine`: ``evaluate``, ``warm_up``, ``aclose``."""

    def __init__(
        self,
        project: Any,
        *,
        recorded_since: datetime | None = None,
        deadline_s: float = 300.0,
        memory_limit_bytes: int = 2048 * 2**20,
        recycle_after: int = 0,
        start_timeout_s: float = 120.0,
    ) -> None:
        self.project = project
        self.recorded_since = recorded_since
        self.deadline_s = deadline_s
        self.memory_limit_bytes = memory_limit_bytes
        self.recycle_after = recycle_after
        self.start_timeout_s = start_timeout_s
        self._worker: _Worker | None = None
        self._starting: asyncio.Lock | None = None
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None  # for ledger calls from threads
        self.replacements = 0
        self.closed = False

    @property
    def in_flight(self) -> int:
        """Calls waiting on the worker now (evaluations and ledger reads)."""
        worker = self._worker
        return len(worker.pending) if worker is not None else 0

    @property
    def pid(self) -> int | None:
        worker = self._worker
        return worker.process.pid if worker is not None and not worker.dead else None

    @property
    def rss_bytes(self) -> int:
        return self._worker.rss if self._worker is not None else 0

    async def _live(self) -> _Worker:
        self._loop = asyncio.get_running_loop()
        if self.closed:
            raise WorkerError("evaluation worker: the service is stopping")
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            worker = self._worker
            if worker is not None and not worker.dead:
                return worker
            if worker is not None:
                self.replacements += 1
                log.warning("evaluation worker replaced (%s)", worker.reason, extra={"reason": worker.reason})
            worker = _Worker(self.project, self.recorded_since)
            worker.start_reading(asyncio.get_running_loop())
            self._worker = worker
            assert worker.ready is not None
            try:
                pid = await asyncio.wait_for(asyncio.shield(worker.ready), self.start_timeout_s)
            except GatecheckError:
                worker.kill(worker.reason)
                raise
            except TimeoutError:
                worker.kill("it did not start in time")
                raise WorkerError(f"evaluation worker: not ready within {self.start_timeout_s:g}s") from None
            log.info("evaluation worker %d ready", pid, extra={"pid": pid, "rss_mib": worker.rss // 2**20})
            return worker

    async def _call(self, kind: str, args: tuple[Any, ...], deadline: float | None) -> Any:
        worker = await self._live()
        ident = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        # Its outcome is read here, or (after a timeout) deliberately dropped: never "an
        # exception was never retrieved".
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        worker.pending[ident] = future
        try:
            worker.connection.send(("call", ident, kind, args))
        except (OSError, ValueError) as exc:
            worker.kill(f"cannot send to it ({exc})")
            raise WorkerError(f"evaluation worker: {worker.reason}") from exc
        try:
            return await asyncio.wait_for(asyncio.shield(future), deadline)
        except TimeoutError:
            # Hung (a native call that never returns, a deadlock): the whole process goes;
            # what it had in flight fails, nothing partial was recorded.
            worker.kill(f"an evaluation ran past its deadline of {deadline:g}s")
            raise WorkerError(f"evaluation worker: {worker.reason}; it was replaced") from None
        finally:
            worker.pending.pop(ident, None)
            if kind == "evaluate":
                worker.evaluations += 1
            self._after(worker)

    def _after(self, worker: _Worker) -> None:
        """Replace a worker over its memory ceiling (or its recycle count) once it is idle."""
        if worker.dead or worker.pending:
            return
        reason = None
        if self.memory_limit_bytes and worker.rss > self.memory_limit_bytes:
            reason = (
                f"resident memory {worker.rss / 2**20:.0f} MiB over the limit of "
                f"{self.memory_limit_bytes / 2**20:.0f} MiB"
            )
        elif self.recycle_after and worker.evaluations >= self.recycle_after:
            reason = f"recycled after {worker.evaluations} evaluations"
        if reason is not None:
            worker.reason = reason
            threading.Thread(target=worker.stop, name="gatecheck-worker-stop", daemon=True).start()
            worker.dead = True

    async def evaluate(self, phase: str, *, requested_by: Any = None, lease: Any = None) -> Any:
        from gatecheck.evaluation.engine import Evaluation
        from gatecheck.results import Verdict

        requester = None if requested_by is None else requested_by.model_dump()
        asked = (phase, requester, lease)
        document, duration, recorded = await self._call("evaluate", asked, self.deadline_s)
        return Evaluation(verdict=Verdict.model_validate(document), duration_s=duration, recorded=recorded)

    async def warm_up(self) -> None:
        """Start the worker now (it imports Great Expectations and warms it up: seconds)."""
        await self._live()

    def ledger_call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a ledger method in the worker from a thread of the serving process."""
        loop = self._loop
        if loop is None:
            raise LedgerError("history ledger: the evaluation worker is not running")
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:  # it would wait on itself forever
            raise RuntimeError("the worker's ledger is blocking: call it in a thread (asyncio.to_thread)")
        future = asyncio.run_coroutine_threadsafe(self._call("ledger", (method, args, kwargs), 60.0), loop)
        return future.result(timeout=65)

    async def aclose(self) -> None:
        """Stop the worker: it finishes a record write under way, closes its engine and exits."""
        self.closed = True
        worker, self._worker = self._worker, None
        if worker is not None and not worker.dead:
            await asyncio.to_thread(worker.stop)

    def close(self) -> None:
        self.closed = True
        worker, self._worker = self._worker, None
        if worker is not None and not worker.dead:
            worker.stop()
