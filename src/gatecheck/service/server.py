"""Running it: the schedule's task, uvicorn on a bound socket, signals and a clean shutdown,
and ``gatecheck serve``'s set-up (the evaluation worker, its ledger).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from gatecheck import __version__
from gatecheck.config import Project
from gatecheck.errors import ConfigError, redact
from gatecheck.service.app import create_app
from gatecheck.service.core import Service
from gatecheck.service.middleware import is_loopback

log = logging.getLogger("gatecheck.service")


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


#: Seconds a client has to send a whole request (its head and its body, at most 64 KiB) once
#: it connects or once its previous answer is sent. uvicorn waits for a request head without
#: end: a client sending a header line now and then held its connection (and a file
#: descriptor) forever, and enough of them left no room for Argo's or Prometheus's requests.
REQUEST_READ_TIMEOUT = 10.0


def bounded_protocol(read_timeout: float) -> Any:
    """uvicorn's h11 protocol whose connection is closed when a request has not been wholly
    received ``read_timeout`` seconds after the connection or the previous answer."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class BoundedH11Protocol(H11Protocol):
        _read_deadline: asyncio.TimerHandle | None = None

        def _receiving(self) -> bool:
            """The client still owes (part of) a request: its head, or its body."""
            return self.conn.their_state in (h11.IDLE, h11.SEND_BODY)

        def _arm(self) -> None:
            self._disarm()
            self._read_deadline = self.loop.call_later(read_timeout, self._read_too_slow)

        def _disarm(self) -> None:
            if self._read_deadline is not None:
                self._read_deadline.cancel()
                self._read_deadline = None

        def _read_too_slow(self) -> None:
            self._read_deadline = None
            if self._receiving() and not self.transport.is_closing():
                self.transport.close()  # no answer: the request never arrived

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self._receiving():
                self._disarm()  # the whole request is here: the app's time is its own

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self._receiving():
                self._arm()  # the next request on this connection

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return BoundedH11Protocol


def make_server(service: Service, host: str, port: int) -> Any:
    """The uvicorn server for the service's app (not started); a client has
    ``REQUEST_READ_TIMEOUT`` seconds to send each whole request."""
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
        http=bounded_protocol(REQUEST_READ_TIMEOUT),
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
    """Run the service on HOST:PORT (``sock``: bound to it already) until SIGTERM/SIGINT.
    Port 0 is the one the system picked when the socket was bound: the log line says which."""
    sock = sock if sock is not None else bind(host, port)
    await run_service(service, make_server(service, host, int(sock.getsockname()[1])), [sock])


#: The bearer token for the state-changing endpoints; required beyond loopback.
API_TOKEN_ENV = "GATECHECK_API_TOKEN"


#: The fewest characters a bearer token may have.
MIN_TOKEN_CHARS = 16


def token_problem(token: str) -> str | None:
    """Why ``token`` would let others in (never quoting it), or None."""
    if "CHANGE_ME" in token.upper():
        return (
            "still the placeholder of the shipped manifests, known to anyone who read them; set a "
            "long random token (e.g. openssl rand -hex 32)"
        )
    if len(token) < MIN_TOKEN_CHARS:
        return f"{len(token)} characters; a token needs {MIN_TOKEN_CHARS} or more (openssl rand -hex 32)"
    return None


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
    problem = token_problem(token) if token is not None else None
    if problem is not None:  # a guessable token opens waivers and approvals: a NO-GO made GO
        raise ConfigError(f"{API_TOKEN_ENV}: {problem}")
    if not is_loopback(host) and token is None:
        raise ConfigError(
            f"--listen {address}: listening beyond loopback needs a bearer token for the "
            f"state-changing endpoints; set {API_TOKEN_ENV}"
        )
    from gatecheck.ledger import open_ledger
    from gatecheck.ledger.proxy import WorkerLedger
    from gatecheck.service.worker import WorkerEvaluator, container_memory_limit, memory_limit_warning

    url = project.config.history.url
    if urlsplit(url).scheme == "sqlite":
        open_ledger(url, project.root).close()  # a bad path is exit 2 now, not a dead worker
    sock = bind(host.strip("[]"), int(port))  # a port in use is exit 2 now, before any worker
    bound = f"{host}:{sock.getsockname()[1]}"
    if bound != project.config.service.listen:
        # --listen, or port 0: links in notifications and the Host check name where it listens
        service_config = project.config.service.model_copy(update={"listen": bound})
        project = dataclasses.replace(
            project, config=project.config.model_copy(update={"service": service_config})
        )
    # Evaluations run in a worker process, which owns the engine and the ledger; the ledger
    # reads of this process go through it too (chDB: one process per embedded path).
    settings = project.config.service.worker
    cramped = memory_limit_warning(settings.memory_limit_mib * 2**20, container_memory_limit())
    if cramped is not None:
        log.warning(cramped)
    evaluator = WorkerEvaluator(
        project,
        recorded_since=recorded_since,
        deadline_s=settings.deadline.total_seconds(),
        memory_limit_bytes=settings.memory_limit_mib * 2**20,
        recycle_after=settings.recycle_after,
    )
    chosen = phases or project.config.service.phases or [g.phase for g in project.chain()]
    from gatecheck.config.checks import unsoakable

    for note in unsoakable(project, chosen):
        log.warning(note)
    ledger = WorkerLedger(evaluator, redact(url))
    leadership = None
    if urlsplit(url).scheme in ("postgresql", "postgres"):
        # Replicas share this ledger: the one holding its scheduler lease schedules.
        from gatecheck.config.models import LeaseConfig
        from gatecheck.service.lease import Leadership

        leadership = Leadership(url, (project.config.service.lease or LeaseConfig()).ttl)
    service = Service(
        project, ledger, list(chosen), api_token=token, recorded_since=recorded_since, engine=evaluator,
        leadership=leadership,
    )  # fmt: skip
    if leadership is not None:
        leadership.on_change = service.leadership_changed
    try:
        asyncio.run(serve(service, host.strip("[]"), int(port), sock))
    finally:
        evaluator.close()
        sock.close()
