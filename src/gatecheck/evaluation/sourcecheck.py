"""``gatecheck check-sources``: connect to each source of an environment and say whether the
suites can run there — reachable, which server and version, how long connecting took, and,
per kind, that what the suites read exists (ClickHouse tables and columns, NATS streams) and,
where the source has a planner, that each suite's window prunes what it reads."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gatecheck.config import Project
from gatecheck.durations import format_duration
from gatecheck.errors import ConfigError, GatecheckError, did_you_mean, redact
from gatecheck.evaluation.plan import query_parameters, window_for
from gatecheck.sources import kind_of, open_source
from gatecheck.sources.base import PlannedRequest
from gatecheck.sources.probe import Probe


@dataclass
class SourceCheck:
    environment: str
    name: str
    type: str
    url: str  # redacted
    suites: list[str]
    probe: Probe

    @property
    def ok(self) -> bool:
        return not self.probe.problems

    def document(self) -> dict[str, Any]:
        probe = self.probe
        return {
            "environment": self.environment,
            "source": self.name,
            "type": self.type,
            "url": self.url,
            "suites": self.suites,
            "reachable": probe.reachable,
            "version": probe.version,
            "latency_ms": None if probe.latency_ms is None else round(probe.latency_ms, 1),
            "checked": probe.checked,
            "problems": probe.problems,
        }


def _suites_by_source(project: Project, environment: str) -> dict[str, list[Any]]:
    """The suites that the gates of ``environment`` run, per source name."""
    found: dict[str, dict[str, Any]] = {}
    for gate in project.gates.values():
        if gate.environment != environment:
            continue
        for suite_name in [ref.suite for ref in gate.checks] + [ref.suite for ref in gate.rollback]:
            for _, unit in project.suites[suite_name].units():  # each side of a comparison
                found.setdefault(unit.source, {})[unit.name] = unit
    return {source: list(suites.values()) for source, suites in found.items()}


def _requests_by_source(
    project: Project, environment: str, as_of: datetime
) -> dict[str, list[PlannedRequest]]:
    """Each suite the gates of ``environment`` run, as sent at ``as_of`` over the suite's own
    window (thresholds of the first gate running it), per source name."""
    found: dict[str, dict[str, PlannedRequest]] = {}
    for gate in project.gates.values():
        if gate.environment != environment:
            continue
        thresholds = None
        for suite_name in [ref.suite for ref in gate.checks] + [ref.suite for ref in gate.rollback]:
            suite = project.suites[suite_name]
            window = window_for(as_of, suite.window.length, suite.window.settle)
            for _, unit in suite.units():
                if unit.name in found.get(unit.source, {}):
                    continue
                thresholds = thresholds or project.resolve_thresholds(gate.phase)
                found.setdefault(unit.source, {})[unit.name] = PlannedRequest(
                    suite=unit.name,
                    window=format_duration(suite.window.length),
                    query=unit.query,
                    parameters=query_parameters(unit, window, as_of, thresholds),
                )
    return {source: list(requests.values()) for source, requests in found.items()}


async def check_sources(
    project: Project, environment: str | None = None, on_start: Any = None, on_done: Any = None
) -> list[SourceCheck]:
    """Probe every source of ``environment`` (default: every environment), concurrently.
    ``on_start(label)`` / ``on_done(label)`` report progress (the CLI's spinner)."""
    environments = project.config.environments
    if environment is not None and environment not in environments:
        known = ", ".join(environments)
        hint = did_you_mean(environment, environments)
        raise ConfigError(f"--environment: unknown environment {environment!r}{hint} (known: {known})")
    names = [environment] if environment is not None else list(environments)

    async def one(
        env: str, name: str, config: Any, suites: list[Any], requests: list[PlannedRequest]
    ) -> SourceCheck:
        label = f"{env}/{name}"
        if on_start is not None:
            on_start(label)
        try:
            probe = await kind_of(config).check(name, config, project.root, suites)
            if probe.reachable and not probe.problems and requests:
                # every table the suites read is there: does each window prune it?
                source = open_source(name, config, project.root)
                try:
                    probe.problems += await source.unpruned(requests)
                except GatecheckError as exc:
                    probe.problems.append(f"cannot estimate what the suites read: {exc}")
                finally:
                    await source.close()
        except GatecheckError as exc:
            probe = Probe(reachable=False, problems=[str(exc)])
        finally:
            if on_done is not None:
                on_done(label)
        return SourceCheck(env, name, config.type, redact(config.url), sorted(s.name for s in suites), probe)

    jobs = []
    now = datetime.now(UTC)
    for env in names:
        suites = _suites_by_source(project, env)
        requests = _requests_by_source(project, env, now)
        for name, config in environments[env].sources.items():
            jobs.append(one(env, name, config, suites.get(name, []), requests.get(name, [])))
    return list(await asyncio.gather(*jobs))
