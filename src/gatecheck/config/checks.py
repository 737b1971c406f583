"""Cross-checks: the problems that span files — unknown names, unresolved parameters, a
suite's query in the wrong form for its source, thresholds that nothing uses or that do not
fit where they are used, a range no value can pass, a retention shorter than a gate reads back.

Why one module of ~590 lines: each check reads the project whole (gatecheck.yaml, the
thresholds, every gate and suite) and reports in one list, in one order, file by file."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from gatecheck.config.models import (
    BUILTIN_PARAMETERS,
    DECLARED_THRESHOLDS,
    PROJECT_FILE,
    THRESHOLDS_FILE,
    CheckRef,
    GateConfig,
    ParameterRef,
    Project,
    RollbackRef,
    SuiteConfig,
    _parameter_names,
    evidence_minimum,
    mostly_problem,
    resolve_thresholds,
)
from gatecheck.durations import format_duration
from gatecheck.errors import did_you_mean, redact
from gatecheck.frozen import NAME as _NAME
from gatecheck.sources import kind_of
from gatecheck.sources.http import ProbeQuery


def unsoakable(project: Project, phases: Iterable[str] | None = None) -> list[str]:
    """Soaks the service's own evaluations cannot cover: a phase it runs (``phases``, else
    ``service.phases``, else every gate) whose interval is not shorter than its soak's
    ``max_gap`` leaves a gap that breaks the soak after every evaluation — the phase is not GO
    while the service alone evaluates it. A note, not a refusal: a service may run a phase
    more slowly on purpose (a soak fed by other runs, a dashboard that should not evaluate
    often); `validate` says it and `serve` logs it."""
    service = project.config.service
    served = set(phases if phases is not None else service.phases or project.gates)
    notes = []
    for phase, gate in project.gates.items():
        if gate.soak is None or phase not in served:
            continue
        interval = service.interval_for(phase)
        if interval >= gate.soak.max_gap:
            key = f"service.intervals.{phase}" if phase in service.intervals else "service.interval"
            notes.append(
                f"{PROJECT_FILE}: {key}: {format_duration(interval)} is not shorter than the soak's max_gap "
                f"{format_duration(gate.soak.max_gap)} in {project.files[f'gate:{phase}']}: evaluations "
                f"{format_duration(interval)} apart break the soak every time, so the service alone never "
                f"makes {phase} GO"
            )
    return notes


def requires_cycles(project: Project) -> list[list[str]]:
    """Cycles of ``requires`` among the project's gates (two or more phases; a phase that
    requires itself is said on its own): one for each ``requires`` that closes one in a
    depth-first walk (each gate and each of its ``requires`` visited once: a file of many gates
    costs its size, never a walk of every path), each starting from its first phase by name."""
    state: dict[str, int] = {}  # 1: on the walk's path now, 2: done
    path: list[str] = []
    found: set[tuple[str, ...]] = set()
    for root in sorted(project.gates):
        if root in state:
            continue
        state[root] = 1
        path.append(root)
        stack = [iter(project.gates[root].requires)]
        while stack:
            required = next(stack[-1], None)
            if required is None:
                stack.pop()
                state[path.pop()] = 2
                continue
            if required not in project.gates or required == path[-1]:
                continue
            if state.get(required) == 1:
                cycle = path[path.index(required) :]
                first = cycle.index(min(cycle))
                found.add(tuple(cycle[first:] + cycle[:first]))
            elif required not in state:
                state[required] = 1
                path.append(required)
                stack.append(iter(project.gates[required].requires))
    return [list(cycle) for cycle in sorted(found)]


def _suite_refs(gate: GateConfig) -> Iterable[tuple[str, str]]:
    for i, check in enumerate(gate.checks):
        yield f"checks[{i}].suite", check.suite
    for i, ref in enumerate(gate.rollback):
        yield f"rollback[{i}].suite", ref.suite


def history_needed(project: Project, gate: GateConfig) -> list[tuple[timedelta, str]]:
    """How far back each part of ``gate`` reads the ledger, in words: its soak (duration and
    max_gap), a check's learned band (training before its window), an SLO check's windows (a
    calendar month at most 31 days) — what a retention must keep."""
    found: list[tuple[timedelta, str]] = []
    if gate.soak is not None:
        found.append((gate.soak.duration + gate.soak.max_gap, "its soak (duration + max_gap)"))
    for ref in gate.checks:
        suite = project.suites.get(ref.suite)
        if suite is None:
            continue
        window = ref.window or gate.window or suite.window.length
        if ref.learned is not None:
            band = f"the learned band of {ref.suite} (training + window)"
            found.append((ref.learned.training + window, band))
        if suite.slo is not None:
            longest = max([window, *(r.long for r in suite.slo.burn_rates)])
            if suite.slo.calendar is not None:
                longest = max(longest, timedelta(days=31 if suite.slo.calendar == "month" else 7))
            found.append((longest, f"the SLO windows of {ref.suite}"))
    return found


def retention_problems(project: Project, retention: timedelta) -> list[str]:
    """Each gate that reads its ledger further back than ``history.retention`` keeps: pruned,
    its soak would never be covered, its band learned from less than it says."""
    problems = []
    for phase, gate in project.gates.items():
        needed = history_needed(project, gate)
        if needed:
            longest, what = max(needed, key=lambda n: n[0])
            if longest > retention:
                problems.append(
                    f"{PROJECT_FILE}: history.retention: {format_duration(retention)} is shorter than "
                    f"the {format_duration(longest)} gate {phase} reads back for {what}"
                )
    return problems


def cross_check(project: Project) -> list[str]:
    """Problems that span files: unknown names, unresolved parameters, bad SQL."""
    problems: list[str] = []
    unresolved: dict[tuple[str, str, str], list[str]] = {}
    unknown_sources: dict[tuple[str, str, str], dict[str, list[str]]] = {}
    unanswerable: dict[tuple[str, str, str, str, str], set[str]] = {}
    config, thresholds = project.config, project.thresholds
    environments = sorted(config.environments)
    if "project" in project.unparsed:
        # gatecheck.yaml did not parse: only what needs no environment can be checked.
        for suite in project.suites.values():
            label = project.files[f"suite:{suite.name}"]
            for prefix, unit in suite.units():
                if unit.query is not None and not isinstance(unit.query, str):
                    problems.extend(f"{label}: {prefix}query: {p}" for p in unit.query.problems())
        if "thresholds" not in project.unparsed:
            problems.extend(threshold_problems(project))
        return list(dict.fromkeys(problems))

    for name, _value in thresholds.defaults.items():
        if not _NAME.match(name):
            problems.append(f"{THRESHOLDS_FILE}: defaults.{name}: a threshold name uses a-z, 0-9 and _")
    for env in thresholds.environments:
        if env not in config.environments:
            problems.append(
                f"{THRESHOLDS_FILE}: environments.{env}: unknown environment "
                f"(known: {', '.join(environments)})"
            )
    for phase in thresholds.phases:
        if phase not in project.gates and f"gate:{phase}" not in project.unparsed:
            problems.append(
                f"{THRESHOLDS_FILE}: phases.{phase}: unknown phase (known: {project.known_phases()})"
            )

    service = config.service
    for key, phases in (("phases", service.phases or []), ("intervals", list(service.intervals))):
        for phase in phases:
            if phase not in project.gates:
                problems.append(
                    f"{PROJECT_FILE}: service.{key}: unknown phase {phase!r} "
                    f"(known: {project.known_phases()})"
                )
    if service.lease is not None and not (
        config.history is not None and config.history.url.split(":", 1)[0] in ("postgresql", "postgres")
    ):
        problems.append(
            f"{PROJECT_FILE}: service.lease: replicas share a PostgreSQL ledger; history.url is "
            f"{'not set' if config.history is None else 'not postgresql://'} (one service per other ledger)"
        )
    if config.history is not None and config.history.retention is not None:
        problems.extend(retention_problems(project, config.history.retention))
    for index, target in enumerate(config.notify):
        for phase in target.phases or []:
            if phase not in project.gates:
                problems.append(
                    f"{PROJECT_FILE}: notify[{index}].phases: unknown phase {phase!r} "
                    f"(known: {project.known_phases()})"
                )
        if target.url_file is not None:
            path = Path(target.url_file)
            path = path if path.is_absolute() else project.root / path
            if not path.is_file():
                problems.append(f"{PROJECT_FILE}: notify[{index}].url_file: {path} is not a file")
    for suite in project.suites.values():
        label = project.files[f"suite:{suite.name}"]
        for prefix, unit in suite.units():
            if unit.query is not None and not isinstance(unit.query, str):
                problems.extend(f"{label}: {prefix}query: {p}" for p in unit.query.problems())

    for cycle in requires_cycles(project):
        problems.append(
            f"{project.files[f'gate:{cycle[0]}']}: requires: {' → '.join([*cycle, cycle[0]])} is a cycle: "
            "none of these phases can be GO (each waits on the next)"
        )
    for phase, gate in project.gates.items():
        label = project.files[f"gate:{phase}"]
        unknown_environment = gate.environment not in config.environments
        if unknown_environment:
            problems.append(
                f"{label}: environment: unknown environment {gate.environment!r} "
                f"(known: {', '.join(environments)}){did_you_mean(gate.environment, environments)}"
            )
        for i, required in enumerate(gate.requires):
            if required not in project.gates:
                if f"gate:{required}" in project.unparsed:
                    continue
                problems.append(
                    f"{label}: requires[{i}]: unknown phase {required!r} (known: {project.known_phases()})"
                )
            elif required == phase:
                problems.append(f"{label}: requires[{i}]: a phase cannot require itself")
        if unknown_environment:  # its suites' names can still be checked, not their sources
            known_suites = ", ".join(sorted(project.suites)) or "none"
            problems.extend(
                f"{label}: {key}: unknown suite {name!r} (known: {known_suites})"
                f"{did_you_mean(name, project.suites)}"
                for key, name in _suite_refs(gate)
                if name not in project.suites and f"suite:{name}" not in project.unparsed
            )
            continue
        sources = config.environments[gate.environment].sources
        resolved = resolve_thresholds(thresholds, gate.environment, phase)
        for key, suite_name in _suite_refs(gate):
            found = project.suites.get(suite_name)
            if found is None:
                if f"suite:{suite_name}" in project.unparsed:
                    continue
                problems.append(
                    f"{label}: {key}: unknown suite {suite_name!r} "
                    f"(known: {', '.join(sorted(project.suites)) or 'none'})"
                    f"{did_you_mean(suite_name, project.suites)}"
                )
                continue
            suite = found
            suite_label = project.files[f"suite:{suite_name}"]
            if isinstance(suite.query, ProbeQuery):
                if not gate.probes:
                    problems.append(
                        f"{label}: {key}: suite {suite_name} sends synthetic requests (a probe): a gate "
                        "runs probes only with probes: true"
                    )
                effect = getattr(suite.query, "effect", None)
                if effect is not None and effect.source in sources:
                    effect_kind = kind_of(sources[effect.source])
                    if effect_kind.text_problems is None or effect_kind.label not in (
                        "PostgreSQL",
                        "ClickHouse",
                    ):
                        problems.append(
                            f"{suite_label}: query.effect.source: {effect.source!r} is a {effect_kind.label} "
                            "source: an effect is looked for with SQL (PostgreSQL or ClickHouse)"
                        )
                    else:
                        problems.extend(
                            f"{suite_label}: query.effect.query: {p}"
                            for p in effect_kind.text_problems(effect.query)
                        )
                elif effect is not None:
                    listed = ", ".join(sorted(sources))
                    hint = did_you_mean(effect.source, sources)
                    problems.append(
                        f"{suite_label}: query.effect.source: unknown source {effect.source!r} in "
                        f"environment {gate.environment} (known: {listed}){hint}"
                    )
            for prefix, unit in suite.units():
                if unit.source not in sources:
                    unknown_sources.setdefault((suite_label, prefix, unit.source), {})[gate.environment] = (
                        sorted(sources)
                    )
                else:
                    source_config = sources[unit.source]
                    source_kind = kind_of(source_config)
                    if suite.reconcile is not None and source_kind.reconcile is None:
                        problems.append(
                            f"{suite_label}: {prefix}source: {unit.source!r} is a {source_kind.label} "
                            "source; a reconcile side reads ClickHouse, PostgreSQL or NATS"
                        )
                    elif suite.slo is not None and source_kind.label not in SLO_SOURCES:
                        problems.append(
                            f"{suite_label}: source: {unit.source!r} is a {source_kind.label} source; an SLO "
                            f"counts its events in {', '.join(SLO_SOURCES)}"
                        )
                    elif (
                        suite.slo is not None
                        and suite.slo.recorded_error_ratio
                        and source_kind.label != "Prometheus"
                    ):
                        problems.append(
                            f"{suite_label}: slo.recorded_error_ratio: recording rules are read from "
                            "Prometheus; "
                            f"{unit.source!r} is a {source_kind.label} source"
                        )
                    elif suite.slo is not None and (
                        source_kind.label == "Prometheus"
                        and not {"good", "total"} <= set(getattr(unit.query, "measures", {}))
                    ):
                        problems.append(
                            f"{suite_label}: query: an SLO on Prometheus names two measures, good and total "
                            "(each a PromQL count of events over $window)"
                        )
                    elif not isinstance(unit.query, source_kind.query_types):
                        problems.append(
                            f"{suite_label}: {prefix}query: source {unit.source!r} is a {source_kind.label} "
                            f"source, so the query must be {source_kind.query_help}"
                        )
                    else:
                        if isinstance(unit.query, str) and source_kind.text_problems is not None:
                            text_problems = source_kind.text_problems(unit.query)
                            problems.extend(f"{suite_label}: {prefix}query: {p}" for p in text_problems)
                            if not text_problems and _proves_nothing(suite, unit, source_kind):
                                problems.append(
                                    f"{suite_label}: {prefix}evidence: the query answers a row even when "
                                    "its window holds no data (it aggregates without GROUP BY, or reads "
                                    "no table), so an empty window would pass: declare evidence: "
                                    "{column: …, min_total: …} (a count of what it judges, e.g. count() "
                                    "AS n), or evidence: none if the query fails an empty window itself"
                                )
                        # What this source's configuration cannot answer (e.g. a scrape source and a
                        # rate over a window), reported once per problem with its environments.
                        for where, what, problem in source_kind.config_problems(source_config, unit.query):
                            found_key = (suite_label, f"{prefix}{where}", unit.source, what, problem)
                            unanswerable.setdefault(found_key, set()).add(gate.environment)
            if "thresholds" in project.unparsed:
                continue  # thresholds.yaml did not parse: no parameter can be judged missing
            for parameter in sorted(suite.parameters()):
                if parameter not in resolved:
                    unresolved.setdefault((suite_label, "$PARAMETER", parameter), []).append(phase)
            for parameter in sorted(suite.query_parameters()):
                if parameter in BUILTIN_PARAMETERS or not _NAME.match(parameter):
                    continue  # bad names are reported once by the source's text checks
                if parameter not in resolved:
                    unresolved.setdefault((suite_label, "query", parameter), []).append(phase)
    for (suite_label, where, source, what, problem), scrape_envs in unanswerable.items():
        names = ", ".join(repr(e) for e in sorted(scrape_envs))
        plural = "environments" if len(scrape_envs) > 1 else "environment"
        problems.append(f"{suite_label}: {where}: source {source!r} is {what} in {plural} {names}: {problem}")
    for (suite_label, prefix, source), known_by_env in unknown_sources.items():
        envs = ", ".join(repr(e) for e in sorted(known_by_env))
        known = sorted({name for names in known_by_env.values() for name in names})
        plural = "environments" if len(known_by_env) > 1 else "environment"
        problems.append(
            f"{suite_label}: {prefix}source: unknown source {source!r} in {plural} {envs} "
            f"(known: {', '.join(known) or 'none'})"
        )
    # One line per suite and parameter, naming every phase that lacks a value.
    for (suite_label, kind, parameter), phases in unresolved.items():
        names = ", ".join(repr(p) for p in sorted(phases))
        plural = "phases" if len(phases) > 1 else "phase"
        if kind == "$PARAMETER":
            problems.append(
                f"{suite_label}: $PARAMETER {parameter!r} has no value in {THRESHOLDS_FILE} "
                f"for {plural} {names}"
            )
        else:
            problems.append(
                f"{suite_label}: query: parameter {{{parameter}}} is neither one of "
                f"{', '.join(BUILTIN_PARAMETERS)} nor a threshold with a value in {THRESHOLDS_FILE} "
                f"for {plural} {names}"
            )
    if "thresholds" not in project.unparsed:
        problems.extend(threshold_problems(project))
    problems.extend(lag_problems(project))
    # Duplicate lines arise when several gates use one broken suite.
    problems.extend(embedded_path_problems(project))
    return list(dict.fromkeys(problems))


def lag_problems(project: Project) -> list[str]:
    """A reconciliation whose late side's ``lag`` is longer than its check's settle: the late
    side is read to the window's end plus the lag, which must have passed when it is judged."""
    problems: list[str] = []
    for phase, gate in project.gates.items():
        refs: list[tuple[str, CheckRef | RollbackRef]] = []
        refs += [(f"checks[{i}]", r) for i, r in enumerate(gate.checks)]
        refs += [(f"rollback[{i}]", r) for i, r in enumerate(gate.rollback)]
        for key, ref in refs:
            suite = project.suites.get(ref.suite)
            late = None if suite is None or suite.reconcile is None else suite.reconcile.late
            if suite is None or late is None:
                continue
            side, lag = late
            settle = ref.settle if ref.settle is not None else suite.window.settle
            if lag > settle:
                where = f"{key}.settle" if ref.settle is not None else "its window.settle"
                label = project.files[f"gate:{phase}"]
                problems.append(
                    f"{label}: {key}: suite {suite.name}: reconcile.sides.{side}.lag "
                    f"{format_duration(lag)} is longer than the settle {format_duration(settle)} ({where}): "
                    f"side {side} is read to the window's end plus its lag, not all written when judged "
                    "— settle at least the lag"
                )
    return problems


def _proves_nothing(suite: SuiteConfig, unit: SuiteConfig, kind: Any) -> bool:
    """A text query (or a ``test: difference`` side) that declares no evidence and answers a
    row whatever its window holds: its row is no evidence, and ClickHouse's empty aggregates
    (0) or a ``coalesce`` read as a pass. SLOs (``min_events``), reconciliations (``min_rows``)
    and statistical tests (``min_samples``) have minimums of their own."""
    if suite.slo is not None or suite.reconcile is not None or unit.evidence is not None:
        return False
    if suite.compare is not None and suite.compare.test != "difference":
        return False
    return bool(kind.rows_without_data is not None and kind.rows_without_data(unit.query))


# --------------------------------------------------------------------------- thresholds in use

#: The kind of value an expectation kwarg takes (GE's own types are looser: a bound may be a
#: string, which compares as text and would loosen a gate silently). Others: any.
_KWARG_KINDS = {
    **dict.fromkeys(("min_value", "max_value", "value", "threshold", "tolerance"), "number"),
    "mostly": "fraction",
    **dict.fromkeys(("value_set", "values"), "list"),
    **dict.fromkeys(("strict_min", "strict_max"), "boolean"),
}
#: Expectation kwargs that hold thresholds (written as literals or as ``$PARAMETER``s).
THRESHOLD_KWARGS = frozenset(_KWARG_KINDS)
# ClickHouse's and PostgreSQL's names for numbers and text.
_SQL_NUMBER = re.compile(
    r"^(?:Nullable\()?\s*(?:U?Int\d+|Float\d+|Decimal|int[248]?\b|integer|bigint|smallint|numeric"
    r"|real|double precision|float[48]?\b)",
    re.I,
)
# Whole numbers: a value with a fraction (or, unsigned, below 0) fails in the source at run time.
_SQL_UNSIGNED = re.compile(r"^(?:Nullable\()?\s*UInt\d+", re.I)
_SQL_WHOLE = re.compile(r"^(?:Nullable\()?\s*(?:Int\d+|int[248]?\b|integer|bigint|smallint)", re.I)
_SQL_TEXT = re.compile(r"^(?:Nullable\()?\s*(?:String|LowCardinality\(String\)|text\b|varchar)", re.I)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _kind_problem(kind: str, value: Any) -> str | None:
    """Why ``value`` cannot be used as ``kind`` (number, list, boolean, text), or None."""
    if kind == "number" and not _is_number(value):
        exponent = isinstance(value, str) and re.fullmatch(r"[+-]?\d+(\.\d*)?[eE][+-]?\d+", value.strip())
        hint = f" (YAML reads {value.strip()} as text: write it with a dot, e.g. 1.0e-3)" if exponent else ""
        return f"must be a finite number{hint}"
    if kind == "non-negative number" and (not _is_number(value) or value < 0):
        return "must be a finite number, at least 0"
    whole = _is_number(value) and float(value).is_integer()
    if kind == "whole number" and not whole:
        return "must be a whole number"
    if kind == "non-negative whole number" and (not whole or value < 0):
        return "must be a whole number, at least 0"
    if kind == "count" and (not whole or value < 1):
        return "must be a whole number, at least 1"
    if kind == "fraction":
        return mostly_problem(value)
    if kind == "list" and not isinstance(value, list):
        return "must be a list"
    if kind == "boolean" and not isinstance(value, bool):
        return "must be true or false"
    if kind == "text" and not isinstance(value, str):
        return "must be text"
    return None


#: The sources an SLO counts its good and total events in.
SLO_SOURCES = ("Prometheus", "ClickHouse", "PostgreSQL")


def threshold_uses(suite: SuiteConfig) -> Iterator[tuple[str, str, str]]:
    """Every use of a threshold by ``suite``: (threshold name, where it is used, the kind of
    value that use needs: number, non-negative number, whole number (non-negative, or a
    count: at least 1), list, boolean, text or any)."""
    for index, spec in enumerate(suite.expectations):
        for kwarg, value in spec.kwargs.items():
            # The whole kwarg is the parameter: its value must fit the kwarg. (Nested in a
            # list or mapping, GE takes it as it is.)
            whole = isinstance(value, dict) and set(value) == {"$PARAMETER"}
            kind = _KWARG_KINDS.get(kwarg, "any") if whole else "any"
            for name in _parameter_names(value):
                yield name, f"expectations[{index}] ({spec.type}) as {kwarg}", kind
    for prefix, unit in suite.units():
        minimum = evidence_minimum(unit.evidence)
        if minimum is not None and isinstance(minimum.min_total, ParameterRef):
            yield minimum.min_total.name, f"{prefix}evidence.min_total", "non-negative number"
    if suite.slo is not None and isinstance(suite.slo.min_events, ParameterRef):
        yield suite.slo.min_events.name, "slo.min_events", "non-negative number"
    if suite.reconcile is not None:
        for name, side in suite.reconcile.sides.items():
            if isinstance(side.min_rows, ParameterRef):
                yield side.min_rows.name, f"reconcile.sides.{name}.min_rows", "non-negative number"
    counted = getattr(suite.query, "counted_parameters", None)
    counts = dict(counted()) if callable(counted) else {}
    for name, where in counts.items():
        yield name, where, "count"
    for name, sql_type in suite.query_parameters().items():
        if name in BUILTIN_PARAMETERS or not _NAME.match(name) or name in counts:
            continue
        if _SQL_UNSIGNED.match(sql_type):
            kind = "non-negative whole number"
        elif _SQL_WHOLE.match(sql_type):
            kind = "whole number"
        elif _SQL_NUMBER.match(sql_type):
            kind = "number"
        elif _SQL_TEXT.match(sql_type):
            kind = "text"
        elif sql_type.strip().lower() == "bool":
            kind = "boolean"
        else:
            kind = "any"
        yield name, f"query parameter {{{name}:{sql_type}}}", kind


def threshold_problems(project: Project) -> list[str]:
    """Thresholds that nothing uses, and thresholds that do not fit where they are used.

    A name no suite uses would be ignored, and the gate judged by another value than the one
    written (a typo in a phase override falls back to the default): every key under
    ``defaults`` must be used by some suite (or be one docs/configuration.md
    declares), every key under
    ``environments.E`` / ``phases.P`` by a suite that E's gates / gate P run. A value must fit
    its use (a number for a bound, a list for a value_set) in every phase that runs it.
    """
    problems: list[str] = []
    thresholds = project.thresholds
    uses = {name: list(threshold_uses(suite)) for name, suite in project.suites.items()}
    used_anywhere = {threshold for found in uses.values() for threshold, _, _ in found}

    def used_by(gates: Iterable[GateConfig]) -> set[str]:
        names: set[str] = set()
        for gate in gates:
            for _, suite in _suite_refs(gate):
                names.update(threshold for threshold, _, _ in uses.get(suite, []))
        return names

    known = used_anywhere | DECLARED_THRESHOLDS

    def unknown(key: str, name: str) -> str:
        # a name this project's suites use first: a declared one they do not use is no fix
        hint = did_you_mean(name, used_anywhere) or did_you_mean(name, known)
        return f"{THRESHOLDS_FILE}: {key}: no suite uses a threshold of this name{hint}"

    def files_of(gates: list[GateConfig]) -> str:
        return ", ".join(project.files.get(f"gate:{g.phase}", g.phase) for g in gates)

    # Unparsed suites may use anything: do not report names they might have used.
    complete = not any(u.startswith("suite:") for u in project.unparsed)
    for name in thresholds.defaults:
        if complete and name not in known:
            problems.append(unknown(f"defaults.{name}", name))
    layers: list[tuple[str, str, Mapping[str, Any], list[GateConfig]]] = []

    for env, values in thresholds.environments.items():
        gates = [g for g in project.gates.values() if g.environment == env]
        whose = f"the gates of environment {env!r} ({files_of(gates)})"
        layers.append((f"environments.{env}", whose, values, gates))
    for phase, values in thresholds.phases.items():
        gate = project.gates.get(phase)
        gates = [gate] if gate else []
        layers.append((f"phases.{phase}", f"gate {phase!r} ({files_of(gates)})", values, gates))
    for prefix, whose, layer, gates in layers:
        if not gates or not complete:
            continue  # an unknown environment or phase is reported on its own
        used = used_by(gates)
        for name in layer:
            if name in used:
                continue
            if name in known:
                problems.append(
                    f"{THRESHOLDS_FILE}: {prefix}.{name}: no suite of {whose} uses this threshold, "
                    "so this value would change nothing"
                )
            else:
                problems.append(unknown(f"{prefix}.{name}", name))

    # Fit: one line per (value's key, suite, use), naming the phases that would use it.
    misfits: dict[tuple[str, str, str, str], list[str]] = {}
    for phase, gate in project.gates.items():
        resolved = resolve_thresholds(thresholds, gate.environment, phase)
        for _, suite_name in _suite_refs(gate):
            for name, where, kind in uses.get(suite_name, []):
                found = resolved.get(name)
                if found is None or kind == "any":
                    continue
                if isinstance(found.value, str) and "${" in found.value:
                    continue  # taken from the environment: refused where it is written, once
                problem = _kind_problem(kind, found.value)
                if problem is not None:
                    shown = redact(repr(found.value))
                    shown = shown if len(shown) <= 40 else shown[:37] + "..."
                    suite_label = project.files.get(f"suite:{suite_name}", f"suites/{suite_name}.yaml")
                    key = (f"{found.key}: {shown} {problem}", suite_label, where, kind)
                    misfits.setdefault(key, []).append(phase)
    for (what, suite_label, where, _), phases in misfits.items():
        plural = "phases" if len(phases) > 1 else "phase"
        problems.append(
            f"{what}: {suite_label} uses it in {where} (for {plural} {', '.join(sorted(phases))})"
        )
    problems.extend(_empty_ranges(project))
    return problems


def _written(written: Any, resolved: Mapping[str, Any]) -> tuple[Any, str]:
    """An expectation's bound as a phase resolves it, and how to name it: a literal, or a
    ``$PARAMETER`` with its value and where that value is set."""
    if isinstance(written, dict) and set(written) == {"$PARAMETER"}:
        name = written["$PARAMETER"]
        threshold = resolved.get(name) if isinstance(name, str) else None
        if threshold is None:
            return None, ""  # unresolved: reported on its own
        return threshold.value, f"{name} = {threshold.value!r} ({threshold.key})"
    return written, repr(written)


def _empty_ranges(project: Project) -> list[str]:
    """Expectations whose range holds no value in some phase: a min_value above the
    max_value (or equal, with a strict side), as the phase's thresholds resolve them. Such a
    check can only fail, whatever the data: a mistake (two thresholds swapped, an override of
    one side), said where it is written, never a gate that blocks for ever."""
    found: dict[tuple[str, int, str, str], list[str]] = {}
    for phase, gate in project.gates.items():
        resolved = resolve_thresholds(project.thresholds, gate.environment, phase)
        for _, suite_name in _suite_refs(gate):
            suite = project.suites.get(suite_name)
            for index, spec in enumerate(suite.expectations if suite is not None else []):
                kwargs = spec.kwargs
                if "min_value" not in kwargs or "max_value" not in kwargs:
                    continue
                low, low_said = _written(kwargs["min_value"], resolved)
                high, high_said = _written(kwargs["max_value"], resolved)
                if not (_is_number(low) and _is_number(high)):
                    continue
                strict = kwargs.get("strict_min") is True or kwargs.get("strict_max") is True
                if low > high:
                    what = f"min_value {low_said} is above max_value {high_said}"
                elif low == high and strict:
                    side = "strict_min" if kwargs.get("strict_min") is True else "strict_max"
                    what = f"min_value {low_said} equals max_value {high_said} and {side} is true"
                else:
                    continue
                label = project.files.get(f"suite:{suite_name}", f"suites/{suite_name}.yaml")
                found.setdefault((label, index, spec.type, what), []).append(phase)
    return [
        f"{label}: expectations[{index}] ({kind}): {what}: no value can pass, the check could "
        f"only fail (for phase{'s' if len(phases) > 1 else ''} {', '.join(sorted(phases))})"
        for (label, index, kind, what), phases in found.items()
    ]


def embedded_path_problems(project: Project) -> list[str]:
    """chDB embeds one engine per process, on one path: every ``chdb://`` URL of the project
    (the sources of every environment, which ``serve`` evaluates in one worker, and the
    ledger) must name the same path, or the second to open fails at run time."""
    from gatecheck.sources.clickhouse.connection import Target

    paths: dict[Path, list[str]] = {}
    for env_name, environment in sorted(project.config.environments.items()):
        for name, source in sorted(environment.sources.items()):
            if source.type == "clickhouse" and source.url.startswith("chdb://"):
                where = f"environments.{env_name}.sources.{name}"
                paths.setdefault(Target.parse(source.url, project.root).embedded, []).append(where)  # type: ignore[arg-type]
    history = project.config.history
    if history is not None and history.url.startswith("chdb://"):
        paths.setdefault(Target.parse(history.url, project.root).embedded, []).append("history.url")  # type: ignore[arg-type]
    if len(paths) < 2:
        return []
    used = "; ".join(f"{path} ({', '.join(users)})" for path, users in paths.items())
    return [
        f"{PROJECT_FILE}: chDB embeds one engine per process, on one path, but these name "
        f"{len(paths)}: {used}; put them on one path (chdb://PATH?database=NAME)"
    ]
