"""The engine: gate logic with fake sources injected, recording, the validation thread."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from gatecheck.config import Project, load_project
from gatecheck.errors import SourceUnavailable
from gatecheck.evaluation.engine import Engine
from gatecheck.ledger import SqliteLedger
from gatecheck.results import Outcome, VerdictState
from gatecheck.sources.base import Source

from ..conftest import AS_OF, PROJECT
from ..evaluation.test_source_answers import passing_frame, passing_sides

PHASE = "warehouse-release"  # the four warehouse suites


class FakeSource(Source):
    """Answers each suite's query with the frame the test chose for that suite (gate logic
    only: a source's own tests run against its real engine)."""

    def __init__(self, name: str, config: Any, project: Project, frames: dict[str, Any]) -> None:
        super().__init__(name, config)
        # each query (a comparison: each side's) → (suite, side)
        self.by_query = {
            str(unit.query): (s.name, prefix.split(".")[2] if prefix else None)
            for s in project.suites.values()
            for prefix, unit in s.units()
        }
        self.frames = frames
        self.closed = False

    async def query(self, text: Any, parameters: Any) -> pd.DataFrame:
        # a reconciliation sends its side's query inside its own rounds' SQL
        found = str(text) if str(text) in self.by_query else next(q for q in self.by_query if q in str(text))
        suite, side = self.by_query[found]
        answer = self.frames[suite]
        if side is not None and isinstance(answer, dict):  # a comparison's sides
            answer = answer[side]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):  # a reconciliation's side: each round its own answer
            return answer(str(text))
        return answer

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def project() -> Project:
    return load_project(PROJECT, environ={})


def agreeing_digests(suite: Any) -> dict[str, Any]:
    """A reconciliation's sides answering alike, 60 rows each, no key twice: sides on two
    sources each their digest's cells; on one source, the one query's row of totals (no cell
    differs)."""
    sources = {side.source for side in suite.reconcile.sides.values()}
    # (a side's question answers gc_kh; both sides' on one source, gc_s too)
    no_key_twice = pd.DataFrame({"gc_s": pd.Series([], dtype="uint8"), "gc_kh": pd.Series([], dtype="uint64")})
    if len(sources) == 1:
        digests = pd.DataFrame({"gc_cell": [1], "gc_n0": [60], "gc_k0": [5], "gc_h0": [7], "gc_x0": [9],
                                "gc_n1": [60], "gc_k1": [5], "gc_h1": [7], "gc_x1": [9],
                                "gc_t0": [60], "gc_t1": [60]})  # fmt: skip
    else:
        digests = pd.DataFrame({"gc_cell": [c * 512 + 1 for c in range(3)], "gc_rows": [60] * 3,
                                "gc_ksum": [5] * 3, "gc_hash": [7] * 3, "gc_check": [9] * 3})  # fmt: skip

    def answer(text: str) -> pd.DataFrame:
        return digests if "gc_cell" in text else no_key_twice

    return dict.fromkeys(suite.reconcile.sides, answer)


def passing(project: Project) -> dict[str, Any]:
    thresholds = project.resolve_thresholds(PHASE)
    found: dict[str, Any] = {}
    for check in project.gate(PHASE).checks:
        suite = project.suites[check.suite]
        if suite.compare is not None:
            found[check.suite] = passing_sides(suite, thresholds, 3)
        elif suite.reconcile is not None:
            found[check.suite] = agreeing_digests(suite)
        else:
            found[check.suite] = passing_frame(suite, thresholds, 3)
    return found


def engine_with(project: Project, frames: dict[str, Any], tmp_path: Path, **kwargs: Any) -> tuple[Engine, list[FakeSource]]:
    opened: list[FakeSource] = []

    def factory(name: str, config: Any, root: Path) -> Source:
        source = FakeSource(name, config, project, frames)
        opened.append(source)
        return source

    return Engine(project, ledger=SqliteLedger(tmp_path / "l.db"), source_factory=factory, **kwargs), opened


def test_all_checks_pass_on_fake_sources_is_go_and_recorded(project: Project, tmp_path: Path) -> None:
    engine, opened = engine_with(project, passing(project), tmp_path)

    async def go() -> Any:
        async with engine:
            first = await engine.evaluate(PHASE, AS_OF)
            second = await engine.evaluate(PHASE, AS_OF, record=False)
            return first, second

    first, second = asyncio.run(go())
    assert first.verdict.verdict is VerdictState.GO, first.verdict.reasons
    assert (first.recorded, second.recorded) == (True, False)
    assert engine.ledger is not None and len(engine.ledger.history(PHASE)) == 1  # record=False wrote none
    assert opened and all(s.closed for s in opened)  # the sources are closed after each evaluation


def test_a_failing_group_on_a_fake_source_is_no_go(project: Project, tmp_path: Path) -> None:
    frames = passing(project)
    frames["unmatched_edges"] = frames["unmatched_edges"].assign(unmatched_rate=[0.0, 0.04, 0.0])
    engine, _ = engine_with(project, frames, tmp_path)
    verdict = asyncio.run(engine.evaluate(PHASE, AS_OF)).verdict
    engine.close()
    assert verdict.verdict is VerdictState.NO_GO
    assert "edge_type=edge_type-1: observed 4 %" in verdict.reasons[0]


def test_a_source_that_cannot_be_reached_is_error_and_inconclusive(project: Project, tmp_path: Path) -> None:
    frames = passing(project)
    frames["rollup_parity"] = SourceUnavailable("cannot reach ClickHouse at h:8123: connection refused")
    engine, _ = engine_with(project, frames, tmp_path)
    verdict = asyncio.run(engine.evaluate(PHASE, AS_OF)).verdict
    engine.close()
    assert verdict.verdict is VerdictState.INCONCLUSIVE
    parity = next(c for c in verdict.checks if c.suite == "rollup_parity")
    assert (parity.outcome, parity.source_available) == (Outcome.ERROR, False)


def test_a_validation_that_overruns_is_an_error_not_a_hang(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import gatecheck.evaluation.gate

    real_judge = gatecheck.evaluation.gate.judge
    release = threading.Event()  # the validation of freshness_lag hangs until the test is done

    def hanging_judge(suite: Any, *args: Any) -> Any:
        if suite.name == "freshness_lag":
            release.wait(60)
        return real_judge(suite, *args)

    monkeypatch.setattr(gatecheck.evaluation.gate, "judge", hanging_judge)
    engine, _ = engine_with(project, passing(project), tmp_path, validation_timeout=0.3)
    try:  # the verdict comes while the validation still hangs (were it awaited: 60 s, then a pass)
        verdict = asyncio.run(engine.evaluate(PHASE, AS_OF)).verdict
    finally:
        release.set()
        engine.close()
    lag = next(c for c in verdict.checks if c.suite == "freshness_lag")
    assert lag.outcome is Outcome.ERROR
    assert lag.reason == "Great Expectations did not finish within 0.3s"
    assert verdict.verdict is VerdictState.INCONCLUSIVE


def test_closing_stops_the_validation_thread_and_the_ledger_it_opened(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    monkeypatch.setenv("GATECHECK_HISTORY_URL", f"sqlite:///{tmp_path}/own.db")
    own = load_project(PROJECT)
    engine = Engine(own, source_factory=lambda name, config, root: FakeSource(name, config, own, passing(own)))

    before = set(threading.enumerate())
    ours: list[threading.Thread] = []

    async def go() -> None:
        async with engine:
            await engine.evaluate(PHASE, AS_OF)
            ours.extend(t for t in set(threading.enumerate()) - before if t.name.startswith("gatecheck-ge"))
            assert ours, "validations ran on the engine's own thread"

    asyncio.run(go())
    assert engine.ledger is None  # the engine opened it from history.url, so it closed it
    deadline = time.monotonic() + 30
    while any(t.is_alive() for t in ours):
        assert time.monotonic() < deadline, "the validation thread is still running"
        time.sleep(0.05)
    assert len(SqliteLedger(tmp_path / "own.db").history(PHASE)) == 1


def test_a_stopped_evaluation_closes_its_sources_only_after_every_query_has_ended(
    project: Project, tmp_path: Path
) -> None:
    """A stop (the service's, a rollout's timeout) cancels an evaluation while its checks query
    one source together. The source is closed only once every query has ended: a query that
    takes a moment to end (nats-py's request, closing its own stream) ran on a closed
    connection and logged an "unexpected error" from the stopping service."""
    started: list[str] = []
    both = asyncio.Event()
    seen_closed: list[bool] = []

    class Slow(FakeSource):
        async def query(self, text: Any, parameters: Any) -> pd.DataFrame:
            suite, _ = self.by_query.get(str(text), ("", None))
            started.append(suite)
            if len(started) == 2:
                both.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                if suite == "rollup_parity":  # ends a few steps after being told to stop
                    for _ in range(5):
                        await asyncio.sleep(0)
                    seen_closed.append(self.closed)
                raise
            raise AssertionError("not stopped")

    frames = passing(project)
    opened: list[FakeSource] = []

    def factory(name: str, config: Any, root: Path) -> Source:
        source = Slow(name, config, project, frames)
        opened.append(source)
        return source

    engine = Engine(project, ledger=SqliteLedger(tmp_path / "l.db"), source_factory=factory)

    async def go() -> None:
        async with engine:
            task = asyncio.create_task(engine.evaluate(PHASE, AS_OF))
            await asyncio.wait_for(both.wait(), 30)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(go())
    assert "rollup_parity" in started and seen_closed == [False]
    assert opened and all(s.closed for s in opened)  # and closed once they had all ended
