"""A ``reconcile:`` suite as a check: its two sides opened, the rounds run
(:mod:`gatecheck.evaluation.reconcile`), the counts as the one-row frame its expectations
judge, and what was found (counts, sample keys, rounds) on the check's result.

The frame: ``<first>_rows`` and ``<second>_rows`` (each side's rows in the window, for its
``min_rows``), ``missing``, ``extra``, ``changed`` and ``duplicated`` (keys).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from gatecheck._values import document_time, shown
from gatecheck.errors import GatecheckError, QueryError, SourceTimeout, SourceUnavailable
from gatecheck.evaluation.carried import carried, carry
from gatecheck.evaluation.plan import query_parameters
from gatecheck.evaluation.reconcile import (
    KINDS,
    Buckets,
    Cells,
    Found,
    JointPair,
    MemorySide,
    SidesFailed,
    SqlForm,
    SqlSide,
    decode_key,
    hashing_for,
    reconcile,
)
from gatecheck.results import (
    CheckResult,
    Outcome,
    ReconcileRound,
    Reconciliation,
    SideResult,
    Window,
)
from gatecheck.sources import kind_of

if TYPE_CHECKING:
    import pandas as pd

    from gatecheck.config import Project, ResolvedThreshold, SuiteConfig
    from gatecheck.sources import Source


class SourcePool(Protocol):
    """The gate's sources of one environment (gatecheck.evaluation.gate.SourcePool)."""

    project: Project
    environment: str

    def get(self, name: str) -> Source: ...


class SideFailed(Exception):
    """A side could not answer: its name and gatecheck's error."""

    def __init__(self, side: str, error: GatecheckError) -> None:
        super().__init__(f"side {side}: {error}")
        self.side = side
        self.error = error


@contextmanager
def _blamed(*names: str) -> Iterator[None]:
    """A request's failure as the failure of the sides it asked: SideFailed for one,
    SidesFailed for both (one query asks both sides on one source)."""
    try:
        yield
    except GatecheckError as exc:
        error = exc
    except (KeyError, ValueError, TypeError) as exc:  # an answer not of the shape asked for
        error = QueryError(f"unexpected answer: {exc}")
    else:
        return
    if len(names) == 1:
        raise SideFailed(names[0], error) from error
    raise SidesFailed([SideFailed(name, error) for name in names]) from error


class _Named:
    """A side whose failures name it."""

    def __init__(self, side: Any) -> None:
        self.side = side
        self.name = side.name

    async def buckets(self, bits: int, within: tuple[int, list[int]] | None) -> Buckets:
        with _blamed(self.name):
            found: Buckets = await self.side.buckets(bits, within)
        return found

    def crossed(self, answered: int, first: bool) -> int:
        return int(self.side.crossed(answered, first))

    async def rows(self, bits: int, prefixes: list[int]) -> list[tuple[str, int]]:
        with _blamed(self.name):
            found: list[tuple[str, int]] = await self.side.rows(bits, prefixes)
        return found

    async def digest(self, part: int) -> Cells:
        with _blamed(self.name):
            found: Cells = await self.side.digest(part)
        return found

    async def duplicates(self, limit: int) -> list[int]:
        with _blamed(self.name):
            found: list[int] = await self.side.duplicates(limit)
        return found


class _NamedJoint:
    """A joint pair whose failures name both sides (one query asks both)."""

    joint = True

    def __init__(self, pair: JointPair) -> None:
        self.pair = pair
        self.names = pair.names

    async def buckets(self, bits: int, within: tuple[int, list[int]] | None, first: bool) -> Any:
        with _blamed(*self.names):
            return await self.pair.buckets(bits, within, first)

    async def rows(self, bits: int, prefixes: list[int]) -> Any:
        with _blamed(*self.names):
            return await self.pair.rows(bits, prefixes)

    async def digest(self, part: int) -> Any:
        with _blamed(*self.names):
            return await self.pair.digest(part)

    async def duplicates(self, limit: int) -> Any:
        with _blamed(*self.names):
            return await self.pair.duplicates(limit)


def one_source_dialect(suite: SuiteConfig, sources: Mapping[str, Any]) -> str | None:
    """``clickhouse`` or ``postgresql`` when both sides are SQL on one source (each round one
    query over both), else None. ``sources``: the environment's configured sources."""
    assert suite.reconcile is not None
    first, second = suite.reconcile.sides.values()
    if first.source != second.source:
        return None
    dialect = kind_of(sources[first.source]).reconcile
    return dialect if dialect in ("clickhouse", "postgresql") else None


def hashing_of(suite: SuiteConfig, sources: Mapping[str, Any]) -> str:
    """How both sides hash (:func:`gatecheck.evaluation.reconcile.hashing_for` of their
    sources' kinds)."""
    assert suite.reconcile is not None
    first, second = (kind_of(sources[side.source]).reconcile or "" for side in suite.reconcile.sides.values())
    return hashing_for((first, second))


def both_parameters(
    suite: SuiteConfig, window: Any, as_of: datetime, thresholds: Mapping[str, ResolvedThreshold]
) -> dict[str, Any]:
    """The parameters of a query over both sides: each side's."""
    found: dict[str, Any] = {}
    for _, unit in suite.units():
        found.update(query_parameters(unit, window, as_of, thresholds))
    return found


def joint_pair(
    suite: SuiteConfig, window: Window, as_of: datetime, thresholds: Mapping[str, ResolvedThreshold],
    pool: SourcePool,
) -> JointPair | None:  # fmt: skip
    """Both sides as one :class:`JointPair` when they are SQL on one source, else None.
    Raises SidesFailed when that source cannot be opened."""
    config = suite.reconcile
    assert config is not None
    dialect = one_source_dialect(suite, pool.project.config.environments[pool.environment].sources)
    if dialect is None:
        return None
    units = [unit for _, unit in suite.units()]
    with _blamed(*config.names):
        source = pool.get(units[0].source)
    form = SqlForm(dialect, dialect, dict(config.keys), dict(config.values), config.decimals)  # type: ignore[arg-type]
    sqls = (str(units[0].query), str(units[1].query))
    return JointPair(config.names, source, sqls, both_parameters(suite, window, as_of, thresholds), form)


def side_windows(suite: SuiteConfig, window: Window) -> list[tuple[Window, Window]]:
    """The windows each side is read over, per reconciliation: ``[(w, w)]``, or with a late
    side (its ``lag`` L) two — the early side's ``[s, e)`` against the late side's
    ``[s, e + L)`` (every early record's row is written by then: missing, changed,
    duplicated), and the early side's ``[s - L, e)`` against the late side's ``[s, e)`` (each
    late row's record is in it: extra). Consecutive windows judge each record once."""
    config = suite.reconcile
    assert config is not None
    if config.late is None:
        return [(window, window)]
    late, lag = config.late
    later = window.model_copy(update={"end": window.end + lag})
    earlier = window.model_copy(update={"start": window.start - lag})
    by_early = [(window, later), (earlier, window)]
    return by_early if late == config.names[1] else [(b, a) for a, b in by_early]


def lag_kinds(suite: SuiteConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """With a late side, the kinds each of :func:`side_windows`'s two reconciliations counts."""
    config = suite.reconcile
    assert config is not None and config.late is not None
    second_late = config.late[0] == config.names[1]
    early_only, late_only = ("missing", "extra") if second_late else ("extra", "missing")
    return (early_only, "changed", "duplicated"), (late_only,)


async def open_sides(
    suite: SuiteConfig, windows: tuple[Window, Window], as_of: datetime,
    thresholds: Mapping[str, ResolvedThreshold], pool: SourcePool,
) -> tuple[list[_Named], str]:  # fmt: skip
    """Each side ready to answer over its window (a NATS side's messages read and hashed),
    and the hashing both use. Raises SidesFailed with every side that cannot."""
    config = suite.reconcile
    assert config is not None
    units = [unit for _, unit in suite.units()]
    sources = pool.project.config.environments[pool.environment].sources
    dialects = [kind_of(sources[u.source]).reconcile or "" for u in units]
    hashing = hashing_of(suite, sources)

    async def one(name: str, unit: SuiteConfig, dialect: str, window: Window) -> _Named:
        with _blamed(name):
            source = pool.get(unit.source)
            parameters = query_parameters(unit, window, as_of, thresholds)
            if dialect == "nats":  # a message value not of its column's type: ValueError
                rows = await source.records(unit.query, parameters, list(config.columns))
                return _Named(MemorySide.of(name, rows, config.keys, config.values, config.decimals))
            form = SqlForm(dialect, hashing, dict(config.keys), dict(config.values), config.decimals)  # type: ignore[arg-type]
            return _Named(SqlSide(name, source, str(unit.query), parameters, form))
        raise AssertionError("unreachable")  # _blamed raises or the block returned

    found = await asyncio.gather(
        *(one(n, u, d, w) for n, u, d, w in zip(config.names, units, dialects, windows, strict=True)),
        return_exceptions=True,
    )
    failures = [f for f in found if isinstance(f, BaseException)]
    if failures:
        named = [f for f in failures if isinstance(f, SideFailed)]
        if len(named) != len(failures):
            raise next(f for f in failures if not isinstance(f, SideFailed))
        raise SidesFailed(list(named))  # every side that cannot answer, said together
    return [f for f in found if isinstance(f, _Named)], hashing


async def fetch_reconciled(
    suite: SuiteConfig,
    window: Window,
    as_of: datetime,
    thresholds: Mapping[str, ResolvedThreshold],
    pool: SourcePool,
    base: dict[str, Any],
) -> pd.DataFrame | CheckResult:
    """The reconciliation's frame (its findings: :func:`findings_of`), or the
    result saying why there is none: a side that cannot answer is an error naming it; a NATS
    side with more messages than it may read is inconclusive."""

    from gatecheck.sources.nats import TooMuchToRead

    config = suite.reconcile
    assert config is not None
    names = config.names
    units = [unit for _, unit in suite.units()]
    options = {"sample": config.sample, "max_rows": config.max_rows, "max_rounds": config.max_rounds}
    try:
        # a late side's two reconciliations read each side over its own windows: asked apart
        joint = joint_pair(suite, window, as_of, thresholds, pool) if config.late is None else None
        hashing: str
        if joint is not None:
            hashing = joint.form.hashing
            outcome = await reconcile(_NamedJoint(joint), **options)  # type: ignore[arg-type]
        else:
            outcomes = []
            for windows in side_windows(suite, window):
                sides, hashing = await open_sides(suite, windows, as_of, thresholds, pool)
                outcomes.append(await reconcile(sides[0], sides[1], **options))  # type: ignore[arg-type]
            outcome = outcomes[0] if len(outcomes) == 1 else _lagged(suite, outcomes[0], outcomes[1])
    except (SideFailed, SidesFailed) as failed:
        every = (
            [e for e in failed.errors if isinstance(e, SideFailed)]
            if isinstance(failed, SidesFailed)
            else [failed]
        )
        if isinstance(failed, SidesFailed) and len(every) != len(failed.errors):
            raise next(e for e in failed.errors if not isinstance(e, SideFailed)) from failed
        down = {f.side for f in every if isinstance(f.error, SourceUnavailable | SourceTimeout)}
        sides_result = [
            SideResult(side=n, source=u.source, source_available=n not in down)
            for n, u in zip(names, units, strict=True)
        ]
        said = {(_source_of(suite, f.side), str(f.error)) for f in every}
        if len(every) == len(names) and len(said) == 1:  # one source down under both sides: said once
            ((source, error),) = said
            reason = f"source {source}: {error}"
        else:
            reason = "; ".join(f"side {f.side}: source {_source_of(suite, f.side)}: {f.error}" for f in every)
        if all(isinstance(f.error, TooMuchToRead) for f in every):
            return CheckResult(
                **base, outcome=Outcome.INCONCLUSIVE, source_available=True, reason=reason, sides=sides_result
            )
        return CheckResult(
            **base,
            outcome=Outcome.ERROR,
            source_available=not down,
            reason=reason,
            sides=sides_result,
        )
    return reconciled_frame(suite, outcome, hashing)


def _lagged(suite: SuiteConfig, by_late_end: Found, by_early_start: Found) -> Found:
    """A late side's two reconciliations as one: the early side's records judged against the
    late side read on past the window's end (missing, changed, duplicated), the late side's
    rows against the early side read from before its start (extra); each side's rows in
    the window itself."""
    from dataclasses import replace

    config = suite.reconcile
    assert config is not None and config.late is not None
    first_kinds, second_kinds = lag_kinds(suite)
    late = config.late[0]
    counts = {kind: (by_late_end if kind in first_kinds else by_early_start).counts[kind] for kind in KINDS}
    samples = {kind: (by_late_end if kind in first_kinds else by_early_start).samples[kind] for kind in KINDS}
    return Found(
        rows={name: (by_early_start if name == late else by_late_end).rows[name] for name in config.names},
        counts=counts,
        samples=samples,
        rounds=[replace(r, decides=first_kinds) for r in by_late_end.rounds]
        + [replace(r, decides=second_kinds) for r in by_early_start.rounds],
        # either reconciliation past max_rows: the counts are lower bounds
        capped=by_late_end.capped or by_early_start.capped,
    )


def findings_of(frame: pd.DataFrame) -> Reconciliation | None:
    """The findings a reconciliation's frame carries (None on any other frame)."""
    found: Reconciliation | None = carried(frame, "reconciliation")
    return found


def reconciled_frame(suite: SuiteConfig, outcome: Any, hashing: str) -> pd.DataFrame:
    """The one-row frame of counts the expectations judge, the findings in its attrs."""
    import pandas as pd

    config = suite.reconcile
    assert config is not None
    names = config.names
    found = Reconciliation(
        keys=list(config.keys),
        hashing=hashing,
        rows=outcome.rows,
        **outcome.counts,
        samples={
            kind: [_shown_key(key, config.keys, config.decimals, config.hash_keys) for key in keys]
            for kind, keys in outcome.samples.items()
        },
        rounds=[
            ReconcileRound(
                what=r.what,
                bits=r.bits,
                asked=r.asked,
                differing=r.differing,
                transferred=r.transferred,
                decides=list(r.decides),
            )
            for r in outcome.rounds
        ],
        transferred=outcome.transferred,
        capped=outcome.capped,
        late=None if config.late is None else config.late[0],
        lag=None if config.late is None else config.late[1],
    )
    row: dict[str, Any] = {f"{name}_rows": outcome.rows[name] for name in names}
    row.update(outcome.counts)
    frame = pd.DataFrame({column: [value] for column, value in row.items()})
    return carry(frame, "reconciliation", found)


def _source_of(suite: SuiteConfig, side: str) -> str:
    assert suite.reconcile is not None
    return suite.reconcile.sides[side].source


def _shown_key(key: str, columns: Mapping[str, str], decimals: int, hashed: bool) -> dict[str, str | None]:
    """A sampled key for people: each column's canonical text read back — a timestamp as
    ``2026-12-04T09:00:00Z`` (with its fraction when it has one), a number in its units —
    or, with ``hash_keys``, only the key's MD5."""
    if hashed:
        return {"key_md5": hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()[:16]}
    decoded = decode_key(key, list(columns))
    for name, kind in columns.items():
        text = decoded[name]
        if text is None:
            continue
        if kind == "timestamp":
            moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(text))
            decoded[name] = document_time(moment)
        elif kind == "number":
            decoded[name] = shown(int(text) / 10**decimals)
    return decoded


def judged(
    suite: SuiteConfig, found: Reconciliation, outcome: Outcome, reason: str | None
) -> tuple[Outcome, str | None, list[SideResult]]:
    """The check's outcome with what the reconciliation found: the sample keys of each
    failing kind after the reason; counts capped at max_rows (lower bounds) turn a pass into
    inconclusive, a failure stays one."""
    config = suite.reconcile
    assert config is not None
    sides = [
        SideResult(side=name, source=side.source, source_available=True, values={"rows": found.rows[name]})
        for name, side in config.sides.items()
    ]
    if outcome is Outcome.FAIL and reason:
        from gatecheck.render.describe import keys_found

        named = keys_found(found, only=[k for k in KINDS if k in reason])
        if named:
            reason = f"{reason} — {named}"
    if found.capped and outcome is Outcome.PASS:
        outcome = Outcome.INCONCLUSIVE
        reason = (
            f"more differing rows than max_rows ({config.max_rows}): at least {found.missing} missing, "
            f"{found.extra} extra, {found.changed} changed, {found.duplicated} duplicated — "
            "a shorter window or a higher max_rows"
        )
    return outcome, reason, sides


async def reconcile_steps(
    suite: SuiteConfig, plans: list[Any], times: list[datetime], thresholds: Mapping[str, ResolvedThreshold],
    pool: SourcePool,
) -> list[pd.DataFrame | None] | None:  # fmt: skip
    """A backtest's reconciliation of many steps, where it can be asked at once: both sides
    on one ClickHouse source and each side's SQL in the one-pass form — then one query
    compares every step's buckets in the engine. Each step's frame, or None for a step whose
    buckets differ (its own reconciliation names the keys); None when not asked at once."""
    from gatecheck.evaluation.reconcile import Round
    from gatecheck.sources.base import MAX_ROWS
    from gatecheck.sources.clickhouse import STEP_COLUMN
    from gatecheck.sources.clickhouse.onepass import one_pass, steps_of

    config = suite.reconcile
    assert config is not None
    units = [unit for _, unit in suite.units()]
    if config.late is not None:  # each side over its own windows: step by step
        return None
    if one_source_dialect(suite, pool.project.config.environments[pool.environment].sources) != "clickhouse":
        return None
    steps = steps_of(
        [both_parameters(suite, p.window, m, thresholds) for m, p in zip(times, plans, strict=True)]
    )
    if steps is None:
        return None
    first, second = (one_pass(str(unit.query), steps) for unit in units)
    if first is None or second is None:
        return None
    form = SqlForm("clickhouse", "clickhouse", dict(config.keys), dict(config.values), config.decimals)
    bits = JointPair.FIRST_BITS
    sql = form.joint_buckets_sql((first, second), bits, None, step=STEP_COLUMN)
    source = pool.get(units[0].source)
    frame = await source.query(sql, steps.parameters())
    if len(frame) > MAX_ROWS:  # more differing buckets than one answer holds: step by step
        return None
    names = config.names
    totals: dict[int, dict[str, int]] = {}
    answered: dict[int, int] = {}
    differing: set[int] = set()
    for row in frame.itertuples(index=False):
        step, _, n0, h0, d0, n1, h1, d1, t0, t1 = (int(v) for v in row)
        totals[step] = {names[0]: t0, names[1]: t1}
        answered[step] = answered.get(step, 0) + 1
        if (n0, h0) != (n1, h1) or d0 or d1:
            differing.add(step)
    frames: list[pd.DataFrame | None] = []
    for k in range(len(plans)):
        if k in differing:
            frames.append(None)
            continue
        rows = totals.get(k, {names[0]: 0, names[1]: 0})
        found = Found(
            rows=rows,
            counts=dict.fromkeys(KINDS, 0),
            samples={kind: [] for kind in KINDS},
            rounds=[Round("buckets", bits, 0, 0, {"both": answered.get(k, 0)})],
        )
        frames.append(reconciled_frame(suite, found, "clickhouse"))
    return frames
