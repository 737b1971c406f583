"""``gatecheck explain``: what a gate would do at an ``as_of`` — each check's window and where
it came from, the query exactly as its source would receive it, the expectations with every
threshold resolved and its provenance, and the evidence rule — without touching a source.

The windows and parameters come from :mod:`gatecheck.evaluation.plan`, the same code the engine
runs, and each source kind describes its own requests (``SourceKind.explain``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gatecheck._values import document_time
from gatecheck.config import ParameterRef, Project, ResolvedThreshold
from gatecheck.config.checks import THRESHOLD_KWARGS
from gatecheck.config.models import evidence_minimum
from gatecheck.durations import format_duration
from gatecheck.errors import ConfigError, did_you_mean
from gatecheck.evaluation.plan import plan_checks, query_parameters
from gatecheck.evaluation.reconcile_check import (
    both_parameters,
    hashing_of,
    lag_kinds,
    one_source_dialect,
    side_windows,
)
from gatecheck.sources import kind_of


def _threshold(resolved: ResolvedThreshold) -> dict[str, Any]:
    return {
        "value": resolved.value,
        "threshold": resolved.name,
        "provenance": resolved.provenance,
        "key": resolved.key,
    }


def _kwargs(kwargs: dict[str, Any], thresholds: dict[str, ResolvedThreshold], where: str) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for name, value in kwargs.items():
        if isinstance(value, dict) and set(value) == {"$PARAMETER"}:
            resolved[name] = _threshold(thresholds[value["$PARAMETER"]])
        elif name in THRESHOLD_KWARGS and value is not None:
            resolved[name] = {"value": value, "provenance": "suite", "key": f"{where}.{name}"}
        else:
            resolved[name] = value
    return resolved


def explain(
    project: Project, phase: str, as_of: datetime, check: str | None = None, estimate: bool = False
) -> dict[str, Any]:
    """The explanation document of ``phase`` at ``as_of`` (one check with ``check``); with
    ``estimate``, each request's plan as its source estimates it (read-only, nothing run)."""
    gate = project.gate(phase)
    thresholds = project.resolve_thresholds(phase)
    plans = plan_checks(project, gate, as_of)
    if check is not None:
        plans = [p for p in plans if p.suite.name == check]
        if not plans:
            names = ", ".join(dict.fromkeys(p.suite.name for p in plan_checks(project, gate, as_of)))
            hint = did_you_mean(check, names.split(", "))
            raise ConfigError(f"--check: gate {phase} has no check {check!r}{hint} (its checks: {names})")
    sources = project.config.environments[gate.environment].sources
    checks: list[dict[str, Any]] = []
    asked: list[tuple[int, str, Any, Any, Any]] = []  # (check index, source, config, query, parameters)
    for plan in plans:
        suite, window = plan.suite, plan.window
        suite_file = project.files.get(f"suite:{suite.name}", f"suites/{suite.name}.yaml")
        queries, evidences = [], []
        for prefix, unit in suite.units():
            config = sources[unit.source]
            parameters = query_parameters(unit, window, as_of, thresholds)
            if suite.reconcile is not None:
                side_name = prefix.split(".")[2]
                both = both_parameters(suite, window, as_of, thresholds)
                passes = side_windows(suite, window)
                if len(passes) == 1:
                    query = _reconcile_requests(
                        suite, side_name, unit, config, sources, parameters, both, project
                    )
                else:  # a late side: two reconciliations, each side over its own windows
                    index = suite.reconcile.names.index(side_name)
                    query = {"sent_to": "", "requests": []}
                    for n, (windows, kinds) in enumerate(zip(passes, lag_kinds(suite), strict=True), 1):
                        own = query_parameters(unit, windows[index], as_of, thresholds)
                        found = _reconcile_requests(
                            suite, side_name, unit, config, sources, own, both, project
                        )
                        for request in found["requests"]:
                            request["what"] = (
                                f"reconciliation {n} of 2 ({', '.join(kinds)}): {request['what']}"
                            )
                        query["requests"] += found["requests"]
                        query["sent_to"] = found["sent_to"]
                    # the estimate: the side over the widest of its windows (the late side's
                    # reads on past the window's end, the early side's begins before its start)
                    spans = [windows[index] for windows in passes]
                    widest = window.model_copy(
                        update={"start": min(w.start for w in spans), "end": max(w.end for w in spans)}
                    )
                    parameters = query_parameters(unit, widest, as_of, thresholds)
            else:
                query = kind_of(config).explain(unit.source, config, unit.query, parameters, project.root)
            asked.append((len(checks), unit.source, config, unit.query, parameters))
            side = prefix.split(".")[2] if prefix else None
            for request in query["requests"]:
                if side is not None and not request.pop("both_sides", False):
                    request["what"] = f"side {side} ({unit.source}): {request['what']}"
                for parameter in request.get("parameters", []):
                    if parameter["name"] in thresholds:  # a threshold bound into the SQL
                        resolved = thresholds[parameter["name"]]
                        parameter.update(provenance=resolved.provenance, key=resolved.key)
            queries.append(query)
            declared = evidence_minimum(unit.evidence)
            if declared is not None:
                minimum = declared.min_total
                column = declared.column if side is None else f"{side}_{declared.column}"
                evidences.append(
                    {
                        "column": column,
                        "min_total": _threshold(thresholds[minimum.name])
                        if isinstance(minimum, ParameterRef)
                        else {
                            "value": minimum,
                            "provenance": "suite",
                            "key": f"{suite_file}: {prefix}evidence.min_total",
                        },
                        "rule": f"the sum of {column} over the result must reach min_total; "
                        "less is inconclusive, never a pass",
                    }
                )
        if suite.compare is None and suite.reconcile is None:
            query, source = queries[0], {"name": suite.source, "type": config.type}  # type: ignore[attr-defined]
        else:
            query = {
                "sent_to": "; ".join(dict.fromkeys(q["sent_to"] for q in queries if q["sent_to"])),
                "requests": [r for q in queries for r in q["requests"]],
            }
            kind = "comparison" if suite.compare is not None else "reconciliation"
            source = {"name": suite.source_label, "type": kind}
        evidence: dict[str, Any] | None = evidences[0] if evidences else None
        checks.append(
            {
                "suite": suite.name,
                "description": " ".join(suite.description.split()),
                "role": plan.role,
                "source": source,
                "window": {
                    "start": document_time(window.start),
                    "end": document_time(window.end),
                    "length": format_duration(window.length),
                    "length_from": plan.length_from,
                    "settle": format_duration(window.settle),
                    "settle_from": plan.settle_from,
                },
                "query": query,
                "evidence": evidence,
                "expectations": [
                    {
                        "type": spec.type,
                        **_kwargs(spec.kwargs, thresholds, f"{suite_file}: expectations[{i}]"),
                    }
                    for i, spec in enumerate(suite.expectations)
                ],
                "groups": suite.groups,
                "compare": None if suite.compare is None else _compare_text(suite),
                "evidence_per_side": evidences if suite.compare is not None else None,
                "reconcile": None if suite.reconcile is None else _reconcile_text(suite, sources),
                "over_time": _over_time_text(plan),
            }
        )
    if estimate:
        for index, answer in zip((a[0] for a in asked), _estimates(project, asked), strict=True):
            checks[index].setdefault("estimate", []).append(answer)
    return {
        "phase": phase,
        "environment": gate.environment,
        "as_of": document_time(as_of),
        "requires": list(gate.requires),
        "soak": None
        if gate.soak is None
        else {"duration": format_duration(gate.soak.duration), "max_gap": format_duration(gate.soak.max_gap)},
        "deadline": None
        if gate.deadline is None
        else {
            "inconclusive_for": format_duration(gate.deadline.inconclusive_for),
            "then": gate.deadline.then,
        },
        "checks": checks,
    }


def _over_time_text(plan: Any) -> list[str]:
    """The check's rules over the phase's earlier evaluations, in words (read from the ledger)."""
    found = []
    if not plan.enforce:
        found.append("shadow check (enforce: false): judged and recorded, never changes the verdict")
    rule = plan.fail_after
    if rule is not None and rule.consecutive is not None:
        found.append(f"fails after {rule.consecutive} consecutive failing evaluations")
    elif rule is not None:
        found.append(f"fails while {rule.failures} of the last {rule.of} evaluations failed")
    if plan.pass_after is not None:
        found.append(f"passes after {plan.pass_after.consecutive} consecutive passing evaluations")
    if plan.baseline is not None:
        b = plan.baseline
        sides = []
        if b.max_ratio is not None:
            sides.append(f"≤ {b.max_ratio:g} ×")
        if b.min_ratio is not None:
            sides.append(f"≥ {b.min_ratio:g} ×")
        of = "median" if b.quantile == 0.5 else f"p{b.quantile * 100:g}"
        found.append(
            f"baseline: {b.column} {' and '.join(sides)} the {of} of its last {b.last} passing"
            f" evaluations (or a pinned one), at least {b.min_records}"
        )
    if plan.learned is not None:
        learned = plan.learned
        season = {"none": "", "hour_of_day": " per hour of day", "day_of_week": " per day of week"}[
            learned.season
        ]
        found.append(
            f"learned band: {learned.column} within the median ± {learned.spread:g} × MAD"
            f"{f' (at least {learned.min_change:g})' if learned.min_change else ''} of its last "
            f"{format_duration(learned.training)}{season}, at least {learned.min_records} evaluations"
            f"{f', {len(learned.exclude)} stretches excluded' if learned.exclude else ''}"
        )
    return found


def _estimates(project: Project, asked: list[tuple[int, str, Any, Any, Any]]) -> list[dict[str, Any]]:
    """Each request's plan from its own source (one connection per source), or why not."""
    import asyncio

    from gatecheck.errors import GatecheckError
    from gatecheck.sources import open_source

    async def all_of() -> list[dict[str, Any]]:
        opened: dict[str, Any] = {}
        answers = []
        try:
            for _, name, config, query, parameters in asked:
                source = opened.get(name) or opened.setdefault(name, open_source(name, config, project.root))
                try:
                    plan = await source.estimate(query, parameters)
                except GatecheckError as exc:
                    plan = {"error": str(exc)}
                plan = plan or {"none": f"its {config.type} source has no planner"}
                answers.append({"source": name, **plan})
        finally:
            for source in opened.values():
                await source.close()
        return answers

    return asyncio.run(all_of())


def _compare_text(suite: Any) -> str:
    """What a comparison does, in one line."""
    config = suite.compare
    first, second = config.names
    if config.test == "difference":
        on = f"on {', '.join(config.keys)}" if config.keys else "as totals"
        return (
            f"{first} vs {second} joined {on}: {', '.join(config.values)} of both sides, their "
            "_diff, _rel_diff and _ratio, and present (a key on one side only)"
        )
    return (
        f"{config.test} test of {first} vs {second}: p_value that {first} is not {config.worse}; "
        f"fewer than {config.min_samples} samples on a side is inconclusive"
    )


def _reconcile_requests(
    suite: Any, side: str, unit: Any, config: Any, sources: dict[str, Any], parameters: dict[str, Any],
    both: dict[str, Any], project: Project,
) -> dict[str, Any]:  # fmt: skip
    """A reconcile side's requests: a SQL side's rounds as it sends them (the first exactly;
    the later ones with the differing buckets still to be found), a NATS side's reading of
    its messages; both SQL sides on one source: their joint queries, once (``both``: the
    parameters of a query over both sides)."""
    from gatecheck.evaluation.reconcile import DIGEST_PART, FIRST_BITS, HASH_BITS, SqlForm, duplicates_limit

    reconcile = suite.reconcile
    dialect = kind_of(config).reconcile
    if dialect == "nats":
        return kind_of(config).explain(unit.source, config, unit.query, parameters, project.root)
    joint = one_source_dialect(suite, sources) if reconcile.late is None else None
    if joint is not None:  # one query a round over both sides: said with the first side
        if side != reconcile.names[0]:
            return {"sent_to": "", "requests": []}
        return _joint_requests(suite, config, joint, both, project)
    form = SqlForm(
        dialect,  # type: ignore[arg-type]  # a SQL kind's: clickhouse or postgresql
        hashing_of(suite, sources),  # type: ignore[arg-type]
        dict(reconcile.keys),
        dict(reconcile.values),
        reconcile.decimals,
    )
    rounds = [
        (
            f"round 1: the difference digest, 3 × {DIGEST_PART} cells",
            form.digest_sql(unit.query, DIGEST_PART),
        ),
        (
            "round 2, when the digests' difference decodes: the keys on more than one row",
            form.duplicates_sql(unit.query, duplicates_limit(reconcile.max_rows)),
        ),
        (
            "last, then: the rows of the differing and duplicated keys",
            form.rows_sql(unit.query, HASH_BITS, "<the differing keys' hashes>"),
        ),
        (
            "else (too many differences for the digest) round 2: rows and hash sum per bucket of "
            f"{FIRST_BITS} bits",
            form.buckets_sql(unit.query, FIRST_BITS, None),
        ),
        (
            "each later round, while differing buckets hold more rows than one fetch: those buckets split",
            form.buckets_sql(unit.query, FIRST_BITS + 4, (FIRST_BITS, "<the differing buckets>")),
        ),
        (
            "last: the rows of the differing buckets",
            form.rows_sql(unit.query, FIRST_BITS, "<the differing buckets>"),
        ),
    ]
    requests = []
    for what, sql in rounds:
        explained = kind_of(config).explain(unit.source, config, sql, parameters, project.root)
        for request in explained["requests"]:
            request["what"] = f"{what} — {request['what']}"
            requests.append(request)
        sent_to = explained["sent_to"]
    return {"sent_to": sent_to, "requests": requests}


def _reconcile_text(suite: Any, sources: dict[str, Any]) -> str:
    """What a reconciliation does, in one line."""
    config = suite.reconcile
    first, second = config.names
    hashing = hashing_of(suite, sources)
    how = {
        "portable": "MD5 of the canonical form (the same in every engine)",
        "clickhouse": "cityHash64 of the canonical values, in ClickHouse",
        "postgresql": "hashtextextended of the canonical form, in PostgreSQL",
    }[hashing]
    values = ", ".join(config.values) or "nothing else"
    return (
        f"{first} vs {second} by {', '.join(config.keys)}; compared: {values} (numbers to "
        f"{config.decimals} decimals); hashed with {how}; differing buckets split for at most "
        f"{config.max_rounds} rounds, then their rows fetched (at most {config.max_rows} a side); "
        f"missing = on {first} only, extra = on {second} only" + _lag_text(suite)
    )


def _lag_text(suite: Any) -> str:
    """A late side's two reconciliations, in words ("" without one)."""
    config = suite.reconcile
    if config.late is None:
        return ""
    late, lag = config.late
    early = next(name for name in config.names if name != late)
    by_end, by_start = lag_kinds(suite)
    lag_text = format_duration(lag)
    return (
        f"; {late} lags {early} by up to {lag_text}: {', '.join(by_end)} counted against {late} read "
        f"to the window's end + {lag_text}, {', '.join(by_start)} against {early} read from its start "
        f"- {lag_text}"
    )


def _joint_requests(
    suite: Any, config: Any, dialect: Any, both: dict[str, Any], project: Project
) -> dict[str, Any]:
    """Both sides' rounds on one source: one query a round over both sides."""
    from gatecheck.evaluation.reconcile import DIGEST_PART, HASH_BITS, JointPair, SqlForm, duplicates_limit

    reconcile = suite.reconcile
    names = list(reconcile.names)
    units = [unit for _, unit in suite.units()]
    form = SqlForm(dialect, dialect, dict(reconcile.keys), dict(reconcile.values), reconcile.decimals)
    sqls = (str(units[0].query), str(units[1].query))
    bits = JointPair.FIRST_BITS
    limit = duplicates_limit(reconcile.max_rows)
    rounds = [
        (f"round 1: both sides' difference digests, 3 × {DIGEST_PART} cells, compared in the source, "
         "only differing cells answered", form.joint_digest_sql(sqls, DIGEST_PART)),
        ("round 2, when the digests' difference decodes: each side's keys on more than one row",
         form.joint_duplicates_sql(sqls, limit)),
        ("last, then: both sides' rows of the differing and duplicated keys",
         form.joint_rows_sql(sqls, HASH_BITS, "<the differing keys' hashes>")),
        (f"else (too many differences for the digests) round 2: both sides' buckets of {bits} bits "
         "compared in the source, only differing ones answered", form.joint_buckets_sql(sqls, bits, None)),
        ("each later round, while differing buckets hold more rows than one fetch: those buckets split",
         form.joint_buckets_sql(sqls, bits + 4, (bits, "<the differing buckets>"))),
        ("last: both sides' rows of the differing buckets",
         form.joint_rows_sql(sqls, bits, "<the differing buckets>")),
    ]  # fmt: skip
    requests = []
    sent_to = ""
    for what, sql in rounds:
        explained = kind_of(config).explain(units[0].source, config, sql, both, project.root)
        for request in explained["requests"]:
            request["what"] = (
                f"sides {names[0]} and {names[1]} ({units[0].source}): {what} — {request['what']}"
            )
            request["both_sides"] = True
            requests.append(request)
        sent_to = explained["sent_to"]
    return {"sent_to": sent_to, "requests": requests}
