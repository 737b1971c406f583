"""Words for results: how a failing expectation, a threshold and a group read in reasons and
reports. Pure functions of :mod:`gatecheck.results`, light to import (the renderers use them
without the gate)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta

from gatecheck._values import bound, shown, timestamp, unit_of
from gatecheck.durations import format_duration
from gatecheck.errors import one_line
from gatecheck.results import (
    CheckResult,
    ExpectationResult,
    FailingGroup,
    HistoryBound,
    Reconciliation,
    SloFindings,
    SloWindow,
    Threshold,
)


def subject_of(result: ExpectationResult) -> str:
    """The column an expectation judges, with the suite's description of it if any."""
    subject = result.column or result.type
    return f"{subject} ({result.description})" if result.description else subject


def failure_text(result: ExpectationResult) -> str:
    """One failing expectation as a reason: its subject, its rule, the groups that broke it."""
    subject = subject_of(result)
    unit = unit_of(result.column)
    rule = f"must be {rule_text(result.thresholds, unit)}" if result.thresholds else unmet(result)
    if result.failing_groups:
        groups = "; ".join(describe_failure(g, unit) for g in result.failing_groups[:5])
        more = f" (+{result.failing_count - 5} more)" if result.failing_count > 5 else ""
        return f"{subject} {rule}: {groups}{more}"
    return f"{subject} {rule}: observed {shown(result.observed_value, unit)}"


def unmet(result: ExpectationResult) -> str:
    """An expectation without thresholds that failed: ``fails TYPE``, or, for a bound from
    history per group (each group has its own bound), ``is outside its baseline``."""
    words = {"within_baseline": "baseline", "within_learned_band": "learned band"}.get(result.type)
    return f"is outside its {words}" if words else f"fails {result.type}"


def rule_text(thresholds: list[Threshold], unit: str = "") -> str:
    """The thresholds of one expectation: ``= 3 (stream_replicas, environment)`` when a minimum
    and a maximum of one name and value pin it, else each by :func:`threshold_text`."""
    if (
        len(thresholds) == 2
        and {t.bound for t in thresholds} == {"min", "max"}
        and thresholds[0].name == thresholds[1].name
        and thresholds[0].value == thresholds[1].value
    ):
        pinned = thresholds[0]
        return f"= {shown(pinned.value, unit)} ({pinned.name}, {pinned.provenance})"
    return ", ".join(threshold_text(t, unit) for t in thresholds)


def threshold_text(threshold: Threshold, unit: str = "") -> str:
    """``≤ 0.5 % (unmatched_edge_rate_max, default)``, ``in {file} (suite)``, ``≤ no limit
    (fallback_events_max, phase)``."""
    if threshold.name == "value_set" and threshold.bound is None:
        return f"in {{{threshold.value}}} ({threshold.provenance})"
    if threshold.bound is None:
        return f"{threshold.name} {shown(threshold.value, unit)} ({threshold.provenance})"
    value = bound(threshold.value, threshold.bound, unit)
    if value == "no limit":
        return f"no limit ({threshold.name}, {threshold.provenance})"
    sign = "≤ " if threshold.bound == "max" else "≥ "
    return f"{sign}{value} ({threshold.name}, {threshold.provenance})"


def describe_failure(failure: FailingGroup, unit: str = "") -> str:
    """``group: observed X[, expected Y]`` for one failing group."""
    text = f"{format_group(failure.group)}: observed {shown(failure.observed_value, unit)}"
    if failure.expected_value is not None:
        text += f", expected {shown(failure.expected_value, unit)}"
    if failure.values:
        text += " (" + ", ".join(f"{k} {shown(v, unit_of(k))}" for k, v in failure.values.items()) + ")"
    return text


#: A reason longer than this is shown as a headline with its details below it.
LONG_REASON = 160
_RULE_END = re.compile(r"^(.*? must be .*?\((?:[^()]|\([^()]*\))*\)): (.+)$")


def split_reason(reason: str) -> tuple[str, list[str]]:
    """A long reason as a headline and its details: ``required check failed: X — col must be
    ≤ 0 (name, default)`` over one line per failing group (``hour=…: observed 87 (…)``). A
    short reason is its own headline."""
    if len(reason) <= LONG_REASON:
        return reason, []
    found = _RULE_END.match(reason)
    if found is None:
        return reason, []
    return found.group(1), [part.strip() for part in found.group(2).split("; ") if part.strip()]


def format_group(group: Mapping[str, str]) -> str:
    shown = {k: v for k, v in group.items() if v != ""}
    if not shown:
        return "overall"
    return ", ".join(one_line(f"{k}={v}") for k, v in shown.items())  # a value from data: one line


def waiver_text(check: CheckResult) -> str | None:
    """``waived by W1 (alice, until 2026-11-25T06:00:00Z): the vendor stream is backfilling``."""
    waiver = check.waiver
    if waiver is None:
        return None
    scope = f" for {format_group(waiver.group)}" if waiver.group else ""
    until = timestamp(waiver.until)
    return f"waived by {waiver.id}{scope} ({waiver.by}, until {until}): {waiver.reason}"


def sampled_keys(keys: list[dict[str, str | None]], count: int, at_most: int = 3) -> str:
    """Sample keys in one line: ``bus-000200, bus-000201 (+38 more)``; a key of many columns
    in parentheses; NULL as ``NULL``."""

    def one(key: dict[str, str | None]) -> str:
        values = ["NULL" if v is None else v for v in key.values()]
        return values[0] if len(values) == 1 else "(" + ", ".join(values) + ")"

    shown_keys = keys[:at_most]
    more = count - len(shown_keys)
    return ", ".join(one(k) for k in shown_keys) + (f" (+{more} more)" if more > 0 else "")


def keys_found(found: Reconciliation, only: list[str] | None = None) -> str:
    """The sampled keys of each kind found, in one line:
    ``message_id: missing bus-000200, bus-000201, bus-000202 (+37 more) · duplicated …``
    (``only``: those kinds); empty when none."""
    named = [
        f"{kind} {sampled_keys(found.samples.get(kind, []), getattr(found, kind))}"
        for kind in ("missing", "extra", "changed", "duplicated")
        if getattr(found, kind) and found.samples.get(kind) and (only is None or kind in only)
    ]
    return f"{', '.join(found.keys)}: {' · '.join(named)}" if named else ""


def reconciliation_lines(found: Reconciliation, at_most: int = 10) -> list[str]:
    """What a reconciliation found, for people: the counts, a sample of each kind's keys,
    and what it cost (rounds, rows that crossed)."""
    columns = found.keys[0] if len(found.keys) == 1 else "(" + ", ".join(found.keys) + ")"
    if "key_md5" in next((k for keys in found.samples.values() for k in keys), {}):
        columns = "key MD5"
    counts = ", ".join(
        f"{kind} {getattr(found, kind)}" for kind in ("missing", "extra", "changed", "duplicated")
    )
    lines = [
        f"by {columns}: {counts}" + (" (at least: more differing rows than max_rows)" if found.capped else "")
    ]
    for kind in ("missing", "extra", "changed", "duplicated"):
        count = getattr(found, kind)
        if count:
            lines.append(f"  {kind}: {sampled_keys(found.samples.get(kind, []), count, at_most)}")
    if found.late is not None and found.lag is not None:
        lag = format_duration(found.lag)
        early = next((side for side in found.rows if side != found.late), "the other side")
        by_end = next((r.decides for r in found.rounds if "changed" in r.decides), [])
        by_start = next((r.decides for r in found.rounds if r.decides and "changed" not in r.decides), [])
        lines.append(
            f"{found.late} lags {early} by up to {lag}: {found.late} read to the window's end + {lag} "
            f"for {', '.join(by_end)}; {early} from its start - {lag} for {', '.join(by_start)}"
        )
    digests = [r for r in found.rounds if r.what == "cells"]
    buckets = [r for r in found.rounds if r.what == "buckets"]
    fetched = [r for r in found.rounds if r.what == "rows"]
    compared = sum(found.rows.values())
    parts = []
    if digests:
        # decoded: the duplicates' question follows; else the bucket rounds did the work
        decoded = any(r.what == "duplicates" for r in found.rounds)
        parts.append("difference digests" + ("" if decoded else " (too many differences to decode)"))
    if buckets or not digests:
        parts.append(f"{len(buckets)} bucket round{'s' if len(buckets) != 1 else ''}")
    cost = ", then ".join(parts)
    if fetched:
        cost += f" and {len(fetched)} fetch{'es' if len(fetched) != 1 else ''} of differing rows"
    share = f" ({found.transferred / compared:.2%} of {compared} compared)" if compared else ""
    lines.append(f"{cost}; {found.transferred} rows crossed{share}; hashing {found.hashing}")
    return lines


def _period(found: SloFindings) -> str:
    """The SLO's window in words: ``7d``, or a calendar SLO's ``month to date (4d6h)``."""
    length = format_duration(found.window.length)
    return f"{found.calendar} to date ({length})" if found.calendar else length


def _count(value: float) -> str:
    """An event count with thousands separators (a count from increase() may be fractional)."""
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}".rstrip("0").rstrip(".")


def _rate(value: float) -> str:
    """A burn rate: three significant digits, and no exponent for a large one."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _share(value: float) -> str:
    """A share of a budget: a percentage, or a multiple when it is many times over."""
    return f"{value:.1%}" if value < 10 else f"{value:,.0f}x"


def _burn(span: SloWindow) -> str:
    shown_burn = "no events" if span.burn is None else f"burn {_rate(span.burn)}"
    short_of = "" if span.enough else f" (too few events: {_count(span.total)})"
    if span.recorded:
        short_of += " (recorded)"
    return f"{format_duration(span.length)} {shown_burn}{short_of}"


def slo_lines(found: SloFindings) -> list[str]:
    """An SLO's budget for people: what is left, each rule's burn in both windows, what this
    phase consumed, when the budget would be gone, and the stretches left out."""
    whole = found.window
    bad = whole.total - whole.good
    events = f"{_count(bad)} bad of {_count(whole.total)} events"
    if found.budget_remaining is None:
        left = f"budget of the {_period(found)} window not judged ({events})"
    else:
        window = _period(found)
        if found.budget_remaining >= 0:
            left = f"{found.budget_remaining:.1%} of the {window} error budget left ({events})"
        else:
            used = _share(1 - found.budget_remaining)
            left = f"the {window} error budget is spent: {used} of it used ({events})"
    lines = [f"objective {found.objective:g}%: {left}"]
    for rule in found.rules:
        state = {True: " — firing", False: "", None: " — not judged"}[rule.firing]
        lines.append(
            f"  {rule.rule} (over {rule.factor:g}x in both): {_burn(rule.long)}, {_burn(rule.short)}{state}"
        )
    if found.phase_since is not None and found.phase_consumed is not None:
        since = timestamp(found.phase_since)
        lines.append(f"this phase since {since}: {_share(found.phase_consumed)} of the budget consumed")
    if found.exhaustion_s is not None:
        gone = format_duration(timedelta(seconds=found.exhaustion_s))
        lines.append(f"at the current burn the budget left is gone in {gone}")
    for correction in found.corrections:
        stretch = f"{timestamp(correction.start)} to {timestamp(correction.end)}"
        lines.append(f"left out: {stretch} — {correction.reason} ({correction.by})")
    return lines


def slo_card(found: SloFindings) -> dict[str, object]:
    """An SLO in a few words for the chain page: the budget left (or why not judged), the
    burn in every window its rules read, the rules firing, the corrections in force."""
    window = _period(found)
    if found.budget_remaining is None:
        budget = f"budget of the {window} window not judged (too few events)"
        short = "not judged"
    elif found.budget_remaining >= 0:
        budget = f"{found.budget_remaining:.1%} of the {window} budget left"
        short = f"{found.budget_remaining:.1%} left ({window})"
    else:
        used = _share(1 - found.budget_remaining)
        budget = f"{window} budget spent ({used} used)"
        short = f"spent, {used} used ({window})"
    spans: dict[timedelta, SloWindow] = {}
    for rule in found.rules:
        spans.setdefault(rule.long.length, rule.long)
        spans.setdefault(rule.short.length, rule.short)
    burns = " · ".join(
        f"{format_duration(length)} {'–' if span.burn is None else _rate(span.burn)}"
        for length, span in sorted(spans.items())
    )
    firing = [rule.rule for rule in found.rules if rule.firing]
    corrections = [
        f"{timestamp(c.start)} to {timestamp(c.end)}: {c.reason} ({c.by})" for c in found.corrections
    ]
    return {"budget": budget, "short": short, "remaining": found.budget_remaining, "burns": burns,
            "firing": firing, "corrections": corrections}  # fmt: skip


def history_lines(found: HistoryBound, at_most: int = 10) -> list[str]:
    """A bound from history in a few lines: the rule, the evaluations it rests on (first and
    last, by as_of) and what was left out; then each group judged against it."""
    what = {"baseline": "baseline", "pinned": "pinned baseline", "learned": "learned band"}[found.kind]
    if found.records:
        first, last = timestamp(min(found.records)), timestamp(max(found.records))
        span = first if first == last else f"{first} … {last}"
        rests = f"from {len(found.records)} evaluation{'s' if len(found.records) != 1 else ''} ({span})"
    else:
        rests = "no evaluation to learn from yet"
    left = ", ".join(f"{why} {count}" for why, count in sorted(found.left_out.items()))
    line = f"{what}: {found.column} {found.rule} — {rests}" + (f"; left out: {left}" if left else "")
    if found.pinned_by:
        line += f"; pinned by {found.pinned_by}"
    lines = [line]
    unit = unit_of(found.column)
    for group in found.groups[:at_most]:
        where = format_group(group.group) if group.group else found.column
        if group.reason is not None:
            lines.append(f"  {where}: {group.outcome.value}, {group.reason}")
            continue
        bounds = ", ".join(
            f"{sign} {shown(value, unit)}"
            for sign, value in (("≥", group.low), ("≤", group.high))
            if value is not None
        )
        lines.append(
            f"  {where}: {group.outcome.value}, observed {shown(group.observed, unit)}, "
            f"reference {shown(group.reference, unit)} ({bounds})"
        )
    if len(found.groups) > at_most:
        lines.append(f"  … and {len(found.groups) - at_most} more groups")
    return lines
