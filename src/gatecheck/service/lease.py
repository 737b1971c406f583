"""Which replica schedules: the lease on a shared PostgreSQL ledger.

N ``gatecheck serve`` processes on one PostgreSQL ledger all serve reads, pages, waivers and
on-demand evaluations; exactly one of them **schedules**. That one holds the ledger's
``scheduler`` lease (:meth:`gatecheck.ledger.postgresql.PostgresLedger.acquire_lease`: a row
with a holder, an epoch and an expiry by the database's clock) and every record it writes for
the schedule carries the holding, so the ledger refuses it once the holding has passed to
another replica (fencing).

:class:`Leadership` runs in the serving process (not in the evaluation worker: a worker busy
with an evaluation must not delay a renewal):

- the holder renews every third of ``ttl``; if it cannot (the database is unreachable, a
  renewal hangs) it keeps trying and **stops scheduling before the lease can have ended**
  — at ``ttl - ttl/4`` after the start of its last successful renewal, measured on its own
  monotonic clock, which the lease's expiry (set by the database after that start) cannot
  precede;
- the others try to take it every second (at most every third of ``ttl``), and as soon as
  the holding they saw runs out by the database's clock; the one that takes it schedules at
  once (its first cycle now);
- a clean stop gives the lease up, so another replica takes over at once.

Each replica logs one line whenever the leader it knows of changes, and ``gatecheck_leader``
says whether it is the one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from gatecheck.errors import GatecheckError, redact
from gatecheck.ledger.base import Lease

log = logging.getLogger("gatecheck.service")

#: How often a replica that does not schedule asks for the lease (at most).
FOLLOW_EVERY_S = 1.0


def default_holder() -> str:
    """This replica's name in the lease: host (a pod's name), process id, and a few random
    characters (a restarted process may reuse a pid)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


class Leadership:
    """Takes, renews and gives up the scheduler's lease for this replica; runs the schedule
    while it holds it. See the module docstring."""

    def __init__(
        self,
        url: str,
        ttl: timedelta,
        *,
        holder: str | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.ttl_s = ttl.total_seconds()
        self.holder = holder or default_holder()
        self.on_change = on_change
        #: The holding this replica schedules under (None: it does not schedule now).
        self.current: Lease | None = None
        #: (holder, epoch) of the leader this replica knows of (None: none known).
        self.leader: tuple[str, int] | None = None
        self._ledger: Any = None
        self._problem: str | None = None  # the last renewal's error, said once per new error

    @property
    def leading(self) -> bool:
        return self.current is not None

    @property
    def renew_every_s(self) -> float:
        return self.ttl_s / 3

    @property
    def margin_s(self) -> float:
        """How long before the lease could end the holder stops when it cannot renew."""
        return self.ttl_s / 4

    # ------------------------------------------------------------------ the database (a thread)

    def _ask(self) -> tuple[Lease | None, Lease | None]:
        """(our holding, taken or renewed, or None; else the holding of whoever has it, or
        None when nobody does). Blocking."""
        if self._ledger is None:
            from gatecheck.ledger.postgresql import PostgresLedger

            every = max(1.0, self.renew_every_s)  # a renewal waiting on a lock: the next one tries again
            self._ledger = PostgresLedger(self.url, connect_timeout=every, statement_timeout=every)
        mine, seen = self._ledger.take_lease(self.holder, timedelta(seconds=self.ttl_s))
        return mine, seen

    def _release(self, lease: Lease) -> None:
        if self._ledger is not None:
            self._ledger.release_lease(lease)

    # ------------------------------------------------------------------ the loop

    async def run(self, schedule: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Until cancelled: hold the lease when it is free and run ``schedule()`` while
        holding it (cancelled when the holding is lost or cannot be renewed in time). On
        cancellation the schedule is cancelled and awaited, then the lease given up."""
        task: asyncio.Task[None] | None = None
        renewed_at = 0.0  # monotonic start of the last successful renewal
        attempt: asyncio.Future[tuple[Lease | None, Lease | None]] | None = None
        attempt_started = 0.0
        try:
            while True:
                now = time.monotonic()
                deadline = renewed_at + self.ttl_s - self.margin_s  # while leading: stop by then
                budget = deadline - now if task is not None else self.ttl_s
                if attempt is None:  # one question at a time: a hung one is waited for, not repeated
                    attempt, attempt_started = asyncio.ensure_future(asyncio.to_thread(self._ask)), now
                try:
                    mine, seen = await asyncio.wait_for(asyncio.shield(attempt), max(budget, 0.05))
                    problem = None
                except TimeoutError:
                    mine, seen, problem = None, None, "the database did not answer in time"
                except GatecheckError as exc:
                    mine, seen, problem = None, None, str(exc)
                except Exception as exc:  # a bug or a driver's surprise: said, and asked again
                    mine, seen, problem = None, None, f"{type(exc).__name__}: {exc}"
                if attempt.done():
                    attempt = None
                started = attempt_started
                if mine is not None and time.monotonic() >= started + self.ttl_s - self.margin_s:
                    # answered, but so late that the holding may end before it could be used
                    mine, seen, problem = None, None, "the database answered too late"
                if mine is not None:
                    renewed_at = started
                    self.current = mine
                    self._problem = None
                    self._saw(mine)
                    if task is None:
                        task = asyncio.create_task(schedule(), name="gatecheck-schedule")
                        self._changed()
                    wait = self.renew_every_s
                elif problem is None:  # another replica holds it, or it just ran out
                    if task is not None:
                        await self._stop(task, "another replica holds the lease")
                        task = None
                    self._problem = None
                    if seen is not None:
                        self._saw(seen)
                        # ask again within a second (a clean stop gives the lease up early),
                        # and the moment the holding seen runs out
                        wait = min(FOLLOW_EVERY_S, self.renew_every_s, max(seen.left_s, 0.0) + 0.05)
                    else:
                        wait = 0.05  # nobody holds it: take it now
                else:
                    if problem != self._problem:
                        log.warning("scheduler lease: %s", redact(problem), extra={"holder": self.holder})
                        self._problem = problem
                    now = time.monotonic()
                    if task is not None and now >= deadline:
                        await self._stop(
                            task, f"the lease could not be renewed within {self.ttl_s - self.margin_s:g}s"
                        )
                        task = None
                    wait = min(0.5, self.renew_every_s)
                    if task is not None:
                        wait = max(0.0, min(wait, deadline - now))
                await asyncio.sleep(wait)
        finally:
            if attempt is not None:
                attempt.cancel()  # its thread finishes on its own; nobody waits for it
            if task is not None:
                await self._stop(task, "the service is stopping", release=True)

    async def _stop(self, task: asyncio.Task[None], why: str, release: bool = False) -> None:
        """Stop scheduling: cancel the schedule and wait for it (its evaluations end), then
        (a clean stop) give the lease up."""
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:  # the schedule never raises; if it did, its traceback is here
            log.exception("the schedule failed")
        lease, self.current = self.current, None
        self.leader = None
        log.log(
            logging.INFO if release else logging.WARNING,  # a clean stop is no incident
            "this replica stopped scheduling: %s", why, extra={"holder": self.holder, "reason": why},
        )  # fmt: skip
        self._changed()
        if release and lease is not None:
            with contextlib.suppress(GatecheckError, TimeoutError):
                await asyncio.wait_for(asyncio.to_thread(self._release, lease), self.renew_every_s)

    def _saw(self, lease: Lease) -> None:
        """One log line whenever the leader this replica knows of changes."""
        known = (lease.holder, lease.epoch)
        if known == self.leader:
            return
        self.leader = known
        mine = lease.holder == self.holder
        log.info(
            "leader: %s (epoch %d)%s", lease.holder, lease.epoch, ": this replica schedules" if mine else "",
            extra={"leader": lease.holder, "epoch": lease.epoch, "this_replica": mine},
        )  # fmt: skip
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()
