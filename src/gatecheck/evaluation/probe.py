"""A probe check's answer: the synthetic request sent through its http source, then — when it
was accepted (2xx) and the suite names an effect — the effect's source asked for the row with
the probe's id until it appears or the time is up. One row: ``probe_id``, ``status`` (0: no
answer), ``answered``, ``latency_ms``, ``error``, and with an effect ``effect_rows`` (None:
not looked for), ``effect_ms`` and the first row's own columns (``ln_rmssd``…) for the
expectations to judge."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gatecheck._values import document_time
from gatecheck.errors import GatecheckError, QueryError
from gatecheck.evaluation.carried import source_failed
from gatecheck.results import CheckResult
from gatecheck.sources.base import past_for_the_present

if TYPE_CHECKING:
    import pandas as pd

    from gatecheck.config import SuiteConfig


def is_probe(suite: SuiteConfig) -> bool:
    """A suite on an http source: it sends a synthetic request."""
    from gatecheck.sources.http import ProbeQuery

    return isinstance(suite.query, ProbeQuery)


async def fetch_probe(
    suite: SuiteConfig, as_of: datetime, pool: Any, base: dict[str, Any]
) -> pd.DataFrame | CheckResult:
    import pandas as pd

    from gatecheck.sources.http import HttpSource, ProbeQuery

    query = suite.query
    assert isinstance(query, ProbeQuery)
    probe_id = f"gatecheck-probe-{uuid.uuid4().hex[:16]}"
    late = past_for_the_present(as_of, "a probe's request, sent now,")
    if late is not None:  # nothing is sent
        return source_failed(QueryError(late), suite.source, base)
    try:
        # an http source (validate checks it), perhaps wrapped (the CLI's spinner watches it)
        source: HttpSource = pool.get(suite.source)  # type: ignore[assignment]
        sent = await source.send(query.request, probe_id, document_time(as_of))
    except GatecheckError as exc:
        return source_failed(exc, suite.source, base)
    status = int(sent["status"])
    row: dict[str, Any] = {
        "probe_id": probe_id,
        "status": status,
        "answered": int(status != 0),
        "latency_ms": round(float(sent["latency_ms"]), 3),
        "error": sent["error"] or "",
    }
    effect = query.effect
    if effect is not None:
        row |= {"effect_rows": None, "effect_ms": None}
        if 200 <= status < 300:
            try:
                found = await _effect(pool, effect, probe_id)
            except GatecheckError as exc:
                failed = source_failed(exc, effect.source, base)
                return failed.model_copy(update={"reason": f"effect on {effect.source}: {failed.reason}"})
            row |= found
    return pd.DataFrame([row])


async def _effect(pool: Any, effect: Any, probe_id: str) -> dict[str, Any]:
    """Ask the effect's source until the probe's row appears or ``within`` has passed."""
    source = pool.get(effect.source)
    started = time.perf_counter()
    deadline = started + effect.within.total_seconds()
    while True:
        frame = await source.query(effect.query, {"probe_id": probe_id})
        if len(frame):
            found: dict[str, Any] = {
                "effect_rows": len(frame),
                "effect_ms": round((time.perf_counter() - started) * 1000, 3),
            }
            for column, value in frame.iloc[0].items():
                name = str(column)
                found[name if name not in _OWN else f"effect_{name}"] = value
            return found
        if time.perf_counter() >= deadline:
            return {"effect_rows": 0, "effect_ms": None}
        await asyncio.sleep(min(effect.every.total_seconds(), max(0.0, deadline - time.perf_counter())))


_OWN = frozenset({"probe_id", "status", "answered", "latency_ms", "error", "effect_rows", "effect_ms"})


def synthetic(result: CheckResult) -> CheckResult:
    """A probe's check, marked: its evidence came from a synthetic request."""
    return result.model_copy(update={"synthetic": True})
