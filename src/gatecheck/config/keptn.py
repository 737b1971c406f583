"""Keptn v1 quality gates → suites (``gatecheck import keptn-slo slo.yaml --sli sli.yaml``).

What is taken, from ``slo.yaml`` and the Prometheus SLI provider's ``sli.yaml``:

- Each objective with ``pass`` criteria becomes a suite ``keptn_<sli>`` reading the SLI's
  PromQL (``$DURATION_SECONDS`` becomes the check's window, ``$window``; ``$SERVICE``,
  ``$PROJECT``, ``$STAGE``, ``$DEPLOYMENT`` and ``$LABEL.<name>`` are filled from ``--set``)
  whose expectations are the **absolute** criteria (``<600``, ``<=800``, ``>=0.9``, ``=1``):
  the criteria become the suite's thresholds. A check of it goes into a gate's ``checks``.
- **Relative** criteria (``<=+10%``, ``>=-5%``) compare with earlier results: they become the
  check's ``baseline:`` (a bound from the phase's own history): ``max_ratio`` 1.10,
  ``min_ratio`` 0.95, over its last ``number_of_comparison_results`` passing evaluations,
  their p90 or p95 for ``aggregate_function: p90/p95`` and their median for ``avg`` (a
  baseline is a quantile: said in a note).
- ``warning`` criteria become a second suite ``keptn_<sli>_warning``, checked as advisory
  (gatecheck has no "warning" verdict: it is shown, never blocks).

Refused, one line each naming the file and key: an SLI without PromQL in ``--sli`` (or no
``--sli``), a placeholder without a ``--set`` value, several criteria groups under ``pass``
or ``warning`` (Keptn ORs them; gatecheck's expectations all hold together), relative
criteria under ``warning``, a criterion gatecheck cannot read. Noted, not refused:
``total_score``, ``weight`` and ``key_sli`` (every imported objective is a required check —
stricter than a score), objectives without criteria (Keptn only records them).
"""

from __future__ import annotations

import re
from typing import Any

from gatecheck.errors import ConfigError

_CRITERION = re.compile(r"^\s*(<=|>=|<|>|=)\s*([+-])?\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(%)?\s*$")
_PLACEHOLDER = re.compile(r"\$(LABEL\.[A-Za-z0-9_]+|SERVICE|PROJECT|STAGE|DEPLOYMENT|DURATION_SECONDS)")
_NAME = re.compile(r"[^a-z0-9_]+")
_QUANTILES = {"avg": 0.5, "p90": 0.9, "p95": 0.95}


def _name(sli: str) -> str:
    return "keptn_" + _NAME.sub("_", sli.lower()).strip("_")


def _criteria(entries: Any, where: str) -> list[str]:
    """The one group of criteria under ``pass`` or ``warning`` (several: Keptn ORs them)."""
    if not entries:
        return []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{where}: a list of {{criteria: [...]}} groups")
    if len(entries) > 1:
        raise ConfigError(
            f"{where}: {len(entries)} criteria groups, of which Keptn needs one to hold (OR); "
            "gatecheck's expectations all hold together: split the objective, or keep one group"
        )
    found = entries[0].get("criteria")
    if not isinstance(found, list) or not found:
        raise ConfigError(f'{where}[0].criteria: a list of criteria such as "<600"')
    return [str(c) for c in found]


def _parsed(criterion: str, where: str) -> tuple[str, float, bool]:
    """(operator, value, relative) of one criterion."""
    match = _CRITERION.match(criterion)
    if match is None:
        raise ConfigError(f"{where}: {criterion!r}: not a Keptn criterion (e.g. <600, <=+10%)")
    operator, sign, number, percent = match.groups()
    relative = percent is not None or sign is not None
    if relative and (sign is None or percent is None):
        raise ConfigError(
            f"{where}: {criterion!r}: a relative criterion is a signed percentage (e.g. <=+10%)"
        )
    value = float(number)
    if sign == "-":
        value = -value
    return operator, value, relative


def _expectations(criteria: list[tuple[str, float]], column: str) -> list[dict[str, Any]]:
    """Absolute criteria as expectations on ``column`` (all must hold)."""
    found = []
    for operator, value in criteria:
        kwargs: dict[str, Any] = {"column": column}
        if operator in ("<", "<="):
            kwargs |= {"max_value": value, **({"strict_max": True} if operator == "<" else {})}
        elif operator in (">", ">="):
            kwargs |= {"min_value": value, **({"strict_min": True} if operator == ">" else {})}
        else:
            kwargs |= {"min_value": value, "max_value": value}
        found.append({"type": "expect_column_values_to_be_between", **kwargs})
    return found


def _query(promql: str, values: dict[str, str], where: str) -> str:
    def filled(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "DURATION_SECONDS":
            return "$window"
        if name not in values:
            raise ConfigError(f"{where}: the SLI names ${name}: give its value with --set {name}=...")
        return values[name]

    return _PLACEHOLDER.sub(filled, promql)


def import_keptn(
    slo: Any, sli: Any, source: str, values: dict[str, str], slo_file: str, sli_file: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """The suites, the gate checks that use them, and notes, from one ``slo.yaml`` (and its
    ``sli.yaml``); a ConfigError naming the file and key for what gatecheck cannot judge."""
    if not isinstance(slo, dict) or not isinstance(slo.get("objectives"), list):
        raise ConfigError(f"{slo_file}: objectives: a Keptn SLO file lists its objectives")
    indicators = sli.get("indicators") if isinstance(sli, dict) else None
    comparison = slo.get("comparison") or {}
    notes: list[str] = []
    if slo.get("total_score"):
        notes.append(
            f"{slo_file}: total_score: gatecheck has no score: every imported objective is a required "
            "check (as key_sli: true), its warning criteria an advisory one"
        )
    suites: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    for index, objective in enumerate(slo["objectives"]):
        where = f"{slo_file}: objectives[{index}]"
        if not isinstance(objective, dict) or not objective.get("sli"):
            raise ConfigError(f"{where}.sli: missing")
        sli_name = str(objective["sli"])
        passing = _criteria(objective.get("pass"), f"{where}.pass")
        warning = _criteria(objective.get("warning"), f"{where}.warning")
        if not passing and not warning:
            notes.append(f"{where}: {sli_name} has no criteria: Keptn only records it; not imported")
            continue
        if not isinstance(indicators, dict) or not isinstance(indicators.get(sli_name), str):
            known = ", ".join(sorted(indicators)) if isinstance(indicators, dict) else "no --sli file"
            raise ConfigError(
                f"{sli_file or slo_file}: indicators.{sli_name}: no PromQL for the SLI (known: {known})"
            )
        query = _query(indicators[sli_name], values, f"{sli_file}: indicators.{sli_name}")
        name = _name(sli_name)
        column = "value"
        parsed = [(_parsed(c, f"{where}.pass[0].criteria[{k}]"), c) for k, c in enumerate(passing)]
        absolute = [(op, value) for (op, value, relative), _ in parsed if not relative]
        relative = [(op, value) for (op, value, relative), _ in parsed if relative]
        description = f"Keptn SLO {sli_name}: pass {' and '.join(passing)}"
        if absolute or not relative:
            expectations = _expectations(absolute, column)
        else:  # only relative criteria: the value must exist; the baseline judges it
            expectations = [{"type": "expect_column_values_to_not_be_null", "column": column}]
        suites.append({
            "name": name, "description": description, "source": source,
            "window": {"length": "5m"}, "query": query, "expectations": expectations,
        })  # fmt: skip
        check: dict[str, Any] = {"suite": name}
        if relative:
            check["baseline"] = _baseline(relative, comparison, column, where, slo_file, notes)
        checks.append(check)
        if warning:
            parsed_warning = [_parsed(c, f"{where}.warning[0].criteria[{k}]") for k, c in enumerate(warning)]
            if any(rel for _, _, rel in parsed_warning):
                raise ConfigError(
                    f"{where}.warning[0].criteria: a relative warning criterion: gatecheck's baseline is "
                    "one per check (the pass criteria's); keep the warning's absolute criteria"
                )
            said = " and ".join(warning)
            suites.append({
                "name": f"{name}_warning", "description": f"Keptn SLO {sli_name}: warning {said}",
                "source": source, "window": {"length": "5m"}, "query": query,
                "expectations": _expectations([(op, v) for op, v, _ in parsed_warning], column),
            })  # fmt: skip
            checks.append({"suite": f"{name}_warning", "required": False})
    return suites, checks, notes


def _baseline(
    relative: list[tuple[str, float]], comparison: dict[str, Any], column: str, where: str, slo_file: str,
    notes: list[str],
) -> dict[str, Any]:  # fmt: skip
    """Relative pass criteria as a ``baseline:`` bound."""
    found: dict[str, Any] = {"column": column}
    for operator, change in relative:
        ratio = round(1 + change / 100, 6)
        if operator in ("<", "<="):
            if "max_ratio" in found:
                raise ConfigError(f"{where}.pass[0].criteria: two upper relative criteria: keep one")
            found["max_ratio"] = ratio
        elif operator in (">", ">="):
            if "min_ratio" in found:
                raise ConfigError(f"{where}.pass[0].criteria: two lower relative criteria: keep one")
            found["min_ratio"] = ratio
        else:
            raise ConfigError(f"{where}.pass[0].criteria: '=' with a relative change: use <= and >=")
        if operator in ("<", ">"):
            notes.append(f"{where}: {operator}{change:+g}%: a baseline bound holds its limit (≤, ≥)")
    mode = comparison.get("compare_with", "single_result")
    last = 1 if mode == "single_result" else int(comparison.get("number_of_comparison_results", 3))
    function = str(comparison.get("aggregate_function", "avg"))
    if function not in _QUANTILES:
        raise ConfigError(f"{slo_file}: comparison.aggregate_function: {function!r}: one of avg, p90, p95")
    if function == "avg" and last > 1:
        notes.append(
            f"{slo_file}: comparison.aggregate_function avg: a baseline is a quantile of the earlier "
            "results: their median stands in for their average"
        )
    included = comparison.get("include_result_with_score", "all")
    if included != "pass":
        notes.append(
            f"{slo_file}: comparison.include_result_with_score {included}: a baseline learns from passing "
            "evaluations only"
        )
    found |= {"last": last, "quantile": _QUANTILES[function], "min_records": last}
    return found
